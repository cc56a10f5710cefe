//! The exported actor computes, through keel-runtime, the actions the trainer's own networks
//! compute, on random observations (summation order differs between the two GEMMs, so the
//! comparison allows float rounding), for trained and untrained actors and several shapes.
use keel_runtime::encode::encode;
use keel_runtime::Policy;
use keel_trainer::config::{LipschitzConfig, SacConfig};
use keel_trainer::replay::Batch;
use keel_trainer::sac::SacLearner;
use rand::{Rng, SeedableRng};

fn check(obs_dim: usize, low: &[f32], high: &[f32], hidden: Vec<usize>, train_steps: usize) {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(obs_dim as u64);
    let cfg = SacConfig {
        actor_hidden: hidden,
        critic_hidden: vec![32, 32],
        batch_size: 16,
        ..SacConfig::default()
    };
    let mut learner = SacLearner::new(
        &cfg,
        &LipschitzConfig::default(),
        obs_dim,
        low,
        high,
        &mut rng,
    );
    let act_dim = low.len();
    // A few updates on random data move the weights away from their initialisation.
    let mut batch = Batch::new(16, obs_dim, act_dim);
    for _ in 0..train_steps {
        for v in batch.obs.iter_mut().chain(batch.next_obs.iter_mut()) {
            *v = rng.random_range(-3.0..3.0);
        }
        for (i, v) in batch.act.iter_mut().enumerate() {
            *v = rng.random_range(low[i % act_dim]..high[i % act_dim]);
        }
        batch
            .rew
            .iter_mut()
            .for_each(|r| *r = rng.random_range(-1.0..1.0));
        learner.update(&batch, &mut rng, 0..0);
    }
    let blob = encode(&learner.policy_spec()).unwrap();
    let policy: Policy<'_, 256> = Policy::from_bytes(&blob).unwrap();
    let (mut a_host, mut a_rt) = (vec![0.0f32; act_dim], vec![0.0f32; act_dim]);
    let mut obs = vec![0.0f32; obs_dim];
    for _ in 0..1000 {
        obs.iter_mut()
            .for_each(|o| *o = rng.random_range(-10.0..10.0));
        learner.deterministic_action(&obs, &mut a_host);
        policy.act(&obs, &mut a_rt).unwrap();
        for (h, r) in a_host.iter().zip(&a_rt) {
            assert!(
                (h - r).abs() <= 1e-5 * (1.0 + h.abs()),
                "obs {obs:?}: trainer {a_host:?} runtime {a_rt:?}"
            );
        }
    }
}

#[test]
fn exported_actor_matches_trainer_actions() {
    check(3, &[-2.0], &[2.0], vec![64, 64], 0);
    check(3, &[-2.0], &[2.0], vec![64, 64], 20);
    check(5, &[0.0, -1.0], &[1.0, 3.0], vec![32], 20);
}
