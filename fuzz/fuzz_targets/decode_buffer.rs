//! Any bytes, as a received datagram: netlink framing and everything behind it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    conntrack_codec_fuzz::decode_everything(data);
});
