//! The `.cu` sources (kept in `kernels/`), compiled with NVRTC once per process and loaded into
//! each [`super::CudaBackend`]'s context.

use std::sync::{Arc, OnceLock};

use cudarc::driver::{CudaContext, CudaFunction};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions, Ptx};

use crate::nn::Activation;

const COMMON: &str = include_str!("kernels/common.cuh");

/// (module name, source, entry points).
const MODULES: [(&str, &str, &[&str]); 3] = [
    (
        "elementwise",
        include_str!("kernels/elementwise.cu"),
        &[
            "keel_fill",
            "keel_scale",
            "keel_polyak",
            "keel_bias_act_fwd",
            "keel_bias_act_fwd_pre",
            "keel_act_bwd",
            "keel_act_bwd_bias",
            "keel_adam",
            "keel_sum_squares",
        ],
    ),
    (
        "spectral",
        include_str!("kernels/spectral.cu"),
        &["keel_spectral_step", "keel_spectral_backward"],
    ),
    (
        "random",
        include_str!("kernels/random.cu"),
        &[
            "keel_normal",
            "keel_uniform_index",
            "keel_rng_advance",
            "keel_gather_rows",
        ],
    ),
];

/// NVRTC options. No `--use_fast_math`: it would swap `tanhf`/`expf` for approximations (the
/// forward pass of `Tanh` must stay libm-accurate, it is what the runtime computes), and
/// `--fmad=false` keeps every `a * b + c` rounded twice as on the CPU, so the elementwise
/// kernels reproduce `CpuBackend` exactly except for the transcendental functions. No `arch`:
/// NVRTC's default virtual architecture is JIT-compiled by the driver for whatever GPU it finds.
fn options(name: &str) -> CompileOptions {
    CompileOptions {
        fmad: Some(false),
        name: Some(format!("{name}.cu")),
        ..Default::default()
    }
}

/// PTX of every module, compiled on first use (NVRTC takes a noticeable fraction of a second).
pub(super) fn ptx() -> Result<&'static [Ptx], String> {
    static PTX: OnceLock<Result<Vec<Ptx>, String>> = OnceLock::new();
    PTX.get_or_init(|| {
        MODULES
            .iter()
            .map(|(name, src, _)| {
                compile_ptx_with_opts(format!("{COMMON}\n{src}"), options(name))
                    .map_err(|e| format!("NVRTC failed on kernels/{name}.cu: {e}"))
            })
            .collect()
    })
    .as_ref()
    .map(Vec::as_slice)
    .map_err(Clone::clone)
}

/// Every kernel, loaded into one context.
#[derive(Debug)]
pub(super) struct Kernels {
    pub fill: CudaFunction,
    pub scale: CudaFunction,
    pub polyak: CudaFunction,
    pub bias_act_fwd: CudaFunction,
    pub bias_act_fwd_pre: CudaFunction,
    pub act_bwd: CudaFunction,
    pub act_bwd_bias: CudaFunction,
    pub adam: CudaFunction,
    pub sum_squares: CudaFunction,
    pub spectral_step: CudaFunction,
    pub spectral_backward: CudaFunction,
    pub normal: CudaFunction,
    pub uniform_index: CudaFunction,
    pub rng_advance: CudaFunction,
    pub gather_rows: CudaFunction,
}

impl Kernels {
    pub fn load(ctx: &Arc<CudaContext>) -> Result<Self, String> {
        let mut funcs = Vec::new();
        for (ptx, (name, _, entries)) in ptx()?.iter().zip(MODULES.iter()) {
            let module = ctx
                .load_module(ptx.clone())
                .map_err(|e| format!("loading kernels/{name}.cu: {e:?}"))?;
            for entry in entries.iter() {
                funcs.push(
                    module
                        .load_function(entry)
                        .map_err(|e| format!("loading {entry}: {e:?}"))?,
                );
            }
        }
        let mut it = funcs.into_iter();
        let mut next = || it.next().expect("kernel list and MODULES agree");
        Ok(Self {
            fill: next(),
            scale: next(),
            polyak: next(),
            bias_act_fwd: next(),
            bias_act_fwd_pre: next(),
            act_bwd: next(),
            act_bwd_bias: next(),
            adam: next(),
            sum_squares: next(),
            spectral_step: next(),
            spectral_backward: next(),
            normal: next(),
            uniform_index: next(),
            rng_advance: next(),
            gather_rows: next(),
        })
    }
}

/// The activation's code in `elementwise.cu`.
pub(super) fn act_code(act: Activation) -> i32 {
    match act {
        Activation::Identity => 0,
        Activation::Relu => 1,
        Activation::Silu => 2,
        Activation::Tanh => 3,
        Activation::FastTanh => 4,
    }
}
