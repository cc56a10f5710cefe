//! The forward and backward passes of an [`Mlp`](super::Mlp) over its flat buffers, and the
//! spectral-norm schedule (see `mlp.rs` for when the power iteration advances).

use core::sync::atomic::{AtomicU64, Ordering};

use rand::Rng;
use rand_distr::{Distribution, StandardNormal, Uniform};

use super::backend::{Backend, Mat, MatMut, SpectralSlot};
use super::cache::{CacheState, ForwardCache};
use super::mlp::{MlpConfig, SPECTRAL_INIT_ITERATIONS};
use super::Activation;

/// Which gradients a backward pass computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backprop {
    /// Accumulate parameter gradients only.
    Params,
    /// Only dL/d(input) (e.g. the actor's dQ/da, FGSM's dQ/ds); parameter gradients untouched.
    Input,
    /// Both.
    ParamsAndInput,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Layer {
    pub inp: usize,
    pub out: usize,
    /// Offset of `W` (`out x in`) in the flat parameters.
    pub w: usize,
    /// Offset of `b` (`out`).
    pub b: usize,
    pub act: Activation,
    /// Spectral-norm state slot and offset of `W_sn` in the effective-weights buffer.
    pub sn: Option<(SpectralSlot, usize)>,
}

/// Process-unique network ids, so a cache cannot be backpropagated through another network.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Everything but the built-in caches (split out so methods can borrow a cache mutably beside it).
#[derive(Debug)]
pub(super) struct Core<B: Backend> {
    pub backend: B,
    pub layers: Vec<Layer>,
    pub n_params: usize,
    pub params: B::Buf,
    pub grads: B::Buf,
    /// `u`, `v`, `sigma` of every spectrally normalized layer.
    pub sn_state: B::Buf,
    /// `W_sn` of every spectrally normalized layer.
    pub weff: B::Buf,
    /// dL/dW_sn of one layer, before the spectral-norm backward.
    pub sn_scratch: B::Buf,
    pub id: u64,
    /// Bumped whenever the parameters change.
    pub param_version: u64,
    /// Bumped whenever the parameters or any `W_sn` change: what caches are checked against.
    pub eff_version: u64,
    /// `param_version` at the last power-iteration step / `W_sn` refresh.
    pub sn_iterated: Option<u64>,
    pub sn_fresh: Option<u64>,
}

impl<B: Backend> Clone for Core<B> {
    fn clone(&self) -> Self {
        Self {
            backend: self.backend.clone(),
            layers: self.layers.clone(),
            params: self.params.clone(),
            grads: self.grads.clone(),
            sn_state: self.sn_state.clone(),
            weff: self.weff.clone(),
            sn_scratch: self.sn_scratch.clone(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            ..*self
        }
    }
}

impl<B: Backend> Core<B> {
    /// Lays out and initializes the parameters (see [`Mlp::new`]).
    pub fn new<R: Rng + ?Sized>(backend: &B, cfg: &MlpConfig, rng: &mut R) -> Self {
        assert!(
            cfg.sizes.len() >= 2,
            "an MLP needs an input and an output size"
        );
        assert!(cfg.sizes.iter().all(|&s| s > 0), "layer sizes must be > 0");
        let (mut layers, mut n, mut n_state, mut n_eff, mut scratch) = (Vec::new(), 0, 0, 0, 0);
        for (i, w) in cfg.sizes.windows(2).enumerate() {
            let (inp, out) = (w[0], w[1]);
            let sn = cfg.spectral_norm_layer(i).then(|| {
                let slot = SpectralSlot {
                    offset: n_state,
                    rows: out,
                    cols: inp,
                };
                n_state += SpectralSlot::len(out, inp);
                n_eff += out * inp;
                scratch = usize::max(scratch, out * inp);
                (slot, n_eff - out * inp)
            });
            layers.push(Layer {
                inp,
                out,
                w: n,
                b: n + out * inp,
                act: cfg.activation(i),
                sn,
            });
            n += out * inp + out;
        }
        let mut host = vec![0.0f32; n];
        for l in &layers {
            let bound = 1.0 / (l.inp as f32).sqrt();
            let dist = Uniform::new(-bound, bound).unwrap_or_else(|_| unreachable!("bound > 0"));
            host[l.w..l.b + l.out]
                .iter_mut()
                .for_each(|p| *p = dist.sample(rng));
        }
        let mut state = vec![0.0f32; n_state];
        for (slot, _) in layers.iter().filter_map(|l| l.sn) {
            for r in [slot.u(), slot.v()] {
                let x = &mut state[r];
                x.iter_mut().for_each(|e| *e = StandardNormal.sample(rng));
                let norm = x.iter().map(|e| e * e).sum::<f32>().sqrt().max(1e-12);
                x.iter_mut().for_each(|e| *e /= norm);
            }
        }
        let mut params = backend.alloc(n);
        backend.upload(&mut params, 0, &host);
        let mut sn_state = backend.alloc(n_state);
        backend.upload(&mut sn_state, 0, &state);
        let mut core = Self {
            backend: backend.clone(),
            layers,
            n_params: n,
            params,
            grads: backend.alloc(n),
            sn_state,
            weff: backend.alloc(n_eff),
            sn_scratch: backend.alloc(scratch),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            param_version: 0,
            eff_version: 0,
            sn_iterated: None,
            sn_fresh: None,
        };
        if core.has_sn() {
            for _ in 0..SPECTRAL_INIT_ITERATIONS {
                core.spectral(true);
            }
            // The first training forward still takes its own step.
            core.sn_iterated = None;
        }
        core
    }

    pub fn has_sn(&self) -> bool {
        self.layers.iter().any(|l| l.sn.is_some())
    }

    /// The weight a layer's GEMMs use: `W_sn` or `W`.
    fn weight<'a>(params: &'a B::Buf, weff: &'a B::Buf, l: &Layer) -> Mat<'a, B::Buf> {
        match l.sn {
            Some((_, off)) => Mat::new(weff, off, l.out, l.inp),
            None => Mat::new(params, l.w, l.out, l.inp),
        }
    }

    /// Parameters changed: every cache and every `W_sn` is stale.
    pub fn touch(&mut self) {
        self.param_version += 1;
        self.eff_version += 1;
    }

    /// Recomputes every `W_sn`, after one power-iteration step if `iterate`.
    pub fn spectral(&mut self, iterate: bool) {
        for l in &self.layers {
            if let Some((slot, off)) = l.sn {
                self.backend.spectral_step(
                    Mat::new(&self.params, l.w, l.out, l.inp),
                    &mut self.sn_state,
                    slot,
                    MatMut::new(&mut self.weff, off, l.out, l.inp),
                    iterate,
                );
            }
        }
        if iterate {
            self.sn_iterated = Some(self.param_version);
        }
        self.sn_fresh = Some(self.param_version);
        self.eff_version += 1;
    }

    /// Brings `W_sn` up to date for a forward pass (see the module documentation).
    pub fn prepare(&mut self, train: bool) {
        if !self.has_sn() {
            return;
        }
        if train && self.sn_iterated != Some(self.param_version) {
            self.spectral(true);
        } else if self.sn_fresh != Some(self.param_version) {
            self.spectral(false);
        }
    }

    pub fn check_cache(&self, cache: &ForwardCache<B>) {
        let fits = cache.sizes.len() == self.layers.len() + 1
            && cache.sizes.first() == self.layers.first().map(|l| l.inp).as_ref()
            && cache
                .sizes
                .iter()
                .skip(1)
                .zip(&self.layers)
                .all(|(&w, l)| w == l.out);
        assert!(fits, "this cache was made for a network of another shape");
    }

    pub fn forward(&mut self, cache: &mut ForwardCache<B>, x: &[f32], batch: usize, train: bool) {
        self.prepare(train);
        self.forward_prepared(cache, x, batch, train);
    }

    /// [`Core::forward`] after [`Core::prepare`]: it reads the network only, so two of these
    /// may run at once on different caches.
    pub fn forward_prepared(
        &self,
        cache: &mut ForwardCache<B>,
        x: &[f32],
        batch: usize,
        train: bool,
    ) {
        self.check_cache(cache);
        assert!(
            batch >= 1 && batch <= cache.max_batch,
            "batch {batch} outside 1..={} (make a bigger cache with new_cache)",
            cache.max_batch
        );
        let inp = cache.sizes.first().copied().unwrap_or(0);
        assert_eq!(x.len(), batch * inp, "input is not batch x {inp}");
        let b = &self.backend;
        b.upload(&mut cache.x, 0, x);
        for (l, layer) in self.layers.iter().enumerate() {
            let (done, rest) = cache.out.split_at_mut(l);
            let input = done.last().unwrap_or(&cache.x);
            let Some(out) = rest.first_mut() else { break };
            b.gemm(
                1.0,
                Mat::new(input, 0, batch, layer.inp),
                Self::weight(&self.params, &self.weff, layer).t(),
                0.0,
                MatMut::new(out, 0, batch, layer.out),
            );
            let pre = cache.pre.get_mut(l).and_then(Option::as_mut);
            b.bias_act_forward(out, pre, batch, layer.out, &self.params, layer.b, layer.act);
        }
        cache.batch = batch;
        cache.dx_valid = false;
        cache.state = if train {
            CacheState::Train {
                owner: self.id,
                eff_version: self.eff_version,
            }
        } else {
            CacheState::Infer
        };
    }

    pub fn backward(
        &mut self,
        cache: &mut ForwardCache<B>,
        dy: &[f32],
        batch: usize,
        mode: Backprop,
    ) {
        match cache.state {
            CacheState::Train { owner, eff_version } if owner == self.id => assert!(
                eff_version == self.eff_version,
                "backward: the (effective) weights changed since this cache's forward pass"
            ),
            CacheState::Train { .. } => panic!("backward: the cache was filled by another network"),
            CacheState::Infer => panic!("backward after an inference forward (predict)"),
            CacheState::Empty => panic!("backward before any forward"),
        }
        assert_eq!(
            batch, cache.batch,
            "backward: batch differs from the forward pass's"
        );
        let out_dim = cache.sizes.last().copied().unwrap_or(0);
        assert_eq!(dy.len(), batch * out_dim, "dy is not batch x {out_dim}");
        let want_params = mode != Backprop::Input;
        let want_input = mode != Backprop::Params;
        let b = &self.backend;
        b.upload(&mut cache.d[0], 0, dy);
        cache.dx_valid = false;
        let mut cur = 0;
        for (l, layer) in self.layers.iter().enumerate().rev() {
            let [d0, d1] = &mut cache.d;
            let (dz, dnext) = if cur == 0 { (d0, d1) } else { (d1, d0) };
            b.act_backward(
                dz,
                &cache.out[l],
                cache.pre[l].as_ref(),
                batch,
                layer.out,
                layer.act,
                want_params.then_some((&mut self.grads, layer.b)),
            );
            let input = if l == 0 { &cache.x } else { &cache.out[l - 1] };
            let input = Mat::new(input, 0, batch, layer.inp);
            let dz_t = Mat::new(&*dz, 0, batch, layer.out).t();
            let shape = (layer.out, layer.inp);
            let (grads, sn_scratch) = (&mut self.grads, &mut self.sn_scratch);
            let (weff, sn_state) = (&self.weff, &self.sn_state);
            // The weight gradient and the input gradient of a layer are independent GEMMs.
            let mut weight_grad = move || match (want_params, layer.sn) {
                (false, _) => {}
                (true, None) => {
                    let g = MatMut::new(grads, layer.w, shape.0, shape.1);
                    b.gemm(1.0, dz_t, input, 1.0, g);
                }
                (true, Some((slot, off))) => {
                    let scratch = MatMut::new(sn_scratch, 0, shape.0, shape.1);
                    b.gemm(1.0, dz_t, input, 0.0, scratch);
                    b.spectral_backward(
                        Mat::new(sn_scratch, 0, shape.0, shape.1),
                        Mat::new(weff, off, shape.0, shape.1),
                        sn_state,
                        slot,
                        MatMut::new(grads, layer.w, shape.0, shape.1),
                    );
                }
            };
            let w = Self::weight(&self.params, weff, layer);
            let dz = Mat::new(&*dz, 0, batch, layer.out);
            let dx_out = if l > 0 {
                cur ^= 1;
                Some(dnext)
            } else if want_input {
                cache.dx_valid = true;
                Some(&mut cache.dx)
            } else {
                None
            };
            match dx_out {
                Some(out) => b.join(weight_grad, || {
                    b.gemm(1.0, dz, w, 0.0, MatMut::new(out, 0, batch, layer.inp));
                }),
                None => weight_grad(),
            }
        }
    }
}
