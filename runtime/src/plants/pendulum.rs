//! Gymnasium's Pendulum-v1, exact to the float.
//!
//! The internal state is f64; the action is f32 and, as numpy 2 does, the `u^2` terms and `3 u`
//! stay in f32 before being promoted. `sin`/`cos` are a type parameter ([`Trig`]): gymnasium's
//! traces were computed with the C library's `sin`, which the `libm` crate misses by one ulp on a
//! few inputs, so the trainer plugs in `std`'s functions (bit-exact against the traces) and the
//! firmware uses [`LibmTrig`] (within 1e-12 of it). The float type is a parameter too ([`Real`]):
//! `f64` as gymnasium, or `f32` for a microcontroller's demo loop.

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

/// The float type the plant runs in: `f64` reproduces gymnasium to the float (training, the
/// reference traces); `f32` runs on a microcontroller's single-precision FPU without pulling in
/// soft-float f64 code. One implementation serves both.
pub trait Real:
    Copy
    + PartialOrd
    + core::ops::Add<Output = Self>
    + core::ops::Sub<Output = Self>
    + core::ops::Mul<Output = Self>
    + core::ops::Neg<Output = Self>
    + core::fmt::Debug
{
    /// pi in this type.
    const PI: Self;
    /// A constant written in f64, rounded to this type.
    fn lit(x: f64) -> Self;
    /// An f32 value, widened if need be.
    fn from_f32(x: f32) -> Self;
    /// Rounded to f32 (the observation's type).
    fn to_f32(self) -> f32;
    /// The C library's `fmod` (remainder with the sign of `self`).
    fn fmod(self, y: Self) -> Self;
}

impl Real for f64 {
    const PI: Self = core::f64::consts::PI;
    fn lit(x: f64) -> Self {
        x
    }
    fn from_f32(x: f32) -> Self {
        f64::from(x)
    }
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn fmod(self, y: Self) -> Self {
        libm::fmod(self, y)
    }
}

impl Real for f32 {
    const PI: Self = core::f32::consts::PI;
    fn lit(x: f64) -> Self {
        x as f32
    }
    fn from_f32(x: f32) -> Self {
        x
    }
    fn to_f32(self) -> f32 {
        self
    }
    fn fmod(self, y: Self) -> Self {
        libm::fmodf(self, y)
    }
}

/// The trigonometric functions the plant uses, in its float type `F`.
pub trait Trig<F = f64> {
    fn sin(x: F) -> F;
    fn cos(x: F) -> F;
}

/// `sin`/`cos` from the `libm` crate (no_std).
#[derive(Clone, Copy, Debug, Default)]
pub struct LibmTrig;

impl Trig<f64> for LibmTrig {
    fn sin(x: f64) -> f64 {
        libm::sin(x)
    }
    fn cos(x: f64) -> f64 {
        libm::cos(x)
    }
}

impl Trig<f32> for LibmTrig {
    fn sin(x: f32) -> f32 {
        libm::sinf(x)
    }
    fn cos(x: f32) -> f32 {
        libm::cosf(x)
    }
}

/// `sin`/`cos` computed in f32 arithmetic only, for a plant simulated on a microcontroller.
///
/// libm's `sinf`/`cosf` evaluate in f64, which an M4F does in software: with them the demo plant
/// cost about 5 KB of flash (argument reduction tables and soft-float helpers). This is a
/// three-part Cody-Waite reduction by pi/2 and the classic degree-7/8 minimax polynomials on
/// [-pi/4, pi/4] (the coefficients of Cephes' `sinf`/`cosf`); within a few ulp of libm for
/// |x| < 1e4, far beyond a pendulum's angles over an episode (tested against libm below).
#[derive(Clone, Copy, Debug, Default)]
pub struct F32Trig;

impl F32Trig {
    /// `(sin x, cos x)`.
    fn sin_cos(x: f32) -> (f32, f32) {
        // pi/2 split so that q * P1 and q * P2 are exact for |q| < 2^15.
        const P1: f32 = 1.570_312_5;
        const P2: f32 = 4.837_513e-4;
        const P3: f32 = 7.549_79e-8;
        let t = x * core::f32::consts::FRAC_2_PI;
        // Round to nearest (the cast truncates toward zero).
        let q = (if t < 0.0 { t - 0.5 } else { t + 0.5 }) as i32;
        let qf = q as f32;
        let r = ((x - qf * P1) - qf * P2) - qf * P3;
        let z = r * r;
        let s = r + r * z * (-1.666_665_5e-1 + z * (8.332_161e-3 + z * -1.951_529_6e-4));
        let c =
            1.0 - 0.5 * z + z * z * (4.166_664_6e-2 + z * (-1.388_731_6e-3 + z * 2.443_315_7e-5));
        match q & 3 {
            0 => (s, c),
            1 => (c, -s),
            2 => (-s, -c),
            _ => (-c, s),
        }
    }
}

impl Trig<f32> for F32Trig {
    fn sin(x: f32) -> f32 {
        Self::sin_cos(x).0
    }
    fn cos(x: f32) -> f32 {
        Self::sin_cos(x).1
    }
}

/// Angle `th` (rad, 0 = upright) and angular velocity `thdot` (rad/s), in `f64` (gymnasium's
/// precision) unless a microcontroller asks for `f32`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PendulumState<F = f64> {
    pub th: F,
    pub thdot: F,
}

/// ((x + pi) mod 2pi) - pi with a floored modulo, as numpy's `%`.
pub fn angle_normalize<F: Real>(x: F) -> F {
    let two_pi = F::lit(2.0 * core::f64::consts::PI);
    let y = x + F::PI;
    // Python's float % : result has the sign of the divisor.
    let mut r = y.fmod(two_pi);
    let zero = F::lit(0.0);
    if r != zero && r < zero {
        r = r + two_pi;
    }
    r - F::PI
}

/// `x` limited to `[lo, hi]` (the bounds are ordered constants here).
fn clamp<F: Real>(x: F, lo: F, hi: F) -> F {
    if x < lo {
        lo
    } else if x > hi {
        hi
    } else {
        x
    }
}

impl<F: Real> PendulumState<F> {
    /// The f32 observation `[cos th, sin th, thdot]`.
    pub fn observation<T: Trig<F>>(&self) -> [f32; 3] {
        [
            T::cos(self.th).to_f32(),
            T::sin(self.th).to_f32(),
            self.thdot.to_f32(),
        ]
    }

    /// One step under torque `action` (clipped to +-2). Returns the reward (negative cost).
    pub fn step<T: Trig<F>>(&mut self, action: f32) -> F {
        let u: f32 = action.clamp(-MAX_TORQUE, MAX_TORQUE);
        let (th, thdot) = (self.th, self.thdot);
        let u2: f32 = u * u;
        let an = angle_normalize(th);
        let cost = an * an + F::lit(0.1) * (thdot * thdot) + F::from_f32(0.001f32 * u2);
        // numpy: 3.0 / (m * l**2) is a Python float, times a float32 scalar stays float32.
        let torque_term = F::from_f32((3.0 / (M * L * L)) as f32 * u);
        let gravity = F::lit(3.0 * G / (2.0 * L));
        let mut newthdot = thdot + (gravity * T::sin(th) + torque_term) * F::lit(DT);
        newthdot = clamp(newthdot, F::lit(-MAX_SPEED), F::lit(MAX_SPEED));
        let newth = th + newthdot * F::lit(DT);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_trig_is_within_a_few_ulp_of_libm() {
        let mut worst = 0.0f32;
        let mut x = -200.0f32;
        while x <= 200.0 {
            for (ours, reference) in [
                (F32Trig::sin(x), libm::sinf(x)),
                (F32Trig::cos(x), libm::cosf(x)),
            ] {
                worst = worst.max((ours - reference).abs());
            }
            x += 1.0e-3;
        }
        // 1 ulp of a value near 1 is 6e-8.
        assert!(worst < 3.0e-7, "worst |error| {worst:e}");
        for x in [0.0f32, -0.0, 1e-30, core::f32::consts::FRAC_PI_2, 1e4, -1e4] {
            assert!((F32Trig::sin(x) - libm::sinf(x)).abs() < 1e-6, "sin {x}");
            assert!((F32Trig::cos(x) - libm::cosf(x)).abs() < 1e-6, "cos {x}");
        }
    }

    #[test]
    fn f32_plant_tracks_the_f64_plant() {
        let mut a = PendulumState {
            th: 3.0f64,
            thdot: 0.0,
        };
        let mut b = PendulumState {
            th: 3.0f32,
            thdot: 0.0,
        };
        let (mut ra, mut rb) = (0.0f64, 0.0f32);
        for k in 0..MAX_EPISODE_STEPS {
            let u = if k % 40 < 20 { 2.0 } else { -2.0 };
            ra += a.step::<LibmTrig>(u);
            rb += b.step::<F32Trig>(u);
        }
        assert!((ra - f64::from(rb)).abs() < 1e-3 * ra.abs(), "{ra} vs {rb}");
        assert!(
            (a.th - f64::from(b.th)).abs() < 1e-3,
            "{} vs {}",
            a.th,
            b.th
        );
    }
}
