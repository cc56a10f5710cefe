//! Continuous cart-pole swing-up: Keel's own task on gymnasium CartPole-v1's physics.
//!
//! There is no gymnasium twin, so every choice is ours and written down here:
//!
//! - **Physics**: gymnasium CartPole's equations of motion and constants (gravity 9.8, cart mass
//!   1.0, pole mass 0.1, pole half-length 0.5, tau 0.02) with its explicit Euler integrator
//!   (positions advance with the *old* velocities), computed in f64. `theta` = 0 is upright and is
//!   not wrapped (the observation uses cos/sin, so it never needs to be).
//! - **Action**: a continuous force in newtons, clipped to [-10, 10] (CartPole's `force_mag` is
//!   the bound, so full force equals the discrete task's push).
//! - **Track**: the cart must stay in |x| <= 2.4 (CartPole's `x_threshold`). Leaving it terminates
//!   the episode with reward [`OUT_OF_TRACK_REWARD`] in place of the shaped reward; without a
//!   penalty a policy that is still hanging (reward ~0) would lose nothing by leaving.
//! - **Reward** in [0, 1], smooth, computed on the state *after* the step (DeepMind Control's
//!   cartpole swing-up "smooth" reward, adapted to CartPole's scales): the product of
//!   `upright = (1 + cos theta) / 2`, `centred = (1 + g(x, 2)) / 2`,
//!   `small_control = (4 + 1 - (u/10)^2) / 5` and `small_velocity = (1 + g(theta_dot, 5)) / 2`,
//!   where `g(z, m) = 0.1^((z/m)^2)` is a Gaussian bump worth 0.1 at distance `m`. It is 1 only
//!   upright, centred, still and unforced; hanging down it is ~0.
//! - **Observation** (f32): `[x, x_dot, cos theta, sin theta, theta_dot]`; the reward and the
//!   terminal predicate are functions of it (and the action), so model-based training can use
//!   them in closed form ([`reward_from_obs`], [`out_of_track`]).
//! - **Start** (the trainer's reset): hanging down, theta = pi + U(-0.05, 0.05) and x, x_dot,
//!   theta_dot ~ U(-0.05, 0.05), gymnasium CartPole's reset noise. Episodes last 500 steps (10 s).

use super::pendulum::Trig;

/// Gravity (m/s^2).
pub const GRAVITY: f64 = 9.8;
/// Cart mass (kg).
pub const MASS_CART: f64 = 1.0;
/// Pole mass (kg).
pub const MASS_POLE: f64 = 0.1;
/// Cart plus pole (kg).
pub const TOTAL_MASS: f64 = MASS_CART + MASS_POLE;
/// Half the pole's length (m), gymnasium's `length`.
pub const HALF_LENGTH: f64 = 0.5;
/// Pole mass times half-length.
pub const POLE_MASS_LENGTH: f64 = MASS_POLE * HALF_LENGTH;
/// Integration step (s).
pub const TAU: f64 = 0.02;
/// Largest force (N); actions are clipped to +-this.
pub const MAX_FORCE: f32 = 10.0;
/// Half the track's length (m).
pub const X_THRESHOLD: f64 = 2.4;
/// Reward of the step that leaves the track (replaces the shaped reward).
pub const OUT_OF_TRACK_REWARD: f64 = -10.0;
/// Time limit (steps).
pub const MAX_EPISODE_STEPS: usize = 500;

/// ln(0.1): `0.1^y = exp(LN_TENTH * y)`.
const LN_TENTH: f64 = -core::f64::consts::LN_10;

/// Cart position `x` (m), velocity `x_dot` (m/s), pole angle `theta` (rad, 0 = upright) and
/// angular velocity `theta_dot` (rad/s).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CartPoleState {
    pub x: f64,
    pub x_dot: f64,
    pub theta: f64,
    pub theta_dot: f64,
}

/// What one step returns besides the new state.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CartPoleStep {
    pub reward: f64,
    /// The cart left the track.
    pub terminated: bool,
}

/// `0.1^((z/margin)^2)`: 1 at 0, 0.1 at `margin`.
fn bump(z: f64, margin: f64) -> f64 {
    let r = z / margin;
    libm::exp(LN_TENTH * r * r)
}

/// The shaped reward in [0, 1] of a post-step state (given by x, cos theta, theta_dot) and the
/// applied force (clipped to +-10 here too).
pub fn shaped_reward(x: f64, cos_theta: f64, theta_dot: f64, force: f64) -> f64 {
    let max_force = f64::from(MAX_FORCE);
    let u = force.clamp(-max_force, max_force) / max_force;
    let upright = (1.0 + cos_theta) / 2.0;
    let centred = (1.0 + bump(x, 2.0)) / 2.0;
    let small_control = (5.0 - u * u) / 5.0;
    let small_velocity = (1.0 + bump(theta_dot, 5.0)) / 2.0;
    upright * centred * small_control * small_velocity
}

/// Whether a cart position is off the track (the terminal predicate).
pub fn out_of_track(x: f64) -> bool {
    !(-X_THRESHOLD..=X_THRESHOLD).contains(&x)
}

/// The step's reward from the next observation and the action, in closed form.
pub fn reward_from_obs(next_obs: &[f32; 5], action: f32) -> f32 {
    let x = f64::from(next_obs[0]);
    if out_of_track(x) {
        return OUT_OF_TRACK_REWARD as f32;
    }
    shaped_reward(
        x,
        f64::from(next_obs[2]),
        f64::from(next_obs[4]),
        f64::from(action),
    ) as f32
}

impl CartPoleState {
    /// The f32 observation `[x, x_dot, cos theta, sin theta, theta_dot]`.
    pub fn observation<T: Trig>(&self) -> [f32; 5] {
        [
            self.x as f32,
            self.x_dot as f32,
            T::cos(self.theta) as f32,
            T::sin(self.theta) as f32,
            self.theta_dot as f32,
        ]
    }

    /// One Euler step of gymnasium CartPole's dynamics under `action` newtons (clipped to +-10).
    pub fn step<T: Trig>(&mut self, action: f32) -> CartPoleStep {
        let force = f64::from(action.clamp(-MAX_FORCE, MAX_FORCE));
        let (sin_t, cos_t) = (T::sin(self.theta), T::cos(self.theta));
        let temp =
            (force + POLE_MASS_LENGTH * self.theta_dot * self.theta_dot * sin_t) / TOTAL_MASS;
        let theta_acc = (GRAVITY * sin_t - cos_t * temp)
            / (HALF_LENGTH * (4.0 / 3.0 - MASS_POLE * cos_t * cos_t / TOTAL_MASS));
        let x_acc = temp - POLE_MASS_LENGTH * theta_acc * cos_t / TOTAL_MASS;
        self.x += TAU * self.x_dot;
        self.x_dot += TAU * x_acc;
        self.theta += TAU * self.theta_dot;
        self.theta_dot += TAU * theta_acc;
        let terminated = out_of_track(self.x);
        let reward = if terminated {
            OUT_OF_TRACK_REWARD
        } else {
            shaped_reward(self.x, T::cos(self.theta), self.theta_dot, force)
        };
        CartPoleStep { reward, terminated }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plants::pendulum::LibmTrig;

    #[test]
    fn reward_is_one_only_upright_centred_still() {
        assert!((shaped_reward(0.0, 1.0, 0.0, 0.0) - 1.0).abs() < 1e-15);
        assert!(shaped_reward(0.0, -1.0, 0.0, 0.0).abs() < 1e-15);
        let r = shaped_reward(1.0, 0.5, 2.0, 7.0);
        assert!(r > 0.0 && r < 1.0);
    }

    #[test]
    fn hanging_pole_stays_down_without_force() {
        let mut s = CartPoleState {
            x: 0.0,
            x_dot: 0.0,
            theta: core::f64::consts::PI,
            theta_dot: 0.0,
        };
        for _ in 0..100 {
            let out = s.step::<LibmTrig>(0.0);
            assert!(!out.terminated);
            assert!(out.reward < 1e-6);
        }
        assert!((s.theta - core::f64::consts::PI).abs() < 1e-9);
    }

    #[test]
    fn pushing_right_leaves_the_track() {
        let mut s = CartPoleState {
            x: 2.39,
            x_dot: 1.0,
            theta: 0.0,
            theta_dot: 0.0,
        };
        let out = s.step::<LibmTrig>(10.0);
        assert!(out.terminated);
        assert_eq!(out.reward, OUT_OF_TRACK_REWARD);
    }
}
