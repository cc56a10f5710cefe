//! `impl Backend for CudaBackend`: cuBLAS for GEMM, one kernel launch for everything else
//! (`sum_squares` adds a download of per-block partial sums, summed in f64 on the host).

use core::ops::Range;

use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{Gemm, GemmConfig};
use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

use super::kernels::act_code;
use super::{grid, int, ll, ok, CudaBackend};
use crate::nn::backend::{AdamHyper, Backend, Mat, MatMut, SpectralSlot};
use crate::nn::Activation;

/// Threads of the single-block spectral kernels.
const SPECTRAL_THREADS: u32 = 1024;

fn single_block(threads: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (1, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The stored range of `m` in its buffer.
fn stored(m: &Mat<'_, CudaSlice<f32>>) -> Range<usize> {
    m.offset..m.offset + m.len()
}

impl Backend for CudaBackend {
    type Buf = CudaSlice<f32>;

    fn alloc(&self, len: usize) -> CudaSlice<f32> {
        let s = &self.inner.stream;
        if len == 0 {
            ok(s.null(), "alloc")
        } else {
            ok(s.alloc_zeros(len), "alloc")
        }
    }

    fn buf_len(&self, buf: &CudaSlice<f32>) -> usize {
        buf.len()
    }

    fn upload(&self, dst: &mut CudaSlice<f32>, offset: usize, src: &[f32]) {
        if src.is_empty() {
            return;
        }
        let mut view = dst.slice_mut(offset..offset + src.len());
        ok(self.inner.stream.memcpy_htod(src, &mut view), "upload");
    }

    fn download(&self, src: &CudaSlice<f32>, offset: usize, dst: &mut [f32]) {
        if dst.is_empty() {
            return;
        }
        let view = src.slice(offset..offset + dst.len());
        ok(self.inner.stream.memcpy_dtoh(&view, dst), "download");
        // A copy to pageable memory already returns once done; cudarc does not promise it.
        self.synchronize();
    }

    fn copy(
        &self,
        src: &CudaSlice<f32>,
        src_offset: usize,
        dst: &mut CudaSlice<f32>,
        dst_offset: usize,
        len: usize,
    ) {
        if len == 0 {
            return;
        }
        let from = src.slice(src_offset..src_offset + len);
        let mut to = dst.slice_mut(dst_offset..dst_offset + len);
        ok(self.inner.stream.memcpy_dtod(&from, &mut to), "copy");
    }

    fn fill(&self, dst: &mut CudaSlice<f32>, range: Range<usize>, value: f32) {
        let n = range.len();
        if n == 0 {
            return;
        }
        let mut view = dst.slice_mut(range);
        let n_ll = ll(n);
        let mut b = self.inner.stream.launch_builder(&self.k().fill);
        b.arg(&mut view).arg(&n_ll).arg(&value);
        // SAFETY: the kernel writes indices < n of a view of n floats.
        ok(unsafe { b.launch(grid(n)) }, "keel_fill");
    }

    fn gemm(
        &self,
        alpha: f32,
        a: Mat<'_, CudaSlice<f32>>,
        b: Mat<'_, CudaSlice<f32>>,
        beta: f32,
        c: MatMut<'_, CudaSlice<f32>>,
    ) {
        let (m, k) = a.op_shape();
        let (kb, n) = b.op_shape();
        assert_eq!(
            k, kb,
            "gemm: inner dimensions differ ({m}x{k} times {kb}x{n})"
        );
        assert_eq!((c.rows, c.cols), (m, n), "gemm: output is not {m}x{n}");
        let a_v = a.buf.slice(stored(&a));
        let b_v = b.buf.slice(stored(&b));
        let mut c_v = c.buf.slice_mut(c.offset..c.offset + m * n);
        if m == 0 || n == 0 {
            return;
        }
        if k == 0 {
            // C = beta C (cuBLAS is not asked: with beta == 0, C must become 0 even if it held
            // NaN, so fill rather than scale).
            let n_ll = ll(m * n);
            let (func, value) = if beta == 0.0 {
                (&self.k().fill, 0.0f32)
            } else {
                (&self.k().scale, beta)
            };
            let mut l = self.inner.stream.launch_builder(func);
            l.arg(&mut c_v).arg(&n_ll).arg(&value);
            // SAFETY: keel_fill / keel_scale touch the m * n floats of c_v.
            ok(unsafe { l.launch(grid(m * n)) }, "keel_fill/keel_scale");
            return;
        }
        // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, and a row-major
        // stored matrix read column-major is its transpose: so call cuBLAS with the operands
        // swapped, each transposed iff it is transposed here, leading dimension its stored
        // column count.
        let op = |t: bool| {
            if t {
                cublasOperation_t::CUBLAS_OP_T
            } else {
                cublasOperation_t::CUBLAS_OP_N
            }
        };
        let cfg = GemmConfig {
            transa: op(b.trans),
            transb: op(a.trans),
            m: int(n),
            n: int(m),
            k: int(k),
            alpha,
            lda: int(b.cols.max(1)),
            ldb: int(a.cols.max(1)),
            beta,
            ldc: int(n),
        };
        // SAFETY: the views cover exactly the stored elements cuBLAS reads (op(B) k x n with
        // leading dimension b.cols, op(A) m x k with a.cols) and writes (C, n x m column-major
        // with ldc n); c_v is exclusively borrowed, distinct from a_v and b_v.
        ok(
            unsafe { self.inner.blas.gemm(cfg, &b_v, &a_v, &mut c_v) },
            "cublasSgemm",
        );
    }

    fn bias_act_forward(
        &self,
        out: &mut CudaSlice<f32>,
        pre: Option<&mut CudaSlice<f32>>,
        rows: usize,
        cols: usize,
        bias: &CudaSlice<f32>,
        bias_offset: usize,
        act: Activation,
    ) {
        let n = rows * cols;
        if n == 0 {
            return;
        }
        let mut out_v = out.slice_mut(..n);
        let bias_v = bias.slice(bias_offset..bias_offset + cols);
        let (n_ll, cols_i, code) = (ll(n), int(cols), act_code(act));
        let s = &self.inner.stream;
        match pre {
            Some(pre) => {
                let mut pre_v = pre.slice_mut(..n);
                let mut b = s.launch_builder(&self.k().bias_act_fwd_pre);
                b.arg(&mut out_v)
                    .arg(&mut pre_v)
                    .arg(&bias_v)
                    .arg(&n_ll)
                    .arg(&cols_i)
                    .arg(&code);
                // SAFETY: out_v and pre_v hold n floats, bias_v cols; indices < n, i % cols.
                ok(unsafe { b.launch(grid(n)) }, "keel_bias_act_fwd_pre");
            }
            None => {
                let mut b = s.launch_builder(&self.k().bias_act_fwd);
                b.arg(&mut out_v)
                    .arg(&bias_v)
                    .arg(&n_ll)
                    .arg(&cols_i)
                    .arg(&code);
                // SAFETY: as above, without pre.
                ok(unsafe { b.launch(grid(n)) }, "keel_bias_act_fwd");
            }
        }
    }

    fn act_backward(
        &self,
        d: &mut CudaSlice<f32>,
        y: &CudaSlice<f32>,
        pre: Option<&CudaSlice<f32>>,
        rows: usize,
        cols: usize,
        act: Activation,
        dbias: Option<(&mut CudaSlice<f32>, usize)>,
    ) {
        let n = rows * cols;
        let src = if act.needs_pre() {
            match pre {
                Some(p) => p,
                None => panic!("act_backward: {act:?} needs the pre-activation"),
            }
        } else {
            y
        };
        if n == 0 {
            return;
        }
        let mut d_v = d.slice_mut(..n);
        let src_v = src.slice(..n);
        let code = act_code(act);
        let s = &self.inner.stream;
        match dbias {
            Some((grads, off)) => {
                let mut g_v = grads.slice_mut(off..off + cols);
                let (rows_i, cols_i) = (int(rows), int(cols));
                let mut b = s.launch_builder(&self.k().act_bwd_bias);
                b.arg(&mut d_v)
                    .arg(&src_v)
                    .arg(&mut g_v)
                    .arg(&rows_i)
                    .arg(&cols_i)
                    .arg(&code);
                let cfg = LaunchConfig {
                    grid_dim: (cols.div_ceil(32) as u32, 1, 1),
                    block_dim: (32, 8, 1),
                    shared_mem_bytes: 0,
                };
                // SAFETY: d_v and src_v hold rows * cols floats, g_v cols; the kernel's
                // indices are r * cols + c with r < rows, c < cols.
                ok(unsafe { b.launch(cfg) }, "keel_act_bwd_bias");
            }
            None => {
                if act == Activation::Identity {
                    return;
                }
                let n_ll = ll(n);
                let mut b = s.launch_builder(&self.k().act_bwd);
                b.arg(&mut d_v).arg(&src_v).arg(&n_ll).arg(&code);
                // SAFETY: d_v and src_v hold n floats; indices < n.
                ok(unsafe { b.launch(grid(n)) }, "keel_act_bwd");
            }
        }
    }

    fn adam(
        &self,
        params: &mut CudaSlice<f32>,
        grads: &CudaSlice<f32>,
        m: &mut CudaSlice<f32>,
        v: &mut CudaSlice<f32>,
        range: Range<usize>,
        h: &AdamHyper,
    ) {
        let n = range.len();
        if n == 0 {
            return;
        }
        let mut p_v = params.slice_mut(range.clone());
        let g_v = grads.slice(range.clone());
        let mut m_v = m.slice_mut(range.clone());
        let mut v_v = v.slice_mut(range);
        // Exactly the CPU's host-side scalars.
        let step = h.lr / h.bias_correction1;
        let inv_sqrt_bc2 = 1.0 / h.bias_correction2.sqrt();
        let n_ll = ll(n);
        let mut b = self.inner.stream.launch_builder(&self.k().adam);
        b.arg(&mut p_v)
            .arg(&g_v)
            .arg(&mut m_v)
            .arg(&mut v_v)
            .arg(&n_ll)
            .arg(&step)
            .arg(&inv_sqrt_bc2)
            .arg(&h.beta1)
            .arg(&h.beta2)
            .arg(&h.eps)
            .arg(&h.weight_decay);
        // SAFETY: all four views hold n floats; indices < n.
        ok(unsafe { b.launch(grid(n)) }, "keel_adam");
    }

    fn polyak(&self, dst: &mut CudaSlice<f32>, src: &CudaSlice<f32>, tau: f32) {
        assert_eq!(dst.len(), src.len(), "polyak: buffers differ in length");
        let n = dst.len();
        if n == 0 {
            return;
        }
        let n_ll = ll(n);
        let mut b = self.inner.stream.launch_builder(&self.k().polyak);
        b.arg(dst).arg(src).arg(&n_ll).arg(&tau);
        // SAFETY: both buffers hold n floats; indices < n.
        ok(unsafe { b.launch(grid(n)) }, "keel_polyak");
    }

    fn sum_squares(&self, buf: &CudaSlice<f32>, range: Range<usize>) -> f32 {
        let n = range.len();
        if n == 0 {
            // Still check the range, as the CPU backend does.
            let _ = buf.slice(range);
            return 0.0;
        }
        let view = buf.slice(range);
        let mut cfg = grid(n);
        cfg.grid_dim.0 = cfg.grid_dim.0.min(256);
        let blocks = cfg.grid_dim.0 as usize;
        let mut partials: CudaSlice<f32> =
            ok(self.inner.stream.alloc_zeros(blocks), "alloc partials");
        let n_ll = ll(n);
        let mut b = self.inner.stream.launch_builder(&self.k().sum_squares);
        b.arg(&view).arg(&n_ll).arg(&mut partials);
        // SAFETY: reads n floats of view, writes partials[blockIdx.x] < blocks.
        ok(unsafe { b.launch(cfg) }, "keel_sum_squares");
        let host = self.download_all(&partials);
        host.iter().map(|&s| f64::from(s)).sum::<f64>() as f32
    }

    fn scale(&self, buf: &mut CudaSlice<f32>, range: Range<usize>, s: f32) {
        let n = range.len();
        if n == 0 {
            return;
        }
        let mut view = buf.slice_mut(range);
        let n_ll = ll(n);
        let mut b = self.inner.stream.launch_builder(&self.k().scale);
        b.arg(&mut view).arg(&n_ll).arg(&s);
        // SAFETY: the kernel scales indices < n of a view of n floats.
        ok(unsafe { b.launch(grid(n)) }, "keel_scale");
    }

    fn spectral_step(
        &self,
        w: Mat<'_, CudaSlice<f32>>,
        state: &mut CudaSlice<f32>,
        slot: SpectralSlot,
        w_sn: MatMut<'_, CudaSlice<f32>>,
        iterate: bool,
    ) {
        slot.check_step_operands(&w, &w_sn);
        let (rows, cols) = (w.rows, w.cols);
        let w_v = w.buf.slice(stored(&w));
        let mut st_v = state.slice_mut(slot.offset..slot.offset + SpectralSlot::len(rows, cols));
        let mut out_v = w_sn.buf.slice_mut(w_sn.offset..w_sn.offset + rows * cols);
        let (rows_i, cols_i, it) = (int(rows), int(cols), i32::from(iterate));
        let mut b = self.inner.stream.launch_builder(&self.k().spectral_step);
        b.arg(&w_v)
            .arg(&mut st_v)
            .arg(&mut out_v)
            .arg(&rows_i)
            .arg(&cols_i)
            .arg(&it);
        // SAFETY: w_v and out_v hold rows * cols floats, st_v rows + cols + 1; the kernel
        // indexes within those.
        ok(
            unsafe { b.launch(single_block(SPECTRAL_THREADS)) },
            "keel_spectral_step",
        );
    }

    fn spectral_backward(
        &self,
        g: Mat<'_, CudaSlice<f32>>,
        w_sn: Mat<'_, CudaSlice<f32>>,
        state: &CudaSlice<f32>,
        slot: SpectralSlot,
        grad: MatMut<'_, CudaSlice<f32>>,
    ) {
        let (rows, cols) = (slot.rows, slot.cols);
        slot.check_backward_operands(&g, &w_sn, &grad);
        let g_v = g.buf.slice(stored(&g));
        let w_v = w_sn.buf.slice(stored(&w_sn));
        let st_v = state.slice(slot.offset..slot.offset + SpectralSlot::len(rows, cols));
        let mut out_v = grad.buf.slice_mut(grad.offset..grad.offset + rows * cols);
        let (rows_i, cols_i) = (int(rows), int(cols));
        let mut b = self
            .inner
            .stream
            .launch_builder(&self.k().spectral_backward);
        b.arg(&g_v)
            .arg(&w_v)
            .arg(&st_v)
            .arg(&mut out_v)
            .arg(&rows_i)
            .arg(&cols_i);
        // SAFETY: as spectral_step.
        ok(
            unsafe { b.launch(single_block(SPECTRAL_THREADS)) },
            "keel_spectral_backward",
        );
    }
}
