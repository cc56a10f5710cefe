//! Adam on the CPU: one pass over zipped slices, compiled for AVX-512 where the CPU has it,
//! split across two threads for large parameter vectors.

use crate::nn::backend::AdamHyper;

/// Element-wise updates (Adam) shorter than this run on the calling thread.
const PARALLEL_MIN_ELEMENTS: usize = 1 << 15;

/// Adam on slices of equal length. Large ones are split in two halves for two threads when
/// `--threads` allows: the update is memory-bound, and its parameters were last read by both
/// cores (the halves give the same bits: every element is independent).
pub(super) fn adam_update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], h: &AdamHyper) {
    if p.len() >= PARALLEL_MIN_ELEMENTS && crate::nn::threads::threads() > 1 {
        let half = p.len() / 2;
        let (p0, p1) = p.split_at_mut(half);
        let (g0, g1) = g.split_at(half);
        let (m0, m1) = m.split_at_mut(half);
        let (v0, v1) = v.split_at_mut(half);
        crate::nn::threads::join_tasks(
            || adam_serial(p0, g0, m0, v0, h),
            || adam_serial(p1, g1, m1, v1, h),
        );
    } else {
        adam_serial(p, g, m, v, h);
    }
}

fn adam_serial(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], h: &AdamHyper) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked just above).
        return unsafe { adam_avx512(p, g, m, v, h) };
    }
    adam_kernel(p, g, m, v, h);
}

/// [`adam_kernel`] compiled for 16-wide vectors (the crate targets baseline x86-64, 4 wide).
/// The same IEEE operations element by element, so the same bits as the baseline build.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn adam_avx512(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], h: &AdamHyper) {
    adam_kernel(p, g, m, v, h);
}

/// Moments smaller than the smallest normal f32 are stored as zero. A parameter whose
/// gradients are ~1e-20 (or zero after a tiny one) otherwise keeps a subnormal second moment,
/// and every operation on a subnormal takes a microcode assist on x86 (~100 cycles): that made
/// Adam a third of a SAC step at 2x256 (a run with the CPU's flush-to-zero mode on: 3.2 -> 2.5 s
/// per 1,000 steps). The effect on a step is nil in f32: a flushed first moment gave a step
/// below 1e-30, a flushed second moment changes `sqrt(v) + eps` by under 1e-13 relative.
#[inline(always)]
fn flush_subnormal(x: f32) -> f32 {
    if x.abs() < f32::MIN_POSITIVE {
        0.0
    } else {
        x
    }
}

#[inline(always)]
fn adam_kernel(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], h: &AdamHyper) {
    let step = h.lr / h.bias_correction1;
    let inv_sqrt_bc2 = 1.0 / h.bias_correction2.sqrt();
    let (b1, b2, eps, wd) = (h.beta1, h.beta2, h.eps, h.weight_decay);
    for (((p, g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        let g = g + wd * *p;
        *m = flush_subnormal(b1 * *m + (1.0 - b1) * g);
        *v = flush_subnormal(b2 * *v + (1.0 - b2) * g * g);
        *p -= step * *m / (v.sqrt() * inv_sqrt_bc2 + eps);
    }
}
