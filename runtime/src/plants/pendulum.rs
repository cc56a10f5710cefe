//! Gymnasium's Pendulum-v1, exact to the float.
//!
//! The internal state is f64; the action is f32 and, as numpy 2 does, the `u^2` terms and `3 u`
//! stay in f32 before being promoted. `sin`/`cos` are a type parameter ([`Trig`]): gymnasium's
//! traces were computed with the C library's `sin`, which the `libm` crate misses by one ulp on a
//! few inputs, so the trainer plugs in `std`'s functions (bit-exact against the traces) and the
//! firmware uses [`LibmTrig`] (within 1e-12 of it).

/// Largest angular velocity (rad/s).
pub const MAX_SPEED: f64 = 8.0;
/// Largest torque (N m).
pub const MAX_TORQUE: f32 = 2.0;
/// Integration step (s).
pub const DT: f64 = 0.05;
/// Gravity (m/s^2).
pub const G: f64 = 10.0;
/// Mass (kg).
pub const M: f64 = 1.0;
/// Length (m).
pub const L: f64 = 1.0;
/// Gymnasium's time limit for an episode.
pub const MAX_EPISODE_STEPS: usize = 200;

/// The trigonometric functions the plant uses.
pub trait Trig {
    fn sin(x: f64) -> f64;
    fn cos(x: f64) -> f64;
}

/// `sin`/`cos` from the `libm` crate (no_std).
#[derive(Clone, Copy, Debug, Default)]
pub struct LibmTrig;

impl Trig for LibmTrig {
    fn sin(x: f64) -> f64 {
        libm::sin(x)
    }
    fn cos(x: f64) -> f64 {
        libm::cos(x)
    }
}

/// Angle `th` (rad, 0 = upright) and angular velocity `thdot` (rad/s).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PendulumState {
    pub th: f64,
    pub thdot: f64,
}

/// ((x + pi) mod 2pi) - pi with a floored modulo, as numpy's `%`.
pub fn angle_normalize(x: f64) -> f64 {
    let two_pi = 2.0 * core::f64::consts::PI;
    let y = x + core::f64::consts::PI;
    // Python's float % : result has the sign of the divisor.
    let mut r = libm::fmod(y, two_pi);
    if r != 0.0 && r < 0.0 {
        r += two_pi;
    }
    r - core::f64::consts::PI
}

impl PendulumState {
    /// The f32 observation `[cos th, sin th, thdot]`.
    pub fn observation<T: Trig>(&self) -> [f32; 3] {
        [
            T::cos(self.th) as f32,
            T::sin(self.th) as f32,
            self.thdot as f32,
        ]
    }

    /// One step under torque `action` (clipped to +-2). Returns the reward (negative cost).
    pub fn step<T: Trig>(&mut self, action: f32) -> f64 {
        let u: f32 = action.clamp(-MAX_TORQUE, MAX_TORQUE);
        let (th, thdot) = (self.th, self.thdot);
        let u2: f32 = u * u;
        let an = angle_normalize(th);
        let cost = an * an + 0.1 * (thdot * thdot) + f64::from(0.001f32 * u2);
        // numpy: 3.0 / (m * l**2) is a Python float, times a float32 scalar stays float32.
        let torque_term = f64::from((3.0 / (M * L * L)) as f32 * u);
        let mut newthdot = thdot + (3.0 * G / (2.0 * L) * T::sin(th) + torque_term) * DT;
        newthdot = newthdot.clamp(-MAX_SPEED, MAX_SPEED);
        let newth = th + newthdot * DT;
        self.th = newth;
        self.thdot = newthdot;
        -cost
    }
}

/// The cost's reward as a function of an observation and action (model-based training needs it):
/// the angle is recovered with `atan2(sin, cos)`.
pub fn reward_from_obs(obs: &[f32; 3], action: f32) -> f32 {
    let u = action.clamp(-MAX_TORQUE, MAX_TORQUE);
    let th = libm::atan2f(obs[1], obs[0]);
    -(th * th + 0.1 * obs[2] * obs[2] + 0.001 * u * u)
}
