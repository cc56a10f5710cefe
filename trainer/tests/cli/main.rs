//! The `keel` binary end to end: user errors, determinism, resume, export, inspect, eval,
//! bench. Shared helpers here; the tests by theme in the modules.
use std::path::Path;
use std::process::{Command, Output};

mod bench;
mod matmul;
mod resume;
mod train;
mod usage_errors;

pub(crate) fn keel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .output()
        .expect("run keel")
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A tiny, fast configuration: small networks, few steps.
pub(crate) const TINY: &str = r#"
env = "pendulum"
algo = "sac"
steps = 600
eval_every = 300
eval_episodes = 2
checkpoint_every = 300
[sac]
batch_size = 32
learning_starts = 100
actor_hidden = [16]
critic_hidden = [32, 32]
"#;

pub(crate) fn tiny_config(dir: &Path) -> String {
    let p = dir.join("tiny.toml");
    std::fs::write(&p, TINY).unwrap();
    p.to_string_lossy().into_owned()
}

/// A finished 300-step run of [`TINY`] in `dir/run`, to resume.
pub(crate) fn tiny_run_300(dir: &Path) -> std::path::PathBuf {
    let cfg = tiny_config(dir);
    let run = dir.join("run");
    let o = keel(&[
        "train",
        "--config",
        &cfg,
        "--steps",
        "300",
        "--out",
        run.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    run
}

/// metrics.csv's rows without the wall-clock columns (`wall_s`, and MBPO's `model_train_s` and
/// `model_predict_s`: every column named `*_s`), which differ between identical runs.
pub(crate) fn metrics_without_wall(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    text.lines()
        .map(|l| {
            l.split(',')
                .zip(&header)
                .filter(|(_, h)| !h.ends_with("_s"))
                .map(|(v, _)| v)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}
