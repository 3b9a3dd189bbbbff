//! Running the system's tools (`ip`, `nft`, `conntrack`, `sysctl`, ...) in the current
//! thread's namespace, and finding out whether they are installed.

use std::io;
use std::process::{Command, Stdio};

/// Runs a command inside the current thread's namespace and returns its standard output.
/// A command that fails to start or exits non-zero is an error carrying its standard error.
pub fn run(program: &str, args: &[&str]) -> io::Result<String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|error| io::Error::new(error.kind(), format!("cannot run {program}: {error}")))?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "{program} {}: {}: {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `nft` with `args` in the current namespace; panics when it fails.
pub fn nft(args: &[&str]) -> String {
    run("nft", args).unwrap_or_else(|error| panic!("{error}"))
}

/// Whether `program` can be found on `PATH`.
pub fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Handles a missing tool: a failure when `CI` is set, a loud skip otherwise. Returns
/// whether the test should go on.
pub fn require_tool(test: &str, program: &str, package: &str) -> bool {
    if installed(program) {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: needs `{program}` (Debian package {package}), and CI is set");
    }
    eprintln!(
        "\n*** SKIPPED {test}: `{program}` is not installed (Debian package {package}) ***\n"
    );
    false
}
