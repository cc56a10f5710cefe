//! Pendulum-v1 (gymnasium 1.4): `keel_runtime::plants::pendulum` with `std`'s trig, which makes
//! it bit-exact against gymnasium's traces.
use keel_runtime::plants::pendulum::{self as plant, PendulumState};
use rand::Rng;
use rand_pcg::Pcg64;

use super::{
    first, new_rng, reseed, state_array, write_obs, Env, StdTrig, StepCounter, StepOutcome,
};

const LOW: [f32; 1] = [-plant::MAX_TORQUE];
const HIGH: [f32; 1] = [plant::MAX_TORQUE];

/// Swing a pendulum up and hold it: obs `[cos th, sin th, thdot]`, torque in [-2, 2], reward
/// `-(th^2 + 0.1 thdot^2 + 0.001 u^2)`, 200 steps, never terminates.
#[derive(Clone, Debug)]
pub struct Pendulum {
    state: PendulumState,
    rng: Pcg64,
    counter: StepCounter,
}

impl Default for Pendulum {
    fn default() -> Self {
        Self::new()
    }
}

impl Pendulum {
    pub fn new() -> Self {
        Self {
            state: PendulumState {
                th: 0.0,
                thdot: 0.0,
            },
            rng: new_rng(),
            counter: StepCounter::default(),
        }
    }
}

impl Env for Pendulum {
    fn id(&self) -> &str {
        "pendulum"
    }
    fn obs_dim(&self) -> usize {
        3
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

    /// (th, thdot) ~ U([-pi, -1], [pi, 1]), as gymnasium (not numpy's exact stream).
    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) {
        reseed(&mut self.rng, seed);
        let pi = std::f64::consts::PI;
        self.state = PendulumState {
            th: self.rng.random_range(-pi..pi),
            thdot: self.rng.random_range(-1.0..1.0),
        };
        self.counter = StepCounter::default();
        write_obs(obs, &self.state.observation::<StdTrig>());
    }

    fn step(&mut self, action: &[f32], obs: &mut [f32]) -> StepOutcome {
        let reward = self.state.step::<StdTrig>(first(action));
        write_obs(obs, &self.state.observation::<StdTrig>());
        StepOutcome {
            reward,
            terminated: false,
            truncated: self.counter.tick(plant::MAX_EPISODE_STEPS),
        }
    }

    /// The cost is a function of the *current* angle, recovered as atan2(sin, cos) from `obs`.
    fn reward_fn(&self, obs: &[f32], action: &[f32], _next_obs: &[f32]) -> Option<f32> {
        let o: [f32; 3] = obs.try_into().ok()?;
        Some(plant::reward_from_obs(&o, first(action)))
    }

    fn terminal_fn(&self, _obs: &[f32], _action: &[f32], _next_obs: &[f32]) -> Option<bool> {
        Some(false)
    }

    fn state(&self) -> Option<Vec<f64>> {
        Some(vec![self.state.th, self.state.thdot])
    }

    fn set_state(&mut self, state: &[f64], obs: &mut [f32]) -> Result<(), String> {
        let [th, thdot] = state_array::<2>(self.id(), state)?;
        self.state = PendulumState { th, thdot };
        self.counter = StepCounter::default();
        write_obs(obs, &self.state.observation::<StdTrig>());
        Ok(())
    }

    fn box_clone(&self) -> Box<dyn Env> {
        Box::new(self.clone())
    }
}
