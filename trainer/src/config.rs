//! Every knob of a training run in one place, with documented defaults per environment.
//!
//! A config file is TOML with the same layout as the `config.toml` a run writes (fully resolved),
//! so a user can copy one and edit it. Keys that are absent keep the defaults for the chosen env.
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::KeelError;

/// Which learning algorithm to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Algo {
    /// Model-free soft actor-critic.
    Sac,
}

/// Where the math runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// The GPU when a CUDA driver and device are present, else the CPU.
    Auto,
    Cpu,
    Cuda,
}

/// Soft actor-critic hyperparameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SacConfig {
    /// Discount factor.
    pub gamma: f32,
    /// Polyak factor for the target critics: target <- tau * online + (1 - tau) * target.
    pub tau: f32,
    /// Adam learning rate of the actor.
    pub actor_lr: f32,
    /// Adam learning rate of the twin critics.
    pub critic_lr: f32,
    /// Adam learning rate of log(alpha) (automatic entropy tuning).
    pub alpha_lr: f32,
    /// Initial entropy temperature alpha.
    pub init_alpha: f32,
    /// Entropy target; `None` means -act_dim (the usual heuristic).
    pub target_entropy: Option<f32>,
    /// Minibatch size of each gradient update.
    pub batch_size: usize,
    /// Replay buffer capacity (transitions).
    pub buffer_size: usize,
    /// Env steps with uniformly random actions before learning starts.
    pub learning_starts: usize,
    /// Gradient updates per env step (update-to-data ratio).
    pub updates_per_step: usize,
    /// Hidden widths of the actor (the deployed network: keep it small for microcontrollers).
    pub actor_hidden: Vec<usize>,
    /// Hidden widths of each critic (never deployed; may be wide).
    pub critic_hidden: Vec<usize>,
    /// Clip the global gradient norm of each network to this value (None = no clipping).
    pub max_grad_norm: Option<f32>,
}

impl Default for SacConfig {
    /// Defaults tuned on Pendulum-v1 (see docs/benchmarks.md): a small actor, a 2x256 critic, a
    /// short random warm-up and two updates per step for sample efficiency.
    fn default() -> Self {
        Self {
            gamma: 0.99,
            tau: 0.005,
            actor_lr: 1e-3,
            critic_lr: 1e-3,
            alpha_lr: 1e-3,
            init_alpha: 1.0,
            target_entropy: None,
            batch_size: 256,
            buffer_size: 1_000_000,
            learning_starts: 500,
            updates_per_step: 1,
            actor_hidden: vec![64, 64],
            critic_hidden: vec![256, 256],
            max_grad_norm: None,
        }
    }
}

impl SacConfig {
    /// Defaults for one environment.
    pub fn for_env(env: &str) -> Self {
        let base = Self::default();
        match env {
            "mountaincar" => Self {
                learning_starts: 5_000,
                ..base
            },
            "cartpole-swingup" => Self {
                learning_starts: 2_000,
                ..base
            },
            "fishery3" | "fishery1" | "allee" | "fishery-noisy-obs" => Self {
                learning_starts: 1_000,
                ..base
            },
            _ => base,
        }
    }
}

/// A whole training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Environment id (see `keel_trainer::env::ENV_IDS`).
    pub env: String,
    pub algo: Algo,
    /// Master seed: env resets, network init, exploration and minibatches derive from it.
    pub seed: u64,
    /// Total env steps.
    pub steps: usize,
    /// Evaluate the deterministic policy every this many env steps.
    pub eval_every: usize,
    /// Episodes per evaluation.
    pub eval_episodes: usize,
    /// Write a checkpoint every this many env steps (and at the end).
    pub checkpoint_every: usize,
    pub device: Device,
    pub sac: SacConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self::for_env("pendulum")
    }
}

impl TrainConfig {
    /// Defaults for one environment.
    pub fn for_env(env: &str) -> Self {
        let (steps, eval_every) = match env {
            "pendulum" => (5_000, 500),
            "mountaincar" => (50_000, 5_000),
            "cartpole-swingup" => (50_000, 5_000),
            _ => (30_000, 2_000),
        };
        Self {
            env: env.to_string(),
            algo: Algo::Sac,
            seed: 0,
            steps,
            eval_every,
            eval_episodes: 10,
            checkpoint_every: eval_every,
            device: Device::Auto,
            sac: SacConfig::for_env(env),
        }
    }

    /// Reads a config file over the defaults of `env` (or of the file's own `env` key).
    ///
    /// Errors name the file, and toml's message names the field, line and column.
    pub fn load(path: &Path, env_override: Option<&str>) -> Result<Self, KeelError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| KeelError::usage(format!("cannot read config {}: {e}", path.display())))?;
        Self::from_toml(&text, env_override)
            .map_err(|e| KeelError::usage(format!("{}: {e}", path.display())))
    }

    /// Parses TOML text over the defaults (see [`TrainConfig::load`]).
    pub fn from_toml(text: &str, env_override: Option<&str>) -> Result<Self, String> {
        // Pass 1 checks the user's text as written, so errors point at its lines.
        let parsed: TrainConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        let user: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        // Pass 2 lays the user's keys over the defaults of the env they chose.
        let env = env_override.map(str::to_string).unwrap_or(parsed.env);
        let mut merged = toml::Table::try_from(Self::for_env(&env)).map_err(|e| e.to_string())?;
        merge(&mut merged, user);
        merged.insert("env".into(), toml::Value::String(env));
        let cfg: TrainConfig = merged
            .try_into()
            .map_err(|e: toml::de::Error| e.to_string())?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Range checks that serde cannot express; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        let s = &self.sac;
        let checks: [(bool, &str); 10] = [
            (self.steps > 0, "steps must be > 0"),
            (self.eval_every > 0, "eval_every must be > 0"),
            (self.eval_episodes > 0, "eval_episodes must be > 0"),
            (self.checkpoint_every > 0, "checkpoint_every must be > 0"),
            (
                (0.0..=1.0).contains(&s.gamma),
                "sac.gamma must be in [0, 1]",
            ),
            (s.tau > 0.0 && s.tau <= 1.0, "sac.tau must be in (0, 1]"),
            (
                s.actor_lr > 0.0 && s.critic_lr > 0.0 && s.alpha_lr > 0.0,
                "sac.*_lr must be > 0",
            ),
            (
                s.batch_size > 0 && s.buffer_size > 0,
                "sac.batch_size and sac.buffer_size must be > 0",
            ),
            (s.init_alpha > 0.0, "sac.init_alpha must be > 0"),
            (
                s.actor_hidden
                    .iter()
                    .chain(&s.critic_hidden)
                    .all(|&w| w > 0),
                "hidden widths must be > 0",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, msg)) => Err(format!("invalid value: {msg}")),
            None => Ok(()),
        }
    }

    /// The fully resolved config as TOML (written to `DIR/config.toml`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

/// Recursively overwrites `base` with the keys of `over`.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_toml() {
        let c = TrainConfig::for_env("pendulum");
        assert_eq!(TrainConfig::from_toml(&c.to_toml(), None).unwrap(), c);
    }

    #[test]
    fn user_keys_override_env_defaults() {
        let c = TrainConfig::from_toml(
            "env = \"mountaincar\"\nseed = 3\n[sac]\nbatch_size = 64\n",
            None,
        )
        .unwrap();
        assert_eq!(c.env, "mountaincar");
        assert_eq!(c.seed, 3);
        assert_eq!(c.sac.batch_size, 64);
        assert_eq!(
            c.sac.learning_starts,
            SacConfig::for_env("mountaincar").learning_starts
        );
        let c = TrainConfig::from_toml("seed = 1", Some("fishery3")).unwrap();
        assert_eq!(c.env, "fishery3");
    }

    #[test]
    fn errors_name_field_and_line() {
        let e = TrainConfig::from_toml("seed = 1\n[sac]\nbatchsize = 3\n", None).unwrap_err();
        assert!(e.contains("batchsize") && e.contains("line 3"), "{e}");
        let e = TrainConfig::from_toml("seed = \"x\"\n", None).unwrap_err();
        assert!(e.contains("line 1") && e.contains("seed"), "{e}");
        let e = TrainConfig::from_toml("[sac]\ngamma = 2.0\n", None).unwrap_err();
        assert!(e.contains("sac.gamma"), "{e}");
    }
}
