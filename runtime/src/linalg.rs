//! f32 vectors borrowed from a blob, and the dense layer `y = W x + b` over them.
//!
//! A tensor that happens to be 4-byte aligned in memory (the writer aligns the data region, so a
//! blob at an aligned flash address has every tensor aligned) is viewed as `&[f32]` and multiplied
//! with nalgebra; an unaligned one is decoded little-endian on the fly.
use nalgebra::{DMatrixView, DVectorView, DVectorViewMut};

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
    pub(crate) fn copy_to(&self, out: &mut [f32]) {
        out.iter_mut().zip(self.iter()).for_each(|(o, v)| *o = v);
    }
}

/// `y = W x + b` with `W` row-major `y.len() x x.len()`. Lengths are validated when the policy is
/// loaded; a mismatch here leaves `y` as the bias and reports `false` instead of panicking.
#[inline]
pub(crate) fn dense(w: F32s<'_>, b: F32s<'_>, x: &[f32], y: &mut [f32]) -> bool {
    let (n_in, n_out) = (x.len(), y.len());
    if Some(w.len()) != n_in.checked_mul(n_out) || b.len() != n_out {
        return false;
    }
    b.copy_to(y);
    match w {
        F32s::Native(w) => {
            // Row-major W (out x in) is column-major W^T (in x out): y += (W^T)^T x, a dot
            // product per contiguous row.
            let wt = DMatrixView::from_slice(w, n_in, n_out);
            let xv = DVectorView::from_slice(x, n_in);
            let mut yv = DVectorViewMut::from_slice(y, n_out);
            yv.gemv_tr(1.0, &wt, &xv, 1.0);
        }
        F32s::Le(bytes) => {
            let rows = bytes.chunks_exact(4 * n_in.max(1));
            for (yj, row) in y.iter_mut().zip(rows) {
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
            assert!(dense(wv, bv, &x, &mut y));
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
        let b = F32s::new(&[0u8; 4]).unwrap();
        let mut y = [0.0f32; 1];
        assert!(!dense(w, b, &[1.0, 2.0, 3.0], &mut y));
        assert!(F32s::new(&[0u8; 3]).is_none());
    }
}
