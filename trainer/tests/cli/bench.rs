//! `keel bench`: tables, CSV and plots, and reusing finished runs.
use super::*;

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
