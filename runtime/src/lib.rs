//! Keel's on-device runtime: load a `.keel` policy blob straight from flash and compute actions.
//!
//! * `#![no_std]`, no heap, no global state: scratch space lives on the stack and is sized by the
//!   const-generic capacity `W` of [`Policy`].
//! * [`Policy::from_bytes`] validates a blob once (magic, version, CRC-32, shapes, capacity,
//!   finiteness) and then borrows it: the weights are never copied, and may sit unaligned in flash.
//! * Nothing here panics on input: malformed bytes and bad observations are returned as typed
//!   errors ([`FormatError`], [`ActError`]), and [`SafeController`] turns any failure into a
//!   caller-chosen fallback action.
//!
//! * `unsafe` is denied crate-wide and allowed in one module: the dense layer's inner loop for
//!   hard-float Arm (`linalg/vfp.rs`), inline assembly that loads eight weights per instruction
//!   (1.48 instructions per MAC on a Cortex-M4F against 4.5 for the best safe loop), its reads
//!   bounded by checks made right before it; the plain Rust next to it is its specification, and
//!   the QEMU tests compare the two bit for bit.
//!
//! The byte layout is specified in `FORMAT.md` next to this crate's manifest. The encoder that the
//! trainer uses ([`encode`]) sits behind the `alloc` feature so the same types define both sides.
#![no_std]
#![deny(unsafe_code)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod activation;
mod error;
pub mod format;
mod linalg;
pub mod plants;
mod policy;
mod safe;

#[cfg(feature = "alloc")]
pub mod encode;

pub use activation::{fast_tanh, Activation};
pub use error::{ActError, FormatError};
pub use format::{Squash, FORMAT_VERSION, MAGIC};
pub use policy::{LayerInfo, Metadata, Policy, Scratch};
pub use safe::{Outcome, Reason, SafeController};
