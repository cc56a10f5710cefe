//! The CUDA training backend (cargo feature `cuda`): [`CudaBackend`] implements
//! [`Backend`](super::Backend) with cuBLAS SGEMM and the kernels in `kernels/*.cu` (compiled by
//! NVRTC at start-up, once per process), on `CudaSlice<f32>` device buffers, through cudarc.
//!
//! Nothing CUDA is needed to build it: cudarc dlopens `libcuda`, `libnvrtc` and `libcublas` at
//! run time. [`probe`] finds out, without panicking, whether they and a device are there:
//!
//! ```no_run
//! # use keel_trainer::nn::cuda;
//! match cuda::probe() {
//!     Ok(gpu) => println!("using {}", gpu.device_name()),
//!     Err(why) => println!("no CUDA device: {why}; using CPU"),
//! }
//! ```
//!
//! Beyond the trait, [`CudaBackend`] keeps sampling on the device: Gaussian noise
//! ([`CudaBackend::normal`]) and replay-batch indices ([`CudaBackend::uniform_indices`],
//! [`CudaBackend::gather_rows`]) from a Philox RNG whose counter lives in device memory
//! ([`DeviceRng`]), so these launches can later be captured in a CUDA graph.
//!
//! Errors: the trait's methods are infallible, so a driver error after a successful [`probe`]
//! (out of memory, a lost device) panics with the CUDA error, like an out-of-range argument.
//!
//! Numerics versus [`CpuBackend`](super::CpuBackend): elementwise kernels are compiled without
//! FMA contraction and without fast math, so Adam, Polyak, scaling, ReLU and fast tanh match it
//! bit for bit; `tanhf`/`expf` (tanh, SiLU) differ by an ulp or two; GEMM and the reductions
//! (sums of squares, bias gradients, power iteration) sum in a different order.

mod backend_impl;
mod kernels;
pub mod rng;
#[cfg(test)]
mod tests;

use core::fmt;
use core::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaContext, CudaSlice, CudaStream, LaunchConfig, PushKernelArg};

use kernels::Kernels;

/// Threads per block of the elementwise kernels.
const BLOCK: u32 = 256;
/// Cap on blocks of the grid-stride kernels (enough to fill an H100 several times over).
const MAX_BLOCKS: usize = 4096;

/// One-dimensional grid-stride launch over `n` items.
fn grid(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(BLOCK as usize).clamp(1, MAX_BLOCKS) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Unwraps a CUDA result, panicking with what failed (see the module documentation).
fn ok<T, E: fmt::Debug>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("CUDA {what} failed: {e:?}"),
    }
}

/// Converts a length to the `long long` the kernels take.
fn ll(n: usize) -> i64 {
    i64::try_from(n).expect("length fits in i64")
}

/// Converts a dimension to the `int` the kernels and cuBLAS take.
fn int(n: usize) -> i32 {
    i32::try_from(n).expect("dimension fits in i32")
}

struct Inner {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    k: Kernels,
    name: String,
}

/// The CUDA backend: a context on one device, one stream every operation is queued on, a cuBLAS
/// handle bound to it and the loaded kernels. Cloning shares all of them.
#[derive(Clone)]
pub struct CudaBackend {
    inner: Arc<Inner>,
}

impl fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CudaBackend")
            .field("device", &self.inner.name)
            .field("ordinal", &self.inner.ctx.ordinal())
            .finish()
    }
}

/// Whether CUDA can be used here, and the backend if so. Never panics: checks that the driver,
/// NVRTC and cuBLAS libraries can be loaded before touching them (cudarc panics otherwise), then
/// creates the context on device 0 inside `catch_unwind`. The error is one line for the user,
/// e.g. "no CUDA driver (libcuda.so not found)".
pub fn probe() -> Result<CudaBackend, String> {
    probe_device(0)
}

/// [`probe`] for device `ordinal`.
pub fn probe_device(ordinal: usize) -> Result<CudaBackend, String> {
    // SAFETY: these only try to dlopen the libraries (and drop them again).
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err("no CUDA driver (libcuda.so not found)".into());
    }
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err("no NVRTC (libnvrtc.so not found; it ships with the CUDA toolkit)".into());
    }
    if !unsafe { cudarc::cublas::sys::is_culib_present() } {
        return Err("no cuBLAS (libcublas.so not found; it ships with the CUDA toolkit)".into());
    }
    match catch_unwind(AssertUnwindSafe(|| CudaBackend::new(ordinal))) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("unknown panic");
            Err(format!("CUDA initialisation panicked: {msg}"))
        }
    }
}

impl CudaBackend {
    /// Creates the context, stream, cuBLAS handle and kernels on device `ordinal`. Prefer
    /// [`probe`], which also guards against missing libraries (this panics on those).
    pub fn new(ordinal: usize) -> Result<Self, String> {
        let count = CudaContext::device_count().map_err(|e| format!("CUDA driver: {e:?}"))?;
        if count <= 0 {
            return Err("no CUDA device (the driver reports 0 devices)".into());
        }
        if ordinal >= count as usize {
            return Err(format!("no CUDA device {ordinal} ({count} present)"));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| format!("creating a context: {e:?}"))?;
        let name = ctx.name().unwrap_or_else(|_| "unknown device".into());
        let stream = ctx
            .new_stream()
            .map_err(|e| format!("creating a stream: {e:?}"))?;
        let blas = CudaBlas::new(stream.clone()).map_err(|e| format!("cuBLAS: {e:?}"))?;
        let k = Kernels::load(&ctx)?;
        Ok(Self {
            inner: Arc::new(Inner {
                ctx,
                stream,
                blas,
                k,
                name,
            }),
        })
    }

    /// The device's name, e.g. "NVIDIA H100 80GB HBM3".
    pub fn device_name(&self) -> &str {
        &self.inner.name
    }

    /// The stream all work is queued on (for CUDA-graph capture later).
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.inner.stream
    }

    /// Waits until all queued work is done.
    pub fn synchronize(&self) {
        ok(self.inner.stream.synchronize(), "stream synchronize");
    }

    fn k(&self) -> &Kernels {
        &self.inner.k
    }

    /// A new device RNG with the given seed, counter 0.
    pub fn rng(&self, seed: u64) -> DeviceRng {
        DeviceRng {
            state: ok(self.inner.stream.clone_htod(&[seed, 0u64][..]), "upload"),
        }
    }

    /// `dst[range] = mean + std * N(0, 1)` from `rng` (which advances by `range.len().div_ceil(4)`
    /// counters). Values equal [`rng::normal_reference`] up to the device's `logf`/`cosf`.
    pub fn normal(
        &self,
        rng: &mut DeviceRng,
        dst: &mut CudaSlice<f32>,
        range: Range<usize>,
        mean: f32,
        std: f32,
    ) {
        let n = range.len();
        if n == 0 {
            return;
        }
        let mut view = dst.slice_mut(range);
        let n_ll = ll(n);
        let mut b = self.inner.stream.launch_builder(&self.k().normal);
        b.arg(&mut view)
            .arg(&n_ll)
            .arg(&mean)
            .arg(&std)
            .arg(&rng.state);
        // SAFETY: `view` holds n floats; the kernel writes indices < n and reads state[0..2].
        ok(unsafe { b.launch(grid(n.div_ceil(4))) }, "keel_normal");
        self.advance(rng, n.div_ceil(4));
    }

    /// `idx[..n]` = independent uniform indices in `0..bound` (replay-batch sampling: `bound` is
    /// the number of filled rows), from `rng`. Equals [`rng::uniform_index_reference`] exactly.
    pub fn uniform_indices(
        &self,
        rng: &mut DeviceRng,
        idx: &mut CudaSlice<u32>,
        n: usize,
        bound: u32,
    ) {
        assert!(bound > 0, "uniform_indices: empty range");
        if n == 0 {
            return;
        }
        let mut view = idx.slice_mut(..n);
        let n_ll = ll(n);
        let mut b = self.inner.stream.launch_builder(&self.k().uniform_index);
        b.arg(&mut view).arg(&n_ll).arg(&bound).arg(&rng.state);
        // SAFETY: `view` holds n indices; the kernel writes indices < n and reads state[0..2].
        ok(
            unsafe { b.launch(grid(n.div_ceil(4))) },
            "keel_uniform_index",
        );
        self.advance(rng, n.div_ceil(4));
    }

    fn advance(&self, rng: &mut DeviceRng, used: usize) {
        let used = used as u64;
        let mut b = self.inner.stream.launch_builder(&self.k().rng_advance);
        b.arg(&mut rng.state).arg(&used);
        let cfg = LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (32, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: one thread adds to state[1] of a 2-element buffer.
        ok(unsafe { b.launch(cfg) }, "keel_rng_advance");
    }

    /// `dst[r * row_len..][..row_len] = src[idx[r] * row_len..][..row_len]` for `r < count`:
    /// gathers a replay batch of rows (observations, actions, ...) by device-side indices.
    /// Panics if `src` could be read out of bounds for an index below `src_rows`; the indices
    /// themselves are the caller's (from [`CudaBackend::uniform_indices`] with `bound <=
    /// src_rows`).
    pub fn gather_rows(
        &self,
        src: &CudaSlice<f32>,
        src_rows: usize,
        row_len: usize,
        idx: &CudaSlice<u32>,
        count: usize,
        dst: &mut CudaSlice<f32>,
    ) {
        assert!(
            src.len() >= src_rows * row_len,
            "gather_rows: src too short"
        );
        assert!(idx.len() >= count, "gather_rows: idx too short");
        assert!(dst.len() >= count * row_len, "gather_rows: dst too short");
        if count == 0 || row_len == 0 {
            return;
        }
        let (count_ll, row_len_i) = (ll(count), int(row_len));
        let mut b = self.inner.stream.launch_builder(&self.k().gather_rows);
        b.arg(src).arg(idx).arg(dst).arg(&count_ll).arg(&row_len_i);
        // SAFETY: dst holds count * row_len floats, idx count indices; reads of src are in
        // bounds for indices below src_rows (the caller's contract above).
        ok(
            unsafe { b.launch(grid(count * row_len)) },
            "keel_gather_rows",
        );
    }

    /// Uploads a host slice into a new device buffer (e.g. replay storage).
    pub fn upload_new<T: cudarc::driver::DeviceRepr>(&self, src: &[T]) -> CudaSlice<T> {
        ok(self.inner.stream.clone_htod(src), "upload")
    }

    /// Downloads a whole device buffer.
    pub fn download_all<T: cudarc::driver::DeviceRepr>(&self, src: &CudaSlice<T>) -> Vec<T> {
        let out = ok(self.inner.stream.clone_dtoh(src), "download");
        self.synchronize();
        out
    }
}

/// Philox RNG state in device memory: `[seed, counter]`.
#[derive(Debug)]
pub struct DeviceRng {
    state: CudaSlice<u64>,
}
