//! Branched model rollouts: from real start states, the current policy acts in the learned model
//! for `k` steps; every model transition goes to the model buffer. A rollout stops at a terminal
//! state (the env's closed-form predicate); a time limit does not exist inside the model, so
//! nothing is truncated and every non-terminal transition bootstraps.
use rand::Rng;

use crate::env::Env;
use crate::model::DynamicsModel;
use crate::nn::CpuBackend;
use crate::replay::ReplayBuffer;
use crate::sac::SacLearner;

/// Buffers for one batch of rollouts.
pub struct RolloutScratch {
    obs: Vec<f32>,
    act: Vec<f32>,
    next: Vec<f32>,
    rew: Vec<f32>,
    alive: Vec<bool>,
}

impl RolloutScratch {
    pub fn new(starts: usize, obs_dim: usize, act_dim: usize) -> Self {
        Self {
            obs: vec![0.0; starts * obs_dim],
            act: vec![0.0; starts * act_dim],
            next: vec![0.0; starts * obs_dim],
            rew: vec![0.0; starts],
            alive: vec![true; starts],
        }
    }

    pub fn starts(&self) -> usize {
        self.rew.len()
    }
}

/// Rolls `k` steps from `scratch.starts()` start states drawn from `real`; returns the number of
/// transitions added to `model_buf`.
#[allow(clippy::too_many_arguments)]
pub fn rollout<R: Rng>(
    model: &mut DynamicsModel<CpuBackend>,
    policy: &mut SacLearner,
    env: &dyn Env,
    real: &ReplayBuffer,
    model_buf: &mut ReplayBuffer,
    s: &mut RolloutScratch,
    k: usize,
    rng: &mut R,
) -> usize {
    let (od, ad, n) = (real.obs_dim(), real.act_dim(), s.starts());
    for i in 0..n {
        let j = rng.random_range(0..real.len());
        s.obs[i * od..(i + 1) * od].copy_from_slice(real.obs(j));
        s.alive[i] = true;
    }
    let mut added = 0;
    for _ in 0..k {
        policy.sample_actions(&s.obs, &mut s.act, n, rng);
        model.predict_env(&s.obs, &s.act, n, rng, env, &mut s.next, &mut s.rew);
        let mut any_alive = false;
        for i in 0..n {
            if !s.alive[i] {
                continue;
            }
            let (o, a, nx) = (
                &s.obs[i * od..(i + 1) * od],
                &s.act[i * ad..(i + 1) * ad],
                &s.next[i * od..(i + 1) * od],
            );
            if nx.iter().any(|v| !v.is_finite()) || !s.rew[i].is_finite() {
                s.alive[i] = false;
                continue;
            }
            let terminal = env.terminal_fn(o, a, nx).unwrap_or(false);
            model_buf.push(o, a, s.rew[i], nx, terminal);
            added += 1;
            s.alive[i] = !terminal;
            any_alive |= !terminal;
        }
        std::mem::swap(&mut s.obs, &mut s.next);
        if !any_alive {
            break;
        }
    }
    added
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LipschitzConfig, SacConfig};
    use crate::env::{Env, StepOutcome};
    use crate::model::ModelConfig;
    use rand::SeedableRng;

    /// A 2-d plant whose terminal predicate is fixed by the test; the model never sees its
    /// dynamics (it is untrained), only its shape.
    #[derive(Clone)]
    struct Fake {
        terminal: bool,
    }

    impl Env for Fake {
        fn id(&self) -> &str {
            "fake"
        }
        fn obs_dim(&self) -> usize {
            2
        }
        fn act_dim(&self) -> usize {
            1
        }
        fn action_low(&self) -> &[f32] {
            &[-1.0]
        }
        fn action_high(&self) -> &[f32] {
            &[1.0]
        }
        fn max_episode_steps(&self) -> usize {
            10
        }
        fn reset(&mut self, _seed: Option<u64>, obs: &mut [f32]) {
            obs.fill(0.0);
        }
        fn step(&mut self, _action: &[f32], obs: &mut [f32]) -> StepOutcome {
            obs.fill(0.0);
            StepOutcome {
                reward: 0.0,
                terminated: self.terminal,
                truncated: false,
            }
        }
        fn reward_fn(&self, _o: &[f32], a: &[f32], _n: &[f32]) -> Option<f32> {
            Some(-a[0] * a[0])
        }
        fn terminal_fn(&self, _o: &[f32], _a: &[f32], _n: &[f32]) -> Option<bool> {
            Some(self.terminal)
        }
        fn box_clone(&self) -> Box<dyn Env> {
            Box::new(self.clone())
        }
    }

    fn run(terminal: bool, k: usize) -> ReplayBuffer {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(5);
        let env = Fake { terminal };
        let cfg = ModelConfig {
            hidden: vec![8],
            weight_decay: vec![1e-5],
            predict_reward: false,
            ..ModelConfig::default()
        };
        let mut model = DynamicsModel::new(&CpuBackend, &cfg, 2, 1, &mut rng).unwrap();
        let sac = SacConfig {
            actor_hidden: vec![8],
            critic_hidden: vec![8],
            batch_size: 8,
            ..SacConfig::default()
        };
        let mut policy = SacLearner::new(
            &sac,
            &LipschitzConfig::default(),
            2,
            &[-1.0],
            &[1.0],
            &mut rng,
        );
        let mut real = ReplayBuffer::new(100, 2, 1);
        for i in 0..20 {
            let x = i as f32 * 0.1;
            real.push(&[x, -x], &[0.0], 0.0, &[x, x], false);
        }
        model.train(&real, &mut rng);
        let mut model_buf = ReplayBuffer::new(1000, 2, 1);
        let mut scratch = RolloutScratch::new(6, 2, 1);
        let added = rollout(
            &mut model,
            &mut policy,
            &env,
            &real,
            &mut model_buf,
            &mut scratch,
            k,
            &mut rng,
        );
        assert_eq!(added, model_buf.len());
        model_buf
    }

    #[test]
    fn terminal_states_end_rollouts_and_are_not_bootstrapped() {
        let buf = run(true, 4);
        // Every start's first transition is terminal: one step each, all flagged done.
        assert_eq!(buf.len(), 6);
        let mut b = crate::replay::Batch::new(6, 2, 1);
        for i in 0..6 {
            buf.copy_into(i, &mut b, i);
        }
        assert!(b.done.iter().all(|d| *d == 1.0));
        // The reward is the env's closed form at the sampled action.
        for i in 0..6 {
            assert_eq!(b.rew[i], -b.act[i] * b.act[i]);
        }
    }

    #[test]
    fn non_terminal_rollouts_run_k_steps_and_bootstrap() {
        let buf = run(false, 4);
        assert_eq!(buf.len(), 6 * 4);
        let mut b = crate::replay::Batch::new(24, 2, 1);
        for i in 0..24 {
            buf.copy_into(i, &mut b, i);
        }
        // No time limit exists inside the model: nothing is marked terminal, every transition
        // bootstraps (as a truncation would).
        assert!(b.done.iter().all(|d| *d == 0.0));
        // Consecutive steps chain: step t's next state is step t+1's state, per start.
        for t in 0..3 {
            for i in 0..6 {
                let (a, c) = (t * 6 + i, (t + 1) * 6 + i);
                assert_eq!(&b.next_obs[a * 2..a * 2 + 2], &b.obs[c * 2..c * 2 + 2]);
            }
        }
    }
}
