//! Allee-effect stock with a tipping point: the model of Boettiger, Mangel and Munch (2015),
//! "Avoiding tipping points in fisheries management through Gaussian process dynamic programming".
//!
//! `x' = Z s exp(r (1 - s/K)(s - C)/K)`, `s = max(0, x - h)`, (r, K, C) = (2, 8, 5),
//! `Z ~ LogNormal(0, 0.05)`. Equilibria at 0, 5 (unstable: the tipping point) and 8; an escapement
//! below 5 sends the stock to extinction. Reward `min(x, h)`, x0 = 10, 49 steps, undiscounted.
//!
//! Our choices (the paper works on a grid, with no observation or action scaling):
//! - **Observation** `x / K` (1 at the carrying capacity, 0.625 at the tipping point, 1.25 at x0),
//!   so the network sees O(1) inputs.
//! - **Action** the harvest `h` itself, bounded to [0, 10]: enough to harvest the whole stock at
//!   x0 = 10 and at any later step (the stock's largest deterministic successor is 8.05; above 10
//!   needs a shock Z > 1.24, a 4-sigma event).
//! - **Termination** when the stock is exactly 0 (harvested out): 0 is absorbing and pays 0 from
//!   then on, so ending there leaves every return unchanged and tells the critic the truth.
//! - The score is the plain return (the paper's total profit), so there is no `step_score`.
use rand::Rng;
use rand_distr::StandardNormal;
use rand_pcg::Pcg64;

use super::{first, new_rng, reseed, write_obs, Env, StepCounter, StepOutcome};

/// Growth rate.
pub const R: f64 = 2.0;
/// Carrying capacity (the upper stable equilibrium); also the observation scale.
pub const K: f64 = 8.0;
/// Allee threshold (the unstable equilibrium).
pub const C: f64 = 5.0;
/// Log-scale standard deviation of the multiplicative shock Z.
pub const SIGMA: f64 = 0.05;
/// Initial stock.
pub const X0: f64 = 10.0;
/// Episode length.
pub const MAX_EPISODE_STEPS: usize = 49;
/// Largest harvest an action can ask for.
pub const MAX_HARVEST: f32 = 10.0;

const LOW: [f32; 1] = [0.0];
const HIGH: [f32; 1] = [MAX_HARVEST];

/// The deterministic part of the dynamics: next stock from escapement `s`.
pub fn allee_growth(s: f64) -> f64 {
    s * (R * (1.0 - s / K) * (s - C) / K).exp()
}

/// The Allee tipping-point fishery: obs `x / 8`, action = harvest in [0, 10], reward
/// `min(x, h)`, 49 steps from x0 = 10.
#[derive(Clone, Debug)]
pub struct Allee {
    x: f64,
    rng: Pcg64,
    counter: StepCounter,
}

impl Default for Allee {
    fn default() -> Self {
        Self::new()
    }
}

impl Allee {
    pub fn new() -> Self {
        Self {
            x: X0,
            rng: new_rng(),
            counter: StepCounter::default(),
        }
    }

    /// The stock x.
    pub fn population(&self) -> f64 {
        self.x
    }

    fn observe(&self, obs: &mut [f32]) {
        write_obs(obs, &[(self.x / K) as f32]);
    }
}

fn harvest(action: &[f32]) -> f64 {
    f64::from(first(action).clamp(0.0, MAX_HARVEST))
}

impl Env for Allee {
    fn id(&self) -> &str {
        "allee"
    }
    fn obs_dim(&self) -> usize {
        1
    }
    fn act_dim(&self) -> usize {
        1
    }
    fn action_low(&self) -> &[f32] {
        &LOW
    }
    fn action_high(&self) -> &[f32] {
        &HIGH
    }
    fn max_episode_steps(&self) -> usize {
        MAX_EPISODE_STEPS
    }

    /// Deterministic start x0 = 10 (the seed still reseeds the shocks).
    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) {
        reseed(&mut self.rng, seed);
        self.x = X0;
        self.counter = StepCounter::default();
        self.observe(obs);
    }

    fn step(&mut self, action: &[f32], obs: &mut [f32]) -> StepOutcome {
        let h = harvest(action);
        let reward = self.x.min(h);
        let s = (self.x - h).max(0.0);
        let z = (SIGMA * self.rng.sample::<f64, _>(StandardNormal)).exp();
        self.x = z * allee_growth(s);
        let terminated = self.x == 0.0;
        let truncated = self.counter.tick(MAX_EPISODE_STEPS);
        self.observe(obs);
        StepOutcome {
            reward,
            terminated,
            truncated,
        }
    }

    fn reward_fn(&self, obs: &[f32], action: &[f32], _next_obs: &[f32]) -> Option<f32> {
        let x = f64::from(*obs.first()?) * K;
        Some(x.min(harvest(action)) as f32)
    }

    fn terminal_fn(&self, _obs: &[f32], _action: &[f32], next_obs: &[f32]) -> Option<bool> {
        next_obs.first().map(|&v| v == 0.0)
    }

    fn box_clone(&self) -> Box<dyn Env> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equilibria() {
        for e in [0.0, C, K] {
            assert!((allee_growth(e) - e).abs() < 1e-12, "{e}");
        }
        assert!(allee_growth(4.9) < 4.9 && allee_growth(5.1) > 5.1);
    }

    /// Constant escapement at the MSY level (6.66, the maximizer of growth(s) - s): harvests
    /// 3.3 at once, then ~0.48 a step. The paper's optimal policy makes 26.53.
    #[test]
    fn constant_escapement_is_near_the_published_optimum() {
        let mut env = Allee::new();
        let mut obs = [0.0f32];
        let mut total = 0.0;
        for k in 0..100 {
            env.reset(Some(k), &mut obs);
            loop {
                let h = (env.population() - 6.66).max(0.0) as f32;
                let out = env.step(&[h], &mut obs);
                total += out.reward;
                if out.terminated || out.truncated {
                    break;
                }
            }
        }
        let mean = total / 100.0;
        assert!(mean > 22.0 && mean < 30.0, "mean {mean}");
    }
}
