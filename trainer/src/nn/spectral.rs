//! Host-side spectral norms: the reference for tests of the power iteration in the backends, and
//! the "product of per-layer spectral norms" Lipschitz report.
//!
//! The per-step power iteration itself is a backend kernel ([`super::Backend::spectral_step`]);
//! see [`super::Mlp`] for when it advances.

/// Largest singular value of the row-major `rows x cols` matrix `w`, by power iteration on
/// `W^T W` in f64 until the estimate changes by less than 1e-12 relative (at most 5000 steps).
///
/// Deterministic: it starts from a fixed vector with positive, distinct entries, which is not
/// orthogonal to the top singular vector of any matrix met in practice. Accurate to ~1e-7
/// relative when the top two singular values differ by 1% or more.
pub fn top_singular_value(w: &[f32], rows: usize, cols: usize) -> f32 {
    assert_eq!(
        w.len(),
        rows * cols,
        "top_singular_value: w is not rows x cols"
    );
    if w.is_empty() {
        return 0.0;
    }
    let w: Vec<f64> = w.iter().map(|&x| f64::from(x)).collect();
    let mut v: Vec<f64> = (0..cols)
        .map(|j| 1.0 + (j as f64 * 0.618_033_988_75).fract())
        .collect();
    let mut u = vec![0.0f64; rows];
    let norm = |x: &mut [f64]| {
        let n = x.iter().map(|e| e * e).sum::<f64>().sqrt();
        if n > 0.0 {
            x.iter_mut().for_each(|e| *e /= n);
        }
        n
    };
    norm(&mut v);
    let mut sigma = 0.0f64;
    for _ in 0..5000 {
        for (ui, row) in u.iter_mut().zip(w.chunks_exact(cols)) {
            *ui = row.iter().zip(&v).map(|(a, b)| a * b).sum();
        }
        if norm(&mut u) == 0.0 {
            return 0.0;
        }
        v.fill(0.0);
        for (row, &ui) in w.chunks_exact(cols).zip(&u) {
            v.iter_mut().zip(row).for_each(|(vj, a)| *vj += ui * a);
        }
        // |W^T u| with u = Wv/|Wv| is the current estimate (a lower bound that only grows).
        let s = norm(&mut v);
        let done = (s - sigma).abs() <= 1e-12 * s;
        sigma = s;
        if done {
            break;
        }
    }
    sigma as f32
}
