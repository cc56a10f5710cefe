//! Gymnasium's MountainCarContinuous-v0, matching numpy 2's float widths step by step.
//!
//! Gymnasium's reset stores the state as a float64 array (position ~ U(-0.6, -0.4), velocity 0)
//! while every step stores it back as float32. Under numpy 2 (NEP 50) a float32 scalar combined
//! with a Python float stays float32, so the first step after a reset runs (mostly) in f64 and all
//! later steps in f32. [`MountainCarState::float64`] records which of the two regimes the next
//! step is in; matching it is what makes the replay of gymnasium's traces exact.
//!
//! The force term has a second trap: `min(max(action, -1.0), 1.0)` returns the float32 action
//! when it is in bounds but the *Python float* bound when it clips, so `force * power` is an f32
//! product in one case and an f64 product in the other.
//!
//! `cos` comes from a [`Trig`] provider: gymnasium calls the C library's `cos` (`math.cos`), which
//! `std` reproduces on the host; the firmware can use [`super::pendulum::LibmTrig`].

pub use super::pendulum::Trig;

/// Left end of the track.
pub const MIN_POSITION: f64 = -1.2;
/// Right end of the track.
pub const MAX_POSITION: f64 = 0.6;
/// Largest speed (either direction).
pub const MAX_SPEED: f64 = 0.07;
/// Position at (or beyond) which the episode ends with the goal bonus.
pub const GOAL_POSITION: f64 = 0.45;
/// Smallest velocity accepted at the goal.
pub const GOAL_VELOCITY: f64 = 0.0;
/// Acceleration per unit of force.
pub const POWER: f64 = 0.0015;
/// Action bounds (the force is clipped to them; the action cost is not).
pub const MIN_ACTION: f32 = -1.0;
/// See [`MIN_ACTION`].
pub const MAX_ACTION: f32 = 1.0;
/// Reward for reaching the goal.
pub const GOAL_REWARD: f64 = 100.0;
/// Gymnasium's time limit for an episode.
pub const MAX_EPISODE_STEPS: usize = 999;

/// Position and velocity of the car.
///
/// The values are held as f64; when `float64` is false they are exactly representable in f32 (the
/// state gymnasium holds after any step), and the next step runs in f32 arithmetic.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MountainCarState {
    pub position: f64,
    pub velocity: f64,
    /// True right after a reset (gymnasium's float64 state), false after any step.
    pub float64: bool,
}

/// What one step returns besides the new state.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MountainCarStep {
    /// 100 on reaching the goal, minus 0.1 action^2 (the unclipped action, as gymnasium).
    pub reward: f64,
    /// The goal was reached.
    pub terminated: bool,
}

/// The force after clipping: the action itself (f32) or the bound it crossed (a Python float).
enum Force {
    F32(f32),
    F64(f64),
}

fn clip_force(action: f32) -> Force {
    // Python's max(a, b) keeps `a` unless `b > a`; min(a, b) keeps `a` unless `b < a`.
    if MIN_ACTION > action {
        Force::F64(f64::from(MIN_ACTION))
    } else if MAX_ACTION < action {
        Force::F64(f64::from(MAX_ACTION))
    } else {
        Force::F32(action)
    }
}

/// 100 if (position, velocity) is a goal state, 0 otherwise, minus 0.1 action^2.
fn reward(terminated: bool, action: f32) -> f64 {
    let a = f64::from(action);
    let base = if terminated { GOAL_REWARD } else { 0.0 };
    // math.pow(action[0], 2) * 0.1: the f32 action squared exactly in f64.
    base - a * a * 0.1
}

impl MountainCarState {
    /// The state gymnasium's reset produces: float64 position, velocity 0.
    pub fn from_reset(position: f64) -> Self {
        Self {
            position,
            velocity: 0.0,
            float64: true,
        }
    }

    /// A state as stored after a step (rounded to f32).
    pub fn from_f32(position: f32, velocity: f32) -> Self {
        Self {
            position: f64::from(position),
            velocity: f64::from(velocity),
            float64: false,
        }
    }

    /// The f32 observation `[position, velocity]`.
    pub fn observation(&self) -> [f32; 2] {
        [self.position as f32, self.velocity as f32]
    }

    /// One step under `action` (force clipped to [-1, 1]).
    pub fn step<T: Trig>(&mut self, action: f32) -> MountainCarStep {
        let terminated = if self.float64 {
            self.step_f64::<T>(action)
        } else {
            self.step_f32::<T>(action)
        };
        self.float64 = false;
        MountainCarStep {
            reward: reward(terminated, action),
            terminated,
        }
    }

    /// The first step after a reset: float64 state, with an f32 force term when the action is in
    /// bounds (np.float32 * float and np.float32 - float stay float32).
    fn step_f64<T: Trig>(&mut self, action: f32) -> bool {
        let (mut position, mut velocity) = (self.position, self.velocity);
        let gravity = 0.0025 * T::cos(3.0 * position);
        velocity += match clip_force(action) {
            Force::F32(f) => f64::from(f * (POWER as f32) - gravity as f32),
            Force::F64(f) => f * POWER - gravity,
        };
        velocity = velocity.clamp(-MAX_SPEED, MAX_SPEED);
        position += velocity;
        position = position.clamp(MIN_POSITION, MAX_POSITION);
        if position == MIN_POSITION && velocity < 0.0 {
            velocity = 0.0;
        }
        let terminated = position >= GOAL_POSITION && velocity >= GOAL_VELOCITY;
        // np.array([position, velocity], dtype=np.float32)
        self.position = f64::from(position as f32);
        self.velocity = f64::from(velocity as f32);
        terminated
    }

    /// Every later step: float32 state; each Python-float constant is rounded to f32 before it
    /// meets the state (NEP 50), comparisons included.
    fn step_f32<T: Trig>(&mut self, action: f32) -> bool {
        let (mut position, mut velocity) = (self.position as f32, self.velocity as f32);
        // 3 * position is float32; math.cos promotes it to a Python float.
        let gravity = 0.0025 * T::cos(f64::from(3.0f32 * position));
        let accel: f32 = match clip_force(action) {
            Force::F32(f) => f * (POWER as f32) - gravity as f32,
            // A Python float; `velocity +=` rounds it to f32 first.
            Force::F64(f) => (f * POWER - gravity) as f32,
        };
        velocity += accel;
        let max_speed = MAX_SPEED as f32;
        velocity = velocity.clamp(-max_speed, max_speed);
        position += velocity;
        let min_position = MIN_POSITION as f32;
        position = position.clamp(min_position, MAX_POSITION as f32);
        if position == min_position && velocity < 0.0 {
            velocity = 0.0;
        }
        let terminated = position >= GOAL_POSITION as f32 && velocity >= GOAL_VELOCITY as f32;
        self.position = f64::from(position);
        self.velocity = f64::from(velocity);
        terminated
    }
}

/// Whether an observation is a goal state (gymnasium's `terminated`), as a closed-form predicate
/// for model-based training. Exact for every step but the first after a reset, where gymnasium
/// compares the f64 state (the two differ only within an f32 rounding of the goal).
pub fn is_goal(obs: &[f32; 2]) -> bool {
    obs[0] >= GOAL_POSITION as f32 && obs[1] >= GOAL_VELOCITY as f32
}

/// The reward as a function of the action and the next observation.
pub fn reward_from_obs(next_obs: &[f32; 2], action: f32) -> f32 {
    reward(is_goal(next_obs), action) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plants::pendulum::LibmTrig;

    #[test]
    fn left_wall_stops_the_car() {
        let mut s = MountainCarState::from_f32(-1.19, -0.05);
        let out = s.step::<LibmTrig>(-1.0);
        assert_eq!(s.position, f64::from(MIN_POSITION as f32));
        assert_eq!(s.velocity, 0.0);
        assert!(!out.terminated);
    }

    #[test]
    fn goal_pays_100_minus_action_cost() {
        let mut s = MountainCarState::from_f32(0.44, 0.05);
        let out = s.step::<LibmTrig>(0.5);
        assert!(out.terminated);
        assert!((out.reward - (100.0 - 0.025)).abs() < 1e-12);
        assert!(is_goal(&s.observation()));
    }

    #[test]
    fn state_is_f32_after_a_step() {
        let mut s = MountainCarState::from_reset(-0.5123456789);
        let _ = s.step::<LibmTrig>(0.3);
        assert!(!s.float64);
        assert_eq!(f64::from(s.position as f32), s.position);
        assert_eq!(f64::from(s.velocity as f32), s.velocity);
    }
}
