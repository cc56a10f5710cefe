//! Evaluating a deployable policy. Training evaluations and `keel eval` both run the exported
//! `.keel` blob through keel-runtime, the code that runs on the device: one inference path.
use keel_runtime::{Policy, Scratch};

use crate::env::Env;
use crate::error::KeelError;

/// Widest layer the host accepts (the device's capacity is chosen per firmware).
pub const HOST_CAPACITY: usize = 1024;

/// Mean and standard deviation of episode returns (and of the env's own score, if it has one).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct EvalSummary {
    pub episodes: usize,
    pub mean_return: f64,
    pub std_return: f64,
    pub returns: Vec<f64>,
    /// The env's task score (e.g. the fishery papers' harvest score), when it defines one.
    pub mean_score: Option<f64>,
}

/// Loads a blob for host use, with a message that says what is wrong with it.
pub fn load_policy(blob: &[u8]) -> Result<Policy<'_, HOST_CAPACITY>, KeelError> {
    Policy::from_bytes(blob).map_err(|e| KeelError::usage(format!("invalid policy: {e}")))
}

fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len().max(1) as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// Runs `episodes` episodes with the deterministic policy; episode `k` resets with `seed + k`.
pub fn evaluate(
    policy: &Policy<'_, HOST_CAPACITY>,
    env: &mut dyn Env,
    episodes: usize,
    seed: u64,
) -> Result<EvalSummary, KeelError> {
    if policy.obs_dim() != env.obs_dim() || policy.act_dim() != env.act_dim() {
        return Err(KeelError::usage(format!(
            "policy dims (obs {}, act {}) do not match env {} (obs {}, act {})",
            policy.obs_dim(),
            policy.act_dim(),
            env.id(),
            env.obs_dim(),
            env.act_dim()
        )));
    }
    // Episodes are independent (episode k resets with seed + k), so with `--threads 2` a clone
    // of the env runs the second half: the same returns, in the same order.
    let (returns, scores): (Vec<f64>, Vec<f64>) =
        if episodes >= 2 && crate::nn::threads::threads() > 1 {
            let half = episodes / 2;
            let mut twin = env.box_clone();
            let (mut first, mut second) = (Ok(Vec::new()), Ok(Vec::new()));
            crate::nn::threads::join_tasks(
                || first = run_episodes(policy, env, 0..half, seed),
                || second = run_episodes(policy, twin.as_mut(), half..episodes, seed),
            );
            let mut all = first?;
            all.extend(second?);
            all.into_iter().unzip()
        } else {
            run_episodes(policy, env, 0..episodes, seed)?
                .into_iter()
                .unzip()
        };
    let (mean_return, std_return) = mean_std(&returns);
    let has_score = env.step_score().is_some() || scores.iter().any(|s| *s != 0.0);
    Ok(EvalSummary {
        episodes,
        mean_return,
        std_return,
        returns,
        mean_score: has_score.then(|| mean_std(&scores).0),
    })
}

/// (return, score) of episodes `ks`, episode k reset with `seed + k`.
fn run_episodes(
    policy: &Policy<'_, HOST_CAPACITY>,
    env: &mut dyn Env,
    ks: std::ops::Range<usize>,
    seed: u64,
) -> Result<Vec<(f64, f64)>, KeelError> {
    let mut obs = vec![0.0f32; env.obs_dim()];
    let mut act = vec![0.0f32; env.act_dim()];
    // 8 KB at the host's capacity: kept across calls instead of zeroed per call.
    let mut scratch = Box::new(Scratch::<HOST_CAPACITY>::new());
    let mut out = Vec::with_capacity(ks.len());
    for k in ks {
        env.reset(Some(seed.wrapping_add(k as u64)), &mut obs);
        let (mut ret, mut score) = (0.0f64, 0.0f64);
        loop {
            policy.act_with(&obs, &mut act, &mut scratch).map_err(|e| {
                KeelError::internal(format!("policy failed during evaluation: {e}"))
            })?;
            let out = env.step(&act, &mut obs);
            ret += out.reward;
            if let Some(s) = env.step_score() {
                score += s;
            }
            if out.terminated || out.truncated {
                break;
            }
        }
        out.push((ret, score));
    }
    Ok(out)
}
