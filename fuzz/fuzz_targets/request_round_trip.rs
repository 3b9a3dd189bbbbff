//! Build, then decode: a create request has the layout of a NEW event and a delete request
//! that of a DESTROY, so each must decode to exactly what was asked, whatever the tuple,
//! state, status, mark and zone. The other requests must be single well-framed messages that
//! decode as what they are.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arbitrary::Arbitrary;
use conntrack_codec::{
    CpuStats, EntryKind, Family, Header, Layer4, Message, NewEntry, ParseError, Protocol, Status,
    TableSize, TcpState, Tuple, parse_message, request,
};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Asked {
    sequence: u32,
    ipv6: bool,
    src: [u8; 16],
    dst: [u8; 16],
    protocol: u8,
    layer4: AskedLayer4,
    tcp_state: Option<u8>,
    timeout: u32,
    status: u32,
    mark: Option<u32>,
    zone: Option<u16>,
    family: Option<bool>,
}

#[derive(Debug, Arbitrary)]
enum AskedLayer4 {
    Ports { src: u16, dst: u16 },
    Icmp { id: u16, kind: u8, code: u8 },
    None,
}

impl Asked {
    fn tuple(&self) -> Tuple {
        let address = |bytes: [u8; 16]| {
            if self.ipv6 {
                IpAddr::V6(Ipv6Addr::from(bytes))
            } else {
                IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
            }
        };
        let layer4 = match self.layer4 {
            AskedLayer4::Ports { src, dst } => Layer4::Ports { src, dst },
            AskedLayer4::Icmp { id, kind, code } => Layer4::Icmp { id, kind, code },
            AskedLayer4::None => Layer4::None,
        };
        Tuple {
            src: address(self.src),
            dst: address(self.dst),
            protocol: Protocol(self.protocol),
            layer4,
        }
    }
}

fn decode_entry(bytes: &[u8]) -> conntrack_codec::EntryMessage {
    match parse_message(bytes) {
        Ok(Message::Entry(decoded)) => {
            assert!(decoded.attribute_errors.is_empty(), "{decoded:?}");
            decoded
        }
        other => panic!("a request does not decode as an entry: {other:?}"),
    }
}

fuzz_target!(|asked: Asked| {
    let original = asked.tuple();
    let entry = NewEntry {
        original,
        reply: None,
        tcp_state: asked.tcp_state.map(TcpState::from_raw),
        protocol_state: None,
        timeout: asked.timeout,
        status: Status(asked.status),
        mark: asked.mark,
        zone: asked.zone,
    };
    let created = decode_entry(&request::create(asked.sequence, &entry));
    assert_eq!(created.kind, EntryKind::New);
    assert_eq!(created.entry.original, original);
    assert_eq!(created.entry.reply, Some(original.inverted()));
    assert_eq!(created.entry.tcp_state, entry.tcp_state);
    assert_eq!(created.entry.timeout, Some(asked.timeout));
    assert_eq!(created.entry.mark, asked.mark);
    assert_eq!(created.entry.zone, asked.zone);
    let status = (asked.status != 0).then_some(Status(asked.status) | Status::CONFIRMED);
    assert_eq!(created.entry.status, status);

    let deleted = decode_entry(&request::delete(asked.sequence, &original, asked.zone));
    assert_eq!(deleted.kind, EntryKind::Destroy);
    assert_eq!(deleted.entry.original, original);
    assert_eq!(deleted.entry.zone, asked.zone);

    let family = asked
        .family
        .map(|v6| if v6 { Family::Ipv6 } else { Family::Ipv4 });
    // The other requests carry no entry: each decodes as what it is.
    let table_size = Message::TableSize(TableSize::default());
    let cpu_stats = Message::CpuStats(CpuStats::default());
    let whole_table = ParseError::MissingAttribute("CTA_TUPLE_ORIG");
    for (bytes, expected) in [
        (
            request::dump(asked.sequence, family),
            Ok(Message::Other {
                message_type: 0x101,
            }),
        ),
        (request::flush(asked.sequence, family), Err(whole_table)),
        (request::table_size(asked.sequence), Ok(table_size)),
        (request::cpu_stats(asked.sequence), Ok(cpu_stats)),
    ] {
        let header = Header::parse(&bytes).expect("a request has a header");
        assert_eq!(header.length as usize, bytes.len());
        assert_eq!(header.sequence, asked.sequence);
        assert_eq!(parse_message(&bytes), expected);
    }
});
