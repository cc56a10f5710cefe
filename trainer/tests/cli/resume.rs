//! `--resume`: continuing, changing settings, older checkpoints, exactness; export and eval.
use super::*;

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

    // `keel select` needs a dynamics model: a SAC run is refused by name, as is a missing run.
    let o = keel(&["select", r]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no dynamics model"), "{}", stderr(&o));
    let none = tmp.path().join("none");
    let o = keel(&["select", none.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("checkpoint"), "{}", stderr(&o));
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

/// A run stopped mid-episode and resumed ends exactly as one run straight through (MBPO with
/// spectral norm and the robust loss: its model optimizer, critics' power-iteration vectors
/// and the robust loss's scale are checkpointed, and the plant's episode in progress is
/// replayed from its actions).
#[test]
fn an_mbpo_run_resumed_ends_as_one_run() {
    resume_ends_as_one_run(&[]);
}

/// The same for the ensemble baseline as the benchmark runs it (`--model ensemble --lipschitz
/// none`): every member's weights, the optimizer's moments, the normalizers and the elite set
/// are checkpointed, so a long ensemble run resumed from a checkpoint is the run straight
/// through.
#[test]
fn an_ensemble_run_resumed_ends_as_one_run() {
    resume_ends_as_one_run(&["--model", "ensemble", "--lipschitz", "none"]);
}

/// Trains 600 steps straight through and 300 + a resume to 600, with `variant` on the first
/// leg of each (a resume keeps what the run's config.toml says), and compares metrics.csv.
fn resume_ends_as_one_run(variant: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("mbpo.toml");
    std::fs::write(
        &cfg,
        "env = \"pendulum\"\nsteps = 600\neval_every = 100\neval_episodes = 2\n\
         checkpoint_every = 100\n[sac]\nactor_hidden = [16]\ncritic_hidden = [16, 16]\n\
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
    let mut first_leg = vec!["--config", c];
    first_leg.extend(variant);
    train(&one, &first_leg);
    // Pendulum's episodes are 200 steps: 300 is halfway through the second.
    first_leg.extend(["--steps", "300"]);
    train(&two, &first_leg);
    train(&two, &["--resume", "--steps", "600"]);
    // Evaluations of the deployed policy, losses, Lipschitz estimates, model errors.
    let m = metrics_without_wall(&one);
    assert_eq!(m.len(), 7, "{m:?}");
    assert_eq!(m, metrics_without_wall(&two));
}
