//! One network training step (forward, backward, Adam) on the CPU backend and on the CUDA
//! backend, at SAC's critic size and at the larger batches of model training and model rollouts.
//! Prints a markdown table of medians and the CPU/GPU ratio. Without a usable device it prints
//! why and runs the CPU column alone.
//!
//! `cargo run --release -p keel-trainer --features cuda --example cuda_vs_cpu`
//! (`KEEL_THREADS=N` sets the CPU backend's threads; the step goes through `Mlp`'s host-slice
//! API, so each GPU step includes uploading the input and the output gradient and downloading the
//! output: what the trainer would pay today.)

use std::time::Instant;

use keel_trainer::nn::cuda;
use keel_trainer::nn::{
    threads, Activation, Adam, AdamConfig, Backend, CpuBackend, Mlp, MlpConfig,
};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

/// Timed blocks per case; the median block is reported.
const BLOCKS: usize = 9;

/// (name, layer sizes, spectral norm, batch, steps per block).
const CASES: [(&str, [usize; 4], bool, usize, usize); 6] = [
    ("critic 4-256-256-1", [4, 256, 256, 1], false, 256, 20),
    ("critic 4-256-256-1 sn", [4, 256, 256, 1], true, 256, 20),
    ("model 5-200-200-8", [5, 200, 200, 8], false, 256, 20),
    ("model 5-200-200-8", [5, 200, 200, 8], false, 4096, 5),
    ("critic 4-256-256-1", [4, 256, 256, 1], false, 32768, 2),
    ("wide 64-1024-1024-64", [64, 1024, 1024, 64], false, 4096, 2),
];

/// Median seconds per training step of `sizes` at `batch` on backend `b`.
fn step_time<B: Backend>(b: &B, sizes: [usize; 4], sn: bool, batch: usize, steps: usize) -> f64 {
    let cfg = MlpConfig {
        sizes: sizes.to_vec(),
        hidden: Activation::Relu,
        output: Activation::Identity,
        spectral_norm: sn,
        spectral_norm_output: sn,
    };
    let mut rng = Pcg64::seed_from_u64(0);
    let mut net = Mlp::new(b, &cfg, batch, &mut rng);
    let mut opt = Adam::new(&net, AdamConfig::default());
    let x: Vec<f32> = (0..batch * sizes[0])
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let dy: Vec<f32> = (0..batch * sizes[3])
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let mut step = |net: &mut Mlp<B>| {
        std::hint::black_box(net.forward(&x, batch));
        net.zero_grad();
        net.backward(&dy, batch, false);
        opt.step(net);
    };
    // Warm-up (first launches, cuBLAS heuristics, page faults).
    for _ in 0..3 {
        step(&mut net);
    }
    let mut blocks: Vec<f64> = (0..BLOCKS)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..steps {
                step(&mut net);
            }
            // Reading the parameters waits for every queued kernel.
            std::hint::black_box(net.params().len());
            t.elapsed().as_secs_f64() / steps as f64
        })
        .collect();
    blocks.sort_by(f64::total_cmp);
    blocks[BLOCKS / 2]
}

fn main() {
    if let Some(n) = std::env::var("KEEL_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        threads::set_threads(n);
    }
    let gpu = match cuda::probe() {
        Ok(g) => {
            println!("device: {}", g.device_name());
            Some(g)
        }
        Err(why) => {
            println!("no CUDA device: {why}; CPU column only");
            None
        }
    };
    println!("cpu backend threads: {}", threads::threads());
    println!();
    println!("| network | batch | CPU ms/step | GPU ms/step | CPU / GPU |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (name, sizes, sn, batch, steps) in CASES {
        let cpu = step_time(&CpuBackend, sizes, sn, batch, steps);
        let (gpu_ms, ratio) = match &gpu {
            Some(g) => {
                let t = step_time(g, sizes, sn, batch, steps);
                (format!("{:.3}", t * 1e3), format!("{:.1}", cpu / t))
            }
            None => ("-".into(), "-".into()),
        };
        println!(
            "| {name} | {batch} | {:.3} | {gpu_ms} | {ratio} |",
            cpu * 1e3
        );
    }
}
