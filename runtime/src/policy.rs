//! Validating a blob once, then computing actions from it without allocation.
use crate::activation::Activation;
use crate::error::{ActError, FormatError};
use crate::format::{
    check_prelude, decode_exact, layer_kind, parse_prelude_and_header, role, Header, LayerHeader,
    NetworkHeader, Squash, CRC32, CRC_LEN, MAX_LAYERS, PRELUDE_LEN,
};
use crate::linalg::{dense, F32s};

pub use crate::format::MetaHeader as Metadata;

/// One validated dense layer of the actor, borrowing its tensors from the blob.
#[derive(Clone, Copy, Debug)]
struct Dense<'a> {
    weight: F32s<'a>,
    bias: F32s<'a>,
    in_dim: usize,
    out_dim: usize,
    activation: Activation,
}

/// Shape and activation of one layer, for inspection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    pub in_dim: usize,
    pub out_dim: usize,
    pub activation: Activation,
}

/// A validated policy borrowing its blob. `W` is the compile-time capacity: the largest
/// observation, hidden or action width this build accepts, and the size of the two scratch
/// vectors `act` keeps on the stack (2 x 4 x `W` bytes).
#[derive(Clone, Debug)]
pub struct Policy<'a, const W: usize = 64> {
    meta: Metadata<'a>,
    obs_dim: usize,
    /// `None`: the blob stores no normalisation (identity), which saves 8 bytes per input.
    obs_norm: Option<(F32s<'a>, F32s<'a>)>,
    obs_clip: f32,
    act_low: F32s<'a>,
    act_high: F32s<'a>,
    squash: Squash,
    layers: heapless::Vec<Dense<'a>, MAX_LAYERS>,
    blob_len: usize,
}

/// Checks prelude, CRC and padding; returns the header and the data region.
fn check_container(bytes: &[u8]) -> Result<(Header<'_>, &[u8]), FormatError> {
    let len = bytes.len();
    if len < PRELUDE_LEN + CRC_LEN {
        return Err(FormatError::TooShort { len });
    }
    check_prelude(bytes)?;
    let (covered, stored) = bytes
        .split_last_chunk::<4>()
        .ok_or(FormatError::TooShort { len })?;
    let stored = u32::from_le_bytes(*stored);
    let computed = CRC32.checksum(covered);
    if stored != computed {
        return Err(FormatError::BadChecksum { stored, computed });
    }
    let (header, at) = parse_prelude_and_header(covered)?;
    if at.total != len {
        return Err(FormatError::TensorOutOfBounds);
    }
    let pad = covered
        .get(at.header_end..at.data_start)
        .ok_or(FormatError::BadPadding)?;
    if pad.iter().any(|&b| b != 0) {
        return Err(FormatError::BadPadding);
    }
    let data = covered
        .get(at.data_start..)
        .ok_or(FormatError::BadPadding)?;
    Ok((header, data))
}

/// Working memory of [`Policy::act_with`]: two buffers of `W` floats that the layers use in turn.
/// [`Policy::act`] makes (and zeroes) one per call; a control loop that keeps one alive skips
/// that (about 200 instructions per call on a Cortex-M4F for `W` = 64).
#[derive(Clone, Debug)]
pub struct Scratch<const W: usize = 64> {
    bufs: [[f32; W]; 2],
}

impl<const W: usize> Scratch<W> {
    /// Zeroed buffers.
    pub const fn new() -> Self {
        Self {
            bufs: [[0.0; W]; 2],
        }
    }
}

impl<const W: usize> Default for Scratch<W> {
    fn default() -> Self {
        Self::new()
    }
}

/// Resolves a tensor reference of exactly `n` f32 values, all finite.
fn tensor<'a>(
    data: &'a [u8],
    t: crate::format::TensorRef,
    n: usize,
) -> Result<F32s<'a>, FormatError> {
    let start = (t.offset as usize)
        .checked_mul(4)
        .ok_or(FormatError::TensorOutOfBounds)?;
    let len = (t.len as usize)
        .checked_mul(4)
        .ok_or(FormatError::TensorOutOfBounds)?;
    let end = start
        .checked_add(len)
        .ok_or(FormatError::TensorOutOfBounds)?;
    let bytes = data.get(start..end).ok_or(FormatError::TensorOutOfBounds)?;
    let v = F32s::new(bytes).ok_or(FormatError::TensorOutOfBounds)?;
    if v.len() != n {
        return Err(FormatError::ShapeMismatch);
    }
    if v.iter().any(|x| !x.is_finite()) {
        return Err(FormatError::NonFiniteParameter);
    }
    Ok(v)
}

fn within<const W: usize>(dim: usize) -> Result<usize, FormatError> {
    if dim == 0 {
        return Err(FormatError::ShapeMismatch);
    }
    if dim > W {
        return Err(FormatError::CapacityExceeded { dim, capacity: W });
    }
    Ok(dim)
}

impl<'a, const W: usize> Policy<'a, W> {
    /// Validates `bytes` completely and borrows them. After this succeeds, [`Policy::act`] can only
    /// fail on its own arguments.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let (h, data) = check_container(bytes)?;
        let obs_dim = within::<W>(usize::from(h.obs_dim))?;
        let act_dim = within::<W>(usize::from(h.act_dim))?;
        let squash =
            Squash::from_code(h.squash).ok_or(FormatError::UnsupportedSquash { code: h.squash })?;
        let obs_norm = if h.obs_mean.len == 0 && h.obs_inv_std.len == 0 {
            None
        } else {
            Some((
                tensor(data, h.obs_mean, obs_dim)?,
                tensor(data, h.obs_inv_std, obs_dim)?,
            ))
        };
        if !h.obs_clip.is_finite() || h.obs_clip < 0.0 {
            return Err(FormatError::NonFiniteParameter);
        }
        let act_low = tensor(data, h.act_low, act_dim)?;
        let act_high = tensor(data, h.act_high, act_dim)?;
        if act_low.iter().zip(act_high.iter()).any(|(lo, hi)| lo >= hi) {
            return Err(FormatError::BadActionBounds);
        }

        let mut actor = None;
        for bytes in &h.networks {
            let net: NetworkHeader<'_> = decode_exact(bytes)?;
            match net.role {
                role::ACTOR if actor.is_none() => actor = Some(net),
                role::ACTOR => return Err(FormatError::MalformedHeader),
                role::CRITIC => {} // monitoring network: not used by this reader yet
                other if net.required => {
                    return Err(FormatError::UnsupportedNetwork { role: other })
                }
                _ => {}
            }
        }
        let actor = actor.ok_or(FormatError::MissingActor)?;

        let mut layers = heapless::Vec::new();
        let mut width = obs_dim;
        for bytes in &actor.layers {
            let l: LayerHeader = decode_exact(bytes)?;
            if l.kind != layer_kind::DENSE_F32 {
                return Err(FormatError::UnsupportedLayerKind { kind: l.kind });
            }
            let activation = Activation::from_code(l.activation)
                .ok_or(FormatError::UnsupportedActivation { code: l.activation })?;
            let (in_dim, out_dim) = (usize::from(l.in_dim), within::<W>(usize::from(l.out_dim))?);
            let [w, b] = l.params.as_slice() else {
                return Err(FormatError::ShapeMismatch);
            };
            if in_dim != width {
                return Err(FormatError::ShapeMismatch);
            }
            let weight = tensor(
                data,
                *w,
                in_dim
                    .checked_mul(out_dim)
                    .ok_or(FormatError::ShapeMismatch)?,
            )?;
            let bias = tensor(data, *b, out_dim)?;
            let layer = Dense {
                weight,
                bias,
                in_dim,
                out_dim,
                activation,
            };
            layers
                .push(layer)
                .map_err(|_| FormatError::MalformedHeader)?;
            width = out_dim;
        }
        if layers.is_empty() || width != act_dim {
            return Err(FormatError::ShapeMismatch);
        }
        Ok(Self {
            meta: h.meta,
            obs_dim,
            obs_norm,
            obs_clip: h.obs_clip,
            act_low,
            act_high,
            squash,
            layers,
            blob_len: bytes.len(),
        })
    }

    /// Computes the deterministic action for `obs` into `action`.
    ///
    /// Normalises the observation, runs the MLP, squashes and scales to the action bounds.
    /// On error `action` is left untouched, so a caller never sees a partial or NaN command.
    /// Makes its working memory on the stack; [`Policy::act_with`] reuses the caller's.
    pub fn act(&self, obs: &[f32], action: &mut [f32]) -> Result<(), ActError> {
        self.act_with(obs, action, &mut Scratch::new())
    }

    /// [`Policy::act`] with the caller's working memory, which a control loop can keep across
    /// calls. The result does not depend on what `scratch` holds.
    pub fn act_with(
        &self,
        obs: &[f32],
        action: &mut [f32],
        scratch: &mut Scratch<W>,
    ) -> Result<(), ActError> {
        let (obs_dim, act_dim) = (self.obs_dim(), self.act_dim());
        if obs.len() != obs_dim {
            return Err(ActError::Dim {
                expected: obs_dim,
                found: obs.len(),
            });
        }
        if action.len() != act_dim {
            return Err(ActError::Dim {
                expected: act_dim,
                found: action.len(),
            });
        }
        if let Some(index) = obs.iter().position(|x| !x.is_finite()) {
            return Err(ActError::NonFinite { index });
        }

        // Two buffers, used in turn as a layer's input and output (swapping the references, not
        // the 2 x W floats). Every layer writes all of its outputs before they are read.
        let [xa, ya] = &mut scratch.bufs;
        let (mut x, mut y) = (xa, ya);
        let clip = if self.obs_clip > 0.0 {
            self.obs_clip
        } else {
            f32::INFINITY
        };
        match &self.obs_norm {
            // The usual case (an aligned blob), without decoding iterators.
            Some((F32s::Native(mean), F32s::Native(inv_std))) => {
                let norm = mean.iter().zip(*inv_std);
                for ((xi, o), (m, s)) in x.iter_mut().zip(obs).zip(norm) {
                    *xi = ((o - m) * s).clamp(-clip, clip);
                }
            }
            Some((mean, inv_std)) => {
                let norm = mean.iter().zip(inv_std.iter());
                for ((xi, o), (m, s)) in x.iter_mut().zip(obs).zip(norm) {
                    *xi = ((o - m) * s).clamp(-clip, clip);
                }
            }
            None => {
                for (xi, o) in x.iter_mut().zip(obs) {
                    *xi = o.clamp(-clip, clip);
                }
            }
        }
        let mut width = obs_dim;
        for layer in &self.layers {
            // Widths were checked against W and each other at load; `get` keeps that unpanicking.
            let fits = match (x.get(..width), y.get_mut(..layer.out_dim)) {
                (Some(input), Some(output)) => {
                    width == layer.in_dim
                        && dense(layer.weight, layer.bias, layer.activation, input, output)
                }
                _ => false,
            };
            if !fits {
                return Err(ActError::Dim {
                    expected: layer.in_dim,
                    found: width,
                });
            }
            width = layer.out_dim;
            core::mem::swap(&mut x, &mut y);
        }
        let out = x.get(..width).unwrap_or_default();
        if width != act_dim {
            return Err(ActError::Dim {
                expected: act_dim,
                found: width,
            });
        }
        if out.iter().any(|v| !v.is_finite()) {
            return Err(ActError::NonFiniteOutput);
        }
        let bounds = self.act_low.iter().zip(self.act_high.iter());
        for ((a, u), (lo, hi)) in action.iter_mut().zip(out).zip(bounds) {
            let t = match self.squash {
                Squash::Tanh => libm::tanhf(*u),
                Squash::Clip => u.clamp(-1.0, 1.0),
            };
            // The final clamp guards against rounding pushing the affine map past a bound.
            *a = (lo + (t + 1.0) * 0.5 * (hi - lo)).clamp(lo, hi);
        }
        Ok(())
    }

    /// Observation dimension.
    pub fn obs_dim(&self) -> usize {
        self.obs_dim
    }

    /// Normalisation `(mean_i, inv_std_i)` of input `i`; `(0, 1)` when the blob stores none.
    pub fn obs_normalization(&self, i: usize) -> Option<(f32, f32)> {
        match &self.obs_norm {
            Some((m, s)) => Some((m.iter().nth(i)?, s.iter().nth(i)?)),
            None => (i < self.obs_dim).then_some((0.0, 1.0)),
        }
    }

    /// Action dimension.
    pub fn act_dim(&self) -> usize {
        self.act_low.len()
    }

    /// Name, environment, writer version and training steps.
    pub fn metadata(&self) -> &Metadata<'a> {
        &self.meta
    }

    /// How actions are squashed into their bounds.
    pub fn squash(&self) -> Squash {
        self.squash
    }

    /// Action bound `i` as `(low, high)`.
    pub fn action_bounds(&self, i: usize) -> Option<(f32, f32)> {
        Some((self.act_low.iter().nth(i)?, self.act_high.iter().nth(i)?))
    }

    /// Shapes and activations of the actor's layers.
    pub fn layers(&self) -> impl Iterator<Item = LayerInfo> + '_ {
        self.layers.iter().map(|l| LayerInfo {
            in_dim: l.in_dim,
            out_dim: l.out_dim,
            activation: l.activation,
        })
    }

    /// Number of actor weights and biases.
    pub fn param_count(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.in_dim * l.out_dim + l.out_dim)
            .sum()
    }

    /// Size of the whole blob in bytes.
    pub fn blob_len(&self) -> usize {
        self.blob_len
    }

    /// True when every actor tensor is used in place as `&[f32]` (the blob sits 4-byte aligned),
    /// false when at least one is decoded byte by byte.
    pub fn is_aligned(&self) -> bool {
        self.layers
            .iter()
            .all(|l| matches!((l.weight, l.bias), (F32s::Native(_), F32s::Native(_))))
    }
}
