//! The dynamics model's configuration, with defaults sized for small tasks (Pendulum).

use serde::{Deserialize, Serialize};

use crate::nn::Activation;

/// What the network's output layer predicts per target dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelHead {
    /// The mean only, trained by MSE; rollouts use the mean (the seed paper's single model).
    Deterministic,
    /// Mean and bounded log-variance (PETS soft clamps), trained by Gaussian NLL; rollouts
    /// sample from it (MBPO's probabilistic ensemble).
    Gaussian,
}

/// Hyperparameters of [`super::DynamicsModel`]. Every field has a default (see
/// [`ModelConfig::default`]), so a TOML table only names what it changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Hidden layer widths. Default `[128, 128, 128]`: MBPO's 4x200 costs ~2.7x more per
    /// retrain and per predicted row, for accuracy Pendulum does not need (see the table in the
    /// `model` module's documentation).
    pub hidden: Vec<usize>,
    /// Activation after every hidden layer (MBPO: SiLU/swish).
    pub activation: Activation,
    /// Deterministic (MSE) or Gaussian (NLL) output head. Default deterministic: the method of
    /// docs/algorithm.md uses one deterministic model. Stochastic plants need the Gaussian one
    /// (fishery3's default, see `MbpoConfig::for_env`).
    pub head: ModelHead,
    /// Number of networks N (1 = single model). MBPO's baseline: 7.
    pub ensemble_size: usize,
    /// Number of elites E <= N, chosen by holdout MSE after each retrain; rollouts draw a
    /// random elite per row. MBPO's baseline: 5.
    pub elites: usize,
    /// Adam learning rate (MBPO: 1e-3).
    pub lr: f32,
    /// L2 weight decay of each linear layer's weights (biases are not decayed), one factor per
    /// linear layer (`hidden.len() + 1`), or a single factor for all. MBPO's 4x200 model uses
    /// 2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4; the default for 3 hidden layers drops one 7.5e-5.
    pub weight_decay: Vec<f32>,
    /// Minibatch size per member (MBPO: 256).
    pub batch_size: usize,
    /// Fraction of the data held out for early stopping and elite selection (MBPO: 0.2; 0.1
    /// here because small tasks retrain on a few hundred transitions).
    pub holdout_ratio: f32,
    /// Upper bound on the holdout size (MBPO: 5000).
    pub max_holdout: usize,
    /// Stop after this many epochs in which no member improved its holdout MSE by more than
    /// `improvement_threshold` (relative), then restore each member's best weights (MBPO: 5;
    /// 0 acts as 1).
    pub patience: usize,
    /// Relative holdout improvement that counts as progress (MBPO: 0.01).
    pub improvement_threshold: f32,
    /// Upper bound on epochs per retrain (an epoch is one pass over each member's training
    /// set), so a retrain has a bounded cost (on 1000 Pendulum transitions the 1% rule rarely
    /// stops a 3x128 model before 40). 0 only evaluates (re-selects elites).
    pub max_epochs: usize,
    /// Whether the network also predicts the reward. MBPO turns it off by itself when the env
    /// supplies a closed-form `reward_fn` (Pendulum does: a smaller output and no reward
    /// error); a plant without one needs it on.
    pub predict_reward: bool,
    /// With N > 1, train each member on its own bootstrap resample of the training split
    /// (MBPO); otherwise (and always for N = 1) each member sees its own shuffle of all of it.
    pub bootstrap: bool,
    /// Upper bound of the Gaussian head's log-variance (normalized target units; PETS'
    /// initial value 0.5). Fixed, not learned: PETS learns it with a small penalty, but with
    /// normalized targets a fixed bound is as good and has no extra hyperparameter.
    pub max_logvar: f32,
    /// Lower bound of the Gaussian head's log-variance (PETS' initial value -10).
    pub min_logvar: f32,
}

impl Default for ModelConfig {
    /// A single deterministic 3x128 SiLU model, MBPO's optimizer settings, holdout 10% (max
    /// 5000), patience 5, at most 40 epochs per retrain.
    fn default() -> Self {
        Self {
            hidden: vec![128, 128, 128],
            activation: Activation::Silu,
            head: ModelHead::Deterministic,
            ensemble_size: 1,
            elites: 1,
            lr: 1e-3,
            weight_decay: vec![2.5e-5, 5e-5, 7.5e-5, 1e-4],
            batch_size: 256,
            holdout_ratio: 0.1,
            max_holdout: 5000,
            patience: 5,
            improvement_threshold: 0.01,
            max_epochs: 40,
            predict_reward: true,
            bootstrap: true,
            max_logvar: 0.5,
            min_logvar: -10.0,
        }
    }
}

impl ModelConfig {
    /// MBPO's baseline on top of `self`: a probabilistic ensemble of 7 with 5 elites.
    pub fn mbpo_ensemble(self) -> Self {
        Self {
            head: ModelHead::Gaussian,
            ensemble_size: 7,
            elites: 5,
            ..self
        }
    }

    /// The weight decay of each linear layer (a single factor is broadcast).
    pub fn layer_decays(&self) -> Vec<f32> {
        let n = self.hidden.len() + 1;
        match self.weight_decay.as_slice() {
            [] => vec![0.0; n],
            [wd] => vec![*wd; n],
            wds => wds.to_vec(),
        }
    }

    /// Checks the fields against each other; the message names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        let n_lin = self.hidden.len() + 1;
        if self.hidden.contains(&0) {
            return Err("model.hidden: widths must be > 0".into());
        }
        if self.ensemble_size == 0 {
            return Err("model.ensemble_size must be >= 1".into());
        }
        if self.elites == 0 || self.elites > self.ensemble_size {
            return Err(format!(
                "model.elites must be in 1..={} (ensemble_size), got {}",
                self.ensemble_size, self.elites
            ));
        }
        if self.weight_decay.len() > 1 && self.weight_decay.len() != n_lin {
            return Err(format!(
                "model.weight_decay: {} factors for {} linear layers (give one per layer, or one)",
                self.weight_decay.len(),
                n_lin
            ));
        }
        if self
            .weight_decay
            .iter()
            .any(|w| !(w.is_finite() && *w >= 0.0))
        {
            return Err("model.weight_decay: factors must be finite and >= 0".into());
        }
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            return Err("model.lr must be finite and >= 0".into());
        }
        if self.batch_size == 0 {
            return Err("model.batch_size must be >= 1".into());
        }
        if !(0.0..1.0).contains(&self.holdout_ratio) {
            return Err("model.holdout_ratio must be in [0, 1)".into());
        }
        if !(self.min_logvar.is_finite() && self.max_logvar.is_finite())
            || self.min_logvar >= self.max_logvar
        {
            return Err("model: need finite min_logvar < max_logvar".into());
        }
        Ok(())
    }
}
