//! Choosing which of a run's evaluated policies to deploy, with the run's dynamics model and no
//! env steps (`mbpo.select_episodes`, `keel select`). The scoring itself is
//! [`crate::mbpo::model_return`]; this module walks the candidates in [`POLICIES_DIR`].
use std::path::Path;

use crate::checkpoint::Checkpoint;
use crate::config::{Algo, TrainConfig};
use crate::env::make_env;
use crate::error::KeelError;
use crate::eval::load_policy;
use crate::io::write_atomic;
use crate::metrics::EvalRecord;
use crate::train::{make_agent, policy_file, Agent, POLICIES_DIR};

/// The evaluated policy the dynamics model scores highest (`mbpo.select_episodes`), and every
/// candidate's score.
pub const SELECTED_POLICY: &str = "policy_selected.keel";
pub const MODEL_SELECT_CSV: &str = "model_select.csv";

/// Which evaluated policy the model chose: its env step and model return.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ModelChoice {
    pub env_step: usize,
    pub model_return: f64,
}

/// Scores the run's evaluated policies ([`POLICIES_DIR`]) in the agent's dynamics model and
/// writes the best to [`SELECTED_POLICY`] (the first of equal scores), the scores to
/// [`MODEL_SELECT_CSV`]. `None` when selection is off or the agent has no trained model.
pub(crate) fn select_by_model(
    agent: &mut dyn Agent,
    cfg: &TrainConfig,
    dir: &Path,
    records: &[EvalRecord],
    progress: bool,
) -> Result<Option<ModelChoice>, KeelError> {
    let episodes = cfg.mbpo.select_episodes;
    if episodes == 0 || cfg.algo != Algo::Mbpo {
        return Ok(None);
    }
    if progress {
        eprintln!(
            "scoring {} evaluated policies in the dynamics model ({episodes} episodes each)",
            records.len()
        );
    }
    // One seed for every candidate: the same start states and model noise for all.
    let seed = cfg.seed.wrapping_add(0x5E1E_C700);
    let mut csv = String::from("env_step,model_return,model_ended_early,eval_mean\n");
    let mut best: Option<(ModelChoice, Vec<u8>)> = None;
    for r in records {
        let path = policy_file(dir, r.env_step);
        // A run continued from a checkpoint written before Keel kept every policy has none for
        // its early evaluations.
        let Ok(blob) = std::fs::read(&path) else {
            continue;
        };
        let policy =
            load_policy(&blob).map_err(|e| KeelError::usage(format!("{}: {e}", path.display())))?;
        let Some(m) = agent.model_return(&policy, episodes, seed)? else {
            return Ok(None);
        };
        drop(policy);
        csv.push_str(&format!(
            "{},{},{},{}\n",
            r.env_step, m.mean_return, m.ended_early, r.eval_mean
        ));
        if best
            .as_ref()
            .is_none_or(|(b, _)| m.mean_return > b.model_return)
        {
            let choice = ModelChoice {
                env_step: r.env_step,
                model_return: m.mean_return,
            };
            best = Some((choice, blob));
        }
    }
    write_atomic(&dir.join(MODEL_SELECT_CSV), csv.as_bytes())?;
    let Some((choice, blob)) = best else {
        return Ok(None);
    };
    write_atomic(&dir.join(SELECTED_POLICY), &blob)?;
    Ok(Some(choice))
}

/// `keel select DIR`: [`select_by_model`] on a finished (or stopped) MBPO run, with the model of
/// its latest checkpoint; `episodes` overrides the run's `mbpo.select_episodes` (500 if that is 0).
pub fn select_in_dir(dir: &Path, episodes: Option<usize>) -> Result<ModelChoice, KeelError> {
    let ck = Checkpoint::read(dir)?;
    let mut cfg = ck.config;
    if cfg.algo != Algo::Mbpo {
        return Err(KeelError::usage(format!(
            "{}: a {:?} run has no dynamics model to select with (needs --algo mbpo)",
            dir.display(),
            cfg.algo
        )));
    }
    cfg.mbpo.select_episodes = match (episodes, cfg.mbpo.select_episodes) {
        (Some(0), _) => return Err(KeelError::usage("--episodes must be at least 1")),
        (Some(n), _) => n,
        (None, 0) => 500,
        (None, n) => n,
    };
    let env = make_env(&cfg.env).map_err(|e| KeelError::usage(e.to_string()))?;
    let mut agent = make_agent(&cfg, env.as_ref(), Some(&ck.agent))?;
    select_by_model(agent.as_mut(), &cfg, dir, &ck.records, true)?.ok_or_else(|| {
        KeelError::usage(format!(
            "{}: nothing to select: no evaluated policies in {} or no trained model yet",
            dir.display(),
            dir.join(POLICIES_DIR).display()
        ))
    })
}
