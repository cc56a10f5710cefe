//! f32 vectors borrowed from a blob, and the dense layer `y = W x + b` over them.
//!
//! A tensor that happens to be 4-byte aligned in memory (the writer aligns the data region, so a
//! blob at an aligned flash address has every tensor aligned) is viewed as `&[f32]` in place; an
//! unaligned one is decoded little-endian on the fly.

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

    /// Writes the values into `out` (lengths must match; extra elements are left alone).
    #[cfg(test)]
    pub(crate) fn copy_to(&self, out: &mut [f32]) {
        out.iter_mut().zip(self.iter()).for_each(|(o, v)| *o = v);
    }
}

/// `y += W x` with `W` row-major `y.len() x x.len()` (the caller puts the bias in `y`). Lengths
/// are validated when the policy is loaded; a mismatch here leaves `y` alone and reports `false`
/// instead of panicking.
///
/// Each row's products are summed from zero in input order and then added to the bias, on both
/// paths, so aligned and unaligned blobs (and host and device) give bit-identical results.
///
/// A plain loop over four rows at a time replaced nalgebra's `gemv_tr` here: on the Cortex-M4F
/// (QEMU instruction counts, one 64x64 layer) it took 15,785 instructions at opt-level "s" and
/// 11,548 at 3, against 17,705 and 16,765 for `gemv_tr`; four independent accumulators also
/// hide the FPU's multiply-add latency.
#[inline]
pub(crate) fn dense_accumulate(w: F32s<'_>, x: &[f32], y: &mut [f32]) -> bool {
    let (n_in, n_out) = (x.len(), y.len());
    if Some(w.len()) != n_in.checked_mul(n_out) || n_in == 0 {
        return false;
    }
    match w {
        F32s::Native(w) => {
            let mut blocks = w.chunks_exact(4 * n_in);
            let mut outs = y.chunks_exact_mut(4);
            for (blk, yb) in blocks.by_ref().zip(outs.by_ref()) {
                let (Some((r0, rest)), [y0, y1, y2, y3]) = (blk.split_at_checked(n_in), yb) else {
                    return false;
                };
                let Some((r1, rest)) = rest.split_at_checked(n_in) else {
                    return false;
                };
                let Some((r2, r3)) = rest.split_at_checked(n_in) else {
                    return false;
                };
                let (mut a0, mut a1, mut a2, mut a3) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
                let rows = r0.iter().zip(r1).zip(r2).zip(r3);
                for (xi, (((w0, w1), w2), w3)) in x.iter().zip(rows) {
                    a0 += xi * w0;
                    a1 += xi * w1;
                    a2 += xi * w2;
                    a3 += xi * w3;
                }
                *y0 += a0;
                *y1 += a1;
                *y2 += a2;
                *y3 += a3;
            }
            for (row, yj) in blocks
                .remainder()
                .chunks_exact(n_in)
                .zip(outs.into_remainder())
            {
                let mut acc = 0.0f32;
                for (xi, wi) in x.iter().zip(row) {
                    acc += xi * wi;
                }
                *yj += acc;
            }
        }
        F32s::Le(bytes) => {
            for (yj, row) in y.iter_mut().zip(bytes.chunks_exact(4 * n_in)) {
                let mut acc = 0.0f32;
                for (xi, c) in x.iter().zip(row.as_chunks::<4>().0) {
                    acc += xi * f32::from_le_bytes(*c);
                }
                *yj += acc;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_unaligned_paths_agree() {
        let w: [f32; 6] = [1.0, -2.0, 0.5, 3.0, 0.25, -1.0];
        let b: [f32; 2] = [0.1, -0.2];
        let x = [0.3f32, -0.7, 2.0];
        let mut bytes = [0u8; 4 + 24 + 8];
        for (i, v) in w.iter().chain(b.iter()).enumerate() {
            bytes[4 + 4 * i..8 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
        let mut y_ref = [0.0f32; 2];
        for j in 0..2 {
            y_ref[j] = b[j] + (0..3).map(|i| w[j * 3 + i] * x[i]).sum::<f32>();
        }
        // Try every misalignment: at least one offset is aligned, three are not.
        let mut seen_native = false;
        let mut seen_le = false;
        for shift in 0..4 {
            let mut buf = [0u8; 40];
            buf[shift..shift + 32].copy_from_slice(&bytes[4..36]);
            let wv = F32s::new(&buf[shift..shift + 24]).unwrap();
            let bv = F32s::new(&buf[shift + 24..shift + 32]).unwrap();
            match wv {
                F32s::Native(_) => seen_native = true,
                F32s::Le(_) => seen_le = true,
            }
            let mut y = [0.0f32; 2];
            bv.copy_to(&mut y);
            assert!(dense_accumulate(wv, &x, &mut y));
            for j in 0..2 {
                assert!(
                    (y[j] - y_ref[j]).abs() < 1e-6,
                    "shift {shift}: {y:?} vs {y_ref:?}"
                );
            }
        }
        assert!(seen_native && seen_le);
    }

    #[test]
    fn length_mismatch_is_reported_not_panicked() {
        let w = F32s::new(&[0u8; 8]).unwrap();
        let mut y = [0.0f32; 1];
        assert!(!dense_accumulate(w, &[1.0, 2.0, 3.0], &mut y));
        assert!(F32s::new(&[0u8; 3]).is_none());
    }
}

#[cfg(test)]
mod block_tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    /// Every output count around the 4-row blocking, aligned and unaligned, bit-identical.
    #[test]
    fn blocked_rows_match_row_by_row_bit_for_bit() {
        let n_in = 5;
        for n_out in 1..=9 {
            let w: Vec<f32> = (0..n_in * n_out)
                .map(|k| ((k * 37 % 11) as f32 - 5.0) * 0.173)
                .collect();
            let x: Vec<f32> = (0..n_in).map(|k| (k as f32 - 2.0) * 0.731).collect();
            let bytes: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
            let mut words = vec![0u32; bytes.len() / 4 + 1];
            let aligned: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
            aligned[..bytes.len()].copy_from_slice(&bytes);
            let native = F32s::new(&aligned[..bytes.len()]).unwrap();
            let mut shifted = vec![0u8; bytes.len() + 1];
            shifted[1..].copy_from_slice(&bytes);
            let le = F32s::new(&shifted[1..]).unwrap();
            assert!(matches!(native, F32s::Native(_)) && matches!(le, F32s::Le(_)));
            let (mut y1, mut y2) = (vec![0.5f32; n_out], vec![0.5f32; n_out]);
            assert!(dense_accumulate(native, &x, &mut y1));
            assert!(dense_accumulate(le, &x, &mut y2));
            let reference: Vec<f32> = (0..n_out)
                .map(|j| 0.5 + (0..n_in).fold(0.0f32, |acc, i| acc + x[i] * w[j * n_in + i]))
                .collect();
            assert_eq!(y1, reference, "n_out {n_out}");
            assert_eq!(y2, reference, "n_out {n_out}");
        }
    }
}
