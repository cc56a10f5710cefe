//! Mistakes a user makes are usage errors (exit code 2) that name what is wrong.
use super::*;

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
