//! Plugging your own plant into Keel: a DC motor speed loop.
//!
//! Anything that implements [`keel_trainer::env::Env`] can be trained on. This example models a
//! small brushed DC motor driven by a voltage, asked to track a speed set-point drawn at each
//! reset, steps it with a few fixed policies to show the API, then trains a controller for it
//! with `keel_trainer::train::train_with_env` and writes `runs/dc-motor/policy.keel`, ready for
//! the runtime and the firmware.
//!
//! Run: `cargo run -p keel-trainer --release --example custom_plant [STEPS]`
use keel_trainer::config::{Algo, TrainConfig};
use keel_trainer::env::{Env, StepOutcome};
use keel_trainer::train::train_with_env;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

/// Armature resistance (ohm), inductance (H), torque = back-EMF constant (N m / A = V s / rad),
/// rotor inertia (kg m^2), viscous friction (N m s / rad).
const R: f64 = 1.0;
const L: f64 = 0.5e-3;
const K: f64 = 0.01;
const J: f64 = 1.0e-5;
const B: f64 = 1.0e-6;
/// Supply voltage: the action bound.
const V_MAX: f32 = 12.0;
/// One control period (5 ms, a 200 Hz loop), integrated in 50 Euler sub-steps: explicit Euler on
/// the current needs a step well under the electrical time constant L/R = 0.5 ms.
const DT: f64 = 5.0e-3;
const SUBSTEPS: usize = 50;
/// Observation scales: speeds in krad/s, current in units of 10 A, so inputs are O(1).
const SPEED_SCALE: f64 = 1000.0;
const CURRENT_SCALE: f64 = 10.0;
/// Episode: 1 s.
const STEPS: usize = 200;

/// The motor's state: speed `omega` (rad/s), current `i` (A), and the set-point to track.
#[derive(Clone, Debug)]
struct DcMotor {
    omega: f64,
    i: f64,
    target: f64,
    steps: usize,
    rng: Pcg64,
}

impl DcMotor {
    fn new() -> Self {
        Self {
            omega: 0.0,
            i: 0.0,
            target: 500.0,
            steps: 0,
            rng: Pcg64::seed_from_u64(0),
        }
    }

    fn observe(&self, obs: &mut [f32]) {
        let o = [
            self.omega / SPEED_SCALE,
            self.target / SPEED_SCALE,
            self.i / CURRENT_SCALE,
        ];
        for (dst, src) in obs.iter_mut().zip(o) {
            *dst = src as f32;
        }
    }
}

/// Tracking error squared (in krad/s) plus a small voltage cost; a function of observations, so
/// the model-based trainer does not have to learn it.
fn reward(next_obs: &[f32], action: f32) -> f32 {
    let err = next_obs.first().copied().unwrap_or(0.0) - next_obs.get(1).copied().unwrap_or(0.0);
    let u = action.clamp(-V_MAX, V_MAX) / V_MAX;
    -(err * err) - 0.01 * u * u
}

impl Env for DcMotor {
    fn id(&self) -> &str {
        "dc-motor"
    }
    fn obs_dim(&self) -> usize {
        3
    }
    fn act_dim(&self) -> usize {
        1
    }
    fn action_low(&self) -> &[f32] {
        &[-V_MAX]
    }
    fn action_high(&self) -> &[f32] {
        &[V_MAX]
    }
    fn max_episode_steps(&self) -> usize {
        STEPS
    }

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) {
        if let Some(s) = seed {
            self.rng = Pcg64::seed_from_u64(s);
        }
        self.omega = 0.0;
        self.i = 0.0;
        self.target = self.rng.random_range(200.0..1000.0);
        self.steps = 0;
        self.observe(obs);
    }

    fn step(&mut self, action: &[f32], obs: &mut [f32]) -> StepOutcome {
        let a = action.first().copied().unwrap_or(0.0).clamp(-V_MAX, V_MAX);
        let v = f64::from(a);
        let h = DT / SUBSTEPS as f64;
        for _ in 0..SUBSTEPS {
            let di = (v - R * self.i - K * self.omega) / L;
            let domega = (K * self.i - B * self.omega) / J;
            self.i += h * di;
            self.omega += h * domega;
        }
        self.steps += 1;
        self.observe(obs);
        StepOutcome {
            reward: f64::from(reward(obs, a)),
            terminated: false,
            truncated: self.steps >= STEPS,
        }
    }

    fn reward_fn(&self, _obs: &[f32], action: &[f32], next_obs: &[f32]) -> Option<f32> {
        Some(reward(next_obs, action.first().copied().unwrap_or(0.0)))
    }

    fn terminal_fn(&self, _obs: &[f32], _action: &[f32], _next_obs: &[f32]) -> Option<bool> {
        Some(false)
    }

    fn box_clone(&self) -> Box<dyn Env> {
        Box::new(self.clone())
    }
}

/// Mean return of `policy` (observation -> voltage) over `episodes` seeded episodes.
fn evaluate(env: &mut dyn Env, episodes: u64, mut policy: impl FnMut(&[f32]) -> f32) -> f64 {
    let mut obs = vec![0.0f32; env.obs_dim()];
    let mut total = 0.0;
    for seed in 0..episodes {
        env.reset(Some(seed), &mut obs);
        loop {
            let a = policy(&obs);
            let out = env.step(&[a], &mut obs);
            total += out.reward;
            if out.terminated || out.truncated {
                break;
            }
        }
    }
    total / episodes as f64
}

fn main() {
    let mut env: Box<dyn Env> = Box::new(DcMotor::new());
    let mut rng = Pcg64::seed_from_u64(1);
    let random = evaluate(env.as_mut(), 10, |_| rng.random_range(-V_MAX..=V_MAX));
    let zero = evaluate(env.as_mut(), 10, |_| 0.0);
    // Feed-forward: the voltage whose steady state is the set-point (V = K omega, friction aside).
    let feed_forward = evaluate(env.as_mut(), 10, |o| {
        (K * SPEED_SCALE) as f32 * o.get(1).copied().unwrap_or(0.0)
    });
    // Feed-forward plus a proportional term on the speed error.
    let pi_like = evaluate(env.as_mut(), 10, |o| {
        let (w, r) = (
            o.first().copied().unwrap_or(0.0),
            o.get(1).copied().unwrap_or(0.0),
        );
        (10.0 * r + 20.0 * (r - w)).clamp(-V_MAX, V_MAX)
    });
    println!(
        "{}: obs {} / act {} / {} steps",
        env.id(),
        env.obs_dim(),
        env.act_dim(),
        env.max_episode_steps()
    );
    println!("mean return over 10 episodes (higher is better, 0 is perfect):");
    println!("  random voltage          {random:9.3}");
    println!("  zero voltage            {zero:9.3}");
    println!("  feed-forward            {feed_forward:9.3}");
    println!("  feed-forward + P        {pi_like:9.3}");

    // Train on it: the same loop as `keel train`, with the plant passed in.
    let steps = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    let mut cfg = TrainConfig::for_env_algo(env.id(), Algo::Sac);
    cfg.steps = steps;
    cfg.eval_every = (steps / 5).max(1);
    cfg.checkpoint_every = cfg.eval_every;
    let dir = std::path::Path::new("runs").join("dc-motor");
    match train_with_env(&cfg, env.box_clone(), &dir, false, true) {
        Ok(out) => println!(
            "  SAC after {steps} steps    {:9.3}  ({})",
            out.final_eval.mean_return,
            out.policy_path.display()
        ),
        Err(e) => eprintln!("training failed: {e}"),
    }
}
