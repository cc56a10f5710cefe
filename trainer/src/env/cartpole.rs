//! Continuous cart-pole swing-up (Keel's own task): `keel_runtime::plants::cartpole`, whose
//! module documentation records every choice (physics, reward, penalty, start, limits).
use keel_runtime::plants::cartpole::{self as plant, CartPoleState};
use rand::Rng;
use rand_pcg::Pcg64;

use super::{
    first, new_rng, reseed, state_array, write_obs, Env, StdTrig, StepCounter, StepOutcome,
};

const LOW: [f32; 1] = [-plant::MAX_FORCE];
const HIGH: [f32; 1] = [plant::MAX_FORCE];
/// Half-width of the uniform reset noise on every state variable (gymnasium CartPole's).
const RESET_NOISE: f64 = 0.05;

/// Swing the pole up from hanging and balance it, cart within +-2.4 m: obs
/// `[x, x_dot, cos theta, sin theta, theta_dot]`, force in [-10, 10] N, reward in [0, 1]
/// (-10 on leaving the track, which terminates), 500 steps.
#[derive(Clone, Debug)]
pub struct CartPoleSwingUp {
    state: CartPoleState,
    rng: Pcg64,
    counter: StepCounter,
}

impl Default for CartPoleSwingUp {
    fn default() -> Self {
        Self::new()
    }
}

impl CartPoleSwingUp {
    pub fn new() -> Self {
        let state = CartPoleState {
            x: 0.0,
            x_dot: 0.0,
            theta: std::f64::consts::PI,
            theta_dot: 0.0,
        };
        Self {
            state,
            rng: new_rng(),
            counter: StepCounter::default(),
        }
    }
}

impl Env for CartPoleSwingUp {
    fn id(&self) -> &str {
        "cartpole-swingup"
    }
    fn obs_dim(&self) -> usize {
        5
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

    /// Hanging down: theta = pi + U(-0.05, 0.05); x, x_dot, theta_dot ~ U(-0.05, 0.05).
    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) {
        reseed(&mut self.rng, seed);
        let mut noise = || self.rng.random_range(-RESET_NOISE..RESET_NOISE);
        self.state = CartPoleState {
            x: noise(),
            x_dot: noise(),
            theta: std::f64::consts::PI + noise(),
            theta_dot: noise(),
        };
        self.counter = StepCounter::default();
        write_obs(obs, &self.state.observation::<StdTrig>());
    }

    fn step(&mut self, action: &[f32], obs: &mut [f32]) -> StepOutcome {
        let out = self.state.step::<StdTrig>(first(action));
        write_obs(obs, &self.state.observation::<StdTrig>());
        StepOutcome {
            reward: out.reward,
            terminated: out.terminated,
            truncated: self.counter.tick(plant::MAX_EPISODE_STEPS),
        }
    }

    fn reward_fn(&self, _obs: &[f32], action: &[f32], next_obs: &[f32]) -> Option<f32> {
        let o: [f32; 5] = next_obs.try_into().ok()?;
        Some(plant::reward_from_obs(&o, first(action)))
    }

    fn terminal_fn(&self, _obs: &[f32], _action: &[f32], next_obs: &[f32]) -> Option<bool> {
        next_obs.first().map(|&x| plant::out_of_track(f64::from(x)))
    }

    /// `[x, x_dot, theta, theta_dot]`.
    fn state(&self) -> Option<Vec<f64>> {
        let s = &self.state;
        Some(vec![s.x, s.x_dot, s.theta, s.theta_dot])
    }

    fn set_state(&mut self, state: &[f64], obs: &mut [f32]) -> Result<(), String> {
        let [x, x_dot, theta, theta_dot] = state_array::<4>(self.id(), state)?;
        self.state = CartPoleState {
            x,
            x_dot,
            theta,
            theta_dot,
        };
        self.counter = StepCounter::default();
        write_obs(obs, &self.state.observation::<StdTrig>());
        Ok(())
    }

    fn box_clone(&self) -> Box<dyn Env> {
        Box::new(self.clone())
    }
}
