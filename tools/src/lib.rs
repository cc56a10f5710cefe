//! Keel's deployment and measurement tooling: build the firmware examples, run the QEMU one with
//! a policy placed in its reserved region, compare it with the host, and count its instructions.
//!
//! * [`firmware`]: paths of the firmware crates and building them with their own configuration.
//! * [`qemu`]: booting an ELF in QEMU (`mps2-an386`) with QEMU's loader and an optional plugin,
//!   decoding its defmt output with `defmt-print`.
//! * [`closed_loop`]: the host's reference run of the same closed loop, and parsing the device's.
//! * [`cost`]: instructions per `act`, flash and RAM of the QEMU firmware (for `keel-cost`).
//! * [`elf`]: symbols and flash/RAM sizes of a firmware ELF.
//! * [`prereq`]: which external tools are missing, with install hints.
//!
//! Binaries: `keel-cost` (instructions per `act`, flash, RAM) and `keel-example-policy`.
pub mod closed_loop;
pub mod cost;
pub mod elf;
pub mod firmware;
pub mod prereq;
pub mod qemu;

use std::fmt;

/// A tool failure with a message that says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl Error {
    /// An error from anything displayable, with context in front.
    pub fn ctx(context: impl fmt::Display, e: impl fmt::Display) -> Self {
        Self(format!("{context}: {e}"))
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
