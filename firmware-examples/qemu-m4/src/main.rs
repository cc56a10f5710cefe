//! Keel's closed-loop demo on QEMU's `mps2-an386` (Cortex-M4F).
//!
//! At boot the firmware finds the `.keel` policy in its reserved region (`memory.x`), validates
//! it, and then swings the shared pendulum plant (`keel_runtime::plants::pendulum`, the same code
//! the trainer and the host test run) for one episode from a fixed start, asking the policy for
//! every action. An invalid or missing policy is logged with its reason and the loop runs on the
//! fallback action instead: the demo of what a real controller must do.
//!
//! Output is defmt over semihosting (decode with `defmt-print -e <elf>`). The lines starting
//! `start`, `step` and `summary` are parsed by the host test (`tools/tests/qemu_closed_loop.rs`):
//! change them together. Exit status (semihosting): 0 when the policy drove every step,
//! 2 when the fallback was used, 101 on a panic.
#![no_std]
#![no_main]

// Linked for its single-core critical section, which the defmt logger takes.
use cortex_m as _;
use cortex_m_rt::entry;
use defmt::{info, println, warn};
use defmt_semihosting as _;
use keel_runtime::plants::pendulum::{F32Trig, PendulumState, MAX_EPISODE_STEPS};
use keel_runtime::{FormatError, Outcome, Policy, Reason, SafeController, Scratch};

/// Motor off: the command while no valid policy is present.
const FALLBACK: [f32; 1] = [0.0];

/// Hanging almost straight down at rest: the swing-up is the interesting part of the task.
const START: PendulumState<f32> = PendulumState {
    th: 3.0,
    thdot: 0.0,
};

/// Where in the region the blob starts. Normally 0 (word-aligned: weights used in place); the
/// `unaligned-policy` feature shifts it by one byte to measure the byte-decoding path.
const POLICY_OFFSET: usize = if cfg!(feature = "unaligned-policy") {
    1
} else {
    0
};

/// Widest layer this firmware accepts; also sizes `act`'s two buffers (2 x 4 x W bytes).
const CAPACITY: usize = 64;

const EXIT_POLICY: i32 = 0;
const EXIT_FALLBACK: i32 = 2;
const EXIT_PANIC: i32 = 101;

#[entry]
fn main() -> ! {
    let controller = SafeController::from_policy(load(), &FALLBACK);

    // The instruction counter (keel-cost) subtracts this empty window from every measured one.
    keel_cost_begin();
    keel_cost_end();

    let mut state = START;
    println!(
        "start th {=u32:#010x} thdot {=u32:#010x}",
        state.th.to_bits(),
        state.thdot.to_bits()
    );
    let (mut ret, mut action_sum, mut fnv) = (0.0f32, 0.0f32, FNV_OFFSET);
    let mut fallback_steps = 0u32;
    let mut action = [0.0f32; 1];
    // The policy's working memory, kept across steps (zeroed once, not on every `act`).
    let mut scratch = Scratch::<CAPACITY>::new();
    for step in 0..MAX_EPISODE_STEPS {
        let obs = observe(&state);
        keel_cost_begin();
        let outcome = controller.act_with(&obs, &mut action, &mut scratch);
        keel_cost_end();
        if let Outcome::Fallback(reason) = outcome {
            fallback_steps += 1;
            // A load failure was logged at boot; a policy refusing an observation mid-run is news.
            if let Reason::Act(e) = reason {
                warn!(
                    "step {=usize}: policy refused the observation ({}): fallback",
                    step, e
                );
            }
        }
        let a = action[0];
        // Bits as well as the value: the host compares them without trusting float printing.
        println!(
            "step {=usize} action {=f32} bits {=u32:#010x}",
            step,
            a,
            a.to_bits()
        );
        ret += plant_step(&mut state, a);
        action_sum += a;
        fnv = fnv1a(fnv, a.to_bits());
    }
    println!(
        "summary steps {=usize} return {=f32} bits {=u32:#010x} action_sum {=f32} fnv {=u32:#010x} fallback_steps {=u32}",
        MAX_EPISODE_STEPS,
        ret,
        ret.to_bits(),
        action_sum,
        fnv,
        fallback_steps
    );
    semihosting::process::exit(if fallback_steps == 0 {
        EXIT_POLICY
    } else {
        EXIT_FALLBACK
    })
}

/// Finds, validates and reports the policy. Out of line so that decoding the header (several KB
/// of stack, boot only) does not sit in `main`'s frame for the whole run.
#[inline(never)]
fn load() -> Result<Policy<'static, CAPACITY>, FormatError> {
    let region = policy_region();
    info!(
        "policy region at {=usize:#010x}, {=usize} bytes",
        region.as_ptr() as usize,
        region.len()
    );
    let loaded = keel_region::blob(region).and_then(Policy::from_bytes);
    match &loaded {
        Ok(p) => info!(
            "policy ok: {=str} for {=str}, {=usize} parameters, {=usize} bytes, aligned: {=bool}",
            p.metadata().name,
            p.metadata().env_id,
            p.param_count(),
            p.blob_len(),
            p.is_aligned()
        ),
        Err(e) => warn!("policy rejected: {}; running on the fallback action", e),
    }
    loaded
}

// The plant is the demo's stand-in for a real pendulum, in f32: the M4F's FPU is single
// precision, and the trainer's f64 instance (gymnasium-exact) would pull in about 12 KB of
// soft-float and f64 libm code. The host test runs the same f32 instance. Kept out of line so
// keel-cost's flash breakdown can tell it from the controller that a real deployment carries.

#[inline(never)]
fn observe(state: &PendulumState<f32>) -> [f32; 3] {
    state.observation::<F32Trig>()
}

#[inline(never)]
fn plant_step(state: &mut PendulumState<f32>, action: f32) -> f32 {
    state.step::<F32Trig>(action)
}

/// The reserved policy region from `memory.x` (from `POLICY_OFFSET` to its end).
fn policy_region() -> &'static [u8] {
    extern "C" {
        static __policy_start: u8;
        static __policy_end: u8;
    }
    // SAFETY: `memory.x` reserves [__policy_start, __policy_end) for the policy: the linker puts
    // nothing there and this program never writes it, so it is readable, immutable memory for the
    // whole run (QEMU's loader fills it before the first instruction). Only the symbols'
    // addresses are taken, never their values.
    unsafe {
        let start = core::ptr::addr_of!(__policy_start);
        let len = core::ptr::addr_of!(__policy_end) as usize - start as usize;
        core::slice::from_raw_parts(start.add(POLICY_OFFSET), len - POLICY_OFFSET)
    }
}

/// The interrupt part of the vector table: the AN386's 32 lines (UARTs, timers, ...), all unused
/// here, each to cortex-m-rt's `DefaultHandler`. Without a device crate cortex-m-rt would reserve
/// the architecture's maximum of 240.
#[link_section = ".vector_table.interrupts"]
#[no_mangle]
static __INTERRUPTS: [unsafe extern "C" fn(); 32] = {
    extern "C" {
        fn DefaultHandler();
    }
    [DefaultHandler; 32]
};

const FNV_OFFSET: u32 = 0x811c_9dc5;

/// 32-bit FNV-1a over the little-endian bytes of `word`: a digest of the action sequence that
/// the host recomputes from the per-step bits.
fn fnv1a(hash: u32, word: u32) -> u32 {
    word.to_le_bytes()
        .iter()
        .fold(hash, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

// Markers for keel-cost's QEMU plugin, which counts guest instructions from the entry of
// `keel_cost_begin` to the entry of `keel_cost_end`. `no_mangle` keeps the symbols findable,
// `inline(never)` keeps them real calls, different bodies keep LTO from merging them, and asm
// without `nomem` stops the compiler from moving memory accesses of `act` across them.

/// Start of a measured window.
#[no_mangle]
#[inline(never)]
pub extern "C" fn keel_cost_begin() {
    // SAFETY: a single `nop`.
    unsafe { core::arch::asm!("nop") }
}

/// End of a measured window.
#[no_mangle]
#[inline(never)]
pub extern "C" fn keel_cost_end() {
    // SAFETY: two `nop`s.
    unsafe { core::arch::asm!("nop", "nop") }
}

/// Logs and exits with a distinct status. Not `panic-semihosting`: its text would corrupt the defmt
/// stream on stdout. `info` is deliberately not read: touching it (even its location) keeps every
/// panic site's `core::fmt` arguments alive, about 25 KB of float formatting in this program.
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    defmt::error!("panic");
    semihosting::process::exit(EXIT_PANIC)
}
