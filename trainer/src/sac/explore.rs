//! The exploration noise behind the real env's actions, white or correlated in time.
//!
//! SAC explores by sampling its tanh-Gaussian policy with fresh standard-normal draws at every
//! step. On a plant whose reward is only found by pushing the same way for a long time
//! (mountaincar: the flag is reached by rocking the car for hundreds of steps), that jitter
//! averages out and the reward is never seen. With `SacConfig::noise_correlation` = rho > 0 the
//! draws follow an AR(1) process, e <- rho e + sqrt(1 - rho^2) w: every draw is still standard
//! normal, so the policy's distribution at each step is unchanged, but consecutive draws agree
//! for about 1 / (1 - rho) steps. Random warm-up actions use the same draws through the normal
//! CDF: uniform in the action box at every step, as with white noise, but persistent.
use rand::Rng;
use rand_distr::StandardNormal;

/// The noise state of one learner. With rho = 0 it draws exactly what SAC drew before the
/// option existed, so white-noise runs are unchanged.
#[derive(Clone, Debug)]
pub struct ExplorationNoise {
    rho: f32,
    /// The AR(1) state, one per action dimension (the latest correlated draws); empty before
    /// the first one.
    state: Vec<f32>,
    /// The latest white draws (its length is the action dimension).
    draws: Vec<f32>,
}

impl ExplorationNoise {
    pub fn new(rho: f32, act_dim: usize) -> Self {
        Self {
            rho,
            state: Vec::new(),
            draws: vec![0.0; act_dim],
        }
    }

    /// White noise: independent draws at every step.
    pub fn is_white(&self) -> bool {
        self.rho == 0.0
    }

    /// The next standard-normal draws, one per action dimension.
    pub fn next<R: Rng>(&mut self, rng: &mut R) -> &[f32] {
        if self.is_white() {
            for e in self.draws.iter_mut() {
                *e = rng.sample(StandardNormal);
            }
            return &self.draws;
        }
        if self.state.len() != self.draws.len() {
            // Start in the stationary distribution: standard normal.
            self.state = (0..self.draws.len())
                .map(|_| rng.sample(StandardNormal))
                .collect();
        } else {
            let fresh = (1.0 - self.rho * self.rho).sqrt();
            for e in self.state.iter_mut() {
                let w: f32 = rng.sample(StandardNormal);
                *e = self.rho * *e + fresh * w;
            }
        }
        &self.state
    }

    /// A uniform random action in `[low, high]`: drawn directly with white noise (as SAC's
    /// warm-up always did), else the next draws mapped through the normal CDF.
    pub fn uniform_action<R: Rng>(
        &mut self,
        low: &[f32],
        high: &[f32],
        action: &mut [f32],
        rng: &mut R,
    ) {
        if self.is_white() {
            for ((a, lo), hi) in action.iter_mut().zip(low).zip(high) {
                *a = rng.random_range(*lo..*hi);
            }
            return;
        }
        let draws = self.next(rng);
        for ((a, e), (lo, hi)) in action.iter_mut().zip(draws).zip(low.iter().zip(high)) {
            let u = 0.5 * (1.0 + libm::erff(e * std::f32::consts::FRAC_1_SQRT_2));
            *a = (lo + (hi - lo) * u).clamp(*lo, *hi);
        }
    }

    /// The AR(1) state, for checkpoints (empty with white noise).
    pub fn state(&self) -> &[f32] {
        &self.state
    }

    /// Restores [`Self::state`]; false if it does not fit this action dimension.
    pub fn load_state(&mut self, state: Vec<f32>) -> bool {
        if !state.is_empty() && state.len() != self.draws.len() {
            return false;
        }
        self.state = state;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::make_env;
    use rand::SeedableRng;
    use rand_pcg::Pcg64;

    fn draws(rho: f32, n: usize) -> Vec<f32> {
        let mut rng = Pcg64::seed_from_u64(1);
        let mut noise = ExplorationNoise::new(rho, 1);
        (0..n).map(|_| noise.next(&mut rng)[0]).collect()
    }

    fn mean_var_lag1(x: &[f32]) -> (f64, f64, f64) {
        let n = x.len() as f64;
        let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = x
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        let cov = x
            .windows(2)
            .map(|w| (f64::from(w[0]) - mean) * (f64::from(w[1]) - mean))
            .sum::<f64>()
            / (n - 1.0);
        (mean, var, cov / var)
    }

    #[test]
    fn draws_stay_standard_normal_with_the_requested_step_to_step_correlation() {
        for rho in [0.0f32, 0.5, 0.95] {
            let (mean, var, lag1) = mean_var_lag1(&draws(rho, 200_000));
            // With rho = 0.95 the effective sample count is ~200,000 * 0.05 / 1.95 ~ 5,000.
            assert!(mean.abs() < 0.05, "rho {rho}: mean {mean}");
            assert!((var - 1.0).abs() < 0.06, "rho {rho}: variance {var}");
            assert!(
                (lag1 - f64::from(rho)).abs() < 0.01,
                "rho {rho}: lag-1 {lag1}"
            );
        }
    }

    #[test]
    fn white_noise_draws_what_sac_always_drew() {
        let mut rng = Pcg64::seed_from_u64(5);
        let expected: Vec<f32> = (0..8).map(|_| rng.sample(StandardNormal)).collect();
        let (lo, hi) = (-2.0f32, 3.0f32);
        let uniform: Vec<f32> = (0..8).map(|_| rng.random_range(lo..hi)).collect();
        let mut rng = Pcg64::seed_from_u64(5);
        let mut noise = ExplorationNoise::new(0.0, 8);
        assert_eq!(noise.next(&mut rng), &expected[..]);
        let mut a = [0.0f32];
        for u in uniform {
            noise.uniform_action(&[lo], &[hi], &mut a, &mut rng);
            assert_eq!(a[0], u);
        }
        assert!(noise.state().is_empty());
    }

    #[test]
    fn correlated_warm_up_actions_are_uniform_in_the_box() {
        let mut rng = Pcg64::seed_from_u64(2);
        let mut noise = ExplorationNoise::new(0.9, 2);
        let (low, high) = ([-1.0f32, 0.0], [1.0f32, 4.0]);
        let mut a = [0.0f32; 2];
        let mut bins = [[0usize; 4]; 2];
        let n = 100_000;
        for _ in 0..n {
            noise.uniform_action(&low, &high, &mut a, &mut rng);
            for d in 0..2 {
                assert!((low[d]..=high[d]).contains(&a[d]), "{a:?}");
                let q = ((a[d] - low[d]) / (high[d] - low[d]) * 4.0) as usize;
                bins[d][q.min(3)] += 1;
            }
        }
        for quarters in bins {
            for count in quarters {
                let share = count as f64 / n as f64;
                assert!((share - 0.25).abs() < 0.02, "quarters {quarters:?}");
            }
        }
    }

    /// Episodes of `mountaincar` with random warm-up actions that reach the flag.
    fn flags_reached(rho: f32, episodes: u64) -> usize {
        let mut env = make_env("mountaincar").unwrap();
        let (low, high) = (env.action_low().to_vec(), env.action_high().to_vec());
        let mut rng = Pcg64::seed_from_u64(3);
        let mut noise = ExplorationNoise::new(rho, 1);
        let (mut obs, mut a) = (vec![0.0f32; env.obs_dim()], [0.0f32]);
        let mut reached = 0;
        for ep in 0..episodes {
            env.reset(Some(ep), &mut obs);
            loop {
                noise.uniform_action(&low, &high, &mut a, &mut rng);
                let out = env.step(&a, &mut obs);
                if out.terminated {
                    reached += 1;
                }
                if out.terminated || out.truncated {
                    break;
                }
            }
        }
        reached
    }

    #[test]
    fn correlated_random_actions_find_mountaincars_flag_and_white_ones_do_not() {
        let (white, correlated) = (flags_reached(0.0, 40), flags_reached(0.95, 40));
        assert_eq!(white, 0);
        assert!(
            correlated >= 20,
            "{correlated} of 40 episodes reached the flag"
        );
    }

    #[test]
    fn a_restored_state_continues_the_same_sequence() {
        let mut rng = Pcg64::seed_from_u64(4);
        let mut noise = ExplorationNoise::new(0.9, 3);
        noise.next(&mut rng);
        let mut copy = ExplorationNoise::new(0.9, 3);
        assert!(copy.load_state(noise.state().to_vec()));
        let mut rng2 = rng.clone();
        assert_eq!(noise.next(&mut rng), copy.next(&mut rng2));
        assert!(!copy.load_state(vec![0.0; 2]));
    }
}
