//! Helper threads for the CPU backend's parallel work, tuned for latency: two independent
//! tasks side by side ([`join_tasks`]: the SAC update's twin critics, a layer's weight and input
//! gradients, the actor's two forwards, the halves of an Adam step) and the halves of one large
//! GEMM (`nn::cpu`). Every split keeps each number's arithmetic as on one thread, so results are
//! bit-identical for any thread count (tests/threads.rs checks whole SAC updates).
//!
//! Why not rayon: a SAC update at SB3's sizes is ~16 GEMMs of ~0.3 ms with a little serial work
//! between them, and a rayon worker that finds no work parks within microseconds; waking it
//! costs ~65 us on this project's 2-core VMs (measured: a 256^3 GEMM split in two took 180 us
//! back to back but 245 us with 100 us of other work between calls). These helpers spin for
//! [`SPIN`] after each job before parking, so the next task of the same update finds them awake.
//!
//! The pool is process-wide: `available_parallelism() - 1` helpers, started on first use.
//! [`set_threads`] sets how many threads the backend may use; the default is 1 (the caller's
//! thread only, no helpers started), so that `keel bench --jobs 2` can run one training per core.
//! On this project's 2-vCPU VMs, two threads make a SAC update at 2x256 1.9 times faster
//! (`cargo bench --bench nn -- sac_update`: 6.23 ms -> 3.31 ms) but the host moves the vCPUs
//! between nearby and distant cores, and in the distant periods two threads gain far less (an
//! earlier version, which only split GEMMs, lost time there: 7.0 s per 1,000 steps against 6.3
//! on one thread).

use std::any::Any;
use std::cell::UnsafeCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// How long an idle helper spins for its next job before parking.
const SPIN: Duration = Duration::from_millis(1);

const IDLE: u8 = 0;
const CLAIMED: u8 = 1;
const RUNNING: u8 = 2;
const DONE: u8 = 3;

/// A job with its lifetime erased; [`join`] keeps the closure alive until the helper is done.
struct Job(*const (dyn Fn() + Sync));

/// One helper's mailbox. `state` orders every access to the cells: the claimer writes `job`
/// between CLAIMED and RUNNING, the helper takes it and writes `panic` between RUNNING and DONE,
/// and the claimer reads `panic` after DONE before setting IDLE.
///
/// Aligned to its own cache lines: the helper spins reading `state`, and hot data of the
/// training thread sharing that line would bounce between the cores.
#[repr(align(128))]
struct Slot {
    state: AtomicU8,
    job: UnsafeCell<Option<Job>>,
    panic: UnsafeCell<Option<Box<dyn Any + Send>>>,
    thread: OnceLock<Thread>,
}

// SAFETY: the cells are only touched by the side that `state` says owns them (see `Slot`), and
// the job pointer is only dereferenced while `join` keeps its closure alive.
unsafe impl Sync for Slot {}
unsafe impl Send for Job {}

/// Threads a GEMM may use (see the module documentation for the default of 1).
static THREADS: AtomicUsize = AtomicUsize::new(1);
static POOL: OnceLock<Vec<&'static Slot>> = OnceLock::new();

fn available() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

/// Sets the threads a CPU GEMM may use (at least 1; capped at the machine's cores).
pub fn set_threads(n: usize) {
    THREADS.store(n.clamp(1, available()), Ordering::Relaxed);
}

/// The threads a CPU GEMM may use: 1 unless [`set_threads`] said otherwise.
pub fn threads() -> usize {
    THREADS.load(Ordering::Relaxed)
}

fn pool() -> &'static [&'static Slot] {
    POOL.get_or_init(|| {
        (1..available())
            .filter_map(|i| {
                let slot: &'static Slot = Box::leak(Box::new(Slot {
                    state: AtomicU8::new(IDLE),
                    job: UnsafeCell::new(None),
                    panic: UnsafeCell::new(None),
                    thread: OnceLock::new(),
                }));
                let handle = thread::Builder::new()
                    .name(format!("keel-gemm-{i}"))
                    .spawn(move || helper(slot))
                    .ok()?;
                slot.thread.set(handle.thread().clone()).ok()?;
                Some(slot)
            })
            .collect()
    })
}

fn helper(slot: &'static Slot) {
    loop {
        let mut since = Instant::now();
        let mut spins = 0u32;
        while slot.state.load(Ordering::Acquire) != RUNNING {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(128) && since.elapsed() > SPIN {
                // `join` unparks after publishing a job, so no wake-up is lost.
                thread::park();
                since = Instant::now();
            } else {
                std::hint::spin_loop();
            }
        }
        // SAFETY: RUNNING hands the cells to this thread (see `Slot`).
        let job = unsafe { (*slot.job.get()).take() };
        if let Some(Job(f)) = job {
            // SAFETY: `join` waits for DONE before its closure can go out of scope.
            let result = panic::catch_unwind(AssertUnwindSafe(|| unsafe { (*f)() }));
            if let Err(payload) = result {
                // SAFETY: as above.
                unsafe { *slot.panic.get() = Some(payload) };
            }
        }
        slot.state.store(DONE, Ordering::Release);
    }
}

/// Waits for a claimed slot's job and frees the slot, also while unwinding from `a`'s panic
/// (the helper may still be reading the caller's closure).
struct Claim(&'static Slot);

impl Claim {
    fn wait(&self) -> Option<Box<dyn Any + Send>> {
        let mut spins = 0u32;
        while self.0.state.load(Ordering::Acquire) != DONE {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) {
                thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        // SAFETY: DONE hands the cells back to the claimer.
        let payload = unsafe { (*self.0.panic.get()).take() };
        self.0.state.store(IDLE, Ordering::Release);
        payload
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.0.state.load(Ordering::Acquire) != IDLE {
            drop(self.wait());
        }
    }
}

/// Runs `a` on this thread and `b` on an idle helper, returning when both are done; both run
/// here, one after the other, when no helper is free. A panic in either is resumed here.
pub fn join(a: impl FnOnce(), b: impl Fn() + Sync) {
    let claimed = pool().iter().find(|s| {
        s.state
            .compare_exchange(IDLE, CLAIMED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    });
    let Some(&slot) = claimed else {
        a();
        b();
        return;
    };
    let claim = Claim(slot);
    let job: &(dyn Fn() + Sync) = &b;
    // SAFETY: only the lifetime is erased; `claim` waits for the helper (DONE) before this
    // function returns or unwinds, so `b` outlives every use of the pointer.
    let job: *const (dyn Fn() + Sync + 'static) = unsafe { std::mem::transmute(job) };
    // SAFETY: CLAIMED gives this thread the job cell.
    unsafe { *slot.job.get() = Some(Job(job)) };
    slot.state.store(RUNNING, Ordering::Release);
    if let Some(t) = slot.thread.get() {
        t.unpark();
    }
    a();
    if let Some(payload) = claim.wait() {
        panic::resume_unwind(payload);
    }
}

/// Runs two independent tasks, `b` on a helper when [`threads`] allows more than one, else
/// both here (`a` first). Unlike [`join`], `b` may hold `&mut` borrows and run once: the SAC
/// update hands each of the twin critics its own task this way.
pub fn join_tasks(a: impl FnOnce(), b: impl FnOnce() + Send) {
    if threads() <= 1 {
        a();
        b();
        return;
    }
    // `join` wants `Fn + Sync` (a helper could in principle call it twice); the mutex makes the
    // one call take `b` out. It is never contended.
    let b = std::sync::Mutex::new(Some(b));
    join(a, || {
        let task = b
            .lock()
            .map(|mut g| g.take())
            .unwrap_or_else(|p| p.into_inner().take());
        if let Some(task) = task {
            task();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn join_runs_both_sides_many_times_and_from_many_threads() {
        let total = AtomicU64::new(0);
        thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for i in 0..2000u64 {
                        join(
                            || {
                                total.fetch_add(i, Ordering::Relaxed);
                            },
                            || {
                                total.fetch_add(1, Ordering::Relaxed);
                            },
                        );
                    }
                });
            }
        });
        assert_eq!(total.load(Ordering::Relaxed), 4 * (1999 * 2000 / 2 + 2000));
    }

    #[test]
    fn a_panic_on_either_side_reaches_the_caller_and_the_pool_survives() {
        let on_helper = panic::catch_unwind(|| join(|| {}, || panic!("helper side")));
        let on_caller = panic::catch_unwind(|| join(|| panic!("caller side"), || {}));
        assert!(on_helper.is_err() && on_caller.is_err());
        let hits = AtomicU64::new(0);
        join(
            || {
                hits.fetch_add(1, Ordering::Relaxed);
            },
            || {
                hits.fetch_add(1, Ordering::Relaxed);
            },
        );
        assert_eq!(hits.load(Ordering::Relaxed), 2);
    }
}
