//! What the codec's test files share: reading the captured fixtures.

/// The messages of a fixture file (see `fixtures/README.md`), one per non-comment line.
pub fn fixture(text: &str) -> Vec<Vec<u8>> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            assert!(line.len() % 2 == 0, "odd hex line");
            (0..line.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&line[i..i + 2], 16).expect("hex digit"))
                .collect()
        })
        .collect()
}
