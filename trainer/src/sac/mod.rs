//! Soft actor-critic, read top to bottom: twin Q critics with Polyak targets, a tanh-Gaussian
//! actor trained through the reparameterisation trick, and automatic entropy tuning.
//! All hyperparameters are in [`crate::config::SacConfig`].
//!
//! The model-based trainer reuses [`SacLearner::update`] on batches that mix real and model data.
pub mod explore;
pub mod gaussian;
mod learner;
pub mod robust;

pub use gaussian::SquashedGaussian;
pub use learner::{SacLearner, UpdateStats};

use rand::SeedableRng;
use rand_pcg::Pcg64;
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::env::Env;
use crate::error::KeelError;
use crate::replay::{Batch, ReplayBuffer};
use crate::train::Agent;

/// Model-free SAC: learns from the real replay buffer only.
pub struct Sac {
    learner: SacLearner,
    buffer: ReplayBuffer,
    batch: Batch,
    rng: Pcg64,
    learning_starts: usize,
    updates_per_step: usize,
    /// Real env steps taken (the learner's schedules). A checkpoint restores it as the buffer's
    /// length, which it equals until the buffer wraps.
    env_steps: usize,
}

#[derive(Serialize, Deserialize)]
struct SacState {
    learner: Vec<u8>,
    buffer: ReplayBuffer,
    rng: Pcg64,
}

impl Sac {
    pub fn new(cfg: &TrainConfig, env: &dyn Env) -> Self {
        let mut rng = Pcg64::seed_from_u64(cfg.seed ^ 0x5AC0_5AC0);
        let learner = SacLearner::new(
            &cfg.sac,
            &cfg.lipschitz,
            env.obs_dim(),
            env.action_low(),
            env.action_high(),
            &mut rng,
        );
        Self {
            learner,
            buffer: ReplayBuffer::new(cfg.sac.buffer_size, env.obs_dim(), env.act_dim()),
            batch: Batch::new(cfg.sac.batch_size, env.obs_dim(), env.act_dim()),
            rng,
            learning_starts: cfg.sac.learning_starts,
            updates_per_step: cfg.sac.updates_per_step,
            env_steps: 0,
        }
    }

    pub fn load(bytes: &[u8], cfg: &TrainConfig, env: &dyn Env) -> Result<Self, KeelError> {
        let st: SacState = postcard::from_bytes(bytes)
            .map_err(|e| KeelError::usage(format!("corrupt SAC checkpoint: {e}")))?;
        let mut sac = Self::new(cfg, env);
        sac.learner.load(&st.learner)?;
        sac.buffer = st.buffer;
        sac.env_steps = sac.buffer.len();
        sac.rng = st.rng;
        Ok(sac)
    }

    pub fn learner(&self) -> &SacLearner {
        &self.learner
    }
}

impl Agent for Sac {
    fn explore(&mut self, obs: &[f32], action: &mut [f32]) {
        let warmup = self.buffer.len() < self.learning_starts;
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
        self.buffer.push(obs, action, reward, next_obs, terminated);
        self.env_steps += 1;
        self.learner.set_env_step(self.env_steps);
        if self.buffer.len() >= self.learning_starts {
            for _ in 0..self.updates_per_step {
                let n = self.batch.size;
                self.buffer
                    .sample_into(&mut self.rng, &mut self.batch, 0..n);
                self.learner.update(&self.batch, &mut self.rng, 0..0);
            }
        }
    }

    fn policy_spec(&self) -> keel_runtime::encode::PolicySpec {
        self.learner.policy_spec()
    }

    fn stats(&mut self) -> Vec<(String, f64)> {
        let mut stats = self.learner.stats();
        stats.extend(lipschitz_stats(&mut self.learner, &self.buffer));
        stats
    }

    fn save(&self) -> Result<Vec<u8>, KeelError> {
        let st = SacState {
            learner: self.learner.save()?,
            buffer: self.buffer.clone(),
            rng: self.rng.clone(),
        };
        postcard::to_stdvec(&st)
            .map_err(|e| KeelError::internal(format!("cannot serialize SAC state: {e}")))
    }
}

/// Seeds the Lipschitz measurement's sample (see [`lipschitz_stats`]).
const MEASURE_SEED: u64 = 0x4C49_5053_4348_4954;

/// Lipschitz measurements of the critic on states (and actions) sampled from `buffer`.
///
/// The sample is drawn with a generator of its own, seeded by the buffer's length: a
/// measurement must not move the training's random stream, or a run evaluated at one more step
/// (a resumed run's first leg ends with an evaluation) would train differently.
pub fn lipschitz_stats(learner: &mut SacLearner, buffer: &ReplayBuffer) -> Vec<(String, f64)> {
    let n = learner.lip.measure_states.min(buffer.len());
    if n == 0 {
        return vec![
            ("lip_grad_max".into(), f64::NAN),
            ("lip_grad_mean".into(), f64::NAN),
            ("lip_layer_bound".into(), f64::NAN),
        ];
    }
    let mut b = Batch::new(n, buffer.obs_dim(), buffer.act_dim());
    let mut rng = Pcg64::seed_from_u64(MEASURE_SEED ^ buffer.len() as u64);
    buffer.sample_into(&mut rng, &mut b, 0..n);
    let (max, mean, bound) = learner.measure_lipschitz(&b.obs, &b.act, n);
    vec![
        ("lip_grad_max".into(), max),
        ("lip_grad_mean".into(), mean),
        ("lip_layer_bound".into(), bound),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Algo;
    use crate::env::make_env;
    use rand::Rng;

    /// The critic's fixed point on a plant that pays 1 per step and loops on one state: a
    /// transition stored as non-terminal (what the training loop stores at a time-limit
    /// truncation: only `terminated` is kept) bootstraps, Q -> 1 / (1 - gamma); a terminal one
    /// does not, Q -> 1.
    #[test]
    fn critic_bootstraps_past_a_truncation_and_not_past_a_terminal() {
        let mut cfg = TrainConfig::for_env_algo("pendulum", Algo::Sac);
        cfg.sac.gamma = 0.5;
        // Next to no entropy bonus: the fixed point is then r / (1 - gamma (1 - done)).
        cfg.sac.init_alpha = 1e-6;
        cfg.sac.alpha_lr = 1e-9;
        cfg.sac.actor_hidden = vec![16];
        cfg.sac.critic_hidden = vec![32, 32];
        cfg.sac.batch_size = 32;
        cfg.sac.learning_starts = 32;
        cfg.sac.updates_per_step = 2;
        let env = make_env("pendulum").unwrap();
        let obs = [1.0f32, 0.0, 0.0];
        for (terminated, want) in [(false, 2.0f32), (true, 1.0)] {
            let mut sac = Sac::new(&cfg, env.as_ref());
            let mut rng = Pcg64::seed_from_u64(3);
            for _ in 0..1500 {
                // Actions vary so the critic is fitted over the actor's whole action range.
                let act = [rng.random_range(-2.0f32..2.0)];
                sac.observe(&obs, &act, 1.0, &obs, terminated);
            }
            let mut critic = sac.learner().critics()[0].clone();
            for a in [-1.5f32, 0.0, 1.5] {
                let q = critic.predict(&[obs[0], obs[1], obs[2], a], 1)[0];
                assert!(
                    (q - want).abs() < 0.05,
                    "terminated = {terminated}, a = {a}: Q = {q}, want {want}"
                );
            }
        }
    }

    /// An entropy target no policy reaches drives the temperature up at every update; with
    /// `sac.max_alpha` it stops at the ceiling (and a start above the ceiling is clamped).
    #[test]
    fn the_temperature_stops_at_its_ceiling() {
        let mut cfg = TrainConfig::for_env_algo("pendulum", Algo::Sac);
        cfg.sac.target_entropy = Some(10.0);
        cfg.sac.alpha_lr = 1e-2;
        cfg.sac.actor_hidden = vec![8];
        cfg.sac.critic_hidden = vec![16];
        cfg.sac.batch_size = 16;
        cfg.sac.learning_starts = 16;
        let env = make_env("pendulum").unwrap();
        let obs = [1.0f32, 0.0, 0.0];
        for (ceiling, start) in [(None, 0.5f32), (Some(0.5f32), 0.5), (Some(0.5), 2.0)] {
            cfg.sac.init_alpha = start;
            cfg.sac.max_alpha = ceiling;
            let mut sac = Sac::new(&cfg, env.as_ref());
            assert!(sac.learner().alpha() <= start.min(ceiling.unwrap_or(f32::INFINITY)) * 1.0001);
            let mut highest = 0.0f32;
            for _ in 0..200 {
                sac.observe(&obs, &[0.5], 0.0, &obs, false);
                highest = highest.max(sac.learner().alpha());
            }
            match ceiling {
                None => assert!(highest > 1.0, "no ceiling: alpha only reached {highest}"),
                Some(c) => {
                    assert!(
                        highest <= c * 1.0001,
                        "alpha {highest} above the ceiling {c}"
                    );
                    assert!(
                        highest > c * 0.99,
                        "alpha {highest} never reached the ceiling {c}"
                    );
                }
            }
        }
    }
}
