//! Optimizer, Polyak, clipping and end-to-end training tests.

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

use super::*;

fn small(
    sizes: &[usize],
    hidden: Activation,
    sn: bool,
    seed: u64,
    max_batch: usize,
) -> Mlp<CpuBackend> {
    let cfg = MlpConfig {
        sizes: sizes.to_vec(),
        hidden,
        output: Activation::Identity,
        spectral_norm: sn,
        spectral_norm_output: sn,
    };
    Mlp::new(
        &CpuBackend,
        &cfg,
        max_batch,
        &mut Pcg64::seed_from_u64(seed),
    )
}

/// PyTorch's Adam in f64, one tensor.
fn reference_adam(p: &mut [f64], g: &[f64], m: &mut [f64], v: &mut [f64], t: i32, wd: f64) {
    let (lr, b1, b2, eps) = (0.01, 0.9, 0.999, 1e-8);
    for i in 0..p.len() {
        let gi = g[i] + wd * p[i];
        m[i] = b1 * m[i] + (1.0 - b1) * gi;
        v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
        let denom = v[i].sqrt() / (1.0 - b2.powi(t)).sqrt() + eps;
        p[i] -= lr / (1.0 - b1.powi(t)) * m[i] / denom;
    }
}

#[test]
fn adam_matches_the_reference_formula() {
    let mut net = small(&[3, 4, 2], Activation::Tanh, false, 1, 1);
    let cfg = AdamConfig {
        lr: 0.01,
        weight_decay: WeightDecay::All(0.1),
        ..AdamConfig::default()
    };
    let mut opt = Adam::new(&net, cfg);
    let n = net.num_params();
    let mut p: Vec<f64> = net.params().iter().map(|&x| f64::from(x)).collect();
    let (mut m, mut v) = (vec![0.0; n], vec![0.0; n]);
    let mut r = Pcg64::seed_from_u64(2);
    for t in 1..=5 {
        let g: Vec<f32> = (0..n).map(|_| r.random_range(-1.0..1.0)).collect();
        net.grads_mut().copy_from_slice(&g);
        assert_eq!(opt.step(&mut net), None);
        let g: Vec<f64> = g.iter().map(|&x| f64::from(x)).collect();
        reference_adam(&mut p, &g, &mut m, &mut v, t, 0.1);
    }
    assert_eq!(opt.steps(), 5);
    for (a, b) in net.params().iter().zip(&p) {
        assert!((f64::from(*a) - b).abs() < 1e-6, "{a} vs {b}");
    }
}

#[test]
fn adam_converges_on_a_quadratic() {
    let mut net = small(&[4, 8, 3], Activation::Relu, false, 3, 1);
    let n = net.num_params();
    let target: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 13) as f32 / 6.0 - 1.0)
        .collect();
    let mut opt = Adam::new(
        &net,
        AdamConfig {
            lr: 0.02,
            ..AdamConfig::default()
        },
    );
    let loss = |p: &[f32]| {
        p.iter()
            .zip(&target)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f32>()
    };
    let start = loss(&net.params());
    for step in 0..3000 {
        if step == 2000 {
            opt.set_lr(0.002);
        }
        let g: Vec<f32> = net
            .params()
            .iter()
            .zip(&target)
            .map(|(p, t)| 2.0 * (p - t))
            .collect();
        net.grads_mut().copy_from_slice(&g);
        opt.step(&mut net);
    }
    let end = loss(&net.params());
    assert!(end < 1e-4 * start, "loss {start} -> {end}");
}

#[test]
fn per_layer_weight_decay_touches_only_its_tensors() {
    let mut net = small(&[3, 4, 4, 2], Activation::Relu, false, 4, 1);
    let before = net.params().to_vec();
    let cfg = AdamConfig {
        weight_decay: WeightDecay::PerLayer(vec![0.0, 1e-2, 0.0]),
        ..AdamConfig::default()
    };
    let mut opt = Adam::new(&net, cfg);
    net.zero_grad();
    opt.step(&mut net);
    let after = net.params().to_vec();
    let (w1, _) = net.layer_ranges(1);
    for i in 0..before.len() {
        if w1.contains(&i) {
            // Adam's first step moves every decayed weight by ~lr towards 0.
            assert!((before[i] - after[i]).abs() > 1e-4 && after[i].abs() < before[i].abs());
        } else {
            assert_eq!(before[i], after[i], "param {i} moved");
        }
    }
    let mut all = Adam::new(
        &net,
        AdamConfig {
            weight_decay: WeightDecay::All(1e-2),
            ..AdamConfig::default()
        },
    );
    let before = net.params().to_vec();
    all.step(&mut net);
    assert!(net.params().iter().zip(&before).all(|(a, b)| a != b));
}

#[test]
fn polyak_averaging_is_exact() {
    let online = small(&[3, 5, 2], Activation::Relu, false, 5, 1);
    let mut target = small(&[3, 5, 2], Activation::Relu, false, 6, 1);
    let t0 = target.params().to_vec();
    target.polyak_from(&online, 0.005);
    for ((t, t0), o) in target.params().iter().zip(&t0).zip(online.params().iter()) {
        assert_eq!(*t, 0.005 * o + 0.995 * t0);
    }
    target.polyak_from(&online, 1.0);
    assert_eq!(target.params(), online.params());
    let mut hard = small(&[3, 5, 2], Activation::Relu, false, 7, 1);
    hard.copy_from(&online);
    assert_eq!(hard.params(), online.params());
}

#[test]
fn gradient_clipping_rescales_the_global_norm() {
    let mut net = small(&[3, 5, 2], Activation::Relu, false, 8, 1);
    let n = net.num_params();
    let g: Vec<f32> = (0..n)
        .map(|i| if i % 2 == 0 { 1.0 } else { -2.0 })
        .collect();
    let norm = g.iter().map(|x| x * x).sum::<f32>().sqrt();
    net.grads_mut().copy_from_slice(&g);
    assert!((net.grad_norm() - norm).abs() < 1e-4);
    assert!((clip_grad_norm(&mut net, 2.0 * norm) - norm).abs() < 1e-4);
    assert_eq!(&net.grads()[..], &g[..], "below the limit: untouched");
    assert!((clip_grad_norm(&mut net, 1.0) - norm).abs() < 1e-4);
    assert!((net.grad_norm() - 1.0).abs() < 1e-5);
    for (a, b) in net.grads().iter().zip(&g) {
        assert!((a - b / norm).abs() < 1e-6);
    }
    // Through the optimizer: returns the pre-clip norm.
    net.grads_mut().copy_from_slice(&g);
    let mut opt = Adam::new(
        &net,
        AdamConfig {
            max_grad_norm: Some(0.5),
            ..AdamConfig::default()
        },
    );
    let reported = opt.step(&mut net).unwrap_or(0.0);
    assert!((reported - norm).abs() < 1e-4);
    assert!((net.grad_norm() - 0.5).abs() < 1e-5);
}

/// Fits y = scale (sin(2 x0) + x0 x1 - 0.5 x1^2) on [-1, 1]^2 with MSE; returns the mean loss
/// of the first and of the last 20 steps.
fn fit(net: &mut Mlp<CpuBackend>, steps: usize, lr: f32, scale: f32) -> (f32, f32) {
    let batch = 64;
    let mut rng = Pcg64::seed_from_u64(11);
    let mut opt = Adam::new(
        net,
        AdamConfig {
            lr,
            ..AdamConfig::default()
        },
    );
    let (mut x, mut t, mut dy) = (
        vec![0.0f32; batch * 2],
        vec![0.0f32; batch],
        vec![0.0f32; batch],
    );
    let (mut first, mut last) = (0.0, 0.0);
    for step in 0..steps {
        for (xi, ti) in x.chunks_exact_mut(2).zip(t.iter_mut()) {
            xi[0] = rng.random_range(-1.0..1.0);
            xi[1] = rng.random_range(-1.0..1.0);
            *ti = scale * ((2.0 * xi[0]).sin() + xi[0] * xi[1] - 0.5 * xi[1] * xi[1]);
        }
        let y = net.forward(&x, batch);
        let mut loss = 0.0;
        for ((d, y), t) in dy.iter_mut().zip(y).zip(&t) {
            loss += (y - t).powi(2) / batch as f32;
            *d = 2.0 * (y - t) / batch as f32;
        }
        net.zero_grad();
        net.backward(&dy, batch, false);
        opt.step(net);
        if step < 20 {
            first += loss / 20.0;
        }
        if step >= steps - 20 {
            last += loss / 20.0;
        }
    }
    (first, last)
}

#[test]
fn mlp_fits_a_small_regression() {
    for (k, act) in [
        Activation::Tanh,
        Activation::Relu,
        Activation::Silu,
        Activation::FastTanh,
    ]
    .into_iter()
    .enumerate()
    {
        let mut net = small(&[2, 32, 32, 1], act, false, 20 + k as u64, 64);
        let (first, last) = fit(&mut net, 1500, 3e-3, 1.0);
        assert!(last < first / 50.0, "{act:?}: loss {first} -> {last}");
    }
    // A spectrally normalized net is 1-Lipschitz: it fits the target scaled to Lipschitz < 1.
    let mut net = small(&[2, 64, 64, 1], Activation::Relu, true, 30, 64);
    let (first, last) = fit(&mut net, 1500, 3e-3, 0.25);
    assert!(last < first / 10.0, "spectral norm: loss {first} -> {last}");
}

/// Structural no-allocation check: after warm-up, a full update cycle (training forwards through
/// two caches, backward passes, input gradients, Adam with clipping, Polyak, inference) leaves
/// every buffer at the same address and capacity. (The `gemm` crate may allocate packing
/// buffers inside a call; nothing of ours does.)
#[test]
fn update_loop_reuses_preallocated_buffers() {
    let mut net = small(&[4, 32, 32, 1], Activation::Relu, true, 40, 16);
    let mut target = net.clone();
    let mut extra = net.new_cache(16);
    let cfg = AdamConfig {
        max_grad_norm: Some(1.0),
        weight_decay: WeightDecay::All(1e-4),
        ..AdamConfig::default()
    };
    let mut opt = Adam::new(&net, cfg);
    let x = vec![0.3f32; 64];
    let dy = vec![0.1f32; 16];
    let mut cycle = |net: &mut Mlp<CpuBackend>, target: &mut Mlp<CpuBackend>| {
        target.predict(&x, 16);
        net.forward(&x, 16);
        net.input_grad_only(&dy, 16);
        net.forward(&x, 16);
        net.forward_with(&mut extra, &x, 16);
        net.zero_grad();
        net.backward(&dy, 16, true);
        net.backward_with(&mut extra, &dy, 16, Backprop::Params);
        opt.step(net);
        target.polyak_from(net, 0.005);
    };
    cycle(&mut net, &mut target);
    let (a, b) = (net.buffer_fingerprint(), target.buffer_fingerprint());
    for _ in 0..10 {
        cycle(&mut net, &mut target);
    }
    assert_eq!(net.buffer_fingerprint(), a);
    assert_eq!(target.buffer_fingerprint(), b);
}
