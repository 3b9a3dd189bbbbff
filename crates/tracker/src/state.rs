//! The four state groups the exporter reports, and how TCP states map onto them.

use conntrack_codec::TcpState;

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
    fn index_matches_position() {
        for (position, group) in StateGroup::ALL.iter().enumerate() {
            assert_eq!(group.index(), position);
        }
    }
}
