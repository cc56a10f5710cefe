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
