//! Training tests: fitting known systems, elite selection, early stopping, and the retrain
//! timing on Pendulum (ignored by default: run it with `--ignored --nocapture`).

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rand_pcg::Pcg64;

use super::*;
use crate::env::{Env, Pendulum};
use crate::nn::CpuBackend;
use crate::replay::{Batch, ReplayBuffer};

const A: [[f32; 3]; 3] = [[0.9, 0.1, 0.0], [-0.2, 0.8, 0.1], [0.0, 0.3, 0.7]];
const BU: [f32; 3] = [0.0, 0.5, -0.3];

/// `n` transitions of `x' = A x + B u + noise * N(0, I)` with reward `-|x|^2`.
fn linear_batch(n: usize, noise: f32, seed: u64) -> Batch {
    let mut r = Pcg64::seed_from_u64(seed);
    let mut b = Batch::new(n, 3, 1);
    for i in 0..n {
        let x: [f32; 3] = std::array::from_fn(|_| r.random_range(-2.0..2.0));
        let u: f32 = r.random_range(-1.0..1.0);
        for j in 0..3 {
            let eps: f32 = StandardNormal.sample(&mut r);
            let ax: f32 = (0..3).map(|c| A[j][c] * x[c]).sum();
            b.next_obs[i * 3 + j] = ax + BU[j] * u + noise * eps;
        }
        b.obs[i * 3..(i + 1) * 3].copy_from_slice(&x);
        b.act[i] = u;
        b.rew[i] = -x.iter().map(|v| v * v).sum::<f32>();
    }
    b
}

/// Mean absolute error of the model's next state and reward against the noiseless system.
fn errors(model: &mut DynamicsModel, test: &Batch, rng: &mut Pcg64) -> (f32, f32) {
    let n = test.size;
    let (mut next, mut rew) = (vec![0.0; n * 3], vec![0.0; n]);
    model.predict(&test.obs, &test.act, n, rng, None, &mut next, &mut rew);
    let e_s = next
        .iter()
        .zip(&test.next_obs)
        .map(|(a, b)| (a - b).abs())
        .sum::<f32>()
        / (3 * n) as f32;
    let e_r = rew
        .iter()
        .zip(&test.rew)
        .map(|(a, b)| (a - b).abs())
        .sum::<f32>()
        / n as f32;
    (e_s, e_r)
}

/// A deterministic model learns `x' = A x + B u` (state std ~1.2) and the quadratic reward
/// (std ~3.5) to small error.
#[test]
fn fits_linear_system() {
    let (train, test) = (linear_batch(2000, 0.0, 1), linear_batch(500, 0.0, 2));
    let cfg = ModelConfig {
        max_epochs: 60,
        patience: 10,
        ..ModelConfig::default()
    };
    let mut r = Pcg64::seed_from_u64(3);
    let mut model = DynamicsModel::new(&CpuBackend, &cfg, 3, 1, &mut r).unwrap();
    let s = model.train_on(&train, &mut r).clone();
    let (e_s, e_r) = errors(&mut model, &test, &mut r);
    println!(
        "linear fit: {} epochs, holdout mse {:.2e}, |err| state {e_s:.4} reward {e_r:.4}",
        s.epochs, s.holdout_mse
    );
    assert!(e_s < 0.03, "state error {e_s}");
    assert!(e_r < 0.1, "reward error {e_r}");
    assert!(s.holdout_mse < 1e-3, "{s:?}");
}

/// The Gaussian head learns the noise level: the spread of sampled next states has a std
/// within 25% of the true 0.1, and the average of 16 samples is close to the noiseless system.
#[test]
fn gaussian_head_learns_noise_level() {
    let noise = 0.1;
    let (train, test) = (linear_batch(3000, noise, 4), linear_batch(400, 0.0, 5));
    let cfg = ModelConfig {
        head: ModelHead::Gaussian,
        predict_reward: false,
        max_epochs: 60,
        patience: 10,
        ..ModelConfig::default()
    };
    let mut r = Pcg64::seed_from_u64(6);
    let mut model = DynamicsModel::new(&CpuBackend, &cfg, 3, 1, &mut r).unwrap();
    model.train_on(&train, &mut r);
    let (n, k) = (test.size, 16);
    let zero = |_: &[f32], _: &[f32], _: &[f32]| Some(0.0);
    let (mut s, mut rew) = (vec![0.0; n * 3], vec![0.0; n]);
    let (mut sum, mut sq) = (vec![0.0f64; n * 3], vec![0.0f64; n * 3]);
    for _ in 0..k {
        model.predict(
            &test.obs,
            &test.act,
            n,
            &mut r,
            Some(&zero),
            &mut s,
            &mut rew,
        );
        for ((a, b), x) in sum.iter_mut().zip(sq.iter_mut()).zip(&s) {
            *a += f64::from(*x);
            *b += f64::from(*x).powi(2);
        }
    }
    let kf = k as f64;
    let var: f64 = sum
        .iter()
        .zip(&sq)
        .map(|(a, b)| b / kf - (a / kf).powi(2))
        .sum::<f64>();
    let spread = (var / (n * 3) as f64 * kf / (kf - 1.0)).sqrt() as f32;
    let err: f64 = sum
        .iter()
        .zip(&test.next_obs)
        .map(|(a, t)| (a / kf - f64::from(*t)).powi(2))
        .sum();
    let bias = (err / (n * 3) as f64).sqrt() as f32;
    println!("gaussian: sample std {spread:.4} (true {noise}), rms error of the {k}-sample mean {bias:.4}");
    assert!(
        (spread - noise).abs() < 0.25 * noise,
        "sampled std {spread}"
    );
    // Sampling alone contributes 0.1 / 4 = 0.025.
    assert!(bias < 0.04, "mean error {bias}");
}

/// With learning switched off, a retrain only evaluates: the elites must be the members
/// with the lowest holdout MSE, here the two loaded with a well-trained network.
#[test]
fn elites_are_best_holdout_members() {
    let data = linear_batch(1000, 0.0, 7);
    let mut r = Pcg64::seed_from_u64(8);
    let single = ModelConfig {
        max_epochs: 40,
        ..ModelConfig::default()
    };
    let mut good = DynamicsModel::new(&CpuBackend, &single, 3, 1, &mut r).unwrap();
    good.train_on(&data, &mut r);
    let trained = good.ensemble().member_params(0);
    let cfg = ModelConfig {
        ensemble_size: 5,
        elites: 2,
        lr: 0.0,
        max_epochs: 3,
        ..single.clone()
    };
    let mut model = DynamicsModel::new(&CpuBackend, &cfg, 3, 1, &mut r).unwrap();
    for k in [1, 3] {
        model.ensemble_mut().load_member_params(k, &trained);
    }
    let s = model.train_on(&data, &mut r).clone();
    let mut elites = model.elites().to_vec();
    elites.sort_unstable();
    assert_eq!(elites, vec![1, 3], "{:?}", s.holdout_mse_members);
    let worst_elite = model
        .elites()
        .iter()
        .map(|&k| s.holdout_mse_members[k])
        .fold(0.0, f32::max);
    for k in [0, 2, 4] {
        assert!(s.holdout_mse_members[k] > worst_elite);
    }
    // Normal training: elites are still the argmin of the recorded holdout losses.
    let cfg = ModelConfig {
        ensemble_size: 5,
        elites: 3,
        max_epochs: 10,
        ..single
    };
    let mut model = DynamicsModel::new(&CpuBackend, &cfg, 3, 1, &mut r).unwrap();
    let s = model.train_on(&data, &mut r).clone();
    let mut order: Vec<usize> = (0..5).collect();
    order.sort_by(|&a, &b| s.holdout_mse_members[a].total_cmp(&s.holdout_mse_members[b]));
    assert_eq!(model.elites(), &order[..3]);
}

/// Early stopping restores the best weights: (1) a retrain whose every epoch is worse than the
/// starting weights (an absurd learning rate) stops after `patience` epochs (or runs them all
/// when `patience >= max_epochs`) and leaves the parameters exactly as they were; (2) after a
/// normal retrain the holdout MSE of the final weights equals the best recorded one, not the
/// last epoch's.
#[test]
fn early_stopping_restores_best_weights() {
    let data = linear_batch(800, 0.0, 9);
    let mut r = Pcg64::seed_from_u64(10);
    let cfg = ModelConfig {
        max_epochs: 30,
        patience: 4,
        ensemble_size: 2,
        elites: 1,
        ..ModelConfig::default()
    };
    let mut model = DynamicsModel::new(&CpuBackend, &cfg, 3, 1, &mut r).unwrap();
    model.train_on(&data, &mut r);
    let before = model.ensemble().params();
    let mut state = model.state();
    state.config.lr = 0.5;
    let mut wild2 = DynamicsModel::from_state(&CpuBackend, &state).unwrap();
    let s = wild2.train_on(&data, &mut r).clone();
    assert_eq!(s.epochs, 4, "{s:?}");
    assert!(
        s.holdout_curve[1..].iter().all(|&c| c > s.holdout_curve[0]),
        "{:?}",
        s.holdout_curve
    );
    assert_eq!(wild2.ensemble().params(), before, "weights not restored");
    // (1b) With patience >= max_epochs every epoch runs (early stopping off), and the best
    // weights are still the ones kept.
    state.config.patience = state.config.max_epochs;
    let mut wild3 = DynamicsModel::from_state(&CpuBackend, &state).unwrap();
    assert_eq!(wild3.train_on(&data, &mut r).epochs, 30);
    assert_eq!(wild3.ensemble().params(), before, "weights not restored");
    // (2) A fresh model with a mildly too high learning rate: record and check.
    let cfg = ModelConfig {
        lr: 2e-2,
        max_epochs: 40,
        patience: 3,
        ..ModelConfig::default()
    };
    let mut m = DynamicsModel::new(&CpuBackend, &cfg, 3, 1, &mut r).unwrap();
    let s = m.train_on(&data, &mut r).clone();
    let now = m.holdout_mse_members()[0];
    assert_eq!(now, s.holdout_mse_members[0]);
    let best = s
        .holdout_curve
        .iter()
        .copied()
        .fold(f32::INFINITY, f32::min);
    assert!(
        now <= best * 1.0001,
        "restored {now}, best seen {best}: {:?}",
        s.holdout_curve
    );
    println!("curve {:?}", s.holdout_curve);
}

/// `n` Pendulum transitions under uniformly random torques, episodes of 200 steps.
fn pendulum_buffer(n: usize, seed: u64) -> ReplayBuffer {
    let mut env = Pendulum::new();
    let mut r = Pcg64::seed_from_u64(seed);
    let mut buf = ReplayBuffer::new(n, 3, 1);
    let mut obs = [0.0f32; 3];
    env.reset(Some(seed), &mut obs);
    for _ in 0..n {
        let u = [r.random_range(-2.0f32..2.0)];
        let mut next = [0.0f32; 3];
        let out = env.step(&u, &mut next);
        buf.push(&obs, &u, out.reward as f32, &next, out.terminated);
        obs = next;
        if out.truncated {
            env.reset(None, &mut obs);
        }
    }
    buf
}

/// Retrain cost on 1000 Pendulum transitions (a fresh model, the worst case: warm retrains
/// stop earlier) for the default single model, MBPO's ensemble (7/5 Gaussian) at the default
/// width, and MBPO's 4x200 size; plus the cost of predicting 10k rows. Reports, asserts only
/// that the single model fits well.
#[test]
#[ignore = "timing report: cargo test -p keel-trainer --release model::tests_train::timing -- --ignored --nocapture"]
fn timing_pendulum_retrain() {
    let buf = pendulum_buffer(1000, 11);
    let test = pendulum_buffer(2000, 12);
    let mbpo_size = ModelConfig {
        hidden: vec![200; 4],
        weight_decay: vec![2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4],
        ..ModelConfig::default()
    };
    let small = ModelConfig {
        hidden: vec![64, 64, 64],
        ..ModelConfig::default()
    };
    let runs = [
        ("single 3x128 det", ModelConfig::default()),
        (
            "ensemble 7/5 3x128 gauss",
            ModelConfig::default().mbpo_ensemble(),
        ),
        ("single 3x64 det", small.clone()),
        ("ensemble 7/5 3x64 gauss", small.mbpo_ensemble()),
        ("single 4x200 det", mbpo_size.clone()),
        ("ensemble 7/5 4x200 gauss", mbpo_size.mbpo_ensemble()),
    ];
    let env = Pendulum::new();
    for (name, base) in runs {
        let cfg = ModelConfig {
            predict_reward: false,
            ..base
        };
        let mut r = Pcg64::seed_from_u64(13);
        let mut model = DynamicsModel::new(&CpuBackend, &cfg, 3, 1, &mut r).unwrap();
        let t = Instant::now();
        let s = model.train(&buf, &mut r).clone();
        let first = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let s2 = model.train(&buf, &mut r).clone();
        let warm = t.elapsed().as_secs_f64();
        let n = 10_000;
        let mut tb = Batch::new(n, 3, 1);
        (0..n).for_each(|i| test.copy_into(i % test.len(), &mut tb, i));
        let (mut next, mut rew) = (vec![0.0; n * 3], vec![0.0; n]);
        let t = Instant::now();
        model.predict_env(&tb.obs, &tb.act, n, &mut r, &env, &mut next, &mut rew);
        let pred = t.elapsed().as_secs_f64();
        let mae = next
            .iter()
            .zip(&tb.next_obs)
            .map(|(a, b)| (a - b).abs())
            .sum::<f32>()
            / (3 * n) as f32;
        println!(
            "{name:>26}: fresh retrain {first:.3}s ({} epochs, holdout mse {:.2e}), warm retrain \
             {warm:.3}s ({} epochs), predict 10k rows {pred:.4}s, test |err| {mae:.4}",
            s.epochs, s.holdout_mse, s2.epochs
        );
        if name == "single 3x128 det" {
            assert!(mae < 0.02, "{mae}");
        }
    }
}

/// Overhead of the batched layout (rank-1 bias GEMMs, one activation pass over all members)
/// for N = 1 against `nn::Mlp` on the same forward + backward (256 rows, 4-129-128-128-3).
#[test]
#[ignore = "timing report: run with --ignored --nocapture"]
fn timing_ensemble_vs_mlp() {
    use crate::nn::{Activation, Mlp, MlpConfig};
    let sizes = [4, 128, 128, 128, 3];
    let mut r = Pcg64::seed_from_u64(14);
    let (rows, iters) = (256, 2000);
    let x: Vec<f32> = (0..rows * 4).map(|_| r.random_range(-1.0..1.0)).collect();
    let dy: Vec<f32> = (0..rows * 3).map(|_| r.random_range(-1.0..1.0)).collect();
    let cfg = MlpConfig {
        sizes: sizes.to_vec(),
        hidden: Activation::Silu,
        output: Activation::Identity,
        spectral_norm: false,
        spectral_norm_output: false,
    };
    let mut mlp = Mlp::new(&CpuBackend, &cfg, rows, &mut r);
    let t = Instant::now();
    for _ in 0..iters {
        mlp.forward(&x, rows);
        mlp.zero_grad();
        mlp.backward(&dy, rows, false);
    }
    let t_mlp = t.elapsed().as_secs_f64() / iters as f64;
    for n in [1usize, 7] {
        let mut ens = EnsembleMlp::new(&CpuBackend, n, &sizes, Activation::Silu, &mut r);
        let mut cache = ens.new_cache(rows);
        let all: Vec<usize> = (0..n).collect();
        let xs: Vec<f32> = x.iter().cycle().take(n * x.len()).copied().collect();
        let dys: Vec<f32> = dy.iter().cycle().take(n * dy.len()).copied().collect();
        let t = Instant::now();
        for _ in 0..iters / n {
            ens.forward(&mut cache, &xs, rows, &all, false);
            ens.zero_grad();
            ens.backward(&mut cache, &dys);
        }
        let t_ens = t.elapsed().as_secs_f64() / (iters / n) as f64;
        println!(
            "fwd+bwd 256 rows: nn::Mlp {:.1} us, EnsembleMlp N={n} {:.1} us ({:.1} us per member)",
            t_mlp * 1e6,
            t_ens * 1e6,
            t_ens * 1e6 / n as f64
        );
    }
}
