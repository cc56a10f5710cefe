//! `--matmul bf16`: refused without AMX, deterministic with it.
use super::*;

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
