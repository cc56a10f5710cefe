//! The tanh-squashed Gaussian policy head of SAC, per sample, with its exact backward pass.
//!
//! The actor network outputs `[mu_1..mu_n, r_1..r_n]` per observation. With
//! `log_std = MIN + (MAX - MIN) (tanh(r) + 1) / 2` (a smooth clamp), noise `eps ~ N(0, I)`:
//!
//! ```text
//! u = mu + exp(log_std) * eps,  t = tanh(u),  a = scale * t + bias
//! log pi(a|s) = sum_j [ -eps_j^2 / 2 - log_std_j - ln(2 pi) / 2 - ln(scale_j (1 - t_j^2) + 1e-6) ]
//! ```
//! The deterministic action `scale * tanh(mu) + bias` is exactly what keel-runtime computes from
//! the exported actor (its `Squash::Tanh` with bounds `[bias - scale, bias + scale]`).

/// Smallest log standard deviation.
pub const LOG_STD_MIN: f32 = -5.0;
/// Largest log standard deviation.
pub const LOG_STD_MAX: f32 = 2.0;
const HALF_LN_2PI: f32 = 0.918_938_5;
/// Keeps the log-determinant finite where tanh saturates.
const SQUASH_EPS: f32 = 1e-6;

/// Maps pre-squash values in [-1, 1] to the action box.
#[derive(Clone, Debug, PartialEq)]
pub struct SquashedGaussian {
    pub scale: Vec<f32>,
    pub bias: Vec<f32>,
}

impl SquashedGaussian {
    /// For an action box `[low, high]`.
    pub fn new(low: &[f32], high: &[f32]) -> Self {
        Self {
            scale: low.iter().zip(high).map(|(l, h)| (h - l) / 2.0).collect(),
            bias: low.iter().zip(high).map(|(l, h)| (h + l) / 2.0).collect(),
        }
    }

    pub fn act_dim(&self) -> usize {
        self.scale.len()
    }

    fn log_std(r: f32) -> f32 {
        LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (r.tanh() + 1.0)
    }

    /// Samples `action` for one observation from the raw head `raw` and noise `eps`; returns
    /// log pi(action | s).
    pub fn sample(&self, raw: &[f32], eps: &[f32], action: &mut [f32]) -> f32 {
        let n = self.act_dim();
        let (mu, r) = raw.split_at(n);
        let mut logp = 0.0;
        for j in 0..n {
            let log_std = Self::log_std(r[j]);
            let t = (mu[j] + log_std.exp() * eps[j]).tanh();
            action[j] = self.scale[j] * t + self.bias[j];
            logp += -0.5 * eps[j] * eps[j]
                - log_std
                - HALF_LN_2PI
                - (self.scale[j] * (1.0 - t * t) + SQUASH_EPS).ln();
        }
        logp
    }

    /// Gradient of a loss `L(action, logp)` with respect to `raw`, given `d_action = dL/d action`
    /// and `d_logp = dL/d logp` for the same `raw` and `eps` as [`SquashedGaussian::sample`].
    pub fn backward(
        &self,
        raw: &[f32],
        eps: &[f32],
        d_action: &[f32],
        d_logp: f32,
        d_raw: &mut [f32],
    ) {
        let n = self.act_dim();
        let (mu, r) = raw.split_at(n);
        let (d_mu, d_r) = d_raw.split_at_mut(n);
        for j in 0..n {
            let tr = r[j].tanh();
            let log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (tr + 1.0);
            let std = log_std.exp();
            let t = (mu[j] + std * eps[j]).tanh();
            let one_m_t2 = 1.0 - t * t;
            let s = self.scale[j];
            // d/du of -ln(s (1 - t^2) + eps) = 2 t s (1 - t^2) / (s (1 - t^2) + eps)
            let du = d_action[j] * s * one_m_t2
                + d_logp * 2.0 * t * s * one_m_t2 / (s * one_m_t2 + SQUASH_EPS);
            d_mu[j] = du;
            let d_log_std = du * std * eps[j] - d_logp;
            d_r[j] = d_log_std * 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (1.0 - tr * tr);
        }
    }

    /// The deterministic (mean) action.
    pub fn mean_action(&self, raw: &[f32], action: &mut [f32]) {
        for (j, a) in action.iter_mut().enumerate() {
            *a = self.scale[j] * raw[j].tanh() + self.bias[j];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loss mixing both outputs so both gradient paths are exercised.
    fn loss(h: &SquashedGaussian, raw: &[f32], eps: &[f32], w: &[f32], c: f32) -> f64 {
        let mut a = vec![0.0; h.act_dim()];
        let logp = h.sample(raw, eps, &mut a);
        (a.iter().zip(w).map(|(a, w)| a * w).sum::<f32>() + c * logp) as f64
    }

    #[test]
    fn backward_matches_finite_differences() {
        let h = SquashedGaussian::new(&[-2.0, 0.0], &[2.0, 1.0]);
        let raw = [0.3f32, -0.4, 0.2, -1.1];
        let eps = [0.7f32, -1.3];
        let w = [1.5f32, -0.5];
        let c = 0.8;
        let d_action = w;
        let mut d_raw = [0.0f32; 4];
        h.backward(&raw, &eps, &d_action, c, &mut d_raw);
        for i in 0..4 {
            let step = 1e-3f32;
            let (mut p, mut m) = (raw, raw);
            p[i] += step;
            m[i] -= step;
            let fd = (loss(&h, &p, &eps, &w, c) - loss(&h, &m, &eps, &w, c)) / (2.0 * step as f64);
            let an = d_raw[i] as f64;
            assert!(
                (fd - an).abs() <= 2e-3 * (1.0 + fd.abs()),
                "raw[{i}]: fd {fd} vs analytic {an}"
            );
        }
    }

    #[test]
    fn actions_stay_in_bounds_and_mean_matches_runtime_squash() {
        let h = SquashedGaussian::new(&[-2.0], &[2.0]);
        let mut a = [0.0f32];
        for (mu, e) in [(-50.0, 3.0), (0.0, 0.0), (50.0, -3.0)] {
            let logp = h.sample(&[mu, 0.0], &[e], &mut a);
            assert!((-2.0..=2.0).contains(&a[0]) && logp.is_finite());
        }
        h.mean_action(&[0.5], &mut a);
        // runtime: low + (tanh(y) + 1) / 2 * (high - low)
        let runtime = -2.0 + (0.5f32.tanh() + 1.0) * 0.5 * 4.0;
        assert!((a[0] - runtime).abs() < 1e-6);
    }
}
