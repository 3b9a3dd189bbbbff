//! The four state groups the exporter reports, and how each protocol's states map onto them.

use conntrack_codec::{Status, TcpState};

/// A coarse connection state, as the metrics report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StateGroup {
    /// Handshake in progress.
    Opening = 0,
    /// Established.
    Open = 1,
    /// Shutting down.
    Closing = 2,
    /// Reset; the kernel keeps the entry for a few seconds.
    Closed = 3,
}

impl StateGroup {
    /// All groups, in index order.
    pub const ALL: [StateGroup; 4] = [
        StateGroup::Opening,
        StateGroup::Open,
        StateGroup::Closing,
        StateGroup::Closed,
    ];

    /// The group of a TCP state. `NONE` and unknown states belong to no group: such entries
    /// are not counted.
    ///
    /// The mapping is the one users of the original exporter know: SYN_SENT, SYN_SENT2 and
    /// SYN_RECV are opening; ESTABLISHED is open; FIN_WAIT, CLOSE_WAIT, LAST_ACK and
    /// TIME_WAIT are closing; CLOSE is closed.
    pub fn of_tcp(state: TcpState) -> Option<StateGroup> {
        match state {
            TcpState::SynSent | TcpState::SynSent2 | TcpState::SynRecv => Some(StateGroup::Opening),
            TcpState::Established => Some(StateGroup::Open),
            TcpState::FinWait | TcpState::CloseWait | TcpState::LastAck | TcpState::TimeWait => {
                Some(StateGroup::Closing)
            }
            TcpState::Close => Some(StateGroup::Closed),
            TcpState::None | TcpState::Other(_) => None,
        }
    }

    /// The group of an SCTP state number (`enum sctp_conntrack`): COOKIE_WAIT and
    /// COOKIE_ECHOED are opening; ESTABLISHED, HEARTBEAT_SENT and HEARTBEAT_ACKED are open;
    /// SHUTDOWN_SENT, SHUTDOWN_RECD and SHUTDOWN_ACK_SENT are closing; CLOSED is closed.
    /// NONE and unknown numbers belong to no group.
    pub fn of_sctp(state: u8) -> Option<StateGroup> {
        match state {
            2 | 3 => Some(StateGroup::Opening),
            4 | 8 | 9 => Some(StateGroup::Open),
            5..=7 => Some(StateGroup::Closing),
            1 => Some(StateGroup::Closed),
            _ => None,
        }
    }

    /// The group of a DCCP state number (`enum ct_dccp_states`): REQUEST, RESPOND and
    /// PARTOPEN are opening; OPEN is open; CLOSEREQ, CLOSING and TIMEWAIT are closing. NONE,
    /// IGNORE, INVALID and unknown numbers belong to no group.
    pub fn of_dccp(state: u8) -> Option<StateGroup> {
        match state {
            1..=3 => Some(StateGroup::Opening),
            4 => Some(StateGroup::Open),
            5..=7 => Some(StateGroup::Closing),
            _ => None,
        }
    }

    /// The group of a connection of a protocol without states (UDP, ICMP, GRE, ...): open
    /// once a reply was seen, opening until then.
    pub fn of_status(status: Status) -> StateGroup {
        if status.contains(Status::SEEN_REPLY) {
            StateGroup::Open
        } else {
            StateGroup::Opening
        }
    }

    /// Position in [`StateGroup::ALL`] and in count arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Lower-case name, as used in metric names and logs.
    pub fn name(self) -> &'static str {
        match self {
            StateGroup::Opening => "opening",
            StateGroup::Open => "open",
            StateGroup::Closing => "closing",
            StateGroup::Closed => "closed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tcp_state_maps_as_documented() {
        let expected = [
            (TcpState::None, None),
            (TcpState::SynSent, Some(StateGroup::Opening)),
            (TcpState::SynRecv, Some(StateGroup::Opening)),
            (TcpState::Established, Some(StateGroup::Open)),
            (TcpState::FinWait, Some(StateGroup::Closing)),
            (TcpState::CloseWait, Some(StateGroup::Closing)),
            (TcpState::LastAck, Some(StateGroup::Closing)),
            (TcpState::TimeWait, Some(StateGroup::Closing)),
            (TcpState::Close, Some(StateGroup::Closed)),
            (TcpState::SynSent2, Some(StateGroup::Opening)),
        ];
        assert_eq!(expected.len(), TcpState::ALL.len());
        for (state, group) in expected {
            assert_eq!(StateGroup::of_tcp(state), group, "{state:?}");
        }
        assert_eq!(StateGroup::of_tcp(TcpState::Other(42)), None);
    }

    #[test]
    fn sctp_and_dccp_states_map_as_documented() {
        use StateGroup::*;
        // NONE, CLOSED, COOKIE_WAIT, COOKIE_ECHOED, ESTABLISHED, SHUTDOWN_SENT,
        // SHUTDOWN_RECD, SHUTDOWN_ACK_SENT, HEARTBEAT_SENT, HEARTBEAT_ACKED, beyond.
        let sctp = [
            None,
            Some(Closed),
            Some(Opening),
            Some(Opening),
            Some(Open),
            Some(Closing),
            Some(Closing),
            Some(Closing),
            Some(Open),
            Some(Open),
            None,
        ];
        for (state, group) in sctp.into_iter().enumerate() {
            assert_eq!(StateGroup::of_sctp(state as u8), group, "sctp {state}");
        }
        // NONE, REQUEST, RESPOND, PARTOPEN, OPEN, CLOSEREQ, CLOSING, TIMEWAIT, IGNORE,
        // INVALID.
        let dccp = [
            None,
            Some(Opening),
            Some(Opening),
            Some(Opening),
            Some(Open),
            Some(Closing),
            Some(Closing),
            Some(Closing),
            None,
            None,
        ];
        for (state, group) in dccp.into_iter().enumerate() {
            assert_eq!(StateGroup::of_dccp(state as u8), group, "dccp {state}");
        }
    }

    #[test]
    fn stateless_protocols_are_open_once_a_reply_was_seen() {
        assert_eq!(
            StateGroup::of_status(Status::default()),
            StateGroup::Opening
        );
        assert_eq!(StateGroup::of_status(Status::ASSURED), StateGroup::Opening);
        let replied = Status::SEEN_REPLY | Status::CONFIRMED;
        assert_eq!(StateGroup::of_status(replied), StateGroup::Open);
    }

    #[test]
    fn index_matches_position() {
        for (position, group) in StateGroup::ALL.iter().enumerate() {
            assert_eq!(group.index(), position);
        }
    }
}
