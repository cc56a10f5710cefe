//! The `.keel` container: serde types for the header and the constants of the byte layout.
//! `FORMAT.md` beside the crate manifest is the normative description; keep the two in step.
//!
//! ```text
//! magic "KEEL" | version u16 LE | header (postcard) | zero pad to 4 | tensor data | CRC-32 LE
//! ```
//! The header holds only small scalars and [`TensorRef`]s into the data region, so the weights can
//! be aligned (fast path on the device) and are never copied.
use serde::{Deserialize, Serialize};

/// First four bytes of every policy blob.
pub const MAGIC: [u8; 4] = *b"KEEL";
/// The format version this crate reads and writes.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes before the header: magic and version.
pub const PRELUDE_LEN: usize = 6;
/// Bytes of the trailing CRC-32.
pub const CRC_LEN: usize = 4;
/// The tensor data region starts at a multiple of this offset from the start of the blob, so a
/// blob stored at a word-aligned address has every f32 tensor word-aligned.
pub const DATA_ALIGN: usize = 4;
/// Most networks a header may list (actor + critic today; room for one more).
pub const MAX_NETWORKS: usize = 3;
/// Most layers per network.
pub const MAX_LAYERS: usize = 6;
/// Most tensors per layer (dense f32: weight, bias; int8 will add a per-row scale).
pub const MAX_PARAMS: usize = 3;

/// CRC-32/ISO-HDLC (the zlib / PNG CRC) over every byte before the checksum.
pub(crate) const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// Layer kind codes.
pub mod layer_kind {
    /// Dense layer, f32 weights (row-major, `out x in`) and f32 bias.
    pub const DENSE_F32: u8 = 0;
    /// Reserved: dense layer with int8 weights and per-row scales (not yet readable).
    pub const DENSE_I8: u8 = 1;
}

/// Network role codes.
pub mod role {
    /// The deterministic actor: observation -> pre-squash action. Exactly one is required.
    pub const ACTOR: u8 = 0;
    /// Reserved: a value/critic network for on-device monitoring (optional).
    pub const CRITIC: u8 = 1;
}

/// How the last layer's output becomes an action in `[low, high]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum Squash {
    /// `low + (tanh(y) + 1) / 2 * (high - low)` (SAC's squashed Gaussian mean).
    Tanh = 0,
    /// `low + (clamp(y, -1, 1) + 1) / 2 * (high - low)`.
    Clip = 1,
}

impl Squash {
    /// Decodes the on-disk code.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::Tanh),
            1 => Some(Self::Clip),
            _ => None,
        }
    }
}

/// A slice of the data region: `offset` and `len` in 4-byte words from the start of the region
/// (words, not bytes, keep the varints short: a 3-64-64-1 actor's refs take 2 bytes each).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorRef {
    pub offset: u32,
    pub len: u32,
}

/// Descriptive metadata; strings borrow from the blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaHeader<'a> {
    /// Human-chosen name of the policy (e.g. the run name).
    pub name: &'a str,
    /// Environment id it was trained on (e.g. `pendulum`).
    pub env_id: &'a str,
    /// Version of Keel that wrote it.
    pub keel_version: &'a str,
    /// Environment steps of training.
    pub train_steps: u64,
}

/// One layer: a kind code, its shape, its activation code and its tensors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerHeader {
    pub kind: u8,
    pub in_dim: u16,
    pub out_dim: u16,
    pub activation: u8,
    pub params: heapless::Vec<TensorRef, MAX_PARAMS>,
}

/// One network. A reader skips networks whose role it does not know unless `required` is set.
/// Each layer is a nested postcard encoding of a [`LayerHeader`], so a reader decodes one small
/// layer at a time (a microcontroller's stack never holds a whole table) and can skip a network
/// without decoding its layers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkHeader<'a> {
    pub role: u8,
    pub required: bool,
    #[serde(borrow)]
    pub layers: heapless::Vec<&'a [u8], MAX_LAYERS>,
}

/// The postcard-encoded header that follows magic and version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header<'a> {
    #[serde(borrow)]
    pub meta: MetaHeader<'a>,
    pub obs_dim: u16,
    pub act_dim: u16,
    /// Observation normalisation: `z = clamp((obs - mean) * inv_std, -obs_clip, obs_clip)`.
    pub obs_mean: TensorRef,
    pub obs_inv_std: TensorRef,
    /// 0 disables clamping.
    pub obs_clip: f32,
    pub act_low: TensorRef,
    pub act_high: TensorRef,
    pub squash: u8,
    /// Length of the tensor data region in 4-byte words: with the header it gives the blob's
    /// length, so a blob can be found in a larger flash region ([`blob_in_region`]).
    pub data_words: u32,
    /// Each network is a nested postcard encoding of a [`NetworkHeader`].
    #[serde(borrow)]
    pub networks: heapless::Vec<&'a [u8], MAX_NETWORKS>,
}

/// Decodes a nested postcard value that must fill `bytes` exactly.
pub(crate) fn decode_exact<'a, T: Deserialize<'a>>(
    bytes: &'a [u8],
) -> Result<T, crate::FormatError> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((v, [])) => Ok(v),
        _ => Err(crate::FormatError::MalformedHeader),
    }
}

/// Where the parts of a blob lie, from its prelude and header.
pub(crate) struct Layout {
    pub header_end: usize,
    pub data_start: usize,
    /// The whole blob's length, CRC included (may run past the bytes that were parsed).
    pub total: usize,
}

/// Checks magic and version (before anything else is parsed, so a foreign or newer file is named
/// as such) and returns the bytes after them.
pub(crate) fn check_prelude(bytes: &[u8]) -> Result<&[u8], crate::FormatError> {
    use crate::FormatError;
    let len = bytes.len();
    let (magic, rest) = bytes
        .split_first_chunk::<4>()
        .ok_or(FormatError::TooShort { len })?;
    if *magic != MAGIC {
        return Err(FormatError::BadMagic);
    }
    let (version, body) = rest
        .split_first_chunk::<2>()
        .ok_or(FormatError::TooShort { len })?;
    let found = u16::from_le_bytes(*version);
    if found != FORMAT_VERSION {
        return Err(FormatError::UnsupportedVersion {
            found,
            supported: FORMAT_VERSION,
        });
    }
    Ok(body)
}

/// Checks the prelude and decodes the header of the blob at the start of `bytes`.
pub(crate) fn parse_prelude_and_header(
    bytes: &[u8],
) -> Result<(Header<'_>, Layout), crate::FormatError> {
    use crate::FormatError;
    let len = bytes.len();
    let body = check_prelude(bytes)?;
    let (header, after) =
        postcard::take_from_bytes::<Header<'_>>(body).map_err(|_| FormatError::MalformedHeader)?;
    let header_end = len - after.len();
    let data_start = align_up(header_end).ok_or(FormatError::BadPadding)?;
    let total = (header.data_words as usize)
        .checked_mul(4)
        .and_then(|d| d.checked_add(data_start))
        .and_then(|n| n.checked_add(CRC_LEN))
        .ok_or(FormatError::TensorOutOfBounds)?;
    Ok((
        header,
        Layout {
            header_end,
            data_start,
            total,
        },
    ))
}

/// The `.keel` blob at the start of a larger `region` (a flash sector written with
/// `probe-rs download`, or QEMU's loader), trimmed to its own length, which the header records.
/// Only the prelude and header are read: validate the result with `Policy::from_bytes`. A blob
/// claiming to run past the region is returned whole, so the runtime reports it as corrupt.
pub fn blob_in_region(region: &[u8]) -> Result<&[u8], crate::FormatError> {
    let (_, layout) = parse_prelude_and_header(region)?;
    Ok(region.get(..layout.total).unwrap_or(region))
}

/// Rounds `n` up to a multiple of [`DATA_ALIGN`] (None on overflow).
pub(crate) const fn align_up(n: usize) -> Option<usize> {
    match n.checked_add(DATA_ALIGN - 1) {
        Some(m) => Some(m / DATA_ALIGN * DATA_ALIGN),
        None => None,
    }
}
