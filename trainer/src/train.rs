//! The training loop shared by every algorithm: real env steps, evaluation through the exported
//! policy, metrics, plots, atomic checkpoints, resume, and the final `policy.keel`.
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use keel_runtime::encode::{encode, PolicySpec};
use keel_runtime::Policy;

use crate::checkpoint::{Checkpoint, EpisodeInProgress};
use crate::cli::TrainArgs;
use crate::config::{Algo, Device, Matmul, TrainConfig};
use crate::env::{make_env, Env};
use crate::error::KeelError;
use crate::eval::{evaluate, load_policy, EvalSummary, HOST_CAPACITY};
use crate::io::{ensure_writable_dir, write_atomic};
use crate::mbpo::{Mbpo, ModelReturn};
use crate::metrics::{self, EvalRecord};
use crate::policy_choice::select_by_model;
pub use crate::policy_choice::{select_in_dir, ModelChoice, MODEL_SELECT_CSV, SELECTED_POLICY};
use crate::sac::Sac;

/// What every learning algorithm offers the loop.
pub trait Agent {
    /// The action to take in the real env at this step (random during warm-up, then sampled).
    fn explore(&mut self, obs: &[f32], action: &mut [f32]);
    /// Records a real transition and runs the learning that is due at this env step.
    fn observe(
        &mut self,
        obs: &[f32],
        action: &[f32],
        reward: f32,
        next_obs: &[f32],
        terminated: bool,
    );
    /// The deterministic actor as a deployable policy (metadata filled in by the caller).
    fn policy_spec(&self) -> PolicySpec;
    /// Latest training statistics for metrics.csv (name, value); names are stable per run.
    fn stats(&mut self) -> Vec<(String, f64)>;
    /// Serialized state (networks, optimizers, buffers, RNG) for checkpoints.
    fn save(&self) -> Result<Vec<u8>, KeelError>;
    /// The dynamics model's estimate of `policy`'s episode return ([`crate::mbpo::model_return`]);
    /// `None` for an agent without a trained model.
    fn model_return(
        &mut self,
        _policy: &Policy<'_, HOST_CAPACITY>,
        _episodes: usize,
        _seed: u64,
    ) -> Result<Option<ModelReturn>, KeelError> {
        Ok(None)
    }
}

/// Builds the agent a config asks for, fresh or from a checkpoint's agent state.
pub(crate) fn make_agent(
    cfg: &TrainConfig,
    env: &dyn Env,
    state: Option<&[u8]>,
) -> Result<Box<dyn Agent>, KeelError> {
    match cfg.algo {
        Algo::Sac => Ok(Box::new(match state {
            Some(bytes) => Sac::load(bytes, cfg, env)?,
            None => Sac::new(cfg, env),
        })),
        Algo::Mbpo => Ok(Box::new(match state {
            Some(bytes) => Mbpo::load(bytes, cfg, env)?,
            None => Mbpo::new(cfg, env)?,
        })),
    }
}

/// Everything needed to continue a run.
/// The policy of the best evaluation so far (highest mean return), beside the final
/// `policy.keel`: on plants where late training can drift (fishery3), the best evaluated policy
/// is what a user wants to deploy.
pub const BEST_POLICY: &str = "policy_best.keel";

/// Every evaluated policy, as `step_NNNNNNN.keel` (about 18 KB each for fishery3's 60): the
/// candidates the dynamics model chooses among at the end of an MBPO run, without env steps.
pub const POLICIES_DIR: &str = "policies";

/// The file of the policy evaluated at `env_step` in [`POLICIES_DIR`].
pub fn policy_file(dir: &Path, env_step: usize) -> PathBuf {
    dir.join(POLICIES_DIR)
        .join(format!("step_{env_step:07}.keel"))
}

/// The evaluation whose policy is in [`BEST_POLICY`]: the first with the highest finite mean
/// return (training replaces the file only on a strictly better one).
fn first_best(records: &[EvalRecord]) -> Option<&EvalRecord> {
    let mut best: Option<&EvalRecord> = None;
    for r in records.iter().filter(|r| r.eval_mean.is_finite()) {
        if best.is_none_or(|b| r.eval_mean > b.eval_mean) {
            best = Some(r);
        }
    }
    best
}

/// The config and env step of the checkpoint in `dir`: what `keel bench` needs to decide whether
/// a run there can be continued.
pub fn checkpoint_state(dir: &Path) -> Result<(TrainConfig, usize), KeelError> {
    let ck = Checkpoint::read(dir)?;
    Ok((ck.config, ck.env_step))
}

/// Serializes the policy of an agent with run metadata.
fn policy_blob(
    agent: &dyn Agent,
    cfg: &TrainConfig,
    dir: &Path,
    env_step: usize,
) -> Result<Vec<u8>, KeelError> {
    let mut spec = agent.policy_spec();
    spec.name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "keel".into());
    spec.env_id = cfg.env.clone();
    spec.keel_version = env!("CARGO_PKG_VERSION").into();
    spec.train_steps = env_step as u64;
    encode(&spec).map_err(|e| KeelError::internal(format!("cannot encode policy: {e}")))
}

/// `keel export DIR`: the policy of the run's latest checkpoint.
pub fn export_from_dir(dir: &Path) -> Result<Vec<u8>, KeelError> {
    let ck = Checkpoint::read(dir)?;
    let env = make_env(&ck.config.env).map_err(|e| KeelError::usage(e.to_string()))?;
    let agent = make_agent(&ck.config, env.as_ref(), Some(&ck.agent))?;
    policy_blob(agent.as_ref(), &ck.config, dir, ck.env_step)
}

/// The result of a run.
pub struct TrainOutcome {
    pub dir: PathBuf,
    pub policy_path: PathBuf,
    pub final_eval: EvalSummary,
    pub records: Vec<EvalRecord>,
    /// The model's choice among the evaluated policies (`mbpo.select_episodes`), if made.
    pub selected: Option<ModelChoice>,
}

/// `keel train`.
pub fn train_cli(args: &TrainArgs) -> Result<(), KeelError> {
    let (cfg, dir, resume) = if args.resume {
        let dir = args
            .out
            .clone()
            .ok_or_else(|| KeelError::usage("--resume needs --out DIR of the run"))?;
        // A resumed run keeps its own config: a flag that would change what it trains is an
        // error rather than silently ignored.
        let fixed = [
            ("--env", args.env.is_some()),
            ("--algo", args.algo.is_some()),
            ("--model", args.model.is_some()),
            ("--lipschitz", args.lipschitz.is_some()),
            ("--seed", args.seed.is_some()),
        ];
        if let Some((flag, _)) = fixed.iter().find(|(_, given)| *given) {
            return Err(KeelError::usage(format!(
                "{flag} cannot be combined with --resume: the run continues with its own \
                 config.toml (with --resume only --steps, --device, --matmul, --threads and \
                 --config with the keys a continuing run may change apply)"
            )));
        }
        let ck = Checkpoint::read(&dir)?;
        let mut cfg = ck.config;
        if let Some(path) = &args.config {
            let text = std::fs::read_to_string(path).map_err(|e| {
                KeelError::usage(format!("cannot read config {}: {e}", path.display()))
            })?;
            let new = cfg
                .retuned(&text)
                .map_err(|e| KeelError::usage(format!("{}: {e}", path.display())))?;
            if !args.print_config && new != cfg {
                // The settings the run trained with so far stay beside the new config.toml.
                let before = dir.join(format!("config_until_{}.toml", ck.env_step));
                write_atomic(&before, cfg.to_toml().as_bytes())?;
            }
            cfg = new;
        }
        if let Some(s) = args.steps {
            cfg.steps = s;
        }
        if let Some(d) = args.device {
            cfg.device = d;
        }
        if let Some(m) = args.matmul {
            cfg.matmul = m;
        }
        (cfg, dir, true)
    } else {
        let cfg = args.resolve()?;
        let dir = args.out_dir(&cfg);
        (cfg, dir, false)
    };
    if args.print_config {
        print!("{}", cfg.to_toml());
        return Ok(());
    }
    if let Some(n) = args.threads {
        crate::nn::threads::set_threads(n.into());
    }
    let out = train(&cfg, &dir, resume, !args.quiet)?;
    println!(
        "policy: {}\nresult: {} after {} env steps: eval return {:.1} +- {:.1} over {} episodes",
        out.policy_path.display(),
        cfg.env,
        cfg.steps,
        out.final_eval.mean_return,
        out.final_eval.std_return,
        out.final_eval.episodes
    );
    if let Some(b) = first_best(&out.records) {
        println!(
            "best:   {} (eval return {:.1} at env step {})",
            dir.join(BEST_POLICY).display(),
            b.eval_mean,
            b.env_step
        );
    }
    if let Some(c) = out.selected {
        println!(
            "selected: {} (model return {:.1} at env step {}; all scores in {})",
            dir.join(SELECTED_POLICY).display(),
            c.model_return,
            c.env_step,
            dir.join(MODEL_SELECT_CSV).display()
        );
    }
    Ok(())
}

/// Steps `env`, freshly reset with the episode's seed, through the checkpoint's actions. The
/// episode's return so far when it arrives at the stored observation with the episode still
/// running, so the run goes on exactly as it would have straight through; `None` otherwise.
fn replay_episode(env: &mut dyn Env, ep: &EpisodeInProgress, obs: &mut [f32]) -> Option<f64> {
    let act_dim = env.act_dim().max(1);
    if !ep.actions.len().is_multiple_of(act_dim) || ep.obs.len() != obs.len() {
        return None;
    }
    let mut next = vec![0.0f32; obs.len()];
    let mut ret = 0.0;
    for act in ep.actions.chunks_exact(act_dim) {
        let out = env.step(act, &mut next);
        if out.terminated || out.truncated {
            return None;
        }
        ret += out.reward;
        obs.copy_from_slice(&next);
    }
    let arrived = obs
        .iter()
        .zip(&ep.obs)
        .all(|(a, b)| a.to_bits() == b.to_bits());
    arrived.then_some(ret)
}

/// Runs (or resumes) training into `dir` on the built-in environment `cfg.env`.
pub fn train(
    cfg: &TrainConfig,
    dir: &Path,
    resume: bool,
    progress: bool,
) -> Result<TrainOutcome, KeelError> {
    let env = make_env(&cfg.env).map_err(|e| KeelError::usage(e.to_string()))?;
    train_with_env(cfg, env, dir, resume, progress)
}

/// Runs (or resumes) training into `dir` on any plant: your own [`Env`] implementation.
/// `cfg.env` is only recorded in the outputs (use your plant's id).
pub fn train_with_env(
    cfg: &TrainConfig,
    env: Box<dyn Env>,
    dir: &Path,
    resume: bool,
    progress: bool,
) -> Result<TrainOutcome, KeelError> {
    let mut env = env;
    cfg.validate().map_err(KeelError::usage)?;
    // The CUDA kernels (`nn::cuda`, feature `cuda`) are tested against the CPU backend but do
    // not drive training yet: every run trains on the CPU.
    let why = if cfg!(feature = "cuda") {
        "training does not run on the CUDA backend yet"
    } else {
        "this keel was built without CUDA support"
    };
    match cfg.device {
        Device::Cuda => {
            return Err(KeelError::usage(format!(
                "--device cuda: {why}; use --device cpu or auto"
            )))
        }
        Device::Auto if progress => eprintln!("device: cpu ({why})"),
        _ => {}
    }
    crate::nn::bf16::set_enabled(cfg.matmul == Matmul::Bf16)
        .map_err(|e| KeelError::usage(format!("matmul = \"bf16\": {e}; use matmul = \"f32\"")))?;
    ensure_writable_dir(dir)?;
    let mut eval_env = env.box_clone();

    let (mut agent, mut env_step, mut episodes, wall_offset, mut records, episode) = if resume {
        let ck = Checkpoint::read(dir)?;
        let agent = make_agent(cfg, env.as_ref(), Some(&ck.agent))?;
        (
            agent,
            ck.env_step,
            ck.episodes,
            ck.wall_s,
            ck.records,
            ck.episode,
        )
    } else {
        let agent = make_agent(cfg, env.as_ref(), None)?;
        (agent, 0, 0, 0.0, Vec::new(), None)
    };
    write_atomic(&dir.join("config.toml"), cfg.to_toml().as_bytes())?;
    // The best evaluation so far. On resume it comes from the checkpoint's records; a fresh run
    // must not leave a previous run's best, selected or evaluated policies behind.
    let mut best_eval = first_best(&records).map_or(f64::NEG_INFINITY, |r| r.eval_mean);
    if !resume {
        for stale in [BEST_POLICY, SELECTED_POLICY, MODEL_SELECT_CSV, POLICIES_DIR] {
            let stale = dir.join(stale);
            let removed = match stale.is_dir() {
                true => std::fs::remove_dir_all(&stale),
                false => std::fs::remove_file(&stale),
            };
            match removed {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(KeelError::usage(format!(
                        "cannot remove {}: {e}",
                        stale.display()
                    )))
                }
                _ => {}
            }
        }
    }
    ensure_writable_dir(&dir.join(POLICIES_DIR))?;

    let bar = if progress {
        ProgressBar::new(cfg.steps as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} env steps {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(env_step as u64);

    let start = Instant::now();
    let seed_base = cfg.seed.wrapping_mul(1_000_003);
    let mut obs = vec![0.0f32; env.obs_dim()];
    let mut next_obs = obs.clone();
    let mut act = vec![0.0f32; env.act_dim()];
    let episode_seed = |episodes: usize| Some(seed_base.wrapping_add(episodes as u64));
    env.reset(episode_seed(episodes), &mut obs);
    // The actions of the episode in progress, for the checkpoint (see `EpisodeInProgress`).
    let mut ep_actions: Vec<f32> = Vec::new();
    let mut ep_ret = 0.0f64;
    if let Some(ep) = episode {
        if let Some(ret) = replay_episode(env.as_mut(), &ep, &mut obs) {
            (ep_actions, ep_ret) = (ep.actions, ret);
        } else {
            bar.suspend(|| {
                eprintln!(
                    "warning: replaying the checkpoint's episode in progress on {} did not \
                     reach its last observation (a plant that is not deterministic given its \
                     seed and actions?); the run continues with a new episode",
                    cfg.env
                )
            });
            env.reset(episode_seed(episodes), &mut obs);
        }
    }
    let (mut last_ep_ret, mut last_eval) = (f64::NAN, f64::NAN);
    let mut rate_t0 = (Instant::now(), env_step);

    while env_step < cfg.steps {
        agent.explore(&obs, &mut act);
        let out = env.step(&act, &mut next_obs);
        ep_actions.extend_from_slice(&act);
        // Only `terminated` is stored: past a time-limit truncation the critic bootstraps.
        agent.observe(&obs, &act, out.reward as f32, &next_obs, out.terminated);
        ep_ret += out.reward;
        env_step += 1;
        if out.terminated || out.truncated {
            episodes += 1;
            last_ep_ret = ep_ret;
            ep_ret = 0.0;
            ep_actions.clear();
            env.reset(episode_seed(episodes), &mut obs);
        } else {
            std::mem::swap(&mut obs, &mut next_obs);
        }

        let eval_due = env_step % cfg.eval_every == 0 || env_step == cfg.steps;
        if eval_due {
            let blob = policy_blob(agent.as_ref(), cfg, dir, env_step)?;
            write_atomic(&policy_file(dir, env_step), &blob)?;
            let policy = load_policy(&blob)?;
            let eval_seed = cfg.seed.wrapping_add(0x5EED_0000);
            let s = evaluate(&policy, eval_env.as_mut(), cfg.eval_episodes, eval_seed)?;
            last_eval = s.mean_return;
            if s.mean_return > best_eval {
                best_eval = s.mean_return;
                write_atomic(&dir.join(BEST_POLICY), &blob)?;
            }
            let stat = |k: &str, stats: &[(String, f64)]| {
                stats.iter().find(|(n, _)| n == k).map_or(f64::NAN, |x| x.1)
            };
            let stats = agent.stats();
            let mut rec = EvalRecord {
                env_step,
                wall_s: wall_offset + start.elapsed().as_secs_f64(),
                eval_mean: s.mean_return,
                eval_std: s.std_return,
                critic_loss: stat("critic_loss", &stats),
                actor_loss: stat("actor_loss", &stats),
                alpha: stat("alpha", &stats),
                entropy: stat("entropy", &stats),
                extra: stats
                    .into_iter()
                    .filter(|(k, _)| {
                        !["critic_loss", "actor_loss", "alpha", "entropy"].contains(&k.as_str())
                    })
                    .collect(),
            };
            if let Some(score) = s.mean_score {
                rec.extra.push(("eval_score".into(), score));
            }
            bar.suspend(|| {
                if progress {
                    eprintln!(
                        "step {env_step:>7}  eval {:>9.2} +- {:<8.2}  wall {:.1}s",
                        rec.eval_mean, rec.eval_std, rec.wall_s
                    )
                }
            });
            records.push(rec);
            metrics::write_all(dir, &cfg.env, &records)?;
        }
        if env_step % cfg.checkpoint_every == 0 || env_step == cfg.steps {
            Checkpoint {
                config: cfg.clone(),
                env_step,
                episodes,
                wall_s: wall_offset + start.elapsed().as_secs_f64(),
                records: records.clone(),
                agent: agent.save()?,
                episode: Some(EpisodeInProgress {
                    actions: ep_actions.clone(),
                    obs: obs.clone(),
                }),
            }
            .write(dir)?;
        }
        if env_step % 50 == 0 || env_step == cfg.steps {
            let (t0, s0) = rate_t0;
            let rate = (env_step - s0) as f64 / t0.elapsed().as_secs_f64().max(1e-9);
            bar.set_position(env_step as u64);
            bar.set_message(format!(
                "| episode return {last_ep_ret:.1} | eval {last_eval:.1} | {rate:.0} steps/s"
            ));
            if env_step % 1000 == 0 {
                rate_t0 = (Instant::now(), env_step);
            }
        }
    }
    bar.finish_and_clear();

    let blob = policy_blob(agent.as_ref(), cfg, dir, env_step)?;
    let policy_path = dir.join("policy.keel");
    write_atomic(&policy_path, &blob)?;
    let policy = load_policy(&blob)?;
    let final_eval = evaluate(
        &policy,
        eval_env.as_mut(),
        cfg.eval_episodes,
        cfg.seed.wrapping_add(0x5EED_0000),
    )?;
    let selected = select_by_model(agent.as_mut(), cfg, dir, &records, progress)?;
    Ok(TrainOutcome {
        dir: dir.to_path_buf(),
        policy_path,
        final_eval,
        records,
        selected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The replay arrives at the stored observation, and refuses a record that does not match
    /// (a different last observation, actions of the wrong width, an episode that would end).
    #[test]
    fn an_episode_replays_from_its_actions() {
        let mut env = make_env("pendulum").unwrap();
        let (mut obs, mut next) = (vec![0.0f32; 3], vec![0.0f32; 3]);
        env.reset(Some(11), &mut obs);
        let actions: Vec<f32> = (0..150).map(|i| ((i as f32) * 0.37).sin() * 2.0).collect();
        let mut ret = 0.0;
        for a in &actions {
            ret += env.step(std::slice::from_ref(a), &mut next).reward;
        }
        let ep = EpisodeInProgress {
            actions: actions.clone(),
            obs: next.clone(),
        };
        let replay = |ep: &EpisodeInProgress| {
            let mut env = make_env("pendulum").unwrap();
            let mut obs = vec![0.0f32; 3];
            env.reset(Some(11), &mut obs);
            (replay_episode(env.as_mut(), ep, &mut obs), obs)
        };
        assert_eq!(replay(&ep), (Some(ret), next.clone()));
        let mut moved = ep.clone();
        moved.obs[0] += 1e-6;
        assert_eq!(replay(&moved).0, None);
        let mut wide = ep.clone();
        wide.obs.push(0.0);
        assert_eq!(replay(&wide).0, None);
        // Past Pendulum's 200-step limit the episode would have ended before the checkpoint.
        let mut long = ep;
        long.actions.extend(vec![0.0; 60]);
        assert_eq!(replay(&long).0, None);
    }
}
