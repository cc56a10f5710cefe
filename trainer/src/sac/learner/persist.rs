//! What leaves the learner: the deployable policy (the actor's mean head) and the checkpointed
//! training state.
use keel_runtime::encode::{DenseSpec, PolicySpec};
use keel_runtime::{Activation as RtActivation, Squash};
use serde::{Deserialize, Serialize};

use super::SacLearner;
use crate::error::KeelError;
use crate::nn::{AdamState, SpectralState};

#[derive(Serialize, Deserialize)]
struct LearnerState {
    actor: Vec<f32>,
    actor_avg: Option<Vec<f32>>,
    actor_opt: AdamState,
    q: [Vec<f32>; 2],
    q_target: [Vec<f32>; 2],
    q_opt: [AdamState; 2],
    log_alpha: f32,
    alpha_adam: (f32, f32, i32),
    updates: u64,
    noise: Vec<f32>,
}

/// State added after checkpoint format 2 first shipped. It follows [`LearnerState`] in the
/// saved bytes, so older checkpoints (which end after it) still load: their spectral-norm
/// vectors re-converge on the weights instead.
#[derive(Serialize, Deserialize)]
struct LearnerStateAdded {
    /// Power-iteration state of `q` and `q_target` (`None` without spectral norm).
    q_spectral: [Option<SpectralState>; 2],
    q_target_spectral: [Option<SpectralState>; 2],
    /// The per-dimension state std that scales the robust loss's epsilon (set at each model
    /// refit; without it a resumed run used 1 until the next refit).
    state_std: Vec<f32>,
}

impl SacLearner {
    /// Moves the deployed average one step towards the actor just updated.
    pub(super) fn average_actor(&mut self) {
        if let Some(avg) = &mut self.actor_avg {
            avg.polyak_from(&self.actor, self.avg_weight);
        }
    }

    /// The deterministic actor (mean head only) as a deployable policy: the running average of
    /// its weights when `SacConfig::policy_average` > 0, the actor itself otherwise.
    pub fn policy_spec(&self) -> PolicySpec {
        let actor = match &self.actor_avg {
            Some(avg) => self.actor_layers(&avg.params()),
            None => self.actor_layers(&self.actor.params()),
        };
        // The tanh head maps to bias +- scale.
        let (low, high): (Vec<f32>, Vec<f32>) = self
            .head
            .scale
            .iter()
            .zip(&self.head.bias)
            .map(|(s, b)| (b - s, b + s))
            .unzip();
        PolicySpec {
            name: String::new(),
            env_id: String::new(),
            keel_version: String::new(),
            train_steps: 0,
            obs_mean: Vec::new(),
            obs_inv_std: Vec::new(),
            // Generous: observations of the shipped envs are O(10); this only keeps a wild sensor
            // reading from overflowing the network.
            obs_clip: 1.0e4,
            act_low: low,
            act_high: high,
            squash: Squash::Tanh,
            actor,
            extra_networks: Vec::new(),
        }
    }

    /// The runtime's layers for actor parameters `params` (laid out as the actor's).
    pub(super) fn actor_layers(&self, params: &[f32]) -> Vec<DenseSpec> {
        let n = self.actor.num_layers();
        (0..n)
            .map(|i| {
                // The actor has no spectral normalisation, so its stored weights are the weights.
                let (w, bias) = self.actor.layer_ranges(i);
                let (w, bias) = (&params[w], &params[bias]);
                let (in_dim, mut out_dim) = (w.len() / bias.len(), bias.len());
                let last = i + 1 == n;
                if last {
                    // Keep the mean rows; the log-std rows are only for exploration.
                    out_dim = self.act_dim;
                }
                DenseSpec {
                    in_dim,
                    out_dim,
                    weight: w[..in_dim * out_dim].to_vec(),
                    bias: bias[..out_dim].to_vec(),
                    activation: if last {
                        RtActivation::Identity
                    } else {
                        RtActivation::Relu
                    },
                }
            })
            .collect()
    }

    pub fn save(&self) -> Result<Vec<u8>, KeelError> {
        let st = LearnerState {
            actor: self.actor.params().into_owned(),
            actor_avg: self.actor_avg.as_ref().map(|a| a.params().into_owned()),
            actor_opt: self.actor_opt.state(),
            q: [
                self.q[0].params().into_owned(),
                self.q[1].params().into_owned(),
            ],
            q_target: [
                self.q_target[0].params().into_owned(),
                self.q_target[1].params().into_owned(),
            ],
            q_opt: [self.q_opt[0].state(), self.q_opt[1].state()],
            log_alpha: self.log_alpha,
            alpha_adam: self.alpha_adam,
            updates: self.updates,
            noise: self.noise.state().to_vec(),
        };
        let added = LearnerStateAdded {
            q_spectral: [self.q[0].spectral_state(), self.q[1].spectral_state()],
            q_target_spectral: [
                self.q_target[0].spectral_state(),
                self.q_target[1].spectral_state(),
            ],
            state_std: self.state_std.clone(),
        };
        let ser =
            |e: postcard::Error| KeelError::internal(format!("cannot serialize learner: {e}"));
        crate::checkpoint::to_bytes_with_added(&st, &added).map_err(ser)
    }

    pub fn load(&mut self, bytes: &[u8]) -> Result<(), KeelError> {
        let bad =
            |what: &str| KeelError::usage(format!("checkpoint does not match this config: {what}"));
        let corrupt = |e: postcard::Error| KeelError::usage(format!("corrupt learner state: {e}"));
        let (st, added): (LearnerState, Option<LearnerStateAdded>) =
            crate::checkpoint::from_bytes_with_added(bytes).map_err(corrupt)?;
        if st.actor.len() != self.actor.params().len() || st.q[0].len() != self.q[0].params().len()
        {
            return Err(bad("network sizes differ"));
        }
        self.actor.load_params(&st.actor);
        match (&mut self.actor_avg, st.actor_avg) {
            (Some(avg), Some(saved)) if saved.len() == avg.num_params() => avg.load_params(&saved),
            (None, None) => {}
            _ => return Err(bad("deployed policy average")),
        }
        self.actor_opt
            .load_state(st.actor_opt)
            .map_err(|_| bad("actor optimizer"))?;
        for k in 0..2 {
            self.q[k].load_params(&st.q[k]);
            self.q_target[k].load_params(&st.q_target[k]);
            match &added {
                Some(a) => {
                    let nets = [(&mut self.q[k], &a.q_spectral[k])];
                    let targets = [(&mut self.q_target[k], &a.q_target_spectral[k])];
                    for (net, saved) in nets.into_iter().chain(targets) {
                        match (net.spectral_state(), saved) {
                            (None, None) => {}
                            (Some(_), Some(saved)) => net
                                .load_spectral_state(saved)
                                .map_err(|e| bad(&format!("critic {e}")))?,
                            _ => return Err(bad("critic spectral norm on/off")),
                        }
                    }
                }
                // A checkpoint from before the vectors were kept: re-converge them.
                None => {
                    self.q[k].spectral_iterate(crate::nn::SPECTRAL_INIT_ITERATIONS);
                    self.q_target[k].spectral_iterate(crate::nn::SPECTRAL_INIT_ITERATIONS);
                }
            }
        }
        let [s0, s1] = st.q_opt;
        self.q_opt[0]
            .load_state(s0)
            .map_err(|_| bad("critic optimizer"))?;
        self.q_opt[1]
            .load_state(s1)
            .map_err(|_| bad("critic optimizer"))?;
        if let Some(a) = &added {
            if a.state_std.len() != self.state_std.len() {
                return Err(bad("robust loss state std size"));
            }
            self.state_std.clone_from(&a.state_std);
        }
        self.log_alpha = st.log_alpha;
        self.alpha_adam = st.alpha_adam;
        self.updates = st.updates;
        if !self.noise.load_state(st.noise) {
            return Err(bad("exploration noise size"));
        }
        Ok(())
    }
}
