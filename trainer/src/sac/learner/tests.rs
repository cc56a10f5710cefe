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
