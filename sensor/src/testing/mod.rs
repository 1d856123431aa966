//! Helpers for tests that need root and BPF.

/// Whether BPF tests can run here. Outside CI a missing privilege prints a
/// visible SKIP; with `CI=true` it is a failure (CI runs as root).
pub fn bpf_available(test: &str) -> bool {
    // SAFETY: geteuid takes nothing and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: CI=true but not running as root: BPF tests must run in CI");
    }
    skip(&format!(
        "{test}: needs root (CAP_BPF, CAP_NET_ADMIN); runs in CI"
    ));
    false
}

/// Prints `SKIP reason` where a person running the tests sees it: straight
/// to the process's stderr, which the test harness does not capture (it
/// only captures `print!`/`eprint!`).
pub fn skip(reason: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "SKIP {reason}");
}

/// Prints `NOTE message` past the harness's capture, like [`skip`]: for
/// figures a test measures and reports without asserting them.
pub fn report(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "NOTE {message}");
}

pub mod frames;
