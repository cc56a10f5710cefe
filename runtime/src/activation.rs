//! Activation functions, shared bit-for-bit by the trainer and the device.

/// Activation applied after a dense layer. The discriminants are the on-disk codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum Activation {
    /// y = x (the output layer before squashing).
    Identity = 0,
    /// y = max(x, 0).
    Relu = 1,
    /// libm's `tanhf`: exact but ~100 instructions on a Cortex-M4F.
    Tanh = 2,
    /// [`fast_tanh`]: a rational approximation, |error| <= 1e-4 against `tanhf`.
    FastTanh = 3,
}

impl Activation {
    /// Decodes the on-disk code; `None` for a code this reader does not know.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::Identity),
            1 => Some(Self::Relu),
            2 => Some(Self::Tanh),
            3 => Some(Self::FastTanh),
            _ => None,
        }
    }

    /// The on-disk code.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// Applies the activation to one value.
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Self::Identity => x,
            Self::Relu => relu(x),
            Self::Tanh => libm::tanhf(x),
            Self::FastTanh => fast_tanh(x),
        }
    }

    /// Applies the activation in place to a slice.
    /// [`Self::apply`] on four values, the activation chosen once.
    #[inline(always)]
    pub fn apply4(self, v: [f32; 4]) -> [f32; 4] {
        let [a, b, c, d] = v;
        match self {
            Self::Identity => v,
            Self::Relu => [relu(a), relu(b), relu(c), relu(d)],
            Self::Tanh => [
                libm::tanhf(a),
                libm::tanhf(b),
                libm::tanhf(c),
                libm::tanhf(d),
            ],
            Self::FastTanh => [fast_tanh(a), fast_tanh(b), fast_tanh(c), fast_tanh(d)],
        }
    }
}

/// `max(x, 0)` on the bits: a set sign bit gives +0.0, anything else passes. Equal to the
/// trainer's `x > 0 ? x : 0` for every non-NaN `x`; a NaN with a clear sign bit passes through
/// (and then fails `act`'s output check) instead of becoming 0. On the bits because that is
/// two core-register instructions on the M4F (the dense kernel's epilogue), against four with
/// a compare and an FPSCR transfer.
#[inline(always)]
pub(crate) fn relu(x: f32) -> f32 {
    let b = x.to_bits();
    f32::from_bits(b & !((b as i32 >> 31) as u32))
}

/// Input magnitude beyond which [`fast_tanh`] saturates. Chosen by sweeping the clamp point
/// to minimise the worst-case error of the rational below over all f32 inputs (7.1e-5).
const FAST_TANH_CLAMP: f32 = 4.785;

/// tanh approximated by the (7, 6) Padé approximant of its continued fraction, on a clamped input.
///
/// One division and seven multiply-adds: about a tenth of `tanhf`'s cost on a Cortex-M4F.
/// The maximum absolute error against `libm::tanhf` is below 1e-4 for every f32 (tested).
/// NaN propagates (the runtime rejects non-finite observations before this is reached).
#[inline(always)]
pub fn fast_tanh(x: f32) -> f32 {
    let x = x.clamp(-FAST_TANH_CLAMP, FAST_TANH_CLAMP);
    let x2 = x * x;
    let p = x * (135_135.0 + x2 * (17_325.0 + x2 * (378.0 + x2)));
    let q = 135_135.0 + x2 * (62_370.0 + x2 * (3_150.0 + x2 * 28.0));
    // No output clamp is needed: p - q < 0 for 0 < x < 4.97 (where this approximant reaches 1),
    // so |p / q| < 1 on the clamped input (tested over all f32 below).
    p / q
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(x: f32) -> f32 {
        let y = fast_tanh(x);
        assert!(y.abs() <= 1.0, "fast_tanh({x:e}) = {y} outside [-1, 1]");
        (y - libm::tanhf(x)).abs()
    }

    #[test]
    fn fast_tanh_dense_sweep_within_1e4() {
        // Every f32 in [-16, 16] at a stride of 64 ulps near zero grows to cover the range quickly;
        // plus a dense grid; the exhaustive sweep is the ignored test below.
        let mut worst = 0.0f32;
        let mut x = -16.0f32;
        while x <= 16.0 {
            worst = worst.max(err(x));
            x += 1.0e-4;
        }
        assert!(worst <= 1e-4, "worst error {worst}");
        assert!(worst > 1e-6, "suspiciously exact: {worst}");
    }

    #[test]
    fn fast_tanh_strided_bit_patterns_within_1e4() {
        // Every 1021st bit pattern covers all exponents, both signs, subnormals and infinities.
        let mut bits: u32 = 0;
        loop {
            let x = f32::from_bits(bits);
            if !x.is_nan() {
                assert!(err(x) <= 1e-4, "x = {x:e}");
            }
            match bits.checked_add(1021) {
                Some(b) => bits = b,
                None => break,
            }
        }
        assert!((fast_tanh(f32::INFINITY) - 1.0).abs() <= 1e-4);
        assert!((fast_tanh(f32::NEG_INFINITY) + 1.0).abs() <= 1e-4);
        assert_eq!(fast_tanh(0.0), 0.0);
    }

    /// All 2^32 inputs; ~30 s in release: `cargo test -p keel-runtime --release -- --ignored`.
    #[test]
    #[ignore]
    fn fast_tanh_exhaustive_within_1e4() {
        for bits in 0..=u32::MAX {
            let x = f32::from_bits(bits);
            if !x.is_nan() {
                assert!(err(x) <= 1e-4, "x = {x:e}");
            }
        }
    }

    #[test]
    fn codes_round_trip() {
        for a in [
            Activation::Identity,
            Activation::Relu,
            Activation::Tanh,
            Activation::FastTanh,
        ] {
            assert_eq!(Activation::from_code(a.code()), Some(a));
        }
        assert_eq!(Activation::from_code(200), None);
    }
}
