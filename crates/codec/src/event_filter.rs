//! A classic BPF program for the event socket (`SO_ATTACH_FILTER`) that keeps the events of
//! counted protocols and drops the others in the kernel, before they are queued: on a DNS
//! server or a NAT gateway, events of protocols that are not counted outnumber the counted
//! ones many times over and would fill the queue the counted ones need.
//!
//! The program walks the message's attributes with the kernel's netlink extensions of
//! classic BPF (`SKF_AD_NLATTR` finds an attribute by type from an offset, `SKF_AD_NLATTR_NEST`
//! inside a nested one): `CTA_TUPLE_ORIG` → `CTA_TUPLE_PROTO` → `CTA_PROTO_NUM`, then compares
//! the protocol number with each counted one. Whatever it cannot read (an attribute missing,
//! a message of another shape) it keeps, so that the userspace check, which stays, decides:
//! the filter only ever drops an event whose protocol it has read and found uncounted. NEW,
//! UPDATE and DESTROY events all carry the original tuple, so all three are filtered alike.

use crate::Protocol;

/// One classic BPF instruction, laid out as the kernel's `struct sock_filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instruction {
    /// Operation.
    pub code: u16,
    /// Instructions to skip when a comparison holds.
    pub jt: u8,
    /// Instructions to skip when it does not.
    pub jf: u8,
    /// Operand.
    pub k: u32,
}

/// `BPF_LD | BPF_W | BPF_IMM`: A = k.
pub const LOAD_IMMEDIATE: u16 = 0x00;
/// `BPF_LDX | BPF_W | BPF_IMM`: X = k.
pub const LOAD_X_IMMEDIATE: u16 = 0x01;
/// `BPF_LD | BPF_W | BPF_ABS`: A = the word at k, or with k past `SKF_AD_OFF`, an extension.
pub const LOAD_ABSOLUTE: u16 = 0x20;
/// `BPF_LD | BPF_B | BPF_IND`: A = the byte at X + k.
pub const LOAD_BYTE_INDIRECT: u16 = 0x50;
/// `BPF_JMP | BPF_JEQ | BPF_K`: skip jt instructions if A == k, else jf.
pub const JUMP_IF_EQUAL: u16 = 0x15;
/// `BPF_MISC | BPF_TAX`: X = A.
pub const A_TO_X: u16 = 0x07;
/// `BPF_RET | BPF_K`: keep k bytes of the message (0: drop it).
pub const RETURN: u16 = 0x06;

/// `SKF_AD_OFF + SKF_AD_NLATTR`: A = offset of the attribute of type X found from offset A
/// on, 0 if none.
pub const NETLINK_ATTRIBUTE: u32 = (-0x1000i32 + 12) as u32;
/// `SKF_AD_OFF + SKF_AD_NLATTR_NEST`: A = offset of the attribute of type X nested in the one
/// at offset A, 0 if none.
pub const NESTED_NETLINK_ATTRIBUTE: u32 = (-0x1000i32 + 16) as u32;

/// Offset of a ctnetlink message's first attribute: `nlmsghdr` (16) and `nfgenmsg` (4).
const FIRST_ATTRIBUTE: u32 = 20;
/// Offset of an attribute's payload from its start (`struct nlattr`).
const ATTRIBUTE_PAYLOAD: u32 = 4;
const CTA_TUPLE_ORIG: u32 = 1;
const CTA_TUPLE_PROTO: u32 = 2;
const CTA_PROTO_NUM: u32 = 1;
/// What a kept message returns: all of it.
const KEEP: u32 = u32::MAX;

/// Counted protocols the program can compare with: each comparison jumps over the ones after
/// it to the final "keep", and a jump spans at most 255 instructions.
const MOST_PROTOCOLS: usize = 250;

/// The program that keeps events of the `counted` protocols (and any message it cannot read)
/// and drops the others; `None` when it would drop nothing (every protocol is counted) or
/// when the protocols are too many for one program, in which case nothing is filtered in
/// the kernel.
pub fn protocol_filter(counted: &[Protocol]) -> Option<Vec<Instruction>> {
    let mut protocols: Vec<u8> = counted.iter().map(|protocol| protocol.0).collect();
    protocols.sort_unstable();
    protocols.dedup();
    if protocols.len() == 256 || protocols.len() > MOST_PROTOCOLS {
        return None;
    }
    let statement = |code, k| Instruction {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let mut program = vec![statement(LOAD_IMMEDIATE, FIRST_ATTRIBUTE)];
    // Each step: X = attribute type, A = its offset (searched from A, or nested in A), and
    // keep the message if it is not there. The jumps are fixed below, once the program's
    // length is known.
    let mut to_keep = Vec::new();
    for (search, kind) in [
        (NETLINK_ATTRIBUTE, CTA_TUPLE_ORIG),
        (NESTED_NETLINK_ATTRIBUTE, CTA_TUPLE_PROTO),
        (NESTED_NETLINK_ATTRIBUTE, CTA_PROTO_NUM),
    ] {
        program.push(statement(LOAD_X_IMMEDIATE, kind));
        program.push(statement(LOAD_ABSOLUTE, search));
        to_keep.push(program.len());
        program.push(statement(JUMP_IF_EQUAL, 0));
    }
    program.push(statement(A_TO_X, 0));
    program.push(statement(LOAD_BYTE_INDIRECT, ATTRIBUTE_PAYLOAD));
    for protocol in protocols {
        to_keep.push(program.len());
        program.push(statement(JUMP_IF_EQUAL, u32::from(protocol)));
    }
    program.push(statement(RETURN, 0));
    let keep = program.len();
    program.push(statement(RETURN, KEEP));
    for at in to_keep {
        // At most MOST_PROTOCOLS + 2 instructions away: fits.
        program[at].jt = u8::try_from(keep - at - 1).unwrap_or(u8::MAX);
    }
    Some(program)
}
