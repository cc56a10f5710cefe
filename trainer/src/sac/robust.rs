//! The robust value loss of the Lipschitz critic (docs/algorithm.md): for model-generated states
//! s, find delta with |delta_j| <= eps * std_j that (approximately) maximises
//! (Q(s + delta, a) - Q(s, a))^2, and add lambda * mean of that squared gap to the critic loss,
//! with gradients through both terms.
//!
//! FGSM: the gap is 0 with zero gradient at delta = 0, so the first-order maximiser of |gap| is
//! used instead: delta = eps * std * sign(dQ/ds). PGD: a random start in the box, then K steps of
//! delta += 2.5 eps std / K * sign(d gap^2 / d delta), projected back onto the box.
// Index loops over rows and state dimensions of several parallel buffers.
#![allow(clippy::needless_range_loop)]
use rand::Rng;

use crate::config::Attack;
use crate::nn::{Backprop, CpuBackend, ForwardCache, Mlp};

/// Preallocated buffers of one robust term (rows up to the SAC batch size).
pub struct RobustScratch {
    /// Unperturbed critic inputs `[s, a]`, rows x (obs + act).
    pub clean: Vec<f32>,
    /// Perturbed inputs `[s + delta, a]`.
    pub adv: Vec<f32>,
    delta: Vec<f32>,
    dy: Vec<f32>,
    d_clean: Vec<f32>,
    y_clean: Vec<f32>,
    cache_clean: ForwardCache<CpuBackend>,
    cache_adv: ForwardCache<CpuBackend>,
}

impl RobustScratch {
    pub fn new(q: &Mlp<CpuBackend>, rows: usize, obs_dim: usize, act_dim: usize) -> Self {
        let w = obs_dim + act_dim;
        Self {
            clean: vec![0.0; rows * w],
            adv: vec![0.0; rows * w],
            delta: vec![0.0; rows * obs_dim],
            dy: vec![0.0; rows],
            d_clean: vec![0.0; rows],
            y_clean: vec![0.0; rows],
            cache_clean: q.new_cache(rows),
            cache_adv: q.new_cache(rows),
        }
    }
}

/// Perturbation budget of one state dimension.
fn budget(eps: f32, std: &[f32], j: usize) -> f32 {
    eps * std[j]
}

/// Fills `s.adv` from `s.clean` (first `n` rows) with the adversarial perturbation of the state
/// part, for critic `q`.
#[allow(clippy::too_many_arguments)]
pub fn perturb<R: Rng>(
    q: &mut Mlp<CpuBackend>,
    s: &mut RobustScratch,
    n: usize,
    obs_dim: usize,
    eps: f32,
    std: &[f32],
    attack: Attack,
    pgd_steps: usize,
    rng: &mut R,
) {
    let w = q.in_dim();
    s.adv[..n * w].copy_from_slice(&s.clean[..n * w]);
    match attack {
        Attack::Fgsm => {
            s.dy[..n].iter_mut().for_each(|d| *d = 1.0);
            q.forward_with(&mut s.cache_adv, &s.clean[..n * w], n);
            q.backward_with(&mut s.cache_adv, &s.dy[..n], n, Backprop::Input);
            let g = s.cache_adv.input_grad();
            for i in 0..n {
                for j in 0..obs_dim {
                    let k = i * w + j;
                    s.adv[k] += budget(eps, std, j) * g[k].signum();
                }
            }
        }
        Attack::Pgd => {
            let y0 = q.forward_with(&mut s.cache_clean, &s.clean[..n * w], n);
            s.y_clean[..n].copy_from_slice(y0);
            for i in 0..n {
                for j in 0..obs_dim {
                    let b = budget(eps, std, j);
                    s.delta[i * obs_dim + j] = if b > 0.0 {
                        rng.random_range(-b..=b)
                    } else {
                        0.0
                    };
                }
            }
            let alpha = 2.5 / pgd_steps as f32;
            for _ in 0..pgd_steps {
                for i in 0..n {
                    for j in 0..obs_dim {
                        s.adv[i * w + j] = s.clean[i * w + j] + s.delta[i * obs_dim + j];
                    }
                }
                let y1 = q.forward_with(&mut s.cache_adv, &s.adv[..n * w], n);
                for i in 0..n {
                    s.dy[i] = 2.0 * (y1[i] - s.y_clean[i]);
                }
                q.backward_with(&mut s.cache_adv, &s.dy[..n], n, Backprop::Input);
                let g = s.cache_adv.input_grad();
                for i in 0..n {
                    for j in 0..obs_dim {
                        let b = budget(eps, std, j);
                        let d = &mut s.delta[i * obs_dim + j];
                        *d = (*d + alpha * b * g[i * w + j].signum()).clamp(-b, b);
                    }
                }
            }
            for i in 0..n {
                for j in 0..obs_dim {
                    s.adv[i * w + j] = s.clean[i * w + j] + s.delta[i * obs_dim + j];
                }
            }
        }
    }
}

/// Accumulates into `q`'s parameter gradients the gradient of
/// `lambda * mean_i (Q(adv_i) - Q(clean_i))^2` over the first `n` rows; returns the mean gap^2.
pub fn accumulate_gradient(
    q: &mut Mlp<CpuBackend>,
    s: &mut RobustScratch,
    n: usize,
    lambda: f32,
) -> f32 {
    let w = q.in_dim();
    let y0 = q.forward_with(&mut s.cache_clean, &s.clean[..n * w], n);
    s.y_clean[..n].copy_from_slice(y0);
    let y1 = q.forward_with(&mut s.cache_adv, &s.adv[..n * w], n);
    let mut gap2 = 0.0;
    let inv_n = 1.0 / n as f32;
    for i in 0..n {
        let gap = y1[i] - s.y_clean[i];
        gap2 += gap * gap * inv_n;
        s.dy[i] = 2.0 * lambda * gap * inv_n;
        s.d_clean[i] = -s.dy[i];
    }
    q.backward_with(&mut s.cache_clean, &s.d_clean[..n], n, Backprop::Params);
    q.backward_with(&mut s.cache_adv, &s.dy[..n], n, Backprop::Params);
    gap2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{Activation, MlpConfig};
    use rand::SeedableRng;

    fn toy() -> Mlp<CpuBackend> {
        let cfg = MlpConfig {
            sizes: vec![3, 16, 1],
            hidden: Activation::Tanh,
            output: Activation::Identity,
            spectral_norm: false,
            spectral_norm_output: false,
        };
        Mlp::new(&CpuBackend, &cfg, 8, &mut rand_pcg::Pcg64::seed_from_u64(3))
    }

    fn gap(q: &mut Mlp<CpuBackend>, a: &[f32], b: &[f32], n: usize) -> Vec<f32> {
        let y0 = q.predict(a, n).to_vec();
        q.predict(b, n)
            .iter()
            .zip(y0)
            .map(|(y1, y0)| (y1 - y0).abs())
            .collect()
    }

    #[test]
    fn perturbation_stays_within_epsilon_and_leaves_actions() {
        let mut q = toy();
        let mut rng = rand_pcg::Pcg64::seed_from_u64(1);
        let (n, od, std) = (8, 2, [0.5f32, 2.0]);
        for attack in [Attack::Fgsm, Attack::Pgd] {
            let mut s = RobustScratch::new(&q, n, od, 1);
            for (k, x) in s.clean.iter_mut().enumerate() {
                *x = (k as f32 * 0.37).sin();
            }
            perturb(&mut q, &mut s, n, od, 0.1, &std, attack, 5, &mut rng);
            for i in 0..n {
                for j in 0..3 {
                    let d = (s.adv[i * 3 + j] - s.clean[i * 3 + j]).abs();
                    let bound = if j < od { 0.1 * std[j] } else { 0.0 };
                    assert!(
                        d <= bound * (1.0 + 1e-5) + 1e-7,
                        "{attack:?} row {i} dim {j}: {d} > {bound}"
                    );
                }
            }
        }
    }

    #[test]
    fn fgsm_and_pgd_increase_the_gap_over_random_perturbations() {
        let mut q = toy();
        let mut rng = rand_pcg::Pcg64::seed_from_u64(2);
        let (n, od, std) = (8, 2, [1.0f32, 1.0]);
        let mut s = RobustScratch::new(&q, n, od, 1);
        for (k, x) in s.clean.iter_mut().enumerate() {
            *x = (k as f32 * 0.71).cos();
        }
        let clean = s.clean.clone();
        // Random sign perturbations of the same size, averaged.
        let mut random_gap = 0.0;
        for _ in 0..20 {
            let mut r = clean.clone();
            for i in 0..n {
                for j in 0..od {
                    r[i * 3 + j] += if rng.random::<bool>() { 0.05 } else { -0.05 };
                }
            }
            random_gap += gap(&mut q, &clean, &r, n).iter().sum::<f32>() / 20.0;
        }
        for attack in [Attack::Fgsm, Attack::Pgd] {
            perturb(&mut q, &mut s, n, od, 0.05, &std, attack, 10, &mut rng);
            let adv_gap: f32 = gap(&mut q, &clean, &s.adv, n).iter().sum();
            assert!(
                adv_gap > random_gap * 1.2,
                "{attack:?}: {adv_gap} vs random {random_gap}"
            );
        }
    }

    #[test]
    fn robust_gradient_matches_finite_differences() {
        let mut q = toy();
        let n = 4;
        let mut s = RobustScratch::new(&q, n, 2, 1);
        for (k, x) in s.clean.iter_mut().enumerate() {
            *x = (k as f32 * 0.3).sin();
        }
        for (k, x) in s.adv.iter_mut().enumerate() {
            *x = s.clean[k] + if k % 3 == 2 { 0.0 } else { 0.07 };
        }
        let (clean, adv) = (s.clean.clone(), s.adv.clone());
        let lambda = 0.7;
        q.zero_grad();
        accumulate_gradient(&mut q, &mut s, n, lambda);
        let grads = q.grads().into_owned();
        let loss = |q: &mut Mlp<CpuBackend>| -> f64 {
            let y0 = q.predict(&clean[..n * 3], n).to_vec();
            let y1 = q.predict(&adv[..n * 3], n).to_vec();
            y0.iter()
                .zip(&y1)
                .map(|(a, b)| f64::from(lambda) * f64::from(b - a).powi(2) / n as f64)
                .sum()
        };
        let params = q.params().into_owned();
        for idx in [0usize, 5, 17, 40, params.len() - 1] {
            let h = 1e-3f32;
            let mut p = params.clone();
            p[idx] += h;
            q.load_params(&p);
            let up = loss(&mut q);
            p[idx] -= 2.0 * h;
            q.load_params(&p);
            let down = loss(&mut q);
            let fd = (up - down) / (2.0 * f64::from(h));
            let an = f64::from(grads[idx]);
            assert!(
                (fd - an).abs() <= 1e-3 + 2e-2 * fd.abs(),
                "param {idx}: fd {fd} vs analytic {an}"
            );
        }
    }
}
