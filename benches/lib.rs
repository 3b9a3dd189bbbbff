//! Benchmarks of the conntrack exporter; see `README.md` in this folder. This library holds
//! what the criterion benchmarks share.

/// The messages of a fixture file: one hex-encoded netlink message per non-comment line.
pub fn parse_fixture(text: &str) -> Vec<Vec<u8>> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            (0..line.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&line[i..i + 2], 16).expect("hex fixture"))
                .collect()
        })
        .collect()
}

/// The messages of one of the captured fixtures in `crates/ctnetlink/tests/fixtures/`.
#[macro_export]
macro_rules! fixture {
    ($name:literal) => {
        $crate::parse_fixture(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../crates/ctnetlink/tests/fixtures/",
            $name
        )))
    };
}

/// A small deterministic generator (splitmix64), so that every run benchmarks the same data
/// in the same order.
pub struct Random(pub u64);

impl Random {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}
