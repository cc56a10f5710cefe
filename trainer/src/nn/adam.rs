//! Adam with L2-style weight decay per tensor, global gradient-norm clipping, over a network's
//! flat parameter buffer.
//!
//! The moments are flat buffers of the parameters' layout, so one update is one
//! [`Backend::adam`] launch per run of tensors with equal decay (a single launch unless decay
//! differs by layer). Per-layer decay exists for dynamics models (MBPO decays its four hidden
//! layers by 2.5e-5 .. 1e-4).

use core::ops::Range;

use serde::{Deserialize, Serialize};

use super::backend::{AdamHyper, Backend};
use super::Mlp;

/// L2-style weight decay (`g += decay * theta`, coupled, as `torch.optim.Adam(weight_decay)`;
/// not AdamW's decoupled form).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightDecay {
    #[default]
    None,
    /// The same factor on every tensor, biases included (PyTorch's behaviour).
    All(f32),
    /// Factor for each layer's weight matrix, one per linear layer; biases are not decayed
    /// (MBPO's per-layer L2 losses on weights).
    PerLayer(Vec<f32>),
}

/// Adam's hyperparameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: WeightDecay,
    /// Rescale all gradients of the network so their global Euclidean norm is at most this.
    pub max_grad_norm: Option<f32>,
}

impl Default for AdamConfig {
    /// SAC's defaults: lr 3e-4, betas (0.9, 0.999), eps 1e-8, no decay, no clipping.
    fn default() -> Self {
        Self {
            lr: 3e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: WeightDecay::None,
            max_grad_norm: None,
        }
    }
}

/// Adam's state for one network.
#[derive(Clone, Debug)]
pub struct Adam<B: Backend> {
    cfg: AdamConfig,
    backend: B,
    m: B::Buf,
    v: B::Buf,
    n: usize,
    t: u64,
    /// Maximal runs of the flat parameters with one decay factor.
    segments: Vec<(Range<usize>, f32)>,
}

impl<B: Backend> Adam<B> {
    /// Zeroed moments shaped like `net`'s parameters.
    ///
    /// # Panics
    /// If `PerLayer` decay does not have one factor per layer.
    pub fn new(net: &Mlp<B>, cfg: AdamConfig) -> Self {
        let n = net.num_params();
        let mut segments: Vec<(Range<usize>, f32)> = Vec::new();
        let mut push = |r: Range<usize>, wd: f32| match segments.last_mut() {
            Some((last, d)) if *d == wd && last.end == r.start => last.end = r.end,
            _ => segments.push((r, wd)),
        };
        match &cfg.weight_decay {
            WeightDecay::None => push(0..n, 0.0),
            WeightDecay::All(wd) => push(0..n, *wd),
            WeightDecay::PerLayer(wds) => {
                assert_eq!(
                    wds.len(),
                    net.num_layers(),
                    "PerLayer decay needs one factor per layer"
                );
                for (i, &wd) in wds.iter().enumerate() {
                    let (w, b) = net.layer_ranges(i);
                    push(w, wd);
                    push(b, 0.0);
                }
            }
        }
        let backend = net.backend().clone();
        Self {
            m: backend.alloc(n),
            v: backend.alloc(n),
            backend,
            cfg,
            n,
            t: 0,
            segments,
        }
    }

    pub fn config(&self) -> &AdamConfig {
        &self.cfg
    }

    /// Changes the learning rate (schedules).
    pub fn set_lr(&mut self, lr: f32) {
        self.cfg.lr = lr;
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.t
    }

    /// Forgets the moments and the step count (e.g. before retraining a model from scratch).
    pub fn reset(&mut self) {
        self.backend.fill(&mut self.m, 0..self.n, 0.0);
        self.backend.fill(&mut self.v, 0..self.n, 0.0);
        self.t = 0;
    }

    /// One update of `net` from its accumulated gradients (clipped first when configured).
    /// Returns the gradient norm before clipping when clipping is configured.
    pub fn step(&mut self, net: &mut Mlp<B>) -> Option<f32> {
        assert_eq!(
            net.num_params(),
            self.n,
            "Adam::step: not the network it was made for"
        );
        let norm = self.cfg.max_grad_norm.map(|max| clip_grad_norm(net, max));
        self.t += 1;
        let t = i32::try_from(self.t).unwrap_or(i32::MAX);
        let mut hyper = AdamHyper {
            lr: self.cfg.lr,
            beta1: self.cfg.beta1,
            beta2: self.cfg.beta2,
            eps: self.cfg.eps,
            weight_decay: 0.0,
            bias_correction1: 1.0 - self.cfg.beta1.powi(t),
            bias_correction2: 1.0 - self.cfg.beta2.powi(t),
        };
        let core = &mut net.core;
        for (range, wd) in &self.segments {
            hyper.weight_decay = *wd;
            self.backend.adam(
                &mut core.params,
                &core.grads,
                &mut self.m,
                &mut self.v,
                range.clone(),
                &hyper,
            );
        }
        core.touch();
        norm
    }
}

/// Scales `net`'s gradients so their global Euclidean norm is at most `max_norm` (PyTorch's
/// `clip_grad_norm_`: factor `max_norm / (norm + 1e-6)` when that is below 1). Returns the norm
/// before clipping.
pub fn clip_grad_norm<B: Backend>(net: &mut Mlp<B>, max_norm: f32) -> f32 {
    let norm = net.grad_norm();
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        net.scale_grads(coef);
    }
    norm
}

/// Adam's moments and step count, for checkpoints.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AdamState {
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    pub t: u64,
}

impl AdamState {
    /// Copies `n` moments of each buffer and the step count `t` to the host.
    pub(crate) fn download<B: Backend>(b: &B, m: &B::Buf, v: &B::Buf, n: usize, t: u64) -> Self {
        let (mut hm, mut hv) = (vec![0.0; n], vec![0.0; n]);
        b.download(m, 0, &mut hm);
        b.download(v, 0, &mut hv);
        Self { m: hm, v: hv, t }
    }

    /// Uploads the moments into buffers of `n` values and returns the step count; an error if
    /// the state belongs to an optimizer of another size.
    pub(crate) fn upload<B: Backend>(
        &self,
        b: &B,
        m: &mut B::Buf,
        v: &mut B::Buf,
        n: usize,
    ) -> Result<u64, String> {
        if self.m.len() != n || self.v.len() != n {
            return Err(format!(
                "optimizer state has {} moments, the network has {n} parameters",
                self.m.len()
            ));
        }
        b.upload(m, 0, &self.m);
        b.upload(v, 0, &self.v);
        Ok(self.t)
    }
}

impl<B: Backend> Adam<B> {
    /// The moments and step count (copied to the host).
    pub fn state(&self) -> AdamState {
        AdamState::download(&self.backend, &self.m, &self.v, self.n, self.t)
    }

    /// Restores a state taken from an optimizer of the same network shape.
    pub fn load_state(&mut self, st: AdamState) -> Result<(), String> {
        self.t = st.upload(&self.backend, &mut self.m, &mut self.v, self.n)?;
        Ok(())
    }
}
