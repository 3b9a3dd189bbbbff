//! The config file: reading it without hanging or filling memory, and turning its TOML into a
//! [`Layer`] with errors that name the file, the line and the key.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use toml::Spanned;

use super::{DEFINITIONS, Layer, SettingsError};

/// The largest config file read. The documented default file is a few kilobytes; a file
/// larger than this is not a config file (a log, an image, a device that never ends).
pub(crate) const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Reads the config file at `path`: a regular file (or a link to one) of at most
/// [`MAX_CONFIG_BYTES`]. It is opened without blocking, so a FIFO fails at once instead of
/// waiting for a writer.
pub(crate) fn read(path: &Path) -> Result<String, SettingsError> {
    let read_error = |source| SettingsError::Read {
        path: path.to_owned(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(read_error)?;
    let file_type = file.metadata().map_err(read_error)?.file_type();
    if !file_type.is_file() {
        let kind = if file_type.is_dir() {
            "a directory"
        } else if file_type.is_fifo() {
            "a FIFO"
        } else if file_type.is_socket() {
            "a socket"
        } else {
            "a device"
        };
        return Err(SettingsError::NotAFile {
            path: path.to_owned(),
            kind,
        });
    }
    // Read one byte more than allowed rather than trust the size: a file may grow meanwhile.
    let mut text = String::new();
    File::take(file, MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(read_error)?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(SettingsError::TooLarge {
            path: path.to_owned(),
            limit: MAX_CONFIG_BYTES,
        });
    }
    Ok(text)
}

impl Layer {
    /// Parses the TOML `text`; `origin` names it in errors.
    pub(crate) fn parse(origin: &str, text: &str) -> Result<Layer, SettingsError> {
        let line_of = |offset: usize| {
            let before = &text.as_bytes()[..offset.min(text.len())];
            before.iter().filter(|&&byte| byte == b'\n').count() + 1
        };
        let table: BTreeMap<Spanned<String>, toml::Value> =
            toml::from_str(text).map_err(|error| SettingsError::Syntax {
                origin: origin.to_owned(),
                line: error.span().map(|span| line_of(span.start)),
                message: on_one_line(error.message().trim()),
            })?;
        // In the order of the file, so that the first error reported is the first one in it.
        let mut entries: Vec<_> = table.into_iter().collect();
        entries.sort_by_key(|(key, _)| key.span().start);
        let mut layer = Layer::default();
        for (key, value) in entries {
            let line = line_of(key.span().start);
            let error = match layer.set(key.as_ref(), value) {
                Some(Ok(())) => continue,
                Some(Err(error)) => SettingsError::Value {
                    origin: origin.to_owned(),
                    line,
                    key: key.into_inner(),
                    message: on_one_line(error.message().trim()),
                },
                None => SettingsError::UnknownKey {
                    origin: origin.to_owned(),
                    line,
                    key: on_one_line(key.as_ref()),
                    expected: known_keys(),
                },
            };
            return Err(error);
        }
        Ok(layer)
    }
}

/// `text` with its control characters escaped (`\n` for a newline): errors quote values and
/// keys of the file, which TOML's quoted strings may fill with newlines, and an error is one
/// line in the log.
fn on_one_line(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The keys there are, for an error about one that is not.
fn known_keys() -> String {
    let keys: Vec<String> = DEFINITIONS
        .iter()
        .map(|definition| format!("`{}`", definition.key))
        .collect();
    keys.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    /// A private directory, removed at the end.
    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new(test: &str) -> Scratch {
            let path = std::env::temp_dir().join(format!(
                "conntrack_exporter_settings_{test}_{}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            Scratch(path)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_regular_file_is_read() {
        let scratch = Scratch::new("regular");
        let path = scratch.0.join("config.toml");
        std::fs::write(&path, "debug = true\n").unwrap();
        assert_eq!(read(&path).unwrap(), "debug = true\n");
        let link = scratch.0.join("link.toml");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert_eq!(read(&link).unwrap(), "debug = true\n");
    }

    #[test]
    fn what_is_not_a_regular_file_is_refused_without_waiting() {
        let scratch = Scratch::new("not_a_file");
        let fifo = scratch.0.join("fifo");
        let fifo_name = CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: `fifo_name` is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo_name.as_ptr(), 0o600) }, 0);
        for (path, kind) in [
            (fifo.as_path(), "a FIFO"),
            (scratch.0.as_path(), "a directory"),
            (Path::new("/dev/zero"), "a device"),
        ] {
            let error = read(path).unwrap_err().to_string();
            assert_eq!(
                error,
                format!(
                    "config file {}: is {kind}, not a regular file",
                    path.display()
                )
            );
        }
    }

    #[test]
    fn a_file_larger_than_a_config_file_is_refused() {
        let scratch = Scratch::new("too_large");
        let path = scratch.0.join("large.toml");
        let limit = usize::try_from(MAX_CONFIG_BYTES).unwrap();
        std::fs::write(&path, "#".repeat(limit)).unwrap();
        assert_eq!(read(&path).unwrap().len(), limit);
        std::fs::write(&path, "#".repeat(limit + 1)).unwrap();
        let error = read(&path).unwrap_err().to_string();
        assert!(error.contains("larger than 1048576 bytes"), "{error}");
    }

    #[test]
    fn a_missing_file_says_why() {
        let error = read(Path::new("/nonexistent/conntrack.toml")).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("cannot read config file /nonexistent/conntrack.toml: "),
            "{error}"
        );
    }
}
