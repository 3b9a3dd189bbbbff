//! What the fuzz targets check on every input (see `FUZZING.md` at the repository root).

use conntrack_codec::{Header, Message, messages, parse_message};

/// Decodes `buffer` as a received datagram (with [`messages`]) and as one message (with
/// [`parse_message`]), and checks what must hold for any bytes besides not panicking: the
/// iterator advances, a buffer of exactly one well-framed message decodes the same both ways,
/// and every decoded entry is consistent.
pub fn decode_everything(buffer: &[u8]) {
    let single = parse_message(buffer);
    let mut count = 0;
    for message in messages(buffer) {
        count += 1;
        assert!(
            count <= buffer.len() / 16 + 1,
            "the iterator does not advance"
        );
        if let Ok(message) = &message {
            check(message);
        }
    }
    let framed_alone = Header::parse(buffer).is_ok_and(|h| h.length as usize == buffer.len());
    if framed_alone {
        assert_eq!(messages(buffer).collect::<Vec<_>>(), [single]);
    }
}

/// What every decoded message must satisfy.
fn check(message: &Message) {
    let Message::Entry(decoded) = message else {
        return;
    };
    let errors = &decoded.attribute_errors;
    assert_eq!(errors.count() == 0, errors.first().is_none());
    let entry = &decoded.entry;
    for tuple in std::iter::once(&entry.original).chain(&entry.reply) {
        assert_eq!(tuple.src.is_ipv4(), tuple.dst.is_ipv4(), "mixed families");
    }
}
