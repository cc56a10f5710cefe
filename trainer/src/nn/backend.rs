//! The seam between the network code and the hardware it runs on.
//!
//! Networks ([`super::Mlp`]) and optimizers ([`super::Adam`]) are written once against
//! [`Backend`]; [`super::CpuBackend`] is the reference implementation, and a CUDA backend can be
//! added later without touching them (or the algorithms that hold `Mlp<B>` values).
//!
//! The trait is deliberately small and "kernel shaped", so that each method maps onto one GPU
//! launch (or one cuBLAS call):
//! - all parameters of a network live in ONE flat buffer (gradients and Adam moments likewise),
//!   each layer's `W` and `b` being ranges into it, so Adam, Polyak averaging, clipping and
//!   zeroing are single launches over flat buffers;
//! - matrices are row-major sub-ranges of buffers ([`Mat`], [`MatMut`]), with a transpose flag
//!   on the inputs of [`Backend::gemm`];
//! - bias + activation are fused into one pass forward ([`Backend::bias_act_forward`]) and the
//!   activation derivative + bias gradient into one pass backward ([`Backend::act_backward`]);
//! - spectral normalization state (`u`, `v`, `sigma`) stays on the device; only tests and
//!   reports read it back.
//!
//! Host <-> device traffic goes through [`Backend::upload`], [`Backend::download`],
//! [`Backend::view`] and [`Backend::to_host`]; the last two borrow the buffer itself on the CPU,
//! so CPU callers pay no copies.

use core::fmt;
use core::ops::Range;
use std::borrow::Cow;

use super::Activation;

/// A row-major `rows x cols` matrix stored contiguously at `offset` in `buf`, used as `op(A)`:
/// itself, or its transpose when `trans` is set.
#[derive(Debug)]
pub struct Mat<'a, T> {
    pub buf: &'a T,
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub trans: bool,
}

impl<T> Clone for Mat<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Mat<'_, T> {}

impl<'a, T> Mat<'a, T> {
    /// The untransposed matrix.
    pub fn new(buf: &'a T, offset: usize, rows: usize, cols: usize) -> Self {
        Self {
            buf,
            offset,
            rows,
            cols,
            trans: false,
        }
    }

    /// The same storage used as its transpose.
    pub fn t(self) -> Self {
        Self {
            trans: !self.trans,
            ..self
        }
    }

    /// Shape of `op(A)`: (rows, cols) after the optional transpose.
    pub fn op_shape(&self) -> (usize, usize) {
        if self.trans {
            (self.cols, self.rows)
        } else {
            (self.rows, self.cols)
        }
    }

    /// Number of stored elements.
    pub fn len(&self) -> usize {
        self.rows * self.cols
    }

    /// Whether it stores no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A row-major `rows x cols` output matrix stored contiguously at `offset` in `buf`.
#[derive(Debug)]
pub struct MatMut<'a, T> {
    pub buf: &'a mut T,
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
}

impl<'a, T> MatMut<'a, T> {
    pub fn new(buf: &'a mut T, offset: usize, rows: usize, cols: usize) -> Self {
        Self {
            buf,
            offset,
            rows,
            cols,
        }
    }

    /// Number of stored elements.
    pub fn len(&self) -> usize {
        self.rows * self.cols
    }

    /// Whether it stores no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Scalars of one Adam update over one range (see [`Backend::adam`]). The bias corrections are
/// passed in (computed on the host from the step count) so the kernel itself is stateless.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamHyper {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// L2-style decay: `g += weight_decay * theta` before the moment updates (as
    /// `torch.optim.Adam(weight_decay=..)`, and as MBPO's per-layer L2 losses).
    pub weight_decay: f32,
    /// `1 - beta1^t`.
    pub bias_correction1: f32,
    /// `1 - beta2^t`.
    pub bias_correction2: f32,
}

/// Where one spectrally normalized layer's state lives in a state buffer: `u` (the layer's
/// `rows` outputs) at `offset`, `v` (its `cols` inputs) right after, then `sigma`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpectralSlot {
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
}

impl SpectralSlot {
    /// Elements of state one layer needs: `u`, `v`, `sigma`.
    pub const fn len(rows: usize, cols: usize) -> usize {
        rows + cols + 1
    }
    pub fn u(&self) -> Range<usize> {
        self.offset..self.offset + self.rows
    }
    pub fn v(&self) -> Range<usize> {
        self.offset + self.rows..self.offset + self.rows + self.cols
    }
    pub fn sigma(&self) -> usize {
        self.offset + self.rows + self.cols
    }

    /// The operand checks every backend's `spectral_step` makes: `W` (untransposed) and `W_sn`
    /// are this layer's `rows x cols`.
    pub fn check_step_operands<T>(&self, w: &Mat<'_, T>, w_sn: &MatMut<'_, T>) {
        let shape = (self.rows, self.cols);
        assert!(
            !w.trans && (w.rows, w.cols) == shape,
            "spectral_step: bad shapes"
        );
        assert_eq!(
            (w_sn.rows, w_sn.cols),
            shape,
            "spectral_step: bad output shape"
        );
    }

    /// The operand checks every backend's `spectral_backward` makes: `g`, `W_sn` and the
    /// gradient are all this layer's `rows x cols`, stored untransposed.
    pub fn check_backward_operands<T>(
        &self,
        g: &Mat<'_, T>,
        w_sn: &Mat<'_, T>,
        grad: &MatMut<'_, T>,
    ) {
        let shape = (self.rows, self.cols);
        assert!(
            !g.trans && !w_sn.trans,
            "spectral_backward: transposed operands"
        );
        assert!(
            (g.rows, g.cols) == shape
                && (w_sn.rows, w_sn.cols) == shape
                && (grad.rows, grad.cols) == shape,
            "spectral_backward: bad shapes"
        );
    }
}

/// The math a network needs, on some device. See the module documentation for the design.
///
/// Conventions: lengths and offsets are in `f32` elements; methods panic on out-of-range
/// arguments (a programming error, never data dependent); buffers passed as `&mut` and `&` are
/// distinct by construction (Rust's borrows), so kernels need no aliasing checks.
pub trait Backend: Clone + fmt::Debug + Send + Sync + 'static {
    /// A device buffer of `f32`.
    type Buf: Clone + fmt::Debug + Send + Sync;

    /// A zero-filled buffer of `len` elements.
    fn alloc(&self, len: usize) -> Self::Buf;

    /// Number of elements of `buf`.
    fn buf_len(&self, buf: &Self::Buf) -> usize;

    /// Copies `src` to `dst[offset..offset + src.len()]`.
    fn upload(&self, dst: &mut Self::Buf, offset: usize, src: &[f32]);

    /// Copies `src[offset..offset + dst.len()]` to `dst`.
    fn download(&self, src: &Self::Buf, offset: usize, dst: &mut [f32]);

    /// `src[range]` on the host: borrowed from `src` on a host backend; otherwise downloaded into
    /// `staging` (which only reallocates when it is too small), so hot paths do not allocate.
    fn view<'a>(
        &self,
        src: &'a Self::Buf,
        range: Range<usize>,
        staging: &'a mut Vec<f32>,
    ) -> &'a [f32] {
        staging.resize(range.len(), 0.0);
        self.download(src, range.start, staging);
        staging
    }

    /// `src[range]` on the host, borrowed where possible: for checkpoints, export and reports.
    fn to_host<'a>(&self, src: &'a Self::Buf, range: Range<usize>) -> Cow<'a, [f32]> {
        let mut out = vec![0.0; range.len()];
        self.download(src, range.start, &mut out);
        Cow::Owned(out)
    }

    /// Runs two independent pieces of work (e.g. a layer's weight and input gradients), in
    /// parallel where the backend can; the default runs `a`, then `b`.
    fn join(&self, a: impl FnOnce(), b: impl FnOnce() + Send) {
        a();
        b();
    }

    /// `dst[dst_offset..][..len] = src[src_offset..][..len]`.
    fn copy(
        &self,
        src: &Self::Buf,
        src_offset: usize,
        dst: &mut Self::Buf,
        dst_offset: usize,
        len: usize,
    );

    /// `dst[range] = value`.
    fn fill(&self, dst: &mut Self::Buf, range: Range<usize>, value: f32);

    /// `C = alpha op(A) op(B) + beta C`, all row-major. With `beta == 0`, `C` is not read (it may
    /// hold garbage, even NaN).
    fn gemm(
        &self,
        alpha: f32,
        a: Mat<'_, Self::Buf>,
        b: Mat<'_, Self::Buf>,
        beta: f32,
        c: MatMut<'_, Self::Buf>,
    );

    /// Forward of bias + activation, in place on the `rows x cols` matrix at the start of `out`
    /// (which holds `X W^T` on entry): `z = out + bias` (bias broadcast over rows, read from
    /// `bias[bias_offset..][..cols]`), `out = act(z)`, and `z` is also stored at the start of
    /// `pre` when given (the backward pass needs it where [`Activation::needs_pre`]).
    #[allow(clippy::too_many_arguments)]
    fn bias_act_forward(
        &self,
        out: &mut Self::Buf,
        pre: Option<&mut Self::Buf>,
        rows: usize,
        cols: usize,
        bias: &Self::Buf,
        bias_offset: usize,
        act: Activation,
    );

    /// Backward of [`Backend::bias_act_forward`], in place on the `rows x cols` matrix at the
    /// start of `d`: on entry dL/d(out), on exit dL/dz = dL/d(out) * act'(z). `y` and `pre` are
    /// that forward's `out` and `pre` (from their starts). With `dbias = Some((grads, offset))`,
    /// also accumulates the bias gradient: `grads[offset + j] += sum_rows dL/dz[., j]`.
    #[allow(clippy::too_many_arguments)]
    fn act_backward(
        &self,
        d: &mut Self::Buf,
        y: &Self::Buf,
        pre: Option<&Self::Buf>,
        rows: usize,
        cols: usize,
        act: Activation,
        dbias: Option<(&mut Self::Buf, usize)>,
    );

    /// One Adam update over `range` of the flat buffers (PyTorch's formula):
    /// `g = grad + wd theta; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;`
    /// `theta -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)`.
    fn adam(
        &self,
        params: &mut Self::Buf,
        grads: &Self::Buf,
        m: &mut Self::Buf,
        v: &mut Self::Buf,
        range: Range<usize>,
        hyper: &AdamHyper,
    );

    /// Polyak averaging over whole buffers of equal length: `dst = tau src + (1 - tau) dst`.
    fn polyak(&self, dst: &mut Self::Buf, src: &Self::Buf, tau: f32);

    /// `sum(buf[range]^2)`, accumulated at least in f32 lanes and summed in f64.
    fn sum_squares(&self, buf: &Self::Buf, range: Range<usize>) -> f32;

    /// `buf[range] *= s`.
    fn scale(&self, buf: &mut Self::Buf, range: Range<usize>, s: f32);

    /// Spectral normalization of the `rows x cols` weight `w` (untransposed) with the state in
    /// `state` at `slot` (see [`SpectralSlot`]). With `iterate`, first one power-iteration step
    /// `v = normalize(W^T u); u = normalize(W v)`. Then `sigma = u^T W v` is stored in the state
    /// and `w_sn = w / sigma` written.
    fn spectral_step(
        &self,
        w: Mat<'_, Self::Buf>,
        state: &mut Self::Buf,
        slot: SpectralSlot,
        w_sn: MatMut<'_, Self::Buf>,
        iterate: bool,
    );

    /// Backward through `W_sn = W / sigma` with `u`, `v` constant (so d sigma / dW = u v^T):
    /// given `g = dL/dW_sn`, accumulates `grad += (g - <g, W_sn> u v^T) / sigma`.
    fn spectral_backward(
        &self,
        g: Mat<'_, Self::Buf>,
        w_sn: Mat<'_, Self::Buf>,
        state: &Self::Buf,
        slot: SpectralSlot,
        grad: MatMut<'_, Self::Buf>,
    );
}
