//! Finite-difference checks of every backward pass, and the spectral-norm estimate against an SVD.
//!
//! The loss is `L = sum(c * y)` for a fixed random `c` (so `dy = c`), summed in f64 from the f32
//! outputs; parameters are perturbed in f32 and the step actually taken is used in the quotient.
//! Finite differences go through `predict`, which holds the spectral-norm vectors `u`, `v` fixed:
//! exactly the function whose gradient the backward pass computes.

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

use super::*;

fn rng(seed: u64) -> Pcg64 {
    Pcg64::seed_from_u64(seed)
}

fn random(rng: &mut Pcg64, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

fn cfg(sizes: &[usize], hidden: Activation, output: Activation, sn: bool) -> MlpConfig {
    MlpConfig {
        sizes: sizes.to_vec(),
        hidden,
        output,
        spectral_norm: sn,
        spectral_norm_output: sn,
    }
}

/// The loss, and which ReLU units are active (to detect steps across a kink).
fn loss(
    net: &mut Mlp<CpuBackend>,
    cache: &mut ForwardCache<CpuBackend>,
    x: &[f32],
    batch: usize,
    c: &[f32],
) -> (f64, Vec<bool>) {
    let y = net.predict_with(cache, x, batch);
    let l = y
        .iter()
        .zip(c)
        .map(|(&y, &c)| f64::from(y) * f64::from(c))
        .sum();
    let cfg = net.config();
    let active = (0..net.num_layers())
        .filter(|&i| cfg.activation(i) == Activation::Relu)
        .flat_map(|i| {
            cache.out[i][..batch * cfg.sizes[i + 1]]
                .iter()
                .map(|&v| v > 0.0)
        })
        .collect();
    (l, active)
}

/// Central difference of `f` in coordinate `i` of `v`, using the step actually representable;
/// `None` where the step switches a ReLU unit (a kink: no finite difference approximates the
/// analytic one-sided derivative there).
fn central(
    v: &mut [f32],
    i: usize,
    h: f32,
    mut f: impl FnMut(&[f32]) -> (f64, Vec<bool>),
) -> Option<f64> {
    let x0 = v[i];
    v[i] = x0 + h;
    let hp = f64::from(v[i]) - f64::from(x0);
    let (lp, ap) = f(v);
    v[i] = x0 - h;
    let hm = f64::from(x0) - f64::from(v[i]);
    let (lm, am) = f(v);
    v[i] = x0;
    (ap == am).then_some((lp - lm) / (hp + hm))
}

/// [`central`] over every coordinate; kinks (at most 5% of them) are replaced by `analytic`.
fn numeric_grad(
    v: &mut [f32],
    analytic: &[f32],
    h: f32,
    mut f: impl FnMut(&[f32]) -> (f64, Vec<bool>),
) -> Vec<f64> {
    let mut kinks = 0;
    let g: Vec<f64> = (0..v.len())
        .map(|i| {
            central(v, i, h, &mut f).unwrap_or_else(|| {
                kinks += 1;
                f64::from(analytic[i])
            })
        })
        .collect();
    assert!(
        kinks * 20 <= v.len(),
        "{kinks} of {} finite differences crossed a kink",
        v.len()
    );
    g
}

/// Relative error of the whole vector, and each element within `1e-3 + 1e-2 |.|`.
fn assert_close(analytic: &[f32], numeric: &[f64], what: &str) {
    assert_eq!(analytic.len(), numeric.len());
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for (i, (&a, &n)) in analytic.iter().zip(numeric).enumerate() {
        let a = f64::from(a);
        diff += (a - n).powi(2);
        norm += a * a + n * n;
        let tol = 1e-3 + 1e-2 * a.abs().max(n.abs());
        assert!(
            (a - n).abs() <= tol,
            "{what}[{i}]: analytic {a}, numeric {n}"
        );
    }
    let rel = diff.sqrt() / norm.sqrt().max(1e-9);
    assert!(rel < 2e-3, "{what}: relative error {rel}");
}

/// Checks parameter and input gradients of a network built from `cfg` on a random batch.
fn grad_check(cfg: &MlpConfig, batch: usize, seed: u64) {
    let mut r = rng(seed);
    let mut net = Mlp::new(&CpuBackend, cfg, batch, &mut r);
    let (nin, nout) = (net.in_dim(), net.out_dim());
    let mut x = random(&mut r, batch * nin, 1.5);
    let c = random(&mut r, batch * nout, 1.0);
    let y_train = net.forward(&x, batch).to_vec();
    net.zero_grad();
    net.backward(&c, batch, true);
    let gp = net.grads().to_vec();
    let gx = net.input_grad().to_vec();
    // The training forward (after its power-iteration step) and inference agree.
    let y_infer = net.predict(&x, batch).to_vec();
    for (a, b) in y_train.iter().zip(&y_infer) {
        assert!(
            (a - b).abs() <= 1e-5 * (1.0 + a.abs()),
            "train {a} vs predict {b}"
        );
    }

    let h = 1e-3;
    let mut params = net.params().to_vec();
    let mut cache = net.new_cache(batch);
    let num_p = numeric_grad(&mut params, &gp, h, |p| {
        net.load_params(p);
        loss(&mut net, &mut cache, &x, batch, &c)
    });
    net.load_params(&params);
    assert_close(&gp, &num_p, &format!("{cfg:?} param grad"));
    let num_x = numeric_grad(&mut x, &gx, h, |x| loss(&mut net, &mut cache, x, batch, &c));
    assert_close(&gx, &num_x, &format!("{cfg:?} input grad"));
}

const ACTS: [Activation; 5] = [
    Activation::Identity,
    Activation::Relu,
    Activation::Silu,
    Activation::Tanh,
    Activation::FastTanh,
];

#[test]
fn linear_layer_matches_closed_form_and_finite_differences() {
    let c = cfg(&[4, 3], Activation::Identity, Activation::Identity, false);
    grad_check(&c, 5, 1);
    // dW = dy^T x, db = sum_rows dy, dx = dy W.
    let mut r = rng(2);
    let mut net = Mlp::new(&CpuBackend, &c, 5, &mut r);
    let x = random(&mut r, 20, 1.0);
    let dy = random(&mut r, 15, 1.0);
    net.forward(&x, 5);
    net.zero_grad();
    net.backward(&dy, 5, true);
    let (w, _) = net.layer_weights(0);
    let w = w.to_vec();
    let g = net.grads().to_vec();
    for o in 0..3 {
        for i in 0..4 {
            let e: f32 = (0..5).map(|b| dy[b * 3 + o] * x[b * 4 + i]).sum();
            assert!((g[o * 4 + i] - e).abs() < 1e-5);
        }
        let e: f32 = (0..5).map(|b| dy[b * 3 + o]).sum();
        assert!((g[12 + o] - e).abs() < 1e-5);
    }
    let dx = net.input_grad();
    for b in 0..5 {
        for i in 0..4 {
            let e: f32 = (0..3).map(|o| dy[b * 3 + o] * w[o * 4 + i]).sum();
            assert!((dx[b * 4 + i] - e).abs() < 1e-5);
        }
    }
}

#[test]
fn every_activation_backward_matches_finite_differences() {
    for (k, act) in ACTS.into_iter().enumerate() {
        grad_check(&cfg(&[3, 6, 4], act, act, false), 4, 10 + k as u64);
    }
}

#[test]
fn deep_mlp_grads_match_finite_differences() {
    grad_check(
        &cfg(
            &[5, 16, 16, 3],
            Activation::Tanh,
            Activation::Identity,
            false,
        ),
        8,
        20,
    );
    grad_check(
        &cfg(&[5, 12, 12, 2], Activation::Relu, Activation::Tanh, false),
        6,
        21,
    );
    grad_check(
        &cfg(
            &[3, 10, 10, 10, 2],
            Activation::Silu,
            Activation::Identity,
            false,
        ),
        5,
        22,
    );
}

#[test]
fn spectral_norm_backward_matches_finite_differences() {
    grad_check(
        &cfg(&[4, 8, 6, 2], Activation::Tanh, Activation::Identity, true),
        6,
        30,
    );
    grad_check(
        &cfg(
            &[3, 10, 10, 1],
            Activation::Relu,
            Activation::Identity,
            true,
        ),
        7,
        31,
    );
    grad_check(
        &cfg(&[3, 5], Activation::Identity, Activation::Identity, true),
        4,
        32,
    );
}

#[test]
fn input_only_backward_leaves_param_grads_alone() {
    let mut r = rng(40);
    let c = cfg(&[3, 8, 2], Activation::Tanh, Activation::Identity, true);
    let mut net = Mlp::new(&CpuBackend, &c, 4, &mut r);
    let x = random(&mut r, 12, 1.0);
    let dy = random(&mut r, 8, 1.0);
    net.forward(&x, 4);
    net.zero_grad();
    let dx = net.input_grad_only(&dy, 4).to_vec();
    assert!(net.grads().iter().all(|&g| g == 0.0));
    net.backward(&dy, 4, true);
    assert_eq!(net.input_grad(), &dx[..]);
    assert!(net.grads().iter().any(|&g| g != 0.0));
}

/// SAC's actor loss: input gradients for a subset of rows (any order, with runs and gaps) equal
/// those rows of a full-batch input-only backward whose dy is zero elsewhere, for activations
/// with and without a cached pre-activation, with spectral norm on.
#[test]
fn input_grad_rows_equal_those_rows_of_the_full_batch() {
    for act in [Activation::Relu, Activation::Silu, Activation::Tanh] {
        let mut r = rng(45);
        let c = cfg(&[5, 16, 16, 2], act, Activation::Identity, true);
        let mut net = Mlp::new(&CpuBackend, &c, 12, &mut r);
        let mut sub = net.new_cache(12);
        let x = random(&mut r, 12 * 5, 1.0);
        let rows = [7usize, 0, 1, 2, 9, 11];
        let dy_rows = random(&mut r, rows.len() * 2, 1.0);
        let mut dy = vec![0.0; 12 * 2];
        for (i, &row) in rows.iter().enumerate() {
            dy[row * 2..row * 2 + 2].copy_from_slice(&dy_rows[i * 2..i * 2 + 2]);
        }
        net.forward(&x, 12);
        net.zero_grad();
        let full = net.input_grad_only(&dy, 12).to_vec();
        let part = net.input_grad_rows(&mut sub, &rows, &dy_rows).to_vec();
        assert!(net.grads().iter().all(|&g| g == 0.0), "{act:?}");
        for (i, &row) in rows.iter().enumerate() {
            assert_eq!(
                &part[i * 5..(i + 1) * 5],
                &full[row * 5..(row + 1) * 5],
                "{act:?} row {row}"
            );
        }
    }
}

#[test]
#[should_panic(expected = "outside the source's batch")]
fn input_grad_rows_rejects_a_row_outside_the_batch() {
    let mut r = rng(46);
    let c = cfg(&[3, 8, 1], Activation::Relu, Activation::Identity, false);
    let mut net = Mlp::new(&CpuBackend, &c, 8, &mut r);
    let mut sub = net.new_cache(8);
    net.forward(&random(&mut r, 4 * 3, 1.0), 4);
    net.input_grad_rows(&mut sub, &[1, 4], &[1.0, 1.0]);
}

/// The robust-loss pattern: two batches in two caches, two backward passes, one gradient.
#[test]
fn two_caches_accumulate_like_one_concatenated_batch() {
    let mut r = rng(50);
    let c = cfg(
        &[4, 16, 16, 1],
        Activation::Relu,
        Activation::Identity,
        true,
    );
    let mut net = Mlp::new(&CpuBackend, &c, 16, &mut r);
    let (x0, x1) = (random(&mut r, 32, 1.0), random(&mut r, 32, 1.0));
    let (d0, d1) = (random(&mut r, 8, 1.0), random(&mut r, 8, 1.0));
    let (mut c0, mut c1) = (net.new_cache(8), net.new_cache(8));
    let y0 = net.forward_with(&mut c0, &x0, 8).to_vec();
    let y1 = net.forward_with(&mut c1, &x1, 8).to_vec();
    net.zero_grad();
    net.backward_with(&mut c0, &d0, 8, Backprop::ParamsAndInput);
    net.backward_with(&mut c1, &d1, 8, Backprop::Params);
    let g_split = net.grads().to_vec();
    let dx0 = c0.input_grad().to_vec();

    let xs: Vec<f32> = x0.iter().chain(&x1).copied().collect();
    let ds: Vec<f32> = d0.iter().chain(&d1).copied().collect();
    let y = net.forward(&xs, 16).to_vec();
    assert_eq!(&y[..8], &y0[..]);
    assert_eq!(&y[8..], &y1[..]);
    net.zero_grad();
    net.backward(&ds, 16, true);
    for (a, b) in g_split.iter().zip(net.grads().iter()) {
        assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
    }
    for (a, b) in dx0.iter().zip(&net.input_grad()[..32]) {
        assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()));
    }
}

#[test]
#[should_panic(expected = "weights changed")]
fn backward_after_an_update_panics() {
    let mut r = rng(60);
    let mut net = Mlp::new(
        &CpuBackend,
        &cfg(&[2, 4, 1], Activation::Relu, Activation::Identity, false),
        4,
        &mut r,
    );
    let mut opt = Adam::new(&net, AdamConfig::default());
    net.forward(&[0.5; 8], 4);
    opt.step(&mut net);
    net.backward(&[1.0; 4], 4, false);
}

#[test]
#[should_panic(expected = "inference forward")]
fn backward_through_an_inference_cache_panics() {
    let mut r = rng(61);
    let mut net = Mlp::new(
        &CpuBackend,
        &cfg(&[2, 4, 1], Activation::Relu, Activation::Identity, false),
        4,
        &mut r,
    );
    let mut cache = net.new_cache(4);
    net.predict_with(&mut cache, &[0.5; 8], 4);
    net.backward_with(&mut cache, &[1.0; 4], 4, Backprop::Params);
}

#[test]
fn predict_leaves_training_cache_and_power_iteration_alone() {
    let mut r = rng(70);
    let c = cfg(&[3, 8, 1], Activation::Tanh, Activation::Identity, true);
    let mut net = Mlp::new(&CpuBackend, &c, 4, &mut r);
    let x = random(&mut r, 12, 1.0);
    let y = net.forward(&x, 4).to_vec();
    let sigma = net.spectral_sigma(0);
    for _ in 0..5 {
        net.predict(&random(&mut r, 6, 1.0), 2);
    }
    assert_eq!(net.spectral_sigma(0), sigma);
    assert_eq!(net.output(), &y[..]);
    net.backward(&[1.0; 4], 4, false); // still valid
                                       // A second training forward with unchanged parameters reuses the same W_sn...
    net.forward(&x, 4);
    assert_eq!(net.spectral_sigma(0), sigma);
    // ...and after a parameter change the first training forward advances it.
    net.params_mut()[0] += 0.5;
    net.predict(&x, 4);
    let after_predict = net.spectral_sigma(0);
    net.forward(&x, 4);
    assert_ne!(net.spectral_sigma(0), after_predict);
}

fn svd_top(w: &[f32], rows: usize, cols: usize) -> f64 {
    let m = nalgebra::DMatrix::from_row_slice(
        rows,
        cols,
        &w.iter().map(|&x| f64::from(x)).collect::<Vec<_>>(),
    );
    m.singular_values().max()
}

#[test]
fn power_iteration_sigma_converges_to_the_top_singular_value() {
    for (k, &(inp, out)) in [(30, 20), (64, 64), (5, 100), (256, 256)]
        .iter()
        .enumerate()
    {
        let mut r = rng(80 + k as u64);
        let c = cfg(
            &[inp, out],
            Activation::Identity,
            Activation::Identity,
            true,
        );
        let mut net = Mlp::new(&CpuBackend, &c, 1, &mut r);
        // Scale the weights so sigma is not ~1 by construction.
        net.params_mut().iter_mut().for_each(|p| *p *= 3.7);
        let (wr, _) = net.layer_ranges(0);
        let w = net.params()[wr].to_vec();
        let truth = svd_top(&w, out, inp);
        net.spectral_iterate(300);
        let est = f64::from(net.spectral_sigma(0).unwrap_or(0.0));
        assert!(
            (est - truth).abs() / truth < 2e-3,
            "{out}x{inp}: power iteration {est}, SVD {truth}"
        );
        let host = f64::from(top_singular_value(&w, out, inp));
        assert!(
            (host - truth).abs() / truth < 1e-5,
            "{out}x{inp}: host {host}, SVD {truth}"
        );
        // The exported W / sigma has spectral norm ~1.
        let (w_sn, _) = net.layer_weights(0);
        let s = svd_top(&w_sn, out, inp);
        assert!((s - 1.0).abs() < 2e-3, "{out}x{inp}: |W_sn| = {s}");
    }
}

#[test]
fn spectral_norm_net_is_close_to_1_lipschitz() {
    let mut r = rng(90);
    let c = cfg(
        &[3, 64, 64, 1],
        Activation::Relu,
        Activation::Identity,
        true,
    );
    let mut net = Mlp::new(&CpuBackend, &c, 1, &mut r);
    net.spectral_iterate(50);
    let norms = net.spectral_norms();
    for s in &norms {
        assert!((s - 1.0).abs() < 1e-2, "{norms:?}");
    }
    assert!(net.lipschitz_bound() < 1.03);
    let mut plain = Mlp::new(
        &CpuBackend,
        &MlpConfig {
            spectral_norm: false,
            spectral_norm_output: false,
            ..c
        },
        1,
        &mut r,
    );
    let bound = plain.lipschitz_bound();
    let expected: f32 = plain.spectral_norms().iter().product();
    assert!((bound - expected).abs() < 1e-5 * expected);
}
