//! Running the bench's trainings: reuse a finished run, continue an interrupted one, or train,
//! on `--jobs` threads.
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::{budget, read_metrics, summarize, Job, Row};
use crate::config::TrainConfig;
use crate::error::KeelError;

/// How a run's results were obtained.
pub(super) enum Status {
    Ran,
    /// A finished run with the same config was already there.
    Reused,
    /// Continued from the checkpoint at this env step (see [`resumable_step`]).
    Resumed(usize),
    Failed(String),
    /// Not finished in the output directory, and `--report-only` trains nothing.
    Missing,
}

pub(super) struct RunResult {
    pub(super) status: Status,
    /// The run's evaluations (a failed run's partial ones, when readable).
    pub(super) rows: Vec<Row>,
}

/// A finished run of this config: its policy.keel exists (written last), its config.toml reads
/// back to a config that trains the same ([`TrainConfig::same_training`]), and its metrics
/// reach the last step. Read back, not compared as text: a run written before a config key was
/// added lacks that key, which then takes the neutral default that keeps the old behaviour
/// ([`TrainConfig::from_written`]).
fn finished_rows(job: &Job) -> Option<Vec<Row>> {
    if !job.dir.join("policy.keel").is_file() {
        return None;
    }
    let toml = std::fs::read_to_string(job.dir.join("config.toml")).ok()?;
    if !TrainConfig::from_written(&toml)
        .ok()?
        .same_training(&job.cfg)
    {
        return None;
    }
    let rows = read_metrics(&job.dir).ok()?;
    (rows.last()?.env_step == job.cfg.steps).then_some(rows)
}

/// The env step a job can continue from instead of starting again: its directory holds a
/// checkpoint of the same training, either interrupted (a killed bench) or finished with a
/// smaller budget (a bench re-run with a larger `--steps`). Only the budget and the evaluation and
/// checkpoint cadence, which follows it, may differ: none of them changes what was trained up to
/// the checkpoint. The episode in progress restarts, so a continued run is not bit-identical to
/// one that never stopped; the tables mark it "resumed".
fn resumable_step(job: &Job) -> Option<usize> {
    let (mut trained, step) = crate::train::checkpoint_state(&job.dir).ok()?;
    if step == 0 || step > job.cfg.steps {
        return None;
    }
    trained.steps = job.cfg.steps;
    trained.eval_every = job.cfg.eval_every;
    trained.checkpoint_every = job.cfg.checkpoint_every;
    trained.same_training(&job.cfg).then_some(step)
}

/// The job's finished run, reused.
fn reused(job: &Job) -> Option<RunResult> {
    finished_rows(job).map(|rows| RunResult {
        status: Status::Reused,
        rows,
    })
}

/// `--report-only`: each job's finished run, or `Missing`.
pub(super) fn finished_only(jobs: &[Job]) -> Vec<RunResult> {
    jobs.iter()
        .map(|job| {
            reused(job).unwrap_or(RunResult {
                status: Status::Missing,
                rows: Vec::new(),
            })
        })
        .collect()
}

fn run_job(job: &Job) -> RunResult {
    if let Some(r) = reused(job) {
        return r;
    }
    let resume_from = resumable_step(job);
    // A stale policy.keel would mark a later, interrupted run of this directory as finished.
    let _ = std::fs::remove_file(job.dir.join("policy.keel"));
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        crate::train::train(&job.cfg, &job.dir, resume_from.is_some(), false)
    }));
    let err = match outcome {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e.message),
        Err(p) => Some(
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .map_or("panicked".into(), |m| format!("panicked: {m}")),
        ),
    };
    let rows = read_metrics(&job.dir);
    match (err, rows) {
        (None, Ok(rows)) => RunResult {
            status: resume_from.map_or(Status::Ran, Status::Resumed),
            rows,
        },
        (None, Err(e)) => RunResult {
            status: Status::Failed(e),
            rows: Vec::new(),
        },
        (Some(e), rows) => RunResult {
            status: Status::Failed(e),
            rows: rows.unwrap_or_default(),
        },
    }
}

/// Runs the jobs on `n` threads, printing one line per finished run to stderr. Each training is
/// single-threaded (the GEMM thread count stays at its default of 1), so `--jobs` is the
/// number of cores used.
pub(super) fn run_all(jobs: &[Job], n: usize) -> Result<Vec<RunResult>, KeelError> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let slots: Mutex<Vec<Option<RunResult>>> = Mutex::new(jobs.iter().map(|_| None).collect());
    let worker = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(job) = jobs.get(i) else { break };
        let r = run_job(job);
        let k = done.fetch_add(1, Ordering::Relaxed) + 1;
        eprintln!("[{k}/{}] {}", jobs.len(), run_line(job, &r));
        slots.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
    };
    std::thread::scope(|s| {
        for w in 0..n.min(jobs.len()) {
            // 8 MiB, as the main thread that `keel train` runs on.
            std::thread::Builder::new()
                .name(format!("bench-{w}"))
                .stack_size(8 << 20)
                .spawn_scoped(s, worker)
                .map_err(|e| KeelError::internal(format!("cannot start a bench thread: {e}")))?;
        }
        Ok::<_, KeelError>(())
    })?;
    let slots = slots.into_inner().unwrap_or_else(|e| e.into_inner());
    Ok(slots
        .into_iter()
        .map(|r| {
            r.unwrap_or(RunResult {
                status: Status::Failed("not run".into()),
                rows: Vec::new(),
            })
        })
        .collect())
}

fn run_line(job: &Job, r: &RunResult) -> String {
    let head = format!("{} {} seed{}", job.env, job.config, job.seed);
    if let Status::Failed(e) = &r.status {
        return format!("{head}: FAILED: {e}");
    }
    let threshold = budget(&job.env).threshold;
    let Some(s) = summarize(&r.rows, threshold) else {
        return format!("{head}: no evaluations");
    };
    let first = match (threshold, s.first) {
        (None, _) => "no threshold".into(),
        (Some(t), Some((step, wall))) => format!("eval >= {t} at step {step} ({wall:.1} s)"),
        (Some(t), None) => format!("eval >= {t} at step -"),
    };
    format!(
        "{head}: {first} | final eval {:.1} | wall {:.1} s{}",
        s.final_mean,
        s.wall_s,
        match r.status {
            Status::Reused => " | reused finished run".to_string(),
            Status::Resumed(step) => format!(" | resumed from step {step}"),
            _ => String::new(),
        }
    )
}

#[cfg(test)]
mod tests {
    use super::super::run_config;
    use super::*;

    #[test]
    fn only_the_same_training_is_continued() {
        let tmp = tempfile::tempdir().unwrap();
        let job = |steps: usize| Job {
            env: "pendulum".into(),
            config: "sac".into(),
            seed: 0,
            cfg: run_config("pendulum", "sac", 0, Some(steps)).unwrap(),
            dir: tmp.path().to_path_buf(),
        };
        assert_eq!(resumable_step(&job(120)), None, "no checkpoint yet");
        // 120 steps of random warm-up: cheap, and a checkpoint at every evaluation (20 steps).
        crate::train::train(&job(120).cfg, tmp.path(), false, false).unwrap();
        assert_eq!(resumable_step(&job(120)), Some(120));
        assert_eq!(
            resumable_step(&job(300)),
            Some(120),
            "a larger budget continues"
        );
        assert_eq!(
            resumable_step(&job(100)),
            None,
            "the checkpoint is past a smaller budget"
        );
        let mut changed = job(300);
        changed.cfg.sac.tau = 0.01;
        assert_eq!(
            resumable_step(&changed),
            None,
            "another training starts again"
        );
    }

    /// A finished run whose config.toml predates `sac.policy_average` deployed its online actor:
    /// reused where today's default is still 0, not where it now averages (fishery3's MBPO).
    #[test]
    fn a_run_from_before_a_key_counts_with_the_keys_old_behaviour() {
        for (env, reused) in [("cartpole-swingup", true), ("fishery3", false)] {
            let tmp = tempfile::tempdir().unwrap();
            let cfg = run_config(env, "mbpo-single-sn+robust", 0, Some(10)).unwrap();
            let old_toml: String = cfg
                .to_toml()
                .lines()
                .filter(|l| !l.starts_with("policy_average"))
                .map(|l| format!("{l}\n"))
                .collect();
            std::fs::write(tmp.path().join("config.toml"), old_toml).unwrap();
            std::fs::write(tmp.path().join("policy.keel"), b"").unwrap();
            let last = crate::metrics::EvalRecord {
                env_step: 10,
                ..Default::default()
            };
            let csv = crate::metrics::to_csv(&[last]);
            std::fs::write(tmp.path().join("metrics.csv"), csv).unwrap();
            let job = Job {
                env: env.into(),
                config: "mbpo-single-sn+robust".into(),
                seed: 0,
                cfg,
                dir: tmp.path().to_path_buf(),
            };
            assert_eq!(finished_rows(&job).is_some(), reused, "{env}");
        }
    }
}
