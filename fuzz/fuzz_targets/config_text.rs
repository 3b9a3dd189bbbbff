//! Any text as a config file: the loader gives settings or an error, never a panic, and the
//! error is one line, as the exporter prints it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Err(error) = conntrack_exporter::settings::check_config_text("fuzz.toml", text) {
        let message = error.to_string();
        assert!(!message.is_empty(), "an empty error");
        assert!(!message.contains('\n'), "an error of several lines: {message:?}");
    }
});
