//! Learned dynamics models for MBPO: one model (the method of docs/algorithm.md) or MBPO's
//! probabilistic ensemble (the baseline), through one code path.
//!
//! - [`DynamicsModel`] predicts the normalized state delta `next_obs - obs` (and the reward
//!   unless `predict_reward` is off because the env knows it in closed form) from normalized
//!   `[obs, act]`. Normalizers are refitted on the training split at every retrain (as MBPO's
//!   scaler). Heads: deterministic (MSE) or Gaussian (NLL with PETS' soft log-variance bounds).
//! - Training: a random holdout split (`holdout_ratio`, at most `max_holdout` rows), epochs of
//!   minibatches (each member its own bootstrap or shuffle), early stopping after `patience`
//!   epochs without a 1% holdout improvement, each member's best weights restored, elites
//!   chosen by holdout MSE (of the mean, for both heads, as MBPO). Weights, Adam moments and
//!   per-layer L2 decay carry over between retrains.
//! - The N networks are one [`EnsembleMlp`]: stacked parameters `[N, out, in]` per layer and
//!   activations `[N, rows, width]`, one forward and one backward pass through the layers for
//!   all members (not N model passes). Each layer is the layout of a strided-batched GEMM; the
//!   CPU backend runs it as a loop of N GEMMs over the stacked buffers. N = 1 is the single
//!   model.
//! - [`DynamicsModel::predict`] gives each row a uniformly random elite, drawn as a balanced
//!   random partition of the rows over the elites (mbrl-lib's "random_model" propagation), so
//!   an ensemble's rollouts cost about what a single model's do; only training costs N times.
//!
//! Why 3x128 SiLU and at most 40 epochs by default: measured on 1000 random-action Pendulum
//! transitions, one core of an AMD EPYC (`timing_pendulum_retrain`, fresh model, 40 epochs):
//!
//! | model                   | retrain | predict 10k rows | test mean abs error |
//! |-------------------------|---------|------------------|---------------------|
//! | single 3x128 (default)  | 0.19 s  | 0.025 s          | 0.0034              |
//! | ensemble 7/5 3x128 NLL  | 1.4 s   | 0.026 s          | (sampled)           |
//! | single 3x64             | 0.07 s  | 0.011 s          | 0.0062              |
//! | single 4x200 (MBPO)     | 0.52 s  | 0.061 s          | 0.0018              |
//! | ensemble 7/5 4x200 NLL  | 4.2 s   | 0.070 s          | (sampled)           |
//!
//! The MBPO target (Pendulum in <= 1000 env steps in ~8 s on 2 cores, a retrain every 250
//! steps) leaves well under a second for all retrains of the single model; 4x200 would take
//! about 2.7x longer for an error that is already far below Pendulum's needs.
//!
//! ```
//! use keel_trainer::model::{DynamicsModel, ModelConfig};
//! use keel_trainer::nn::CpuBackend;
//! use keel_trainer::replay::ReplayBuffer;
//! use rand::SeedableRng;
//! let mut rng = rand_pcg::Pcg64::seed_from_u64(0);
//! let mut buf = ReplayBuffer::new(1000, 2, 1);
//! for i in 0..200 {
//!     let (x, u) = ((i as f32 * 0.37).sin(), (i as f32 * 0.11).cos());
//!     buf.push(&[x, -x], &[u], 0.0, &[0.9 * x + 0.1 * u, -x], false);
//! }
//! let cfg = ModelConfig { predict_reward: false, max_epochs: 5, ..ModelConfig::default() };
//! let mut model = DynamicsModel::new(&CpuBackend, &cfg, 2, 1, &mut rng).unwrap();
//! let stats = model.train(&buf, &mut rng);
//! assert!(stats.epochs <= 5);
//! let (mut next, mut rew) = (vec![0.0; 2 * 3], vec![0.0; 3]);
//! let reward = |s: &[f32], _a: &[f32], _n: &[f32]| Some(-s[0] * s[0]);
//! model.predict(&[0.1, -0.1, 0.2, -0.2, 0.3, -0.3], &[0.0, 0.5, -0.5], 3, &mut rng,
//!     Some(&reward), &mut next, &mut rew);
//! assert_eq!(rew[1], -(0.2f32 * 0.2)); // row 1 used the closed-form reward
//! ```

mod config;
mod dynamics;
mod ensemble;
mod loss;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_train;

pub use config::{ModelConfig, ModelHead};
pub use dynamics::{DynamicsModel, ModelState, ModelStats, RewardFn};
pub use ensemble::{EnsembleAdam, EnsembleCache, EnsembleMlp};
pub use loss::{gaussian_nll_loss, mse_loss, soft_clamp_logvar, Normalizer};
