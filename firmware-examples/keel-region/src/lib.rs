//! Finding a `.keel` blob at the start of a reserved memory region: a flash sector written by
//! `probe-rs download --binary-format bin --base-address ...`, or QEMU's `-device loader`.
//!
//! The file is stored unmodified; its header records the length of its tensor data, so the
//! runtime's [`keel_runtime::format::blob_in_region`] trims the region to the blob from the
//! prelude and header alone. `Policy::from_bytes` then checks everything, CRC first: a flipped
//! byte anywhere is a checksum mismatch (a flip that changes the recorded length moves the CRC,
//! which then mismatches too); an erased sector (0xFF) or an empty region (0x00) reads as
//! `BadMagic`.
#![no_std]
#![forbid(unsafe_code)]

use keel_runtime::FormatError;

/// The `.keel` blob at the start of `region`, trimmed to its own length (see the crate docs).
pub fn blob(region: &[u8]) -> Result<&[u8], FormatError> {
    keel_runtime::format::blob_in_region(region)
}
