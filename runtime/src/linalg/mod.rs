//! f32 vectors borrowed from a blob, and the dense layer `y = W x + b` over them.
//!
//! A tensor that happens to be 4-byte aligned in memory (the writer aligns the data region, so a
//! blob at an aligned flash address has every tensor aligned) is viewed as `&[f32]` in place; an
//! unaligned one is decoded little-endian on the fly.

#[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
mod vfp;
#[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
use vfp::{dense_blocks, dot_row};
#[cfg(not(all(target_arch = "arm", target_abi = "eabihf")))]
use {dense_blocks_portable as dense_blocks, dot_row_portable as dot_row};

use crate::activation::Activation;

/// f32 values stored little-endian in a borrowed byte slice.
#[derive(Clone, Copy, Debug)]
pub(crate) enum F32s<'a> {
    /// Aligned, on a little-endian target: used in place.
    Native(&'a [f32]),
    /// Anything else: 4 bytes per value, decoded when read.
    Le(&'a [u8]),
}

impl<'a> F32s<'a> {
    /// Views `bytes` (a whole number of f32) without copying. `None` if the length is not a
    /// multiple of four.
    pub(crate) fn new(bytes: &'a [u8]) -> Option<Self> {
        if !bytes.len().is_multiple_of(4) {
            return None;
        }
        #[cfg(target_endian = "little")]
        if let Ok(v) = bytemuck::try_cast_slice::<u8, f32>(bytes) {
            return Some(Self::Native(v));
        }
        Some(Self::Le(bytes))
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Native(v) => v.len(),
            Self::Le(b) => b.len() / 4,
        }
    }

    /// Iterates over the values.
    pub(crate) fn iter(&self) -> impl Iterator<Item = f32> + 'a {
        let (native, le): (&'a [f32], &'a [u8]) = match *self {
            Self::Native(v) => (v, &[]),
            Self::Le(b) => (&[], b),
        };
        native
            .iter()
            .copied()
            .chain(le.as_chunks::<4>().0.iter().map(|c| f32::from_le_bytes(*c)))
    }
}

/// The shapes `dense_blocks` needs (and the assembly's memory safety rests on): at least one
/// input and one block, `w` exactly `bias.len()` blocks of four rows of `x.len()`, and `y` one
/// `[f32; 4]` per block.
#[inline]
fn blocks_fit(x: &[f32], w: &[f32], bias: &[[f32; 4]], y: &[[f32; 4]]) -> bool {
    let (n, blocks) = (x.len(), bias.len());
    let whole = n.checked_mul(4).and_then(|r| r.checked_mul(blocks));
    n > 0 && blocks > 0 && whole == Some(w.len()) && y.len() == blocks
}

/// For every block `i` of four rows and `r < 4`: `y[i][r] = f(bias[i][r] + sum_k x[k]
/// w[(4 i + r) n + k])` with `n = x.len()`, each row's products added to its bias in input order,
/// `f` the ReLU if `relu` and the identity otherwise. `false`, and `y` untouched, unless `w` is
/// exactly `bias.len()` blocks and `y` as long as `bias`. The specification of
/// [`vfp::dense_blocks`], and the kernel on every other target.
#[cfg_attr(all(target_arch = "arm", target_abi = "eabihf"), allow(dead_code))]
#[inline]
fn dense_blocks_portable(
    x: &[f32],
    w: &[f32],
    bias: &[[f32; 4]],
    y: &mut [[f32; 4]],
    relu: bool,
) -> bool {
    if !blocks_fit(x, w, bias, y) {
        return false;
    }
    let n = x.len();
    for ((out, b), blk) in y.iter_mut().zip(bias).zip(w.chunks_exact(4 * n)) {
        for ((o, bj), row) in out.iter_mut().zip(b).zip(blk.chunks_exact(n)) {
            let v = dot_row_portable(x, row, *bj);
            *o = if relu { crate::activation::relu(v) } else { v };
        }
    }
    true
}

/// `acc + sum_k x[k] row[k]`, added in input order: one row of [`dense_blocks_portable`], and
/// the layer's last `out_dim % 4` rows.
#[inline]
fn dot_row_portable(x: &[f32], row: &[f32], mut acc: f32) -> f32 {
    for (xi, wi) in x.iter().zip(row) {
        acc += xi * wi;
    }
    acc
}

/// One dense layer: `y = act(b + W x)`, `W` row-major `y.len() x x.len()`, `b` of `y.len()`.
/// Lengths are validated when the policy is loaded; a mismatch here reports `false` (and leaves
/// `y` unspecified) instead of panicking.
///
/// Each output starts from its bias and adds the row's products in input order, on every path,
/// so aligned and unaligned blobs, host and device, give bit-identical results. Rows go four at a
/// time through [`dense_blocks`] (one pass over `x` for four outputs; on hard-float Arm, assembly
/// that loads eight weights per instruction and applies a ReLU as it stores).
///
/// History, in QEMU instructions on the M4F (opt-level "s"): one 64x64 layer took 17,705 with
/// nalgebra's `gemv_tr` and 15,785 with a plain Rust loop over four rows (LLVM computes every
/// address and loads one value per instruction); the whole 3-64-64-1 `act` took 28,228 with that
/// loop (fast-tanh example) and takes 6,425 with this kernel (ReLU; `keel-cost`).
#[inline]
pub(crate) fn dense(w: F32s<'_>, b: F32s<'_>, act: Activation, x: &[f32], y: &mut [f32]) -> bool {
    let (n_in, n_out) = (x.len(), y.len());
    if Some(w.len()) != n_in.checked_mul(n_out) || b.len() != n_out || n_in == 0 {
        return false;
    }
    match (w, b) {
        (F32s::Native(w), F32s::Native(b)) => {
            let (b4, b_rest) = b.as_chunks::<4>();
            let (y4, y_rest) = y.as_chunks_mut::<4>();
            let (w4, w_rest) = w.split_at_checked(4 * n_in * b4.len()).unwrap_or_default();
            if !b4.is_empty() {
                if !dense_blocks(x, w4, b4, y4, act == Activation::Relu) {
                    return false;
                }
                if !matches!(act, Activation::Relu | Activation::Identity) {
                    y4.iter_mut().for_each(|out| *out = act.apply4(*out));
                }
            }
            for ((row, bias), out) in w_rest.chunks_exact(n_in).zip(b_rest).zip(y_rest) {
                *out = act.apply(dot_row(x, row, *bias));
            }
        }
        (F32s::Le(w), b) => {
            // Unaligned blob: decode each weight as it is used; same order of operations.
            for ((row, bias), out) in w.chunks_exact(4 * n_in).zip(b.iter()).zip(y) {
                let mut acc = bias;
                for (xi, c) in x.iter().zip(row.as_chunks::<4>().0) {
                    acc += xi * f32::from_le_bytes(*c);
                }
                *out = act.apply(acc);
            }
        }
        (F32s::Native(w), b) => {
            for ((row, bias), out) in w.chunks_exact(n_in).zip(b.iter()).zip(y) {
                *out = act.apply(dot_row_portable(x, row, bias));
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    /// `bytes` stored at a 4-byte aligned address (viewed in place) and one byte off (decoded).
    fn both_layouts(values: &[f32]) -> (Vec<u32>, Vec<u8>) {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut words = vec![0u32; values.len()];
        bytemuck::cast_slice_mut::<u32, u8>(&mut words).copy_from_slice(&bytes);
        let mut shifted = vec![0u8; bytes.len() + 1];
        shifted[1..].copy_from_slice(&bytes);
        (words, shifted)
    }

    fn relu_ref(v: f32) -> f32 {
        if v > 0.0 {
            v
        } else {
            0.0
        }
    }

    /// Every input width around the kernels' cases (1-4: one load per block; 8k + tail) and
    /// every output count around the 4-row blocking, for each activation: aligned and unaligned
    /// layouts equal a plain row-by-row loop, bit for bit.
    #[test]
    fn dense_matches_row_by_row_bit_for_bit() {
        let acts = [
            Activation::Identity,
            Activation::Relu,
            Activation::Tanh,
            Activation::FastTanh,
        ];
        for n_in in 1..=19 {
            for n_out in 1..=9 {
                let w: Vec<f32> = (0..n_in * n_out)
                    .map(|k| ((k * 37 % 11) as f32 - 5.0) * 0.173)
                    .collect();
                let b: Vec<f32> = (0..n_out).map(|j| (j as f32 - 3.0) * 0.29).collect();
                let x: Vec<f32> = (0..n_in).map(|k| (k as f32 - 2.0) * 0.731).collect();
                let (w_al, w_un) = both_layouts(&w);
                let (b_al, b_un) = both_layouts(&b);
                let native = (
                    F32s::new(bytemuck::cast_slice(&w_al)).unwrap(),
                    F32s::new(bytemuck::cast_slice(&b_al)).unwrap(),
                );
                let le = (
                    F32s::new(&w_un[1..]).unwrap(),
                    F32s::new(&b_un[1..]).unwrap(),
                );
                assert!(matches!(native, (F32s::Native(_), F32s::Native(_))));
                assert!(matches!(le, (F32s::Le(_), F32s::Le(_))));
                for act in acts {
                    let reference: Vec<f32> = (0..n_out)
                        .map(|j| {
                            let v = (0..n_in).fold(b[j], |acc, i| acc + x[i] * w[j * n_in + i]);
                            match act {
                                Activation::Relu => relu_ref(v),
                                _ => act.apply(v),
                            }
                        })
                        .collect();
                    for (name, (wv, bv)) in [("aligned", native), ("unaligned", le)] {
                        let mut y = vec![f32::NAN; n_out];
                        assert!(dense(wv, bv, act, &x, &mut y));
                        assert_eq!(y, reference, "{name} {n_in}x{n_out} {act:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn shape_mismatches_are_reported_not_panicked() {
        let w = F32s::new(&[0u8; 8]).unwrap();
        let b = F32s::new(&[0u8; 4]).unwrap();
        let relu = Activation::Relu;
        // 2 weights cannot be 1 x 3.
        assert!(!dense(w, b, relu, &[1.0, 2.0, 3.0], &mut [0.0]));
        // Bias of 1 for 2 outputs; no inputs.
        assert!(!dense(w, b, relu, &[1.0], &mut [0.0, 0.0]));
        assert!(!dense(w, b, relu, &[], &mut [0.0]));
        assert!(F32s::new(&[0u8; 3]).is_none());
        // The block kernel checks its own extents.
        let mut y = [[0.0f32; 4]];
        assert!(!dense_blocks_portable(
            &[1.0],
            &[0.0; 3],
            &[[0.0; 4]],
            &mut y,
            true
        ));
        assert!(!dense_blocks_portable(&[], &[], &[[0.0; 4]], &mut y, true));
        assert!(!dense_blocks_portable(
            &[1.0],
            &[0.0; 4],
            &[[0.0; 4]; 2],
            &mut y,
            true
        ));
    }

    #[test]
    fn relu_zeroes_negatives_and_keeps_the_rest() {
        use crate::activation::relu;
        for v in [-3.5f32, -0.0, -f32::MIN_POSITIVE, f32::NEG_INFINITY] {
            assert_eq!(relu(v).to_bits(), 0, "{v}");
        }
        for v in [0.0f32, 2.5, f32::MIN_POSITIVE, f32::INFINITY] {
            assert_eq!(relu(v).to_bits(), v.to_bits(), "{v}");
        }
        assert_eq!(relu(-f32::NAN).to_bits(), 0);
        assert!(relu(f32::NAN).is_nan());
    }
}
