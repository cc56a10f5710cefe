//! `--threads 2` must change speed only: the twin critics run as parallel tasks, a layer's weight
//! and input gradients run side by side, large GEMMs and Adam steps are split, and every one of
//! those keeps each number's arithmetic as on one thread. This checks whole SAC updates, bit for
//! bit, at SB3's sizes (so every parallel path is taken), with the robust term under FGSM and
//! under PGD (whose random starts must not depend on which thread runs which critic).
//!
//! Its own test binary: the thread count is process-wide.
use keel_runtime::encode::encode;
use keel_trainer::config::{Attack, LipschitzChoice, LipschitzConfig, RobustForm, SacConfig};
use keel_trainer::env::make_env;
use keel_trainer::eval::{evaluate, load_policy};
use keel_trainer::nn::threads;
use keel_trainer::replay::Batch;
use keel_trainer::sac::SacLearner;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

const B: usize = 256;

/// The tests of this file take turns: each sets the process-wide thread count.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run(lip: &LipschitzConfig, threads_n: usize) -> (Vec<u8>, Vec<f32>) {
    threads::set_threads(threads_n);
    let mut rng = Pcg64::seed_from_u64(7);
    let cfg = SacConfig {
        actor_hidden: vec![256, 256],
        critic_hidden: vec![256, 256],
        batch_size: B,
        ..SacConfig::for_env("pendulum")
    };
    let mut learner = SacLearner::new(&cfg, lip, 3, &[-2.0], &[2.0], &mut rng);
    learner.set_state_std(&[0.5, 0.7, 3.0]);
    let mut batch = Batch::new(B, 3, 1);
    let mut losses = Vec::new();
    for _ in 0..4 {
        let mut fill =
            |v: &mut Vec<f32>| v.iter_mut().for_each(|x| *x = rng.random_range(-1.0..1.0));
        fill(&mut batch.obs);
        fill(&mut batch.act);
        fill(&mut batch.rew);
        fill(&mut batch.next_obs);
        learner.update(&batch, &mut rng, B - 64..B);
        let s = learner.last_stats();
        losses.extend([s.critic_loss, s.actor_loss, s.alpha, s.robust_gap]);
    }
    let state = learner.save().expect("learner state serializes");
    threads::set_threads(1);
    (state, losses)
}

#[test]
fn sac_updates_are_bit_identical_on_one_and_two_threads() {
    let _turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("skipped: this machine has one core, so --threads 2 runs on one thread");
        return;
    }
    let mut cases = Vec::new();
    for choice in [LipschitzChoice::None, LipschitzChoice::SnRobust] {
        let mut lip = LipschitzConfig::default();
        lip.set_choice(choice);
        cases.push(lip);
    }
    let mut pgd = LipschitzConfig {
        attack: Attack::Pgd,
        form: RobustForm::V,
        ..LipschitzConfig::default()
    };
    pgd.set_choice(LipschitzChoice::SnRobust);
    cases.push(pgd);
    for lip in &cases {
        let (one, losses_one) = run(lip, 1);
        let (two, losses_two) = run(lip, 2);
        assert!(
            losses_one.iter().all(|x| x.is_finite()),
            "non-finite losses: {losses_one:?}"
        );
        assert_eq!(
            losses_one.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            losses_two.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            "losses differ between 1 and 2 threads ({lip:?})"
        );
        assert!(
            one == two,
            "networks or optimizer states differ between 1 and 2 threads ({lip:?})"
        );
    }
}

#[test]
fn evaluation_is_the_same_on_one_and_two_threads() {
    let _turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
    // A random 2x64 actor on a stochastic env with a score and on a deterministic one; an odd
    // episode count so the halves differ in size.
    let mut rng = Pcg64::seed_from_u64(3);
    for env_id in ["fishery3", "pendulum"] {
        let mut env = make_env(env_id).expect("known env");
        let learner = SacLearner::new(
            &SacConfig::for_env(env_id),
            &LipschitzConfig::default(),
            env.obs_dim(),
            env.action_low(),
            env.action_high(),
            &mut rng,
        );
        let blob = encode(&learner.policy_spec()).expect("encodes");
        let policy = load_policy(&blob).expect("loads");
        threads::set_threads(1);
        let one = evaluate(&policy, env.as_mut(), 7, 11).expect("evaluates");
        threads::set_threads(2);
        let two = evaluate(&policy, env.as_mut(), 7, 11).expect("evaluates");
        threads::set_threads(1);
        assert_eq!(one, two, "{env_id}");
        assert_eq!(one.returns.len(), 7);
    }
}
