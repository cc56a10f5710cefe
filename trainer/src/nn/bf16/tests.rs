//! The AMX kernel against its scalar reference and against f32; rounding edge cases.
use super::*;
use rand::{Rng, SeedableRng};

#[test]
fn rounding_is_to_nearest_even() {
    assert_eq!(round_bf16(1.0), 0x3F80);
    // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even (1.0).
    assert_eq!(round_bf16(1.0 + 1.0 / 256.0), 0x3F80);
    // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: up to even.
    assert_eq!(round_bf16(1.0 + 3.0 / 256.0), 0x3F82);
    assert_eq!(round_bf16(1.0 + 1.0 / 256.0 + 1e-6), 0x3F81);
    assert_eq!(round_bf16(-2.5), 0xC020);
    assert_eq!(
        round_bf16(f32::MAX),
        0x7F80,
        "past bf16's largest finite: infinity"
    );
    assert_eq!(round_bf16(f32::INFINITY), 0x7F80);
    assert!(bf16_to_f32(round_bf16(f32::NAN)).is_nan());
    for x in [0.0f32, -0.0, 3.0, 0.5, -1.5e-3, 7.0e20] {
        let r = bf16_to_f32(round_bf16(x));
        assert!((r - x).abs() <= x.abs() / 256.0, "{x} -> {r}");
    }
}

fn random(rng: &mut rand_pcg::Pcg64, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// AMX against the reference on shapes with every edge case (partial tiles in m, n and k,
/// odd k, k = 1, transposed operands, alpha and beta), and against f32 arithmetic.
#[test]
fn amx_matches_the_reference() {
    if !available() {
        eprintln!("SKIPPED amx_matches_the_reference: this CPU or OS has no AMX bf16");
        return;
    }
    let mut rng = rand_pcg::Pcg64::seed_from_u64(7);
    let shapes = [
        (1, 1, 1),
        (3, 5, 7),
        (16, 16, 32),
        (17, 33, 31),
        (64, 1, 256),
        (1, 64, 256),
        (256, 256, 256),
        (40, 70, 65),
    ];
    for &(m, n, k) in &shapes {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            for (alpha, beta) in [(1.0f32, 0.0f32), (0.5, 1.0), (-2.0, 0.25)] {
                let a = random(&mut rng, m * k);
                let b = random(&mut rng, k * n);
                let c0 = random(&mut rng, m * n);
                // Row-major storage of A (m x k) or of A^T (k x m), likewise B.
                let sa = if ta { (1, m) } else { (k, 1) };
                let sb = if tb { (1, k) } else { (n, 1) };
                let mut want = c0.clone();
                reference(m, n, k, alpha, &a, sa, &b, sb, beta, &mut want);
                let mut got = c0.clone();
                let ok = unsafe {
                    gemm(
                        m,
                        n,
                        k,
                        alpha,
                        (a.as_ptr(), sa.0 as isize, sa.1 as isize),
                        (b.as_ptr(), sb.0 as isize, sb.1 as isize),
                        beta,
                        (got.as_mut_ptr(), n as isize),
                    )
                };
                assert!(ok);
                let mut f32_c = c0.clone();
                for i in 0..m {
                    for j in 0..n {
                        let dot: f64 = (0..k)
                            .map(|p| {
                                f64::from(a[i * sa.0 + p * sa.1])
                                    * f64::from(b[p * sb.0 + j * sb.1])
                            })
                            .sum();
                        let c = &mut f32_c[i * n + j];
                        *c = (f64::from(alpha) * dot + f64::from(beta) * f64::from(*c)) as f32;
                    }
                }
                let case = format!("{m}x{n}x{k} ta {ta} tb {tb} alpha {alpha} beta {beta}");
                for ((g, w), f) in got.iter().zip(&want).zip(&f32_c) {
                    // Same products, f32 sums in another order: a few ulps of the sum of
                    // |terms| (each term < 1 here, so k bounds that sum).
                    let scale = alpha.abs() * k as f32 + beta.abs();
                    assert!((g - w).abs() <= 1e-6 * scale, "{case}: amx {g} ref {w}");
                    // Against f32 inputs: bf16 rounding of both, 2^-8 each, summed.
                    assert!(
                        (g - f).abs() <= 2.0 / 256.0 * scale,
                        "{case}: amx {g} f32 {f}"
                    );
                }
            }
        }
    }
}

/// Splitting C between threads must not change a bit: a block's sums do not depend on
/// which other rows or columns are in the same call.
#[test]
fn amx_rows_are_independent_of_the_split() {
    if !available() {
        eprintln!("SKIPPED amx_rows_are_independent_of_the_split: no AMX bf16");
        return;
    }
    let mut rng = rand_pcg::Pcg64::seed_from_u64(8);
    let (m, n, k) = (96, 80, 200);
    let a = random(&mut rng, m * k);
    let b = random(&mut rng, k * n);
    let run = |rows: std::ops::Range<usize>, out: &mut [f32]| unsafe {
        gemm(
            rows.len(),
            n,
            k,
            1.0,
            (a.as_ptr().add(rows.start * k), k as isize, 1),
            (b.as_ptr(), n as isize, 1),
            0.0,
            (out.as_mut_ptr().add(rows.start * n), n as isize),
        )
    };
    let mut whole = vec![0.0; m * n];
    let mut split = vec![0.0; m * n];
    run(0..m, &mut whole);
    run(0..48, &mut split);
    run(48..m, &mut split);
    assert_eq!(whole, split);
}
