//! MountainCarContinuous-v0: `keel_runtime::plants::mountaincar` (which reproduces numpy 2's
//! f64-then-f32 arithmetic) with `std`'s `cos`.
use keel_runtime::plants::mountaincar::{self as plant, MountainCarState};
use rand::Rng;
use rand_pcg::Pcg64;

use super::{
    first, new_rng, reseed, state_array, write_obs, Env, StdTrig, StepCounter, StepOutcome,
};

const LOW: [f32; 1] = [plant::MIN_ACTION];
const HIGH: [f32; 1] = [plant::MAX_ACTION];

/// Drive an under-powered car up a hill: obs `[position, velocity]`, force in [-1, 1], reward 100
/// at the goal minus 0.1 action^2 per step, terminates at the goal, 999 steps.
#[derive(Clone, Debug)]
pub struct MountainCar {
    state: MountainCarState,
    rng: Pcg64,
    counter: StepCounter,
}

impl Default for MountainCar {
    fn default() -> Self {
        Self::new()
    }
}

impl MountainCar {
    pub fn new() -> Self {
        Self {
            state: MountainCarState::from_reset(-0.5),
            rng: new_rng(),
            counter: StepCounter::default(),
        }
    }
}

fn obs2(obs: &[f32]) -> Option<[f32; 2]> {
    obs.try_into().ok()
}

impl Env for MountainCar {
    fn id(&self) -> &str {
        "mountaincar"
    }
    fn obs_dim(&self) -> usize {
        2
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
        plant::MAX_EPISODE_STEPS
    }

    /// Position ~ U(-0.6, -0.4) (float64, as gymnasium), velocity 0.
    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) {
        reseed(&mut self.rng, seed);
        self.state = MountainCarState::from_reset(self.rng.random_range(-0.6..-0.4));
        self.counter = StepCounter::default();
        write_obs(obs, &self.state.observation());
    }

    fn step(&mut self, action: &[f32], obs: &mut [f32]) -> StepOutcome {
        let out = self.state.step::<StdTrig>(first(action));
        write_obs(obs, &self.state.observation());
        StepOutcome {
            reward: out.reward,
            terminated: out.terminated,
            truncated: self.counter.tick(plant::MAX_EPISODE_STEPS),
        }
    }

    fn reward_fn(&self, _obs: &[f32], action: &[f32], next_obs: &[f32]) -> Option<f32> {
        Some(plant::reward_from_obs(&obs2(next_obs)?, first(action)))
    }

    fn terminal_fn(&self, _obs: &[f32], _action: &[f32], next_obs: &[f32]) -> Option<bool> {
        Some(plant::is_goal(&obs2(next_obs)?))
    }

    fn state(&self) -> Option<Vec<f64>> {
        Some(vec![self.state.position, self.state.velocity])
    }

    /// A state whose two values are both exactly f32 is taken as a mid-episode (float32) state;
    /// any other as a fresh reset's float64 state, whose first step runs in f64. A reset position
    /// drawn in f64 is an exact f32 with probability ~2^-29, so this recovers gymnasium's regime.
    fn set_state(&mut self, state: &[f64], obs: &mut [f32]) -> Result<(), String> {
        let [position, velocity] = state_array::<2>(self.id(), state)?;
        let is_f32 = |v: f64| f64::from(v as f32) == v;
        self.state = MountainCarState {
            position,
            velocity,
            float64: !(is_f32(position) && is_f32(velocity)),
        };
        self.counter = StepCounter::default();
        write_obs(obs, &self.state.observation());
        Ok(())
    }

    fn box_clone(&self) -> Box<dyn Env> {
        Box::new(self.clone())
    }
}
