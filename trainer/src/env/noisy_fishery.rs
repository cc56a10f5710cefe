//! Fishery with noisy observations: the POMDP of Memarzadeh and Boettiger (2018), "Resolving the
//! measurement uncertainty paradox in ecological management", in continuous form.
//!
//! `s = max(x - h, 0)`, `x' = max(s + 0.75 s (1 - s) + sigma_g N(0,1), 0)`; the manager observes
//! `y = x + sigma_m N(0,1)`, never x. Reward `min(x, h)` on the true stock; x0 = 0.1616; 99 steps;
//! the paper's NPV is `sum_{t=1..99} min(x, h) 0.95^t`, reported through [`Env::step_score`].
//!
//! Our choices (the published model is a 100-point grid over [0, 2]):
//! - **Extinction**: 0 is absorbing. A fully harvested stock (s = 0) stays at 0 instead of being
//!   regrown by the additive noise, a stock pushed below 0 by the noise is 0, and reaching 0
//!   terminates the episode (every later reward would be 0, so returns are unchanged).
//! - **Observation** `[y]` unscaled (stocks are O(1)); y is not clipped at 0, so a negative
//!   survey is possible, and a stock of exactly 0 is observed as exactly 0 (the fishery is known
//!   to be closed). So `y == 0` exactly iff the stock is extinct, which gives a terminal predicate.
//! - **Action** the harvest quota h, bounded to [0, 2], the grid's range: any stock can be fished
//!   out (x > 2 needs a 6-sigma shock at sigma_g 0.15).
//! - **Noise** defaults: sigma_g = 0.15, sigma_m = 0.1 (the paper's middle case);
//!   [`NoisyFishery::with_noise`] sets others (sigma_m = 0 makes the state observed).
//! - **Reward** stays undiscounted (`min(x, h)`); the agent's own gamma discounts. It depends on
//!   the true x, so `reward_fn` is `None` unless sigma_m = 0.
use rand::Rng;
use rand_distr::StandardNormal;
use rand_pcg::Pcg64;

use super::{first, new_rng, reseed, write_obs, Env, StepCounter, StepOutcome};

/// Initial stock.
pub const X0: f64 = 0.1616;
/// Growth rate of the logistic map.
pub const R: f64 = 0.75;
/// The NPV's discount factor.
pub const DISCOUNT: f64 = 0.95;
/// Episode length.
pub const MAX_EPISODE_STEPS: usize = 99;
/// Largest quota an action can set.
pub const MAX_HARVEST: f32 = 2.0;
/// Default growth noise.
pub const SIGMA_G: f64 = 0.15;
/// Default measurement noise.
pub const SIGMA_M: f64 = 0.1;

const LOW: [f32; 1] = [0.0];
const HIGH: [f32; 1] = [MAX_HARVEST];

/// The noisy-observation fishery (see the module documentation for the choices).
#[derive(Clone, Debug)]
pub struct NoisyFishery {
    x: f64,
    sigma_g: f64,
    sigma_m: f64,
    rng: Pcg64,
    counter: StepCounter,
    score: f64,
}

impl Default for NoisyFishery {
    fn default() -> Self {
        Self::new()
    }
}

impl NoisyFishery {
    /// sigma_g = 0.15, sigma_m = 0.1.
    pub fn new() -> Self {
        Self::with_noise(SIGMA_G, SIGMA_M)
    }

    /// Growth noise `sigma_g` and measurement noise `sigma_m` (standard deviations).
    pub fn with_noise(sigma_g: f64, sigma_m: f64) -> Self {
        Self {
            x: X0,
            sigma_g,
            sigma_m,
            rng: new_rng(),
            counter: StepCounter::default(),
            score: 0.0,
        }
    }

    /// The true stock x (hidden from the manager).
    pub fn population(&self) -> f64 {
        self.x
    }

    /// Draws a survey of the current stock.
    fn observe(&mut self, obs: &mut [f32]) {
        let noise: f64 = self.rng.sample(StandardNormal);
        let y = if self.x == 0.0 {
            0.0
        } else {
            self.x + self.sigma_m * noise
        };
        write_obs(obs, &[y as f32]);
    }
}

fn quota(action: &[f32]) -> f64 {
    f64::from(first(action).clamp(0.0, MAX_HARVEST))
}

impl Env for NoisyFishery {
    fn id(&self) -> &str {
        "fishery-noisy-obs"
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

    /// x0 = 0.1616 always; the first survey is noisy.
    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) {
        reseed(&mut self.rng, seed);
        self.x = X0;
        self.counter = StepCounter::default();
        self.score = 0.0;
        self.observe(obs);
    }

    fn step(&mut self, action: &[f32], obs: &mut [f32]) -> StepOutcome {
        let h = quota(action);
        let reward = self.x.min(h);
        let s = (self.x - h).max(0.0);
        let noise: f64 = self.rng.sample(StandardNormal);
        self.x = if s == 0.0 {
            0.0
        } else {
            (s + R * s * (1.0 - s) + self.sigma_g * noise).max(0.0)
        };
        let terminated = self.x == 0.0;
        let truncated = self.counter.tick(MAX_EPISODE_STEPS);
        // The NPV discounts the t-th step (1-based) by 0.95^t.
        let t = i32::try_from(self.counter.steps).unwrap_or(i32::MAX);
        self.score = reward * DISCOUNT.powi(t);
        self.observe(obs);
        StepOutcome {
            reward,
            terminated,
            truncated,
        }
    }

    /// Known only when the stock is observed exactly (sigma_m = 0).
    fn reward_fn(&self, obs: &[f32], action: &[f32], _next_obs: &[f32]) -> Option<f32> {
        if self.sigma_m != 0.0 {
            return None;
        }
        let x = f64::from(*obs.first()?);
        Some(x.min(quota(action)) as f32)
    }

    fn terminal_fn(&self, _obs: &[f32], _action: &[f32], next_obs: &[f32]) -> Option<bool> {
        next_obs.first().map(|&y| y == 0.0)
    }

    fn step_score(&self) -> Option<f64> {
        Some(self.score)
    }

    fn box_clone(&self) -> Box<dyn Env> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mean NPV over 100 replicates of a policy on the observed y.
    fn npv(env: &mut NoisyFishery, policy: impl Fn(f32) -> f32) -> f64 {
        let mut obs = [0.0f32];
        let mut total = 0.0;
        for k in 0..100 {
            env.reset(Some(k), &mut obs);
            loop {
                let out = env.step(&[policy(obs[0])], &mut obs);
                total += env.step_score().unwrap_or(0.0);
                if out.terminated || out.truncated {
                    break;
                }
            }
        }
        total / 100.0
    }

    /// The published baselines (grid model) at sigma_g = 0.15: escapement 2.56 / 2.24 (sigma_m
    /// 0 / 0.1), MSY 1.37 / 1.44. The continuous model lands close.
    #[test]
    fn baselines_are_near_the_published_npv() {
        let esc = |y: f32| (y - 0.46491).max(0.0);
        let msy = |y: f32| 0.28638 * y.max(0.0);
        let e0 = npv(&mut NoisyFishery::with_noise(0.15, 0.0), esc);
        let e1 = npv(&mut NoisyFishery::with_noise(0.15, 0.1), esc);
        let m1 = npv(&mut NoisyFishery::with_noise(0.15, 0.1), msy);
        assert!((2.0..3.1).contains(&e0), "escapement, sigma_m 0: {e0}");
        assert!((1.7..2.8).contains(&e1), "escapement, sigma_m 0.1: {e1}");
        assert!((1.0..1.9).contains(&m1), "msy, sigma_m 0.1: {m1}");
    }
}
