//! Properties every environment must have, checked for every id in `ENV_IDS`: shapes, finite
//! observations, gymnasium's truncation and termination semantics, closed-form reward and terminal
//! functions that agree with `step`, seeded determinism, cloning and action clipping.
use keel_trainer::env::{make_env, Env, ENV_IDS};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

/// A uniformly random action, 10% of the time up to 50% beyond the bounds (the env must clip).
fn random_action(env: &dyn Env, rng: &mut Pcg64) -> Vec<f32> {
    let wild = rng.random_bool(0.1);
    env.action_low()
        .iter()
        .zip(env.action_high())
        .map(|(&lo, &hi)| {
            let span = hi - lo;
            let (lo, hi) = if wild {
                (lo - span / 2.0, hi + span / 2.0)
            } else {
                (lo, hi)
            };
            rng.random_range(lo..=hi)
        })
        .collect()
}

/// An action that ends an episode quickly from reset, when one exists.
fn fatal_action(id: &str) -> Option<Vec<f32>> {
    match id {
        "fishery3" => Some(vec![1.0, 1.0]),
        "fishery1" => Some(vec![1.0]),
        "allee" => Some(vec![10.0]),
        "fishery-noisy-obs" => Some(vec![2.0]),
        "cartpole-swingup" => Some(vec![10.0]),
        _ => None,
    }
}

fn envs() -> impl Iterator<Item = Box<dyn Env>> {
    ENV_IDS
        .iter()
        .map(|id| make_env(id).unwrap_or_else(|e| panic!("{e}")))
}

fn assert_finite(id: &str, obs: &[f32], what: &str) {
    assert!(
        obs.iter().all(|v| v.is_finite()),
        "{id}: non-finite {what} {obs:?}"
    );
}

#[test]
fn ids_and_shapes() {
    assert_eq!(ENV_IDS.len(), 7);
    for env in envs() {
        let id = env.id().to_string();
        assert!(ENV_IDS.contains(&id.as_str()));
        assert!(env.obs_dim() > 0 && env.act_dim() > 0, "{id}");
        assert_eq!(env.action_low().len(), env.act_dim(), "{id}");
        assert_eq!(env.action_high().len(), env.act_dim(), "{id}");
        assert!(
            env.action_low()
                .iter()
                .zip(env.action_high())
                .all(|(l, h)| l < h),
            "{id}"
        );
        assert!(env.max_episode_steps() > 0, "{id}");
    }
    let err = make_env("cartpole").err().expect("unknown id").to_string();
    for id in ENV_IDS {
        assert!(err.contains(id), "{err}");
    }
}

/// Random rollouts: finite observations, truncation exactly at the limit, reward_fn,
/// step_reward (with the step count) and terminal_fn agreeing with the step they describe.
#[test]
fn random_rollouts_are_consistent() {
    for mut env in envs() {
        let id = env.id().to_string();
        let mut rng = Pcg64::seed_from_u64(7);
        let (mut obs, mut next) = (vec![0.0f32; env.obs_dim()], vec![0.0f32; env.obs_dim()]);
        let (mut checked_reward, mut checked_step_reward) = (0, 0);
        for episode in 0..20u64 {
            env.reset(Some(episode), &mut obs);
            assert_finite(&id, &obs, "reset observation");
            let fatal = episode % 4 == 3;
            for k in 1..=env.max_episode_steps() {
                let a = match fatal_action(&id) {
                    Some(f) if fatal => f,
                    _ => random_action(env.as_ref(), &mut rng),
                };
                let out = env.step(&a, &mut next);
                assert_finite(&id, &next, "observation");
                assert!(out.reward.is_finite(), "{id}: reward {}", out.reward);
                assert_eq!(
                    out.truncated,
                    k == env.max_episode_steps(),
                    "{id}: step {k}"
                );
                if let Some(r) = env.reward_fn(&obs, &a, &next) {
                    let tol = 1e-4 * out.reward.abs().max(1.0);
                    assert!(
                        (f64::from(r) - out.reward).abs() <= tol,
                        "{id}: reward_fn {r} vs {}",
                        out.reward
                    );
                    checked_reward += 1;
                }
                if let Some(r) = env.step_reward(&obs, &a, &next, k - 1) {
                    let tol = 1e-4 * out.reward.abs().max(1.0);
                    assert!(
                        (f64::from(r) - out.reward).abs() <= tol,
                        "{id}: step_reward {r} vs {} at step {k}",
                        out.reward
                    );
                    checked_step_reward += 1;
                }
                if let Some(t) = env.terminal_fn(&obs, &a, &next) {
                    assert_eq!(
                        t, out.terminated,
                        "{id}: terminal_fn at step {k}, next obs {next:?}"
                    );
                }
                obs.clone_from(&next);
                if out.terminated || out.truncated {
                    break;
                }
            }
        }
        let expects_reward_fn = matches!(
            id.as_str(),
            "pendulum" | "mountaincar" | "cartpole-swingup" | "allee"
        );
        assert_eq!(
            checked_reward > 0,
            expects_reward_fn,
            "{id}: reward_fn availability"
        );
        // The fisheries' penalty needs the step count: they have step_reward, not reward_fn.
        assert_eq!(
            checked_step_reward > 0,
            expects_reward_fn || matches!(id.as_str(), "fishery1" | "fishery3"),
            "{id}: step_reward availability"
        );
    }
}

/// A quiet policy (zero force, no harvest) runs to the time limit, truncated exactly on the last
/// step. Two ecology models can collapse even unharvested, so their episodes may end early: the
/// noisy fishery starts at x0 = 0.1616 where its additive noise can wipe the stock out (~4% a
/// step), and the 1-species fishery has a tipping point at 0.37 below its equilibrium 0.58 (~5%
/// of unharvested episodes collapse). Most seeds must still reach the limit.
#[test]
fn quiet_policy_is_truncated_at_the_limit() {
    for mut env in envs() {
        let id = env.id().to_string();
        let mut obs = vec![0.0f32; env.obs_dim()];
        let a = vec![0.0f32; env.act_dim()];
        let limit = env.max_episode_steps();
        let mut full = 0;
        for seed in 0..10 {
            env.reset(Some(seed), &mut obs);
            for k in 1..=limit {
                let out = env.step(&a, &mut obs);
                assert_eq!(out.truncated, k == limit, "{id}: step {k}");
                if out.terminated {
                    assert!(
                        matches!(id.as_str(), "fishery-noisy-obs" | "fishery1"),
                        "{id} terminated at step {k} (seed {seed}), obs {obs:?}"
                    );
                    break;
                }
                full += usize::from(out.truncated);
            }
        }
        assert!(
            full >= 5,
            "{id}: only {full} of 10 quiet episodes reached the limit"
        );
    }
}

/// Envs that can terminate do, on a fatal action, and say so through terminal_fn; the ones that
/// cannot (pendulum) never do.
#[test]
fn termination_semantics() {
    for mut env in envs() {
        let id = env.id().to_string();
        let mut obs = vec![0.0f32; env.obs_dim()];
        let mut next = obs.clone();
        match id.as_str() {
            "pendulum" => {
                env.reset(Some(0), &mut obs);
                for _ in 0..env.max_episode_steps() {
                    assert!(!env.step(&[2.0], &mut obs).terminated);
                }
                assert_eq!(env.terminal_fn(&obs, &[0.0], &obs), Some(false));
            }
            "mountaincar" => {
                // Just below the goal, moving right.
                env.set_state(&[0.44, 0.05], &mut obs).expect("set_state");
                let out = env.step(&[1.0], &mut next);
                assert!(out.terminated, "{id}");
                assert!(out.reward > 99.0);
                assert_eq!(env.terminal_fn(&obs, &[1.0], &next), Some(true));
                let r = env
                    .reward_fn(&obs, &[1.0], &next)
                    .expect("mountaincar has a reward_fn");
                assert!(
                    (f64::from(r) - out.reward).abs() < 1e-4,
                    "{r} vs {}",
                    out.reward
                );
            }
            _ => {
                let a = fatal_action(&id).expect("fatal action");
                env.reset(Some(0), &mut obs);
                let mut ended = false;
                for _ in 0..env.max_episode_steps() {
                    let out = env.step(&a, &mut next);
                    if out.terminated {
                        assert_eq!(env.terminal_fn(&obs, &a, &next), Some(true), "{id}");
                        ended = true;
                        break;
                    }
                    obs.clone_from(&next);
                }
                assert!(ended, "{id}: the fatal action never terminated");
            }
        }
    }
}

fn rollout(env: &mut dyn Env, seed: Option<u64>, steps: usize) -> Vec<u32> {
    let mut obs = vec![0.0f32; env.obs_dim()];
    env.reset(seed, &mut obs);
    let mut trace: Vec<u32> = obs.iter().map(|v| v.to_bits()).collect();
    let mut rng = Pcg64::seed_from_u64(99);
    for _ in 0..steps {
        let a = random_action(&*env, &mut rng);
        let out = env.step(&a, &mut obs);
        trace.extend(obs.iter().map(|v| v.to_bits()));
        trace.push((out.reward as f32).to_bits());
        if out.terminated || out.truncated {
            break;
        }
    }
    trace
}

#[test]
fn seeded_resets_are_deterministic() {
    for mut env in envs() {
        let id = env.id().to_string();
        let a = rollout(env.as_mut(), Some(42), 20);
        let b = rollout(env.as_mut(), Some(42), 20);
        assert_eq!(a, b, "{id}: same seed, different episode");
        let fresh = rollout(make_env(&id).expect("env").as_mut(), Some(42), 20);
        assert_eq!(a, fresh, "{id}: a fresh env differs");
        let c = rollout(env.as_mut(), Some(43), 20);
        assert_ne!(a, c, "{id}: seeds 42 and 43 give the same episode");
        // reset(None) continues the stream instead of replaying it.
        let _ = rollout(env.as_mut(), Some(42), 20);
        let d = rollout(env.as_mut(), None, 20);
        assert_ne!(a, d, "{id}: reset(None) replayed the seeded episode");
    }
}

#[test]
fn clones_continue_identically() {
    for mut env in envs() {
        let id = env.id().to_string();
        let mut obs = vec![0.0f32; env.obs_dim()];
        env.reset(Some(5), &mut obs);
        let mut rng = Pcg64::seed_from_u64(1);
        let a = random_action(env.as_ref(), &mut rng);
        let _ = env.step(&a, &mut obs);
        let mut twin = env.box_clone();
        let (mut o1, mut o2) = (obs.clone(), obs.clone());
        for _ in 0..10 {
            let a = random_action(env.as_ref(), &mut rng);
            let r1 = env.step(&a, &mut o1);
            let r2 = twin.step(&a, &mut o2);
            assert_eq!(r1, r2, "{id}");
            assert_eq!(o1, o2, "{id}");
            assert_eq!(env.step_score(), twin.step_score(), "{id}");
        }
    }
}

/// Out-of-bounds actions act like the clipped ones (MountainCar excepted: gymnasium charges the
/// unclipped action's cost, so only its observation must agree).
#[test]
fn actions_are_clipped() {
    for env in envs() {
        let id = env.id().to_string();
        let over: Vec<f32> = env.action_high().iter().map(|h| h + 5.0).collect();
        let under: Vec<f32> = env.action_low().iter().map(|l| l - 5.0).collect();
        for (raw, clipped) in [
            (over, env.action_high().to_vec()),
            (under, env.action_low().to_vec()),
        ] {
            let (mut e1, mut e2) = (env.box_clone(), env.box_clone());
            let (mut o1, mut o2) = (vec![0.0f32; env.obs_dim()], vec![0.0f32; env.obs_dim()]);
            e1.reset(Some(3), &mut o1);
            e2.reset(Some(3), &mut o2);
            let r1 = e1.step(&raw, &mut o1);
            let r2 = e2.step(&clipped, &mut o2);
            assert_eq!(o1, o2, "{id}");
            if id != "mountaincar" {
                assert_eq!(r1, r2, "{id}");
            }
        }
    }
}

#[test]
fn scores_follow_the_papers() {
    for mut env in envs() {
        let id = env.id().to_string();
        let mut obs = vec![0.0f32; env.obs_dim()];
        env.reset(Some(0), &mut obs);
        let has_score = matches!(id.as_str(), "fishery3" | "fishery1" | "fishery-noisy-obs");
        assert_eq!(env.step_score(), has_score.then_some(0.0), "{id}");
    }
    // Fishery: the score is the harvest of every step but the last.
    let mut env = make_env("fishery3").expect("env");
    let mut obs = [0.0f32; 3];
    env.reset(Some(2), &mut obs);
    let (mut ret, mut score) = (0.0, 0.0);
    let last_harvest = loop {
        let out = env.step(&[0.05, 0.05], &mut obs);
        ret += out.reward;
        score += env.step_score().unwrap_or(f64::NAN);
        if out.terminated || out.truncated {
            assert!(
                out.truncated,
                "a light harvest should not collapse the stocks"
            );
            break out.reward;
        }
    };
    assert!(
        (ret - last_harvest - score).abs() < 1e-9,
        "return {ret}, score {score}"
    );
}
