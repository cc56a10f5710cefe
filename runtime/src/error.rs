//! Error values. Nothing in this crate panics on input; every failure is one of these.
use core::fmt;

/// Why a blob was rejected by [`crate::Policy::from_bytes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FormatError {
    /// Shorter than the fixed prelude and checksum.
    TooShort { len: usize },
    /// The first four bytes are not `KEEL`: not a Keel policy.
    BadMagic,
    /// A format version this reader does not understand (usually a newer writer).
    UnsupportedVersion { found: u16, supported: u16 },
    /// The CRC-32 at the end does not match the bytes before it (corruption or truncation).
    BadChecksum { stored: u32, computed: u32 },
    /// The header could not be decoded (or has more entries than this reader's capacity).
    MalformedHeader,
    /// Padding between header and tensor data is not zero or runs past the end.
    BadPadding,
    /// A tensor reference points outside the data region or is not a whole number of f32.
    TensorOutOfBounds,
    /// A layer kind this reader does not know (e.g. a newer int8 layer).
    UnsupportedLayerKind { kind: u8 },
    /// An activation code this reader does not know.
    UnsupportedActivation { code: u8 },
    /// An action squashing code this reader does not know.
    UnsupportedSquash { code: u8 },
    /// A network role this reader does not know and that the writer marked as required.
    UnsupportedNetwork { role: u8 },
    /// The blob has no actor network.
    MissingActor,
    /// A dimension exceeds this build's compile-time capacity.
    CapacityExceeded { dim: usize, capacity: usize },
    /// Layer shapes do not chain from the observation dimension to the action dimension, or a
    /// tensor has the wrong length for its shape.
    ShapeMismatch,
    /// A weight, bias or normalisation constant is NaN or infinite.
    NonFiniteParameter,
    /// Action bounds are not finite with low < high.
    BadActionBounds,
}

/// Why [`crate::Policy::act`] produced no action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ActError {
    /// A slice has the wrong length.
    Dim { expected: usize, found: usize },
    /// The observation contains NaN or an infinity (index of the first offender).
    NonFinite { index: usize },
    /// The network produced a non-finite value (weights overflowed); no action was written.
    NonFiniteOutput,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooShort { len } => write!(f, "blob too short ({len} bytes)"),
            Self::BadMagic => f.write_str("not a Keel policy (bad magic)"),
            Self::UnsupportedVersion { found, supported } => {
                write!(f, "format version {found} is not supported (this reader: {supported})")
            }
            Self::BadChecksum { stored, computed } => write!(
                f,
                "checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): corrupt or truncated"
            ),
            Self::MalformedHeader => f.write_str("malformed header"),
            Self::BadPadding => f.write_str("bad padding before tensor data"),
            Self::TensorOutOfBounds => f.write_str("tensor reference out of bounds"),
            Self::UnsupportedLayerKind { kind } => write!(f, "unsupported layer kind {kind}"),
            Self::UnsupportedActivation { code } => write!(f, "unsupported activation {code}"),
            Self::UnsupportedSquash { code } => write!(f, "unsupported action squashing {code}"),
            Self::UnsupportedNetwork { role } => write!(f, "unsupported required network role {role}"),
            Self::MissingActor => f.write_str("no actor network"),
            Self::CapacityExceeded { dim, capacity } => {
                write!(f, "dimension {dim} exceeds this build's capacity {capacity}")
            }
            Self::ShapeMismatch => f.write_str("layer shapes inconsistent with dimensions"),
            Self::NonFiniteParameter => f.write_str("non-finite parameter"),
            Self::BadActionBounds => f.write_str("action bounds must be finite with low < high"),
        }
    }
}

impl fmt::Display for ActError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Dim { expected, found } => {
                write!(f, "wrong slice length: expected {expected}, found {found}")
            }
            Self::NonFinite { index } => write!(f, "observation[{index}] is not finite"),
            Self::NonFiniteOutput => f.write_str("network output is not finite"),
        }
    }
}

impl core::error::Error for FormatError {}
impl core::error::Error for ActError {}
