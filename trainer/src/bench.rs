//! `keel bench`: configurations x seeds x envs, then a markdown table, a CSV and SVG plots.
//!
//! It replaces `tools/bench/pendulum_quick.sh`, which shelled out to `keel train` and parsed
//! metrics.csv in Python: running in-process needs no Python, can run several trainings at once
//! (`--jobs`), and reuses finished runs and continues interrupted ones from their last
//! checkpoint, so a killed bench picks up where it stopped and a larger `--steps` extends the
//! runs already there (see `resumable_step`).
//!
//! Every run is an ordinary `keel train` run directory (DIR/runs/<env>/<config>/seed<k>/), so any
//! single run can be inspected, exported or re-plotted like a hand-made one.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::ValueEnum;

use crate::cli::{apply_variant, BenchArgs};
use crate::config::{Algo, LipschitzChoice, ModelChoice, TrainConfig};
use crate::env::ENV_IDS;
use crate::error::KeelError;
use crate::io::{ensure_writable_dir, write_atomic};

mod plot;
mod report;
mod runs;

use runs::{finished_only, run_all, RunResult, Status};

/// Step budget and success threshold of one environment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EnvBudget {
    pub env: &'static str,
    /// Env steps of every MBPO configuration.
    pub mbpo_steps: usize,
    /// Env steps of model-free SAC (it needs more samples; that is what the bench measures).
    pub sac_steps: usize,
    /// "Solved" when a 10-episode deterministic evaluation's mean return reaches this; `None`
    /// when there is no accepted threshold, and the table reports the final return only.
    pub threshold: Option<f64>,
}

/// The per-env budgets, in one place so they are easy to change.
///
/// - pendulum: -200 is the usual "solved" level for Pendulum-v1 (docs/benchmarks.md uses it);
///   MBPO gets 1,500 steps (the budget and docs/benchmarks.md's quick table; `keel
///   train` runs MBPO longer by default so that slow seeds end solved too), SAC 5,000.
/// - mountaincar: 90 is gymnasium's `reward_threshold` for MountainCarContinuous-v0; the budget
///   is `keel train`'s default.
/// - cartpole-swingup: Keel's own task (reward in [0, 1] per step), so no accepted threshold.
/// - fishery3: the paper scores a different total (harvests without the last step and the
///   penalty; `eval_score` in metrics.csv) than the return, so no return threshold either.
///
/// Envs not listed here run with `keel train`'s default steps and no threshold.
pub const BUDGETS: &[EnvBudget] = &[
    EnvBudget {
        env: "pendulum",
        mbpo_steps: 1_500,
        sac_steps: 5_000,
        threshold: Some(-200.0),
    },
    EnvBudget {
        env: "mountaincar",
        mbpo_steps: 50_000,
        sac_steps: 50_000,
        threshold: Some(90.0),
    },
    EnvBudget {
        env: "cartpole-swingup",
        mbpo_steps: 50_000,
        sac_steps: 50_000,
        threshold: None,
    },
    EnvBudget {
        env: "fishery3",
        mbpo_steps: 30_000,
        sac_steps: 30_000,
        threshold: None,
    },
];

/// Envs benchmarked when `--envs` is not given.
pub const DEFAULT_ENVS: &[&str] = &["pendulum", "mountaincar", "cartpole-swingup", "fishery3"];

/// Every configuration name, in table order.
pub const CONFIGS: &[&str] = &[
    "sac",
    "mbpo-ensemble",
    "mbpo-single-none",
    "mbpo-single-sn",
    "mbpo-single-robust",
    "mbpo-single-sn+robust",
];

/// `--quick`: the baseline against the default method on the cheapest env, enough to see a
/// regression in a few minutes.
const QUICK_CONFIGS: &[&str] = &["sac", "mbpo-single-sn+robust"];
const QUICK_SEEDS: u64 = 2;
const DEFAULT_SEEDS: u64 = 5;

/// The budget of `env`: its [`BUDGETS`] entry, else `keel train`'s defaults without a threshold.
pub fn budget(env: &str) -> EnvBudget {
    BUDGETS
        .iter()
        .find(|b| b.env == env)
        .copied()
        .unwrap_or_else(|| EnvBudget {
            env: ENV_IDS.iter().copied().find(|e| *e == env).unwrap_or("?"),
            mbpo_steps: TrainConfig::for_env_algo(env, Algo::Mbpo).steps,
            sac_steps: TrainConfig::for_env_algo(env, Algo::Sac).steps,
            threshold: None,
        })
}

/// The resolved config of one run: the env's defaults for the algorithm, then the same
/// `--model`/`--lipschitz` logic as `keel train`, then the seed and step budget.
pub fn run_config(
    env: &str,
    config: &str,
    seed: u64,
    steps: Option<usize>,
) -> Result<TrainConfig, KeelError> {
    let unknown = || {
        KeelError::usage(format!(
            "unknown bench config '{config}'; valid: {}",
            CONFIGS.join(", ")
        ))
    };
    if !CONFIGS.contains(&config) {
        return Err(unknown());
    }
    let (algo, model, lip) = match config {
        "sac" => (Algo::Sac, None, None),
        "mbpo-ensemble" => (
            Algo::Mbpo,
            Some(ModelChoice::Ensemble),
            Some(LipschitzChoice::None),
        ),
        _ => {
            let lip = config
                .strip_prefix("mbpo-single-")
                .and_then(|l| LipschitzChoice::from_str(l, false).ok())
                .ok_or_else(unknown)?;
            (Algo::Mbpo, Some(ModelChoice::Single), Some(lip))
        }
    };
    let mut cfg = TrainConfig::for_env_algo(env, algo);
    apply_variant(&mut cfg, model, lip);
    let b = budget(env);
    cfg.seed = seed;
    cfg.steps = steps.unwrap_or(match algo {
        Algo::Sac => b.sac_steps,
        Algo::Mbpo => b.mbpo_steps,
    });
    // A shortened budget still gets a curve: at least 6 evaluations (the defaults give
    // pendulum 6 and more).
    cfg.eval_every = cfg.eval_every.min((cfg.steps / 6).max(1));
    cfg.checkpoint_every = cfg.checkpoint_every.min(cfg.eval_every);
    cfg.validate().map_err(KeelError::usage)?;
    Ok(cfg)
}

/// Checks the names of a list flag; empty items (a trailing comma) are ignored and duplicates
/// dropped (they would share a run directory), order is kept.
fn names(
    given: &[String],
    default: &[&str],
    valid: &[&str],
    what: &str,
) -> Result<Vec<String>, KeelError> {
    let mut out: Vec<String> = Vec::new();
    let list: Vec<String> = if given.is_empty() {
        default.iter().map(|s| s.to_string()).collect()
    } else {
        given
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    if list.is_empty() {
        return Err(KeelError::usage(format!(
            "no bench {what} given; valid: {}",
            valid.join(", ")
        )));
    }
    for n in list {
        if !valid.contains(&n.as_str()) {
            return Err(KeelError::usage(format!(
                "unknown bench {what} '{n}'; valid: {}",
                valid.join(", ")
            )));
        }
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

/// One training of the plan.
struct Job {
    env: String,
    config: String,
    seed: u64,
    cfg: TrainConfig,
    dir: PathBuf,
}

/// One evaluation of a run, read back from its metrics.csv by column name, so reused runs and
/// runs without the MBPO or Lipschitz columns read the same way.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Row {
    pub env_step: usize,
    pub wall_s: f64,
    pub eval_mean: f64,
    pub eval_std: f64,
    /// Mean ||dQ/ds|| over replay states (absent or NaN: `None`).
    pub lip_grad_mean: Option<f64>,
    /// Max ||dQ/ds|| over the same states: the Lipschitz constant the data show, a lower bound
    /// on the critic's true one (the layer bound is an upper bound).
    pub lip_grad_max: Option<f64>,
    /// The critic's certified Lipschitz bound, the product of its layers' spectral norms (times
    /// the Q scale under spectral normalization).
    pub lip_layer_bound: Option<f64>,
    /// Seconds spent training and running the dynamics model so far (`None` without a model).
    pub model_s: Option<f64>,
}

/// Parses metrics.csv; `env_step`, `wall_s` and `eval_mean` are required, the rest optional.
pub fn parse_metrics(text: &str) -> Result<Vec<Row>, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().ok_or("empty file")?.split(',').collect();
    let col = |name: &str| header.iter().position(|h| h.trim() == name);
    let need = |name: &str| col(name).ok_or(format!("no column '{name}'"));
    let (step_i, wall_i, mean_i) = (need("env_step")?, need("wall_s")?, need("eval_mean")?);
    let (std_i, lip_i) = (col("eval_std"), col("lip_grad_mean"));
    let (max_i, bound_i) = (col("lip_grad_max"), col("lip_layer_bound"));
    let (train_i, pred_i) = (col("model_train_s"), col("model_predict_s"));
    let mut rows = Vec::new();
    for (n, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').collect();
        let num = |i: usize| -> Result<f64, String> {
            let c = cells
                .get(i)
                .ok_or(format!("row {}: too few columns", n + 1))?;
            c.trim()
                .parse()
                .map_err(|e| format!("row {}: '{c}': {e}", n + 1))
        };
        let opt = |i: Option<usize>| i.and_then(|i| num(i).ok()).filter(|v| v.is_finite());
        let model_s = match (opt(train_i), opt(pred_i)) {
            (None, None) => None,
            (t, p) => Some(t.unwrap_or(0.0) + p.unwrap_or(0.0)),
        };
        let step = cells.get(step_i).map_or("", |c| c.trim());
        rows.push(Row {
            env_step: step
                .parse()
                .map_err(|e| format!("row {}: env_step '{step}': {e}", n + 1))?,
            wall_s: num(wall_i)?,
            eval_mean: num(mean_i)?,
            eval_std: opt(std_i).unwrap_or(f64::NAN),
            lip_grad_mean: opt(lip_i),
            lip_grad_max: opt(max_i),
            lip_layer_bound: opt(bound_i),
            model_s,
        });
    }
    Ok(rows)
}

fn read_metrics(dir: &Path) -> Result<Vec<Row>, String> {
    let path = dir.join("metrics.csv");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_metrics(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// What the table reports of one run.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Summary {
    /// The first evaluation at or above the threshold: (env step, wall s).
    first: Option<(usize, f64)>,
    final_mean: f64,
    final_std: f64,
    /// The mean of all its evaluations: the area under the learning curve over its length, so
    /// a run that gets there sooner scores higher at the same final return.
    curve_mean: f64,
    lip: Option<f64>,
    lip_max: Option<f64>,
    bound: Option<f64>,
    model_s: Option<f64>,
    wall_s: f64,
}

fn summarize(rows: &[Row], threshold: Option<f64>) -> Option<Summary> {
    let last = rows.last()?;
    Some(Summary {
        first: threshold.and_then(|t| {
            rows.iter()
                .find(|r| r.eval_mean >= t)
                .map(|r| (r.env_step, r.wall_s))
        }),
        final_mean: last.eval_mean,
        final_std: last.eval_std,
        curve_mean: rows.iter().map(|r| r.eval_mean).sum::<f64>() / rows.len() as f64,
        lip: last.lip_grad_mean,
        lip_max: last.lip_grad_max,
        bound: last.lip_layer_bound,
        model_s: last.model_s,
        wall_s: last.wall_s,
    })
}

/// `keel bench`.
pub fn bench_cli(args: &BenchArgs) -> Result<(), KeelError> {
    let (default_envs, default_configs, default_seeds) = if args.quick {
        (&["pendulum"][..], QUICK_CONFIGS, QUICK_SEEDS)
    } else {
        (DEFAULT_ENVS, CONFIGS, DEFAULT_SEEDS)
    };
    let envs = names(&args.envs, default_envs, ENV_IDS, "env")?;
    let configs = names(&args.configs, default_configs, CONFIGS, "config")?;
    let seeds: Vec<u64> = if args.seed_list.is_empty() {
        (0..args.seeds.unwrap_or(default_seeds)).collect()
    } else {
        args.seed_list
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    let steps = args
        .steps
        .map(usize::try_from)
        .transpose()
        .map_err(|_| KeelError::usage("--steps is too large"))?;

    let mut jobs = Vec::new();
    for env in &envs {
        for config in &configs {
            for &seed in &seeds {
                jobs.push(Job {
                    env: env.clone(),
                    config: config.clone(),
                    seed,
                    cfg: run_config(env, config, seed, steps)?,
                    dir: args
                        .out
                        .join("runs")
                        .join(env)
                        .join(config)
                        .join(format!("seed{seed}")),
                });
            }
        }
    }
    let results = if args.report_only {
        let results = finished_only(&jobs);
        if results.iter().all(|r| matches!(r.status, Status::Missing)) {
            return Err(KeelError::usage(format!(
                "--report-only: no finished run of this plan in {}",
                args.out.join("runs").display()
            )));
        }
        ensure_writable_dir(&args.out)?;
        results
    } else {
        ensure_writable_dir(&args.out)?;
        run_all(&jobs, usize::from(args.jobs))?
    };

    let md = report::results_md(&jobs, &results, &envs, &configs, usize::from(args.jobs));
    write_atomic(&args.out.join("results.md"), md.as_bytes())?;
    write_atomic(
        &args.out.join("results.csv"),
        report::results_csv(&jobs, &results).as_bytes(),
    )?;
    for env in &envs {
        let runs = jobs_of(&jobs, &results, env);
        for (kind, svg) in plot::env_plots(env, &configs, &runs, budget(env).threshold)? {
            write_atomic(&args.out.join(format!("{env}_{kind}.svg")), svg.as_bytes())?;
        }
    }
    println!("results: {}", args.out.join("results.md").display());
    let failed = results
        .iter()
        .filter(|r| matches!(r.status, Status::Failed(_)))
        .count();
    if failed > 0 {
        return Err(KeelError::internal(format!(
            "{failed} of {} runs failed (see results.md)",
            results.len()
        )));
    }
    Ok(())
}

/// Per config of `env`: the rows of each of its runs that has any.
fn jobs_of<'a>(jobs: &[Job], results: &'a [RunResult], env: &str) -> Vec<(String, Vec<&'a [Row]>)> {
    let mut out: Vec<(String, Vec<&[Row]>)> = Vec::new();
    for (job, r) in jobs.iter().zip(results).filter(|(j, _)| j.env == env) {
        if r.rows.is_empty() {
            continue;
        }
        match out.iter_mut().find(|(c, _)| *c == job.config) {
            Some((_, runs)) => runs.push(&r.rows),
            None => out.push((job.config.clone(), vec![&r.rows])),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_by_column_name_with_optional_columns() {
        let sac = "env_step,wall_s,eval_mean,eval_std,critic_loss,actor_loss,alpha,entropy,\
                   lip_grad_mean\n500,1.5,-900,10,0,0,0,0,NaN\n1000,3,-150,5,0,0,0,0,42\n";
        let rows = parse_metrics(sac).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].lip_grad_mean, None);
        assert_eq!(rows[1].lip_grad_mean, Some(42.0));
        assert_eq!(rows[1].model_s, None);
        assert_eq!(rows[1].lip_layer_bound, None);
        assert_eq!(rows[1].lip_grad_max, None);
        let mbpo = "eval_mean,env_step,wall_s,model_predict_s,model_train_s,lip_layer_bound,\
                    lip_grad_max\n-100,250,2,0.5,1,3000,77\n";
        let rows = parse_metrics(mbpo).unwrap();
        assert_eq!((rows[0].env_step, rows[0].model_s), (250, Some(1.5)));
        assert_eq!(rows[0].lip_layer_bound, Some(3000.0));
        let s = summarize(&rows, None).unwrap();
        assert_eq!(
            (s.lip_max, s.lip, s.bound),
            (Some(77.0), None, Some(3000.0))
        );
        assert!(parse_metrics("env_step,eval_mean\n1,2\n").is_err());
        assert!(parse_metrics("env_step,wall_s,eval_mean\nx,1,2\n").is_err());
        let s = summarize(&parse_metrics(sac).unwrap(), Some(-200.0)).unwrap();
        assert_eq!(s.first, Some((1000, 3.0)));
        assert_eq!(s.final_mean, -150.0);
        assert_eq!(s.curve_mean, -525.0);
    }

    #[test]
    fn configs_match_train_flags() {
        for c in CONFIGS {
            run_config("pendulum", c, 0, None).unwrap();
        }
        let e = run_config("pendulum", "mbpo-single-xx", 0, None).unwrap_err();
        assert!(e.status == 2 && e.message.contains("mbpo-single-xx"));
        let c = run_config("pendulum", "mbpo-ensemble", 3, Some(10)).unwrap();
        assert_eq!((c.seed, c.steps, c.lipschitz.robust), (3, 10, false));
        assert!(c.mbpo.model.ensemble_size > 1);
        // The ensemble baseline is MBPO's, early stopping included, on every env.
        let c = run_config("cartpole-swingup", "mbpo-ensemble", 0, None).unwrap();
        assert_eq!((c.mbpo.model.ensemble_size, c.mbpo.model.patience), (7, 5));
        let c = run_config("pendulum", "mbpo-single-sn", 0, None).unwrap();
        assert_eq!(c.mbpo.model.ensemble_size, 1);
        assert!(c.lipschitz.spectral_norm && !c.lipschitz.robust);
        assert_eq!(run_config("pendulum", "sac", 0, None).unwrap().steps, 5_000);
    }
}
