//! The SAC update itself, on any batch: the part MBPO shares with model-free SAC.
// Index loops over several parallel per-sample arrays read more plainly than zipped iterators.
#![allow(clippy::needless_range_loop)]
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_pcg::Pcg64;

use super::explore::ExplorationNoise;
use super::gaussian::SquashedGaussian;
use super::robust::{self, RobustScratch};
use crate::config::{Attack, LipschitzConfig, RobustForm, SacConfig};
use crate::nn::{
    threads, Activation, Adam, AdamConfig, Backprop, CpuBackend, ForwardCache, Mlp, MlpConfig,
};
use crate::replay::Batch;

mod persist;
#[cfg(test)]
mod tests;

/// Losses and temperatures of the latest update.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct UpdateStats {
    pub critic_loss: f32,
    pub actor_loss: f32,
    pub alpha: f32,
    pub entropy: f32,
    /// Mean (Q(s + delta) - Q(s))^2 of the robust term (0 without it).
    pub robust_gap: f32,
}

/// What both critics' regression steps read; each critic's own state is passed to [`Self::step`],
/// so the twin critics can take their steps as two parallel tasks.
struct CriticTask<'a> {
    /// Critic inputs `[s, a]` of the batch and their targets y.
    x: &'a [f32],
    y: &'a [f32],
    b: usize,
    /// Q's output scale (see `SacLearner::q_scale`).
    qs: f32,
    /// Rows (from 0) of the robust term's clean inputs; 0 without the term.
    robust_rows: usize,
    od: usize,
    lip: &'a LipschitzConfig,
    /// The robust term's weight now (`LipschitzConfig::lambda_at`).
    lambda: f32,
    state_std: &'a [f32],
}

impl CriticTask<'_> {
    /// One optimizer step of critic `q` on (Q(s, a) - y)^2, plus the robust term; returns the
    /// loss and the robust gap, both in Q's units.
    fn step(
        &self,
        q: &mut Mlp<CpuBackend>,
        opt: &mut Adam<CpuBackend>,
        dq: &mut [f32],
        scratch: &mut RobustScratch,
        rng: &mut Pcg64,
    ) -> (f32, f32) {
        let (b, qs) = (self.b, self.qs);
        let inv_b = 1.0 / b as f32;
        let mut loss = 0.0;
        let out = q.forward(self.x, b);
        for i in 0..b {
            let err = qs * out[i] - self.y[i];
            loss += err * err * inv_b;
            dq[i] = 2.0 * err * inv_b * qs;
        }
        q.zero_grad();
        q.backward(dq, b, false);
        let mut gap = 0.0;
        if self.robust_rows > 0 {
            let (l, nr) = (self.lip, self.robust_rows);
            robust::perturb(
                q,
                scratch,
                nr,
                self.od,
                l.epsilon,
                self.state_std,
                l.attack,
                l.pgd_steps,
                rng,
            );
            // The gap in Q's units is qs times the network's: lambda qs^2 on the network.
            gap = qs * qs * robust::accumulate_gradient(q, scratch, nr, self.lambda * qs * qs);
        }
        opt.step(q);
        (loss, gap)
    }
}

/// Networks, optimizers and scratch buffers of SAC. `update` allocates nothing.
pub struct SacLearner {
    cfg: SacConfig,
    pub(super) lip: LipschitzConfig,
    /// The robust term's weight at the current env step (see [`Self::set_env_step`]).
    lambda: f32,
    /// One update's weight in the deployed average at the current env step.
    avg_weight: f32,
    /// Per-dimension std of the real states: the robust perturbation's scale.
    pub(super) state_std: Vec<f32>,
    /// One robust-term scratch per critic (the twin critics' steps may run in parallel).
    pub(super) robust: [RobustScratch; 2],
    measure_cache: ForwardCache<CpuBackend>,
    /// Actor cache for large batches of rollout actions (grown on demand).
    rollout_cache: Option<ForwardCache<CpuBackend>>,
    obs_dim: usize,
    act_dim: usize,
    head: SquashedGaussian,
    /// The action box, for uniform exploration.
    low: Vec<f32>,
    high: Vec<f32>,
    actor: Mlp<CpuBackend>,
    /// The deployed policy's running average of the actor's weights (`SacConfig::policy_average`).
    actor_avg: Option<Mlp<CpuBackend>>,
    actor_opt: Adam<CpuBackend>,
    q: [Mlp<CpuBackend>; 2],
    q_target: [Mlp<CpuBackend>; 2],
    q_opt: [Adam<CpuBackend>; 2],
    log_alpha: f32,
    alpha_adam: (f32, f32, i32),
    target_entropy: f32,
    updates: u64,
    last: UpdateStats,
    // Scratch, sized for the batch.
    x_next: Vec<f32>,
    x_now: Vec<f32>,
    eps: Vec<f32>,
    act_pi: Vec<f32>,
    logp: Vec<f32>,
    y: Vec<f32>,
    dq: [Vec<f32>; 2],
    d_act: Vec<f32>,
    d_raw: Vec<f32>,
    q_first: Vec<f32>,
    q_second: Vec<f32>,
    /// Per critic: the batch rows where it is the smaller one (the actor loss's min), and a
    /// cache holding those rows of its forward pass.
    min_rows: [Vec<usize>; 2],
    min_cache: [ForwardCache<CpuBackend>; 2],
    /// dL/dQ on those rows (the same for every row).
    min_dy: Vec<f32>,
    one_obs: Vec<f32>,
    one_eps: Vec<f32>,
    /// Draws behind the real env's actions (`SacConfig::noise_correlation`).
    noise: ExplorationNoise,
}

fn mlp_sizes(input: usize, hidden: &[usize], output: usize) -> Vec<usize> {
    std::iter::once(input)
        .chain(hidden.iter().copied())
        .chain(std::iter::once(output))
        .collect()
}

impl SacLearner {
    pub fn new<R: Rng>(
        cfg: &SacConfig,
        lip: &LipschitzConfig,
        obs_dim: usize,
        low: &[f32],
        high: &[f32],
        rng: &mut R,
    ) -> Self {
        let act_dim = low.len();
        let b = cfg.batch_size;
        let be = CpuBackend;
        let actor_cfg = MlpConfig {
            sizes: mlp_sizes(obs_dim, &cfg.actor_hidden, 2 * act_dim),
            hidden: Activation::Relu,
            output: Activation::Identity,
            spectral_norm: false,
            spectral_norm_output: false,
        };
        let critic_cfg = MlpConfig {
            sizes: mlp_sizes(obs_dim + act_dim, &cfg.critic_hidden, 1),
            hidden: Activation::Relu,
            output: Activation::Identity,
            spectral_norm: lip.spectral_norm,
            spectral_norm_output: lip.sn_output_layer,
        };
        let actor = Mlp::new(&be, &actor_cfg, b, rng);
        let q = [
            Mlp::new(&be, &critic_cfg, b, rng),
            Mlp::new(&be, &critic_cfg, b, rng),
        ];
        let mut q_target = [
            Mlp::new(&be, &critic_cfg, b, rng),
            Mlp::new(&be, &critic_cfg, b, rng),
        ];
        for (t, q) in q_target.iter_mut().zip(&q) {
            // Parameters and spectral-norm vectors: a target with its own random u, v would
            // estimate sigma for the copied weights from misaligned vectors.
            t.copy_from(q);
        }
        let adam = |lr: f32| AdamConfig {
            lr,
            max_grad_norm: cfg.max_grad_norm,
            ..AdamConfig::default()
        };
        let actor_opt = Adam::new(&actor, adam(cfg.actor_lr));
        let q_opt = [
            Adam::new(&q[0], adam(cfg.critic_lr)),
            Adam::new(&q[1], adam(cfg.critic_lr)),
        ];
        let measure_cache = q[0].new_cache(lip.measure_states.max(1));
        let min_cache = [q[0].new_cache(b), q[1].new_cache(b)];
        Self {
            cfg: cfg.clone(),
            lip: lip.clone(),
            lambda: lip.lambda_at(0),
            avg_weight: cfg.policy_average_at(0),
            state_std: vec![1.0; obs_dim],
            robust: [
                RobustScratch::new(&q[0], b, obs_dim, act_dim),
                RobustScratch::new(&q[1], b, obs_dim, act_dim),
            ],
            measure_cache,
            rollout_cache: None,
            obs_dim,
            act_dim,
            head: SquashedGaussian::new(low, high),
            low: low.to_vec(),
            high: high.to_vec(),
            actor_avg: (cfg.policy_average > 0.0).then(|| actor.clone()),
            actor,
            actor_opt,
            q,
            q_target,
            q_opt,
            log_alpha: cfg.init_alpha.ln().min(cfg.max_log_alpha()),
            alpha_adam: (0.0, 0.0, 0),
            target_entropy: cfg.target_entropy.unwrap_or(-(act_dim as f32)),
            updates: 0,
            last: UpdateStats::default(),
            x_next: vec![0.0; b * (obs_dim + act_dim)],
            x_now: vec![0.0; b * (obs_dim + act_dim)],
            eps: vec![0.0; b * act_dim],
            act_pi: vec![0.0; b * act_dim],
            logp: vec![0.0; b],
            y: vec![0.0; b],
            dq: [vec![0.0; b], vec![0.0; b]],
            d_act: vec![0.0; b * act_dim],
            d_raw: vec![0.0; b * 2 * act_dim],
            q_first: vec![0.0; b],
            q_second: vec![0.0; b],
            min_rows: [Vec::with_capacity(b), Vec::with_capacity(b)],
            min_cache,
            min_dy: vec![0.0; b],
            one_obs: vec![0.0; obs_dim],
            one_eps: vec![0.0; act_dim],
            noise: ExplorationNoise::new(cfg.noise_correlation, act_dim),
        }
    }

    pub fn alpha(&self) -> f32 {
        self.log_alpha.exp()
    }

    pub fn last_stats(&self) -> UpdateStats {
        self.last
    }

    /// Named statistics for metrics.csv.
    pub fn stats(&self) -> Vec<(String, f64)> {
        let s = self.last;
        vec![
            ("critic_loss".into(), f64::from(s.critic_loss)),
            ("actor_loss".into(), f64::from(s.actor_loss)),
            ("alpha".into(), f64::from(s.alpha)),
            ("entropy".into(), f64::from(s.entropy)),
            ("robust_gap".into(), f64::from(s.robust_gap)),
            ("robust_lambda".into(), f64::from(self.lambda)),
        ]
    }

    /// The measured smoothness of critic 1 on `n` states with their actions: the max and mean of
    /// ||dQ/ds|| (Euclidean, state part of the input) and the product of the layers' spectral
    /// norms (an upper bound on the Lipschitz constant).
    pub fn measure_lipschitz(&mut self, obs: &[f32], act: &[f32], n: usize) -> (f64, f64, f64) {
        let (od, ad) = (self.obs_dim, self.act_dim);
        let w = od + ad;
        let n = n.min(self.measure_cache.max_batch());
        let mut x = vec![0.0f32; n * w];
        Self::concat(&obs[..n * od], &act[..n * ad], od, ad, &mut x);
        let ones = vec![1.0f32; n];
        let qs = f64::from(self.q_scale());
        let q = &mut self.q[0];
        q.forward_with(&mut self.measure_cache, &x, n);
        q.backward_with(&mut self.measure_cache, &ones, n, Backprop::Input);
        let g = self.measure_cache.input_grad();
        let norms: Vec<f64> = (0..n)
            .map(|i| {
                g[i * w..i * w + od]
                    .iter()
                    .map(|v| f64::from(*v).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .collect();
        let max = qs * norms.iter().copied().fold(0.0, f64::max);
        let mean = qs * norms.iter().sum::<f64>() / n.max(1) as f64;
        (max, mean, qs * f64::from(q.lipschitz_bound()))
    }

    /// The twin critics (for Lipschitz measurements).
    pub fn critics(&self) -> &[Mlp<CpuBackend>; 2] {
        &self.q
    }

    /// The action for the real env: uniform in the action box while `warmup` (before learning
    /// starts), then sampled from the policy; either way driven by the exploration noise
    /// (white, or correlated in time: `SacConfig::noise_correlation`).
    pub fn explore<R: Rng>(&mut self, obs: &[f32], action: &mut [f32], warmup: bool, rng: &mut R) {
        if warmup {
            self.noise
                .uniform_action(&self.low, &self.high, action, rng);
        } else {
            self.one_obs.copy_from_slice(obs);
            let eps = self.noise.next(rng);
            let raw = self.actor.predict(&self.one_obs, 1);
            self.head.sample(raw, eps, action);
        }
    }

    /// The online actor's deterministic action (the exported policy computes the same through
    /// keel-runtime unless `SacConfig::policy_average` deploys an average; evaluation uses the
    /// runtime).
    pub fn deterministic_action(&mut self, obs: &[f32], action: &mut [f32]) {
        self.one_obs.copy_from_slice(obs);
        let raw = self.actor.predict(&self.one_obs, 1);
        self.head.mean_action(raw, action);
    }

    /// Stochastic actions for `n` observations at once (model rollouts).
    pub fn sample_actions<R: Rng>(&mut self, obs: &[f32], act: &mut [f32], n: usize, rng: &mut R) {
        let ad = self.act_dim;
        if self
            .rollout_cache
            .as_ref()
            .is_none_or(|c| c.max_batch() < n)
        {
            self.rollout_cache = Some(self.actor.new_cache(n));
        }
        let Some(cache) = self.rollout_cache.as_mut() else {
            return;
        };
        let raw = self.actor.predict_with(cache, obs, n);
        for i in 0..n {
            for e in self.one_eps.iter_mut() {
                *e = rng.sample(StandardNormal);
            }
            self.head.sample(
                &raw[i * 2 * ad..(i + 1) * 2 * ad],
                &self.one_eps,
                &mut act[i * ad..(i + 1) * ad],
            );
        }
    }

    /// Writes `[obs_i, act_i]` rows into `x`.
    fn concat(obs: &[f32], act: &[f32], obs_dim: usize, act_dim: usize, x: &mut [f32]) {
        let w = obs_dim + act_dim;
        for ((row, o), a) in x
            .chunks_exact_mut(w)
            .zip(obs.chunks_exact(obs_dim))
            .zip(act.chunks_exact(act_dim))
        {
            row[..obs_dim].copy_from_slice(o);
            row[obs_dim..].copy_from_slice(a);
        }
    }

    /// Q = q_scale * network output: a fixed output scale, so a spectrally normalised critic
    /// (whose network is kept smooth and small) can still represent returns of hundreds.
    pub fn q_scale(&self) -> f32 {
        if self.lip.spectral_norm {
            self.lip.sn_q_scale
        } else {
            1.0
        }
    }

    /// Sets the per-dimension state scale of the robust perturbation (the real buffer's std).
    pub fn set_state_std(&mut self, std: &[f32]) {
        self.state_std.copy_from_slice(std);
    }

    /// Tells the learner how many env steps have been taken (the schedules of the robust weight,
    /// the learning rates and the deployed average's weight).
    pub fn set_env_step(&mut self, env_step: usize) {
        self.lambda = self.lip.lambda_at(env_step);
        self.avg_weight = self.cfg.policy_average_at(env_step);
        let scale = self.cfg.lr_scale_at(env_step);
        self.actor_opt.set_lr(self.cfg.actor_lr * scale);
        for opt in &mut self.q_opt {
            opt.set_lr(self.cfg.critic_lr * scale);
        }
    }

    /// One gradient step of the critics, the actor and the temperature on `batch`. With the
    /// robust loss enabled, its term is computed on the rows `robust_rows` (the model-generated
    /// part of the batch, or real rows with `LipschitzConfig::robust_on_real`).
    pub fn update<R: Rng>(
        &mut self,
        batch: &Batch,
        rng: &mut R,
        robust_rows: std::ops::Range<usize>,
    ) {
        let (b, od, ad) = (batch.size, self.obs_dim, self.act_dim);
        let alpha = self.alpha();
        let inv_b = 1.0 / b as f32;
        let qs = self.q_scale();

        // Critic targets: y = r + gamma (1 - done) (min_k Q'_k(s', a') - alpha log pi(a'|s')).
        for e in self.eps.iter_mut() {
            *e = rng.sample(StandardNormal);
        }
        // The actor's two forwards at once: its parameters do not change until its own step,
        // so the forward on s (for the actor loss) can run beside the one on s' (for targets).
        let (_, raw) = self
            .actor
            .forward_and_predict(&batch.obs, &batch.next_obs, b);
        for i in 0..b {
            let r = &raw[i * 2 * ad..(i + 1) * 2 * ad];
            self.logp[i] = self.head.sample(
                r,
                &self.eps[i * ad..(i + 1) * ad],
                &mut self.act_pi[i * ad..(i + 1) * ad],
            );
        }
        Self::concat(&batch.next_obs, &self.act_pi, od, ad, &mut self.x_next);
        {
            let [t0, t1] = &mut self.q_target;
            let (x, out0, out1) = (&self.x_next, &mut self.q_first, &mut self.q_second);
            threads::join_tasks(
                || out0.copy_from_slice(t0.predict(x, b)),
                || out1.copy_from_slice(t1.predict(x, b)),
            );
        }
        for i in 0..b {
            let v = qs * self.q_first[i].min(self.q_second[i]) - alpha * self.logp[i];
            self.y[i] = batch.rew[i] + self.cfg.gamma * (1.0 - batch.done[i]) * v;
        }

        // Critic regression on the batch's (s, a), plus the robust term on `robust_rows`.
        Self::concat(&batch.obs, &batch.act, od, ad, &mut self.x_now);
        let robust = self.lip.robust && self.lambda > 0.0 && !robust_rows.is_empty();
        let nr = robust_rows.len();
        if robust {
            let w = od + ad;
            let rows = robust_rows.start * w..robust_rows.end * w;
            let [first, second] = &mut self.robust;
            first.clean[..nr * w].copy_from_slice(&self.x_now[rows]);
            if self.lip.form == RobustForm::V {
                // V(s) = Q(s, mu(s)): the actor's deterministic action at the clean state.
                let obs = &batch.obs[robust_rows.start * od..robust_rows.end * od];
                let raw = self.actor.predict(obs, nr);
                for i in 0..nr {
                    let a = &mut first.clean[i * w + od..(i + 1) * w];
                    self.head.mean_action(&raw[i * 2 * ad..(i + 1) * 2 * ad], a);
                }
            }
            second.clean[..nr * w].copy_from_slice(&first.clean[..nr * w]);
        }
        let task = CriticTask {
            x: &self.x_now,
            y: &self.y,
            b,
            qs,
            robust_rows: if robust { nr } else { 0 },
            od,
            lip: &self.lip,
            lambda: self.lambda,
            state_std: &self.state_std,
        };
        // PGD's random starts: one stream per critic, so the result does not depend on which
        // thread runs which critic. FGSM draws nothing.
        let pgd = robust && self.lip.attack == Attack::Pgd;
        let mut rngs = if pgd {
            [rng.random::<u64>(), rng.random::<u64>()].map(Pcg64::seed_from_u64)
        } else {
            [Pcg64::seed_from_u64(0), Pcg64::seed_from_u64(0)]
        };
        let [q0, q1] = &mut self.q;
        let [opt0, opt1] = &mut self.q_opt;
        let [dq0, dq1] = &mut self.dq;
        let [rb0, rb1] = &mut self.robust;
        let [rng0, rng1] = &mut rngs;
        let (mut first, mut second) = ((0.0, 0.0), (0.0, 0.0));
        threads::join_tasks(
            || first = task.step(q0, opt0, dq0, rb0, rng0),
            || second = task.step(q1, opt1, dq1, rb1, rng1),
        );
        let critic_loss = first.0 + second.0;
        // Reported as the mean over the two critics.
        let robust_gap = 0.5 * (first.1 + second.1);

        // Actor: minimise E[alpha log pi(a|s) - min_k Q_k(s, a)], a = reparameterised sample.
        for e in self.eps.iter_mut() {
            *e = rng.sample(StandardNormal);
        }
        {
            let raw = self.actor.output();
            for i in 0..b {
                let r = &raw[i * 2 * ad..(i + 1) * 2 * ad];
                self.logp[i] = self.head.sample(
                    r,
                    &self.eps[i * ad..(i + 1) * ad],
                    &mut self.act_pi[i * ad..(i + 1) * ad],
                );
            }
        }
        Self::concat(&batch.obs, &self.act_pi, od, ad, &mut self.x_now);
        {
            let [q0, q1] = &mut self.q;
            let (x, out0, out1) = (&self.x_now, &mut self.q_first, &mut self.q_second);
            threads::join_tasks(
                || out0.copy_from_slice(q0.forward(x, b)),
                || out1.copy_from_slice(q1.forward(x, b)),
            );
        }
        let (q1v, q2v) = (&self.q_first, &self.q_second);
        let mut actor_loss = 0.0;
        // d(-min Q)/dQ_k is -1/B on the sample's smaller critic and 0 on the other, so each
        // sample is backpropagated through its smaller critic only: half the input-gradient work.
        let [rows0, rows1] = &mut self.min_rows;
        rows0.clear();
        rows1.clear();
        for i in 0..b {
            if q2v[i] < q1v[i] {
                rows1.push(i)
            } else {
                rows0.push(i)
            }
            actor_loss += (alpha * self.logp[i] - qs * q1v[i].min(q2v[i])) * inv_b;
        }
        self.min_dy[..b].fill(-inv_b * qs);
        {
            // Only dQ/da is needed here: no critic parameter gradients are computed.
            let [q0, q1] = &mut self.q;
            let [c0, c1] = &mut self.min_cache;
            let (rows0, rows1) = (&self.min_rows[0], &self.min_rows[1]);
            let dy = &self.min_dy;
            let (mut dx0, mut dx1): (&[f32], &[f32]) = (&[], &[]);
            threads::join_tasks(
                || {
                    if !rows0.is_empty() {
                        dx0 = q0.input_grad_rows(c0, rows0, &dy[..rows0.len()]);
                    }
                },
                || {
                    if !rows1.is_empty() {
                        dx1 = q1.input_grad_rows(c1, rows1, &dy[..rows1.len()]);
                    }
                },
            );
            let w = od + ad;
            for (rows, dx) in [(rows0, dx0), (rows1, dx1)] {
                for (n, &i) in rows.iter().enumerate() {
                    self.d_act[i * ad..(i + 1) * ad].copy_from_slice(&dx[n * w + od..(n + 1) * w]);
                }
            }
        }
        {
            let raw = self.actor.output();
            for i in 0..b {
                let r = &raw[i * 2 * ad..(i + 1) * 2 * ad];
                self.head.backward(
                    r,
                    &self.eps[i * ad..(i + 1) * ad],
                    &self.d_act[i * ad..(i + 1) * ad],
                    alpha * inv_b,
                    &mut self.d_raw[i * 2 * ad..(i + 1) * 2 * ad],
                );
            }
        }
        self.actor.zero_grad();
        self.actor.backward(&self.d_raw, b, false);
        self.actor_opt.step(&mut self.actor);
        self.average_actor();

        // Temperature: minimise -log_alpha * E[log pi + target_entropy] (Adam on a scalar).
        let mean_logp = self.logp.iter().sum::<f32>() * inv_b;
        let g = -(mean_logp + self.target_entropy);
        let (m, v, t) = &mut self.alpha_adam;
        *t += 1;
        *m = 0.9 * *m + 0.1 * g;
        *v = 0.999 * *v + 0.001 * g * g;
        let m_hat = *m / (1.0 - 0.9f32.powi(*t));
        let v_hat = *v / (1.0 - 0.999f32.powi(*t));
        self.log_alpha -= self.cfg.alpha_lr * m_hat / (v_hat.sqrt() + 1e-8);
        self.log_alpha = self.log_alpha.min(self.cfg.max_log_alpha());

        {
            let ([t0, t1], [q0, q1], tau) = (&mut self.q_target, &self.q, self.cfg.tau);
            threads::join_tasks(|| t0.polyak_from(q0, tau), || t1.polyak_from(q1, tau));
        }
        self.updates += 1;
        self.last = UpdateStats {
            critic_loss,
            actor_loss,
            alpha: self.alpha(),
            entropy: -mean_logp,
            robust_gap,
        };
    }
}
