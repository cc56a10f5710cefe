//! Normalizers and the two heads' losses, with their gradients w.r.t. the network output.
//!
//! Losses are means over rows and target dimensions, computed per element in f64 (they are a
//! small part of a training step, and f64 makes the finite-difference tests exact).

use serde::{Deserialize, Serialize};

/// Per-feature affine normalization `(x - mean) / std`, fitted to training data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalizer {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalizer {
    /// The identity on `dim` features (before the first fit).
    pub fn identity(dim: usize) -> Self {
        Self {
            mean: vec![0.0; dim],
            std: vec![1.0; dim],
        }
    }

    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// Fits mean and (population) std of the rows of `data` (`rows x dim`). A feature with std
    /// below 1e-6 (constant, e.g. a delta that is always 0) gets std 1 (as MBPO's scaler), so it
    /// is shifted but never blown up.
    pub fn fit(data: &[f32], dim: usize) -> Self {
        let rows = (data.len() / dim.max(1)).max(1) as f64;
        let mut mean = vec![0.0f64; dim];
        for row in data.chunks_exact(dim) {
            mean.iter_mut()
                .zip(row)
                .for_each(|(m, x)| *m += f64::from(*x));
        }
        mean.iter_mut().for_each(|m| *m /= rows);
        let mut var = vec![0.0f64; dim];
        for row in data.chunks_exact(dim) {
            for ((v, x), m) in var.iter_mut().zip(row).zip(&mean) {
                *v += (f64::from(*x) - m).powi(2);
            }
        }
        let std = var
            .iter()
            .map(|v| {
                let s = (v / rows).sqrt();
                if s < 1e-6 {
                    1.0
                } else {
                    s as f32
                }
            })
            .collect();
        Self {
            mean: mean.iter().map(|m| *m as f32).collect(),
            std,
        }
    }

    /// Normalizes `x` (`dim` features) into `out`.
    pub fn apply(&self, x: &[f32], out: &mut [f32]) {
        for (((o, x), m), s) in out.iter_mut().zip(x).zip(&self.mean).zip(&self.std) {
            *o = (x - m) / s;
        }
    }

    /// Feature `i` back in data units.
    pub fn invert(&self, i: usize, z: f32) -> f32 {
        z * self.std[i] + self.mean[i]
    }
}

/// `ln(1 + e^x)` without overflow.
fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// PETS' soft bounds on a raw log-variance: `lv = max - softplus(max - raw)`, then
/// `lv = min + softplus(lv - min)`: smooth, monotone, ~identity well inside, above `min` and
/// at most `max + softplus(min - max)` (the lower clamp applied last lifts it a little: 2.8e-5
/// for PETS' `(-10, 0.5)`).
/// Returns `(lv, d lv / d raw)`.
pub fn soft_clamp_logvar(raw: f64, min: f64, max: f64) -> (f64, f64) {
    let lv1 = max - softplus(max - raw);
    let d1 = sigmoid(max - raw);
    let lv = min + softplus(lv1 - min);
    (lv, d1 * sigmoid(lv1 - min))
}

/// MSE of `pred` (`rows x width`, the first `dim` columns used) against `target` (`rows x dim`),
/// mean over rows and dims; writes the gradient w.r.t. `pred` into `grad` (same shape as
/// `pred`, other columns zeroed) when given.
pub fn mse_loss(
    pred: &[f32],
    width: usize,
    target: &[f32],
    dim: usize,
    mut grad: Option<&mut [f32]>,
) -> f64 {
    let rows = target.len() / dim;
    let scale = 1.0 / (rows * dim) as f64;
    let mut sum = 0.0f64;
    for r in 0..rows {
        let p = &pred[r * width..r * width + dim];
        let t = &target[r * dim..(r + 1) * dim];
        for (c, (p, t)) in p.iter().zip(t).enumerate() {
            let e = f64::from(*p) - f64::from(*t);
            sum += e * e;
            if let Some(g) = grad.as_deref_mut() {
                g[r * width + c] = (2.0 * e * scale) as f32;
            }
        }
        if let Some(g) = grad.as_deref_mut() {
            g[r * width + dim..(r + 1) * width].fill(0.0);
        }
    }
    sum * scale
}

/// Gaussian negative log-likelihood (without the constant) of `target` (`rows x dim`) under
/// `N(mean, exp(lv))`, where each row of `out` is `[mean (dim), raw log-variance (dim)]` and
/// `lv` = [`soft_clamp_logvar`] of the raw value: mean over rows and dims of
/// `0.5 * ((mean - y)^2 exp(-lv) + lv)`. Writes d loss / d out into `grad` when given.
pub fn gaussian_nll_loss(
    out: &[f32],
    target: &[f32],
    dim: usize,
    min_logvar: f32,
    max_logvar: f32,
    mut grad: Option<&mut [f32]>,
) -> f64 {
    let rows = target.len() / dim;
    let scale = 1.0 / (rows * dim) as f64;
    let (lo, hi) = (f64::from(min_logvar), f64::from(max_logvar));
    let mut sum = 0.0f64;
    for r in 0..rows {
        let o = &out[r * 2 * dim..(r + 1) * 2 * dim];
        for c in 0..dim {
            let e = f64::from(o[c]) - f64::from(target[r * dim + c]);
            let (lv, dlv) = soft_clamp_logvar(f64::from(o[dim + c]), lo, hi);
            let inv_var = (-lv).exp();
            sum += 0.5 * (e * e * inv_var + lv);
            if let Some(g) = grad.as_deref_mut() {
                g[r * 2 * dim + c] = (e * inv_var * scale) as f32;
                g[r * 2 * dim + dim + c] = (0.5 * (1.0 - e * e * inv_var) * dlv * scale) as f32;
            }
        }
    }
    sum * scale
}
