//! Timings of the nn core at SAC's sizes (2 x 256 hidden, batch 256), single-threaded.
//!
//! - `mlp_fwd_bwd_adam/*`: one training step of one network (forward, backward, Adam).
//! - `sac_update/*`: the network work of one SAC update on Pendulum shapes (obs 3, action 1):
//!   target actor + 2 target critics (inference), 2 critic steps, actor forward/backward through
//!   both critics' input gradients, actor step, 2 Polyak updates. `robust_sn` adds spectral
//!   norm on the critics and the robust loss's extra FGSM pass and second batch.

use criterion::{criterion_group, criterion_main, Criterion};
use keel_trainer::nn::{Activation, Adam, AdamConfig, Backprop, CpuBackend, Mlp, MlpConfig};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use std::hint::black_box;
use std::time::Duration;

const B: usize = 256;

fn mlp(sizes: &[usize], sn: bool, rng: &mut Pcg64) -> Mlp<CpuBackend> {
    let cfg = MlpConfig {
        sizes: sizes.to_vec(),
        hidden: Activation::Relu,
        output: Activation::Identity,
        spectral_norm: sn,
        spectral_norm_output: sn,
    };
    Mlp::new(&CpuBackend, &cfg, B, rng)
}

fn random(rng: &mut Pcg64, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn single(c: &mut Criterion) {
    let mut g = c.benchmark_group("mlp_fwd_bwd_adam");
    for (name, sizes, sn) in [
        ("4-256-256-1", [4, 256, 256, 1], false),
        ("4-256-256-1_sn", [4, 256, 256, 1], true),
        ("64-256-256-64", [64, 256, 256, 64], false),
    ] {
        let mut rng = Pcg64::seed_from_u64(0);
        let mut net = mlp(&sizes, sn, &mut rng);
        let mut opt = Adam::new(&net, AdamConfig::default());
        let x = random(&mut rng, B * sizes[0]);
        let dy = random(&mut rng, B * sizes[3]);
        g.bench_function(name, |b| {
            b.iter(|| {
                black_box(net.forward(&x, B));
                net.zero_grad();
                net.backward(&dy, B, false);
                opt.step(&mut net);
            })
        });
    }
    g.finish();
}

struct Sac {
    actor: Mlp<CpuBackend>,
    q: [Mlp<CpuBackend>; 2],
    q_targ: [Mlp<CpuBackend>; 2],
    actor_opt: Adam<CpuBackend>,
    q_opt: [Adam<CpuBackend>; 2],
    s: Vec<f32>,
    sa: Vec<f32>,
    dy: Vec<f32>,
    caches: [keel_trainer::nn::ForwardCache<CpuBackend>; 2],
}

impl Sac {
    fn new(sn: bool) -> Self {
        let mut rng = Pcg64::seed_from_u64(1);
        let actor = mlp(&[3, 256, 256, 2], false, &mut rng);
        let q = [
            mlp(&[4, 256, 256, 1], sn, &mut rng),
            mlp(&[4, 256, 256, 1], sn, &mut rng),
        ];
        let q_targ = q.clone();
        let caches = [q[0].new_cache(B), q[0].new_cache(B)];
        Self {
            actor_opt: Adam::new(&actor, AdamConfig::default()),
            q_opt: [
                Adam::new(&q[0], AdamConfig::default()),
                Adam::new(&q[1], AdamConfig::default()),
            ],
            actor,
            q,
            q_targ,
            s: random(&mut rng, B * 3),
            sa: random(&mut rng, B * 4),
            dy: random(&mut rng, B * 4),
            caches,
        }
    }

    fn update(&mut self, robust: bool) {
        let dq = &self.dy[..B];
        // Targets: next actions from the actor, then both target critics.
        black_box(self.actor.predict(&self.s, B));
        for t in &mut self.q_targ {
            black_box(t.predict(&self.sa, B));
        }
        // Critic steps.
        for (q, opt) in self.q.iter_mut().zip(&mut self.q_opt) {
            q.zero_grad();
            if robust {
                q.forward(&self.sa, B);
                black_box(q.input_grad_only(dq, B));
                let [c0, c1] = &mut self.caches;
                q.forward_with(c0, &self.sa, B);
                q.forward_with(c1, &self.dy, B);
                q.backward_with(c0, dq, B, Backprop::Params);
                q.backward_with(c1, dq, B, Backprop::Params);
            } else {
                q.forward(&self.sa, B);
                q.backward(dq, B, false);
            }
            opt.step(q);
        }
        // Actor step through dQ/da of both critics.
        self.actor.forward(&self.s, B);
        for q in &mut self.q {
            q.forward(&self.sa, B);
            black_box(q.input_grad_only(dq, B));
        }
        self.actor.zero_grad();
        self.actor.backward(&self.dy[..2 * B], B, false);
        self.actor_opt.step(&mut self.actor);
        for (t, q) in self.q_targ.iter_mut().zip(&self.q) {
            t.polyak_from(q, 0.005);
        }
    }
}

fn sac(c: &mut Criterion) {
    // KEEL_THREADS=2 splits large GEMMs across two cores (default: one).
    if let Some(n) = std::env::var("KEEL_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        keel_trainer::nn::threads::set_threads(n);
    }
    let mut g = c.benchmark_group("sac_update");
    for (name, sn, robust) in [("plain", false, false), ("robust_sn", true, true)] {
        let mut sac = Sac::new(sn);
        g.bench_function(name, |b| b.iter(|| sac.update(robust)));
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(40).measurement_time(Duration::from_secs(6));
    targets = single, sac
}
criterion_main!(benches);
