//! [`DynamicsModel`]: training with holdout early stopping and elite selection, batched
//! prediction for branched rollouts, statistics and checkpoint state.

use std::time::Instant;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use super::ensemble::{EnsembleAdam, EnsembleCache, EnsembleMlp};
use super::loss::{gaussian_nll_loss, mse_loss, soft_clamp_logvar, Normalizer};
use super::{ModelConfig, ModelHead};
use crate::env::Env;
use crate::nn::{AdamState, Backend, CpuBackend};
use crate::replay::{Batch, ReplayBuffer};

/// Rows per forward pass in prediction and holdout evaluation: bounds the activation memory
/// (`N x CHUNK x widest` floats per layer) whatever the caller's batch.
const CHUNK: usize = 2048;

/// A closed-form reward `r(obs, act, next_obs)`, `None` where unknown (as [`Env::reward_fn`]).
pub type RewardFn<'a> = &'a dyn Fn(&[f32], &[f32], &[f32]) -> Option<f32>;

/// What training and prediction cost and how well the model fits, for metrics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelStats {
    /// Mean training loss (MSE or NLL, normalized units, mean over members) of the last epoch
    /// of the last retrain (NaN if it ran no epoch).
    pub train_loss: f32,
    /// Holdout MSE of the mean prediction (normalized target units, mean over target dims) of
    /// the restored weights, averaged over the elites.
    pub holdout_mse: f32,
    /// The same per member.
    pub holdout_mse_members: Vec<f32>,
    /// Mean over members of the holdout MSE before training (index 0) and after each epoch of
    /// the last retrain (before restoring the best weights).
    pub holdout_curve: Vec<f32>,
    /// Epochs run in the last retrain.
    pub epochs: usize,
    /// Training / holdout rows of the last retrain.
    pub train_rows: usize,
    pub holdout_rows: usize,
    /// Wall seconds of the last retrain.
    pub train_seconds: f64,
    /// Retrains so far, and their total wall seconds.
    pub retrains: u64,
    pub total_train_seconds: f64,
    /// Wall seconds spent in prediction so far, and rows predicted.
    pub predict_seconds: f64,
    pub predicted_rows: u64,
}

impl ModelStats {
    /// Model-side compute so far: training plus prediction wall seconds (what the benchmark
    /// compares between a single model and an ensemble).
    pub fn compute_seconds(&self) -> f64 {
        self.total_train_seconds + self.predict_seconds
    }
}

/// Everything needed to rebuild a trained model (checkpoints). Adam's moments are apart, in
/// [`DynamicsModel::optimizer_state`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelState {
    pub config: ModelConfig,
    pub obs_dim: usize,
    pub act_dim: usize,
    /// All members' parameters, [`EnsembleMlp`]'s layout.
    pub params: Vec<f32>,
    pub input_norm: Normalizer,
    pub target_norm: Normalizer,
    pub elites: Vec<usize>,
    pub stats: ModelStats,
}

/// Normalized training and holdout sets of one retrain (rows of `[obs, act]` and of
/// `[next_obs - obs, reward?]`).
#[derive(Clone, Debug, Default)]
pub(super) struct Split {
    pub tx: Vec<f32>,
    pub ty: Vec<f32>,
    pub hx: Vec<f32>,
    pub hy: Vec<f32>,
}

/// A learned model of `(obs, act) -> (next_obs, reward)`: an ensemble of N MLPs (N = 1 for the
/// single model) predicting the normalized state delta (and reward, if configured).
#[derive(Clone, Debug)]
pub struct DynamicsModel<B: Backend = CpuBackend> {
    cfg: ModelConfig,
    obs_dim: usize,
    act_dim: usize,
    /// Target dimensions: `obs_dim` (+1 with the reward).
    tdim: usize,
    pub(super) net: EnsembleMlp<B>,
    opt: EnsembleAdam<B>,
    train_cache: EnsembleCache<B>,
    infer_cache: EnsembleCache<B>,
    input_norm: Normalizer,
    target_norm: Normalizer,
    elites: Vec<usize>,
    stats: ModelStats,
    /// The last retrain's data (kept for tests and diagnostics).
    pub(super) split: Split,
    /// Host scratch: inputs, targets and output gradients of one minibatch.
    xb: Vec<f32>,
    yb: Vec<f32>,
    dy: Vec<f32>,
}

impl<B: Backend> DynamicsModel<B> {
    /// An untrained model for `obs_dim` observations and `act_dim` actions.
    ///
    /// # Errors
    /// The config's inconsistency, from [`ModelConfig::validate`].
    pub fn new<R: Rng + ?Sized>(
        backend: &B,
        cfg: &ModelConfig,
        obs_dim: usize,
        act_dim: usize,
        rng: &mut R,
    ) -> Result<Self, String> {
        cfg.validate()?;
        let tdim = obs_dim + usize::from(cfg.predict_reward);
        let out = match cfg.head {
            ModelHead::Deterministic => tdim,
            ModelHead::Gaussian => 2 * tdim,
        };
        let mut sizes = vec![obs_dim + act_dim];
        sizes.extend(&cfg.hidden);
        sizes.push(out);
        let net = EnsembleMlp::new(backend, cfg.ensemble_size, &sizes, cfg.activation, rng);
        Ok(Self {
            opt: EnsembleAdam::new(&net, cfg.lr, &cfg.layer_decays()),
            train_cache: net.new_cache(cfg.batch_size),
            infer_cache: net.new_cache(1),
            input_norm: Normalizer::identity(obs_dim + act_dim),
            target_norm: Normalizer::identity(tdim),
            elites: (0..cfg.elites).collect(),
            stats: ModelStats::default(),
            split: Split::default(),
            xb: Vec::new(),
            yb: Vec::new(),
            dy: Vec::new(),
            cfg: cfg.clone(),
            obs_dim,
            act_dim,
            tdim,
            net,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }
    pub fn obs_dim(&self) -> usize {
        self.obs_dim
    }
    pub fn act_dim(&self) -> usize {
        self.act_dim
    }
    pub fn stats(&self) -> &ModelStats {
        &self.stats
    }
    /// Indices of the elite members, best holdout first.
    pub fn elites(&self) -> &[usize] {
        &self.elites
    }
    /// The networks (e.g. to inspect or set one member's parameters).
    pub fn ensemble(&self) -> &EnsembleMlp<B> {
        &self.net
    }
    pub fn ensemble_mut(&mut self) -> &mut EnsembleMlp<B> {
        &mut self.net
    }

    /// Retrains on every transition of `buffer` (see [`DynamicsModel::train_on`]).
    pub fn train<R: Rng + ?Sized>(&mut self, buffer: &ReplayBuffer, rng: &mut R) -> &ModelStats {
        let n = buffer.len();
        let mut data = Batch::new(n, self.obs_dim, self.act_dim);
        for i in 0..n {
            buffer.copy_into(i, &mut data, i);
        }
        self.train_on(&data, rng)
    }

    /// Retrains on the `data.size` transitions of `data`, continuing from the current weights
    /// (as MBPO): refits the normalizers on a fresh training split, then epochs over each
    /// member's bootstrap/shuffle in minibatches until no member improved its holdout MSE for
    /// `patience` epochs (or `max_epochs`), restores each member's best weights (the weights
    /// before training count: a retrain never makes a member worse on the holdout), and picks
    /// the elites by holdout MSE. With no holdout row (fewer than 1 / `holdout_ratio`
    /// transitions), the training split stands in for it.
    pub fn train_on<R: Rng + ?Sized>(&mut self, data: &Batch, rng: &mut R) -> &ModelStats {
        let t0 = Instant::now();
        self.make_split(data, rng);
        let (n_mem, din, td) = (
            self.cfg.ensemble_size,
            self.obs_dim + self.act_dim,
            self.tdim,
        );
        let n_train = self.split.tx.len() / din;
        let mut idx: Vec<Vec<usize>> = (0..n_mem)
            .map(|_| match self.cfg.bootstrap && n_mem > 1 {
                true => (0..n_train).map(|_| rng.random_range(0..n_train)).collect(),
                false => (0..n_train).collect(),
            })
            .collect();
        let mut best = self.holdout_mse_members();
        let mut best_params = self.net.params.clone();
        let mut curve = vec![mean(&best)];
        let (mut since, mut epochs, mut train_loss) = (0, 0, f64::NAN);
        while epochs < self.cfg.max_epochs && since < self.cfg.patience.max(1) {
            idx.iter_mut().for_each(|v| v.shuffle(rng));
            let mut sum = 0.0;
            for start in (0..n_train).step_by(self.cfg.batch_size) {
                let rows = self.cfg.batch_size.min(n_train - start);
                sum += self.minibatch_step(&idx, start, rows, din, td) * rows as f64;
            }
            train_loss = sum / n_train as f64;
            epochs += 1;
            let cur = self.holdout_mse_members();
            curve.push(mean(&cur));
            let mut improved = false;
            for (k, (b, c)) in best.iter_mut().zip(&cur).enumerate() {
                let gain = if *b > 0.0 {
                    (*b - c) / *b
                } else {
                    f32::from(*c < *b)
                };
                if gain > self.cfg.improvement_threshold {
                    *b = *c;
                    self.net.copy_member(&self.net.params, &mut best_params, k);
                    improved = true;
                }
            }
            since = if improved { 0 } else { since + 1 };
        }
        self.net.params = best_params;
        let mut order: Vec<usize> = (0..n_mem).collect();
        order.sort_by(|&a, &b| best[a].total_cmp(&best[b]));
        self.elites = order[..self.cfg.elites].to_vec();
        let secs = t0.elapsed().as_secs_f64();
        let s = &mut self.stats;
        s.train_loss = train_loss as f32;
        s.holdout_mse = mean(&self.elites.iter().map(|&k| best[k]).collect::<Vec<_>>());
        s.holdout_mse_members = best;
        s.holdout_curve = curve;
        s.epochs = epochs;
        s.train_rows = n_train;
        s.holdout_rows = self.split.hx.len() / din;
        s.train_seconds = secs;
        s.retrains += 1;
        s.total_train_seconds += secs;
        &self.stats
    }

    /// Shuffles `data` into training and holdout rows, refits the normalizers on the training
    /// rows and stores both sets normalized in `self.split`.
    fn make_split<R: Rng + ?Sized>(&mut self, data: &Batch, rng: &mut R) {
        let (n, o, a, td) = (data.size, self.obs_dim, self.act_dim, self.tdim);
        assert!(n >= 1, "train_on: no data");
        assert!(
            data.obs.len() >= n * o && data.act.len() >= n * a,
            "train_on: short batch"
        );
        let mut x = Vec::with_capacity(n * (o + a));
        let mut y = Vec::with_capacity(n * td);
        for i in 0..n {
            let (obs, nxt) = (
                &data.obs[i * o..(i + 1) * o],
                &data.next_obs[i * o..(i + 1) * o],
            );
            x.extend_from_slice(obs);
            x.extend_from_slice(&data.act[i * a..(i + 1) * a]);
            y.extend(nxt.iter().zip(obs).map(|(n, s)| n - s));
            if self.cfg.predict_reward {
                y.push(data.rew[i]);
            }
        }
        let mut perm: Vec<usize> = (0..n).collect();
        perm.shuffle(rng);
        let n_hold = ((self.cfg.holdout_ratio * n as f32) as usize)
            .min(self.cfg.max_holdout)
            .min(n - 1);
        let gather = |src: &[f32], dim: usize, rows: &[usize]| -> Vec<f32> {
            rows.iter()
                .flat_map(|&i| src[i * dim..(i + 1) * dim].iter().copied())
                .collect()
        };
        let (hold, train) = perm.split_at(n_hold);
        let (mut tx, mut ty) = (gather(&x, o + a, train), gather(&y, td, train));
        self.input_norm = Normalizer::fit(&tx, o + a);
        self.target_norm = Normalizer::fit(&ty, td);
        let (mut hx, mut hy) = (gather(&x, o + a, hold), gather(&y, td, hold));
        for (buf, norm) in [
            (&mut tx, &self.input_norm),
            (&mut hx, &self.input_norm),
            (&mut ty, &self.target_norm),
            (&mut hy, &self.target_norm),
        ] {
            for row in buf.chunks_exact_mut(norm.dim()) {
                let raw = row.to_vec();
                norm.apply(&raw, row);
            }
        }
        if n_hold == 0 {
            (hx, hy) = (tx.clone(), ty.clone());
        }
        self.split = Split { tx, ty, hx, hy };
    }

    /// One Adam step on rows `start..start + rows` of every member's index list; returns the
    /// loss (mean over members).
    fn minibatch_step(
        &mut self,
        idx: &[Vec<usize>],
        start: usize,
        rows: usize,
        din: usize,
        td: usize,
    ) -> f64 {
        let n_mem = idx.len();
        let sp = &self.split;
        self.xb.clear();
        self.yb.clear();
        for member_idx in idx {
            for &i in &member_idx[start..start + rows] {
                self.xb.extend_from_slice(&sp.tx[i * din..(i + 1) * din]);
                self.yb.extend_from_slice(&sp.ty[i * td..(i + 1) * td]);
            }
        }
        let all: Vec<usize> = (0..n_mem).collect();
        let out = self
            .net
            .forward(&mut self.train_cache, &self.xb, rows, &all, false);
        let w = out.len() / (n_mem * rows);
        self.dy.resize(out.len(), 0.0);
        let mut loss = 0.0;
        for ((o, y), g) in out
            .chunks_exact(rows * w)
            .zip(self.yb.chunks_exact(rows * td))
            .zip(self.dy.chunks_exact_mut(rows * w))
        {
            loss += match self.cfg.head {
                ModelHead::Deterministic => mse_loss(o, w, y, td, Some(g)),
                ModelHead::Gaussian => {
                    let (lo, hi) = (self.cfg.min_logvar, self.cfg.max_logvar);
                    gaussian_nll_loss(o, y, td, lo, hi, Some(g))
                }
            };
        }
        self.net.zero_grad();
        self.net.backward(&mut self.train_cache, &self.dy);
        self.opt.step(&mut self.net);
        loss / n_mem as f64
    }

    /// Every member's MSE of its mean prediction on the current holdout set.
    pub(super) fn holdout_mse_members(&mut self) -> Vec<f32> {
        let (din, td) = (self.obs_dim + self.act_dim, self.tdim);
        let n = self.split.hx.len() / din;
        let n_mem = self.cfg.ensemble_size;
        let all: Vec<usize> = (0..n_mem).collect();
        let mut sums = vec![0.0f64; n_mem];
        if n == 0 {
            return vec![f32::INFINITY; n_mem];
        }
        for start in (0..n).step_by(CHUNK) {
            let rows = CHUNK.min(n - start);
            if self.infer_cache.max_rows() < rows {
                self.infer_cache = self.net.new_cache(rows);
            }
            let x = &self.split.hx[start * din..(start + rows) * din];
            let y = &self.split.hy[start * td..(start + rows) * td];
            let out = self.net.forward(&mut self.infer_cache, x, rows, &all, true);
            let w = out.len() / (n_mem * rows);
            for (s, o) in sums.iter_mut().zip(out.chunks_exact(rows * w)) {
                *s += mse_loss(o, w, y, td, None) * rows as f64;
            }
        }
        sums.iter().map(|s| (s / n as f64) as f32).collect()
    }

    /// Predicts `batch` transitions (`obs`: `batch x obs_dim`, `act`: `batch x act_dim`) for
    /// model rollouts in batched forward passes of the elites: each row uses a uniformly random
    /// elite (MBPO; drawn as a balanced random partition of the rows, so the ensemble costs one
    /// network evaluation per row), a sample of its Gaussian (the mean for the deterministic
    /// head), un-normalized and added to `obs`. The reward is `reward_fn(obs, act, next_obs)`
    /// where that is `Some`, else the model's prediction.
    ///
    /// # Panics
    /// On shape mismatches, or when a reward is needed that neither `reward_fn` nor the model
    /// (`predict_reward = false`) provides.
    #[allow(clippy::too_many_arguments)]
    pub fn predict<R: Rng + ?Sized>(
        &mut self,
        obs: &[f32],
        act: &[f32],
        batch: usize,
        rng: &mut R,
        reward_fn: Option<RewardFn<'_>>,
        next_obs_out: &mut [f32],
        reward_out: &mut [f32],
    ) {
        let t0 = Instant::now();
        let (o, a, td) = (self.obs_dim, self.act_dim, self.tdim);
        assert_eq!(obs.len(), batch * o, "predict: obs is not batch x {o}");
        assert_eq!(act.len(), batch * a, "predict: act is not batch x {a}");
        assert_eq!(
            next_obs_out.len(),
            batch * o,
            "predict: next_obs_out is not batch x {o}"
        );
        assert_eq!(
            reward_out.len(),
            batch,
            "predict: reward_out is not batch long"
        );
        let mut order = self.elites.clone();
        let e = order.len();
        let gaussian = self.cfg.head == ModelHead::Gaussian;
        let (lo, hi) = (
            f64::from(self.cfg.min_logvar),
            f64::from(self.cfg.max_logvar),
        );
        let mut t = vec![0.0f32; td];
        let mut perm = Vec::new();
        for start in (0..batch).step_by(CHUNK) {
            let rows = CHUNK.min(batch - start);
            // Balanced random partition of the rows over the elites (mbrl-lib's
            // "random_model" propagation): every elite runs on ceil(rows / E) rows, so the
            // ensemble costs about one forward per row, not E.
            let per = rows.div_ceil(e);
            perm.clear();
            perm.extend(0..rows);
            if e > 1 {
                perm.shuffle(rng);
                order.shuffle(rng);
            }
            let groups = rows.div_ceil(per);
            if self.infer_cache.max_rows() < per {
                self.infer_cache = self.net.new_cache(per);
            }
            self.xb.clear();
            let norm = &self.input_norm;
            for p in 0..groups * per {
                let i = start + perm[p.min(rows - 1)]; // the last group is padded
                let row = obs[i * o..(i + 1) * o]
                    .iter()
                    .chain(&act[i * a..(i + 1) * a]);
                let z = row
                    .zip(&norm.mean)
                    .zip(&norm.std)
                    .map(|((x, m), s)| (x - m) / s);
                self.xb.extend(z);
            }
            let members = &order[..groups];
            let out = self
                .net
                .forward(&mut self.infer_cache, &self.xb, per, members, false);
            let w = out.len() / (groups * per);
            for (p, &r) in perm.iter().enumerate() {
                let y = &out[p * w..(p + 1) * w];
                for (c, tc) in t.iter_mut().enumerate() {
                    let mut z = y[c];
                    if gaussian {
                        let (lv, _) = soft_clamp_logvar(f64::from(y[td + c]), lo, hi);
                        let eps: f64 = StandardNormal.sample(rng);
                        z += ((0.5 * lv).exp() * eps) as f32;
                    }
                    *tc = self.target_norm.invert(c, z);
                }
                let i = start + r;
                let (s, nxt) = (
                    &obs[i * o..(i + 1) * o],
                    &mut next_obs_out[i * o..(i + 1) * o],
                );
                nxt.iter_mut()
                    .zip(s)
                    .zip(&t)
                    .for_each(|((n, s), d)| *n = s + d);
                let known = reward_fn.and_then(|f| f(s, &act[i * a..(i + 1) * a], nxt));
                reward_out[i] = match known {
                    Some(rew) => rew,
                    None if self.cfg.predict_reward => t[o],
                    None => {
                        panic!("predict: no reward (predict_reward is off and reward_fn gave none)")
                    }
                };
            }
        }
        self.stats.predict_seconds += t0.elapsed().as_secs_f64();
        self.stats.predicted_rows += batch as u64;
    }

    /// [`DynamicsModel::predict`] with `env`'s closed-form reward where it has one.
    #[allow(clippy::too_many_arguments)]
    pub fn predict_env<R: Rng + ?Sized>(
        &mut self,
        obs: &[f32],
        act: &[f32],
        batch: usize,
        rng: &mut R,
        env: &dyn Env,
        next_obs_out: &mut [f32],
        reward_out: &mut [f32],
    ) {
        let f = |s: &[f32], u: &[f32], n: &[f32]| env.reward_fn(s, u, n);
        self.predict(obs, act, batch, rng, Some(&f), next_obs_out, reward_out);
    }

    /// The model's state for a checkpoint.
    pub fn state(&self) -> ModelState {
        ModelState {
            config: self.cfg.clone(),
            obs_dim: self.obs_dim,
            act_dim: self.act_dim,
            params: self.net.params(),
            input_norm: self.input_norm.clone(),
            target_norm: self.target_norm.clone(),
            elites: self.elites.clone(),
            stats: self.stats.clone(),
        }
    }

    /// Adam's moments and step count, for checkpoints that continue exactly (kept apart from
    /// [`ModelState`], which also rebuilds a model for prediction alone).
    pub fn optimizer_state(&self) -> AdamState {
        self.opt.state()
    }

    /// Restores [`DynamicsModel::optimizer_state`] of a model of the same shape.
    pub fn load_optimizer_state(&mut self, st: &AdamState) -> Result<(), String> {
        self.opt.load_state(st)
    }

    /// Rebuilds a model from [`DynamicsModel::state`].
    ///
    /// # Errors
    /// An invalid config, or parameters/normalizers/elites that do not fit it.
    pub fn from_state(backend: &B, state: &ModelState) -> Result<Self, String> {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(0);
        let mut m = Self::new(
            backend,
            &state.config,
            state.obs_dim,
            state.act_dim,
            &mut rng,
        )?;
        if state.params.len() != m.net.num_params() {
            return Err(format!(
                "model state: {} parameters, the config needs {}",
                state.params.len(),
                m.net.num_params()
            ));
        }
        let fits = |n: &Normalizer, d: usize| n.mean.len() == d && n.std.len() == d;
        if !fits(&state.input_norm, m.input_norm.dim()) || !fits(&state.target_norm, m.tdim) {
            return Err("model state: normalizers do not fit the dimensions".into());
        }
        if state.elites.len() != state.config.elites
            || state
                .elites
                .iter()
                .any(|&k| k >= state.config.ensemble_size)
        {
            return Err("model state: bad elite list".into());
        }
        m.net.load_params(&state.params);
        m.input_norm = state.input_norm.clone();
        m.target_norm = state.target_norm.clone();
        m.elites = state.elites.clone();
        m.stats = state.stats.clone();
        Ok(m)
    }
}

fn mean(v: &[f32]) -> f32 {
    v.iter().map(|&x| f64::from(x)).sum::<f64>() as f32 / v.len().max(1) as f32
}
