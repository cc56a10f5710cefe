//! The dense layer's inner loop for hard-float Arm (Cortex-M4F/M7/M33, VFPv4 and later), in
//! assembly, because no Rust formulation made LLVM emit it.
//!
//! An M4F has no f32 SIMD: every multiply-accumulate is one `vmla.f32`, so instructions per MAC
//! can only approach 1 by loading many weights per instruction. `vldmia` loads 8 consecutive f32
//! into 8 registers in one instruction; LLVM only forms it when its register allocator happens to
//! put consecutive loads in consecutive registers, which it did not for this loop (measured in
//! QEMU on the 64x64 layer: 4.5 instructions per MAC for the scalar loop, 2.6 for a hand-unrolled
//! one, 1.2 here).
//!
//! Bit-for-bit contract with [`super::dense_blocks_portable`]: each row's products are added to
//! its accumulator (the bias) in input order, one rounding for the product and one for the sum
//! (`vmla.f32` is the unfused multiply-add, unlike `vfma.f32`). The unit test there checks the
//! portable side; the QEMU closed-loop test checks this side against the host, action by action.
#![allow(unsafe_code)]

use core::arch::asm;

/// Stores the accumulators s24-s27 to `{y}` (advancing it) through a ReLU on the bits, in core
/// registers `{t0}`, `{t1}`: a set sign bit clears the word (+0.0). Eight instructions for four
/// outputs, against sixteen for compare, FPSCR transfer and conditional move.
macro_rules! relu_store_4 {
    () => {
        concat!(
            "vmov {t0}, {t1}, s24, s25\n",
            "bic {t0}, {t0}, {t0}, asr #31\n",
            "bic {t1}, {t1}, {t1}, asr #31\n",
            "strd {t0}, {t1}, [{y}], #8\n",
            "vmov {t0}, {t1}, s26, s27\n",
            "bic {t0}, {t0}, {t0}, asr #31\n",
            "bic {t1}, {t1}, {t1}, asr #31\n",
            "strd {t0}, {t1}, [{y}], #8",
        )
    };
}

/// The loop of [`dense_blocks`] with `$epilogue` (instructions storing s24-s27 to `{y}` and
/// advancing it; `{t0}`, `{t1}` are free) after each block: one `asm!` per epilogue, one text.
macro_rules! dense_blocks_asm {
    ($x:expr, $n:expr, $w:expr, $bias:expr, $y:expr, $blocks:expr, $epilogue:expr) => {
        asm!(
            "vpush {{s0-s27}}",
            "1:",
            // Accumulators start at the block's four biases; rows 1-3 follow row 0 by n each.
            "vldmia {bias}!, {{s24-s27}}",
            "add {t0}, {p0}, {n}, lsl #2",
            "add {t1}, {t0}, {n}, lsl #2",
            "add {p3}, {t1}, {n}, lsl #2",
            "lsrs {cnt}, {n}, #3",
            "beq 3f",
            "2:",
            "vldmia {x}!, {{s0-s7}}",
            "vldmia {p0}!, {{s8-s15}}",
            "vldmia {t0}!, {{s16-s23}}",
            // Rows 0 and 1 interleaved: each row's chain stays in input order, and the FPU
            // gets an independent instruction between dependent ones.
            "vmla.f32 s24, s0, s8",
            "vmla.f32 s25, s0, s16",
            "vmla.f32 s24, s1, s9",
            "vmla.f32 s25, s1, s17",
            "vmla.f32 s24, s2, s10",
            "vmla.f32 s25, s2, s18",
            "vmla.f32 s24, s3, s11",
            "vmla.f32 s25, s3, s19",
            "vmla.f32 s24, s4, s12",
            "vmla.f32 s25, s4, s20",
            "vmla.f32 s24, s5, s13",
            "vmla.f32 s25, s5, s21",
            "vmla.f32 s24, s6, s14",
            "vmla.f32 s25, s6, s22",
            "vmla.f32 s24, s7, s15",
            "vmla.f32 s25, s7, s23",
            "vldmia {t1}!, {{s8-s15}}",
            "vldmia {p3}!, {{s16-s23}}",
            "vmla.f32 s26, s0, s8",
            "vmla.f32 s27, s0, s16",
            "vmla.f32 s26, s1, s9",
            "vmla.f32 s27, s1, s17",
            "vmla.f32 s26, s2, s10",
            "vmla.f32 s27, s2, s18",
            "vmla.f32 s26, s3, s11",
            "vmla.f32 s27, s3, s19",
            "vmla.f32 s26, s4, s12",
            "vmla.f32 s27, s4, s20",
            "vmla.f32 s26, s5, s13",
            "vmla.f32 s27, s5, s21",
            "vmla.f32 s26, s6, s14",
            "vmla.f32 s27, s6, s22",
            "vmla.f32 s26, s7, s15",
            "vmla.f32 s27, s7, s23",
            "subs {cnt}, {cnt}, #1",
            "bne 2b",
            "3:",
            "ands {cnt}, {n}, #7",
            "beq 5f",
            "4:",
            "vldmia {x}!, {{s0}}",
            "vldmia {p0}!, {{s8}}",
            "vldmia {t0}!, {{s9}}",
            "vldmia {t1}!, {{s10}}",
            "vldmia {p3}!, {{s11}}",
            "vmla.f32 s24, s0, s8",
            "vmla.f32 s25, s0, s9",
            "vmla.f32 s26, s0, s10",
            "vmla.f32 s27, s0, s11",
            "subs {cnt}, {cnt}, #1",
            "bne 4b",
            "5:",
            // Back to the start of x; the next block starts where row 3 ended.
            "sub {x}, {x}, {n}, lsl #2",
            "mov {p0}, {p3}",
            $epilogue,
            "subs {blocks}, {blocks}, #1",
            "bne 1b",
            "vpop {{s0-s27}}",
            x = inout(reg) $x => _,
            n = in(reg) $n,
            p0 = inout(reg) $w => _,
            bias = inout(reg) $bias => _,
            y = inout(reg) $y => _,
            blocks = inout(reg) $blocks => _,
            t0 = out(reg) _,
            t1 = out(reg) _,
            p3 = out(reg) _,
            cnt = out(reg) _,
        )
    };
}

/// [`dense_blocks`] with ReLU for a layer of `$n` inputs (`$n <= 4`): x stays in s0-s3 for the
/// whole layer and each block's `4 $n` weights arrive in one `vldmia`, so a block costs its
/// `4 $n` multiply-adds and 12 more instructions. A first layer is this narrow (an observation of
/// 1-4 values) and the general loop would spend 11 instructions on every column of 4 MACs.
macro_rules! small_relu_blocks_asm {
    ($x:expr, $w:expr, $bias:expr, $y:expr, $blocks:expr, $xregs:literal, $wregs:literal,
     $($mla:literal),+) => {
        asm!(
            "vpush {{s0-s27}}",
            concat!("vldmia {x}, {{", $xregs, "}}"),
            "1:",
            "vldmia {bias}!, {{s24-s27}}",
            concat!("vldmia {w}!, {{", $wregs, "}}"),
            $($mla,)+
            relu_store_4!(),
            "subs {blocks}, {blocks}, #1",
            "bne 1b",
            "vpop {{s0-s27}}",
            x = in(reg) $x,
            w = inout(reg) $w => _,
            bias = inout(reg) $bias => _,
            y = inout(reg) $y => _,
            blocks = inout(reg) $blocks => _,
            t0 = out(reg) _,
            t1 = out(reg) _,
        )
    };
}

/// [`super::dense_blocks_portable`]: for every block `i` of four rows and `r < 4`,
/// `y[i][r] = f(bias[i][r] + sum_k x[k] w[(4 i + r) n + k])` with `n = x.len()`, each row's
/// products added in input order, `f` the ReLU (as [`crate::activation`] defines it, on the
/// bits) if `relu` and the identity otherwise. Eight columns per loop pass, then one at a time.
/// `false`, and `y` untouched, unless `w` is exactly `bias.len()` blocks and `y` as long as
/// `bias`.
#[inline]
pub(super) fn dense_blocks(
    x: &[f32],
    w: &[f32],
    bias: &[[f32; 4]],
    y: &mut [[f32; 4]],
    relu: bool,
) -> bool {
    if !super::blocks_fit(x, w, bias, y) {
        return false;
    }
    let (n, blocks) = (x.len(), bias.len());
    // SAFETY: per block, the four row pointers (block start + r n, r < 4) each have n values
    // ahead of them inside `w` (exactly 4 n per block, `blocks` blocks), as does `x`. The two
    // inner loops run n / 8 and n % 8 times (a count of zero skips its loop) and read 8 and 1
    // values per pass from each of the five, n in all; `x` is rewound by n after each block. Each
    // block reads one `[f32; 4]` of `bias` and writes one of `y`, `blocks` of each, the slices'
    // full extents (no other memory is written). f32 data is 4-byte aligned, as `vldmia`,
    // `vstmia` and `strd` require. Every FP register used (s0-s27) is pushed first and popped
    // last, so no value the compiler keeps in them is disturbed (this also avoids naming
    // s-registers as operands, which needs the `vfp2` feature that single-precision M4F targets
    // lack); the stack pointer ends where it started. The flags change, which `asm!` assumes.
    // The narrow-layer variants read x[..n] once and each block's 4 n weights in one load: the
    // same values, in the same order, as the general loop.
    unsafe {
        match n {
            1 if relu => small_relu_blocks_asm!(
                x.as_ptr(),
                w.as_ptr(),
                bias.as_ptr(),
                y.as_mut_ptr(),
                blocks,
                "s0",
                "s8-s11",
                "vmla.f32 s24, s0, s8",
                "vmla.f32 s25, s0, s9",
                "vmla.f32 s26, s0, s10",
                "vmla.f32 s27, s0, s11"
            ),
            2 if relu => small_relu_blocks_asm!(
                x.as_ptr(),
                w.as_ptr(),
                bias.as_ptr(),
                y.as_mut_ptr(),
                blocks,
                "s0-s1",
                "s8-s15",
                "vmla.f32 s24, s0, s8",
                "vmla.f32 s24, s1, s9",
                "vmla.f32 s25, s0, s10",
                "vmla.f32 s25, s1, s11",
                "vmla.f32 s26, s0, s12",
                "vmla.f32 s26, s1, s13",
                "vmla.f32 s27, s0, s14",
                "vmla.f32 s27, s1, s15"
            ),
            3 if relu => small_relu_blocks_asm!(
                x.as_ptr(),
                w.as_ptr(),
                bias.as_ptr(),
                y.as_mut_ptr(),
                blocks,
                "s0-s2",
                "s8-s19",
                "vmla.f32 s24, s0, s8",
                "vmla.f32 s24, s1, s9",
                "vmla.f32 s24, s2, s10",
                "vmla.f32 s25, s0, s11",
                "vmla.f32 s25, s1, s12",
                "vmla.f32 s25, s2, s13",
                "vmla.f32 s26, s0, s14",
                "vmla.f32 s26, s1, s15",
                "vmla.f32 s26, s2, s16",
                "vmla.f32 s27, s0, s17",
                "vmla.f32 s27, s1, s18",
                "vmla.f32 s27, s2, s19"
            ),
            4 if relu => small_relu_blocks_asm!(
                x.as_ptr(),
                w.as_ptr(),
                bias.as_ptr(),
                y.as_mut_ptr(),
                blocks,
                "s0-s3",
                "s8-s23",
                "vmla.f32 s24, s0, s8",
                "vmla.f32 s24, s1, s9",
                "vmla.f32 s24, s2, s10",
                "vmla.f32 s24, s3, s11",
                "vmla.f32 s25, s0, s12",
                "vmla.f32 s25, s1, s13",
                "vmla.f32 s25, s2, s14",
                "vmla.f32 s25, s3, s15",
                "vmla.f32 s26, s0, s16",
                "vmla.f32 s26, s1, s17",
                "vmla.f32 s26, s2, s18",
                "vmla.f32 s26, s3, s19",
                "vmla.f32 s27, s0, s20",
                "vmla.f32 s27, s1, s21",
                "vmla.f32 s27, s2, s22",
                "vmla.f32 s27, s3, s23"
            ),
            _ if relu => dense_blocks_asm!(
                x.as_ptr(),
                n,
                w.as_ptr(),
                bias.as_ptr(),
                y.as_mut_ptr(),
                blocks,
                relu_store_4!()
            ),
            _ => dense_blocks_asm!(
                x.as_ptr(),
                n,
                w.as_ptr(),
                bias.as_ptr(),
                y.as_mut_ptr(),
                blocks,
                "vstmia {y}!, {{s24-s27}}"
            ),
        }
    }
    true
}

/// `acc + sum_k x[k] row[k]` in input order, for a layer's last `out_dim % 4` rows
/// ([`super::dot_row_portable`]).
#[inline]
pub(super) fn dot_row(x: &[f32], row: &[f32], mut acc: f32) -> f32 {
    let n = x.len().min(row.len());
    if n == 0 {
        return acc;
    }
    // SAFETY: as in `dense_blocks`, for two slices of at least n values and one accumulator
    // (4 bytes at `acc`); s0-s24 are saved and restored around their use.
    unsafe {
        asm!(
            "vpush {{s0-s24}}",
            "vldr s24, [{acc}]",
            "cmp {n8}, #0",
            "beq 3f",
            "2:",
            "vldmia {x}!, {{s0-s7}}",
            "vldmia {p0}!, {{s8-s15}}",
            "vmla.f32 s24, s0, s8",
            "vmla.f32 s24, s1, s9",
            "vmla.f32 s24, s2, s10",
            "vmla.f32 s24, s3, s11",
            "vmla.f32 s24, s4, s12",
            "vmla.f32 s24, s5, s13",
            "vmla.f32 s24, s6, s14",
            "vmla.f32 s24, s7, s15",
            "subs {n8}, {n8}, #1",
            "bne 2b",
            "3:",
            "cmp {n1}, #0",
            "beq 5f",
            "4:",
            "vldmia {x}!, {{s0}}",
            "vldmia {p0}!, {{s8}}",
            "vmla.f32 s24, s0, s8",
            "subs {n1}, {n1}, #1",
            "bne 4b",
            "5:",
            "vstr s24, [{acc}]",
            "vpop {{s0-s24}}",
            acc = in(reg) &mut acc as *mut f32,
            x = inout(reg) x.as_ptr() => _,
            p0 = inout(reg) row.as_ptr() => _,
            n8 = inout(reg) n / 8 => _,
            n1 = inout(reg) n % 8 => _,
        );
    }
    acc
}
