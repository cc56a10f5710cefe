//! The CPU reference backend: `Vec<f32>` buffers, GEMM through `matrixmultiply::sgemm`
//! (single-threaded, runtime-detected AVX2/FMA/AVX-512 kernels), every other kernel a plain loop
//! over zipped slices so LLVM vectorizes it and no per-element bounds check remains.
//!
//! nalgebra was not chosen for the GEMM: for f32 it calls the same `matrixmultiply::sgemm`.
//! Single-threaded on purpose: the trainer runs one seed per core.

use core::ops::Range;
use std::borrow::Cow;

use super::activation::fast_tanh_derivative;
use super::backend::{AdamHyper, Backend, Mat, MatMut, SpectralSlot};
use super::Activation;

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
        // SAFETY: the three slices above cover every element sgemm touches (op(A) is m x k,
        // op(B) k x n, C m x n, each stored densely row-major or transposed in its slice), `c_s`
        // is exclusively borrowed and cannot alias `a_s`/`b_s`; sgemm only reads A and B.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                alpha,
                a_s.as_ptr(),
                rsa,
                csa,
                b_s.as_ptr(),
                rsb,
                csb,
                beta,
                c_s.as_mut_ptr(),
                n as isize,
                1,
            );
        }
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
        let p = &mut params[range.clone()];
        let g = &grads[range.clone()];
        let m = &mut m[range.clone()];
        let v = &mut v[range];
        let step = h.lr / h.bias_correction1;
        let inv_sqrt_bc2 = 1.0 / h.bias_correction2.sqrt();
        let (b1, b2, eps, wd) = (h.beta1, h.beta2, h.eps, h.weight_decay);
        for (((p, g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let g = g + wd * *p;
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            *p -= step * *m / (v.sqrt() * inv_sqrt_bc2 + eps);
        }
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
        let (rows, cols) = (w.rows, w.cols);
        assert!(
            !w.trans && (slot.rows, slot.cols) == (rows, cols),
            "spectral_step: bad shapes"
        );
        assert_eq!(
            (w_sn.rows, w_sn.cols),
            (rows, cols),
            "spectral_step: bad output shape"
        );
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
        assert!(
            !g.trans && !w_sn.trans,
            "spectral_backward: transposed operands"
        );
        assert!(
            (g.rows, g.cols) == (rows, cols)
                && (w_sn.rows, w_sn.cols) == (rows, cols)
                && (grad.rows, grad.cols) == (rows, cols),
            "spectral_backward: bad shapes"
        );
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
