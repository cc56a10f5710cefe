//! The `keel` binary end to end: user errors, determinism, resume, export, inspect, eval.
use std::path::Path;
use std::process::{Command, Output};

fn keel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .output()
        .expect("run keel")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A tiny, fast configuration: small networks, few steps.
const TINY: &str = r#"
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

fn tiny_config(dir: &Path) -> String {
    let p = dir.join("tiny.toml");
    std::fs::write(&p, TINY).unwrap();
    p.to_string_lossy().into_owned()
}

/// A finished 300-step run of [`TINY`] in `dir/run`, to resume.
fn tiny_run_300(dir: &Path) -> std::path::PathBuf {
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

fn metrics_without_wall(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("metrics.csv"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut cols: Vec<&str> = l.split(',').collect();
            cols.remove(1);
            cols.join(",")
        })
        .collect()
}

#[test]
fn unknown_env_and_flag_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let o = keel(&[
        "train",
        "--env",
        "nosuchenv",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("unknown environment") && e.contains("pendulum"),
        "{e}"
    );
    assert!(!e.contains("panicked"), "{e}");
    assert!(!out.exists(), "no output directory for a failed start");
    let o = keel(&["train", "--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2));
    let o = keel(&["train", "--device", "cuda", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("CUDA") && !stderr(&o).contains("panicked"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
}

#[test]
fn bad_config_names_file_field_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("bad.toml");
    std::fs::write(&cfg, "seed = 1\n[sac]\nbatch_sise = 3\n").unwrap();
    let o = keel(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        tmp.path().join("r").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("bad.toml") && e.contains("batch_sise") && e.contains("line 3"),
        "{e}"
    );
    std::fs::write(&cfg, "[sac]\ngamma = 1.5\n").unwrap();
    let o = keel(&["train", "--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("sac.gamma"), "{}", stderr(&o));
    let o = keel(&["train", "--config", "/nonexistent/x.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("/nonexistent/x.toml"));
}

#[test]
fn print_config_shows_the_env_defaults_and_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let o = keel(&[
        "train",
        "--env",
        "cartpole-swingup",
        "--seed",
        "7",
        "--lipschitz",
        "sn",
        "--out",
        out.to_str().unwrap(),
        "--print-config",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let v: toml::Value = toml::from_str(&text).unwrap();
    assert_eq!(v["env"].as_str(), Some("cartpole-swingup"));
    assert_eq!(v["seed"].as_integer(), Some(7));
    assert_eq!(v["steps"].as_integer(), Some(50_000));
    assert_eq!(v["mbpo"]["init_steps"].as_integer(), Some(1000));
    assert_eq!(v["lipschitz"]["spectral_norm"].as_bool(), Some(true));
    assert_eq!(v["lipschitz"]["robust"].as_bool(), Some(false));
    assert_eq!(v["lipschitz"]["lambda_final"].as_float(), Some(0.0));
    assert!(!out.exists(), "--print-config must not start a run");

    // The printed config is a valid --config: read back, it prints the same text.
    let saved = tmp.path().join("saved.toml");
    std::fs::write(&saved, &text).unwrap();
    let o = keel(&[
        "train",
        "--config",
        saved.to_str().unwrap(),
        "--print-config",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), text);

    // --model ensemble builds MBPO's ensemble on top of the config's own model keys.
    let deep = tmp.path().join("deep.toml");
    std::fs::write(
        &deep,
        "[mbpo.model]\nhidden = [64, 64, 64, 64]\npatience = 9\nweight_decay = [1e-5]\n",
    )
    .unwrap();
    let o = keel(&[
        "train",
        "--config",
        deep.to_str().unwrap(),
        "--model",
        "ensemble",
        "--print-config",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: toml::Value = toml::from_str(&stdout(&o)).unwrap();
    let m = &v["mbpo"]["model"];
    assert_eq!(m["ensemble_size"].as_integer(), Some(7));
    assert_eq!(m["elites"].as_integer(), Some(5));
    assert_eq!(m["head"].as_str(), Some("gaussian"));
    assert_eq!(m["patience"].as_integer(), Some(9));
    assert_eq!(m["hidden"].as_array().map(Vec::len), Some(4));
}

#[test]
fn unwritable_output_dir_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let out = file.join("sub");
    let o = keel(&[
        "train",
        "--config",
        &tiny_config(tmp.path()),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("output directory"), "{}", stderr(&o));
}

#[test]
fn corrupt_or_missing_policy_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("bad.keel");
    std::fs::write(&p, b"KEEL\x01\x00garbage-garbage").unwrap();
    for cmd in [
        vec!["inspect", p.to_str().unwrap()],
        vec!["eval", p.to_str().unwrap(), "--env", "pendulum"],
    ] {
        let o = keel(&cmd);
        assert_eq!(o.status.code(), Some(2), "{cmd:?}");
        assert!(
            stderr(&o).contains("bad.keel") && !stderr(&o).contains("panicked"),
            "{}",
            stderr(&o)
        );
    }
    let o = keel(&["inspect", "/nonexistent.keel"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn train_is_deterministic_and_writes_all_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny_config(tmp.path());
    // Same directory name, so the policies' metadata (the run name) match too.
    let (a, b) = (
        tmp.path().join("a").join("run"),
        tmp.path().join("b").join("run"),
    );
    for d in [&a, &b] {
        let o = keel(&[
            "train",
            "--config",
            &cfg,
            "--seed",
            "7",
            "--out",
            d.to_str().unwrap(),
            "--quiet",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stdout(&o).contains("policy.keel"), "{}", stdout(&o));
    }
    for f in [
        "config.toml",
        "metrics.csv",
        "curve.svg",
        "checkpoint.bin",
        "policy.keel",
        "policy_best.keel",
    ] {
        assert!(a.join(f).exists(), "{f} missing");
    }
    // policy_best.keel is the policy of the first best evaluation: re-evaluated with the
    // training's evaluation seed (seed + 0x5EED0000) it gives that row's return exactly.
    let means: Vec<f64> = metrics_without_wall(&a)[1..]
        .iter()
        .map(|row| row.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    let best = means.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let seed = (7u64 + 0x5EED_0000).to_string();
    let best_path = a.join("policy_best.keel");
    let o = keel(&[
        "eval",
        best_path.to_str().unwrap(),
        "--episodes",
        "2",
        "--seed",
        &seed,
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["mean_return"].as_f64().unwrap(), best, "{means:?}");
    assert_eq!(metrics_without_wall(&a), metrics_without_wall(&b));
    assert_eq!(
        std::fs::read(a.join("policy.keel")).unwrap(),
        std::fs::read(b.join("policy.keel")).unwrap()
    );
    let m = metrics_without_wall(&a);
    assert_eq!(m.len(), 3, "{m:?}");
    assert!(m[0].starts_with("env_step,eval_mean,eval_std,critic_loss,actor_loss,alpha,entropy"));

    // The resolved config reproduces the run.
    let c = tmp.path().join("c");
    let resolved = a.join("config.toml");
    let o = keel(&[
        "train",
        "--config",
        resolved.to_str().unwrap(),
        "--out",
        c.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(metrics_without_wall(&a), metrics_without_wall(&c));
}

#[test]
fn resume_export_inspect_eval() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tiny_run_300(tmp.path());
    let r = run.to_str().unwrap();
    // A flag that would change what the run trains is refused, not silently dropped.
    let o = keel(&["train", "--resume", "--seed", "3", "--out", r, "--quiet"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--seed cannot be combined with --resume"),
        "{}",
        stderr(&o)
    );
    let o = keel(&["train", "--resume", "--steps", "600", "--out", r, "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = metrics_without_wall(&run);
    assert_eq!(m.len(), 3, "{m:?}");
    assert!(m[2].starts_with("600,"), "{m:?}");
    assert!(run.join("policy_best.keel").is_file());

    let exported = tmp.path().join("exported.keel");
    let o = keel(&["export", r, "--out", exported.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(&exported).unwrap(),
        std::fs::read(run.join("policy.keel")).unwrap()
    );

    let o = keel(&["inspect", exported.to_str().unwrap(), "--json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["crc_ok"], true);
    assert_eq!(v["obs_dim"], 3);
    assert_eq!(v["act_dim"], 1);
    assert_eq!(v["train_steps"], 600);
    assert_eq!(v["params"], 3 * 16 + 16 + 16 + 1);
    let o = keel(&["inspect", exported.to_str().unwrap()]);
    assert!(stdout(&o).contains("crc-32") && stdout(&o).contains("ok"));

    let o = keel(&[
        "eval",
        exported.to_str().unwrap(),
        "--episodes",
        "3",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["episodes"], 3);
    assert!(v["mean_return"].as_f64().unwrap() < 0.0);
    assert!(v["std_return"].as_f64().unwrap() >= 0.0);

    let o = keel(&[
        "train",
        "--resume",
        "--out",
        tmp.path().join("none").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("checkpoint"));
}

/// `--resume --config FILE` changes the listed settings for the rest of a run, keeps the old
/// ones beside it, and refuses a key that shapes the checkpoint by name.
#[test]
fn resume_with_changed_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tiny_run_300(tmp.path());
    let r = run.to_str().unwrap();

    let shape = tmp.path().join("shape.toml");
    std::fs::write(&shape, "[sac]\ncritic_hidden = [8]\n").unwrap();
    let o = keel(&[
        "train",
        "--resume",
        "--config",
        shape.to_str().unwrap(),
        "--out",
        r,
        "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("shape.toml") && e.contains("`sac.critic_hidden` cannot change"),
        "{e}"
    );
    assert!(!run.join("config_until_300.toml").exists());

    let lower = tmp.path().join("lower.toml");
    std::fs::write(&lower, "[sac]\nactor_lr = 0.0001\ncritic_lr = 0.0001\n").unwrap();
    let o = keel(&[
        "train",
        "--resume",
        "--config",
        lower.to_str().unwrap(),
        "--steps",
        "600",
        "--out",
        r,
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = metrics_without_wall(&run);
    assert!(m[2].starts_with("600,"), "{m:?}");
    let now = std::fs::read_to_string(run.join("config.toml")).unwrap();
    let before = std::fs::read_to_string(run.join("config_until_300.toml")).unwrap();
    assert!(
        now.contains("actor_lr = 0.0001") && now.contains("steps = 600"),
        "{now}"
    );
    assert!(
        before.contains("actor_lr = 0.001\n") && before.contains("steps = 300"),
        "{before}"
    );
    // The checkpoint carries the new settings: a plain resume keeps them.
    let o = keel(&["train", "--resume", "--out", r, "--print-config"]);
    assert!(stdout(&o).contains("critic_lr = 0.0001"), "{}", stdout(&o));
}

/// A run checkpointed by an older Keel (format 1, before `mbpo.real_ratio_final` existed)
/// continues with a key that did not exist then, and is checkpointed in today's format.
#[test]
fn resume_a_checkpoint_from_before_a_new_key() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/checkpoint_v1");
    let run = tmp.path().join("old_run");
    std::fs::create_dir(&run).unwrap();
    for f in std::fs::read_dir(&fixture).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, run.join(f.file_name().unwrap())).unwrap();
    }
    let all_real = tmp.path().join("all_real.toml");
    std::fs::write(
        &all_real,
        "[mbpo]\nreal_ratio_final = 1.0\nreal_ratio_to = 40\n",
    )
    .unwrap();
    let r = run.to_str().unwrap();
    let cfg = all_real.to_str().unwrap();
    let o = keel(&[
        "train", "--resume", "--out", r, "--config", cfg, "--steps", "60", "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = metrics_without_wall(&run);
    assert!(m[1].starts_with("30,") && m[2].starts_with("60,"), "{m:?}");
    let ck = std::fs::read(run.join("checkpoint.bin")).unwrap();
    assert!(ck.starts_with(b"KEELCK"), "today's format");
    let o = keel(&["train", "--resume", "--out", r, "--print-config"]);
    assert!(
        stdout(&o).contains("real_ratio_final = 1.0"),
        "{}",
        stdout(&o)
    );
}

/// A run stopped at an episode boundary and resumed ends exactly as one run straight
/// through (MBPO with spectral norm and the robust loss: its model optimizer, critics'
/// power-iteration vectors and the robust loss's scale are checkpointed).
#[test]
fn an_mbpo_run_resumed_ends_as_one_run() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("mbpo.toml");
    std::fs::write(
        &cfg,
        "env = \"pendulum\"\nsteps = 600\neval_every = 200\neval_episodes = 2\n\
         checkpoint_every = 200\n[sac]\nactor_hidden = [16]\ncritic_hidden = [16, 16]\n\
         batch_size = 32\n[mbpo]\ninit_steps = 200\nretrain_every = 100\n\
         updates_per_step = 2\nrollouts_per_step = 20\n[mbpo.model]\nhidden = [16]\n\
         weight_decay = [1e-5]\n",
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    let train = |out: &Path, extra: &[&str]| {
        let mut args = vec!["train", "--out", out.to_str().unwrap(), "--quiet"];
        args.extend(extra);
        let o = keel(&args);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    train(&one, &["--config", c]);
    train(&two, &["--config", c, "--steps", "400"]);
    train(&two, &["--resume", "--steps", "600"]);
    // Every column but the wall-clock ones.
    let metrics = |dir: &Path| -> Vec<String> {
        let text = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
        let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
        let timed = |name: &str| name == "wall_s" || name.ends_with("_s");
        text.lines()
            .map(|l| {
                l.split(',')
                    .zip(&header)
                    .filter(|(_, h)| !timed(h))
                    .map(|(v, _)| v)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect()
    };
    // Evaluations of the deployed policy, losses, Lipschitz estimates, model errors.
    let m = metrics(&one);
    assert_eq!(m.len(), 4, "{m:?}");
    assert_eq!(m, metrics(&two));
}

#[test]
fn env_trace_replays_reference() {
    let reference = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/reference/pendulum-v1_seed0_formula.csv"
    );
    let o = keel(&["env-trace", "--env", "pendulum", "--replay", reference]);
    assert!(o.status.success(), "{}", stderr(&o));
    let expected = std::fs::read_to_string(reference).unwrap();
    assert_eq!(stdout(&o).lines().count(), expected.lines().count());
    let o = keel(&[
        "env-trace",
        "--env",
        "pendulum",
        "--replay",
        "/nonexistent.csv",
    ]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn bench_writes_table_csv_and_plots_and_reuses_finished_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("bench");
    // 300 steps is before SAC's 500 random warm-up steps end: no learning, one evaluation.
    let args = [
        "bench",
        "--envs",
        "pendulum",
        "--configs",
        "sac",
        "--seed-list",
        "0",
        "--steps",
        "300",
        "--out",
        out.to_str().unwrap(),
    ];
    let o = keel(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("pendulum sac seed0"), "{}", stderr(&o));
    for f in [
        "results.md",
        "results.csv",
        "pendulum_return.svg",
        "pendulum_lipschitz.svg",
        "pendulum_wall.svg",
        "runs/pendulum/sac/seed0/policy.keel",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(
        md.contains("| sac | 1 |") && md.contains("--steps 300"),
        "{md}"
    );
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(
        csv.lines()
            .nth(1)
            .unwrap()
            .starts_with("pendulum,sac,0,ran,300,"),
        "{csv}"
    );

    // A second bench finds the finished run and does not train again.
    let o = keel(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("reused"), "{}", stderr(&o));
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert!(csv.contains("pendulum,sac,0,reused,300,"), "{csv}");

    // A larger budget continues the run from its checkpoint instead of starting again: the
    // first 300 steps' evaluations (every 50) stay, the new ones follow (every 100).
    let mut longer = args;
    longer[8] = "600";
    let o = keel(&longer);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("resumed from step 300"),
        "{}",
        stderr(&o)
    );
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert!(csv.contains("pendulum,sac,0,resumed,600,"), "{csv}");
    let metrics = std::fs::read_to_string(out.join("runs/pendulum/sac/seed0/metrics.csv")).unwrap();
    let steps: Vec<&str> = metrics
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(
        steps,
        ["50", "100", "150", "200", "250", "300", "400", "500", "600"]
    );

    // --report-only tables what is finished and trains nothing. A run written before a config
    // key existed (here: lambda_from removed from its config.toml) still counts as the same run.
    let cfg_path = out.join("runs/pendulum/sac/seed0/config.toml");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    assert!(cfg.contains("lambda_from = 0\n"), "{cfg}");
    std::fs::write(&cfg_path, cfg.replace("lambda_from = 0\n", "")).unwrap();
    let mut report = longer.to_vec();
    report[6] = "0,1";
    report.push("--report-only");
    let o = keel(&report);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !out.join("runs/pendulum/sac/seed1").exists(),
        "trained seed 1"
    );
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("| sac | 1 (1 missing) |"), "{md}");
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert!(
        csv.contains("pendulum,sac,0,reused,600,") && csv.contains("pendulum,sac,1,missing,"),
        "{csv}"
    );
    let empty = tmp.path().join("empty");
    let o = keel(&["bench", "--report-only", "--out", empty.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no finished run"), "{}", stderr(&o));
    assert!(!empty.exists(), "no output directory for nothing to report");
}

#[test]
fn bench_unknown_config_or_env_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("bench");
    let o = keel(&[
        "bench",
        "--configs",
        "sac,mbpo-single-nosuch",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("mbpo-single-nosuch") && e.contains("mbpo-single-sn+robust"),
        "{e}"
    );
    assert!(!out.exists(), "no output directory for a failed start");
    let o = keel(&[
        "bench",
        "--envs",
        "nosuchenv",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("nosuchenv") && stderr(&o).contains("pendulum"),
        "{}",
        stderr(&o)
    );
}

/// `--matmul bf16` without AMX (here forced with KEEL_DISABLE_AMX) is a usage error that names
/// the setting, before any output is written.
#[test]
fn bf16_matmul_is_refused_without_amx() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny_config(tmp.path());
    let out = tmp.path().join("run");
    let o = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args([
            "train", "--config", &cfg, "--matmul", "bf16", "--quiet", "--out",
        ])
        .arg(&out)
        .env("KEEL_DISABLE_AMX", "1")
        .output()
        .expect("run keel");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("matmul") && stderr(&o).contains("AMX"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert!(!out.join("metrics.csv").exists());
    assert!(!out.join("config.toml").exists());
}

/// `--matmul bf16`: on an AMX CPU the run is recorded in config.toml, deterministic, and learns
/// something finite; elsewhere it is a usage error that names the setting, before any output.
#[test]
fn bf16_matmul_runs_on_amx_and_is_refused_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny_config(tmp.path());
    // Hidden layers and batch of 64, so the critic's middle products run in bf16 (sides >= 32).
    let cfg_text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("batch_size = 32", "batch_size = 64")
        .replace("critic_hidden = [32, 32]", "critic_hidden = [64, 64]");
    std::fs::write(&cfg, cfg_text).unwrap();
    let run = |name: &str| {
        let out = tmp.path().join(name);
        let o = keel(&[
            "train",
            "--config",
            &cfg,
            "--matmul",
            "bf16",
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ]);
        (o, out)
    };
    let (o, a) = run("a");
    if !keel_trainer::nn::bf16::available() {
        eprintln!("bf16 matmul: this CPU has no AMX, checking the refusal only");
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains("matmul"), "{}", stderr(&o));
        assert!(!a.join("metrics.csv").exists());
        return;
    }
    assert!(o.status.success(), "{}", stderr(&o));
    let config = std::fs::read_to_string(a.join("config.toml")).unwrap();
    assert!(config.contains("matmul = \"bf16\""), "{config}");
    let (o, b) = run("b");
    assert!(o.status.success(), "{}", stderr(&o));
    let (ma, mb) = (metrics_without_wall(&a), metrics_without_wall(&b));
    assert_eq!(ma, mb, "same seed, same machine, same bf16 metrics");
    let last = ma.last().unwrap();
    let eval: f64 = last.split(',').nth(1).unwrap().parse().unwrap();
    assert!(eval.is_finite(), "{last}");
}
