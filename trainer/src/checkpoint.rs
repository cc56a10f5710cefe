//! `checkpoint.bin`: everything a run needs to continue (config, counters, evaluation records,
//! the agent's networks, optimizers, buffers and RNG).
//!
//! Postcard is positional: a struct read back with a field added is garbage. The agent's state
//! has to be positional (it is most of the file), but the config gains keys as Keel grows, so
//! from format 2 on it is stored as its TOML text, where a key added later takes its neutral
//! default ([`TrainConfig::from_written`]) and an old run still resumes. Format 1 (no magic
//! prefix, the config as postcard fields) is read through a frozen copy of its layout.
//!
//! State an agent gained later (the model's Adam moments, the critics' spectral-norm vectors,
//! the robust loss's state scale) is serialized after its original struct in the agent's bytes,
//! so a file without it still reads and that state starts afresh. The plant's episode in
//! progress ([`EpisodeInProgress`]) is appended the same way after the stored checkpoint.
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::error::KeelError;
use crate::io::write_atomic;
use crate::metrics::EvalRecord;

pub const CHECKPOINT: &str = "checkpoint.bin";

/// Starts every checkpoint from format 2 on. A format-1 file starts with the env id's length
/// (a byte under 128) followed by the id, never with these bytes.
const MAGIC: &[u8; 8] = b"KEELCK\x00\x02";

/// Serializes `base` followed by `added`: how an agent keeps state it gained after format 2
/// (see the module documentation).
pub(crate) fn to_bytes_with_added<T: Serialize, A: Serialize>(
    base: &T,
    added: &A,
) -> Result<Vec<u8>, postcard::Error> {
    let mut bytes = postcard::to_stdvec(base)?;
    bytes.extend(postcard::to_stdvec(added)?);
    Ok(bytes)
}

/// Reads what [`to_bytes_with_added`] wrote; `None` for the added part of an older file, which
/// ends after `base`.
pub(crate) fn from_bytes_with_added<T, A>(bytes: &[u8]) -> Result<(T, Option<A>), postcard::Error>
where
    T: for<'de> Deserialize<'de>,
    A: for<'de> Deserialize<'de>,
{
    let (base, rest) = postcard::take_from_bytes(bytes)?;
    let added = match rest.is_empty() {
        true => None,
        false => Some(postcard::from_bytes(rest)?),
    };
    Ok((base, added))
}

/// A run's state at one env step.
pub struct Checkpoint {
    pub config: TrainConfig,
    pub env_step: usize,
    pub episodes: usize,
    pub wall_s: f64,
    pub records: Vec<EvalRecord>,
    pub agent: Vec<u8>,
    /// `None` in a file written before Keel kept it: the resumed run starts a new episode.
    pub episode: Option<EpisodeInProgress>,
}

/// The real plant's episode at the checkpoint. An env is deterministic given its reset seed
/// and the actions taken, so the actions since the reset rebuild its state (its random
/// generator included) without asking every [`crate::env::Env`] to serialize itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EpisodeInProgress {
    /// Every action since the episode's reset, flattened (`act_dim` values a step).
    pub actions: Vec<f32>,
    /// The observation after the last of them: what the replay must arrive at.
    pub obs: Vec<f32>,
}

/// Format 2 after [`MAGIC`].
#[derive(Serialize, Deserialize)]
struct Stored {
    config_toml: String,
    env_step: usize,
    episodes: usize,
    wall_s: f64,
    records: Vec<EvalRecord>,
    agent: Vec<u8>,
}

impl Checkpoint {
    /// Writes `dir/checkpoint.bin` atomically (a run killed mid-write keeps the previous one).
    pub fn write(&self, dir: &Path) -> Result<(), KeelError> {
        let stored = Stored {
            config_toml: self.config.to_toml(),
            env_step: self.env_step,
            episodes: self.episodes,
            wall_s: self.wall_s,
            records: self.records.clone(),
            agent: self.agent.clone(),
        };
        let body = to_bytes_with_added(&stored, &self.episode)
            .map_err(|e| KeelError::internal(format!("checkpoint: {e}")))?;
        let bytes = [MAGIC.as_slice(), &body].concat();
        write_atomic(&dir.join(CHECKPOINT), &bytes)
    }

    /// Reads `dir/checkpoint.bin` of either format; errors name the file.
    pub fn read(dir: &Path) -> Result<Self, KeelError> {
        let path = dir.join(CHECKPOINT);
        let bytes = std::fs::read(&path).map_err(|e| {
            KeelError::usage(format!(
                "no checkpoint to resume from at {}: {e}",
                path.display()
            ))
        })?;
        let bad = |e: String| {
            KeelError::usage(format!(
                "{}: corrupt or incompatible checkpoint: {e}",
                path.display()
            ))
        };
        let Some(body) = bytes.strip_prefix(MAGIC.as_slice()) else {
            return v1::decode(&bytes).map_err(bad);
        };
        let (s, episode): (Stored, Option<Option<EpisodeInProgress>>) =
            from_bytes_with_added(body).map_err(|e| bad(e.to_string()))?;
        let config =
            TrainConfig::from_written(&s.config_toml).map_err(|e| bad(format!("config: {e}")))?;
        Ok(Self {
            config,
            env_step: s.env_step,
            episodes: s.episodes,
            wall_s: s.wall_s,
            records: s.records,
            agent: s.agent,
            episode: episode.flatten(),
        })
    }
}

/// Format 1, frozen: the layout of checkpoints written up to Keel's session 24. Its config
/// is positional, so this module copies the config structs whose fields have changed since
/// (`MbpoConfig`: `real_ratio_final/_from/_to` came after; `LipschitzConfig`: `robust_on_real`
/// came in session 27; `SacConfig`: `policy_average_final_scale/_from` in session 30); the
/// others are still the same and are reused. Change nothing here
/// except to freeze another struct that changes.
mod v1 {
    use serde::Deserialize;

    use crate::config::{
        Algo, Attack, Device, LipschitzConfig, Matmul, MbpoConfig, RobustForm, SacConfig,
        TrainConfig,
    };

    #[derive(Deserialize)]
    struct SacV1 {
        gamma: f32,
        tau: f32,
        actor_lr: f32,
        critic_lr: f32,
        alpha_lr: f32,
        init_alpha: f32,
        max_alpha: Option<f32>,
        target_entropy: Option<f32>,
        batch_size: usize,
        buffer_size: usize,
        learning_starts: usize,
        updates_per_step: usize,
        actor_hidden: Vec<usize>,
        critic_hidden: Vec<usize>,
        max_grad_norm: Option<f32>,
        noise_correlation: f32,
        policy_average: f32,
        lr_final_scale: f32,
        lr_decay_from: usize,
        lr_decay_to: usize,
    }
    use crate::metrics::EvalRecord;
    use crate::model::ModelConfig;

    #[derive(Deserialize)]
    struct MbpoV1 {
        model: ModelConfig,
        init_steps: usize,
        retrain_every: usize,
        rollout_every: usize,
        rollouts_per_step: usize,
        rollout_len_min: usize,
        rollout_len_max: usize,
        rollout_len_from: usize,
        rollout_len_to: usize,
        model_retain_steps: usize,
        real_ratio: f32,
        updates_per_step: usize,
    }

    #[derive(Deserialize)]
    struct LipschitzV1 {
        spectral_norm: bool,
        sn_output_layer: bool,
        sn_q_scale: f32,
        robust: bool,
        attack: Attack,
        pgd_steps: usize,
        epsilon: f32,
        lambda: f32,
        lambda_final: Option<f32>,
        lambda_from: usize,
        lambda_to: usize,
        robust_rows: usize,
        form: RobustForm,
        measure_states: usize,
    }

    #[derive(Deserialize)]
    struct ConfigV1 {
        env: String,
        algo: Algo,
        seed: u64,
        steps: usize,
        eval_every: usize,
        eval_episodes: usize,
        checkpoint_every: usize,
        device: Device,
        matmul: Matmul,
        sac: SacV1,
        lipschitz: LipschitzV1,
        mbpo: MbpoV1,
    }

    #[derive(Deserialize)]
    struct CheckpointV1 {
        config: ConfigV1,
        env_step: usize,
        episodes: usize,
        wall_s: f64,
        records: Vec<EvalRecord>,
        agent: Vec<u8>,
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<super::Checkpoint, String> {
        let c: CheckpointV1 = postcard::from_bytes(bytes).map_err(|e| e.to_string())?;
        let old = c.config;
        let s = old.sac;
        let sac = SacConfig {
            gamma: s.gamma,
            tau: s.tau,
            actor_lr: s.actor_lr,
            critic_lr: s.critic_lr,
            alpha_lr: s.alpha_lr,
            init_alpha: s.init_alpha,
            max_alpha: s.max_alpha,
            target_entropy: s.target_entropy,
            batch_size: s.batch_size,
            buffer_size: s.buffer_size,
            learning_starts: s.learning_starts,
            updates_per_step: s.updates_per_step,
            actor_hidden: s.actor_hidden,
            critic_hidden: s.critic_hidden,
            max_grad_norm: s.max_grad_norm,
            noise_correlation: s.noise_correlation,
            policy_average: s.policy_average,
            policy_average_final_scale: 1.0,
            policy_average_from: 0,
            lr_final_scale: s.lr_final_scale,
            lr_decay_from: s.lr_decay_from,
            lr_decay_to: s.lr_decay_to,
        };
        let l = old.lipschitz;
        let lipschitz = LipschitzConfig {
            spectral_norm: l.spectral_norm,
            sn_output_layer: l.sn_output_layer,
            sn_q_scale: l.sn_q_scale,
            robust: l.robust,
            attack: l.attack,
            pgd_steps: l.pgd_steps,
            epsilon: l.epsilon,
            lambda: l.lambda,
            lambda_final: l.lambda_final,
            lambda_from: l.lambda_from,
            lambda_to: l.lambda_to,
            robust_rows: l.robust_rows,
            robust_on_real: false,
            form: l.form,
            measure_states: l.measure_states,
        };
        let m = old.mbpo;
        let mbpo = MbpoConfig {
            model: m.model,
            init_steps: m.init_steps,
            retrain_every: m.retrain_every,
            rollout_every: m.rollout_every,
            rollouts_per_step: m.rollouts_per_step,
            rollout_len_min: m.rollout_len_min,
            rollout_len_max: m.rollout_len_max,
            rollout_len_from: m.rollout_len_from,
            rollout_len_to: m.rollout_len_to,
            model_retain_steps: m.model_retain_steps,
            real_ratio: m.real_ratio,
            real_ratio_final: None,
            real_ratio_from: 0,
            real_ratio_to: 0,
            updates_per_step: m.updates_per_step,
            select_episodes: 0,
        };
        let config = TrainConfig {
            env: old.env,
            algo: old.algo,
            seed: old.seed,
            steps: old.steps,
            eval_every: old.eval_every,
            eval_episodes: old.eval_episodes,
            checkpoint_every: old.checkpoint_every,
            device: old.device,
            matmul: old.matmul,
            sac,
            lipschitz,
            mbpo,
        };
        Ok(super::Checkpoint {
            config,
            env_step: c.env_step,
            episodes: c.episodes,
            wall_s: c.wall_s,
            records: c.records,
            agent: c.agent,
            episode: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(config: TrainConfig) -> Checkpoint {
        Checkpoint {
            config,
            env_step: 1234,
            episodes: 7,
            wall_s: 12.5,
            records: vec![EvalRecord {
                env_step: 1000,
                eval_mean: -150.0,
                extra: vec![("model_train_s".into(), 3.0)],
                ..EvalRecord::default()
            }],
            agent: vec![1, 2, 3, 250],
            episode: Some(EpisodeInProgress {
                actions: vec![0.5, -0.25],
                obs: vec![1.0, 2.0, 3.0],
            }),
        }
    }

    /// Every env's defaults, with optional keys both unset and set, come back as written.
    #[test]
    fn format_2_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        for env in crate::env::ENV_IDS {
            for set in [false, true] {
                let mut c = TrainConfig::for_env(env);
                if set {
                    c.mbpo.real_ratio_final = Some(1.0);
                    c.mbpo.real_ratio_to = 60_000;
                    c.sac.target_entropy = Some(-0.5);
                }
                sample(c.clone()).write(dir.path()).unwrap();
                let back = Checkpoint::read(dir.path()).unwrap();
                assert_eq!(back.config, c, "{env}");
                assert_eq!((back.env_step, back.episodes), (1234, 7));
                assert_eq!((back.wall_s, back.agent), (12.5, vec![1, 2, 3, 250]));
                assert_eq!(back.records, sample(c.clone()).records);
                assert_eq!(back.episode, sample(c).episode);
            }
        }
    }

    /// A format-2 file from before the episode was kept (the stored struct and nothing after
    /// it) reads with no episode.
    #[test]
    fn format_2_without_an_episode_reads() {
        let dir = tempfile::tempdir().unwrap();
        let ck = sample(TrainConfig::for_env("pendulum"));
        ck.write(dir.path()).unwrap();
        let path = dir.path().join(CHECKPOINT);
        let full = std::fs::read(&path).unwrap();
        let tail = postcard::to_stdvec(&ck.episode).unwrap();
        std::fs::write(&path, &full[..full.len() - tail.len()]).unwrap();
        let back = Checkpoint::read(dir.path()).unwrap();
        assert_eq!((back.env_step, back.episode), (1234, None));
    }

    /// A file that is neither format names itself; so does a format-2 file cut short.
    #[test]
    fn bad_files_are_errors_that_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CHECKPOINT);
        sample(TrainConfig::for_env("pendulum"))
            .write(dir.path())
            .unwrap();
        let good = std::fs::read(&path).unwrap();
        for bytes in [&good[..good.len() - 3], b"\x05hello", &good[..MAGIC.len()]] {
            std::fs::write(&path, bytes).unwrap();
            let e = Checkpoint::read(dir.path()).err().unwrap().to_string();
            assert!(e.contains("checkpoint.bin: corrupt or incompatible"), "{e}");
        }
    }

    /// A checkpoint written by Keel before format 2 (session 24's binary: a 30-step MBPO run on
    /// Pendulum, tests/data/checkpoint_v1) reads with the config its run wrote beside it.
    #[test]
    fn format_1_still_reads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/checkpoint_v1");
        let ck = Checkpoint::read(&dir).unwrap();
        let written = std::fs::read_to_string(dir.join("config.toml")).unwrap();
        assert_eq!(ck.config, TrainConfig::from_written(&written).unwrap());
        assert_eq!(ck.config.mbpo.real_ratio_final, None);
        assert_eq!((ck.env_step, ck.records.len()), (30, 1));
        let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
        let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
        assert_eq!(ck.records[0].eval_mean.to_string(), row[2]);
    }
}
