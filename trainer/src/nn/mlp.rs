//! Multi-layer perceptrons on a [`Backend`], with optional spectral normalization of every
//! linear layer.
//!
//! Layout: all parameters in one flat buffer, `[W0, b0, W1, b1, ...]` (PyTorch's state-dict
//! order), `Wi` row-major `out x in`; gradients in a second flat buffer of the same layout. Batches
//! are row-major `batch x features`.
//!
//! Spectral normalization (Miyato et al. 2018): layer `i` uses `W_sn = W / sigma`, `sigma = u^T W v`
//! from persistent vectors `u`, `v` refined by power iteration; the backward pass treats `u`, `v`
//! as constants. `W_sn` is materialized in its own buffer, so forward and backward are plain GEMMs
//! and export reads it directly. When the power iteration advances:
//! - one step at the first TRAINING forward after the parameters changed (an optimizer step,
//!   Polyak update, `load_params`, `params_mut`), so every training forward between two parameter
//!   updates (e.g. `Q(s, a)` and `Q(s + delta, a)` of the robust loss) sees the same `W_sn` and
//!   backward is consistent with all of them: one iteration per training step;
//! - never in inference ([`Mlp::predict`]) forwards: they recompute `sigma = u^T W v` for changed
//!   parameters with the stored `u`, `v`;
//! - explicitly with [`Mlp::spectral_iterate`];
//! - 15 steps at construction (as PyTorch's `spectral_norm`), so `sigma` starts accurate.

use core::ops::Range;
use std::borrow::Cow;

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::backend::Backend;
use super::cache::ForwardCache;
pub use super::passes::Backprop;
use super::passes::Core;
use super::spectral::top_singular_value;
use super::{Activation, CpuBackend};

/// Power-iteration steps run at construction.
pub const SPECTRAL_INIT_ITERATIONS: usize = 15;

/// Shape of an [`Mlp`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MlpConfig {
    /// Layer widths, input first, output last: `[3, 64, 64, 1]` is two hidden layers of 64.
    pub sizes: Vec<usize>,
    /// Activation after every hidden layer.
    pub hidden: Activation,
    /// Activation after the output layer.
    pub output: Activation,
    /// Spectrally normalize the hidden linear layers (the Lipschitz critic).
    pub spectral_norm: bool,
    /// With `spectral_norm`, also normalize the output layer. Normalizing every layer makes the
    /// network 1-Lipschitz (with 1-Lipschitz activations), too tight for returns of hundreds;
    /// leaving the output layer free keeps a bound (its norm times the rest) that can grow.
    pub spectral_norm_output: bool,
}

impl MlpConfig {
    /// Whether linear layer `i` is spectrally normalized.
    pub fn spectral_norm_layer(&self, i: usize) -> bool {
        self.spectral_norm && (self.spectral_norm_output || i + 2 < self.sizes.len())
    }

    /// The activation after linear layer `i`.
    pub fn activation(&self, i: usize) -> Activation {
        if i + 2 == self.sizes.len() {
            self.output
        } else {
            self.hidden
        }
    }
}

/// The `u`, `v`, `sigma` of every spectrally normalized layer and how current they are (see
/// [`Mlp::spectral_state`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpectralState {
    pub vectors: Vec<f32>,
    /// The vectors were iterated for the current weights.
    pub iterated: bool,
    /// `W_sn` was computed for the current weights.
    pub fresh: bool,
}

/// A multi-layer perceptron with preallocated training and inference caches.
///
/// Forward/backward/optimizer steps allocate nothing: every buffer is sized at construction
/// for `max_batch` rows (the `gemm` crate may allocate packing buffers inside a GEMM call).
#[derive(Clone, Debug)]
pub struct Mlp<B: Backend> {
    cfg: MlpConfig,
    pub(super) core: Core<B>,
    cache: ForwardCache<B>,
    infer: ForwardCache<B>,
}

impl<B: Backend> Mlp<B> {
    /// A network with PyTorch's default initialization: every `W` and `b` of a layer uniform in
    /// `(-1/sqrt(fan_in), 1/sqrt(fan_in))`; spectral-norm `u`, `v` random unit vectors refined by
    /// [`SPECTRAL_INIT_ITERATIONS`] power-iteration steps. Caches hold batches up to `max_batch`.
    pub fn new<R: Rng + ?Sized>(
        backend: &B,
        cfg: &MlpConfig,
        max_batch: usize,
        rng: &mut R,
    ) -> Self {
        let core = Core::new(backend, cfg, rng);
        let acts: Vec<_> = (0..cfg.sizes.len() - 1)
            .map(|i| cfg.activation(i))
            .collect();
        Self {
            cfg: cfg.clone(),
            cache: ForwardCache::new(backend, &cfg.sizes, &acts, max_batch),
            infer: ForwardCache::new(backend, &cfg.sizes, &acts, max_batch),
            core,
        }
    }

    pub fn config(&self) -> &MlpConfig {
        &self.cfg
    }
    pub fn backend(&self) -> &B {
        &self.core.backend
    }
    pub fn in_dim(&self) -> usize {
        self.cfg.sizes.first().copied().unwrap_or(0)
    }
    pub fn out_dim(&self) -> usize {
        self.cfg.sizes.last().copied().unwrap_or(0)
    }
    /// Number of linear layers.
    pub fn num_layers(&self) -> usize {
        self.core.layers.len()
    }
    /// Length of the flat parameter (and gradient) buffer.
    pub fn num_params(&self) -> usize {
        self.core.n_params
    }
    /// Largest batch of the built-in caches.
    pub fn max_batch(&self) -> usize {
        self.cache.max_batch
    }

    /// Training forward of `x` (`batch x in`) through the built-in cache; returns the output
    /// (`batch x out`). Advances the spectral-norm power iteration if the parameters changed.
    pub fn forward(&mut self, x: &[f32], batch: usize) -> &[f32] {
        self.core.forward(&mut self.cache, x, batch, true);
        self.cache.output()
    }

    /// Backward of the last [`Mlp::forward`] given dL/d(output) `dy` (`batch x out`): accumulates
    /// parameter gradients (call [`Mlp::zero_grad`] first), and dL/d(input) if asked (read it
    /// with [`Mlp::input_grad`]).
    pub fn backward(&mut self, dy: &[f32], batch: usize, want_input_grad: bool) {
        let mode = if want_input_grad {
            Backprop::ParamsAndInput
        } else {
            Backprop::Params
        };
        self.core.backward(&mut self.cache, dy, batch, mode);
    }

    /// dL/d(input) (`batch x in`) of the last [`Mlp::backward`] that computed it.
    pub fn input_grad(&mut self) -> &[f32] {
        self.cache.input_grad()
    }

    /// dL/d(input) of the last [`Mlp::forward`] given `dy`, without touching parameter gradients.
    pub fn input_grad_only(&mut self, dy: &[f32], batch: usize) -> &[f32] {
        self.core
            .backward(&mut self.cache, dy, batch, Backprop::Input);
        self.cache.input_grad()
    }

    /// dL/d(input) (`rows.len() x in`) for rows `rows` of the last [`Mlp::forward`] only, given
    /// their dL/d(output) `dy` (`rows.len() x out`), without touching parameter gradients. It
    /// costs `rows.len() / batch` of [`Mlp::input_grad_only`] and equals its rows when `dy` is
    /// zero on the other rows (SAC's actor loss sends each sample through one critic only).
    /// `sub` is a scratch cache of this network ([`Mlp::new_cache`]).
    pub fn input_grad_rows<'c>(
        &mut self,
        sub: &'c mut ForwardCache<B>,
        rows: &[usize],
        dy: &[f32],
    ) -> &'c [f32] {
        sub.copy_rows_from(&self.cache, rows);
        self.core.backward(sub, dy, rows.len(), Backprop::Input);
        sub.input_grad()
    }

    /// The output of the last [`Mlp::forward`].
    pub fn output(&mut self) -> &[f32] {
        self.cache.output()
    }

    /// Inference forward ("no_grad"): its own cache, so the training cache survives; never
    /// advances the power iteration (it only recomputes `sigma` with the stored `u`, `v` when
    /// the parameters changed).
    pub fn predict(&mut self, x: &[f32], batch: usize) -> &[f32] {
        self.core.forward(&mut self.infer, x, batch, false);
        self.infer.output()
    }

    /// A cache for [`Mlp::forward_with`] / [`Mlp::predict_with`], holding up to `max_batch` rows.
    pub fn new_cache(&self, max_batch: usize) -> ForwardCache<B> {
        let acts: Vec<_> = self.core.layers.iter().map(|l| l.act).collect();
        ForwardCache::new(&self.core.backend, &self.cfg.sizes, &acts, max_batch)
    }

    /// [`Mlp::forward`] into a caller-owned cache (one cache per batch that must survive until
    /// the backward pass, e.g. the two batches of the robust loss).
    pub fn forward_with<'c>(
        &mut self,
        cache: &'c mut ForwardCache<B>,
        x: &[f32],
        batch: usize,
    ) -> &'c [f32] {
        self.core.forward(cache, x, batch, true);
        cache.output()
    }

    /// Backward through a cache filled by [`Mlp::forward_with`]; dL/d(input), when computed, is
    /// read with [`ForwardCache::input_grad`]. Parameter gradients accumulate across calls.
    pub fn backward_with(
        &mut self,
        cache: &mut ForwardCache<B>,
        dy: &[f32],
        batch: usize,
        mode: Backprop,
    ) {
        self.core.backward(cache, dy, batch, mode);
    }

    /// [`Mlp::forward`] of `x` and [`Mlp::predict`] of `x_infer` (both `batch` rows) as two
    /// parallel tasks where the backend allows (see [`Backend::join`]); returns both outputs.
    /// Both passes use the weights the training forward uses (one power-iteration step ahead of
    /// a lone `predict`, for a spectrally normalized network with changed parameters).
    pub fn forward_and_predict(
        &mut self,
        x: &[f32],
        x_infer: &[f32],
        batch: usize,
    ) -> (&[f32], &[f32]) {
        self.core.prepare(true);
        let (core, cache, infer) = (&self.core, &mut self.cache, &mut self.infer);
        core.backend.join(
            || core.forward_prepared(cache, x, batch, true),
            || core.forward_prepared(infer, x_infer, batch, false),
        );
        (self.cache.output(), self.infer.output())
    }

    /// [`Mlp::predict`] into a caller-owned cache (e.g. larger batches than `max_batch`).
    pub fn predict_with<'c>(
        &mut self,
        cache: &'c mut ForwardCache<B>,
        x: &[f32],
        batch: usize,
    ) -> &'c [f32] {
        self.core.forward(cache, x, batch, false);
        cache.output()
    }

    /// Zeroes the gradient buffer.
    pub fn zero_grad(&mut self) {
        let n = self.core.n_params;
        self.core.backend.fill(&mut self.core.grads, 0..n, 0.0);
    }

    /// Euclidean norm of all gradients.
    pub fn grad_norm(&self) -> f32 {
        self.core
            .backend
            .sum_squares(&self.core.grads, 0..self.core.n_params)
            .sqrt()
    }

    /// Multiplies all gradients by `s`.
    pub fn scale_grads(&mut self, s: f32) {
        let n = self.core.n_params;
        self.core.backend.scale(&mut self.core.grads, 0..n, s);
    }

    /// The flat parameters `[W0, b0, W1, b1, ...]` (borrowed on the CPU), for checkpoints.
    /// Spectrally normalized layers hold the raw `W`; see [`Mlp::layer_weights`] for `W / sigma`.
    pub fn params(&self) -> Cow<'_, [f32]> {
        self.core
            .backend
            .to_host(&self.core.params, 0..self.core.n_params)
    }

    /// The flat gradients, same layout as [`Mlp::params`].
    pub fn grads(&self) -> Cow<'_, [f32]> {
        self.core
            .backend
            .to_host(&self.core.grads, 0..self.core.n_params)
    }

    /// Replaces all parameters (layout of [`Mlp::params`]).
    pub fn load_params(&mut self, src: &[f32]) {
        assert_eq!(src.len(), self.core.n_params, "load_params: wrong length");
        self.core.backend.upload(&mut self.core.params, 0, src);
        self.core.touch();
    }

    /// Ranges of layer `i`'s `W` (`out x in`) and `b` in the flat parameters.
    pub fn layer_ranges(&self, i: usize) -> (Range<usize>, Range<usize>) {
        let l = &self.core.layers[i];
        (l.w..l.b, l.b..l.b + l.out)
    }

    /// Layer `i`'s effective weights as the runtime computes with them: `W` (row-major `out x in`)
    /// and `b`. For spectrally normalized layers `W = W_raw / sigma`, refreshed first if stale.
    pub fn layer_weights(&mut self, i: usize) -> (Cow<'_, [f32]>, Cow<'_, [f32]>) {
        self.core.prepare(false);
        let l = self.core.layers[i];
        let bk = &self.core.backend;
        let w = match l.sn {
            Some((_, off)) => bk.to_host(&self.core.weff, off..off + l.out * l.inp),
            None => bk.to_host(&self.core.params, l.w..l.b),
        };
        (w, bk.to_host(&self.core.params, l.b..l.b + l.out))
    }

    /// Hard update: copies `src`'s parameters (and spectral-norm state).
    pub fn copy_from(&mut self, src: &Self) {
        assert_eq!(self.cfg, src.cfg, "copy_from: networks differ in shape");
        let (bk, n) = (&self.core.backend, self.core.n_params);
        bk.copy(&src.core.params, 0, &mut self.core.params, 0, n);
        let ns = bk.buf_len(&self.core.sn_state);
        bk.copy(&src.core.sn_state, 0, &mut self.core.sn_state, 0, ns);
        self.core.touch();
    }

    /// Polyak averaging, `self = tau * online + (1 - tau) * self`, in one pass over the flat
    /// parameters. Spectral-norm `u`, `v` are copied from `online` (they estimate the singular
    /// vectors of nearby weights; `sigma` is then recomputed for this network's own weights).
    pub fn polyak_from(&mut self, online: &Self, tau: f32) {
        assert_eq!(
            self.cfg, online.cfg,
            "polyak_from: networks differ in shape"
        );
        let bk = &self.core.backend;
        bk.polyak(&mut self.core.params, &online.core.params, tau);
        let ns = bk.buf_len(&self.core.sn_state);
        bk.copy(&online.core.sn_state, 0, &mut self.core.sn_state, 0, ns);
        self.core.touch();
    }

    /// The current estimate of layer `i`'s top singular value (`None` without spectral norm).
    pub fn spectral_sigma(&self, i: usize) -> Option<f32> {
        let (slot, _) = self.core.layers[i].sn?;
        let s = slot.sigma();
        self.core
            .backend
            .to_host(&self.core.sn_state, s..s + 1)
            .first()
            .copied()
    }

    /// The spectral-norm power-iteration state (`None` without spectral norm), for checkpoints:
    /// restored with [`Mlp::load_spectral_state`], a network continues exactly where it was.
    pub fn spectral_state(&self) -> Option<SpectralState> {
        if !self.core.has_sn() {
            return None;
        }
        let bk = &self.core.backend;
        let n = bk.buf_len(&self.core.sn_state);
        let version = Some(self.core.param_version);
        Some(SpectralState {
            vectors: bk.to_host(&self.core.sn_state, 0..n).into_owned(),
            iterated: self.core.sn_iterated == version,
            fresh: self.core.sn_fresh == version,
        })
    }

    /// Restores [`Mlp::spectral_state`] of a network of the same shape, after
    /// [`Mlp::load_params`].
    pub fn load_spectral_state(&mut self, st: &SpectralState) -> Result<(), String> {
        let n = self.core.backend.buf_len(&self.core.sn_state);
        if !self.core.has_sn() || st.vectors.len() != n {
            return Err(format!(
                "spectral-norm state has {} values, the network needs {n}",
                st.vectors.len()
            ));
        }
        let core = &mut self.core;
        core.backend.upload(&mut core.sn_state, 0, &st.vectors);
        let version = Some(core.param_version);
        // The next training pass steps the power iteration only if the saved network's would
        // have.
        core.sn_iterated = st.iterated.then_some(version).flatten();
        core.sn_fresh = None;
        if st.fresh {
            // `W_sn` as the saved network held it: `W` over the stored sigma. Recomputing sigma
            // from `u`, `v` would differ in the last bits from the `|W v|` an iteration gives.
            let params = core
                .backend
                .to_host(&core.params, 0..core.n_params)
                .into_owned();
            for l in &core.layers {
                if let Some((slot, off)) = l.sn {
                    let inv = 1.0 / st.vectors[slot.sigma()];
                    let w_sn: Vec<f32> = params[l.w..l.b].iter().map(|x| x * inv).collect();
                    core.backend.upload(&mut core.weff, off, &w_sn);
                }
            }
            core.sn_fresh = version;
        }
        core.eff_version += 1;
        Ok(())
    }

    /// Runs `steps` extra power-iteration steps on every spectrally normalized layer.
    pub fn spectral_iterate(&mut self, steps: usize) {
        if self.core.has_sn() {
            for _ in 0..steps {
                self.core.spectral(true);
            }
        }
    }

    /// The top singular value of each layer's effective weight (`W_sn` or `W`), by power
    /// iteration to convergence on the host: for Lipschitz reports, slow-ish (not for updates).
    pub fn spectral_norms(&mut self) -> Vec<f32> {
        (0..self.num_layers())
            .map(|i| {
                let (inp, out) = (self.cfg.sizes[i], self.cfg.sizes[i + 1]);
                top_singular_value(&self.layer_weights(i).0, out, inp)
            })
            .collect()
    }

    /// An upper bound on the network's Lipschitz constant (Euclidean norms): the product of the
    /// layers' spectral norms and their activations' Lipschitz constants.
    pub fn lipschitz_bound(&mut self) -> f32 {
        let acts: Vec<_> = self.core.layers.iter().map(|l| l.act.lipschitz()).collect();
        self.spectral_norms()
            .iter()
            .zip(acts)
            .map(|(s, a)| s * a)
            .product()
    }
}

/// Zero-copy mutable access, only where parameters live in host memory.
impl Mlp<CpuBackend> {
    /// The flat parameters, writable (marks caches and `W_sn` stale).
    pub fn params_mut(&mut self) -> &mut [f32] {
        self.core.touch();
        &mut self.core.params
    }

    /// The flat gradients, writable (e.g. to add a hand-written regularizer's gradient).
    pub fn grads_mut(&mut self) -> &mut [f32] {
        &mut self.core.grads
    }

    /// The built-in training cache's buffers, for allocation tests: (pointer, capacity) pairs.
    #[cfg(test)]
    pub(super) fn buffer_fingerprint(&self) -> Vec<(usize, usize)> {
        let c = &self.core;
        let mut bufs = vec![&c.params, &c.grads, &c.sn_state, &c.weff, &c.sn_scratch];
        for cache in [&self.cache, &self.infer] {
            bufs.extend([
                &cache.x,
                &cache.dx,
                &cache.d[0],
                &cache.d[1],
                &cache.staging,
            ]);
            bufs.extend(cache.out.iter().chain(cache.pre.iter().flatten()));
        }
        bufs.iter()
            .map(|b| (b.as_ptr() as usize, b.capacity()))
            .collect()
    }
}
