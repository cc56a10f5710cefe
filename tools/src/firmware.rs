//! The firmware example crates and how to build them.
//!
//! They are standalone crates (not workspace members) with their own `.cargo/config.toml`
//! (target, linker scripts, runner), which cargo only reads when it runs inside their directory:
//! so they are built with `current_dir` set there, into their own `target/`.
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Error, Result};

/// The QEMU Cortex-M4F example, relative to the repository root.
pub const QEMU_M4: &str = "firmware-examples/qemu-m4";
/// The NUCLEO-F411RE example, relative to the repository root.
pub const STM32F4: &str = "firmware-examples/stm32f4";
/// Target triple of both examples (Cortex-M4F).
pub const TARGET: &str = "thumbv7em-none-eabihf";
/// Binary name of the QEMU example.
pub const QEMU_M4_BIN: &str = "keel-qemu-m4";

/// The repository root (the parent of this crate's manifest directory).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Variables that an enclosing `cargo test`/`cargo run` may have set and that would redirect or
/// reconfigure the nested build of a crate for another target.
const CARGO_ENV_TO_CLEAR: &[&str] = &[
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
];

/// `cargo build --release` in `crate_dir` with `features`; returns the path of binary `bin`.
///
/// Build output is captured and returned in the error on failure.
pub fn build_release(crate_dir: &Path, bin: &str, features: &[&str]) -> Result<PathBuf> {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(crate_dir)
        .args(["build", "--release", "--bin", bin]);
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    for var in CARGO_ENV_TO_CLEAR {
        cmd.env_remove(var);
    }
    let out = cmd
        .output()
        .map_err(|e| Error::ctx(format!("running cargo in {}", crate_dir.display()), e))?;
    if !out.status.success() {
        return Err(Error(format!(
            "cargo build --release in {} failed ({}):\n{}",
            crate_dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let elf = crate_dir
        .join("target")
        .join(TARGET)
        .join("release")
        .join(bin);
    if !elf.is_file() {
        return Err(Error(format!(
            "cargo succeeded but {} does not exist",
            elf.display()
        )));
    }
    Ok(elf)
}

/// Builds the QEMU example (optionally with the `unaligned-policy` feature) and returns its ELF.
pub fn build_qemu_m4(unaligned: bool) -> Result<PathBuf> {
    let features: &[&str] = if unaligned {
        &["unaligned-policy"]
    } else {
        &[]
    };
    build_release(&repo_root().join(QEMU_M4), QEMU_M4_BIN, features)
}
