//! The tracking switch: an nftables table that switches connection tracking on in the current
//! network namespace, and its removal.
//!
//! Having `nf_conntrack` loaded does not mean that connections are tracked. Current kernels
//! register the conntrack hooks of a network namespace only while something in that
//! namespace needs them: an iptables `conntrack` or `state` match, a NAT rule, an nftables
//! `ct` expression. A host or container without a stateful firewall therefore has an empty
//! conntrack table however busy it is, and an exporter that only reads the table would report
//! no connections at all.
//!
//! Two ways to hold the switch, with the same ruleset: an `inet` table holding one chain,
//! [`CHAIN_NAME`], with one rule, `ct state != 0x0`. What matters is the `ct` expression in
//! it: creating one takes a reference on the namespace's conntrack, for IPv4 and IPv6 in an
//! `inet` table, and that reference is what switches tracking on. It is taken when the rule is
//! added, not when a packet is evaluated, so the chain is a regular one with no hook: it is
//! attached to no hook point, no packet ever traverses it, and it costs nothing per packet.
//! Tracking itself costs what it costs. (The comparison after the load is for people: `nft`
//! cannot print a bare load, so it would list an empty rule.)
//!
//! - [`OwnedSwitch`], what the exporter holds: a table named [`OWNED_TABLE_PREFIX`] followed
//!   by the port id of the netlink socket that created it, with the nftables flag `owner`
//!   (Linux 5.12 and later). The kernel ties such a table to that socket: nobody else may
//!   delete or change it (`nft delete table` fails with "Operation not permitted", `nft flush
//!   ruleset` leaves it), and the kernel deletes it when the socket is closed, however the
//!   process ends, `SIGKILL` included. Port ids are unique in a namespace, so two holders
//!   never share a table, and neither one's exit touches the other's.
//! - [`enable`] and [`disable`]: the table [`TABLE_NAME`] that stays until deleted, for tools
//!   and tests that switch tracking on in a namespace and leave. Older exporters used it as
//!   theirs, so [`disable`] also removes what one of them, killed before it could clean up,
//!   left behind.
//!
//! Each function sends one atomic nftables transaction and touches no other table, chain or
//! rule. [`enable`] is idempotent: the table is created (if absent) and deleted before being
//! built again, so enabling twice still leaves exactly one rule; [`disable`] of a namespace
//! without the table succeeds. Tracking stops only once nothing else in the namespace needs
//! it. Everything here needs `CAP_NET_ADMIN` in the namespace.
//!
//! The objects are built and encoded with libnftnl (see `ruleset.rs`, where every `unsafe`
//! block of this module is); the transaction around them, its sending and the reading of the
//! kernel's answers are plain Rust.

mod ruleset;

use std::ffi::CString;
use std::io;

use conntrack_codec::{Header, Message, ParseError, frames, parse_message};

use crate::error::{Error, Origin};
use crate::socket::{AlignedBuffer, NetlinkSocket, Read};
use ruleset::{Chain, Payload, Rule, Table};

/// Name of the `inet` table that [`enable`] creates and [`disable`] deletes.
pub const TABLE_NAME: &str = "conntrack_exporter";

/// Start of the name of every [`OwnedSwitch`] table; the netlink port id of its holder
/// follows, for example `conntrack_exporter_2131754801`.
pub const OWNED_TABLE_PREFIX: &str = "conntrack_exporter_";

/// Name of the hookless chain inside each table that holds the `ct state` rule.
pub const CHAIN_NAME: &str = "track_connections";

/// `NFT_TABLE_F_OWNER` (linux/netfilter/nf_tables.h): the table belongs to the netlink socket
/// that created it.
const NFT_TABLE_F_OWNER: u32 = 2;

/// Receive buffer for the acknowledgements. An error reply echoes its request, so it can be a
/// few hundred bytes; one datagram never comes close to this.
const RECEIVE_BUFFER: usize = 16 * 1024;

/// Connection tracking switched on in the current network namespace for as long as this
/// value lives, through a table that only it can change or delete.
///
/// It holds the netlink socket that created the table; dropping it closes the socket, and the
/// kernel deletes the table at once. The kernel does the same when the process dies, so a
/// crash or `SIGKILL` leaves nothing behind. The socket is not `Send`: keep the switch on the
/// thread that made it.
pub struct OwnedSwitch {
    /// The socket the table belongs to; never read, only kept open.
    _socket: NetlinkSocket,
    table_name: String,
}

impl OwnedSwitch {
    /// Creates this holder's table `inet conntrack_exporter_<port id>`. Fails with
    /// [`Error::Unsupported`] on a kernel older than 5.12, which cannot tie a table to its
    /// creator.
    pub fn on() -> Result<OwnedSwitch, Error> {
        const OPERATION: &str = "switching connection tracking on";
        let socket = NetlinkSocket::open(mnl::Bus::Netfilter, 0, OPERATION)?;
        let table_name = format!("{OWNED_TABLE_PREFIX}{}", socket.port_id());
        let name = CString::new(table_name.as_str()).expect("a table name without NUL");
        let mut transaction = Transaction::default();
        let table = Table::new(OPERATION, &name, NFT_TABLE_F_OWNER)?;
        transaction.put(Step::AddOwnedTable, Payload::Table(&table));
        transaction.put(
            Step::AddChain,
            Payload::Chain(&Chain::new(OPERATION, &name)?),
        );
        transaction.put(Step::AddRule, Payload::Rule(&Rule::new(OPERATION, &name)?));
        transaction.commit_on(&socket, OPERATION)?;
        Ok(OwnedSwitch {
            _socket: socket,
            table_name,
        })
    }

    /// The name of the `inet` table, as `nft list tables` shows it.
    pub fn table_name(&self) -> &str {
        &self.table_name
    }
}

/// Switches connection tracking on in the current network namespace, for IPv4 and IPv6, until
/// [`disable`] (or the namespace's end).
///
/// Replaces the table [`TABLE_NAME`] with a fresh copy holding one hookless chain and one
/// `ct state != 0x0` rule, in one atomic transaction: calling it again leaves exactly one rule.
/// Connections that were open before are tracked from their next packet on (TCP ones as
/// picked up mid-stream).
pub fn enable() -> Result<(), Error> {
    const OPERATION: &str = "switching connection tracking on";
    let table = Table::new(OPERATION, ruleset::TABLE, 0)?;
    let mut transaction = Transaction::default();
    // Creating before deleting makes the deletion succeed whether or not the table existed;
    // the transaction then builds it again from scratch.
    transaction.put(Step::AddTable, Payload::Table(&table));
    transaction.put(Step::DeleteTable, Payload::Table(&table));
    transaction.put(Step::AddTable, Payload::Table(&table));
    let chain = Chain::new(OPERATION, ruleset::TABLE)?;
    transaction.put(Step::AddChain, Payload::Chain(&chain));
    let rule = Rule::new(OPERATION, ruleset::TABLE)?;
    transaction.put(Step::AddRule, Payload::Rule(&rule));
    transaction.commit(OPERATION)
}

/// Removes the table [`TABLE_NAME`] from the current network namespace, and with it its claim
/// on connection tracking. Returns whether there was one to remove.
///
/// Tracking stops once nothing else in the namespace needs it. The kernel releases the rule
/// after the transaction returns, so it may go on tracking for a moment; entries already in
/// the table stay until they time out.
pub fn disable() -> Result<bool, Error> {
    const OPERATION: &str = "removing table inet conntrack_exporter";
    let table = Table::new(OPERATION, ruleset::TABLE, 0)?;
    let mut transaction = Transaction::default();
    transaction.put(Step::DeleteTable, Payload::Table(&table));
    match transaction.commit(OPERATION) {
        Ok(()) => Ok(true),
        Err(error) if error.is_not_found() => Ok(false),
        Err(error) => Err(error),
    }
}

/// One message of the transaction, named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The batch as a whole: its begin and end markers, and the commit.
    Transaction,
    /// `NFT_MSG_NEWTABLE` (without `NLM_F_EXCL`: no error when it exists).
    AddTable,
    /// `NFT_MSG_NEWTABLE` with the `owner` flag, `NLM_F_EXCL`: the name is new.
    AddOwnedTable,
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
            Step::AddTable => "adding the table",
            Step::AddOwnedTable => "adding a table owned by its socket",
            Step::DeleteTable => "deleting the table",
            Step::AddChain => "adding its chain",
            Step::AddRule => "adding its ct state rule",
        }
    }

    /// The nf_tables message type and the flags besides `NLM_F_REQUEST | NLM_F_ACK`.
    fn message(self) -> (u16, u16) {
        let create = libc::NLM_F_CREATE as u16;
        match self {
            // Never sent as a message of its own: `Transaction` writes the markers.
            Step::Transaction => (0, 0),
            Step::AddTable => (nft_message(libc::NFT_MSG_NEWTABLE), create),
            Step::AddOwnedTable => (
                nft_message(libc::NFT_MSG_NEWTABLE),
                create | libc::NLM_F_EXCL as u16,
            ),
            Step::DeleteTable => (nft_message(libc::NFT_MSG_DELTABLE), 0),
            Step::AddChain => (nft_message(libc::NFT_MSG_NEWCHAIN), create),
            Step::AddRule => (
                nft_message(libc::NFT_MSG_NEWRULE),
                create | libc::NLM_F_APPEND as u16,
            ),
        }
    }

    /// The kernel part an errno from this step says is missing, if any.
    fn missing_feature(self, errno: i32) -> Option<&'static str> {
        match (self, errno) {
            // nfnetlink rejects the batch as a whole when no nf_tables subsystem can be loaded.
            (Step::Transaction, libc::EOPNOTSUPP) => Some("nf_tables (CONFIG_NF_TABLES)"),
            (Step::AddTable | Step::AddOwnedTable, libc::EAFNOSUPPORT) => {
                Some("the nf_tables inet family (CONFIG_NF_TABLES_INET)")
            }
            // Kernels before 5.12 refuse table flags they do not know.
            (Step::AddOwnedTable, libc::EOPNOTSUPP | libc::EINVAL) => {
                Some("nftables tables owned by their socket (Linux 5.12 or later)")
            }
            // An expression type that can be neither found nor loaded is ENOENT.
            (Step::AddRule, libc::ENOENT | libc::EOPNOTSUPP) => {
                Some("the nf_tables ct expression (CONFIG_NFT_CT)")
            }
            _ => None,
        }
    }

    /// The error of the kernel's `errno` answer to this step.
    fn rejected(self, operation: &'static str, errno: i32) -> Error {
        let source = io::Error::from_raw_os_error(errno);
        match Error::from_errno(operation, source, Origin::Kernel) {
            Error::Kernel { operation, source } => match self.missing_feature(errno) {
                Some(feature) => Error::Unsupported {
                    operation,
                    feature,
                    source,
                },
                None => Error::Rejected {
                    operation,
                    step: self.describe(),
                    source,
                },
            },
            refused => refused,
        }
    }
}

/// The netlink message type of an nf_tables message.
const fn nft_message(message: libc::c_int) -> u16 {
    ((libc::NFNL_SUBSYS_NFTABLES as u16) << 8) | message as u16
}

/// An nftables transaction being built: its messages, to be framed by the
/// `NFNL_MSG_BATCH_BEGIN` and `..._END` markers and sent as one datagram.
#[derive(Debug, Default)]
struct Transaction {
    /// The encoded messages after the begin marker.
    messages: Vec<u8>,
    /// The sequence number and step of every message, from 2 on (the begin marker has 1).
    steps: Vec<(u32, Step)>,
}

impl Transaction {
    /// Appends the message of `step` carrying `payload`, asking for an acknowledgement.
    fn put(&mut self, step: Step, payload: Payload<'_>) {
        let sequence = self.steps.len() as u32 + 2;
        let (message_type, flags) = step.message();
        let flags = libc::NLM_F_ACK as u16 | flags;
        let message = ruleset::encode(payload, message_type, flags, sequence);
        self.messages.extend_from_slice(&message);
        self.steps.push((sequence, step));
    }

    /// The whole datagram: the begin marker, the messages, the end marker.
    fn datagram(&self) -> Vec<u8> {
        let end = self.steps.len() as u32 + 2;
        let mut datagram = batch_marker(libc::NFNL_MSG_BATCH_BEGIN, 1);
        datagram.extend_from_slice(&self.messages);
        datagram.extend(batch_marker(libc::NFNL_MSG_BATCH_END, end));
        datagram
    }

    /// Sends the transaction over a socket of its own and checks that the kernel accepted
    /// every step.
    fn commit(self, operation: &'static str) -> Result<(), Error> {
        let socket = NetlinkSocket::open(mnl::Bus::Netfilter, 0, operation)?;
        self.commit_on(&socket, operation)
    }

    /// Sends the transaction over `socket`, which owns what it creates with the `owner` flag,
    /// and checks that the kernel accepted every step.
    fn commit_on(self, socket: &NetlinkSocket, operation: &'static str) -> Result<(), Error> {
        socket.send(operation, &self.datagram())?;
        // The kernel processes a netlink request inside `send`, so every answer is queued by
        // now (this is what `nft` relies on too). Reading without waiting until the queue is
        // empty collects them all and cannot hang on an answer that will never come.
        let mut answers = Answers::new(operation, &self.steps);
        let mut buffer = AlignedBuffer::new(RECEIVE_BUFFER);
        loop {
            match socket.read(operation, &mut buffer, libc::MSG_DONTWAIT)? {
                Read::Data(received) => answers.read(&buffer.bytes()[..received])?,
                Read::Overrun => return Err(Read::lost_reply(operation)),
                Read::Empty => break,
            }
        }
        answers.complete()
    }
}

/// A batch marker: a bare header and `nfgenmsg` addressed to the nf_tables subsystem, as
/// `nftnl_batch_begin` and `nftnl_batch_end` write them.
fn batch_marker(message_type: libc::c_int, sequence: u32) -> Vec<u8> {
    let length = 20u32;
    let mut marker = Vec::with_capacity(20);
    marker.extend_from_slice(&length.to_ne_bytes());
    marker.extend_from_slice(&(message_type as u16).to_ne_bytes());
    marker.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    marker.extend_from_slice(&sequence.to_ne_bytes());
    marker.extend_from_slice(&0u32.to_ne_bytes());
    marker.push(libc::AF_UNSPEC as u8);
    marker.push(0); // NFNETLINK_V0
    marker.extend_from_slice(&(libc::NFNL_SUBSYS_NFTABLES as u16).to_be_bytes());
    marker
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
    fn read(&mut self, buffer: &[u8]) -> Result<(), Error> {
        let parse = |source: ParseError| Error::Parse {
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
                    return Err(step.rejected(self.operation, errno));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Fails when a step got no answer at all.
    fn complete(&self) -> Result<(), Error> {
        match self.acknowledged.iter().position(|answered| !answered) {
            Some(index) => Err(Error::Unanswered {
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
        assert_eq!(ruleset::TABLE.to_str(), Ok(TABLE_NAME));
        assert_eq!(ruleset::CHAIN.to_str(), Ok(CHAIN_NAME));
    }

    #[test]
    fn every_step_acknowledged_is_success() {
        let mut answers = Answers::new(OPERATION, &STEPS);
        let mut buffer = answer(2, 0);
        buffer.extend(answer(3, 0));
        answers.read(&buffer).unwrap();
        assert!(matches!(
            answers.complete(),
            Err(Error::Unanswered { step, .. }) if step == Step::AddRule.describe()
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
            Error::Rejected { step, source, .. }
                if *step == Step::DeleteTable.describe() && source.raw_os_error() == Some(libc::EBUSY)
        ));
    }

    #[test]
    fn permission_errors_say_what_is_needed() {
        let mut answers = Answers::new(OPERATION, &STEPS);
        let error = answers.read(&answer(1, libc::EPERM)).unwrap_err();
        assert!(matches!(error, Error::PermissionDenied { .. }));
        assert!(error.to_string().contains("CAP_NET_ADMIN"));
    }

    #[test]
    fn missing_features_are_named() {
        let error = Step::Transaction.rejected(OPERATION, libc::EOPNOTSUPP);
        assert!(
            matches!(error, Error::Unsupported { feature, .. } if feature.contains("CONFIG_NF_TABLES"))
        );
        let error = Step::AddRule.rejected(OPERATION, libc::ENOENT);
        assert!(
            matches!(error, Error::Unsupported { feature, .. } if feature.contains("CONFIG_NFT_CT"))
        );
        for errno in [libc::EOPNOTSUPP, libc::EINVAL] {
            let error = Step::AddOwnedTable.rejected(OPERATION, errno);
            assert!(error.to_string().contains("Linux 5.12 or later"), "{error}");
            let error = Step::AddTable.rejected(OPERATION, errno);
            assert!(matches!(error, Error::Rejected { .. }), "{error}");
        }
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
            Err(Error::Parse { .. })
        ));
    }

    #[test]
    fn the_transaction_is_one_well_formed_batch() {
        let table = Table::new(OPERATION, ruleset::TABLE, 0).unwrap();
        let mut transaction = Transaction::default();
        transaction.put(Step::AddTable, Payload::Table(&table));
        transaction.put(Step::DeleteTable, Payload::Table(&table));
        assert_eq!(
            transaction.steps,
            vec![(2, Step::AddTable), (3, Step::DeleteTable)]
        );
        let bytes = transaction.datagram();

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
