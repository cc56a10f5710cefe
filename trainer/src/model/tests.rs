//! Unit tests: the batched ensemble against separate networks, gradients against finite
//! differences, prediction shapes and rewards, checkpoint state.

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

use super::*;
use crate::env::{Env, Pendulum};
use crate::nn::{Activation, CpuBackend, Mlp, MlpConfig};
use crate::replay::Batch;

fn rng(seed: u64) -> Pcg64 {
    Pcg64::seed_from_u64(seed)
}

fn uniform(rng: &mut Pcg64, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The batched forward and backward of N members equal N separate `nn::Mlp`s loaded with the
/// same parameters (an independent implementation), for per-member and shared inputs, and for
/// a subset of members.
#[test]
fn ensemble_matches_separate_networks() {
    let mut r = rng(1);
    let sizes = [4, 16, 8, 3];
    let (n, rows) = (3, 5);
    let mut ens = EnsembleMlp::new(&CpuBackend, n, &sizes, Activation::Silu, &mut r);
    let cfg = MlpConfig {
        sizes: sizes.to_vec(),
        hidden: Activation::Silu,
        output: Activation::Identity,
        spectral_norm: false,
        spectral_norm_output: false,
    };
    let mut nets: Vec<Mlp<CpuBackend>> = (0..n)
        .map(|k| {
            let mut m = Mlp::new(&CpuBackend, &cfg, rows, &mut r);
            m.load_params(&ens.member_params(k));
            m
        })
        .collect();
    let x = uniform(&mut r, n * rows * 4);
    let dy = uniform(&mut r, n * rows * 3);
    let mut cache = ens.new_cache(rows);
    let all = [0, 1, 2];
    let y = ens.forward(&mut cache, &x, rows, &all, false).to_vec();
    ens.zero_grad();
    ens.backward(&mut cache, &dy);
    let grads = ens.grads();
    for (k, net) in nets.iter_mut().enumerate() {
        let xk = &x[k * rows * 4..(k + 1) * rows * 4];
        let yk = net.forward(xk, rows).to_vec();
        assert!(
            max_abs_diff(&yk, &y[k * rows * 3..(k + 1) * rows * 3]) < 1e-6,
            "member {k}"
        );
        net.zero_grad();
        net.backward(&dy[k * rows * 3..(k + 1) * rows * 3], rows, false);
        let gk: Vec<f32> = ens
            .member_ranges(k)
            .into_iter()
            .flat_map(|rg| grads[rg].to_vec())
            .collect();
        assert!(
            max_abs_diff(&gk, &net.grads()) < 1e-5,
            "member {k} gradients"
        );
    }
    // Shared input, members 2 and 0 only (the elite-only prediction path).
    let xs = uniform(&mut r, rows * 4);
    let ys = ens.forward(&mut cache, &xs, rows, &[2, 0], true).to_vec();
    for (slot, k) in [2, 0].into_iter().enumerate() {
        let yk = nets[k].predict(&xs, rows).to_vec();
        assert!(max_abs_diff(&yk, &ys[slot * rows * 3..(slot + 1) * rows * 3]) < 1e-6);
    }
    // N = 1 through the same path equals the member it was loaded from.
    let mut one = EnsembleMlp::new(&CpuBackend, 1, &sizes, Activation::Silu, &mut r);
    one.load_member_params(0, &ens.member_params(1));
    let mut c1 = one.new_cache(rows);
    let y1 = one.forward(&mut c1, &xs, rows, &[0], true).to_vec();
    assert_eq!(y1, nets[1].predict(&xs, rows).to_vec());
}

/// Parameter gradients of the batched backward against central differences of
/// `L = sum(w * y)` for a fixed random `w` (so `dL/dy = w`).
#[test]
fn ensemble_gradients_match_finite_differences() {
    let mut r = rng(2);
    let sizes = [3, 6, 5, 2];
    let (n, rows) = (2, 4);
    let mut ens = EnsembleMlp::new(&CpuBackend, n, &sizes, Activation::Tanh, &mut r);
    let x = uniform(&mut r, n * rows * 3);
    let w = uniform(&mut r, n * rows * 2);
    let mut cache = ens.new_cache(rows);
    let all = [0, 1];
    ens.forward(&mut cache, &x, rows, &all, false);
    ens.zero_grad();
    ens.backward(&mut cache, &w);
    let grads = ens.grads();
    let base = ens.params();
    let h = 1e-2f32;
    let mut loss = |p: &[f32], ens: &mut EnsembleMlp<CpuBackend>| -> f64 {
        ens.load_params(p);
        let y = ens.forward(&mut cache, &x, rows, &all, false);
        y.iter().zip(&w).map(|(a, b)| f64::from(a * b)).sum()
    };
    let mut worst = 0.0f64;
    for i in 0..base.len() {
        let (mut p, mut m) = (base.clone(), base.clone());
        p[i] += h;
        m[i] -= h;
        let fd = (loss(&p, &mut ens) - loss(&m, &mut ens)) / f64::from(2.0 * h);
        worst = worst.max((fd - f64::from(grads[i])).abs() / (1.0 + fd.abs()));
    }
    assert!(worst < 2e-3, "worst relative gradient error {worst}");
}

/// The Gaussian head's loss gradient w.r.t. the network output against central differences,
/// including raw log-variances deep in both soft clamps; and the MSE gradient.
#[test]
fn nll_and_mse_gradients_match_finite_differences() {
    let mut r = rng(3);
    let (rows, dim) = (4, 3);
    let mut out = uniform(&mut r, rows * 2 * dim);
    out[dim] = 12.0; // above max_logvar
    out[dim + 1] = -25.0; // below min_logvar
    out[3 * dim] = 0.45; // near max_logvar
    let target: Vec<f32> = uniform(&mut r, rows * dim)
        .iter()
        .map(|t| 2.0 * t)
        .collect();
    let (lo, hi) = (-10.0, 0.5);
    let mut grad = vec![0.0; out.len()];
    gaussian_nll_loss(&out, &target, dim, lo, hi, Some(&mut grad));
    let h = 1e-3f32;
    for i in 0..out.len() {
        let (mut p, mut m) = (out.clone(), out.clone());
        p[i] += h;
        m[i] -= h;
        let dh = f64::from(p[i]) - f64::from(m[i]);
        let fd = (gaussian_nll_loss(&p, &target, dim, lo, hi, None)
            - gaussian_nll_loss(&m, &target, dim, lo, hi, None))
            / dh;
        let g = f64::from(grad[i]);
        assert!(
            (fd - g).abs() < 1e-6 + 1e-4 * g.abs(),
            "output {i}: fd {fd} vs {g}"
        );
    }
    // The clamps keep the log-variance inside (min, max) and are ~identity well inside.
    let (lv, d) = soft_clamp_logvar(-5.0, -10.0, 0.5);
    assert!(
        (lv + 5.0).abs() < 0.03 && (d - 1.0).abs() < 0.03,
        "{lv} {d}"
    );
    // The lower clamp, applied last, can exceed max by softplus(min - max) = 2.75e-5 here.
    assert!(soft_clamp_logvar(50.0, -10.0, 0.5).0 <= 0.5 + 3e-5);
    assert!(soft_clamp_logvar(-50.0, -10.0, 0.5).0 >= -10.0);

    let width = 5; // MSE on the first 3 of 5 columns
    let pred = uniform(&mut r, rows * width);
    let mut g = vec![1.0; pred.len()];
    mse_loss(&pred, width, &target, dim, Some(&mut g));
    for i in 0..pred.len() {
        let (mut p, mut m) = (pred.clone(), pred.clone());
        p[i] += h;
        m[i] -= h;
        let dh = f64::from(p[i]) - f64::from(m[i]);
        let fd = (mse_loss(&p, width, &target, dim, None)
            - mse_loss(&m, width, &target, dim, None))
            / dh;
        assert!(
            (fd - f64::from(g[i])).abs() < 1e-6,
            "mse output {i}: fd {fd} vs {}",
            g[i]
        );
    }
}

/// Per-layer weight decay: with no loss gradient, each layer's weights shrink in magnitude by
/// its own factor's pull (none for a factor of 0) and the biases never decay.
#[test]
fn ensemble_weight_decay_is_per_layer_and_spares_biases() {
    let mut r = rng(9);
    let mut ens = EnsembleMlp::new(&CpuBackend, 2, &[3, 8, 2], Activation::Silu, &mut r);
    let before = ens.params();
    let mut opt = EnsembleAdam::new(&ens, 1e-3, &[0.5, 0.0]);
    for _ in 0..20 {
        ens.zero_grad();
        opt.step(&mut ens);
    }
    let after = ens.params();
    // Adam moves each weight by about lr per step, so 20 steps move it by at most ~0.02: a
    // weight that started further from 0 than that must have come closer to 0.
    let shrunk = |range: std::ops::Range<usize>| {
        before[range.clone()]
            .iter()
            .zip(&after[range])
            .filter(|(b, _)| b.abs() > 0.05)
            .all(|(b, a)| a.abs() < b.abs() && a.signum() == b.signum())
    };
    let same = |range: std::ops::Range<usize>| before[range.clone()] == after[range];
    assert!(shrunk(ens.layer_weight_range(0)));
    assert!(same(ens.layer_weight_range(1)));
    assert!(same(ens.layer_bias_range(0)) && same(ens.layer_bias_range(1)));
}

fn pendulum_batch(n: usize, seed: u64) -> Batch {
    let mut env = Pendulum::new();
    let mut r = rng(seed);
    let mut b = Batch::new(n, 3, 1);
    let mut obs = [0.0f32; 3];
    env.reset(Some(seed), &mut obs);
    for i in 0..n {
        let u = [r.random_range(-2.0f32..2.0)];
        let mut next = [0.0f32; 3];
        let out = env.step(&u, &mut next);
        b.obs[i * 3..(i + 1) * 3].copy_from_slice(&obs);
        b.act[i] = u[0];
        b.rew[i] = out.reward as f32;
        b.next_obs[i * 3..(i + 1) * 3].copy_from_slice(&next);
        obs = next;
        if out.truncated {
            env.reset(None, &mut obs);
        }
    }
    b
}

/// Output shapes, N=1 and N=7 paths, the known reward function used where it answers, the
/// model's reward where it does not.
#[test]
fn predict_shapes_and_known_reward_fn() {
    let data = pendulum_batch(300, 4);
    let env = Pendulum::new();
    for (n, e, head) in [
        (1, 1, ModelHead::Deterministic),
        (7, 5, ModelHead::Gaussian),
    ] {
        let cfg = ModelConfig {
            ensemble_size: n,
            elites: e,
            head,
            max_epochs: 3,
            hidden: vec![32, 32],
            weight_decay: vec![1e-5],
            ..ModelConfig::default()
        };
        let mut r = rng(5);
        let mut model = DynamicsModel::new(&CpuBackend, &cfg, 3, 1, &mut r).unwrap();
        model.train_on(&data, &mut r);
        assert_eq!(model.elites().len(), e);
        let b = 2500; // more than one internal chunk
        let obs: Vec<f32> = (0..b)
            .flat_map(|i| data.obs[(i % 300) * 3..][..3].to_vec())
            .collect();
        let act: Vec<f32> = (0..b).map(|i| data.act[i % 300]).collect();
        let (mut next, mut rew) = (vec![f32::NAN; b * 3], vec![f32::NAN; b]);
        model.predict_env(&obs, &act, b, &mut r, &env, &mut next, &mut rew);
        assert!(next.iter().all(|x| x.is_finite()));
        for i in 0..b {
            let want = env.reward_fn(&obs[i * 3..][..3], &act[i..=i], &next[i * 3..][..3]);
            assert_eq!(Some(rew[i]), want, "row {i}");
        }
        // A reward function that answers only where cos(th) > 0: other rows use the model.
        let f = |s: &[f32], _: &[f32], _: &[f32]| (s[0] > 0.0).then_some(1234.0);
        model.predict(&obs, &act, b, &mut r, Some(&f), &mut next, &mut rew);
        for i in 0..b {
            assert_eq!(rew[i] == 1234.0, obs[i * 3] > 0.0, "row {i}: {}", rew[i]);
        }
        assert_eq!(model.stats().predicted_rows, 2 * b as u64);
        assert!(model.stats().compute_seconds() > 0.0);
    }
}

#[test]
#[should_panic(expected = "no reward")]
fn predict_without_any_reward_source_panics() {
    let cfg = ModelConfig {
        predict_reward: false,
        hidden: vec![8],
        weight_decay: vec![],
        ..ModelConfig::default()
    };
    let mut r = rng(6);
    let mut model = DynamicsModel::new(&CpuBackend, &cfg, 3, 1, &mut r).unwrap();
    let (mut next, mut rew) = (vec![0.0; 3], vec![0.0; 1]);
    model.predict(
        &[1.0, 0.0, 0.0],
        &[0.0],
        1,
        &mut r,
        None,
        &mut next,
        &mut rew,
    );
}

/// A deterministic model's predictions survive a postcard round trip of its state exactly.
#[test]
fn state_round_trip() {
    let data = pendulum_batch(200, 7);
    let cfg = ModelConfig {
        ensemble_size: 3,
        elites: 2,
        max_epochs: 2,
        ..ModelConfig::default()
    };
    let mut r = rng(8);
    let mut model = DynamicsModel::new(&CpuBackend, &cfg, 3, 1, &mut r).unwrap();
    model.train_on(&data, &mut r);
    let bytes = postcard::to_stdvec(&model.state()).unwrap();
    let state: ModelState = postcard::from_bytes(&bytes).unwrap();
    let mut back = DynamicsModel::from_state(&CpuBackend, &state).unwrap();
    assert_eq!(back.elites(), model.elites());
    let (mut n1, mut r1, mut n2, mut r2) =
        (vec![0.0; 30], vec![0.0; 10], vec![0.0; 30], vec![0.0; 10]);
    let obs = &data.obs[..30];
    let act = &data.act[..10];
    model.predict(obs, act, 10, &mut rng(9), None, &mut n1, &mut r1);
    back.predict(obs, act, 10, &mut rng(9), None, &mut n2, &mut r2);
    assert_eq!((n1, r1), (n2, r2));
    let mut bad = state.clone();
    bad.params.pop();
    assert!(DynamicsModel::from_state(&CpuBackend, &bad).is_err());
}

#[test]
fn config_toml_defaults_and_validation() {
    let cfg: ModelConfig =
        toml::from_str("ensemble_size = 7\nelites = 5\nhead = \"gaussian\"").unwrap();
    assert_eq!(cfg, ModelConfig::default().mbpo_ensemble());
    assert!(
        toml::from_str::<ModelConfig>("ensemble = 7").is_err(),
        "unknown field accepted"
    );
    let bad = ModelConfig {
        elites: 8,
        ensemble_size: 7,
        ..ModelConfig::default()
    };
    assert!(bad.validate().unwrap_err().contains("elites"));
    let bad = ModelConfig {
        weight_decay: vec![0.0; 3],
        ..ModelConfig::default()
    };
    assert!(bad.validate().unwrap_err().contains("weight_decay"));
    let mbpo = ModelConfig {
        hidden: vec![200; 4],
        weight_decay: vec![2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4],
        ..ModelConfig::default()
    };
    assert!(mbpo.validate().is_ok());
}

/// Rollouts use elites only, each with probability 1/E per row (also for a batch of one row).
/// Members are made recognizable: zero weights and a constant output bias `c_k`, so a row's
/// predicted delta names its member; an evaluation-only retrain makes the two members with the
/// smallest `|c_k|` (closest to the normalized targets' mean 0) the elites.
#[test]
fn predict_draws_elites_uniformly() {
    let data = pendulum_batch(1000, 10);
    let cfg = ModelConfig {
        ensemble_size: 4,
        elites: 2,
        max_epochs: 0,
        hidden: vec![8],
        weight_decay: vec![],
        predict_reward: false,
        ..ModelConfig::default()
    };
    let mut r = rng(11);
    let mut model = DynamicsModel::new(&CpuBackend, &cfg, 3, 1, &mut r).unwrap();
    let c = [0.9f32, 0.0, 0.05, 1.5];
    for (k, ck) in c.iter().enumerate() {
        let n = model.ensemble().member_params(k).len();
        let mut p = vec![0.0; n];
        p[n - 3..].fill(*ck); // the output layer's bias comes last
        model.ensemble_mut().load_member_params(k, &p);
    }
    model.train_on(&data, &mut r);
    let mut elites = model.elites().to_vec();
    elites.sort_unstable();
    assert_eq!(elites, vec![1, 2]);
    let tn = model.state().target_norm;
    let member_of = |delta: f32| -> usize {
        let z = (delta - tn.mean[0]) / tn.std[0];
        let k = c.iter().position(|ck| (ck - z).abs() < 1e-3);
        k.unwrap_or_else(|| panic!("delta {delta} (z = {z}) is no member's"))
    };
    let zero = |_: &[f32], _: &[f32], _: &[f32]| Some(0.0);
    let mut counts = [0usize; 4];
    let n = 999; // odd: one group is padded
    let (mut next, mut rew) = (vec![0.0; n * 3], vec![0.0; n]);
    let (obs, act) = (&data.obs[..n * 3], &data.act[..n]);
    model.predict(obs, act, n, &mut r, Some(&zero), &mut next, &mut rew);
    for i in 0..n {
        counts[member_of(next[i * 3] - obs[i * 3])] += 1;
    }
    assert_eq!((counts[0], counts[3]), (0, 0));
    assert_eq!(counts[1] + counts[2], n);
    assert!(counts[1].abs_diff(counts[2]) <= 1, "{counts:?}");
    let mut single = [0usize; 4];
    for _ in 0..400 {
        let (mut nx, mut rw) = (vec![0.0; 3], vec![0.0; 1]);
        model.predict(
            &obs[..3],
            &act[..1],
            1,
            &mut r,
            Some(&zero),
            &mut nx,
            &mut rw,
        );
        single[member_of(nx[0] - obs[0])] += 1;
    }
    assert_eq!((single[0], single[3]), (0, 0));
    assert!((150..=250).contains(&single[1]), "one-row draws {single:?}");
}
