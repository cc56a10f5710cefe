//! The trainer's neural-network core: MLPs with fused forward/backward passes, Adam, Polyak
//! averaging, gradient clipping and spectral normalization, behind a [`Backend`] trait.
//!
//! [`CpuBackend`] is the reference implementation; a GPU backend only has to implement
//! [`Backend`] (buffers, GEMM, a handful of fused elementwise kernels) for [`Mlp`], [`Adam`] and
//! every algorithm holding an `Mlp<B>` to run on it. See `backend.rs` for the design and `mlp.rs`
//! for the parameter layout and the spectral-norm schedule.
//!
//! Typical use (a critic step with the robust loss of docs/algorithm.md):
//!
//! ```
//! use keel_trainer::nn::{Activation, Adam, AdamConfig, Backprop, CpuBackend, Mlp, MlpConfig};
//! let mut rng = rand::rng();
//! let cfg = MlpConfig { sizes: vec![4, 64, 64, 1], hidden: Activation::Relu,
//!     output: Activation::Identity, spectral_norm: true, spectral_norm_output: true };
//! let (b, lambda) = (32, 0.5f32);
//! let mut q = Mlp::new(&CpuBackend, &cfg, b, &mut rng);
//! let mut opt = Adam::new(&q, AdamConfig::default());
//! let (mut c0, mut c1) = (q.new_cache(b), q.new_cache(b));
//! let sa = vec![0.1f32; b * 4];                  // (s, a) rows
//! let target = vec![1.0f32; b];                  // Bellman targets
//! // 1. FGSM direction: dQ/d(s, a) without parameter gradients.
//! q.forward(&sa, b);
//! let sign: Vec<f32> = q.input_grad_only(&vec![1.0; b], b).iter().map(|g| g.signum()).collect();
//! let sa_adv: Vec<f32> = sa.iter().zip(&sign).enumerate()
//!     .map(|(i, (x, s))| if i % 4 < 3 { x + 0.01 * s } else { *x }).collect(); // perturb s only
//! // 2. Both forwards, then one backward through each: gradients accumulate.
//! let y0 = q.forward_with(&mut c0, &sa, b).to_vec();
//! let y1 = q.forward_with(&mut c1, &sa_adv, b).to_vec();
//! let n = b as f32;
//! let d1: Vec<f32> = y0.iter().zip(&y1).map(|(a, c)| 2.0 * lambda * (c - a) / n).collect();
//! let d0: Vec<f32> = y0.iter().zip(&target).zip(&d1).map(|((a, t), r)| 2.0 * (a - t) / n - r).collect();
//! q.zero_grad();
//! q.backward_with(&mut c0, &d0, b, Backprop::Params);
//! q.backward_with(&mut c1, &d1, b, Backprop::Params);
//! opt.step(&mut q);
//! ```

pub mod activation;
mod adam;
pub mod backend;
pub mod bf16;
mod cache;
mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
mod mlp;
mod passes;
mod spectral;
pub mod threads;

#[cfg(test)]
mod tests_grad;
#[cfg(test)]
mod tests_train;

pub use activation::{fast_tanh_derivative, Activation};
pub use adam::{clip_grad_norm, Adam, AdamConfig, AdamState, WeightDecay};
pub use backend::{AdamHyper, Backend, Mat, MatMut, SpectralSlot};
pub use cache::ForwardCache;
pub use cpu::CpuBackend;
pub use mlp::{Backprop, Mlp, MlpConfig, SpectralState, SPECTRAL_INIT_ITERATIONS};
pub use spectral::top_singular_value;
