//! Three-species fishery, two species harvested: model 3 of "Pretty darn good control"
//! (Montealegre-Mora, Lapeyrolerie, Chapman, Keller, Boettiger 2023), following the authors' code
//! where it disagrees with the paper (see docs/environments.md).
//!
//! State N = (X, Y, Z): two fish stocks and a predator of both. The action is the fraction of
//! each fish stock caught this step. Noise is multiplicative (sigma 0.1 per species), so stocks
//! never jump sign, but they can crash: any species at or below 0.05 ends the episode with a
//! penalty -100/(t+1) (t = 0-based step) that is large for early collapses.
//!
//! Two episode totals matter: the return (harvests plus penalty), which the agent maximizes, and
//! the paper's score, the harvests of all steps but the last (no penalty), reported through
//! [`Env::step_score`]. [`constant_mortality_fishery3`] is the paper's strongest simple baseline.
use rand::Rng;
use rand_distr::StandardNormal;
use rand_pcg::Pcg64;

use super::{new_rng, reseed, write_obs, Env, StepCounter, StepOutcome};

/// Episode cap (truncation), as the authors' code.
pub const MAX_EPISODE_STEPS: usize = 200;
/// A species at or below this level has collapsed: the episode terminates.
pub const COLLAPSE_THRESHOLD: f64 = 0.05;
/// Observations are the state divided by this.
pub const OBS_SCALE: f64 = 4.0;
/// Noise standard deviation of each species' growth (multiplicative).
const SIGMA: f64 = 0.1;
/// Mean of the initial state; each component gets 0.02 N(0, 1) on top.
const N0: [f64; 3] = [0.5, 0.5, 0.7];
const N0_SIGMA: f64 = 0.02;

const LOW: [f32; 2] = [0.0, 0.0];
const HIGH: [f32; 2] = [1.0, 1.0];

/// The termination penalty at 0-based step `t`.
pub(super) fn collapse_penalty(t: usize) -> f64 {
    -100.0 / (t as f64 + 1.0)
}

/// The paper's score for one step: its harvest, except on the episode's last step, whose harvest
/// (and penalty) the paper's evaluation leaves out (it sums steps 0..L-2 of an L-step episode).
pub(super) fn paper_step_score(harvest: f64, last_step: bool) -> f64 {
    if last_step {
        0.0
    } else {
        harvest
    }
}

/// Clips a raw action to a harvest fraction in [0, 1] (NaN stays NaN, as numpy's clip).
fn fraction(raw: f32) -> f64 {
    f64::from(raw.clamp(0.0, 1.0))
}

/// The 3-species fishery: obs `N/4` (3 values), action = catch fractions of X and Y in [0, 1],
/// reward = harvest (+ the collapse penalty), 200 steps.
#[derive(Clone, Debug)]
pub struct Fishery3 {
    n: [f64; 3],
    rng: Pcg64,
    counter: StepCounter,
    score: f64,
}

impl Default for Fishery3 {
    fn default() -> Self {
        Self::new()
    }
}

impl Fishery3 {
    pub fn new() -> Self {
        Self {
            n: N0,
            rng: new_rng(),
            counter: StepCounter::default(),
            score: 0.0,
        }
    }

    /// The populations (X, Y, Z).
    pub fn populations(&self) -> [f64; 3] {
        self.n
    }

    fn observe(&self, obs: &mut [f32]) {
        write_obs(obs, &self.n.map(|v| (v / OBS_SCALE) as f32));
    }
}

impl Env for Fishery3 {
    fn id(&self) -> &str {
        "fishery3"
    }
    fn obs_dim(&self) -> usize {
        3
    }
    fn act_dim(&self) -> usize {
        2
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

    /// N0 = (0.5, 0.5, 0.7) + 0.02 N(0, I).
    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) {
        reseed(&mut self.rng, seed);
        for (v, mean) in self.n.iter_mut().zip(N0) {
            *v = mean + N0_SIGMA * self.rng.sample::<f64, _>(StandardNormal);
        }
        self.counter = StepCounter::default();
        self.score = 0.0;
        self.observe(obs);
    }

    fn step(&mut self, action: &[f32], obs: &mut [f32]) -> StepOutcome {
        let t = self.counter.steps;
        let a_x = fraction(action.first().copied().unwrap_or(0.0));
        let a_y = fraction(action.get(1).copied().unwrap_or(0.0));
        let [x0, y0, z] = self.n;
        // 1. Harvest first; growth acts on what is left.
        let (h_x, h_y) = (a_x * x0, a_y * y0);
        let x = (x0 - h_x).max(0.0);
        let y = (y0 - h_y).max(0.0);
        let harvest = h_x + h_y;
        // 2. Growth, simultaneously, noise drawn in the order X, Y, Z.
        let mut xi = [0.0f64; 3];
        for v in &mut xi {
            *v = self.rng.sample(StandardNormal);
        }
        let [xi_x, xi_y, xi_z] = xi;
        let nx =
            x + x * (1.0 - x) - 0.3 * z * x * x / (0.09 + x * x) - 0.1 * x * y + SIGMA * x * xi_x;
        let ny =
            y + y * (1.0 - y) - 0.33 * z * y * y / (0.09 + y * y) - 0.1 * x * y + SIGMA * y * xi_y;
        let nz = z + z * (0.1 * (x + 1.1 * y) - 0.1) + SIGMA * z * xi_z;
        self.n = [nx, ny, nz];
        // 3. Collapse of any species ends the episode with a penalty.
        let terminated = nx.min(ny).min(nz) <= COLLAPSE_THRESHOLD;
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
        let stock = |i: usize| f64::from(obs.get(i).copied().unwrap_or(0.0)) * OBS_SCALE;
        let catch = |i: usize| fraction(action.get(i).copied().unwrap_or(0.0));
        let harvest = catch(0) * stock(0) + catch(1) * stock(1);
        let penalty = match self.terminal_fn(obs, action, next_obs) {
            Some(true) => collapse_penalty(t),
            _ => 0.0,
        };
        Some((harvest + penalty) as f32)
    }

    fn terminal_fn(&self, _obs: &[f32], _action: &[f32], next_obs: &[f32]) -> Option<bool> {
        let min = next_obs.iter().fold(f32::INFINITY, |m, &v| m.min(v));
        Some(f64::from(min) * OBS_SCALE <= COLLAPSE_THRESHOLD)
    }

    fn step_score(&self) -> Option<f64> {
        Some(self.score)
    }

    fn box_clone(&self) -> Box<dyn Env> {
        Box::new(self.clone())
    }
}

/// Mean paper score of the fixed action `(a_x, a_y)` over `episodes` episodes, episode `k`
/// seeded `seed + k` (every grid point sees the same noise: common random numbers).
pub fn fishery3_fixed_action_score(a_x: f32, a_y: f32, episodes: usize, seed: u64) -> f64 {
    let mut env = Fishery3::new();
    let mut obs = [0.0f32; 3];
    let mut total = 0.0;
    for k in 0..episodes {
        env.reset(Some(seed.wrapping_add(k as u64)), &mut obs);
        loop {
            let out = env.step(&[a_x, a_y], &mut obs);
            total += env.score;
            if out.terminated || out.truncated {
                break;
            }
        }
    }
    total / episodes.max(1) as f64
}

/// Best fixed action on a `points` x `points` grid over `[0, max]^2`: `(a_x, a_y, mean score)`.
pub fn constant_mortality_grid(
    points: usize,
    max: f64,
    episodes: usize,
    seed: u64,
) -> (f64, f64, f64) {
    let step = if points > 1 {
        max / (points - 1) as f64
    } else {
        0.0
    };
    let mut best = (0.0, 0.0, f64::NEG_INFINITY);
    for i in 0..points {
        for j in 0..points {
            let (a_x, a_y) = (i as f64 * step, j as f64 * step);
            let score = fishery3_fixed_action_score(a_x as f32, a_y as f32, episodes, seed);
            if score > best.2 {
                best = (a_x, a_y, score);
            }
        }
    }
    best
}

/// The paper's constant-mortality baseline: the best fixed catch fractions on a 51x51 grid over
/// [0, 0.5]^2, scored by the paper's score (harvests of steps 0..L-2) averaged over `episodes`
/// episodes. Returns `(a_x, a_y, mean_score)`.
///
/// Measured (release build, `episodes = 100`, `seed = 0`, about 0.5 s): **(0.27, 0.26, 64.28)**;
/// seeds 1e6, 2e6, 3e6 give 63.46, 64.22, 62.51 at (0.26..0.28, 0.26..0.27). The grid maximum is an
/// in-sample estimate, biased upwards by picking the best of 2601 noisy means (near the optimum,
/// harvests push the predator to collapse in ~16% of episodes and the per-episode score has sd
/// ~10): re-evaluating (0.27, 0.26) on 2000 fresh episodes gives 62.88 (SE 0.23). Published:
/// 62.30, and the authors' fresh re-run ~61.3 (expect 61 +- 1.3).
pub fn constant_mortality_fishery3(episodes: usize, seed: u64) -> (f64, f64, f64) {
    constant_mortality_grid(51, 0.5, episodes, seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_harvest_scores_zero_and_full_harvest_collapses() {
        assert_eq!(fishery3_fixed_action_score(0.0, 0.0, 3, 1), 0.0);
        let mut env = Fishery3::new();
        let mut obs = [0.0f32; 3];
        env.reset(Some(3), &mut obs);
        let out = env.step(&[1.0, 1.0], &mut obs);
        assert!(out.terminated);
        assert!(
            out.reward < -90.0,
            "harvest ~1 plus penalty -100: {}",
            out.reward
        );
        assert_eq!(env.step_score(), Some(0.0));
    }

    #[test]
    fn small_grid_is_sane() {
        let (a_x, a_y, score) = constant_mortality_grid(6, 0.5, 5, 0);
        assert!((0.0..=0.5).contains(&a_x) && (0.0..=0.5).contains(&a_y));
        assert!(score > 30.0 && score < 80.0, "score {score}");
    }
}
