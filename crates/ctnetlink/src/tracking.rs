//! Switching connection tracking on in the current network namespace, and off again.
//!
//! Having `nf_conntrack` loaded does not mean that connections are tracked. Current kernels
//! register the conntrack hooks of a network namespace only while something in that
//! namespace needs them: an iptables `conntrack` or `state` match, a NAT rule, an nftables
//! `ct` expression. A host or container without a stateful firewall therefore has an empty
//! conntrack table however busy it is, and an exporter that only reads the table would report
//! no connections at all.
//!
//! [`enable`] adds the smallest ruleset that makes the kernel track: an `inet` table named
//! [`TABLE_NAME`] holding one chain, [`CHAIN_NAME`], with one rule, `ct state != 0x0`. What
//! matters is the `ct` expression in it: creating one takes a reference on the namespace's
//! conntrack, for IPv4 and IPv6 in an `inet` table, and that reference is what switches
//! tracking on. It is taken when the rule is added, not when a packet is evaluated, so the
//! chain is a regular one with no hook: it is attached to no hook point, no packet ever
//! traverses it, and it costs nothing per packet. Tracking itself costs what it costs. (The
//! comparison after the load is for people: `nft` cannot print a bare load, so it would list
//! an empty rule.)
//!
//! Each function sends one atomic nftables transaction and touches no other table, chain or
//! rule. Both are idempotent: the table is created (if absent) and deleted before being built
//! again, so enabling twice still leaves exactly one rule, and disabling a namespace without
//! the table succeeds. [`disable`] removes the table; tracking stops only if nothing else in
//! the namespace needs it. Both need `CAP_NET_ADMIN` in the namespace.

use std::ffi::{CStr, c_char};
use std::io;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

use nftnl_sys as sys;

use conntrack_codec::{Header, Message, ParseError, frames, parse_message};

use crate::socket::AlignedBuffer;

/// Name of the `inet` table that [`enable`] creates and [`disable`] deletes.
pub const TABLE_NAME: &str = "conntrack_exporter";

/// Name of the hookless chain inside [`TABLE_NAME`] that holds the `ct state` rule.
pub const CHAIN_NAME: &str = "track_connections";

/// [`TABLE_NAME`] as libnftnl takes it (a unit test checks that the two agree).
const TABLE: &CStr = c"conntrack_exporter";
/// [`CHAIN_NAME`] as libnftnl takes it.
const CHAIN: &CStr = c"track_connections";

/// The rule's comment, shown by `nft list ruleset`.
const COMMENT: &CStr =
    c"conntrack_exporter: keeps connection tracking on (no hook: sees no packets)";

/// `NFPROTO_INET`: one table for IPv4 and IPv6, so one rule enables both.
const FAMILY: u16 = libc::NFPROTO_INET as u16;

/// libnftnl batch page size. The whole transaction is well under 1 KiB, so it fits one page.
const PAGE_SIZE: u32 = 4096;
/// Spare bytes libnftnl allocates past each page: the room one message has when it is written
/// at the end of a page, before libnftnl moves it to the next. So it bounds the size of one
/// message; ours are a few hundred bytes (constant names, two expressions, a comment).
const PAGE_OVERRUN: u32 = 4096;

/// Receive buffer for the acknowledgements. An error reply echoes its request, so it can be a
/// few hundred bytes; one datagram never comes close to this.
const RECEIVE_BUFFER: usize = 16 * 1024;

/// A failure switching tracking on or off.
#[derive(Debug, thiserror::Error)]
pub enum TrackingError {
    /// The kernel refused because the process lacks `CAP_NET_ADMIN` in its network namespace.
    #[error(
        "{operation}: permission denied: changing the nftables ruleset needs CAP_NET_ADMIN (run as root or grant the capability)"
    )]
    PermissionDenied {
        /// What was being attempted.
        operation: &'static str,
    },
    /// The kernel lacks a part of nftables the ruleset needs; nothing was changed.
    #[error("{operation}: the kernel does not support {feature}: {source}")]
    Unsupported {
        /// What was being attempted.
        operation: &'static str,
        /// The missing part, with the kernel option that provides it.
        feature: &'static str,
        /// The errno the kernel returned.
        source: io::Error,
    },
    /// The kernel rejected one step of the transaction; nothing was changed.
    #[error("{operation}: the kernel rejected {step}: {source}")]
    Kernel {
        /// What was being attempted.
        operation: &'static str,
        /// The step it rejected.
        step: &'static str,
        /// The errno the kernel returned.
        source: io::Error,
    },
    /// The kernel neither acknowledged nor rejected a step of the transaction.
    #[error("{operation}: the kernel did not answer {step}")]
    Unanswered {
        /// What was being attempted.
        operation: &'static str,
        /// The step left without an answer.
        step: &'static str,
    },
    /// A reply could not be decoded.
    #[error("{operation}: malformed reply: {source}")]
    Parse {
        /// What was being attempted.
        operation: &'static str,
        /// The decoding error.
        source: ParseError,
    },
    /// A system call on the netlink socket failed.
    #[error("{operation}: {source}")]
    Io {
        /// What was being attempted.
        operation: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// libnftnl could not allocate memory for the request.
    #[error("{operation}: libnftnl could not allocate {what}")]
    Allocation {
        /// What was being attempted.
        operation: &'static str,
        /// The object it could not allocate.
        what: &'static str,
    },
}

impl TrackingError {
    /// Classifies an errno from a system call on the socket.
    fn io(operation: &'static str, source: io::Error) -> Self {
        match source.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => TrackingError::PermissionDenied { operation },
            _ => TrackingError::Io { operation, source },
        }
    }

    /// Classifies an errno the kernel returned for `step`.
    fn rejected(operation: &'static str, step: Step, errno: i32) -> Self {
        let source = io::Error::from_raw_os_error(errno);
        let feature = match (step, errno) {
            (_, libc::EPERM | libc::EACCES) => {
                return TrackingError::PermissionDenied { operation };
            }
            // nfnetlink rejects the batch as a whole when no nf_tables subsystem can be loaded.
            (Step::Transaction, libc::EOPNOTSUPP) => "nf_tables (CONFIG_NF_TABLES)",
            (Step::AddTable, libc::EAFNOSUPPORT) => {
                "the nf_tables inet family (CONFIG_NF_TABLES_INET)"
            }
            // An expression type that can be neither found nor loaded is ENOENT.
            (Step::AddRule, libc::ENOENT | libc::EOPNOTSUPP) => {
                "the nf_tables ct expression (CONFIG_NFT_CT)"
            }
            _ => {
                let step = step.describe();
                return TrackingError::Kernel {
                    operation,
                    step,
                    source,
                };
            }
        };
        TrackingError::Unsupported {
            operation,
            feature,
            source,
        }
    }
}

/// Switches connection tracking on in the current network namespace, for IPv4 and IPv6.
///
/// Replaces the table [`TABLE_NAME`] with a fresh copy holding one hookless chain and one
/// `ct state != 0x0` rule, in one atomic transaction: calling it again leaves exactly one rule.
/// Connections that were open before are tracked from their next packet on (TCP ones as
/// picked up mid-stream).
pub fn enable() -> Result<(), TrackingError> {
    const OPERATION: &str = "switching connection tracking on";
    let table = table(OPERATION)?;
    let chain = chain(OPERATION)?;
    let rule = rule(OPERATION)?;
    let mut batch = Batch::new(OPERATION)?;
    // Creating before deleting makes the deletion succeed whether or not the table existed;
    // the transaction then builds it again from scratch.
    batch.put(Payload::Table(&table), Step::AddTable)?;
    batch.put(Payload::Table(&table), Step::DeleteTable)?;
    batch.put(Payload::Table(&table), Step::AddTable)?;
    batch.put(Payload::Chain(&chain), Step::AddChain)?;
    batch.put(Payload::Rule(&rule), Step::AddRule)?;
    transact(OPERATION, batch)
}

/// Removes the table [`TABLE_NAME`] from the current network namespace, and with it this
/// crate's claim on connection tracking. Succeeds when the table is absent.
///
/// Tracking stops once nothing else in the namespace needs it. The kernel releases the rule
/// after the transaction returns, so it may go on tracking for a moment; entries already in
/// the table stay until they time out.
pub fn disable() -> Result<(), TrackingError> {
    const OPERATION: &str = "switching connection tracking off";
    let table = table(OPERATION)?;
    let mut batch = Batch::new(OPERATION)?;
    batch.put(Payload::Table(&table), Step::AddTable)?;
    batch.put(Payload::Table(&table), Step::DeleteTable)?;
    transact(OPERATION, batch)
}

/// One message of the transaction, named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The batch as a whole: its begin and end markers, and the commit.
    Transaction,
    /// `NFT_MSG_NEWTABLE` (without `NLM_F_EXCL`: no error when it exists).
    AddTable,
    /// `NFT_MSG_DELTABLE`, which also deletes the chains and rules inside.
    DeleteTable,
    /// `NFT_MSG_NEWCHAIN` of the hookless chain.
    AddChain,
    /// `NFT_MSG_NEWRULE` of the `ct state` rule.
    AddRule,
}

impl Step {
    fn describe(self) -> &'static str {
        match self {
            Step::Transaction => "the transaction",
            Step::AddTable => "adding table inet conntrack_exporter",
            Step::DeleteTable => "deleting table inet conntrack_exporter",
            Step::AddChain => "adding its chain",
            Step::AddRule => "adding its ct state rule",
        }
    }

    /// The nf_tables message type and the flags besides `NLM_F_REQUEST | NLM_F_ACK`.
    fn message(self) -> (u16, u16) {
        let create = libc::NLM_F_CREATE as u16;
        match self {
            // Never sent as a message of its own: `Batch` writes the markers.
            Step::Transaction => (0, 0),
            Step::AddTable => (nft_message(libc::NFT_MSG_NEWTABLE), create),
            Step::DeleteTable => (nft_message(libc::NFT_MSG_DELTABLE), 0),
            Step::AddChain => (nft_message(libc::NFT_MSG_NEWCHAIN), create),
            Step::AddRule => (
                nft_message(libc::NFT_MSG_NEWRULE),
                create | libc::NLM_F_APPEND as u16,
            ),
        }
    }
}

/// The netlink message type of an nf_tables message.
const fn nft_message(message: libc::c_int) -> u16 {
    ((libc::NFNL_SUBSYS_NFTABLES as u16) << 8) | message as u16
}

/// A libnftnl object, freed when dropped.
struct Object<T> {
    raw: NonNull<T>,
    free: unsafe extern "C" fn(*const T),
}

impl<T> Object<T> {
    /// Takes ownership of what an `nftnl_*_alloc` returned; NULL means it ran out of memory.
    fn new(
        raw: *mut T,
        free: unsafe extern "C" fn(*const T),
        operation: &'static str,
        what: &'static str,
    ) -> Result<Self, TrackingError> {
        match NonNull::new(raw) {
            Some(raw) => Ok(Object { raw, free }),
            None => Err(TrackingError::Allocation { operation, what }),
        }
    }

    fn as_ptr(&self) -> *mut T {
        self.raw.as_ptr()
    }

    /// Gives up ownership, for a libnftnl call that takes it over.
    fn into_raw(self) -> *mut T {
        let raw = self.raw.as_ptr();
        std::mem::forget(self);
        raw
    }
}

impl<T> Drop for Object<T> {
    fn drop(&mut self) {
        // SAFETY: `raw` came from the allocator matching `free`, is owned by this value only,
        // and is freed exactly once.
        unsafe { (self.free)(self.raw.as_ptr()) }
    }
}

/// Fails when a libnftnl setter (which copies its value) could not allocate the copy.
fn copied(
    result: libc::c_int,
    operation: &'static str,
    what: &'static str,
) -> Result<(), TrackingError> {
    if result < 0 {
        Err(TrackingError::Allocation { operation, what })
    } else {
        Ok(())
    }
}

fn table(operation: &'static str) -> Result<Object<sys::nftnl_table>, TrackingError> {
    // SAFETY: allocates an empty object; `Object` frees it.
    let raw = unsafe { sys::nftnl_table_alloc() };
    let table = Object::new(raw, sys::nftnl_table_free, operation, "a table")?;
    // SAFETY: `table` is live and the name is NUL-terminated; libnftnl copies it.
    let result = unsafe {
        sys::nftnl_table_set_str(table.as_ptr(), sys::NFTNL_TABLE_NAME as u16, TABLE.as_ptr())
    };
    copied(result, operation, "the table name")?;
    Ok(table)
}

fn chain(operation: &'static str) -> Result<Object<sys::nftnl_chain>, TrackingError> {
    // SAFETY: allocates an empty object; `Object` frees it.
    let raw = unsafe { sys::nftnl_chain_alloc() };
    let chain = Object::new(raw, sys::nftnl_chain_free, operation, "a chain")?;
    // No hook, priority, type or policy: that is what makes it a regular (non-base) chain.
    for (attribute, value, what) in [
        (sys::NFTNL_CHAIN_TABLE, TABLE, "the chain's table name"),
        (sys::NFTNL_CHAIN_NAME, CHAIN, "the chain name"),
    ] {
        // SAFETY: `chain` is live and `value` is NUL-terminated; libnftnl copies it.
        let result =
            unsafe { sys::nftnl_chain_set_str(chain.as_ptr(), attribute as u16, value.as_ptr()) };
        copied(result, operation, what)?;
    }
    Ok(chain)
}

fn rule(operation: &'static str) -> Result<Object<sys::nftnl_rule>, TrackingError> {
    // SAFETY: allocates an empty object; `Object` frees it.
    let raw = unsafe { sys::nftnl_rule_alloc() };
    let rule = Object::new(raw, sys::nftnl_rule_free, operation, "a rule")?;
    for (attribute, value, what) in [
        (sys::NFTNL_RULE_TABLE, TABLE, "the rule's table name"),
        (sys::NFTNL_RULE_CHAIN, CHAIN, "the rule's chain name"),
    ] {
        // SAFETY: `rule` is live and `value` is NUL-terminated; libnftnl copies it.
        let result =
            unsafe { sys::nftnl_rule_set_str(rule.as_ptr(), attribute as u16, value.as_ptr()) };
        copied(result, operation, what)?;
    }

    // `ct state != 0`, encoded as `nft` encodes it: load the state into register 1, compare.
    // Only the `ct` load matters: creating it takes the namespace's conntrack reference. The
    // comparison is there for people: `nft` cannot print a bare load (it lists an empty rule,
    // which `nft list ruleset` then `nft -f` silently drops), but prints this one as
    // `ct state != 0x0` and restores it.
    let ct = expression(c"ct", operation, "a ct expression")?;
    // SAFETY: `ct` is a live ct expression; both attributes are u32 values it copies.
    unsafe {
        let key = libc::NFT_CT_STATE as u32;
        sys::nftnl_expr_set_u32(ct.as_ptr(), sys::NFTNL_EXPR_CT_KEY as u16, key);
        let register = libc::NFT_REG_1 as u32;
        sys::nftnl_expr_set_u32(ct.as_ptr(), sys::NFTNL_EXPR_CT_DREG as u16, register);
    }
    add_expression(&rule, ct);

    let cmp = expression(c"cmp", operation, "a cmp expression")?;
    // SAFETY: `cmp` is a live cmp expression; both attributes are u32 values it copies.
    unsafe {
        let register = libc::NFT_REG_1 as u32;
        sys::nftnl_expr_set_u32(cmp.as_ptr(), sys::NFTNL_EXPR_CMP_SREG as u16, register);
        let op = libc::NFT_CMP_NEQ as u32;
        sys::nftnl_expr_set_u32(cmp.as_ptr(), sys::NFTNL_EXPR_CMP_OP as u16, op);
    }
    // The state is a 32-bit mask; zero has the same bytes in either byte order.
    let zero = [0u8; 4];
    let attribute = sys::NFTNL_EXPR_CMP_DATA as u16;
    // SAFETY: `cmp` is live and `zero` is valid for the 4 bytes passed; libnftnl copies them.
    let result = unsafe { sys::nftnl_expr_set(cmp.as_ptr(), attribute, zero.as_ptr().cast(), 4) };
    copied(result, operation, "the comparison value")?;
    add_expression(&rule, cmp);

    // A comment, so that whoever lists the ruleset knows what the rule is for.
    // SAFETY: allocates an empty buffer; `Object` frees it.
    let raw = unsafe { sys::nftnl_udata_buf_alloc(libc::NFT_USERDATA_MAXLEN as u32) };
    let userdata = Object::new(raw, sys::nftnl_udata_buf_free, operation, "a rule comment")?;
    let kind = sys::NFTNL_UDATA_RULE_COMMENT as u8;
    // SAFETY: `userdata` is live and the comment is NUL-terminated and shorter than the
    // buffer; libnftnl copies it.
    if !unsafe { sys::nftnl_udata_put_strz(userdata.as_ptr(), kind, COMMENT.as_ptr()) } {
        return Err(TrackingError::Allocation {
            operation,
            what: "the rule comment",
        });
    }
    // SAFETY: `userdata` is live; its data pointer and length describe the bytes written.
    let (data, length) = unsafe {
        (
            sys::nftnl_udata_buf_data(userdata.as_ptr()),
            sys::nftnl_udata_buf_len(userdata.as_ptr()),
        )
    };
    let attribute = sys::NFTNL_RULE_USERDATA as u16;
    // SAFETY: `rule` is live and `data` is valid for `length` bytes; libnftnl copies them.
    let result = unsafe { sys::nftnl_rule_set_data(rule.as_ptr(), attribute, data, length) };
    copied(result, operation, "the rule comment")?;
    Ok(rule)
}

/// Allocates an expression of the type `name` (NULL also when libnftnl knows no such type).
fn expression(
    name: &CStr,
    operation: &'static str,
    what: &'static str,
) -> Result<Object<sys::nftnl_expr>, TrackingError> {
    // SAFETY: looks up the expression type by a NUL-terminated name; `Object` frees the result.
    let raw = unsafe { sys::nftnl_expr_alloc(name.as_ptr()) };
    Object::new(raw, sys::nftnl_expr_free, operation, what)
}

/// Appends `expression` to `rule`, which takes it over.
fn add_expression(rule: &Object<sys::nftnl_rule>, expression: Object<sys::nftnl_expr>) {
    // SAFETY: both are live; the rule takes ownership of the expression and frees it with
    // itself, which is why `into_raw` gives ours up.
    unsafe { sys::nftnl_rule_add_expr(rule.as_ptr(), expression.into_raw()) };
}

/// The object a message carries.
enum Payload<'a> {
    Table(&'a Object<sys::nftnl_table>),
    Chain(&'a Object<sys::nftnl_chain>),
    Rule(&'a Object<sys::nftnl_rule>),
}

/// An nftables transaction being built: `NFNL_MSG_BATCH_BEGIN`, messages, `..._END`.
struct Batch {
    raw: NonNull<sys::nftnl_batch>,
    operation: &'static str,
    next_sequence: u32,
    /// The sequence number and step of every message after the begin marker.
    steps: Vec<(u32, Step)>,
}

impl Batch {
    /// Allocates a batch and writes its begin marker.
    fn new(operation: &'static str) -> Result<Self, TrackingError> {
        // SAFETY: allocates a batch with one page; `Drop` frees it.
        let raw = unsafe { sys::nftnl_batch_alloc(PAGE_SIZE, PAGE_OVERRUN) };
        let Some(raw) = NonNull::new(raw) else {
            return Err(TrackingError::Allocation {
                operation,
                what: "a batch",
            });
        };
        let mut batch = Batch {
            raw,
            operation,
            next_sequence: 1,
            steps: Vec::new(),
        };
        let sequence = batch.take_sequence();
        let position = batch.next_message();
        // SAFETY: `position` has room for a message of up to PAGE_OVERRUN bytes (see
        // `next_message`); the marker is a header and an nfgenmsg.
        unsafe { sys::nftnl_batch_begin(position, sequence) };
        batch.advance()?;
        Ok(batch)
    }

    /// Appends the message of `step` carrying `payload`, asking for an acknowledgement.
    fn put(&mut self, payload: Payload<'_>, step: Step) -> Result<(), TrackingError> {
        let sequence = self.take_sequence();
        let (message, flags) = step.message();
        let flags = flags | libc::NLM_F_ACK as u16;
        let position = self.next_message();
        // SAFETY: `position` has room for a message of up to PAGE_OVERRUN bytes (see
        // `next_message`), and ours are far smaller. The payload objects are live and only
        // read.
        unsafe {
            let header = sys::nftnl_nlmsg_build_hdr(position, message, FAMILY, flags, sequence);
            match payload {
                Payload::Table(table) => {
                    sys::nftnl_table_nlmsg_build_payload(header, table.as_ptr())
                }
                Payload::Chain(chain) => {
                    sys::nftnl_chain_nlmsg_build_payload(header, chain.as_ptr())
                }
                Payload::Rule(rule) => sys::nftnl_rule_nlmsg_build_payload(header, rule.as_ptr()),
            }
        }
        self.advance()?;
        self.steps.push((sequence, step));
        Ok(())
    }

    /// Writes the end marker and returns the transaction to send.
    fn finish(mut self) -> Result<Transaction, TrackingError> {
        let sequence = self.take_sequence();
        let position = self.next_message();
        // SAFETY: as for the begin marker in `new`.
        unsafe { sys::nftnl_batch_end(position, sequence) };
        self.advance()?;

        // SAFETY: the batch is live.
        let pages = unsafe { sys::nftnl_batch_iovec_len(self.raw.as_ptr()) };
        let pages = u32::try_from(pages).unwrap_or(0);
        let empty = sys::libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        let mut iovecs = vec![empty; pages as usize];
        // SAFETY: `iovecs` has room for the `pages` entries libnftnl fills in.
        unsafe { sys::nftnl_batch_iovec(self.raw.as_ptr(), iovecs.as_mut_ptr(), pages) };
        // The kernel must receive the transaction as one datagram, so the pages are joined.
        let mut bytes = Vec::new();
        for iovec in &iovecs {
            if iovec.iov_base.is_null() {
                continue;
            }
            // SAFETY: libnftnl points each entry at the written part of a page, which the
            // batch owns and keeps alive until it is dropped at the end of this function. All
            // of it is initialised, padding included, thanks to `next_message`.
            let page =
                unsafe { std::slice::from_raw_parts(iovec.iov_base.cast::<u8>(), iovec.iov_len) };
            bytes.extend_from_slice(page);
        }
        let steps = std::mem::take(&mut self.steps);
        Ok(Transaction { bytes, steps })
    }

    fn take_sequence(&mut self) -> u32 {
        let sequence = self.next_sequence;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        sequence
    }

    /// Where the next message goes, with the PAGE_OVERRUN bytes from there zeroed.
    ///
    /// The pages come from `malloc`, and libmnl (1.0.4 at least) does not write the padding
    /// that aligns an attribute. Unzeroed, that padding would reach the kernel as stray heap
    /// bytes, and `finish` would read uninitialised memory when it copies the pages.
    fn next_message(&mut self) -> *mut c_char {
        // SAFETY: the batch is live; this only reads its current write position.
        let position = unsafe { sys::nftnl_batch_buffer(self.raw.as_ptr()) }.cast::<u8>();
        // SAFETY: libnftnl allocates every page with PAGE_SIZE + PAGE_OVERRUN bytes and keeps
        // the write position within the first PAGE_SIZE (a message that crosses that limit is
        // moved to a new page), so the PAGE_OVERRUN bytes from the position are in bounds.
        unsafe { std::ptr::write_bytes(position, 0, PAGE_OVERRUN as usize) };
        position.cast()
    }

    /// Moves past the message just written (to a new page when it overflowed this one).
    fn advance(&mut self) -> Result<(), TrackingError> {
        // SAFETY: the batch is live and a complete message was just written at its current
        // position.
        if unsafe { sys::nftnl_batch_update(self.raw.as_ptr()) } < 0 {
            return Err(TrackingError::Allocation {
                operation: self.operation,
                what: "a batch page",
            });
        }
        Ok(())
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // SAFETY: `raw` came from `nftnl_batch_alloc`, is owned by this value only, and is
        // freed exactly once, with its pages.
        unsafe { sys::nftnl_batch_free(self.raw.as_ptr()) }
    }
}

/// A finished batch.
struct Transaction {
    /// The messages, to be sent as one datagram.
    bytes: Vec<u8>,
    /// The sequence number and step of every message that asks for an acknowledgement.
    steps: Vec<(u32, Step)>,
}

/// Sends the transaction and checks that the kernel accepted every step.
fn transact(operation: &'static str, batch: Batch) -> Result<(), TrackingError> {
    let Transaction {
        bytes: request,
        steps,
    } = batch.finish()?;
    let socket =
        mnl::Socket::new(mnl::Bus::Netfilter).map_err(|e| TrackingError::io(operation, e))?;
    let sent = socket
        .send(&request)
        .map_err(|e| TrackingError::io(operation, e))?;
    if sent != request.len() {
        return Err(TrackingError::Io {
            operation,
            source: io::Error::new(io::ErrorKind::WriteZero, "the transaction was sent in part"),
        });
    }

    // The kernel processes a netlink request inside `send`, so every answer is queued by now
    // (this is what `nft` relies on too). Reading without blocking until the queue is empty
    // collects them all and cannot hang on an answer that will never come.
    crate::socket::set_nonblocking(socket.as_raw_fd(), true)
        .map_err(|e| TrackingError::io(operation, e))?;
    let mut answers = Answers::new(operation, &steps);
    let mut buffer = AlignedBuffer::new(RECEIVE_BUFFER);
    loop {
        match socket.recv_raw(buffer.bytes_mut()) {
            Ok(received) => answers.read(&buffer.bytes()[..received])?,
            Err(error) => match error.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => break,
                _ => return Err(TrackingError::io(operation, error)),
            },
        }
    }
    answers.complete()
}

/// The kernel's answers to a transaction, matched to its steps by sequence number.
///
/// nfnetlink answers every message that asks for an acknowledgement, with errno 0 or the
/// error, once the whole batch has been processed. A failure of the batch as a whole (no
/// privilege, no nf_tables, a failed commit) is answered against the begin marker, and comes
/// first.
struct Answers<'a> {
    operation: &'static str,
    steps: &'a [(u32, Step)],
    acknowledged: Vec<bool>,
}

impl<'a> Answers<'a> {
    fn new(operation: &'static str, steps: &'a [(u32, Step)]) -> Self {
        Answers {
            operation,
            steps,
            acknowledged: vec![false; steps.len()],
        }
    }

    /// Takes in one received buffer; fails on the first error the kernel reports.
    fn read(&mut self, buffer: &[u8]) -> Result<(), TrackingError> {
        let parse = |source| TrackingError::Parse {
            operation: self.operation,
            source,
        };
        for message in frames(buffer) {
            let message = message.map_err(parse)?;
            let sequence = Header::parse(message).map_err(parse)?.sequence;
            let index = self.steps.iter().position(|(s, _)| *s == sequence);
            match parse_message(message).map_err(parse)? {
                Message::Ack => {
                    if let Some(answered) = index.and_then(|i| self.acknowledged.get_mut(i)) {
                        *answered = true;
                    }
                }
                Message::Error(errno) => {
                    let step = index
                        .and_then(|i| self.steps.get(i))
                        .map_or(Step::Transaction, |(_, step)| *step);
                    return Err(TrackingError::rejected(self.operation, step, errno));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Fails when a step got no answer at all.
    fn complete(&self) -> Result<(), TrackingError> {
        match self.acknowledged.iter().position(|answered| !answered) {
            Some(index) => Err(TrackingError::Unanswered {
                operation: self.operation,
                step: self
                    .steps
                    .get(index)
                    .map_or(Step::Transaction, |s| s.1)
                    .describe(),
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPERATION: &str = "testing";
    const STEPS: [(u32, Step); 3] = [
        (2, Step::AddTable),
        (3, Step::DeleteTable),
        (4, Step::AddRule),
    ];

    /// An `NLMSG_ERROR` answer to the message with `sequence`, as the kernel builds it.
    fn answer(sequence: u32, errno: i32) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&36u32.to_ne_bytes());
        bytes.extend_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
        bytes.extend_from_slice(&0u16.to_ne_bytes());
        bytes.extend_from_slice(&sequence.to_ne_bytes());
        bytes.extend_from_slice(&0u32.to_ne_bytes());
        bytes.extend_from_slice(&(-errno).to_ne_bytes());
        // The request's header, echoed.
        bytes.extend_from_slice(&[0; 16]);
        bytes
    }

    #[test]
    fn names_agree() {
        assert_eq!(TABLE.to_str(), Ok(TABLE_NAME));
        assert_eq!(CHAIN.to_str(), Ok(CHAIN_NAME));
    }

    #[test]
    fn every_step_acknowledged_is_success() {
        let mut answers = Answers::new(OPERATION, &STEPS);
        let mut buffer = answer(2, 0);
        buffer.extend(answer(3, 0));
        answers.read(&buffer).unwrap();
        assert!(matches!(
            answers.complete(),
            Err(TrackingError::Unanswered { step, .. }) if step == Step::AddRule.describe()
        ));
        answers.read(&answer(4, 0)).unwrap();
        answers.complete().unwrap();
    }

    #[test]
    fn an_error_names_its_step() {
        let mut answers = Answers::new(OPERATION, &STEPS);
        let error = answers.read(&answer(3, libc::EBUSY)).unwrap_err();
        assert!(matches!(
            &error,
            TrackingError::Kernel { step, source, .. }
                if *step == Step::DeleteTable.describe() && source.raw_os_error() == Some(libc::EBUSY)
        ));
    }

    #[test]
    fn permission_errors_say_what_is_needed() {
        let mut answers = Answers::new(OPERATION, &STEPS);
        let error = answers.read(&answer(1, libc::EPERM)).unwrap_err();
        assert!(matches!(error, TrackingError::PermissionDenied { .. }));
        assert!(error.to_string().contains("CAP_NET_ADMIN"));
    }

    #[test]
    fn missing_features_are_named() {
        let error = TrackingError::rejected(OPERATION, Step::Transaction, libc::EOPNOTSUPP);
        assert!(
            matches!(error, TrackingError::Unsupported { feature, .. } if feature.contains("CONFIG_NF_TABLES"))
        );
        let error = TrackingError::rejected(OPERATION, Step::AddRule, libc::ENOENT);
        assert!(
            matches!(error, TrackingError::Unsupported { feature, .. } if feature.contains("CONFIG_NFT_CT"))
        );
    }

    #[test]
    fn malformed_answers_are_errors_not_panics() {
        let mut answers = Answers::new(OPERATION, &STEPS);
        let whole = answer(2, 0);
        for cut in 0..whole.len() {
            let _ = answers.read(&whole[..cut]);
        }
        assert!(matches!(
            answers.read(&whole[..20]),
            Err(TrackingError::Parse { .. })
        ));
    }

    #[test]
    fn the_transaction_is_one_well_formed_batch() {
        let table = table(OPERATION).unwrap();
        let mut batch = Batch::new(OPERATION).unwrap();
        batch.put(Payload::Table(&table), Step::AddTable).unwrap();
        batch
            .put(Payload::Table(&table), Step::DeleteTable)
            .unwrap();
        let Transaction { bytes, steps } = batch.finish().unwrap();
        assert_eq!(steps, vec![(2, Step::AddTable), (3, Step::DeleteTable)]);

        let types: Vec<_> = frames(&bytes)
            .map(|message| Header::parse(message.unwrap()).unwrap())
            .map(|h| {
                (
                    h.message_type,
                    h.flags & libc::NLM_F_ACK as u16 != 0,
                    h.sequence,
                )
            })
            .collect();
        let begin = libc::NFNL_MSG_BATCH_BEGIN as u16;
        let end = libc::NFNL_MSG_BATCH_END as u16;
        let new = nft_message(libc::NFT_MSG_NEWTABLE);
        let delete = nft_message(libc::NFT_MSG_DELTABLE);
        assert_eq!(
            types,
            [
                (begin, false, 1),
                (new, true, 2),
                (delete, true, 3),
                (end, false, 4)
            ]
        );
        let name = bytes
            .windows(TABLE_NAME.len())
            .filter(|w| *w == TABLE_NAME.as_bytes());
        assert_eq!(name.count(), 2);
    }
}
