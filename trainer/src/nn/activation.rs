//! Activations of the trainer's networks and their derivatives, per element.
//!
//! The backends' fused kernels call these scalar functions, so the forward pass of every
//! activation that the runtime also has ([`Activation::to_runtime`]) is bit-for-bit the
//! runtime's: `Tanh` is libm's `tanhf` and `FastTanh` is [`keel_runtime::fast_tanh`].
//!
//! Derivatives are exact derivatives of the function computed in f32, so finite differences
//! check them tightly:
//! - `Relu`: 1 where the output is positive (0 at the kink, as PyTorch).
//! - `Tanh`: `1 - y^2` from the output (libm's `tanhf` is accurate to about an ulp).
//! - `FastTanh`: the exact derivative of the runtime's rational approximation (not `1 - y^2` of
//!   its output), including its clamps: 0 where the input or output clamp is active. This needs
//!   the pre-activation, which the forward pass therefore caches for this activation.
//! - `Silu`: `s (1 + x (1 - s))` with `s = sigmoid(x)`, from the cached pre-activation.

use serde::{Deserialize, Serialize};

/// Activation applied after a linear layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// y = x.
    Identity,
    /// y = max(x, 0).
    Relu,
    /// y = x * sigmoid(x) (swish), the MBPO dynamics model's activation. Not in the runtime.
    Silu,
    /// libm's `tanhf`.
    Tanh,
    /// The runtime's rational approximation of tanh ([`keel_runtime::fast_tanh`]).
    FastTanh,
}

/// Input magnitude beyond which [`keel_runtime::fast_tanh`] is constant (the runtime clamps its
/// input there; the constant is private to the runtime, a test pins this copy to it).
pub const FAST_TANH_CLAMP: f32 = 4.785;

impl Activation {
    /// Applies the activation to one pre-activation value.
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Self::Identity => x,
            Self::Relu => {
                if x > 0.0 {
                    x
                } else {
                    0.0
                }
            }
            Self::Silu => x / (1.0 + (-x).exp()),
            Self::Tanh => keel_runtime::Activation::Tanh.apply(x),
            Self::FastTanh => keel_runtime::fast_tanh(x),
        }
    }

    /// dy/dx at pre-activation `x` with output `y = self.apply(x)`. Each activation reads only
    /// the argument it needs (see [`Activation::needs_pre`]); the other may be anything.
    #[inline(always)]
    pub fn derivative(self, x: f32, y: f32) -> f32 {
        match self {
            Self::Identity => 1.0,
            Self::Relu => {
                if y > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Self::Silu => {
                let s = 1.0 / (1.0 + (-x).exp());
                s * (1.0 + x * (1.0 - s))
            }
            Self::Tanh => 1.0 - y * y,
            Self::FastTanh => fast_tanh_derivative(x),
        }
    }

    /// Whether the backward pass needs the pre-activation (otherwise the output suffices), i.e.
    /// whether a forward pass for training must keep it.
    pub const fn needs_pre(self) -> bool {
        matches!(self, Self::Silu | Self::FastTanh)
    }

    /// The runtime's activation with the same forward pass; `None` for SiLU (trainer-only,
    /// used by dynamics models, which are not exported).
    pub const fn to_runtime(self) -> Option<keel_runtime::Activation> {
        match self {
            Self::Identity => Some(keel_runtime::Activation::Identity),
            Self::Relu => Some(keel_runtime::Activation::Relu),
            Self::Tanh => Some(keel_runtime::Activation::Tanh),
            Self::FastTanh => Some(keel_runtime::Activation::FastTanh),
            Self::Silu => None,
        }
    }

    /// An upper bound on |dy/dx| (the activation's Lipschitz constant), for bounds on a
    /// network's Lipschitz constant: 1 for all but SiLU (max derivative 1.0998 at x = 2.3994).
    pub const fn lipschitz(self) -> f32 {
        match self {
            Self::Silu => 1.0999,
            _ => 1.0,
        }
    }
}

/// Exact derivative of [`keel_runtime::fast_tanh`]: `(p'q - pq') / q^2` for its (7, 6) rational
/// `p/q`, and 0 where its input clamp (|x| >= [`FAST_TANH_CLAMP`]) or output clamp is active.
#[inline(always)]
pub fn fast_tanh_derivative(x: f32) -> f32 {
    if x.abs() >= FAST_TANH_CLAMP {
        return 0.0;
    }
    let x2 = x * x;
    let p = x * (135_135.0 + x2 * (17_325.0 + x2 * (378.0 + x2)));
    let q = 135_135.0 + x2 * (62_370.0 + x2 * (3_150.0 + x2 * 28.0));
    let dp = 135_135.0 + x2 * (51_975.0 + x2 * (1_890.0 + x2 * 7.0));
    let dq = x * (124_740.0 + x2 * (12_600.0 + x2 * 168.0));
    if (p / q).abs() > 1.0 {
        return 0.0;
    }
    (dp * q - p * dq) / (q * q)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Activation; 5] = [
        Activation::Identity,
        Activation::Relu,
        Activation::Silu,
        Activation::Tanh,
        Activation::FastTanh,
    ];

    /// Central differences in f64 around f32 evaluation points, away from ReLU's kink.
    #[test]
    fn derivatives_match_finite_differences() {
        let h = 1e-3f32;
        for act in ALL {
            let mut worst = 0.0f64;
            let mut x = -6.0f32;
            while x <= 6.0 {
                let near_kink = act == Activation::Relu && x.abs() < 2.0 * h;
                let near_clamp =
                    act == Activation::FastTanh && (x.abs() - FAST_TANH_CLAMP).abs() < 2.0 * h;
                if !near_kink && !near_clamp {
                    let fd = (f64::from(act.apply(x + h)) - f64::from(act.apply(x - h)))
                        / f64::from(2.0 * h);
                    let an = f64::from(act.derivative(x, act.apply(x)));
                    // f32 rounding of the outputs (~6e-8 |y|) over 2h: ~1e-4 |y|.
                    let scale = 1.0 + f64::from(act.apply(x).abs());
                    worst = worst.max((fd - an).abs() / scale);
                }
                x += 0.0137;
            }
            assert!(worst < 3e-4, "{act:?}: max |fd - analytic| = {worst}");
        }
    }

    #[test]
    fn fast_tanh_derivative_is_close_to_tanh_derivative() {
        let mut x = -4.7f32;
        while x < 4.7 {
            let t = x.tanh();
            assert!(
                (fast_tanh_derivative(x) - (1.0 - t * t)).abs() < 1e-3,
                "x = {x}"
            );
            x += 0.01;
        }
    }

    #[test]
    fn fast_tanh_clamp_matches_runtime() {
        use keel_runtime::fast_tanh;
        assert_eq!(fast_tanh(FAST_TANH_CLAMP), fast_tanh(FAST_TANH_CLAMP + 1.0));
        assert_eq!(
            fast_tanh(-FAST_TANH_CLAMP),
            fast_tanh(-FAST_TANH_CLAMP - 3.0)
        );
        let inside = FAST_TANH_CLAMP - 0.01;
        assert!(fast_tanh(inside) < fast_tanh(FAST_TANH_CLAMP));
        assert_eq!(fast_tanh_derivative(5.0), 0.0);
        assert!(fast_tanh_derivative(inside) > 0.0);
    }

    #[test]
    fn runtime_mapping_is_bit_identical() {
        for act in ALL {
            if let Some(rt) = act.to_runtime() {
                let mut x = -8.0f32;
                while x < 8.0 {
                    assert_eq!(
                        act.apply(x).to_bits(),
                        rt.apply(x).to_bits(),
                        "{act:?} at {x}"
                    );
                    x += 0.031;
                }
            }
        }
    }

    #[test]
    fn silu_lipschitz_bound_holds() {
        let mut x = -10.0f32;
        while x < 10.0 {
            let d = Activation::Silu.derivative(x, 0.0);
            assert!(d.abs() <= Activation::Silu.lipschitz(), "x = {x}: {d}");
            x += 0.001;
        }
    }
}
