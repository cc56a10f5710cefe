//! Config parsing, merging and validation.
use super::*;

#[test]
fn defaults_round_trip_through_toml() {
    for env in crate::env::ENV_IDS {
        let mut c = TrainConfig::for_env(env);
        // A float with no short decimal form must survive too.
        c.sac.tau = f32::from_bits(0x3BA3_D70B);
        let text = c.to_toml();
        assert_eq!(
            TrainConfig::from_toml(&text, None, None).unwrap(),
            c,
            "{env}"
        );
        assert!(text.contains("gamma = 0.99\n"), "{text}");
        assert!(
            text.contains("critic_hidden = [64, 64]\n")
                || text.contains("critic_hidden = [256, 256]\n"),
            "{text}"
        );
    }
}

#[test]
fn user_keys_override_env_defaults() {
    let c = TrainConfig::from_toml(
        "env = \"mountaincar\"\nseed = 3\n[sac]\nbatch_size = 64\n",
        None,
        None,
    )
    .unwrap();
    assert_eq!(c.env, "mountaincar");
    assert_eq!(c.seed, 3);
    assert_eq!(c.sac.batch_size, 64);
    assert_eq!(
        c.sac.learning_starts,
        SacConfig::for_env("mountaincar").learning_starts
    );
    let c = TrainConfig::from_toml("seed = 1", Some("fishery3"), None).unwrap();
    assert_eq!(c.env, "fishery3");
    // A partial [lipschitz] table keeps the env's own values for the keys it leaves out.
    let c = TrainConfig::from_toml(
        "env = \"cartpole-swingup\"\n[lipschitz]\nlambda = 0.5\n",
        None,
        None,
    )
    .unwrap();
    assert_eq!(c.lipschitz.lambda, 0.5);
    assert_eq!(c.lipschitz.epsilon, 0.005);
    // cartpole-swingup's robust term fades out between steps 10,000 and 30,000.
    let l = &c.lipschitz;
    assert_eq!(
        [0, 10_000, 20_000, 30_000].map(|s| l.lambda_at(s)),
        [0.5, 0.5, 0.25, 0.0]
    );
    assert_eq!(TrainConfig::for_env("pendulum").lipschitz.epsilon, 0.01);
    // Half-real SAC batches on the two plants whose single model needed them.
    for (env, ratio) in [
        ("pendulum", 0.1),
        ("cartpole-swingup", 0.5),
        ("fishery3", 0.5),
    ] {
        assert_eq!(TrainConfig::for_env(env).mbpo.real_ratio, ratio, "{env}");
    }
    // fishery3 deploys MBPO's averaged actor; nothing else averages.
    assert_eq!(TrainConfig::for_env("fishery3").sac.policy_average, 2e-5);
    assert_eq!(
        TrainConfig::for_env_algo("fishery3", Algo::Sac)
            .sac
            .policy_average,
        0.0
    );
    assert_eq!(
        TrainConfig::for_env("cartpole-swingup").sac.policy_average,
        0.0
    );
    // fishery3's MBPO caps the entropy temperature and lowers its learning rates to a tenth
    // between 10k and 30k env steps; nothing else does either.
    assert_eq!(TrainConfig::for_env("fishery3").sac.max_alpha, Some(0.1));
    for (env, algo) in [
        ("fishery3", Algo::Sac),
        ("pendulum", Algo::Mbpo),
        ("mountaincar", Algo::Mbpo),
        ("cartpole-swingup", Algo::Mbpo),
    ] {
        let s = TrainConfig::for_env_algo(env, algo).sac;
        assert_eq!(s.max_alpha, None, "{env}");
        assert_eq!(s.lr_scale_at(1_000_000), 1.0, "{env}");
    }
    let f = TrainConfig::for_env("fishery3").sac;
    assert_eq!(
        (f.lr_final_scale, f.lr_decay_from, f.lr_decay_to),
        (0.1, 10_000, 30_000)
    );
    assert!((f.lr_scale_at(20_000) - 0.55).abs() < 1e-6);
    // fishery3's MBPO trains 120,000 steps, on real batches only after 60,000; nothing else
    // changes its real fraction.
    let f = TrainConfig::for_env("fishery3");
    assert_eq!(f.steps, 120_000);
    assert_eq!(
        (f.mbpo.real_ratio_at(60_000), f.mbpo.real_ratio_at(60_001)),
        (0.5, 1.0)
    );
    assert_eq!(
        TrainConfig::for_env_algo("fishery3", Algo::Sac).steps,
        30_000
    );
    // fishery3 and cartpole-swingup deploy the model's choice among their evaluated policies.
    assert_eq!(f.mbpo.select_episodes, 500);
    let c = TrainConfig::for_env("cartpole-swingup");
    assert_eq!(c.mbpo.select_episodes, 100);
    // cartpole-swingup evaluates (and so offers the model a candidate) every 2,500 steps.
    assert_eq!((c.eval_every, c.checkpoint_every), (2_500, 2_500));
    assert_eq!(
        TrainConfig::for_env_algo("cartpole-swingup", Algo::Sac).eval_every,
        5_000
    );
    for env in ["pendulum", "mountaincar", "fishery1"] {
        assert_eq!(TrainConfig::for_env(env).mbpo.select_episodes, 0, "{env}");
    }
    for env in ["pendulum", "mountaincar", "cartpole-swingup"] {
        assert_eq!(
            TrainConfig::for_env(env).mbpo.real_ratio_final,
            None,
            "{env}"
        );
    }
    // `--algo sac` keeps the plain critic, whatever the env.
    let sac = TrainConfig::for_env_algo("cartpole-swingup", Algo::Sac).lipschitz;
    assert!(!sac.spectral_norm && !sac.robust);
}

#[test]
fn robust_weight_schedule() {
    let mut l = LipschitzConfig::default();
    assert_eq!((l.lambda_at(0), l.lambda_at(1_000_000)), (0.25, 0.25));
    l.lambda_final = Some(1.0);
    l.lambda_from = 1000;
    l.lambda_to = 3000;
    let w: Vec<f32> = [0, 1000, 2000, 3000, 9000].map(|s| l.lambda_at(s)).into();
    assert_eq!(w, [0.25, 0.25, 0.625, 1.0, 1.0]);
    // A ramp of no length is a step at lambda_from.
    l.lambda_to = 0;
    assert_eq!((l.lambda_at(1000), l.lambda_at(1001)), (0.25, 1.0));
    let e = TrainConfig::from_toml("[lipschitz]\nlambda_final = -1.0\n", None, None);
    assert!(e.unwrap_err().contains("lambda_final"));
    let c = TrainConfig::from_toml("[lipschitz]\nlambda_final = 1.0\n", None, None).unwrap();
    assert_eq!(c.lipschitz.lambda_final, Some(1.0));
}

#[test]
fn real_ratio_schedule() {
    let mut m = MbpoConfig::for_env("cartpole-swingup");
    assert_eq!((m.real_ratio_at(0), m.real_ratio_at(1_000_000)), (0.5, 0.5));
    m.real_ratio_final = Some(1.0);
    m.real_ratio_from = 50_000;
    m.real_ratio_to = 60_000;
    let r: Vec<f32> = [0, 50_000, 55_000, 60_000, 120_000]
        .map(|s| m.real_ratio_at(s))
        .into();
    assert_eq!(r, [0.5, 0.5, 0.75, 1.0, 1.0]);
    let e = TrainConfig::from_toml("[mbpo]\nreal_ratio_final = 1.5\n", None, None);
    assert!(e.unwrap_err().contains("mbpo.real_ratio_final"));
}

#[test]
fn errors_name_field_and_line() {
    let e = TrainConfig::from_toml("seed = 1\n[sac]\nbatchsize = 3\n", None, None).unwrap_err();
    assert!(e.contains("batchsize") && e.contains("line 3"), "{e}");
    let e = TrainConfig::from_toml("seed = \"x\"\n", None, None).unwrap_err();
    assert!(e.contains("line 1") && e.contains("seed"), "{e}");
    let e = TrainConfig::from_toml("[sac]\ngamma = 2.0\n", None, None).unwrap_err();
    assert!(e.contains("sac.gamma"), "{e}");
    let e = TrainConfig::from_toml("[sac]\nnoise_correlation = 1.0\n", None, None).unwrap_err();
    assert!(e.contains("sac.noise_correlation"), "{e}");
    for bad in ["-0.1", "1.5", "nan"] {
        let toml = format!("[sac]\npolicy_average = {bad}\n");
        let e = TrainConfig::from_toml(&toml, None, None).unwrap_err();
        assert!(e.contains("sac.policy_average"), "{bad}: {e}");
        let toml = format!("[sac]\nlr_final_scale = {bad}\n");
        let e = TrainConfig::from_toml(&toml, None, None).unwrap_err();
        assert!(e.contains("sac.lr_final_scale"), "{bad}: {e}");
    }
    for bad in ["0.0", "-1.0", "nan", "100001.0"] {
        let toml = format!("[sac]\npolicy_average = 1e-5\npolicy_average_final_scale = {bad}\n");
        let e = TrainConfig::from_toml(&toml, None, None).unwrap_err();
        assert!(e.contains("sac.policy_average_final_scale"), "{bad}: {e}");
    }
}

/// The deployed average's weight: one value by default; with a final scale, the scaled value
/// from the step after `policy_average_from` (where a real-ratio switch at that step lands).
#[test]
fn policy_average_switches_after_its_step() {
    let cfg = TrainConfig::for_env("fishery3").sac;
    assert!([0, 60_000, 1_000_000]
        .iter()
        .all(|&k| cfg.policy_average_at(k) == cfg.policy_average));
    let cfg = TrainConfig::from_toml(
        "[sac]\npolicy_average = 2e-5\npolicy_average_final_scale = 0.25\npolicy_average_from = 60000\n",
        None,
        None,
    )
    .unwrap()
    .sac;
    for (step, w) in [(0, 2e-5), (60_000, 2e-5), (60_001, 5e-6), (120_000, 5e-6)] {
        assert!((cfg.policy_average_at(step) - w).abs() < 1e-12, "{step}");
    }
}

/// The learning-rate factor: constant by default; otherwise 1 up to `lr_decay_from`, linear to
/// `lr_final_scale` at `lr_decay_to`, then held.
#[test]
fn learning_rate_schedule_is_linear_between_its_steps() {
    let cfg = TrainConfig::for_env("cartpole-swingup").sac;
    assert!([0, 10_000, 1_000_000]
        .iter()
        .all(|&k| cfg.lr_scale_at(k) == 1.0));
    let cfg = TrainConfig::from_toml(
        "[sac]\nlr_final_scale = 0.1\nlr_decay_from = 10000\nlr_decay_to = 30000\n",
        None,
        None,
    )
    .unwrap()
    .sac;
    for (step, scale) in [
        (0, 1.0),
        (10_000, 1.0),
        (20_000, 0.55),
        (30_000, 0.1),
        (90_000, 0.1),
    ] {
        assert!((cfg.lr_scale_at(step) - scale).abs() < 1e-6, "{step}");
    }
}

/// Values that used to panic deep inside training, or to train nothing without a word, are
/// refused up front with the key's name.
#[test]
fn values_that_cannot_train_are_refused() {
    let cases = [
        ("[mbpo]\nrollouts_per_step = 0\n", "mbpo.rollouts_per_step"),
        (
            "[mbpo]\nrollouts_per_step = 9000000000\nmodel_retain_steps = 9000000000\n",
            "too large",
        ),
        ("[lipschitz]\nsn_q_scale = 0.0\n", "lipschitz.sn_q_scale"),
        ("[lipschitz]\nsn_q_scale = nan\n", "lipschitz.sn_q_scale"),
        (
            "[sac]\nbuffer_size = 100\n",
            "sac.batch_size must be <= sac.buffer_size",
        ),
        ("[sac]\nbuffer_size = 150\n", "mbpo.init_steps (200)"),
        (
            "algo = \"sac\"\n[sac]\nbuffer_size = 300\n",
            "sac.learning_starts (500)",
        ),
    ];
    for (text, needle) in cases {
        let e = TrainConfig::from_toml(text, None, None).unwrap_err();
        assert!(e.contains(needle), "{text:?}: {e}");
    }
    // The boundary itself trains.
    TrainConfig::from_toml("[sac]\nbuffer_size = 200\n", None, None).unwrap();
}

#[test]
fn knobs_a_run_never_reads_do_not_make_it_another_training() {
    let mut a = TrainConfig::for_env("cartpole-swingup");
    a.lipschitz.set_choice(LipschitzChoice::Sn);
    let mut b = a.clone();
    b.lipschitz.lambda_final = None;
    b.lipschitz.epsilon = 0.3;
    assert!(a.same_training(&b) && a != b);
    b.lipschitz.sn_q_scale = 10.0;
    assert!(
        !a.same_training(&b),
        "spectral norm is on: its scale is read"
    );
    // With the robust term on, its schedule is part of the training.
    let a = TrainConfig::for_env("cartpole-swingup");
    let mut b = a.clone();
    b.lipschitz.lambda_final = None;
    assert!(!a.same_training(&b));
    // Model-free SAC never reads the MBPO section.
    let a = TrainConfig::for_env_algo("pendulum", Algo::Sac);
    let mut b = a.clone();
    b.mbpo.rollout_len_max = 9;
    assert!(a.same_training(&b));
    b.sac.tau = 0.5;
    assert!(!a.same_training(&b));
}
