//! Writing `.keel` blobs (feature `alloc`): the trainer's side of the format, built from the same
//! header types the reader parses.
use alloc::string::String;
use alloc::vec::Vec;

use crate::activation::Activation;
use crate::format::{
    align_up, layer_kind, role, Header, LayerHeader, MetaHeader, NetworkHeader, Squash, TensorRef,
    CRC32, FORMAT_VERSION, MAGIC,
};

/// A dense f32 layer: `weight` is row-major `out_dim x in_dim`.
#[derive(Clone, Debug, PartialEq)]
pub struct DenseSpec {
    pub in_dim: usize,
    pub out_dim: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub activation: Activation,
}

/// A layer in its raw on-disk form (kind code, activation code, tensors as bytes). Lets the
/// trainer write layer kinds this crate cannot yet read, and tests write unknown ones.
#[derive(Clone, Debug, PartialEq)]
pub struct RawLayer {
    pub kind: u8,
    pub in_dim: usize,
    pub out_dim: usize,
    pub activation: u8,
    pub params: Vec<Vec<u8>>,
}

/// A network in raw form.
#[derive(Clone, Debug, PartialEq)]
pub struct RawNetwork {
    pub role: u8,
    pub required: bool,
    pub layers: Vec<RawLayer>,
}

/// Everything a deployable policy holds.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicySpec {
    pub name: String,
    pub env_id: String,
    pub keel_version: String,
    pub train_steps: u64,
    /// Observation normalisation; both empty means identity (nothing stored).
    pub obs_mean: Vec<f32>,
    pub obs_inv_std: Vec<f32>,
    /// Clamp normalised observations to +-obs_clip; 0 disables.
    pub obs_clip: f32,
    pub act_low: Vec<f32>,
    pub act_high: Vec<f32>,
    pub squash: Squash,
    /// The actor, observation to pre-squash action.
    pub actor: Vec<DenseSpec>,
    /// Further networks (e.g. a critic for monitoring), written after the actor.
    pub extra_networks: Vec<RawNetwork>,
}

/// Why a spec could not be encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// A dimension or tensor does not fit the format's integer fields.
    TooLarge,
    /// More networks, layers or tensors than the format's fixed capacities.
    TooMany(&'static str),
    /// postcard failed (should not happen for valid specs).
    Serialize,
}

impl core::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TooLarge => f.write_str("a dimension or tensor is too large for the format"),
            Self::TooMany(what) => write!(f, "too many {what} for the format"),
            Self::Serialize => f.write_str("header serialization failed"),
        }
    }
}

impl core::error::Error for EncodeError {}

impl PolicySpec {
    /// The observation dimension: the normalisation's length, else the actor's input width.
    pub fn obs_dim(&self) -> usize {
        match (self.obs_mean.len(), self.actor.first()) {
            (0, Some(first)) => first.in_dim,
            (n, _) => n,
        }
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

impl DenseSpec {
    /// The layer in raw form.
    pub fn to_raw(&self) -> RawLayer {
        RawLayer {
            kind: layer_kind::DENSE_F32,
            in_dim: self.in_dim,
            out_dim: self.out_dim,
            activation: self.activation.code(),
            params: alloc::vec![f32_bytes(&self.weight), f32_bytes(&self.bias)],
        }
    }
}

/// Appends tensors to the data region; each is zero-padded to whole 4-byte words.
struct DataRegion(Vec<u8>);

impl DataRegion {
    fn push(&mut self, bytes: &[u8]) -> Result<TensorRef, EncodeError> {
        let words = |n: usize| u32::try_from(n / 4).map_err(|_| EncodeError::TooLarge);
        let offset = words(self.0.len())?;
        self.0.extend_from_slice(bytes);
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
        Ok(TensorRef {
            offset,
            len: words(bytes.len().div_ceil(4) * 4)?,
        })
    }
}

fn dim(n: usize) -> Result<u16, EncodeError> {
    u16::try_from(n).map_err(|_| EncodeError::TooLarge)
}

/// Encodes `spec` as a complete `.keel` blob. Shapes are not validated here; round-trip through
/// [`crate::Policy::from_bytes`] to check a blob.
pub fn encode(spec: &PolicySpec) -> Result<Vec<u8>, EncodeError> {
    let mut data = DataRegion(Vec::new());
    let obs_mean = data.push(&f32_bytes(&spec.obs_mean))?;
    let obs_inv_std = data.push(&f32_bytes(&spec.obs_inv_std))?;
    let act_low = data.push(&f32_bytes(&spec.act_low))?;
    let act_high = data.push(&f32_bytes(&spec.act_high))?;

    // An empty `actor` writes no actor network, so a raw one can come from `extra_networks`.
    let actor = (!spec.actor.is_empty()).then(|| RawNetwork {
        role: role::ACTOR,
        required: true,
        layers: spec.actor.iter().map(DenseSpec::to_raw).collect(),
    });
    let ser = |v: &dyn Fn() -> postcard::Result<Vec<u8>>| v().map_err(|_| EncodeError::Serialize);
    // Each network and each of its layers is written as its own postcard blob (see NetworkHeader).
    let mut network_blobs: Vec<Vec<u8>> = Vec::new();
    for net in actor.iter().chain(&spec.extra_networks) {
        let mut layer_blobs: Vec<Vec<u8>> = Vec::new();
        for l in &net.layers {
            let mut params = heapless::Vec::new();
            for p in &l.params {
                params
                    .push(data.push(p)?)
                    .map_err(|_| EncodeError::TooMany("tensors per layer"))?;
            }
            let header = LayerHeader {
                kind: l.kind,
                in_dim: dim(l.in_dim)?,
                out_dim: dim(l.out_dim)?,
                activation: l.activation,
                params,
            };
            layer_blobs.push(ser(&|| postcard::to_allocvec(&header))?);
        }
        let mut layers = heapless::Vec::new();
        for b in &layer_blobs {
            layers
                .push(b.as_slice())
                .map_err(|_| EncodeError::TooMany("layers"))?;
        }
        let header = NetworkHeader {
            role: net.role,
            required: net.required,
            layers,
        };
        network_blobs.push(ser(&|| postcard::to_allocvec(&header))?);
    }
    let mut networks = heapless::Vec::new();
    for b in &network_blobs {
        networks
            .push(b.as_slice())
            .map_err(|_| EncodeError::TooMany("networks"))?;
    }
    let data_words = u32::try_from(data.0.len() / 4).map_err(|_| EncodeError::TooLarge)?;

    let header = Header {
        meta: MetaHeader {
            name: &spec.name,
            env_id: &spec.env_id,
            keel_version: &spec.keel_version,
            train_steps: spec.train_steps,
        },
        obs_dim: dim(spec.obs_dim())?,
        act_dim: dim(spec.act_low.len())?,
        obs_mean,
        obs_inv_std,
        obs_clip: spec.obs_clip,
        act_low,
        act_high,
        squash: spec.squash as u8,
        data_words,
        networks,
    };

    let mut out = Vec::with_capacity(64 + data.0.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    let header = postcard::to_allocvec(&header).map_err(|_| EncodeError::Serialize)?;
    out.extend_from_slice(&header);
    let start = align_up(out.len()).ok_or(EncodeError::TooLarge)?;
    out.resize(start, 0);
    out.extend_from_slice(&data.0);
    let crc = CRC32.checksum(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

impl PolicySpec {
    /// The same policy with `activation` on every hidden layer (e.g. [`Activation::Relu`], what
    /// the trainer's actors use).
    pub fn with_hidden_activation(mut self, activation: Activation) -> Self {
        let hidden = self.actor.len().saturating_sub(1);
        for layer in self.actor.iter_mut().take(hidden) {
            layer.activation = activation;
        }
        self
    }

    /// A deterministic pseudo-random MLP policy (tanh hidden layers, weights ~ U(-1/sqrt(in),
    /// 1/sqrt(in))), for examples, tests and benchmarks. Pendulum-like bounds `[-2, 2]`.
    pub fn example(obs_dim: usize, hidden: &[usize], act_dim: usize, seed: u64) -> Self {
        // SplitMix64: tiny, good enough for test weights, no dependency.
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        };
        let dims: Vec<usize> = core::iter::once(obs_dim)
            .chain(hidden.iter().copied())
            .chain(core::iter::once(act_dim))
            .collect();
        let actor = dims
            .iter()
            .zip(dims.iter().skip(1))
            .enumerate()
            .map(|(i, (&n_in, &n_out))| {
                let scale = 1.0 / libm::sqrtf(n_in as f32);
                DenseSpec {
                    in_dim: n_in,
                    out_dim: n_out,
                    weight: (0..n_in * n_out).map(|_| next() * scale).collect(),
                    bias: (0..n_out).map(|_| next() * 0.1).collect(),
                    activation: if i + 2 == dims.len() {
                        Activation::Identity
                    } else {
                        Activation::FastTanh
                    },
                }
            })
            .collect();
        Self {
            name: String::from("example"),
            env_id: String::from("pendulum"),
            keel_version: String::from(env!("CARGO_PKG_VERSION")),
            train_steps: 0,
            obs_mean: (0..obs_dim).map(|_| next() * 0.1).collect(),
            obs_inv_std: (0..obs_dim).map(|_| 1.0 + next().abs()).collect(),
            obs_clip: 10.0,
            act_low: alloc::vec![-2.0; act_dim],
            act_high: alloc::vec![2.0; act_dim],
            squash: Squash::Tanh,
            actor,
            extra_networks: Vec::new(),
        }
    }
}
