//! Environments (plants) with gymnasium's semantics.
//!
//! `reset(seed) -> obs`, `step(action) -> (obs, reward, terminated, truncated)`: `terminated` is
//! a true terminal state (no bootstrap), `truncated` the time limit (bootstrap). Each env owns a
//! [`Pcg64`] seeded by `reset(Some(seed))`, so an episode is a pure function of its seed and the
//! actions. The deterministic physics of the control tasks lives in `keel_runtime::plants`, which
//! the firmware runs too; the ecology tasks are host-only.
//!
//! Model-based training also asks an env for its reward r(s, a, s') and terminal predicate in
//! closed form ([`Env::reward_fn`], [`Env::terminal_fn`]); an env answers `None` when the
//! observation does not determine them (noisy observations, a time-dependent penalty).

use std::fmt;

use keel_runtime::plants::pendulum::Trig;
use rand::SeedableRng;
use rand_pcg::Pcg64;

mod allee;
mod cartpole;
mod fishery1;
mod fishery3;
mod mountaincar;
mod noisy_fishery;
mod pendulum;
mod trace;

pub use allee::Allee;
pub use cartpole::CartPoleSwingUp;
pub use fishery1::Fishery1;
pub use fishery3::{
    constant_mortality_fishery3, constant_mortality_grid, fishery3_fixed_action_score, Fishery3,
};
pub use mountaincar::MountainCar;
pub use noisy_fishery::NoisyFishery;
pub use pendulum::Pendulum;
pub use trace::{replay_trace, TraceError};

/// Every id [`make_env`] accepts.
pub const ENV_IDS: &[&str] = &[
    "pendulum",
    "mountaincar",
    "cartpole-swingup",
    "fishery3",
    "fishery1",
    "allee",
    "fishery-noisy-obs",
];

/// The result of one [`Env::step`] besides the observation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepOutcome {
    pub reward: f64,
    /// A true terminal state: its value is 0, do not bootstrap.
    pub terminated: bool,
    /// The time limit was reached: bootstrap from the next observation.
    pub truncated: bool,
}

/// A plant the trainer can learn to control.
///
/// Actions and observations are f32 slices of length [`Env::act_dim`] and [`Env::obs_dim`];
/// passing other lengths is a caller bug and panics.
pub trait Env: Send {
    /// The id [`make_env`] knows it by.
    fn id(&self) -> &str;
    fn obs_dim(&self) -> usize;
    fn act_dim(&self) -> usize;
    /// Lower action bounds, one per action dimension (the env clips to them).
    fn action_low(&self) -> &[f32];
    /// Upper action bounds.
    fn action_high(&self) -> &[f32];
    /// The time limit: `step` sets `truncated` on the step that reaches it.
    fn max_episode_steps(&self) -> usize;
    /// Some(seed) reseeds the env's own RNG (gymnasium reset(seed=..)), None continues its stream.
    /// `keel train --resume` rebuilds the episode in progress by a reset with its seed and the
    /// same actions, so an env whose steps depend only on those resumes exactly.
    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]);
    /// Applies the action (the env clips it itself like gymnasium), writes the next observation.
    /// Sets `truncated` when the time limit (max_episode_steps) is reached.
    fn step(&mut self, action: &[f32], obs: &mut [f32]) -> StepOutcome;
    /// Reward r(s, a, s') in closed form from observations, when known (model-based training
    /// uses it). Equal to the reward `step` returns up to f32 rounding.
    fn reward_fn(&self, _obs: &[f32], _action: &[f32], _next_obs: &[f32]) -> Option<f32> {
        None
    }
    /// The reward of 0-based step `t` of an episode in closed form, for plants whose reward
    /// also depends on the step count (the fisheries' collapse penalty -100/(t+1)). Scoring a
    /// policy in the dynamics model ([`crate::mbpo::model_return`]) knows `t`; the model's own
    /// rollouts start mid-episode and do not, so they use [`Env::reward_fn`]. Defaults to it.
    fn step_reward(&self, obs: &[f32], action: &[f32], next_obs: &[f32], _t: usize) -> Option<f32> {
        self.reward_fn(obs, action, next_obs)
    }
    /// Terminal predicate from observations, when known.
    fn terminal_fn(&self, _obs: &[f32], _action: &[f32], _next_obs: &[f32]) -> Option<bool> {
        None
    }
    /// The task's own score for the most recent step, for envs whose published score differs from
    /// the return (the fishery papers' harvest score, the noisy fishery's discounted NPV).
    /// Evaluation sums it over an episode's steps. `None` means "the score is the return"; an env
    /// that has a score returns `Some` at all times (`Some(0.0)` before its first step).
    fn step_score(&self) -> Option<f64> {
        None
    }
    /// The internal state for trace replay (gymnasium's `env.unwrapped.state`, as f64), for envs
    /// whose steps are deterministic given state and action. `None`: not traceable.
    fn state(&self) -> Option<Vec<f64>> {
        None
    }
    /// Sets the internal state as a reset would (step counter 0) and writes its observation. Errs
    /// with a message for envs that are not traceable or for a state of the wrong length.
    fn set_state(&mut self, _state: &[f64], _obs: &mut [f32]) -> Result<(), String> {
        Err(format!(
            "env {} has no traceable internal state (its steps are stochastic)",
            self.id()
        ))
    }
    fn box_clone(&self) -> Box<dyn Env>;
}

impl Clone for Box<dyn Env> {
    fn clone(&self) -> Self {
        self.box_clone()
    }
}

/// An id [`make_env`] does not know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownEnv(pub String);

impl fmt::Display for UnknownEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown environment {:?}; valid ids: {}",
            self.0,
            ENV_IDS.join(", ")
        )
    }
}

impl std::error::Error for UnknownEnv {}

/// Builds an environment by id (see [`ENV_IDS`]). Its RNG starts from seed 0 until the first
/// `reset(Some(seed))`, so even an unseeded run is reproducible.
pub fn make_env(id: &str) -> Result<Box<dyn Env>, UnknownEnv> {
    Ok(match id {
        "pendulum" => Box::new(Pendulum::new()),
        "mountaincar" => Box::new(MountainCar::new()),
        "cartpole-swingup" => Box::new(CartPoleSwingUp::new()),
        "fishery3" => Box::new(Fishery3::new()),
        "fishery1" => Box::new(Fishery1::new()),
        "allee" => Box::new(Allee::new()),
        "fishery-noisy-obs" => Box::new(NoisyFishery::new()),
        _ => return Err(UnknownEnv(id.to_string())),
    })
}

/// `sin`/`cos` from `std` (the platform's C library on Linux), which reproduce gymnasium's
/// `math.sin`/`math.cos` bit for bit; `libm`'s miss by an ulp on a few inputs.
#[derive(Clone, Copy, Debug, Default)]
pub struct StdTrig;

impl Trig for StdTrig {
    fn sin(x: f64) -> f64 {
        x.sin()
    }
    fn cos(x: f64) -> f64 {
        x.cos()
    }
}

/// A new env RNG (seed 0; `reset(Some(seed))` replaces it).
fn new_rng() -> Pcg64 {
    Pcg64::seed_from_u64(0)
}

/// Reseeds `rng` when gymnasium's `reset(seed=..)` would.
fn reseed(rng: &mut Pcg64, seed: Option<u64>) {
    if let Some(s) = seed {
        *rng = Pcg64::seed_from_u64(s);
    }
}

/// The first action component, or 0 for an empty slice (a caller bug, but not worth a panic).
fn first(action: &[f32]) -> f32 {
    action.first().copied().unwrap_or(0.0)
}

/// Copies `src` into the front of `obs`; panics on a length mismatch (a caller bug).
fn write_obs(obs: &mut [f32], src: &[f32]) {
    assert_eq!(
        obs.len(),
        src.len(),
        "observation buffer has the wrong length"
    );
    obs.copy_from_slice(src);
}

/// Parses a fixed-length state for `set_state`.
fn state_array<const N: usize>(id: &str, state: &[f64]) -> Result<[f64; N], String> {
    <[f64; N]>::try_from(state)
        .map_err(|_| format!("env {id} has {N} state values, got {}", state.len()))
}

/// Gymnasium's TimeLimit: counts steps and says when the limit is reached.
#[derive(Clone, Copy, Debug, Default)]
struct StepCounter {
    steps: usize,
}

impl StepCounter {
    /// Counts one step; true once the count reaches `limit`.
    fn tick(&mut self, limit: usize) -> bool {
        self.steps += 1;
        self.steps >= limit
    }
}
