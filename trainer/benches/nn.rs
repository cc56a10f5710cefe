//! Timings of the nn core at SAC's sizes (2 x 256 hidden, batch 256).
//!
//! - `mlp_fwd_bwd_adam/*`: one training step of one network (forward, backward, Adam).
//! - `sac_update/*`: one `SacLearner::update` at SB3's sizes on Pendulum shapes (obs 3,
//!   action 1): targets, both critic steps, the actor and temperature steps, Polyak updates.
//!   `robust_sn` adds spectral norm on the critics and the robust term on 32 rows (MBPO's
//!   defaults). `KEEL_THREADS=2` gives it two threads, `KEEL_MATMUL=bf16` bf16 products (AMX).
//! - `gemm/*`: one 256x256x256 product in each storage order the MLP passes use (forward
//!   `X W^T`, input gradient `dZ W`, weight gradient `dZ^T X`), f32 and, on AMX CPUs, bf16.

use criterion::{criterion_group, criterion_main, Criterion};
use keel_trainer::config::{LipschitzChoice, LipschitzConfig, SacConfig};
use keel_trainer::nn::{
    bf16, Activation, Adam, AdamConfig, Backend, CpuBackend, Mat, MatMut, Mlp, MlpConfig,
};
use keel_trainer::replay::Batch;
use keel_trainer::sac::SacLearner;
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

/// A `SacLearner` at SB3's sizes on Pendulum shapes with a fixed random batch.
struct Sac {
    learner: SacLearner,
    batch: Batch,
    rng: Pcg64,
    robust_rows: std::ops::Range<usize>,
}

impl Sac {
    fn new(sn_robust: bool) -> Self {
        let mut rng = Pcg64::seed_from_u64(1);
        let cfg = SacConfig {
            actor_hidden: vec![256, 256],
            critic_hidden: vec![256, 256],
            batch_size: B,
            ..SacConfig::for_env("pendulum")
        };
        let mut lip = LipschitzConfig::default();
        lip.set_choice(if sn_robust {
            LipschitzChoice::SnRobust
        } else {
            LipschitzChoice::None
        });
        let learner = SacLearner::new(&cfg, &lip, 3, &[-2.0], &[2.0], &mut rng);
        let mut batch = Batch::new(B, 3, 1);
        batch.obs = random(&mut rng, B * 3);
        batch.act = random(&mut rng, B);
        batch.rew = random(&mut rng, B);
        batch.next_obs = random(&mut rng, B * 3);
        batch.done = vec![0.0; B];
        // MBPO's default: the robust term on 32 model rows of the batch.
        let robust_rows = if sn_robust {
            B - lip.robust_rows..B
        } else {
            0..0
        };
        Self {
            learner,
            batch,
            rng,
            robust_rows,
        }
    }

    fn update(&mut self) {
        self.learner
            .update(&self.batch, &mut self.rng, self.robust_rows.clone());
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
    if std::env::var("KEEL_MATMUL").is_ok_and(|v| v == "bf16") {
        bf16::set_enabled(true).expect("KEEL_MATMUL=bf16");
    }
    let mut g = c.benchmark_group("sac_update");
    for (name, sn_robust) in [("plain", false), ("robust_sn", true)] {
        let mut sac = Sac::new(sn_robust);
        g.bench_function(name, |b| b.iter(|| sac.update()));
    }
    g.finish();
}

fn gemm(c: &mut Criterion) {
    let mut g = c.benchmark_group("gemm");
    let mut rng = Pcg64::seed_from_u64(1);
    let (a, b) = (random(&mut rng, B * B), random(&mut rng, B * B));
    let mut out = vec![0.0f32; B * B];
    let modes: &[bool] = if bf16::available() {
        &[false, true]
    } else {
        eprintln!("gemm/bf16_*: skipped, this CPU has no AMX bf16");
        &[false]
    };
    for &on in modes {
        for (order, ta, tb) in [
            ("xwt", false, true),
            ("dzw", false, false),
            ("dztx", true, false),
        ] {
            let name = format!("{}_{order}", if on { "bf16" } else { "f32" });
            g.bench_function(name, |bench| {
                bf16::set_enabled(on).unwrap();
                bench.iter(|| {
                    let (am, bm) = (Mat::new(&a, 0, B, B), Mat::new(&b, 0, B, B));
                    let am = if ta { am.t() } else { am };
                    let bm = if tb { bm.t() } else { bm };
                    CpuBackend.gemm(1.0, am, bm, 0.0, MatMut::new(&mut out, 0, B, B));
                    black_box(&out);
                });
                bf16::set_enabled(false).unwrap();
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(40).measurement_time(Duration::from_secs(6));
    targets = single, sac, gemm
}
criterion_main!(benches);
