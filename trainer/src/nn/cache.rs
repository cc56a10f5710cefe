//! Activation caches: everything one forward pass keeps for its backward pass, plus the backward
//! pass's scratch, preallocated for a maximum batch.
//!
//! Why caller-owned caches: SAC's robust critic loss runs the SAME network on two batches
//! (`Q(s, a)` and `Q(s + delta, a)`) before one backward pass through both. Each batch gets its
//! own [`ForwardCache`]; backward through each accumulates into the network's one gradient
//! buffer. A cache records which network and which parameter version filled it, so a backward
//! pass against changed parameters (or another network) panics instead of returning wrong
//! gradients. [`super::Mlp`] owns one training cache and one inference cache for the simple API.

use super::backend::Backend;
use super::Activation;

/// What the last forward pass through a cache was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CacheState {
    Empty,
    /// A training forward by network `owner` at its effective-weights version `eff_version`.
    Train {
        owner: u64,
        eff_version: u64,
    },
    /// An inference forward: not usable for backward.
    Infer,
}

/// Activations and backward scratch of one network for batches up to `max_batch` rows.
/// Make one with [`super::Mlp::new_cache`].
#[derive(Clone, Debug)]
pub struct ForwardCache<B: Backend> {
    pub(super) backend: B,
    /// Layer widths of the network it was made for, input first.
    pub(super) sizes: Vec<usize>,
    pub(super) max_batch: usize,
    /// Rows of the last forward pass.
    pub(super) batch: usize,
    pub(super) state: CacheState,
    /// Copy of the input (the first layer's weight gradient needs it).
    pub(super) x: B::Buf,
    /// Per layer: the activation output (the next layer's input).
    pub(super) out: Vec<B::Buf>,
    /// Per layer: the pre-activation, only for activations whose derivative needs it.
    pub(super) pre: Vec<Option<B::Buf>>,
    /// Backward ping-pong buffers for dL/d(activations), `max_batch x` widest layer.
    pub(super) d: [B::Buf; 2],
    /// dL/d(input) of the last backward pass that asked for it.
    pub(super) dx: B::Buf,
    pub(super) dx_valid: bool,
    /// Host copies for devices that are not the host (unused, empty, on the CPU).
    pub(super) staging: Vec<f32>,
}

impl<B: Backend> ForwardCache<B> {
    pub(super) fn new(backend: &B, sizes: &[usize], acts: &[Activation], max_batch: usize) -> Self {
        assert!(max_batch > 0, "max_batch must be > 0");
        let widest = sizes.iter().skip(1).copied().max().unwrap_or(0);
        let input = sizes.first().copied().unwrap_or(0);
        Self {
            backend: backend.clone(),
            sizes: sizes.to_vec(),
            max_batch,
            batch: 0,
            state: CacheState::Empty,
            x: backend.alloc(max_batch * input),
            out: sizes
                .iter()
                .skip(1)
                .map(|&w| backend.alloc(max_batch * w))
                .collect(),
            pre: sizes
                .iter()
                .skip(1)
                .zip(acts)
                .map(|(&w, a)| a.needs_pre().then(|| backend.alloc(max_batch * w)))
                .collect(),
            d: [
                backend.alloc(max_batch * widest),
                backend.alloc(max_batch * widest),
            ],
            dx: backend.alloc(max_batch * input),
            dx_valid: false,
            staging: Vec::new(),
        }
    }

    /// Makes this cache hold rows `rows` (in that order) of `src`'s last training forward pass,
    /// as if the forward had run on those rows alone. Rows are independent in a backward pass,
    /// so a backward through this cache gives exactly those rows' input gradients (parameter
    /// gradients summed over them only) at `rows.len() / batch` of the cost.
    ///
    /// # Panics
    /// If `src` holds no training forward, was made for another shape, a row is not in its
    /// batch, or `rows` is empty or longer than this cache's `max_batch`.
    pub fn copy_rows_from(&mut self, src: &ForwardCache<B>, rows: &[usize]) {
        assert!(
            matches!(src.state, CacheState::Train { .. }),
            "copy_rows_from: the source holds no training forward pass"
        );
        assert_eq!(
            self.sizes, src.sizes,
            "copy_rows_from: caches of other shapes"
        );
        assert!(
            !rows.is_empty() && rows.len() <= self.max_batch,
            "copy_rows_from: {} rows for a cache of {}",
            rows.len(),
            self.max_batch
        );
        assert!(
            rows.iter().all(|&r| r < src.batch),
            "copy_rows_from: a row outside the source's batch of {}",
            src.batch
        );
        let b = &self.backend;
        copy_rows(b, &src.x, &mut self.x, self.sizes[0], rows);
        for (l, (o, s)) in self.out.iter_mut().zip(&src.out).enumerate() {
            copy_rows(b, s, o, self.sizes[l + 1], rows);
        }
        for (l, (p, s)) in self.pre.iter_mut().zip(&src.pre).enumerate() {
            if let (Some(p), Some(s)) = (p.as_mut(), s.as_ref()) {
                copy_rows(b, s, p, self.sizes[l + 1], rows);
            }
        }
        self.batch = rows.len();
        self.state = src.state;
        self.dx_valid = false;
    }

    /// The largest batch this cache holds.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Rows of the last forward pass through it (0 before any).
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The output (`batch x out`, row-major) of the last forward pass through this cache.
    pub fn output(&mut self) -> &[f32] {
        let n = self.batch * self.sizes.last().copied().unwrap_or(0);
        match self.out.last() {
            Some(y) => self.backend.view(y, 0..n, &mut self.staging),
            None => &[],
        }
    }

    /// dL/d(input) (`batch x in`, row-major) of the last backward pass through this cache.
    ///
    /// # Panics
    /// If that backward pass did not compute it (or there was none since the last forward).
    pub fn input_grad(&mut self) -> &[f32] {
        assert!(
            self.dx_valid,
            "input_grad: the last backward pass did not compute it"
        );
        let n = self.batch * self.sizes.first().copied().unwrap_or(0);
        self.backend.view(&self.dx, 0..n, &mut self.staging)
    }
}

/// `to` row `i` = `from` row `rows[i]`, rows of `width`; runs of consecutive rows go as one copy
/// (one launch on a device).
fn copy_rows<B: Backend>(b: &B, from: &B::Buf, to: &mut B::Buf, width: usize, rows: &[usize]) {
    let mut i = 0;
    while i < rows.len() {
        let mut n = 1;
        while i + n < rows.len() && rows[i + n] == rows[i] + n {
            n += 1;
        }
        b.copy(from, rows[i] * width, to, i * width, n * width);
        i += n;
    }
}
