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

/// The messages of one of the captured fixtures in `crates/codec/tests/fixtures/`.
#[macro_export]
macro_rules! fixture {
    ($name:literal) => {
        $crate::parse_fixture(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../crates/codec/tests/fixtures/",
            $name
        )))
    };
}
