//! The CPU reference backend: `Vec<f32>` buffers, GEMM through the `gemm` crate (runtime-detected
//! AVX2/FMA kernels; with `matmul = "bf16"` large products go to `nn::bf16` on AMX), every other
//! kernel a plain loop over zipped slices so LLVM vectorizes it and no per-element bounds check
//! remains.
//!
//! Why `gemm` 0.18 and not 0.19's AVX-512 kernels (`x86-v4`): on an Intel Xeon with two 512-bit
//! FMA units they made SAC at 2x256 1.5x faster, but they sum in another order, and every
//! trajectory and benchmark in docs/benchmarks.md changes with that; the default Pendulum run
//! (seed 0) then ended at -205.8 instead of solved. Taking them is a retuning job of its own.
//!
//! Why `gemm` and not `matrixmultiply` (what nalgebra calls for f32): `matrixmultiply` packs both
//! operands on every call, which dominates the matrix-vector shapes of an MLP's output layer
//! (256x256 times 256x1: 46 us vs 3.6 us here) and cost 17% of a SAC update at 2x256; on the
//! square 256^3 products `gemm` is also ~10% faster (107 vs 101 GFLOP/s on one core).
//! With `keel train --threads N`, independent tasks ([`Backend::join`]), large GEMMs and Adam
//! steps are spread across cores by `nn::threads` (bit-identical to one thread; one thread is
//! the default, see there why).

use core::ops::Range;
use std::borrow::Cow;

use super::activation::fast_tanh_derivative;
use super::backend::{AdamHyper, Backend, Mat, MatMut, SpectralSlot};
use super::Activation;

mod adam;
use adam::adam_update;

/// GEMMs with fewer multiply-adds than this run on the calling thread: below it, handing half
/// of C to another core costs more (hand-off, packing B twice) than it saves.
const PARALLEL_MIN_MACS: usize = 1 << 20;

/// A raw pointer that may cross to a GEMM helper thread (see the SAFETY notes where it is used).
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: only used by `Sgemm::run`, which gives each thread a disjoint block of C and shared,
// read-only A and B that outlive the `threads::join`.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// One `C = alpha op(A) op(B) + beta C` (C row-major), computed by the `gemm` crate.
#[derive(Clone, Copy)]
struct Sgemm {
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: SendPtr,
    rsa: isize,
    csa: isize,
    b: SendPtr,
    rsb: isize,
    csb: isize,
    beta: f32,
    c: SendPtr,
    rsc: isize,
}

impl Sgemm {
    /// Runs the GEMM on up to `threads` threads (see `nn::threads`) by halving C along its
    /// longer side (rows of A or columns of B). Every element of C is still one dot product over
    /// the same k, in the same order, so the result is bit-identical for any thread count.
    ///
    /// # Safety
    /// The pointers must describe valid matrices of the stated shapes and strides, C must not
    /// alias A or B, and nothing else may access C during the call.
    unsafe fn run(self, threads: usize) {
        let macs = self.m * self.n * self.k;
        if threads <= 1 || macs < PARALLEL_MIN_MACS {
            if super::bf16::enabled() && super::bf16::worth_it(self.m, self.n, self.k) {
                // SAFETY: forwarded from the caller (same matrices, strides and exclusivity).
                let done = unsafe {
                    super::bf16::gemm(
                        self.m,
                        self.n,
                        self.k,
                        self.alpha,
                        (self.a.0, self.rsa, self.csa),
                        (self.b.0, self.rsb, self.csb),
                        self.beta,
                        (self.c.0, self.rsc),
                    )
                };
                if done {
                    return;
                }
            }
            // SAFETY: forwarded from the caller. `gemm` computes dst = alpha dst + beta lhs rhs,
            // so its alpha is our beta and the other way round; with read_dst false it
            // overwrites C (a NaN in stale C does not leak into the result).
            unsafe {
                gemm::gemm(
                    self.m,
                    self.n,
                    self.k,
                    self.c.0,
                    1,
                    self.rsc,
                    self.beta != 0.0,
                    self.a.0,
                    self.csa,
                    self.rsa,
                    self.b.0,
                    self.csb,
                    self.rsb,
                    self.beta,
                    self.alpha,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
            return;
        }
        // Split points on multiples of 16 (the widest microkernel tile) keep both halves on
        // full tiles.
        let half = |len: usize| (len / 2).next_multiple_of(16).min(len);
        let (first, second) = if self.m >= self.n {
            let h = half(self.m);
            let mut top = self;
            top.m = h;
            let mut bottom = self;
            bottom.m = self.m - h;
            // SAFETY: row h of op(A) and of C lie inside their matrices (h <= m).
            unsafe {
                bottom.a = SendPtr(self.a.0.offset(h as isize * self.rsa));
                bottom.c = SendPtr(self.c.0.offset(h as isize * self.rsc));
            }
            (top, bottom)
        } else {
            let h = half(self.n);
            let mut left = self;
            left.n = h;
            let mut right = self;
            right.n = self.n - h;
            // SAFETY: column h of op(B) and of C lie inside their matrices (h <= n).
            unsafe {
                right.b = SendPtr(self.b.0.offset(h as isize * self.csb));
                right.c = SendPtr(self.c.0.add(h));
            }
            (left, right)
        };
        let t1 = threads / 2;
        // SAFETY: the two calls write disjoint blocks of C; A and B are only read.
        super::threads::join(
            || unsafe { first.run(threads - t1) },
            move || unsafe { second.run(t1) },
        );
    }
}

/// The CPU backend (a unit value: it has no state).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuBackend;

/// The stored elements of `m`; panics (once, not per element) if they are out of range.
fn mat_slice<'a>(m: &Mat<'a, Vec<f32>>) -> &'a [f32] {
    &m.buf[m.offset..m.offset + m.len()]
}

/// Row and column strides of `op(A)` for row-major storage.
fn strides(m: &Mat<'_, Vec<f32>>) -> (isize, isize) {
    // Lengths of real buffers fit in isize.
    let ld = m.cols as isize;
    if m.trans {
        (1, ld)
    } else {
        (ld, 1)
    }
}

/// Lanes of the partial sums below: wide enough for AVX-512, and a fixed trip count so LLVM
/// vectorizes the reductions (f32 sums are not reassociated otherwise).
const LANES: usize = 16;

/// `sum(a[i] * b[i])` with f32 lanes summed in f64.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; LANES];
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| f64::from(x * y))
        .sum();
    for (xa, xb) in ca.zip(cb) {
        for ((s, x), y) in acc.iter_mut().zip(xa).zip(xb) {
            *s += x * y;
        }
    }
    (acc.iter().map(|&s| f64::from(s)).sum::<f64>() + tail) as f32
}

/// `y += alpha x`.
fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// Scales `x` to unit norm (PyTorch's `normalize` with eps 1e-12); returns the norm before.
fn normalize(x: &mut [f32]) -> f32 {
    let n = dot(x, x).sqrt();
    let inv = 1.0 / n.max(1e-12);
    x.iter_mut().for_each(|xi| *xi *= inv);
    n
}

/// `out = f(out + bias)` row by row, keeping `out + bias` in `pre` when given.
#[inline(always)]
fn bias_act<F: Fn(f32) -> f32>(out: &mut [f32], pre: Option<&mut [f32]>, bias: &[f32], f: F) {
    let cols = bias.len();
    match pre {
        Some(pre) => {
            for (o_row, p_row) in out.chunks_exact_mut(cols).zip(pre.chunks_exact_mut(cols)) {
                for ((o, p), b) in o_row.iter_mut().zip(p_row.iter_mut()).zip(bias) {
                    let z = *o + b;
                    *p = z;
                    *o = f(z);
                }
            }
        }
        None => {
            for o_row in out.chunks_exact_mut(cols) {
                for (o, b) in o_row.iter_mut().zip(bias) {
                    *o = f(*o + b);
                }
            }
        }
    }
}

/// `d *= f(src)` row by row (`src` is the output or the pre-activation), accumulating column
/// sums of the result into `dbias` when given.
#[inline(always)]
fn act_bwd<F: Fn(f32) -> f32>(
    d: &mut [f32],
    src: &[f32],
    dbias: Option<&mut [f32]>,
    cols: usize,
    f: F,
) {
    match dbias {
        Some(db) => {
            for (d_row, s_row) in d.chunks_exact_mut(cols).zip(src.chunks_exact(cols)) {
                for ((dv, s), g) in d_row.iter_mut().zip(s_row).zip(db.iter_mut()) {
                    *dv *= f(*s);
                    *g += *dv;
                }
            }
        }
        None => {
            for (d_row, s_row) in d.chunks_exact_mut(cols).zip(src.chunks_exact(cols)) {
                for (dv, s) in d_row.iter_mut().zip(s_row) {
                    *dv *= f(*s);
                }
            }
        }
    }
}

impl Backend for CpuBackend {
    type Buf = Vec<f32>;

    /// Two tasks on two cores with `keel train --threads 2` or more (see `nn::threads`).
    fn join(&self, a: impl FnOnce(), b: impl FnOnce() + Send) {
        super::threads::join_tasks(a, b);
    }

    fn alloc(&self, len: usize) -> Vec<f32> {
        vec![0.0; len]
    }

    fn buf_len(&self, buf: &Vec<f32>) -> usize {
        buf.len()
    }

    fn upload(&self, dst: &mut Vec<f32>, offset: usize, src: &[f32]) {
        dst[offset..offset + src.len()].copy_from_slice(src);
    }

    fn download(&self, src: &Vec<f32>, offset: usize, dst: &mut [f32]) {
        dst.copy_from_slice(&src[offset..offset + dst.len()]);
    }

    fn view<'a>(&self, src: &'a Vec<f32>, range: Range<usize>, _: &'a mut Vec<f32>) -> &'a [f32] {
        &src[range]
    }

    fn to_host<'a>(&self, src: &'a Vec<f32>, range: Range<usize>) -> Cow<'a, [f32]> {
        Cow::Borrowed(&src[range])
    }

    fn copy(
        &self,
        src: &Vec<f32>,
        src_offset: usize,
        dst: &mut Vec<f32>,
        dst_offset: usize,
        len: usize,
    ) {
        dst[dst_offset..dst_offset + len].copy_from_slice(&src[src_offset..src_offset + len]);
    }

    fn fill(&self, dst: &mut Vec<f32>, range: Range<usize>, value: f32) {
        dst[range].fill(value);
    }

    fn gemm(
        &self,
        alpha: f32,
        a: Mat<'_, Vec<f32>>,
        b: Mat<'_, Vec<f32>>,
        beta: f32,
        c: MatMut<'_, Vec<f32>>,
    ) {
        let (m, k) = a.op_shape();
        let (kb, n) = b.op_shape();
        assert_eq!(
            k, kb,
            "gemm: inner dimensions differ ({m}x{k} times {kb}x{n})"
        );
        assert_eq!((c.rows, c.cols), (m, n), "gemm: output is not {m}x{n}");
        let a_s = mat_slice(&a);
        let b_s = mat_slice(&b);
        let c_s = &mut c.buf[c.offset..c.offset + m * n];
        if m == 0 || n == 0 {
            return;
        }
        let (rsa, csa) = strides(&a);
        let (rsb, csb) = strides(&b);
        let g = Sgemm {
            m,
            k,
            n,
            alpha,
            a: SendPtr(a_s.as_ptr().cast_mut()),
            rsa,
            csa,
            b: SendPtr(b_s.as_ptr().cast_mut()),
            rsb,
            csb,
            beta,
            c: SendPtr(c_s.as_mut_ptr()),
            rsc: n as isize,
        };
        // SAFETY: the three slices above cover every element sgemm touches (op(A) is m x k,
        // op(B) k x n, C m x n, each stored densely row-major or transposed in its slice), `c_s`
        // is exclusively borrowed for the whole call and cannot alias `a_s`/`b_s`; sgemm only
        // reads A and B, and `run` hands disjoint blocks of C to the threads.
        unsafe { g.run(super::threads::threads()) }
    }

    fn bias_act_forward(
        &self,
        out: &mut Vec<f32>,
        pre: Option<&mut Vec<f32>>,
        rows: usize,
        cols: usize,
        bias: &Vec<f32>,
        bias_offset: usize,
        act: Activation,
    ) {
        let n = rows * cols;
        let out = &mut out[..n];
        let pre = pre.map(|p| &mut p[..n]);
        let bias = &bias[bias_offset..bias_offset + cols];
        match act {
            Activation::Identity => bias_act(out, pre, bias, |z| z),
            Activation::Relu => bias_act(out, pre, bias, |z| Activation::Relu.apply(z)),
            Activation::Silu => bias_act(out, pre, bias, |z| Activation::Silu.apply(z)),
            Activation::Tanh => bias_act(out, pre, bias, |z| Activation::Tanh.apply(z)),
            Activation::FastTanh => bias_act(out, pre, bias, |z| Activation::FastTanh.apply(z)),
        }
    }

    fn act_backward(
        &self,
        d: &mut Vec<f32>,
        y: &Vec<f32>,
        pre: Option<&Vec<f32>>,
        rows: usize,
        cols: usize,
        act: Activation,
        dbias: Option<(&mut Vec<f32>, usize)>,
    ) {
        let n = rows * cols;
        let d = &mut d[..n];
        let db = dbias.map(|(g, off)| &mut g[off..off + cols]);
        let src = if act.needs_pre() {
            match pre {
                Some(p) => &p[..n],
                None => panic!("act_backward: {act:?} needs the pre-activation"),
            }
        } else {
            &y[..n]
        };
        match act {
            Activation::Identity => {
                if let Some(db) = db {
                    for d_row in d.chunks_exact(cols) {
                        axpy(1.0, d_row, db);
                    }
                }
            }
            Activation::Relu => act_bwd(d, src, db, cols, |y| if y > 0.0 { 1.0 } else { 0.0 }),
            Activation::Tanh => act_bwd(d, src, db, cols, |y| 1.0 - y * y),
            Activation::Silu => act_bwd(d, src, db, cols, |x| Activation::Silu.derivative(x, 0.0)),
            Activation::FastTanh => act_bwd(d, src, db, cols, fast_tanh_derivative),
        }
    }

    fn adam(
        &self,
        params: &mut Vec<f32>,
        grads: &Vec<f32>,
        m: &mut Vec<f32>,
        v: &mut Vec<f32>,
        range: Range<usize>,
        h: &AdamHyper,
    ) {
        adam_update(
            &mut params[range.clone()],
            &grads[range.clone()],
            &mut m[range.clone()],
            &mut v[range],
            h,
        );
    }

    fn polyak(&self, dst: &mut Vec<f32>, src: &Vec<f32>, tau: f32) {
        assert_eq!(dst.len(), src.len(), "polyak: buffers differ in length");
        for (d, s) in dst.iter_mut().zip(src) {
            *d = tau * s + (1.0 - tau) * *d;
        }
    }

    fn sum_squares(&self, buf: &Vec<f32>, range: Range<usize>) -> f32 {
        let x = &buf[range];
        dot(x, x)
    }

    fn scale(&self, buf: &mut Vec<f32>, range: Range<usize>, s: f32) {
        buf[range].iter_mut().for_each(|x| *x *= s);
    }

    fn spectral_step(
        &self,
        w: Mat<'_, Vec<f32>>,
        state: &mut Vec<f32>,
        slot: SpectralSlot,
        w_sn: MatMut<'_, Vec<f32>>,
        iterate: bool,
    ) {
        slot.check_step_operands(&w, &w_sn);
        let (rows, cols) = (w.rows, w.cols);
        let w_s = mat_slice(&w);
        let st = &mut state[slot.offset..slot.offset + SpectralSlot::len(rows, cols)];
        let (u, rest) = st.split_at_mut(rows);
        let (v, sig) = rest.split_at_mut(cols);
        let sigma = if iterate {
            v.fill(0.0);
            for (row, &ui) in w_s.chunks_exact(cols).zip(u.iter()) {
                axpy(ui, row, v);
            }
            normalize(v);
            for (ui, row) in u.iter_mut().zip(w_s.chunks_exact(cols)) {
                *ui = dot(row, v);
            }
            // u^T W v with u = Wv / |Wv| is |Wv|.
            normalize(u)
        } else {
            u.iter()
                .zip(w_s.chunks_exact(cols))
                .map(|(&ui, row)| ui * dot(row, v))
                .sum()
        };
        // Guards W = 0 (sigma 0): W_sn stays finite (0) instead of NaN.
        let sigma = sigma.max(1e-12);
        if let Some(s) = sig.first_mut() {
            *s = sigma;
        }
        let inv = 1.0 / sigma;
        let out = &mut w_sn.buf[w_sn.offset..w_sn.offset + rows * cols];
        for (o, x) in out.iter_mut().zip(w_s) {
            *o = x * inv;
        }
    }

    fn spectral_backward(
        &self,
        g: Mat<'_, Vec<f32>>,
        w_sn: Mat<'_, Vec<f32>>,
        state: &Vec<f32>,
        slot: SpectralSlot,
        grad: MatMut<'_, Vec<f32>>,
    ) {
        let (rows, cols) = (slot.rows, slot.cols);
        slot.check_backward_operands(&g, &w_sn, &grad);
        let g_s = mat_slice(&g);
        let s = dot(g_s, mat_slice(&w_sn));
        let u = &state[slot.u()];
        let v = &state[slot.v()];
        let inv = 1.0 / state[slot.sigma()];
        let out = &mut grad.buf[grad.offset..grad.offset + rows * cols];
        for ((o_row, g_row), &ui) in out
            .chunks_exact_mut(cols)
            .zip(g_s.chunks_exact(cols))
            .zip(u)
        {
            let c = s * ui;
            for ((o, gv), vj) in o_row.iter_mut().zip(g_row).zip(v) {
                *o += (gv - c * vj) * inv;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Splitting a GEMM across threads changes nothing, bit for bit, for the layouts an MLP uses
    /// (X W^T forward, dZ^T X weight gradient, dZ W input gradient), with and without beta.
    #[test]
    fn split_gemm_is_bit_identical_to_one_thread() {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(3);
        let (m, k, n) = (200, 256, 160);
        let a: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0..1.0)).collect();
        let at: Vec<f32> = (0..k * m).map(|_| rng.random_range(-1.0..1.0)).collect();
        let b: Vec<f32> = (0..k * n).map(|_| rng.random_range(-1.0..1.0)).collect();
        let bt: Vec<f32> = (0..n * k).map(|_| rng.random_range(-1.0..1.0)).collect();
        let c0: Vec<f32> = (0..m * n).map(|_| rng.random_range(-1.0..1.0)).collect();
        for (ta, tb) in [(false, true), (true, false), (false, false)] {
            for beta in [0.0, 1.0] {
                let run = |threads: usize, rows: usize, cols: usize| {
                    let (mut c, (a, b)) = (
                        c0.clone(),
                        (if ta { &at } else { &a }, if tb { &bt } else { &b }),
                    );
                    let am = Mat::new(a, 0, if ta { k } else { rows }, if ta { rows } else { k });
                    let bm = Mat::new(b, 0, if tb { cols } else { k }, if tb { k } else { cols });
                    let (am, bm) = (if ta { am.t() } else { am }, if tb { bm.t() } else { bm });
                    let (rsa, csa) = strides(&am);
                    let (rsb, csb) = strides(&bm);
                    let g = Sgemm {
                        m: rows,
                        k,
                        n: cols,
                        alpha: 0.5,
                        a: SendPtr(a.as_ptr().cast_mut()),
                        rsa,
                        csa,
                        b: SendPtr(b.as_ptr().cast_mut()),
                        rsb,
                        csb,
                        beta,
                        c: SendPtr(c.as_mut_ptr()),
                        rsc: cols as isize,
                    };
                    // SAFETY: all three buffers hold the stated shapes; c is exclusively ours.
                    unsafe { g.run(threads) };
                    c
                };
                // Tall (split by rows) and wide (split by columns) shapes.
                for (rows, cols) in [(m, n), (n.min(m) / 2, n)] {
                    let one = run(1, rows, cols);
                    let two = run(2, rows, cols);
                    assert!(
                        one.iter()
                            .zip(&two)
                            .all(|(x, y)| x.to_bits() == y.to_bits()),
                        "split GEMM differs (ta {ta}, tb {tb}, beta {beta}, {rows}x{cols})"
                    );
                }
            }
        }
    }
}
