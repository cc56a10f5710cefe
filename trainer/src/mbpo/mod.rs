//! Model-based policy optimisation, read top to bottom: real steps fill the replay buffer; every
//! `retrain_every` steps the dynamics model is refit; every `rollout_every` steps the model is
//! rolled out from real start states under the current policy into the model buffer; every env
//! step SAC takes `updates_per_step` gradient steps on batches that mix real and model data, with
//! the Lipschitz-regularised critic (spectral norm + robust loss on the model rows).
//! All knobs are in [`crate::config::MbpoConfig`] and [`crate::config::LipschitzConfig`].
mod rollout;
mod select;

pub use rollout::{rollout, RolloutScratch};
pub use select::{model_return, ModelReturn};

use keel_runtime::Policy;
use rand::SeedableRng;
use rand_pcg::Pcg64;
use serde::{Deserialize, Serialize};

use crate::config::{MbpoConfig, TrainConfig};
use crate::env::Env;
use crate::error::KeelError;
use crate::eval::HOST_CAPACITY;
use crate::model::{DynamicsModel, ModelState};
use crate::nn::{AdamState, CpuBackend};
use crate::replay::{Batch, ReplayBuffer};
use crate::sac::{lipschitz_stats, SacLearner};
use crate::train::Agent;

/// MBPO with one dynamics model (or an ensemble) and a Lipschitz-regularised SAC critic.
pub struct Mbpo {
    cfg: MbpoConfig,
    env: Box<dyn Env>,
    learner: SacLearner,
    model: DynamicsModel<CpuBackend>,
    real: ReplayBuffer,
    model_buf: ReplayBuffer,
    batch: Batch,
    scratch: RolloutScratch,
    rng: Pcg64,
    env_steps: usize,
    trained: bool,
    robust_rows: usize,
    robust_on_real: bool,
    /// Epochs and retrains since the last `stats` (not checkpointed: a diagnostic that shows
    /// how long early stopping lets each retrain run).
    epochs_since_stats: (usize, usize),
}

#[derive(Serialize, Deserialize)]
struct MbpoState {
    learner: Vec<u8>,
    model: ModelState,
    trained: bool,
    real: ReplayBuffer,
    model_buf: ReplayBuffer,
    rng: Pcg64,
    env_steps: usize,
}

/// State added after checkpoint format 2 first shipped; it follows [`MbpoState`] in the saved
/// bytes, and an older checkpoint (without it) starts the model's Adam moments afresh.
#[derive(Serialize, Deserialize)]
struct MbpoStateAdded {
    model_optimizer: AdamState,
}

impl Mbpo {
    pub fn new(cfg: &TrainConfig, env: &dyn Env) -> Result<Self, KeelError> {
        let m = &cfg.mbpo;
        let mut rng = Pcg64::seed_from_u64(cfg.seed ^ 0x3B90_3B90);
        let learner = SacLearner::new(
            &cfg.sac,
            &cfg.lipschitz,
            env.obs_dim(),
            env.action_low(),
            env.action_high(),
            &mut rng,
        );
        let mut model_cfg = m.model.clone();
        if env
            .reward_fn(
                &vec![0.0; env.obs_dim()],
                &vec![0.0; env.act_dim()],
                &vec![0.0; env.obs_dim()],
            )
            .is_some()
        {
            // The env's closed-form reward is exact: the model need not learn it.
            model_cfg.predict_reward = false;
        } else if !model_cfg.predict_reward {
            return Err(KeelError::usage(format!(
                "invalid value: mbpo.model.predict_reward = false needs a plant with a \
                 closed-form reward, and {} has none",
                env.id()
            )));
        }
        let model = DynamicsModel::new(
            &CpuBackend,
            &model_cfg,
            env.obs_dim(),
            env.act_dim(),
            &mut rng,
        )
        .map_err(|e| KeelError::usage(format!("invalid mbpo.model config: {e}")))?;
        let model_capacity =
            (m.rollouts_per_step * m.model_retain_steps * m.rollout_len_max).max(1);
        Ok(Self {
            cfg: m.clone(),
            env: env.box_clone(),
            learner,
            model,
            real: ReplayBuffer::new(cfg.sac.buffer_size, env.obs_dim(), env.act_dim()),
            model_buf: ReplayBuffer::new(model_capacity, env.obs_dim(), env.act_dim()),
            batch: Batch::new(cfg.sac.batch_size, env.obs_dim(), env.act_dim()),
            scratch: RolloutScratch::new(
                m.rollouts_per_step * m.rollout_every,
                env.obs_dim(),
                env.act_dim(),
            ),
            rng,
            env_steps: 0,
            trained: false,
            robust_rows: cfg.lipschitz.robust_rows,
            robust_on_real: cfg.lipschitz.robust_on_real,
            epochs_since_stats: (0, 0),
        })
    }

    pub fn load(bytes: &[u8], cfg: &TrainConfig, env: &dyn Env) -> Result<Self, KeelError> {
        let corrupt =
            |e: postcard::Error| KeelError::usage(format!("corrupt MBPO checkpoint: {e}"));
        let (st, added): (MbpoState, Option<MbpoStateAdded>) =
            crate::checkpoint::from_bytes_with_added(bytes).map_err(corrupt)?;
        let mut me = Self::new(cfg, env)?;
        me.learner.load(&st.learner)?;
        me.model = DynamicsModel::from_state(&CpuBackend, &st.model)
            .map_err(|e| KeelError::usage(format!("checkpoint model does not match: {e}")))?;
        if let Some(added) = added {
            me.model
                .load_optimizer_state(&added.model_optimizer)
                .map_err(|e| KeelError::usage(format!("checkpoint model does not match: {e}")))?;
        }
        me.trained = st.trained;
        me.real = st.real;
        me.model_buf = st.model_buf;
        me.rng = st.rng;
        me.env_steps = st.env_steps;
        Ok(me)
    }

    /// The rollout length at the current env step (linear schedule).
    fn rollout_len(&self) -> usize {
        let m = &self.cfg;
        let f = crate::config::ramp(self.env_steps, m.rollout_len_from, m.rollout_len_to);
        (m.rollout_len_min as f32 + f * (m.rollout_len_max - m.rollout_len_min) as f32).round()
            as usize
    }

    /// Model-side compute so far (training and prediction seconds).
    pub fn model_seconds(&self) -> f64 {
        self.model.stats().compute_seconds()
    }
}

impl Agent for Mbpo {
    fn explore(&mut self, obs: &[f32], action: &mut [f32]) {
        let warmup = self.real.len() < self.cfg.init_steps;
        self.learner.explore(obs, action, warmup, &mut self.rng);
    }

    fn observe(
        &mut self,
        obs: &[f32],
        action: &[f32],
        reward: f32,
        next_obs: &[f32],
        terminated: bool,
    ) {
        self.real.push(obs, action, reward, next_obs, terminated);
        self.env_steps += 1;
        self.learner.set_env_step(self.env_steps);
        let m = &self.cfg;
        if self.real.len() < m.init_steps {
            return;
        }
        let since = self.env_steps - m.init_steps;
        let real_ratio = m.real_ratio_at(self.env_steps);
        if real_ratio >= 1.0 {
            // No model row is drawn: skip the model's work, and refit it before it is used again.
            self.trained = false;
            if self.robust_on_real && since.is_multiple_of(m.retrain_every) {
                // The robust term's radius still follows the data, at the refits' pace.
                self.learner.set_state_std(&self.real.obs_mean_std().1);
            }
        } else if !self.trained || since.is_multiple_of(m.retrain_every) {
            let epochs = self.model.train(&self.real, &mut self.rng).epochs;
            self.epochs_since_stats.0 += epochs;
            self.epochs_since_stats.1 += 1;
            self.learner.set_state_std(&self.real.obs_mean_std().1);
            self.trained = true;
        }
        if real_ratio < 1.0 && since.is_multiple_of(m.rollout_every) {
            let k = self.rollout_len();
            rollout(
                &mut self.model,
                &mut self.learner,
                self.env.as_ref(),
                &self.real,
                &mut self.model_buf,
                &mut self.scratch,
                k,
                &mut self.rng,
            );
        }
        let b = self.batch.size;
        let n_real = if self.model_buf.is_empty() {
            b
        } else {
            ((b as f32) * real_ratio).round() as usize
        };
        for _ in 0..m.updates_per_step {
            self.real
                .sample_into(&mut self.rng, &mut self.batch, 0..n_real);
            if n_real < b {
                self.model_buf
                    .sample_into(&mut self.rng, &mut self.batch, n_real..b);
            }
            // Rows are drawn at random, so the first `robust_rows` of a part are a random subset.
            let robust = if n_real == b && self.robust_on_real {
                0..self.robust_rows.min(b)
            } else {
                n_real..(n_real + self.robust_rows).min(b)
            };
            self.learner.update(&self.batch, &mut self.rng, robust);
        }
    }

    fn policy_spec(&self) -> keel_runtime::encode::PolicySpec {
        self.learner.policy_spec()
    }

    fn stats(&mut self) -> Vec<(String, f64)> {
        let mut stats = self.learner.stats();
        stats.extend(lipschitz_stats(&mut self.learner, &self.real));
        let ms = self.model.stats();
        stats.push(("model_holdout_mse".into(), f64::from(ms.holdout_mse)));
        stats.push(("model_train_s".into(), ms.total_train_seconds));
        stats.push(("model_predict_s".into(), ms.predict_seconds));
        stats.push(("model_buffer".into(), self.model_buf.len() as f64));
        // Mean epochs per retrain since the last evaluation (NaN if none retrained).
        let (epochs, retrains) = std::mem::take(&mut self.epochs_since_stats);
        stats.push(("model_epochs".into(), epochs as f64 / retrains as f64));
        stats
    }

    fn model_return(
        &mut self,
        policy: &Policy<'_, HOST_CAPACITY>,
        episodes: usize,
        seed: u64,
    ) -> Result<Option<ModelReturn>, KeelError> {
        if !self.trained {
            // Not fitted yet, or idle through a real-only phase (fishery3 after 60,000 steps):
            // fit it to all the real data now, with its own generator so that scoring never
            // moves the run's random stream.
            if self.real.len() < self.cfg.init_steps.max(1) {
                return Ok(None);
            }
            let mut rng = Pcg64::seed_from_u64(seed ^ 0xF17_F17);
            self.model.train(&self.real, &mut rng);
            self.trained = true;
        }
        model_return(&mut self.model, self.env.as_ref(), policy, episodes, seed).map(Some)
    }

    fn save(&self) -> Result<Vec<u8>, KeelError> {
        let st = MbpoState {
            learner: self.learner.save()?,
            model: self.model.state(),
            trained: self.trained,
            real: self.real.clone(),
            model_buf: self.model_buf.clone(),
            rng: self.rng.clone(),
            env_steps: self.env_steps,
        };
        let added = MbpoStateAdded {
            model_optimizer: self.model.optimizer_state(),
        };
        let ser =
            |e: postcard::Error| KeelError::internal(format!("cannot serialize MBPO state: {e}"));
        crate::checkpoint::to_bytes_with_added(&st, &added).map_err(ser)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::make_env;
    use rand::Rng;

    /// A model that does not learn the reward needs the plant's closed-form one: refused with
    /// the key's name where there is none (fishery3), taken where there is (Pendulum).
    #[test]
    fn predict_reward_off_needs_a_closed_form_reward() {
        let mut cfg = TrainConfig::for_env("fishery3");
        cfg.mbpo.model.predict_reward = false;
        let env = make_env("fishery3").unwrap();
        let e = Mbpo::new(&cfg, env.as_ref()).err().unwrap();
        assert!(e.to_string().contains("mbpo.model.predict_reward"), "{e}");
        cfg.env = "pendulum".into();
        let env = make_env("pendulum").unwrap();
        assert!(Mbpo::new(&cfg, env.as_ref()).is_ok());
    }

    /// The robust weight follows its schedule through the env steps the agent observes.
    #[test]
    fn robust_weight_grows_with_env_steps() {
        let mut cfg = TrainConfig::for_env("pendulum");
        cfg.lipschitz.lambda = 0.25;
        cfg.lipschitz.lambda_final = Some(1.0);
        cfg.lipschitz.lambda_from = 100;
        cfg.lipschitz.lambda_to = 150;
        // No model training or SAC update: every step stays in the warm-up.
        cfg.mbpo.init_steps = 1000;
        let env = make_env("pendulum").unwrap();
        let mut agent = Mbpo::new(&cfg, env.as_ref()).unwrap();
        let weight = |a: &Mbpo| {
            let stats = a.learner.stats();
            stats.iter().find(|(k, _)| k == "robust_lambda").unwrap().1
        };
        assert_eq!(weight(&agent), 0.25);
        let (obs, act) = (vec![0.1; 3], vec![0.0; 1]);
        let mut seen = Vec::new();
        for step in 1..=200 {
            agent.observe(&obs, &act, -1.0, &obs, false);
            if [100, 125, 150, 200].contains(&step) {
                seen.push(weight(&agent));
            }
        }
        assert_eq!(seen, [0.25, 0.625, 1.0, 1.0]);
    }

    /// Pendulum MBPO at toy scale: refits every 10 steps from step 20, 2 rollouts a step every
    /// 5 steps, an 8-unit model.
    fn tiny_pendulum() -> TrainConfig {
        tiny("pendulum")
    }

    /// `env`'s defaults with [`tiny_pendulum`]'s toy-scale model loop.
    fn tiny(env: &str) -> TrainConfig {
        let mut cfg = TrainConfig::for_env(env);
        cfg.mbpo.init_steps = 20;
        cfg.mbpo.retrain_every = 10;
        cfg.mbpo.rollout_every = 5;
        cfg.mbpo.rollouts_per_step = 2;
        cfg.mbpo.model.hidden = vec![8];
        cfg.mbpo.model.weight_decay = vec![1e-4];
        cfg
    }

    /// While the real fraction is 1 the model is neither refit nor rolled out; when it falls
    /// again the model is refit at once and rolled out at its next interval.
    #[test]
    fn all_real_batches_skip_the_model() {
        let mut cfg = tiny_pendulum();
        cfg.mbpo.updates_per_step = 1;
        cfg.mbpo.model.max_epochs = 2;
        // 0.5 up to step 40, 1 from 41 to 60, then back to 0.5.
        cfg.mbpo.real_ratio = 0.5;
        cfg.mbpo.real_ratio_final = Some(1.0);
        cfg.mbpo.real_ratio_from = 40;
        cfg.mbpo.real_ratio_to = 40;
        let env = make_env("pendulum").unwrap();
        let mut agent = Mbpo::new(&cfg, env.as_ref()).unwrap();
        let (obs, act) = (vec![0.1; 3], vec![0.0; 1]);
        let step = |agent: &mut Mbpo, n: usize| {
            for _ in 0..n {
                agent.observe(&obs, &act, -1.0, &obs, false);
            }
            let retrains = std::mem::take(&mut agent.epochs_since_stats).1;
            (retrains, agent.model_buf.len())
        };
        // Steps 20, 30, 40 refit; rollouts at 20, 25, ..., 40 (2 x 5 starts, 1 step each).
        let (retrains, filled) = step(&mut agent, 40);
        assert_eq!(retrains, 3);
        assert!(filled > 0);
        assert_eq!(
            step(&mut agent, 20),
            (0, filled),
            "no model work at ratio 1"
        );
        agent.cfg.real_ratio_final = None;
        // Step 61 refits the stale model at once; step 65 rolls it out.
        assert_eq!(step(&mut agent, 1), (1, filled));
        let (retrains, more) = step(&mut agent, 4);
        assert_eq!(retrains, 0);
        assert!(more > filled, "{more} > {filled}");
    }

    /// Scoring a policy in the model: nothing before the first fit; in a real-only phase the idle
    /// model is refit on all the real data first, with its own generator, so the run's random
    /// stream and data stay as they were and the same seed gives the same score.
    #[test]
    fn scoring_refits_an_idle_model_without_moving_the_run() {
        let cfg = tiny_fishery3();
        let template = make_env("fishery3").unwrap();
        let mut env = template.box_clone();
        let mut agent = Mbpo::new(&cfg, template.as_ref()).unwrap();
        let blob = keel_runtime::encode::encode(&agent.policy_spec()).unwrap();
        let policy = crate::eval::load_policy(&blob).unwrap();
        assert_eq!(agent.model_return(&policy, 5, 3).unwrap(), None);
        let (mut obs, mut next) = (vec![0.0; 3], vec![0.0; 3]);
        let mut act = vec![0.0; 2];
        env.reset(Some(1), &mut obs);
        // The switch to real-only batches comes at step 45; the model idles after it.
        for _ in 0..60 {
            agent.explore(&obs, &mut act);
            let s = env.step(&act, &mut next);
            agent.observe(&obs, &act, s.reward as f32, &next, s.terminated);
            if s.terminated || s.truncated {
                env.reset(None, &mut obs);
            } else {
                obs.copy_from_slice(&next);
            }
        }
        assert!(!agent.trained, "idle after the switch");
        let (rng, real_len) = (agent.rng.clone(), agent.real.len());
        let first = agent.model_return(&policy, 5, 3).unwrap().unwrap();
        assert!(agent.trained, "refit before scoring");
        assert!(first.mean_return.is_finite(), "{first:?}");
        assert!(agent.rng == rng, "scoring moved the run's random stream");
        assert_eq!(agent.real.len(), real_len);
        assert_eq!(agent.model_return(&policy, 5, 3).unwrap().unwrap(), first);
    }

    /// With no model rows in a batch the robust term lapses, unless `robust_on_real` moves it
    /// onto real rows.
    #[test]
    fn robust_term_on_real_rows_when_no_model_rows() {
        let gap = |on_real: bool| {
            let mut cfg = tiny_pendulum();
            cfg.mbpo.updates_per_step = 1;
            cfg.mbpo.real_ratio = 1.0;
            cfg.lipschitz.robust_on_real = on_real;
            let env = make_env("pendulum").unwrap();
            let mut agent = Mbpo::new(&cfg, env.as_ref()).unwrap();
            let mut rng = Pcg64::seed_from_u64(3);
            let act = vec![0.0; 1];
            for _ in 0..60 {
                let obs: Vec<f32> = (0..3).map(|_| rng.random_range(-1.0..1.0)).collect();
                agent.observe(&obs, &act, -1.0, &obs, false);
            }
            assert!(agent.model_buf.is_empty(), "no model work at ratio 1");
            agent.learner.last_stats().robust_gap
        };
        assert_eq!(gap(false), 0.0);
        assert!(gap(true) > 0.0);
    }

    /// A checkpointed agent continues exactly as the one that wrote it: same actions, same
    /// updates, same bytes (the model's Adam moments, the critics' spectral-norm vectors and
    /// the robust loss's state scale are part of the state).
    #[test]
    fn a_restored_agent_continues_exactly() {
        let mut cfg = tiny_pendulum();
        cfg.mbpo.updates_per_step = 2;
        cfg.mbpo.model.max_epochs = 3;
        cfg.sac.actor_hidden = vec![8];
        cfg.sac.critic_hidden = vec![8, 8];
        cfg.sac.batch_size = 16;
        // Past the first refits, mid-interval (step 37: neither a refit nor a rollout is due).
        assert_continues_exactly(&cfg, [&cfg, &cfg], "pendulum", 37, 30);
    }

    /// fishery3's default switches on features the Pendulum case leaves off: a deployed policy
    /// average, learning-rate decay, and the switch to real-only batches with the robust term
    /// on real rows. Saved just before the switch and continued across it.
    #[test]
    fn a_restored_fishery3_agent_continues_exactly() {
        let cfg = tiny_fishery3();
        assert!(cfg.sac.policy_average > 0.0 && cfg.sac.lr_final_scale < 1.0);
        assert_continues_exactly(&cfg, [&cfg, &cfg], "fishery3", 42, 30);
    }

    /// A run whose average's weight falls after step 42 deploys exactly what a run stopped at 42
    /// and continued with the smaller `policy_average` does (`keel train --resume --config`).
    #[test]
    fn a_scheduled_average_equals_retuning_it_at_the_switch() {
        let plain = tiny_fishery3();
        let mut retuned = plain.clone();
        retuned.sac.policy_average *= 0.25;
        let mut scheduled = plain.clone();
        (
            scheduled.sac.policy_average_final_scale,
            scheduled.sac.policy_average_from,
        ) = (0.25, 42);
        assert_continues_exactly(&scheduled, [&plain, &retuned], "fishery3", 42, 30);
    }

    fn tiny_fishery3() -> TrainConfig {
        let mut cfg = tiny("fishery3");
        cfg.sac.actor_hidden = vec![8];
        cfg.sac.critic_hidden = vec![8, 8];
        cfg.sac.batch_size = 16;
        cfg.sac.learning_starts = 10;
        (cfg.sac.lr_decay_from, cfg.sac.lr_decay_to) = (20, 80);
        cfg.mbpo.updates_per_step = 2;
        cfg.mbpo.model.max_epochs = 3;
        cfg.mbpo.real_ratio_final = Some(1.0);
        (cfg.mbpo.real_ratio_from, cfg.mbpo.real_ratio_to) = (45, 45);
        cfg.lipschitz.robust_on_real = true;
        cfg
    }

    /// Drives an agent with `cfg` `before + after` steps straight through and, on the same
    /// transitions, a run in two legs: `before` steps with `legs[0]`, saved, restored with
    /// `legs[1]` (the settings a resumed run continues with) and driven `after` more. Requires
    /// equal actions throughout, and equal state and deployed policies at the end.
    fn assert_continues_exactly(
        cfg: &TrainConfig,
        legs: [&TrainConfig; 2],
        env_name: &str,
        before: usize,
        after: usize,
    ) {
        let template = make_env(env_name).unwrap();
        let mut env = template.box_clone();
        let mut agent = Mbpo::new(cfg, template.as_ref()).unwrap();
        let mut first_leg = Mbpo::new(legs[0], template.as_ref()).unwrap();
        let mut obs = vec![0.0; template.obs_dim()];
        let mut next = obs.clone();
        let mut act = vec![0.0; template.act_dim()];
        let mut episode = 7;
        env.reset(Some(episode), &mut obs);
        let mut drive = |agents: &mut [&mut Mbpo], n: usize| {
            for _ in 0..n {
                let mut acts = Vec::new();
                for a in agents.iter_mut() {
                    a.explore(&obs, &mut act);
                    acts.push(act.clone());
                }
                assert!(acts.windows(2).all(|w| w[0] == w[1]), "actions differ");
                let s = env.step(&act, &mut next);
                for a in agents.iter_mut() {
                    a.observe(&obs, &act, s.reward as f32, &next, s.terminated);
                }
                if s.terminated || s.truncated {
                    episode += 1;
                    env.reset(Some(episode), &mut obs);
                } else {
                    obs.copy_from_slice(&next);
                }
            }
        };
        drive(&mut [&mut agent, &mut first_leg], before);
        let saved = first_leg.save().unwrap();
        let mut restored = Mbpo::load(&saved, legs[1], template.as_ref()).unwrap();
        assert_eq!(
            restored.save().unwrap(),
            saved,
            "load then save changes the state"
        );
        // A run's first leg ends with an evaluation the run straight through may not have
        // there: measuring must not change what follows.
        agent.stats();
        drive(&mut [&mut agent, &mut restored], after);
        // Equal but for the model's timing statistics (wall-clock seconds).
        let state = |a: &Mbpo| {
            let mut bytes = a.save().unwrap();
            let (mut st, rest): (MbpoState, _) = postcard::take_from_bytes(&bytes).unwrap();
            let rest = rest.to_vec();
            (
                st.model.stats.train_seconds,
                st.model.stats.total_train_seconds,
            ) = (0.0, 0.0);
            st.model.stats.predict_seconds = 0.0;
            bytes = postcard::to_stdvec(&st).unwrap();
            bytes.extend(rest);
            bytes
        };
        assert!(
            state(&agent) == state(&restored),
            "the restored agent drifted"
        );
        assert!(
            agent.policy_spec() == restored.policy_spec(),
            "the deployed policies differ"
        );
    }
}
