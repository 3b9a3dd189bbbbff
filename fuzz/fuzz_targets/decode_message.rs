//! One ctnetlink message whose header is made to fit: its length is the input's, and its type
//! one of the eight ctnetlink message numbers (entries, statistics, and ones the decoder does
//! not know). Every input thus reaches the attribute decoder instead of stopping at the
//! framing, which `decode_buffer` covers.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// `NFNL_SUBSYS_CTNETLINK << 8`.
const CTNETLINK: u16 = 1 << 8;

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let mut message = data.to_vec();
    let length = u32::try_from(message.len()).unwrap_or(u32::MAX);
    message[..4].copy_from_slice(&length.to_ne_bytes());
    let message_type = CTNETLINK | u16::from(message[4] % 8);
    message[4..6].copy_from_slice(&message_type.to_ne_bytes());
    conntrack_codec_fuzz::decode_everything(&message);
});
