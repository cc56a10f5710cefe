//! Finding a `.keel` blob at the start of a reserved memory region: a flash sector written by
//! `probe-rs download --binary-format bin --base-address ...`, or QEMU's `-device loader`.
//!
//! The file is stored unmodified, so nothing records its length, and the format keeps its CRC at
//! the end. The header says where the blob ends, though: the tensor data starts at the first
//! 4-byte boundary after the header and ends with the last tensor, so
//!
//! ```text
//! len = align4(6 + header) + 4 * max(offset + len of every tensor reference) + 4 (CRC)
//! ```
//!
//! which is exactly what `keel_runtime::encode` writes. [`blob`] computes that and returns the
//! slice for `Policy::from_bytes`, which then checks everything, CRC first. So a flipped byte
//! anywhere is reported by the runtime as a checksum mismatch (a flip that changes the length
//! moves the CRC, which then mismatches too); an erased sector (0xFF) or an empty region (0x00)
//! reads as `BadMagic`.
#![no_std]
#![forbid(unsafe_code)]

use keel_runtime::format::{Header, TensorRef, CRC_LEN, DATA_ALIGN};
use keel_runtime::{FormatError, FORMAT_VERSION, MAGIC};

/// The `.keel` blob at the start of `region`, trimmed to its own length.
///
/// Only the prelude and the header are read here; the caller must still validate the result
/// with `Policy::from_bytes` (or `SafeController::new`). A blob that claims to run past the end
/// of the region is returned as the whole region, so the runtime reports it as truncated
/// (checksum mismatch).
pub fn blob(region: &[u8]) -> Result<&[u8], FormatError> {
    let too_short = FormatError::TooShort { len: region.len() };
    let (magic, rest) = region.split_first_chunk::<4>().ok_or(too_short)?;
    if *magic != MAGIC {
        return Err(FormatError::BadMagic);
    }
    let (version, body) = rest.split_first_chunk::<2>().ok_or(too_short)?;
    let found = u16::from_le_bytes(*version);
    if found != FORMAT_VERSION {
        // A newer layout may size itself differently: report the version, as the runtime would.
        return Err(FormatError::UnsupportedVersion {
            found,
            supported: FORMAT_VERSION,
        });
    }
    let (header, after) =
        postcard::take_from_bytes::<Header<'_>>(body).map_err(|_| FormatError::MalformedHeader)?;
    let header_end = region.len() - after.len();
    let len = data_words(&header)
        .and_then(|words| words.checked_mul(4))
        .and_then(|bytes| align4(header_end)?.checked_add(bytes))
        .and_then(|n| n.checked_add(CRC_LEN))
        .ok_or(FormatError::TensorOutOfBounds)?;
    Ok(region.get(..len).unwrap_or(region))
}

/// Words in the data region: the furthest end of any tensor reference (`None` on overflow).
fn data_words(h: &Header<'_>) -> Option<usize> {
    let layers = h.networks.iter().flat_map(|n| n.layers.iter());
    let refs = [h.obs_mean, h.obs_inv_std, h.act_low, h.act_high]
        .into_iter()
        .chain(layers.flat_map(|l| l.params.iter().copied()));
    refs.map(end).try_fold(0usize, |acc, e| Some(acc.max(e?)))
}

fn end(t: TensorRef) -> Option<usize> {
    usize::try_from(t.offset)
        .ok()?
        .checked_add(usize::try_from(t.len).ok()?)
}

fn align4(n: usize) -> Option<usize> {
    Some(n.checked_add(DATA_ALIGN - 1)? / DATA_ALIGN * DATA_ALIGN)
}
