//! Matrix products with bf16 inputs and f32 sums on Intel AMX (`matmul = "bf16"`, opt-in).
//!
//! What a bf16 product computes, the specification ([`reference`]): both operands are rounded to
//! bf16 (round to nearest even), each product of two bf16 numbers is exact in f32, and the sums
//! are f32. AMX's `TDPBF16PS` does this for a 16x16 f32 tile from a 16x32 bf16 tile of A and a
//! 32x16 tile of B, at about 512 multiply-adds per cycle and core against 32 for AVX-512 FMA, so
//! the 256x256x256 products of a SAC update at SB3's sizes stop dominating it. Only the order of
//! the f32 sums (and AMX's flushing of subnormal bf16 inputs to zero) differs from the reference;
//! `tests` bound the difference.
//!
//! Layout: both operands are packed as bf16 pairs (one u32 each) in whole 16 x 16 tiles (see
//! `imp::TILE`): A's pairs run along k within a row, B's pair rows 2r and 2r + 1 of a column
//! (AMX's "VNNI" layout for B). Each 32x32 block of C is four accumulator tiles (tmm0-3) fed by
//! two A tiles (tmm4-5) and two B tiles (tmm6-7); the k loop runs in the same order for every
//! block, so splitting C between threads gives the same bits.
//!
//! AMX needs the kernel's permission once per process (`arch_prctl(ARCH_REQ_XCOMP_PERM)`), which
//! [`available`] asks for; on any other CPU or OS it answers false and the f32 path is used.
//! `KEEL_DISABLE_AMX=1` in the environment makes it answer false too (how the tests check the
//! refusal on an AMX machine, and a way to rule AMX out when hunting a numerical problem).

use std::sync::atomic::{AtomicBool, Ordering};

/// `x` rounded to the nearest bf16 (ties to even), as its 16 bits. NaN stays NaN (quiet).
#[inline(always)]
pub fn round_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    // Adding 0x7FFF plus the lowest kept bit rounds to nearest, ties to even; a carry into the
    // exponent is the correct rounding up (to infinity past bf16's largest finite value).
    let rounded = (b.wrapping_add(0x7FFF + ((b >> 16) & 1)) >> 16) as u16;
    let quiet_nan = ((b >> 16) | 0x40) as u16;
    // A select, not a branch, so that the packing loops vectorize.
    if x.is_nan() {
        quiet_nan
    } else {
        rounded
    }
}

/// The f32 value of a bf16.
#[inline(always)]
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// Whether this CPU and OS run AMX bf16 products (checked once, then cached).
pub fn available() -> bool {
    imp::available()
}

/// Whether the CPU backend's large products run in bf16 (process-wide, like
/// [`super::threads::set_threads`]; off unless [`set_enabled`] turned it on).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Products with a side shorter than this stay f32 even with bf16 on: an MLP's input and
/// output layers (a few columns, padded to 32 in AMX tiles), where packing would be the work.
pub const MIN_SIDE: usize = 32;

/// Whether a product of these sizes runs in bf16 when bf16 is [`enabled`].
pub fn worth_it(m: usize, n: usize, k: usize) -> bool {
    m.min(n).min(k) >= MIN_SIDE
}

/// Turns bf16 products on or off for the CPU backend. Turning them on fails (and leaves them
/// off) when AMX is not [`available`].
pub fn set_enabled(on: bool) -> Result<(), &'static str> {
    if on && !available() {
        ENABLED.store(false, Ordering::Relaxed);
        return Err(
            "bf16 matmul needs a CPU with AMX-BF16 (Intel Xeon 4th generation or later) \
                    on Linux, and KEEL_DISABLE_AMX unset; this machine has no usable AMX",
        );
    }
    ENABLED.store(on, Ordering::Relaxed);
    Ok(())
}

/// Whether [`set_enabled`] turned bf16 products on.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The specification of a bf16 product: `C = alpha op(A) op(B) + beta C` on row-major C, with
/// op(A) `m x k` at element strides (`rsa`, `csa`) and op(B) `k x n` at (`rsb`, `csb`). With
/// `beta == 0` C is overwritten (not read), as in the f32 path.
#[allow(clippy::too_many_arguments)]
pub fn reference(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    (rsa, csa): (usize, usize),
    b: &[f32],
    (rsb, csb): (usize, usize),
    beta: f32,
    c: &mut [f32],
) {
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f32;
            for p in 0..k {
                let x = bf16_to_f32(round_bf16(a[i * rsa + p * csa]));
                let y = bf16_to_f32(round_bf16(b[p * rsb + j * csb]));
                s += x * y;
            }
            let cij = &mut c[i * n + j];
            *cij = if beta == 0.0 {
                alpha * s
            } else {
                alpha * s + beta * *cij
            };
        }
    }
}

/// [`reference`]'s product on AMX. Returns false (and touches nothing) when AMX is not
/// [`available`]; the caller then runs its f32 product.
///
/// # Safety
/// The pointers must describe valid matrices of the stated shapes and element strides, C (row
/// stride `rsc`, unit column stride) must not overlap A or B, and nothing else may access C
/// during the call.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: (*const f32, isize, isize),
    b: (*const f32, isize, isize),
    beta: f32,
    c: (*mut f32, isize),
) -> bool {
    if !available() {
        return false;
    }
    // SAFETY: forwarded from the caller; AMX is available.
    unsafe { imp::gemm(m, n, k, alpha, a, b, beta, c) };
    true
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod imp {
    use std::arch::asm;
    use std::cell::RefCell;
    use std::sync::OnceLock;

    use super::round_bf16;

    /// Rows of a tile (and f32 or u32 columns of a 64-byte tile row).
    const T: usize = 16;
    /// Side of the C block that one pass over k computes (2 x 2 tiles).
    const BLOCK: usize = 2 * T;
    /// k per `TDPBF16PS` (64 bytes of bf16 per tile row).
    const KT: usize = 32;

    pub fn available() -> bool {
        static OK: OnceLock<bool> = OnceLock::new();
        *OK.get_or_init(|| {
            if std::env::var_os("KEEL_DISABLE_AMX").is_some_and(|v| v == "1") {
                return false;
            }
            #[allow(unused_unsafe)]
            // SAFETY: CPUID leaf 7 exists on every x86-64 CPU that Rust targets.
            let leaf7 = unsafe { std::arch::x86_64::__cpuid_count(7, 0) };
            let amx_bf16 = leaf7.edx & (1 << 22) != 0;
            let amx_tile = leaf7.edx & (1 << 24) != 0;
            // The packing is vectorized with AVX-512 (every AMX CPU has it).
            let avx512 = is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl");
            if !(amx_bf16 && amx_tile && avx512) {
                return false;
            }
            const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
            const XFEATURE_XTILEDATA: libc::c_long = 18;
            // SAFETY: asks the kernel for AMX tile state for this process; no memory is passed.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_arch_prctl,
                    ARCH_REQ_XCOMP_PERM,
                    XFEATURE_XTILEDATA,
                )
            };
            r == 0
        })
    }

    /// Packed operands and a C block, per thread, grown once and reused (no allocation in a
    /// training loop after the first products).
    struct Scratch {
        a: Vec<u32>,
        b: Vec<u32>,
        a_tmp: Vec<u32>,
        b_tmp: Vec<u32>,
        c: [f32; BLOCK * BLOCK],
    }

    thread_local! {
        static SCRATCH: RefCell<Scratch> = const {
            RefCell::new(Scratch {
                a: Vec::new(),
                b: Vec::new(),
                a_tmp: Vec::new(),
                b_tmp: Vec::new(),
                c: [0.0; BLOCK * BLOCK],
            })
        };
    }

    /// The 64-byte tile configuration: palette 1, eight tiles of 16 rows x 64 bytes.
    #[repr(C, align(64))]
    struct TileConfig([u8; 64]);

    const CONFIG: TileConfig = {
        let mut c = [0u8; 64];
        c[0] = 1;
        let mut t = 0;
        while t < 8 {
            c[16 + 2 * t] = 64; // bytes per row (u16, little end first)
            c[48 + t] = T as u8; // rows
            t += 1;
        }
        TileConfig(c)
    };

    /// `dst[i] = (bf16(lo[i]), bf16(hi[i]))` as one u32, low half first (high half zero
    /// without `hi`: the last row of an odd k). Vectorized: AMX CPUs all have AVX-512 (checked
    /// in [`available`]), and the crate is built for baseline x86-64.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    #[inline]
    fn convert_pairs(lo: &[f32], hi: Option<&[f32]>, dst: &mut [u32]) {
        match hi {
            Some(hi) => {
                for ((d, l), h) in dst.iter_mut().zip(lo).zip(hi) {
                    *d = u32::from(round_bf16(*l)) | (u32::from(round_bf16(*h)) << 16);
                }
            }
            None => {
                for (d, l) in dst.iter_mut().zip(lo) {
                    *d = u32::from(round_bf16(*l));
                }
            }
        }
    }

    /// `dst[i] = (bf16(src[2i]), bf16(src[2i + 1]))`; an odd last element pairs with zero.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    #[inline]
    fn convert_adjacent(src: &[f32], dst: &mut [u32]) {
        let pairs = src.chunks_exact(2);
        let last = pairs.remainder().first().map(|x| u32::from(round_bf16(*x)));
        let full = src.len() / 2;
        let (head, rest) = dst.split_at_mut(full.min(dst.len()));
        for (d, p) in head.iter_mut().zip(pairs) {
            *d = u32::from(round_bf16(p[0])) | (u32::from(round_bf16(p[1])) << 16);
        }
        if let (Some(d), Some(l)) = (rest.first_mut(), last) {
            *d = l;
        }
    }

    /// Line `i` of a matrix stored with element strides: `len` elements `base + i * line + t`.
    ///
    /// # Safety
    /// Those elements must be valid.
    unsafe fn line<'a>(base: *const f32, i: usize, line: isize, len: usize) -> &'a [f32] {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts(base.offset(i as isize * line), len) }
    }

    /// Both packed operands are tiles of 16 rows x 16 u32 (one bf16 pair per u32), stored whole
    /// (1 KiB each) so that a tile load reads one contiguous KiB. (Rows of a row-major packing
    /// are a power of two apart, and a tile's 16 rows then fall into a few cache sets: loads
    /// stalled on conflict misses.)
    ///
    /// Packed A: tile (row block ib, k block kb) at `(ib * kp / 32 + kb) * 256`; its row `ii`
    /// holds the pairs (A[i][2q], A[i][2q + 1]) of row i = 16 ib + ii, for the 16 pairs q of
    /// the k block. Packed B: tile (kb, column block jb) at `(kb * np / 16 + jb) * 256`; its row
    /// `rr` holds the pairs (B[2r][j], B[2r + 1][j]) of pair-row r = 16 kb + rr for its 16
    /// columns j (AMX's layout for B).
    const TILE: usize = T * T;

    /// `dst[a][b] = src[b * stride + a]` for a 16 x 16 block: one tile from 16 lines of `src`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    #[inline]
    fn transpose_block(src: &[u32], stride: usize, dst: &mut [u32]) {
        let src = &src[..15 * stride + T];
        let dst = &mut dst[..TILE];
        for (a, row) in dst.chunks_exact_mut(T).enumerate() {
            for (b, d) in row.iter_mut().enumerate() {
                *d = src[b * stride + a];
            }
        }
    }

    /// Packs op(A) (`m x k` at strides `rs`, `cs`, one of them 1) into tiles, zero padded to
    /// `mp x kp`. `tmp` holds op(A)'s pairs column-major when op(A) is stored transposed (the
    /// output gradient in a weight gradient), to be transposed a tile at a time.
    ///
    /// # Safety
    /// `a` must be valid for every element of op(A), and the CPU must have AVX-512 (BW, VL).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn pack_a(
        dst: &mut [u32],
        tmp: &mut Vec<u32>,
        (a, rs, cs): (*const f32, isize, isize),
        (m, k, mp, kp): (usize, usize, usize, usize),
    ) {
        let k_tiles = kp / KT;
        if cs == 1 {
            if m != mp || k != kp {
                dst.fill(0);
            }
            for i in 0..m {
                // SAFETY: row i of op(A) is k contiguous elements.
                let src = unsafe { line(a, i, rs, k) };
                for (kb, chunk) in src.chunks(KT).enumerate() {
                    let at = ((i / T) * k_tiles + kb) * TILE + (i % T) * T;
                    convert_adjacent(chunk, &mut dst[at..at + T]);
                }
            }
            return;
        }
        // Stored transposed (rs == 1): column p of op(A) is contiguous. tmp[r][i] holds the
        // pair (A[i][2r], A[i][2r + 1]), rows of mp (zero padded), kp / 2 of them.
        let half = k.div_ceil(2);
        tmp.clear();
        tmp.resize(kp / 2 * mp, 0);
        for (r, row) in tmp.chunks_exact_mut(mp).take(half).enumerate() {
            // SAFETY: columns 2r and (when < k) 2r + 1 of op(A) are m contiguous elements.
            let lo = unsafe { line(a, 2 * r, cs, m) };
            let hi = (2 * r + 1 < k).then(|| unsafe { line(a, 2 * r + 1, cs, m) });
            convert_pairs(lo, hi, &mut row[..m]);
        }
        for (t, tile) in dst.chunks_exact_mut(TILE).enumerate() {
            let (ib, kb) = (t / k_tiles, t % k_tiles);
            transpose_block(&tmp[kb * T * mp + ib * T..], mp, tile);
        }
    }

    /// Packs op(B) (`k x n` at strides `rs`, `cs`, one of them 1) into tiles, zero padded to
    /// `kp / 2` pair-rows x `np`. `tmp` holds op(B)'s pairs column by column when op(B) is
    /// stored transposed (a weight matrix in a forward pass).
    ///
    /// # Safety
    /// `b` must be valid for every element of op(B), and the CPU must have AVX-512 (BW, VL).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn pack_b(
        dst: &mut [u32],
        tmp: &mut Vec<u32>,
        (b, rs, cs): (*const f32, isize, isize),
        (k, n, kp, np): (usize, usize, usize, usize),
    ) {
        let half = k.div_ceil(2);
        let n_tiles = np / T;
        if cs == 1 {
            if n != np || k != kp {
                dst.fill(0);
            }
            for r in 0..half {
                // SAFETY: rows 2r and (when < k) 2r + 1 of op(B) are n contiguous elements.
                let lo = unsafe { line(b, 2 * r, rs, n) };
                let hi = (2 * r + 1 < k).then(|| unsafe { line(b, 2 * r + 1, rs, n) });
                for (jb, l) in lo.chunks(T).enumerate() {
                    let at = ((r / T) * n_tiles + jb) * TILE + (r % T) * T;
                    let h = hi.map(|h| &h[jb * T..]);
                    convert_pairs(l, h, &mut dst[at..at + l.len()]);
                }
            }
            return;
        }
        // Stored transposed (rs == 1): column j of op(B) is contiguous, so its pairs are
        // adjacent elements. tmp[j][r] holds them, rows of kp / 2 (zero padded), np of them.
        tmp.clear();
        tmp.resize(np * (kp / 2), 0);
        for (j, row) in tmp.chunks_exact_mut(kp / 2).take(n).enumerate() {
            // SAFETY: column j of op(B), k elements.
            convert_adjacent(unsafe { line(b, j, cs, k) }, row);
        }
        for (t, tile) in dst.chunks_exact_mut(TILE).enumerate() {
            let (kb, jb) = (t / n_tiles, t % n_tiles);
            transpose_block(&tmp[jb * T * (kp / 2) + kb * T..], kp / 2, tile);
        }
    }

    /// One row of a C block: `c = alpha acc (+ beta c)`; with beta 0, C is not read.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    #[inline]
    fn store_row(c: &mut [f32], acc: &[f32], alpha: f32, beta: f32) {
        if beta == 0.0 {
            for (cv, s) in c.iter_mut().zip(acc) {
                *cv = alpha * s;
            }
        } else {
            for (cv, s) in c.iter_mut().zip(acc) {
                *cv = alpha * s + beta * *cv;
            }
        }
    }

    /// # Safety
    /// As [`super::gemm`], and AMX must be available.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn gemm(
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        a: (*const f32, isize, isize),
        b: (*const f32, isize, isize),
        beta: f32,
        (c, rsc): (*mut f32, isize),
    ) {
        if m == 0 || n == 0 {
            return;
        }
        let (mp, np, kp) = (
            m.next_multiple_of(BLOCK),
            n.next_multiple_of(BLOCK),
            k.max(1).next_multiple_of(KT),
        );
        SCRATCH.with_borrow_mut(|s| {
            if s.a.len() < mp * kp / 2 {
                s.a.resize(mp * kp / 2, 0);
            }
            if s.b.len() < kp / 2 * np {
                s.b.resize(kp / 2 * np, 0);
            }
            let ap = &mut s.a[..mp * kp / 2];
            let bp = &mut s.b[..kp / 2 * np];
            // SAFETY: the caller's contract covers every element read; `available` checked
            // AVX-512.
            unsafe {
                pack_a(ap, &mut s.a_tmp, a, (m, k, mp, kp));
                pack_b(bp, &mut s.b_tmp, b, (k, n, kp, np));
            }
            let (ap, bp) = (ap.as_ptr(), bp.as_ptr());
            let (a_tiles, b_tiles) = (kp / KT, np / T); // tiles per row block / per k block
            let tile_row = 64usize; // bytes per tile row, packed and in `out` halves
            let out = &mut s.c;
            // SAFETY: CONFIG is a valid palette-1 configuration; every tile load reads one
            // whole packed tile (1 KiB) inside `ap` / `bp` (row, column and k blocks stay below
            // mp, np and kp), every store writes 16 rows of 64 bytes inside `out` (a 32 x 32
            // f32 block, rows 128 bytes apart); C rows and columns written are below m and n.
            unsafe {
                asm!("ldtilecfg [{0}]", in(reg) CONFIG.0.as_ptr(), options(nostack));
                for ib in (0..mp / T).step_by(2) {
                    for jb in (0..np / T).step_by(2) {
                        asm!(
                            "tilezero tmm0",
                            "tilezero tmm1",
                            "tilezero tmm2",
                            "tilezero tmm3",
                            options(nostack, nomem)
                        );
                        for kb in 0..a_tiles {
                            let a0 = ap.add((ib * a_tiles + kb) * TILE);
                            let a1 = a0.add(a_tiles * TILE);
                            let b0 = bp.add((kb * b_tiles + jb) * TILE);
                            let b1 = b0.add(TILE);
                            asm!(
                                "tileloadd tmm4, [{a0} + {s}*1]",
                                "tileloadd tmm6, [{b0} + {s}*1]",
                                "tileloadd tmm7, [{b1} + {s}*1]",
                                "tdpbf16ps tmm0, tmm4, tmm6",
                                "tileloadd tmm5, [{a1} + {s}*1]",
                                "tdpbf16ps tmm1, tmm4, tmm7",
                                "tdpbf16ps tmm2, tmm5, tmm6",
                                "tdpbf16ps tmm3, tmm5, tmm7",
                                a0 = in(reg) a0,
                                a1 = in(reg) a1,
                                b0 = in(reg) b0,
                                b1 = in(reg) b1,
                                s = in(reg) tile_row,
                                options(nostack, readonly)
                            );
                        }
                        let o = out.as_mut_ptr();
                        asm!(
                            "tilestored [{o0} + {s}*1], tmm0",
                            "tilestored [{o1} + {s}*1], tmm1",
                            "tilestored [{o2} + {s}*1], tmm2",
                            "tilestored [{o3} + {s}*1], tmm3",
                            o0 = in(reg) o,
                            o1 = in(reg) o.add(T),
                            o2 = in(reg) o.add(T * BLOCK),
                            o3 = in(reg) o.add(T * BLOCK + T),
                            s = in(reg) BLOCK * 4,
                            options(nostack)
                        );
                        // The valid part of the block into C.
                        let (i, j) = (ib * T, jb * T);
                        let rows = BLOCK.min(m.saturating_sub(i));
                        let cols = BLOCK.min(n.saturating_sub(j));
                        for (r, acc) in out.chunks_exact(BLOCK).take(rows).enumerate() {
                            let crow = std::slice::from_raw_parts_mut(
                                c.offset((i + r) as isize * rsc).add(j),
                                cols,
                            );
                            store_row(crow, acc, alpha, beta);
                        }
                    }
                }
                asm!("tilerelease", options(nostack, nomem));
            }
        });
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod imp {
    pub fn available() -> bool {
        false
    }

    /// Never called: [`super::gemm`] checks [`available`] first.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn gemm(
        _: usize,
        _: usize,
        _: usize,
        _: f32,
        _: (*const f32, isize, isize),
        _: (*const f32, isize, isize),
        _: f32,
        _: (*mut f32, isize),
    ) {
    }
}

#[cfg(test)]
mod tests;
