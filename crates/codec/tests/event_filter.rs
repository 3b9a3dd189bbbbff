//! The event filter run on captured kernel messages by a small classic-BPF interpreter that
//! implements the kernel's semantics of the instructions the filter uses (including the
//! netlink attribute search): TCP events are kept, UDP events dropped, and a message the
//! program cannot read is kept.

mod common;

use common::fixture;
use conntrack_codec::Protocol;
use conntrack_codec::event_filter::{
    A_TO_X, Instruction, JUMP_IF_EQUAL, LOAD_ABSOLUTE, LOAD_BYTE_INDIRECT, LOAD_IMMEDIATE,
    LOAD_X_IMMEDIATE, NESTED_NETLINK_ATTRIBUTE, NETLINK_ATTRIBUTE, RETURN, protocol_filter,
};

/// `nla_find`: the offset of the first attribute of type `kind` among those in
/// `packet[from..to]`, 0 if none.
fn find(packet: &[u8], from: usize, to: usize, kind: u32) -> u32 {
    let mut at = from;
    while at + 4 <= to {
        let length = usize::from(u16::from_ne_bytes([packet[at], packet[at + 1]]));
        let found = u16::from_ne_bytes([packet[at + 2], packet[at + 3]]) & 0x3fff;
        if length < 4 || at + length > to {
            return 0;
        }
        if u32::from(found) == kind {
            return at as u32;
        }
        at += length.next_multiple_of(4);
    }
    0
}

/// Runs `program` on `packet` as the kernel does; returns what it returned (0: dropped).
fn run(program: &[Instruction], packet: &[u8]) -> u32 {
    let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
    loop {
        let instruction = program[pc];
        pc += 1;
        match instruction.code {
            LOAD_IMMEDIATE => a = instruction.k,
            LOAD_X_IMMEDIATE => x = instruction.k,
            LOAD_ABSOLUTE if instruction.k == NETLINK_ATTRIBUTE => {
                let from = a as usize;
                a = if from + 4 > packet.len() {
                    0
                } else {
                    find(packet, from, packet.len(), x)
                };
            }
            LOAD_ABSOLUTE if instruction.k == NESTED_NETLINK_ATTRIBUTE => {
                let at = a as usize;
                if at + 4 > packet.len() {
                    a = 0;
                } else {
                    let length = usize::from(u16::from_ne_bytes([packet[at], packet[at + 1]]));
                    a = if length > packet.len() - at {
                        0
                    } else {
                        find(packet, at + 4, at + length, x)
                    };
                }
            }
            A_TO_X => x = a,
            LOAD_BYTE_INDIRECT => match packet.get((x + instruction.k) as usize) {
                Some(byte) => a = u32::from(*byte),
                // The kernel drops a message when a load falls outside it.
                None => return 0,
            },
            JUMP_IF_EQUAL => {
                let skip = if a == instruction.k {
                    instruction.jt
                } else {
                    instruction.jf
                };
                pc += usize::from(skip);
            }
            RETURN => return instruction.k,
            other => panic!("the filter uses an instruction the interpreter lacks: {other:#x}"),
        }
    }
}

fn kept(program: &[Instruction], file: &str) -> Vec<bool> {
    fixture(file)
        .iter()
        .map(|message| run(program, message) != 0)
        .collect()
}

#[test]
fn tcp_events_are_kept_and_udp_events_dropped() {
    let tcp_only = protocol_filter(&[Protocol::TCP]).expect("a program");
    for file in [
        include_str!("fixtures/events_tcp_ipv4.hex"),
        include_str!("fixtures/events_tcp_ipv6.hex"),
    ] {
        let kept = kept(&tcp_only, file);
        assert!(kept.len() >= 3 && kept.iter().all(|kept| *kept), "{kept:?}");
    }
    for file in [
        include_str!("fixtures/events_udp_ipv4.hex"),
        include_str!("fixtures/events_udp_ipv6.hex"),
    ] {
        let kept = kept(&tcp_only, file);
        assert!(
            kept.len() == 3 && kept.iter().all(|kept| !*kept),
            "{kept:?}"
        );
    }
    // NEW, NEW, UPDATE, DESTROY, DESTROY of a TCP and a UDP entry.
    let synthetic = include_str!("fixtures/events_synthetic.hex");
    assert_eq!(kept(&tcp_only, synthetic), [true, false, true, true, false]);
    let udp_too = protocol_filter(&[Protocol::UDP, Protocol::TCP]).expect("a program");
    assert!(kept(&udp_too, synthetic).iter().all(|kept| *kept));
    let neither = protocol_filter(&[Protocol::SCTP]).expect("a program");
    assert!(kept(&neither, synthetic).iter().all(|kept| !*kept));
}

#[test]
fn what_the_program_cannot_read_is_kept() {
    let tcp_only = protocol_filter(&[Protocol::TCP]).expect("a program");
    // A header alone, a message without tuple, an original tuple without its protocol.
    let header = |length: u32| {
        let mut bytes = length.to_ne_bytes().to_vec();
        bytes.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0]);
        bytes
    };
    assert_ne!(run(&tcp_only, &header(20)), 0);
    let mut no_tuple = header(28);
    no_tuple.extend_from_slice(&[8, 0, 3, 0, 0, 0, 0, 1]);
    assert_ne!(run(&tcp_only, &no_tuple), 0);
    let mut no_protocol = header(32);
    no_protocol.extend_from_slice(&[12, 0, 1, 0x80, 8, 0, 1, 0x80, 0, 0, 0, 0]);
    assert_ne!(run(&tcp_only, &no_protocol), 0);
    assert_ne!(run(&tcp_only, &[]), 0);
}

#[test]
fn no_program_when_nothing_would_be_dropped_or_too_many_protocols() {
    let all: Vec<Protocol> = (0..=255).map(Protocol).collect();
    assert_eq!(protocol_filter(&all), None);
    assert_eq!(protocol_filter(&all[..251]), None);
    // 249 protocols, all but UDP among the first 250: the farthest jump still lands.
    let most: Vec<Protocol> = all[..250]
        .iter()
        .copied()
        .filter(|p| *p != Protocol::UDP)
        .collect();
    let most = protocol_filter(&most).expect("249 protocols fit");
    assert!(most.len() <= 4096);
    assert!(
        kept(&most, include_str!("fixtures/events_tcp_ipv4.hex"))
            .iter()
            .all(|kept| *kept)
    );
    assert!(
        kept(&most, include_str!("fixtures/events_udp_ipv4.hex"))
            .iter()
            .all(|kept| !*kept)
    );
}
