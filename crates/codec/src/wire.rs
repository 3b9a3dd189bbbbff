//! Numeric constants of the netlink and ctnetlink wire format.
//!
//! They come from the kernel's uapi headers (`linux/netlink.h`,
//! `linux/netfilter/nfnetlink.h`, `linux/netfilter/nfnetlink_conntrack.h`,
//! `linux/netfilter/nf_conntrack_tcp.h`). They are kept here rather than taken from
//! `libc` because the codec links no C library, `libc` does not carry the ctnetlink ones
//! anyway, and one list is easier to check against the headers than two. The multicast
//! group bits belong to the socket side (`ctnetlink`'s event socket).

/// Size of `struct nlmsghdr`.
pub const NLMSG_HDRLEN: usize = 16;
/// Size of `struct nfgenmsg`.
pub const NFGENMSG_LEN: usize = 4;
/// Size of `struct nlattr`.
pub const NLA_HDRLEN: usize = 4;

/// `NLMSG_ERROR`: an error or, with errno 0, an acknowledgement.
pub const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`: the end of a dump.
pub const NLMSG_DONE: u16 = 3;
/// `NLMSG_OVERRUN`: data lost (never sent by current kernels, recognised for completeness).
pub const NLMSG_OVERRUN: u16 = 4;

/// `NLM_F_REQUEST`.
pub const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_MULTI`: part of a multipart reply (a dump).
pub const NLM_F_MULTI: u16 = 0x2;
/// `NLM_F_ACK`.
pub const NLM_F_ACK: u16 = 0x4;
/// `NLM_F_DUMP` (`NLM_F_ROOT | NLM_F_MATCH`).
pub const NLM_F_DUMP: u16 = 0x300;
/// `NLM_F_EXCL`.
pub const NLM_F_EXCL: u16 = 0x200;
/// `NLM_F_CREATE`.
pub const NLM_F_CREATE: u16 = 0x400;

/// Nested attribute flag in `nla_type`.
pub const NLA_F_NESTED: u16 = 0x8000;
/// Mask that strips the flag bits from `nla_type`.
pub const NLA_TYPE_MASK: u16 = 0x3fff;

/// `NFNL_SUBSYS_CTNETLINK`.
pub const NFNL_SUBSYS_CTNETLINK: u16 = 1;
/// `IPCTNL_MSG_CT_NEW`.
pub const IPCTNL_MSG_CT_NEW: u16 = 0;
/// `IPCTNL_MSG_CT_GET`.
pub const IPCTNL_MSG_CT_GET: u16 = 1;
/// `IPCTNL_MSG_CT_DELETE`.
pub const IPCTNL_MSG_CT_DELETE: u16 = 2;
/// `IPCTNL_MSG_CT_GET_STATS_CPU`.
pub const IPCTNL_MSG_CT_GET_STATS_CPU: u16 = 4;
/// `IPCTNL_MSG_CT_GET_STATS`.
pub const IPCTNL_MSG_CT_GET_STATS: u16 = 5;

/// The full netlink message type of a ctnetlink message.
pub const fn ctnetlink_type(message: u16) -> u16 {
    (NFNL_SUBSYS_CTNETLINK << 8) | message
}

/// `NFNETLINK_V0`.
pub const NFNETLINK_V0: u8 = 0;

/// `AF_UNSPEC`: every family, in a dump or flush request.
pub const AF_UNSPEC: u8 = 0;
/// `AF_INET`.
pub const AF_INET: u8 = 2;
/// `AF_INET6`.
pub const AF_INET6: u8 = 10;

/// `enum ctattr_type`.
pub mod cta {
    pub const TUPLE_ORIG: u16 = 1;
    pub const TUPLE_REPLY: u16 = 2;
    pub const STATUS: u16 = 3;
    pub const PROTOINFO: u16 = 4;
    pub const TIMEOUT: u16 = 7;
    pub const MARK: u16 = 8;
    pub const COUNTERS_ORIG: u16 = 9;
    pub const COUNTERS_REPLY: u16 = 10;
    pub const ID: u16 = 12;
    pub const ZONE: u16 = 18;
    pub const TIMESTAMP: u16 = 20;
}

/// `enum ctattr_tuple`.
pub mod tuple {
    pub const IP: u16 = 1;
    pub const PROTO: u16 = 2;
}

/// `enum ctattr_ip`.
pub mod ip {
    pub const V4_SRC: u16 = 1;
    pub const V4_DST: u16 = 2;
    pub const V6_SRC: u16 = 3;
    pub const V6_DST: u16 = 4;
}

/// `enum ctattr_l4proto`.
pub mod proto {
    pub const NUM: u16 = 1;
    pub const SRC_PORT: u16 = 2;
    pub const DST_PORT: u16 = 3;
    pub const ICMP_ID: u16 = 4;
    pub const ICMP_TYPE: u16 = 5;
    pub const ICMP_CODE: u16 = 6;
    pub const ICMPV6_ID: u16 = 7;
    pub const ICMPV6_TYPE: u16 = 8;
    pub const ICMPV6_CODE: u16 = 9;
}

/// `enum ctattr_protoinfo` and its TCP, DCCP and SCTP members.
pub mod protoinfo {
    pub const TCP: u16 = 1;
    pub const DCCP: u16 = 2;
    pub const SCTP: u16 = 3;
    pub const TCP_STATE: u16 = 1;
    pub const DCCP_STATE: u16 = 1;
    pub const DCCP_ROLE: u16 = 2;
    pub const SCTP_STATE: u16 = 1;
    pub const SCTP_VTAG_ORIGINAL: u16 = 2;
    pub const SCTP_VTAG_REPLY: u16 = 3;
}

/// `enum ctattr_counters`.
pub mod counters {
    pub const PACKETS: u16 = 1;
    pub const BYTES: u16 = 2;
    pub const PACKETS_32: u16 = 3;
    pub const BYTES_32: u16 = 4;
}

/// `enum ctattr_tstamp`.
pub mod timestamp {
    pub const START: u16 = 1;
    pub const STOP: u16 = 2;
}

/// `enum ctattr_stats_global`.
pub mod stats_global {
    pub const ENTRIES: u16 = 1;
    pub const MAX_ENTRIES: u16 = 2;
}

/// `enum ctattr_stats_cpu`.
pub mod stats_cpu {
    pub const FOUND: u16 = 2;
    pub const INVALID: u16 = 4;
    pub const INSERT: u16 = 8;
    pub const INSERT_FAILED: u16 = 9;
    pub const DROP: u16 = 10;
    pub const EARLY_DROP: u16 = 11;
    pub const ERROR: u16 = 12;
    pub const SEARCH_RESTART: u16 = 13;
    pub const CLASH_RESOLVE: u16 = 14;
    pub const CHAIN_TOOLONG: u16 = 15;
}
