//! The SAC update itself, on any batch: the part MBPO shares with model-free SAC.
// Index loops over several parallel per-sample arrays read more plainly than zipped iterators.
#![allow(clippy::needless_range_loop)]
use keel_runtime::encode::{DenseSpec, PolicySpec};
use keel_runtime::{Activation as RtActivation, Squash};
use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use super::gaussian::SquashedGaussian;
use crate::config::SacConfig;
use crate::error::KeelError;
use crate::nn::{Activation, Adam, AdamConfig, AdamState, CpuBackend, Mlp, MlpConfig};
use crate::replay::Batch;

/// Losses and temperatures of the latest update.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct UpdateStats {
    pub critic_loss: f32,
    pub actor_loss: f32,
    pub alpha: f32,
    pub entropy: f32,
}

/// Networks, optimizers and scratch buffers of SAC. `update` allocates nothing.
pub struct SacLearner {
    cfg: SacConfig,
    obs_dim: usize,
    act_dim: usize,
    head: SquashedGaussian,
    actor: Mlp<CpuBackend>,
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
    dq: Vec<f32>,
    d_act: Vec<f32>,
    d_raw: Vec<f32>,
    q_first: Vec<f32>,
    pick: [Vec<f32>; 2],
    one_obs: Vec<f32>,
    one_eps: Vec<f32>,
}

#[derive(Serialize, Deserialize)]
struct LearnerState {
    actor: Vec<f32>,
    actor_opt: AdamState,
    q: [Vec<f32>; 2],
    q_target: [Vec<f32>; 2],
    q_opt: [AdamState; 2],
    log_alpha: f32,
    alpha_adam: (f32, f32, i32),
    updates: u64,
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
        };
        let critic_cfg = MlpConfig {
            sizes: mlp_sizes(obs_dim + act_dim, &cfg.critic_hidden, 1),
            hidden: Activation::Relu,
            output: Activation::Identity,
            spectral_norm: false,
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
            t.load_params(&q.params());
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
        Self {
            cfg: cfg.clone(),
            obs_dim,
            act_dim,
            head: SquashedGaussian::new(low, high),
            actor,
            actor_opt,
            q,
            q_target,
            q_opt,
            log_alpha: cfg.init_alpha.ln(),
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
            dq: vec![0.0; b],
            d_act: vec![0.0; b * act_dim],
            d_raw: vec![0.0; b * 2 * act_dim],
            q_first: vec![0.0; b],
            pick: [vec![0.0; b], vec![0.0; b]],
            one_obs: vec![0.0; obs_dim],
            one_eps: vec![0.0; act_dim],
        }
    }

    pub fn alpha(&self) -> f32 {
        self.log_alpha.exp()
    }

    pub fn last_stats(&self) -> UpdateStats {
        self.last
    }

    /// Named statistics for metrics.csv.
    pub fn stats(&self) -> [(String, f64); 4] {
        let s = self.last;
        [
            ("critic_loss".into(), f64::from(s.critic_loss)),
            ("actor_loss".into(), f64::from(s.actor_loss)),
            ("alpha".into(), f64::from(s.alpha)),
            ("entropy".into(), f64::from(s.entropy)),
        ]
    }

    /// The twin critics (for Lipschitz measurements).
    pub fn critics(&self) -> &[Mlp<CpuBackend>; 2] {
        &self.q
    }

    /// A stochastic action for one observation.
    pub fn sample_action<R: Rng>(&mut self, obs: &[f32], action: &mut [f32], rng: &mut R) {
        self.one_obs.copy_from_slice(obs);
        for e in self.one_eps.iter_mut() {
            *e = rng.sample(StandardNormal);
        }
        let raw = self.actor.predict(&self.one_obs, 1);
        self.head.sample(raw, &self.one_eps, action);
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

    /// One gradient step of the critics, the actor and the temperature on `batch`.
    pub fn update<R: Rng>(&mut self, batch: &Batch, rng: &mut R) {
        let (b, od, ad) = (batch.size, self.obs_dim, self.act_dim);
        let alpha = self.alpha();
        let inv_b = 1.0 / b as f32;

        // Critic targets: y = r + gamma (1 - done) (min_k Q'_k(s', a') - alpha log pi(a'|s')).
        for e in self.eps.iter_mut() {
            *e = rng.sample(StandardNormal);
        }
        {
            let raw = self.actor.predict(&batch.next_obs, b);
            for i in 0..b {
                let r = &raw[i * 2 * ad..(i + 1) * 2 * ad];
                self.logp[i] = self.head.sample(
                    r,
                    &self.eps[i * ad..(i + 1) * ad],
                    &mut self.act_pi[i * ad..(i + 1) * ad],
                );
            }
        }
        Self::concat(&batch.next_obs, &self.act_pi, od, ad, &mut self.x_next);
        self.q_first
            .copy_from_slice(self.q_target[0].predict(&self.x_next, b));
        let q2t = self.q_target[1].predict(&self.x_next, b);
        for i in 0..b {
            let v = self.q_first[i].min(q2t[i]) - alpha * self.logp[i];
            self.y[i] = batch.rew[i] + self.cfg.gamma * (1.0 - batch.done[i]) * v;
        }

        // Critic regression on the batch's (s, a).
        Self::concat(&batch.obs, &batch.act, od, ad, &mut self.x_now);
        let mut critic_loss = 0.0;
        for k in 0..2 {
            let q = self.q[k].forward(&self.x_now, b);
            for i in 0..b {
                let err = q[i] - self.y[i];
                critic_loss += err * err * inv_b;
                self.dq[i] = 2.0 * err * inv_b;
            }
            self.q[k].zero_grad();
            self.q[k].backward(&self.dq, b, false);
            self.q_opt[k].step(&mut self.q[k]);
        }

        // Actor: minimise E[alpha log pi(a|s) - min_k Q_k(s, a)], a = reparameterised sample.
        for e in self.eps.iter_mut() {
            *e = rng.sample(StandardNormal);
        }
        {
            let raw = self.actor.forward(&batch.obs, b);
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
        self.q_first
            .copy_from_slice(self.q[0].forward(&self.x_now, b));
        let q2 = self.q[1].forward(&self.x_now, b);
        let mut actor_loss = 0.0;
        // d(-min Q)/dQ_k is -1/B on the sample's smaller critic and 0 on the other.
        for i in 0..b {
            let k = usize::from(q2[i] < self.q_first[i]);
            self.pick[k][i] = -inv_b;
            self.pick[1 - k][i] = 0.0;
            actor_loss += (alpha * self.logp[i] - self.q_first[i].min(q2[i])) * inv_b;
        }
        self.d_act.iter_mut().for_each(|d| *d = 0.0);
        for k in 0..2 {
            // Only dQ/da is needed here: no critic parameter gradients are computed.
            let dx = self.q[k].input_grad_only(&self.pick[k], b);
            for i in 0..b {
                for j in 0..ad {
                    self.d_act[i * ad + j] += dx[i * (od + ad) + od + j];
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

        for k in 0..2 {
            self.q_target[k].polyak_from(&self.q[k], self.cfg.tau);
        }
        self.updates += 1;
        self.last = UpdateStats {
            critic_loss,
            actor_loss,
            alpha: self.alpha(),
            entropy: -mean_logp,
        };
    }

    /// The deterministic actor (mean head only) as a deployable policy.
    pub fn policy_spec(&self) -> PolicySpec {
        let n = self.actor.num_layers();
        let params = self.actor.params();
        let actor = (0..n)
            .map(|i| {
                // The actor has no spectral normalisation, so its stored weights are the weights.
                let (w, bias) = self.actor.layer_ranges(i);
                let (w, bias) = (&params[w], &params[bias]);
                let (in_dim, mut out_dim) = (w.len() / bias.len(), bias.len());
                let last = i + 1 == n;
                if last {
                    // Keep the mean rows; the log-std rows are only for exploration.
                    out_dim = self.act_dim;
                }
                DenseSpec {
                    in_dim,
                    out_dim,
                    weight: w[..in_dim * out_dim].to_vec(),
                    bias: bias[..out_dim].to_vec(),
                    activation: if last {
                        RtActivation::Identity
                    } else {
                        RtActivation::Relu
                    },
                }
            })
            .collect();
        let low: Vec<f32> = self
            .head
            .scale
            .iter()
            .zip(&self.head.bias)
            .map(|(s, b)| b - s)
            .collect();
        let high: Vec<f32> = self
            .head
            .scale
            .iter()
            .zip(&self.head.bias)
            .map(|(s, b)| b + s)
            .collect();
        PolicySpec {
            name: String::new(),
            env_id: String::new(),
            keel_version: String::new(),
            train_steps: 0,
            obs_mean: Vec::new(),
            obs_inv_std: Vec::new(),
            // Generous: observations of the shipped envs are O(10); this only keeps a wild sensor
            // reading from overflowing the network.
            obs_clip: 1.0e4,
            act_low: low,
            act_high: high,
            squash: Squash::Tanh,
            actor,
            extra_networks: Vec::new(),
        }
    }

    pub fn save(&self) -> Result<Vec<u8>, KeelError> {
        let st = LearnerState {
            actor: self.actor.params().into_owned(),
            actor_opt: self.actor_opt.state(),
            q: [
                self.q[0].params().into_owned(),
                self.q[1].params().into_owned(),
            ],
            q_target: [
                self.q_target[0].params().into_owned(),
                self.q_target[1].params().into_owned(),
            ],
            q_opt: [self.q_opt[0].state(), self.q_opt[1].state()],
            log_alpha: self.log_alpha,
            alpha_adam: self.alpha_adam,
            updates: self.updates,
        };
        postcard::to_stdvec(&st)
            .map_err(|e| KeelError::internal(format!("cannot serialize learner: {e}")))
    }

    pub fn load(&mut self, bytes: &[u8]) -> Result<(), KeelError> {
        let bad =
            |what: &str| KeelError::usage(format!("checkpoint does not match this config: {what}"));
        let st: LearnerState = postcard::from_bytes(bytes)
            .map_err(|e| KeelError::usage(format!("corrupt learner state: {e}")))?;
        if st.actor.len() != self.actor.params().len() || st.q[0].len() != self.q[0].params().len()
        {
            return Err(bad("network sizes differ"));
        }
        self.actor.load_params(&st.actor);
        self.actor_opt
            .load_state(st.actor_opt)
            .map_err(|_| bad("actor optimizer"))?;
        for k in 0..2 {
            self.q[k].load_params(&st.q[k]);
            self.q_target[k].load_params(&st.q_target[k]);
        }
        let [s0, s1] = st.q_opt;
        self.q_opt[0]
            .load_state(s0)
            .map_err(|_| bad("critic optimizer"))?;
        self.q_opt[1]
            .load_state(s1)
            .map_err(|_| bad("critic optimizer"))?;
        self.log_alpha = st.log_alpha;
        self.alpha_adam = st.alpha_adam;
        self.updates = st.updates;
        Ok(())
    }
}
