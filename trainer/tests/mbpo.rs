//! A short MBPO run (single model, spectral norm + robust loss: the defaults) must improve the
//! Pendulum return from the random policy's within a CI-sized budget, its metrics must carry
//! the Lipschitz measurements, and its model must choose among the evaluated policies.
use keel_trainer::config::{Algo, TrainConfig};
use keel_trainer::train::{policy_file, train, MODEL_SELECT_CSV, SELECTED_POLICY};

#[test]
fn mbpo_smoke_improves_pendulum_return() {
    let mut cfg = TrainConfig::for_env_algo("pendulum", Algo::Mbpo);
    cfg.steps = 1000;
    cfg.eval_every = 250;
    cfg.eval_episodes = 5;
    cfg.seed = 1;
    cfg.mbpo.select_episodes = 20;
    assert!(
        cfg.lipschitz.spectral_norm && cfg.lipschitz.robust && cfg.mbpo.model.ensemble_size == 1
    );
    let dir = tempfile::tempdir().unwrap();
    let out = train(&cfg, dir.path(), false, false).unwrap();
    let first = out.records.first().unwrap().eval_mean;
    let best = out
        .records
        .iter()
        .map(|r| r.eval_mean)
        .fold(f64::NEG_INFINITY, f64::max);
    assert!(
        best > first + 300.0,
        "no improvement: first {first}, best {best}"
    );
    let last = out.records.last().unwrap();
    for k in [
        "lip_grad_max",
        "lip_grad_mean",
        "lip_layer_bound",
        "robust_gap",
        "robust_lambda",
        "model_holdout_mse",
    ] {
        let v = last.extra.iter().find(|(n, _)| n == k).map(|x| x.1);
        assert!(v.is_some_and(f64::is_finite), "{k}: {v:?}");
    }
    // Retrains run every 100 steps, evaluations every 250: each row averages two or three.
    let epochs = last.extra.iter().find(|(n, _)| n == "model_epochs");
    let max = cfg.mbpo.model.max_epochs as f64;
    assert!(
        epochs.is_some_and(|e| (1.0..=max).contains(&e.1)),
        "model_epochs: {epochs:?}"
    );

    // Every evaluated policy was kept; the model scored each and chose the one it rates
    // highest, and it rates the first (after 250 steps, before learning) far below it.
    let choice = out.selected.expect("select_episodes > 0: a choice");
    let csv = std::fs::read_to_string(dir.path().join(MODEL_SELECT_CSV)).unwrap();
    let rows: Vec<(usize, f64)> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            (c[0].parse().unwrap(), c[1].parse().unwrap())
        })
        .collect();
    let steps: Vec<usize> = out.records.iter().map(|r| r.env_step).collect();
    assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), steps);
    let top = rows.iter().map(|r| r.1).fold(f64::NEG_INFINITY, f64::max);
    assert_eq!(choice.model_return, top, "{rows:?}");
    assert!(rows[0].1 < top - 300.0, "{rows:?}");
    assert_eq!(
        std::fs::read(dir.path().join(SELECTED_POLICY)).unwrap(),
        std::fs::read(policy_file(dir.path(), choice.env_step)).unwrap()
    );
}
