//! The robust term's two forms: which action the smoothed value is taken at.
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

use super::SacLearner;
use crate::config::{LipschitzConfig, RobustForm, SacConfig};
use crate::replay::Batch;

/// One update on a batch whose model rows (the robust rows) all carry the action 0.9, with the
/// robust term in form `form`; returns the actions the robust term used on those rows and the
/// actor's deterministic actions at their states before the update.
fn robust_actions(form: RobustForm) -> (Vec<f32>, Vec<f32>) {
    let (od, ad, b, nr) = (3, 1, 16, 8);
    let sac = SacConfig {
        batch_size: b,
        actor_hidden: vec![16],
        critic_hidden: vec![16, 16],
        ..SacConfig::default()
    };
    let lip = LipschitzConfig {
        spectral_norm: true,
        robust: true,
        form,
        ..LipschitzConfig::default()
    };
    let mut rng = Pcg64::seed_from_u64(5);
    let mut learner = SacLearner::new(&sac, &lip, od, &[-2.0], &[2.0], &mut rng);
    learner.set_state_std(&[1.0; 3]);
    let mut batch = Batch::new(b, od, ad);
    for x in batch.obs.iter_mut().chain(&mut batch.next_obs) {
        *x = rng.random_range(-1.0..1.0);
    }
    batch.act.fill(0.9);
    let mut mu = vec![0.0; nr * ad];
    for i in 0..nr {
        let obs = batch.obs[i * od..(i + 1) * od].to_vec();
        learner.deterministic_action(&obs, &mut mu[i * ad..(i + 1) * ad]);
    }
    learner.update(&batch, &mut rng, 0..nr);
    let w = od + ad;
    let used = (0..nr)
        .flat_map(|i| learner.robust[0].clean[i * w + od..(i + 1) * w].to_vec())
        .collect();
    (used, mu)
}

#[test]
fn q_form_smooths_the_batch_action_and_v_form_the_actors() {
    let (used, _) = robust_actions(RobustForm::Q);
    assert!(used.iter().all(|&a| a == 0.9), "{used:?}");
    let (used, mu) = robust_actions(RobustForm::V);
    assert_eq!(used, mu);
    // The actor's actions at these states are its own, not the batch's.
    assert!(mu.iter().all(|&a| (a - 0.9).abs() > 1e-3), "{mu:?}");
}

/// `measure_lipschitz`'s ||dQ/ds|| against central differences of critic 1 (in Q's units, so
/// times the spectral-norm output scale), and its layer bound above every measured slope.
#[test]
fn measured_slope_matches_finite_differences() {
    let (od, ad, n) = (3, 1, 6);
    for spectral_norm in [false, true] {
        let sac = SacConfig {
            critic_hidden: vec![16, 16],
            ..SacConfig::default()
        };
        let lip = LipschitzConfig {
            spectral_norm,
            ..LipschitzConfig::default()
        };
        let mut rng = Pcg64::seed_from_u64(8);
        let mut learner = SacLearner::new(&sac, &lip, od, &[-2.0], &[2.0], &mut rng);
        let obs: Vec<f32> = (0..n * od).map(|_| rng.random_range(-1.0..1.0)).collect();
        let act: Vec<f32> = (0..n * ad).map(|_| rng.random_range(-2.0..2.0)).collect();
        let (max, mean, bound) = learner.measure_lipschitz(&obs, &act, n);
        let qs = learner.q_scale();
        let mut critic = learner.critics()[0].clone();
        let mut q = |x: &[f32]| f64::from(qs * critic.predict(x, 1)[0]);
        // Small: a difference across one of the ReLU critic's kinks is not its slope.
        let h = 1e-3f32;
        let norms: Vec<f64> = (0..n)
            .map(|i| {
                let mut x: Vec<f32> = obs[i * od..(i + 1) * od].to_vec();
                x.extend_from_slice(&act[i * ad..(i + 1) * ad]);
                (0..od)
                    .map(|j| {
                        let (mut up, mut down) = (x.clone(), x.clone());
                        up[j] += h;
                        down[j] -= h;
                        ((q(&up) - q(&down)) / f64::from(2.0 * h)).powi(2)
                    })
                    .sum::<f64>()
                    .sqrt()
            })
            .collect();
        let fd_max = norms.iter().copied().fold(0.0, f64::max);
        let fd_mean = norms.iter().sum::<f64>() / n as f64;
        let close = |a: f64, b: f64| (a - b).abs() <= 0.02 * b.abs() + 1e-3 * f64::from(qs);
        assert!(
            close(max, fd_max),
            "sn {spectral_norm}: max {max} vs {fd_max}"
        );
        assert!(
            close(mean, fd_mean),
            "sn {spectral_norm}: mean {mean} vs {fd_mean}"
        );
        assert!(
            bound >= max,
            "sn {spectral_norm}: bound {bound} < max {max}"
        );
    }
}

/// A learner's config small enough for exact checks: an 8-wide actor, 16-wide critics.
fn small_sac(b: usize) -> SacConfig {
    SacConfig {
        batch_size: b,
        actor_hidden: vec![8],
        critic_hidden: vec![16],
        ..SacConfig::default()
    }
}

/// A batch of states in [-1, 1], actions in the box [-2, 2] and rewards 1, no terminals.
fn random_batch(b: usize, od: usize, ad: usize, rng: &mut Pcg64) -> Batch {
    let mut batch = Batch::new(b, od, ad);
    for x in batch.obs.iter_mut().chain(&mut batch.next_obs) {
        *x = rng.random_range(-1.0..1.0);
    }
    for a in &mut batch.act {
        *a = rng.random_range(-2.0..2.0);
    }
    batch.rew.fill(1.0);
    batch
}

/// With `policy_average` = w the exported policy is w p1 + (1 - w) p0 after one update from p0 to
/// p1, not the online actor, and it survives a checkpoint.
#[test]
fn exported_policy_is_the_running_average_of_the_actor() {
    let (od, ad, b, w) = (3, 1, 16, 0.25);
    let sac = SacConfig {
        policy_average: w,
        ..small_sac(b)
    };
    let lip = LipschitzConfig::default();
    let mut rng = Pcg64::seed_from_u64(11);
    let mut learner = SacLearner::new(&sac, &lip, od, &[-2.0], &[2.0], &mut rng);
    let batch = random_batch(b, od, ad, &mut rng);
    let p0 = learner.actor.params().into_owned();
    learner.update(&batch, &mut rng, 0..0);
    let p1 = learner.actor.params().into_owned();
    assert_ne!(p0, p1, "the update must move the actor");
    let averaged = learner.policy_spec().actor;

    let mut restored = SacLearner::new(&sac, &lip, od, &[-2.0], &[2.0], &mut rng);
    restored.load(&learner.save().unwrap()).unwrap();
    assert_eq!(restored.policy_spec().actor, averaged);

    // The export is the runtime layers of exactly those mixed weights, not of the online ones.
    let online = learner.actor_layers(&p1);
    assert_ne!(online, averaged);
    let mixed: Vec<f32> = p0
        .iter()
        .zip(&p1)
        .map(|(a, b)| w * b + (1.0 - w) * a)
        .collect();
    assert_eq!(learner.actor_layers(&mixed), averaged);
}

/// With `policy_average_final_scale` the average's weight switches after `policy_average_from`:
/// the update at that env step still mixes with w, the next one with w times the scale.
#[test]
fn the_average_weight_switches_after_its_step() {
    let (od, ad, b, w) = (3, 1, 16, 0.25);
    let sac = SacConfig {
        policy_average: w,
        policy_average_final_scale: 0.5,
        policy_average_from: 10,
        ..small_sac(b)
    };
    let mut rng = Pcg64::seed_from_u64(13);
    let lip = LipschitzConfig::default();
    let mut learner = SacLearner::new(&sac, &lip, od, &[-2.0], &[2.0], &mut rng);
    let batch = random_batch(b, od, ad, &mut rng);
    let mix = |p: &[f32], a: &[f32], w: f32| -> Vec<f32> {
        p.iter()
            .zip(a)
            .map(|(p, a)| w * a + (1.0 - w) * p)
            .collect()
    };
    let p0 = learner.actor.params().into_owned();
    learner.set_env_step(10);
    learner.update(&batch, &mut rng, 0..0);
    let p1 = learner.actor.params().into_owned();
    let avg1 = mix(&p0, &p1, w);
    assert_eq!(learner.policy_spec().actor, learner.actor_layers(&avg1));
    learner.set_env_step(11);
    learner.update(&batch, &mut rng, 0..0);
    let p2 = learner.actor.params().into_owned();
    assert_ne!(p1, p2, "the update must move the actor");
    let avg2 = mix(&avg1, &p2, 0.5 * w);
    assert_eq!(learner.policy_spec().actor, learner.actor_layers(&avg2));
    assert_ne!(avg2, mix(&avg1, &p2, w));
}

/// `lr_final_scale` scales the actor's and critics' steps once the schedule has reached it: the
/// first Adam step is lr times about sign(g), so the same update moves every weight by half as
/// much at 0.5, while the temperature (its own rate) moves as before.
#[test]
fn learning_rate_schedule_scales_the_networks_steps() {
    let (od, ad, b) = (3, 1, 16);
    let step = |scale: f32| {
        let sac = SacConfig {
            lr_final_scale: scale,
            lr_decay_from: 10,
            lr_decay_to: 20,
            ..small_sac(b)
        };
        let mut rng = Pcg64::seed_from_u64(3);
        let mut learner = SacLearner::new(
            &sac,
            &LipschitzConfig::default(),
            od,
            &[-2.0],
            &[2.0],
            &mut rng,
        );
        learner.set_env_step(25);
        let batch = random_batch(b, od, ad, &mut rng);
        let before = [
            learner.actor.params().into_owned(),
            learner.q[0].params().into_owned(),
        ];
        learner.update(&batch, &mut rng, 0..0);
        let after = [
            learner.actor.params().into_owned(),
            learner.q[0].params().into_owned(),
        ];
        let moves: Vec<Vec<f32>> = (0..2)
            .map(|n| {
                before[n]
                    .iter()
                    .zip(&after[n])
                    .map(|(p, q)| q - p)
                    .collect()
            })
            .collect();
        (moves, learner.log_alpha)
    };
    let (full, alpha_full) = step(1.0);
    let (half, alpha_half) = step(0.5);
    assert_eq!(alpha_full, alpha_half);
    for (f, h) in full.iter().zip(&half) {
        let moved = f.iter().filter(|d| d.abs() > 1e-6).count();
        assert!(moved > f.len() / 2, "the update must move the network");
        for (a, b) in f.iter().zip(h) {
            assert!((b - 0.5 * a).abs() <= 1e-6 + 1e-3 * a.abs(), "{a} vs {b}");
        }
    }
}
