//! Checking for the external tools the QEMU flows need, with the command that installs each.
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::firmware::TARGET;

/// One missing prerequisite: what and how to get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub what: &'static str,
    pub install: &'static str,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (install: {})", self.what, self.install)
    }
}

fn runs(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The sysroot of the `rustc` on PATH.
fn sysroot() -> Option<PathBuf> {
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Whether the standard library for `target` is installed.
pub fn has_target(target: &str) -> bool {
    sysroot().is_some_and(|s| s.join("lib/rustlib").join(target).join("lib").is_dir())
}

/// What running the QEMU firmware needs: QEMU, the defmt decoder and the thumb target.
pub fn qemu_run() -> Vec<Missing> {
    let mut missing = Vec::new();
    if !runs("qemu-system-arm", "--version") {
        missing.push(Missing {
            what: "qemu-system-arm",
            install: "apt-get install -y qemu-system-arm",
        });
    }
    if !runs("defmt-print", "--version") {
        missing.push(Missing {
            what: "defmt-print",
            install: "cargo install defmt-print --locked",
        });
    }
    if !has_target(TARGET) {
        missing.push(Missing {
            what: "Rust target thumbv7em-none-eabihf",
            install: "rustup target add thumbv7em-none-eabihf",
        });
    }
    missing
}

/// What `keel-cost` needs on top of [`qemu_run`]: a C compiler for the QEMU plugin.
pub fn cost() -> Vec<Missing> {
    let mut missing = qemu_run();
    if !runs("gcc", "--version") {
        missing.push(Missing {
            what: "gcc (builds the instruction-counting QEMU plugin)",
            install: "apt-get install -y gcc",
        });
    }
    missing
}

/// True when running under CI (`CI` set to anything but empty, `0` or `false`), where a missing
/// tool is an error rather than a reason to skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// For tests: true when nothing is `missing`. Otherwise panics under CI ([`in_ci`]), or says
/// `SKIPPED: ...` with the install commands and returns false. The note is written to the
/// process's stderr directly, past the test harness's output capture, so a skip is visible in a
/// plain `cargo test`.
pub fn ready_or_skip(what: &str, missing: &[Missing]) -> bool {
    if missing.is_empty() {
        return true;
    }
    let list: Vec<String> = missing.iter().map(ToString::to_string).collect();
    let msg = format!("{what} needs {}", list.join("; "));
    assert!(!in_ci(), "CI is set and {msg}");
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {msg}");
    false
}
