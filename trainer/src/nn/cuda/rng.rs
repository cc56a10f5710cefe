//! Host reference of the device RNG in `kernels/random.cu` (Philox4x32-10, Box-Muller,
//! multiply-shift indices): the tests check the kernels against it bit for bit (integers) or to
//! a few ulps (normals), and a CPU fallback can reproduce a device stream.

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Philox4x32-10 of the 64-bit counter `ctr` (high words 0) under the 64-bit `key`.
pub fn philox4x32_10(ctr: u64, key: u64) -> [u32; 4] {
    let (mut c0, mut c1, mut c2, mut c3) = (ctr as u32, (ctr >> 32) as u32, 0u32, 0u32);
    let (mut k0, mut k1) = (key as u32, (key >> 32) as u32);
    for _ in 0..10 {
        let p0 = u64::from(M0) * u64::from(c0);
        let p1 = u64::from(M1) * u64::from(c2);
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 = k0.wrapping_add(W0);
        k1 = k1.wrapping_add(W1);
    }
    [c0, c1, c2, c3]
}

/// (0, 1] from the top 24 bits.
fn u01(x: u32) -> f32 {
    ((x >> 8) + 1) as f32 * 5.960_464_5e-8
}

fn box_muller(a: u32, b: u32) -> (f32, f32) {
    let r = (-2.0 * u01(a).ln()).sqrt();
    let t = core::f32::consts::TAU * u01(b);
    (r * t.cos(), r * t.sin())
}

/// What `keel_normal` writes for `n` values from the state (`seed`, `counter`); the counter then
/// advances by `n.div_ceil(4)`.
pub fn normal_reference(seed: u64, counter: u64, n: usize, mean: f32, std: f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(n + 3);
    for t in 0..n.div_ceil(4) as u64 {
        let x = philox4x32_10(counter + t, seed);
        let (z0, z1) = box_muller(x[0], x[1]);
        let (z2, z3) = box_muller(x[2], x[3]);
        out.extend([z0, z1, z2, z3].map(|z| mean + std * z));
    }
    out.truncate(n);
    out
}

/// What `keel_uniform_index` writes for `n` indices below `bound`.
pub fn uniform_index_reference(seed: u64, counter: u64, n: usize, bound: u32) -> Vec<u32> {
    let mut out = Vec::with_capacity(n + 3);
    for t in 0..n.div_ceil(4) as u64 {
        let x = philox4x32_10(counter + t, seed);
        out.extend(x.map(|w| ((u64::from(w) * u64::from(bound)) >> 32) as u32));
    }
    out.truncate(n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known-answer vectors of the Random123 distribution (kat_vectors, philox4x32_10).
    #[test]
    fn philox_known_answers() {
        assert_eq!(
            philox4x32_10(0, 0),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
    }

    #[test]
    fn normals_look_normal() {
        let z = normal_reference(7, 0, 100_001, 0.0, 1.0);
        let n = z.len() as f64;
        let mean = z.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = z
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(
            mean.abs() < 0.02 && (var - 1.0).abs() < 0.02,
            "{mean} {var}"
        );
        assert!(z.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn indices_in_range() {
        let idx = uniform_index_reference(3, 5, 10_003, 17);
        assert_eq!(idx.len(), 10_003);
        assert!(idx.iter().all(|&i| i < 17));
        assert!((0..17).all(|k| idx.contains(&k)));
    }
}
