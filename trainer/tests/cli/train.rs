//! `keel train` and the env tools: defaults, determinism, outputs, reference traces.
use super::*;

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
        "policies/step_0000300.keel",
        "policies/step_0000600.keel",
    ] {
        assert!(a.join(f).exists(), "{f} missing");
    }
    // The last evaluated policy is the final one.
    assert_eq!(
        std::fs::read(a.join("policies/step_0000600.keel")).unwrap(),
        std::fs::read(a.join("policy.keel")).unwrap()
    );
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
