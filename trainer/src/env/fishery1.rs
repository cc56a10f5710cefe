//! One-species fishery: model 1 of "Pretty darn good control" (Montealegre-Mora et al. 2023).
//!
//! Logistic growth with a saturating (type III) predation term and multiplicative noise; the
//! action is the fraction of the stock caught. Termination, penalty, observation scaling, the
//! 200-step cap and the paper's score follow the 3-species model ([`super::Fishery3`]).
use rand::Rng;
use rand_distr::StandardNormal;
use rand_pcg::Pcg64;

use super::fishery3::{
    collapse_penalty, paper_step_score, COLLAPSE_THRESHOLD, MAX_EPISODE_STEPS, OBS_SCALE,
};
use super::{first, new_rng, reseed, write_obs, Env, StepCounter, StepOutcome};

const LOW: [f32; 1] = [0.0];
const HIGH: [f32; 1] = [1.0];
/// Growth noise standard deviation (multiplicative).
const SIGMA: f64 = 0.05;
/// Mean initial stock; 0.02 N(0, 1) is added.
const X0: f64 = 0.7;
const X0_SIGMA: f64 = 0.02;

/// The 1-species fishery: obs `X/4`, action = catch fraction in [0, 1], reward = harvest
/// (+ the collapse penalty -100/(t+1)), 200 steps.
#[derive(Clone, Debug)]
pub struct Fishery1 {
    x: f64,
    rng: Pcg64,
    counter: StepCounter,
    score: f64,
}

impl Default for Fishery1 {
    fn default() -> Self {
        Self::new()
    }
}

impl Fishery1 {
    pub fn new() -> Self {
        Self {
            x: X0,
            rng: new_rng(),
            counter: StepCounter::default(),
            score: 0.0,
        }
    }

    /// The stock X.
    pub fn population(&self) -> f64 {
        self.x
    }

    fn observe(&self, obs: &mut [f32]) {
        write_obs(obs, &[(self.x / OBS_SCALE) as f32]);
    }
}

impl Env for Fishery1 {
    fn id(&self) -> &str {
        "fishery1"
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

    /// X0 = 0.7 + 0.02 N(0, 1).
    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) {
        reseed(&mut self.rng, seed);
        self.x = X0 + X0_SIGMA * self.rng.sample::<f64, _>(StandardNormal);
        self.counter = StepCounter::default();
        self.score = 0.0;
        self.observe(obs);
    }

    fn step(&mut self, action: &[f32], obs: &mut [f32]) -> StepOutcome {
        let t = self.counter.steps;
        let a = f64::from(first(action).clamp(0.0, 1.0));
        let harvest = a * self.x;
        let x = (self.x - harvest).max(0.0);
        let xi: f64 = self.rng.sample(StandardNormal);
        let nx = (x + x * (1.0 - x) - 0.25 * x * x / (x * x + 0.01) + SIGMA * x * xi).max(0.0);
        self.x = nx;
        let terminated = nx <= COLLAPSE_THRESHOLD;
        let reward = if terminated {
            harvest + collapse_penalty(t)
        } else {
            harvest
        };
        let truncated = self.counter.tick(MAX_EPISODE_STEPS);
        self.score = paper_step_score(harvest, terminated || truncated);
        self.observe(obs);
        StepOutcome {
            reward,
            terminated,
            truncated,
        }
    }

    // No `reward_fn`: the collapse penalty depends on the step count, which the observation lacks.

    fn step_reward(&self, obs: &[f32], action: &[f32], next_obs: &[f32], t: usize) -> Option<f32> {
        let stock = f64::from(obs.first().copied().unwrap_or(0.0)) * OBS_SCALE;
        let harvest = f64::from(first(action).clamp(0.0, 1.0)) * stock;
        let penalty = match self.terminal_fn(obs, action, next_obs) {
            Some(true) => collapse_penalty(t),
            _ => 0.0,
        };
        Some((harvest + penalty) as f32)
    }

    fn terminal_fn(&self, _obs: &[f32], _action: &[f32], next_obs: &[f32]) -> Option<bool> {
        next_obs
            .first()
            .map(|&v| f64::from(v) * OBS_SCALE <= COLLAPSE_THRESHOLD)
    }

    fn step_score(&self) -> Option<f64> {
        Some(self.score)
    }

    fn box_clone(&self) -> Box<dyn Env> {
        Box::new(self.clone())
    }
}
