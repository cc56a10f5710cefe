//! The bench's outputs besides the plots: results.md (the table a reader compares configs by)
//! and results.csv (one row per run, for anything the table does not answer).
use std::fmt::Write as _;

use super::{budget, summarize, Job, RunResult, Status, Summary};

/// The median; `None` for no values or an infinite median (most seeds never got there).
fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let m = if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    };
    m.is_finite().then_some(m)
}

fn fmt_opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or("-".into(), |x| format!("{x:.decimals$}"))
}
/// The command line as typed, quoted for a POSIX shell where needed.
fn command_line() -> String {
    std::env::args()
        .map(|a| quote(&a))
        .collect::<Vec<_>>()
        .join(" ")
}

fn quote(a: &str) -> String {
    let safe = !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./,=+:@%".contains(c));
    if safe {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}

/// Cores and CPU model, so numbers from different machines are not compared by accident.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|t| {
        t.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, m)| m.trim().to_string())
    });
    format!(
        "{cores} cores available, CPU: {}",
        model.as_deref().unwrap_or("unknown")
    )
}

pub(super) fn results_md(
    jobs: &[Job],
    results: &[RunResult],
    envs: &[String],
    configs: &[String],
    n_jobs: usize,
) -> String {
    let mut s = String::from("# keel bench\n\n");
    let _ = writeln!(s, "Command: `{}`\n", command_line());
    let _ = writeln!(
        s,
        "Machine: {}; keel {}; {n_jobs} training(s) at once{}.\n",
        machine(),
        env!("CARGO_PKG_VERSION"),
        if n_jobs > 1 {
            " (they share the cores: wall times are pessimistic)"
        } else {
            ""
        }
    );
    s.push_str(
        "Runs are in `runs/<env>/<config>/seed<k>/`. \"First step\" is the first evaluation \
         (deterministic policy, mean over the eval episodes) at or above the threshold; its median \
         counts seeds that never got there as infinite (\"-\" when that is the median), and \
         (k/n) says how many did. The other columns are medians of each run's last evaluation: \
         mean ‖dQ/ds‖ is the critic's mean input-gradient norm on replay states (what the \
         critic's slope is where the data are), max ‖dQ/ds‖ the largest on the same states (the \
         Lipschitz constant the data show, a lower bound on the critic's), layer bound the \
         product of its layers' spectral norms (a bound on the slope anywhere), model s the \
         seconds spent training and running the dynamics model. Final eval is mean ± std over \
         seeds, and so is curve mean: the mean of each run's evaluations (the area under its \
         learning curve over its length; higher for a run that learns sooner).\n",
    );
    for env in envs {
        let b = budget(env);
        let _ = writeln!(s, "\n## {env}\n");
        let mut steps: Vec<String> = Vec::new();
        for j in jobs.iter().filter(|j| &j.env == env) {
            let item = format!("{} {}", j.config, j.cfg.steps);
            if !steps.contains(&item) {
                steps.push(item);
            }
        }
        let _ = writeln!(
            s,
            "Env steps: {}. Threshold: {}.\n",
            steps.join(", "),
            b.threshold
                .map_or("none (final return only)".into(), |t| format!(
                    "eval >= {t}"
                ))
        );
        let thr_cols = b.threshold.map_or(String::new(), |t| {
            format!(" first step >= {t} (reached) | wall s to it |")
        });
        let _ = writeln!(
            s,
            "| config | seeds |{thr_cols} final eval | curve mean | mean ‖dQ/ds‖ | max ‖dQ/ds‖ | layer bound | model s | total wall s |"
        );
        let n_cols = if b.threshold.is_some() { 11 } else { 9 };
        let _ = writeln!(s, "|{}", "---|".repeat(n_cols));
        for config in configs {
            let runs: Vec<&RunResult> = jobs
                .iter()
                .zip(results)
                .filter(|(j, _)| &j.env == env && &j.config == config)
                .map(|(_, r)| r)
                .collect();
            let count = |f: fn(&Status) -> bool| runs.iter().filter(|r| f(&r.status)).count();
            let failed = count(|s| matches!(s, Status::Failed(_)));
            let missing = count(|s| matches!(s, Status::Missing));
            let sums: Vec<Summary> = runs
                .iter()
                .filter(|r| !matches!(r.status, Status::Failed(_) | Status::Missing))
                .filter_map(|r| summarize(&r.rows, b.threshold))
                .collect();
            let n = sums.len();
            let med =
                |f: &dyn Fn(&Summary) -> Option<f64>| median(sums.iter().filter_map(f).collect());
            let note = |k: usize, what: &str| {
                if k > 0 {
                    format!(" ({k} {what})")
                } else {
                    String::new()
                }
            };
            let mut row = format!(
                "| {config} | {n}{}{} |",
                note(failed, "failed"),
                note(missing, "missing")
            );
            if b.threshold.is_some() {
                let reached = sums.iter().filter(|x| x.first.is_some()).count();
                let at = |f: fn((usize, f64)) -> f64| {
                    median(
                        sums.iter()
                            .map(|x| x.first.map_or(f64::INFINITY, f))
                            .collect(),
                    )
                };
                let _ = write!(
                    row,
                    " {} ({reached}/{n}) | {} |",
                    fmt_opt(at(|(step, _)| step as f64), 0),
                    fmt_opt(at(|(_, wall)| wall), 1)
                );
            }
            let finals: Vec<f64> = sums.iter().map(|x| x.final_mean).collect();
            let curves: Vec<f64> = sums.iter().map(|x| x.curve_mean).collect();
            let _ = writeln!(
                row,
                " {} | {} | {} | {} | {} | {} | {} |",
                mean_std(&finals),
                mean_std(&curves),
                fmt_opt(med(&|x| x.lip), 1),
                fmt_opt(med(&|x| x.lip_max), 1),
                fmt_opt(med(&|x| x.bound), 0),
                fmt_opt(med(&|x| x.model_s), 1),
                fmt_opt(med(&|x| Some(x.wall_s)), 1)
            );
            s.push_str(&row);
        }
        let _ = writeln!(
            s,
            "\n![return]({env}_return.svg) ![lipschitz]({env}_lipschitz.svg) ![wall]({env}_wall.svg)"
        );
    }
    s
}

/// Mean ± sample std (n - 1) over seeds.
fn mean_std(v: &[f64]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    format!("{mean:.1} ± {:.1}", var.sqrt())
}

pub(super) fn results_csv(jobs: &[Job], results: &[RunResult]) -> String {
    let mut s = String::from(
        "env,config,seed,status,steps,threshold,first_step,wall_to_threshold_s,\
         final_eval_mean,final_eval_std,curve_mean,lip_grad_mean,lip_grad_max,lip_layer_bound,model_s,\
         wall_s\n",
    );
    let num = |v: Option<f64>| {
        v.filter(|x| x.is_finite())
            .map_or(String::new(), |x| x.to_string())
    };
    for (job, r) in jobs.iter().zip(results) {
        let threshold = budget(&job.env).threshold;
        let status = match &r.status {
            Status::Ran => "ran",
            Status::Reused => "reused",
            Status::Resumed(_) => "resumed",
            Status::Failed(_) => "failed",
            Status::Missing => "missing",
        };
        let sum = summarize(&r.rows, threshold);
        let first = sum.and_then(|x| x.first);
        let _ = writeln!(
            s,
            "{},{},{},{status},{},{},{},{},{},{},{},{},{},{},{},{}",
            job.env,
            job.config,
            job.seed,
            job.cfg.steps,
            num(threshold),
            first.map_or(String::new(), |f| f.0.to_string()),
            num(first.map(|f| f.1)),
            num(sum.map(|x| x.final_mean)),
            num(sum.map(|x| x.final_std)),
            num(sum.map(|x| x.curve_mean)),
            num(sum.and_then(|x| x.lip)),
            num(sum.and_then(|x| x.lip_max)),
            num(sum.and_then(|x| x.bound)),
            num(sum.and_then(|x| x.model_s)),
            num(sum.map(|x| x.wall_s)),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_counts_unreached_as_infinite() {
        assert_eq!(median(vec![3.0, 1.0, f64::INFINITY]), Some(3.0));
        assert_eq!(median(vec![1.0, f64::INFINITY]), None);
        assert_eq!(median(vec![1.0, 2.0]), Some(1.5));
        assert_eq!(median(vec![]), None);
        assert_eq!(mean_std(&[1.0, 3.0]), "2.0 ± 1.4");
    }

    #[test]
    fn command_line_is_quoted_for_a_shell() {
        assert_eq!(quote("mbpo-single-sn+robust"), "mbpo-single-sn+robust");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
