//! The ruleset of the tracking switch, built with libnftnl: the table, its hookless chain and
//! the `ct state` rule, each encoded as one nf_tables message.
//!
//! Every call into libnftnl of this crate is in this file. libnftnl allocates each object and
//! copies every value set on it; an object is freed when its Rust owner drops it. Encoding
//! writes a message header and the object's attributes into a buffer this file provides and
//! zeroes, of a size fixed here: libnftnl (through libmnl) writes attributes without knowing
//! the buffer's size, so the buffer is far larger than any message these objects make (a
//! unit test holds every message to a quarter of it). Nothing relies on how libnftnl
//! allocates its own memory.

use std::ffi::{CStr, c_int};
use std::ptr::NonNull;

use nftnl_sys as sys;

use crate::error::Error;
use crate::socket::AlignedBuffer;

/// The shared table's name as libnftnl takes it (a unit test checks it against `TABLE_NAME`).
pub(super) const TABLE: &CStr = c"conntrack_exporter";
/// The chain's name as libnftnl takes it.
pub(super) const CHAIN: &CStr = c"track_connections";

/// The rule's comment, shown by `nft list ruleset`.
const COMMENT: &CStr =
    c"conntrack_exporter: keeps connection tracking on (no hook: sees no packets)";

/// `NFPROTO_INET`: one table for IPv4 and IPv6, so one rule enables both.
const FAMILY: u16 = libc::NFPROTO_INET as u16;

/// Room for one encoded message. The largest, the rule's, is a few hundred bytes: constant
/// names, two expressions and the comment.
const MESSAGE_ROOM: usize = 4096;

/// A libnftnl object, freed when dropped unless handed over to another.
struct Object<T> {
    raw: NonNull<T>,
    free: unsafe extern "C" fn(*const T),
}

impl<T> Object<T> {
    /// Takes ownership of what an `nftnl_*_alloc` returned; `None` when it returned NULL
    /// (out of memory, or for an expression, an unknown type).
    ///
    /// # Safety
    ///
    /// `raw` is NULL or an object that nothing else owns and that `free` frees.
    unsafe fn adopt(raw: *mut T, free: unsafe extern "C" fn(*const T)) -> Option<Self> {
        NonNull::new(raw).map(|raw| Object { raw, free })
    }

    fn as_ptr(&self) -> *mut T {
        self.raw.as_ptr()
    }

    /// Gives up ownership, for a libnftnl call that takes the object over.
    fn into_raw(self) -> *mut T {
        let raw = self.raw.as_ptr();
        std::mem::forget(self);
        raw
    }
}

impl<T> Drop for Object<T> {
    fn drop(&mut self) {
        // SAFETY: `raw` came from the allocator matching `free` (see `adopt`), is owned by
        // this value only, and is freed exactly once.
        unsafe { (self.free)(self.raw.as_ptr()) }
    }
}

/// An `inet` table.
pub(super) struct Table(Object<sys::nftnl_table>);

/// Its chain, attached to no hook.
pub(super) struct Chain(Object<sys::nftnl_chain>);

/// The chain's one rule, `ct state != 0x0`, with its comment.
pub(super) struct Rule(Object<sys::nftnl_rule>);

/// An object to encode as a message.
#[derive(Clone, Copy)]
pub(super) enum Payload<'a> {
    /// A table message.
    Table(&'a Table),
    /// A chain message.
    Chain(&'a Chain),
    /// A rule message.
    Rule(&'a Rule),
}

fn allocation(operation: &'static str, what: &'static str) -> Error {
    Error::Allocation { operation, what }
}

/// Fails when a libnftnl setter (which copies its value) could not allocate the copy.
fn copied(result: c_int, operation: &'static str, what: &'static str) -> Result<(), Error> {
    if result < 0 {
        Err(allocation(operation, what))
    } else {
        Ok(())
    }
}

impl Table {
    /// The table `name` with the `NFT_TABLE_*` `flags` (0 for none).
    pub(super) fn new(operation: &'static str, name: &CStr, flags: u32) -> Result<Table, Error> {
        let (name_attribute, flags_attribute) =
            (sys::NFTNL_TABLE_NAME as u16, sys::NFTNL_TABLE_FLAGS as u16);
        // SAFETY: the allocator returns NULL or a new table that `nftnl_table_free` frees;
        // the table is live when its attributes are set, and libnftnl copies the
        // NUL-terminated name.
        let (table, named) = unsafe {
            let Some(table) = Object::adopt(sys::nftnl_table_alloc(), sys::nftnl_table_free) else {
                return Err(allocation(operation, "a table"));
            };
            let named = sys::nftnl_table_set_str(table.as_ptr(), name_attribute, name.as_ptr());
            if flags != 0 {
                sys::nftnl_table_set_u32(table.as_ptr(), flags_attribute, flags);
            }
            (table, named)
        };
        copied(named, operation, "the table name")?;
        Ok(Table(table))
    }
}

impl Chain {
    /// The chain in `table`. No hook, priority, type or policy: that is what makes it a
    /// regular (non-base) chain.
    pub(super) fn new(operation: &'static str, table_name: &CStr) -> Result<Chain, Error> {
        let (table, name) = (sys::NFTNL_CHAIN_TABLE as u16, sys::NFTNL_CHAIN_NAME as u16);
        // SAFETY: the allocator returns NULL or a new chain that `nftnl_chain_free` frees;
        // the chain is live when its names are set, and libnftnl copies the NUL-terminated
        // names.
        let (chain, named) = unsafe {
            let Some(chain) = Object::adopt(sys::nftnl_chain_alloc(), sys::nftnl_chain_free) else {
                return Err(allocation(operation, "a chain"));
            };
            let named = [
                sys::nftnl_chain_set_str(chain.as_ptr(), table, table_name.as_ptr()),
                sys::nftnl_chain_set_str(chain.as_ptr(), name, CHAIN.as_ptr()),
            ];
            (chain, named)
        };
        copied(named[0], operation, "the chain's table name")?;
        copied(named[1], operation, "the chain name")?;
        Ok(Chain(chain))
    }
}

impl Rule {
    /// `ct state != 0`, encoded as `nft` encodes it: load the state into register 1,
    /// compare. Only the `ct` load matters: creating it takes the namespace's conntrack
    /// reference. The comparison is there for people: `nft` cannot print a bare load (it
    /// lists an empty rule, which `nft list ruleset` then `nft -f` silently drops), but
    /// prints this one as `ct state != 0x0` and restores it.
    pub(super) fn new(operation: &'static str, table_name: &CStr) -> Result<Rule, Error> {
        let (table, chain) = (sys::NFTNL_RULE_TABLE as u16, sys::NFTNL_RULE_CHAIN as u16);
        let userdata = comment_userdata();
        let userdata_length = userdata.len() as u32;
        let userdata_attribute = sys::NFTNL_RULE_USERDATA as u16;
        // SAFETY: the allocator returns NULL or a new rule that `nftnl_rule_free` frees; the
        // rule is live when its attributes are set, and libnftnl copies the NUL-terminated
        // names and the `userdata_length` bytes of `userdata`.
        let (rule, set) = unsafe {
            let Some(rule) = Object::adopt(sys::nftnl_rule_alloc(), sys::nftnl_rule_free) else {
                return Err(allocation(operation, "a rule"));
            };
            let set = [
                sys::nftnl_rule_set_str(rule.as_ptr(), table, table_name.as_ptr()),
                sys::nftnl_rule_set_str(rule.as_ptr(), chain, CHAIN.as_ptr()),
                sys::nftnl_rule_set_data(
                    rule.as_ptr(),
                    userdata_attribute,
                    userdata.as_ptr().cast(),
                    userdata_length,
                ),
            ];
            (rule, set)
        };
        copied(set[0], operation, "the rule's table name")?;
        copied(set[1], operation, "the rule's chain name")?;
        copied(set[2], operation, "the rule comment")?;
        let rule = Rule(rule);
        rule.add(ct_state_load(operation)?);
        rule.add(not_zero_comparison(operation)?);
        Ok(rule)
    }

    /// Appends `expression`, which the rule takes over and frees with itself.
    fn add(&self, expression: Object<sys::nftnl_expr>) {
        // SAFETY: both are live; the rule takes ownership of the expression, which is why
        // `into_raw` gives ours up.
        unsafe { sys::nftnl_rule_add_expr(self.0.as_ptr(), expression.into_raw()) };
    }
}

/// The rule's user data: the comment as one type-length-value record (`struct nftnl_udata`:
/// type and length bytes, then the NUL-terminated text), the layout `nft` reads comments from.
fn comment_userdata() -> Vec<u8> {
    let text = COMMENT.to_bytes_with_nul();
    let length = u8::try_from(text.len()).expect("the comment fits one record");
    let mut record = vec![sys::NFTNL_UDATA_RULE_COMMENT as u8, length];
    record.extend_from_slice(text);
    record
}

/// `ct state` loaded into register 1.
fn ct_state_load(operation: &'static str) -> Result<Object<sys::nftnl_expr>, Error> {
    let (key, register) = (
        sys::NFTNL_EXPR_CT_KEY as u16,
        sys::NFTNL_EXPR_CT_DREG as u16,
    );
    // SAFETY: the allocator returns NULL or a new expression that `nftnl_expr_free` frees;
    // it is live when its two u32 attributes are set.
    unsafe {
        let ct = Object::adopt(sys::nftnl_expr_alloc(c"ct".as_ptr()), sys::nftnl_expr_free);
        let ct = ct.ok_or(allocation(operation, "a ct expression"))?;
        sys::nftnl_expr_set_u32(ct.as_ptr(), key, libc::NFT_CT_STATE as u32);
        sys::nftnl_expr_set_u32(ct.as_ptr(), register, libc::NFT_REG_1 as u32);
        Ok(ct)
    }
}

/// Register 1 compared with zero, true when it differs.
fn not_zero_comparison(operation: &'static str) -> Result<Object<sys::nftnl_expr>, Error> {
    let (register, op, data) = (
        sys::NFTNL_EXPR_CMP_SREG as u16,
        sys::NFTNL_EXPR_CMP_OP as u16,
        sys::NFTNL_EXPR_CMP_DATA as u16,
    );
    // The state is a 32-bit mask; zero has the same bytes in either byte order.
    let zero = [0u8; 4];
    // SAFETY: the allocator returns NULL or a new expression that `nftnl_expr_free` frees;
    // it is live when its attributes are set, and libnftnl copies the 4 bytes of `zero`.
    let (cmp, set) = unsafe {
        let Some(cmp) = Object::adopt(sys::nftnl_expr_alloc(c"cmp".as_ptr()), sys::nftnl_expr_free)
        else {
            return Err(allocation(operation, "a cmp expression"));
        };
        sys::nftnl_expr_set_u32(cmp.as_ptr(), register, libc::NFT_REG_1 as u32);
        sys::nftnl_expr_set_u32(cmp.as_ptr(), op, libc::NFT_CMP_NEQ as u32);
        let set = sys::nftnl_expr_set(cmp.as_ptr(), data, zero.as_ptr().cast(), 4);
        (cmp, set)
    };
    copied(set, operation, "the comparison value")?;
    Ok(cmp)
}

/// Encodes `payload` as one nf_tables message: `message_type`, `NLM_F_REQUEST | flags`,
/// `sequence`, family `inet`.
pub(super) fn encode(
    payload: Payload<'_>,
    message_type: u16,
    flags: u16,
    sequence: u32,
) -> Vec<u8> {
    let mut buffer = AlignedBuffer::new(MESSAGE_ROOM);
    let start = buffer.bytes_mut().as_mut_ptr().cast();
    // SAFETY: `start` points at MESSAGE_ROOM zeroed bytes aligned for `nlmsghdr`, borrowed
    // from `buffer` for this block only; the header and the object's attributes take far less
    // (see `MESSAGE_ROOM`), and the zeroes stand for the attribute padding libmnl may leave
    // unwritten. The object is live and only read.
    unsafe {
        let header = sys::nftnl_nlmsg_build_hdr(start, message_type, FAMILY, flags, sequence);
        match payload {
            Payload::Table(table) => sys::nftnl_table_nlmsg_build_payload(header, table.0.as_ptr()),
            Payload::Chain(chain) => sys::nftnl_chain_nlmsg_build_payload(header, chain.0.as_ptr()),
            Payload::Rule(rule) => sys::nftnl_rule_nlmsg_build_payload(header, rule.0.as_ptr()),
        }
    }
    let bytes = buffer.bytes();
    let length = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    assert!(
        length <= MESSAGE_ROOM,
        "an nf_tables message outgrew its room"
    );
    bytes[..length].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use conntrack_codec::Header;

    #[test]
    fn every_message_fits_a_quarter_of_its_room() {
        let table =
            Table::new("testing", TABLE, crate::tracking_switch::NFT_TABLE_F_OWNER).unwrap();
        let chain = Chain::new("testing", TABLE).unwrap();
        let rule = Rule::new("testing", TABLE).unwrap();
        for payload in [
            Payload::Table(&table),
            Payload::Chain(&chain),
            Payload::Rule(&rule),
        ] {
            let message = encode(payload, 0x0a00, 0, 9);
            let header = Header::parse(&message).unwrap();
            assert_eq!(header.length as usize, message.len());
            assert_eq!(header.sequence, 9);
            assert!(message.len().is_multiple_of(4));
            assert!(message.len() < MESSAGE_ROOM / 4, "{} bytes", message.len());
        }
    }

    #[test]
    fn the_rule_carries_its_names_comment_and_expressions() {
        let rule = Rule::new("testing", TABLE).unwrap();
        let message = encode(Payload::Rule(&rule), 0x0a06, 0, 1);
        let contains = |needle: &[u8]| message.windows(needle.len()).any(|w| w == needle);
        assert!(contains(TABLE.to_bytes_with_nul()));
        assert!(contains(CHAIN.to_bytes_with_nul()));
        assert!(contains(&comment_userdata()));
        assert!(contains(b"ct\0"));
        assert!(contains(b"cmp\0"));
    }

    #[test]
    fn the_comment_is_one_record() {
        let record = comment_userdata();
        assert_eq!(record[0], 0);
        assert_eq!(usize::from(record[1]), record.len() - 2);
        assert_eq!(&record[2..], COMMENT.to_bytes_with_nul());
    }
}
