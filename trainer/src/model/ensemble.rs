//! N MLPs of one shape evaluated as one batched computation.
//!
//! Why not N [`crate::nn::Mlp`]s: an MBPO ensemble trains and predicts all members on every
//! step, and on a GPU that is one strided-batched GEMM per layer instead of N small launches.
//! The layout here is the one such a GEMM reads, so a GPU backend only has to replace the
//! per-member loops below with `gemmStridedBatched`:
//! - parameters: one flat buffer, layer by layer, `[W_l: N x out x in][b_l: N x out]` (member
//!   `k`'s `W_l` at `w_l + k*out*in`), gradients and Adam moments likewise; each layer's
//!   weights of all members are one contiguous range, so per-layer weight decay is one Adam
//!   launch per layer;
//! - activations: `[N, rows, width]` row-major, member `k`'s rows at `k*rows*width`;
//! - inputs: `[N, rows, in]` (training: every member its own minibatch), or one `[rows, in]`
//!   matrix shared by all members (prediction: a member stride of 0).
//!
//! Biases are broadcast and reduced by rank-1 GEMMs with a ones vector (they differ per member,
//! while the fused `bias_act_forward`/`act_backward` kernels take one bias for all rows), so the
//! activation kernels run once over all `N * rows` rows with a zero bias. N = 1 is a plain MLP
//! through the same code.

use core::ops::Range;

use rand::Rng;
use rand_distr::{Distribution, Uniform};

use crate::nn::{Activation, AdamHyper, AdamState, Backend, Mat, MatMut};

#[derive(Clone, Copy, Debug)]
struct Layer {
    inp: usize,
    out: usize,
    /// Offset of member 0's `W` (all members' follow, `out x in` each).
    w: usize,
    /// Offset of member 0's `b` (all members' follow).
    b: usize,
    act: Activation,
}

/// The parameters of an ensemble of `members` MLPs of widths `sizes`.
#[derive(Clone, Debug)]
pub struct EnsembleMlp<B: Backend> {
    backend: B,
    members: usize,
    sizes: Vec<usize>,
    layers: Vec<Layer>,
    n_params: usize,
    pub(super) params: B::Buf,
    pub(super) grads: B::Buf,
    /// All ones, `ones_len` long: the rank-1 GEMM operand for bias broadcast and reduction.
    ones: B::Buf,
    ones_len: usize,
    /// Zeros, the widest layer long: the bias of the fused activation kernels.
    zeros: B::Buf,
}

/// Activations of one forward pass (and backward scratch) for up to `max_rows` rows per member.
#[derive(Clone, Debug)]
pub struct EnsembleCache<B: Backend> {
    max_rows: usize,
    /// Rows per member of the last forward pass.
    rows: usize,
    /// Members the last forward pass computed, in slot order.
    members: Vec<usize>,
    shared_input: bool,
    x: B::Buf,
    out: Vec<B::Buf>,
    pre: Vec<Option<B::Buf>>,
    d: [B::Buf; 2],
    staging: Vec<f32>,
}

impl<B: Backend> EnsembleCache<B> {
    /// Rows per member the cache holds.
    pub fn max_rows(&self) -> usize {
        self.max_rows
    }
}

impl<B: Backend> EnsembleMlp<B> {
    /// `members` networks of widths `sizes` (input first), `hidden` after every hidden layer and
    /// no output activation, each initialized as PyTorch's `nn.Linear`: uniform in
    /// `+-1/sqrt(fan_in)`.
    pub fn new<R: Rng + ?Sized>(
        backend: &B,
        members: usize,
        sizes: &[usize],
        hidden: Activation,
        rng: &mut R,
    ) -> Self {
        assert!(members >= 1, "an ensemble needs a member");
        assert!(
            sizes.len() >= 2 && sizes.iter().all(|&s| s > 0),
            "bad layer sizes {sizes:?}"
        );
        let mut layers = Vec::new();
        let mut n = 0;
        for (i, win) in sizes.windows(2).enumerate() {
            let (inp, out) = (win[0], win[1]);
            let act = if i + 2 == sizes.len() {
                Activation::Identity
            } else {
                hidden
            };
            let w = n;
            let b = w + members * out * inp;
            layers.push(Layer {
                inp,
                out,
                w,
                b,
                act,
            });
            n = b + members * out;
        }
        let mut host = vec![0.0f32; n];
        for l in &layers {
            let bound = 1.0 / (l.inp as f32).sqrt();
            let dist = Uniform::new(-bound, bound).unwrap_or_else(|_| unreachable!("bound > 0"));
            for k in 0..members {
                let ranges = [Self::w_range(l, k), Self::b_range(l, k)];
                for r in ranges {
                    host[r].iter_mut().for_each(|p| *p = dist.sample(rng));
                }
            }
        }
        let mut params = backend.alloc(n);
        backend.upload(&mut params, 0, &host);
        let widest = sizes.iter().copied().max().unwrap_or(1);
        Self {
            backend: backend.clone(),
            members,
            sizes: sizes.to_vec(),
            layers,
            n_params: n,
            params,
            grads: backend.alloc(n),
            ones: backend.alloc(0),
            ones_len: 0,
            zeros: backend.alloc(widest),
        }
    }

    fn w_range(l: &Layer, k: usize) -> Range<usize> {
        let n = l.out * l.inp;
        l.w + k * n..l.w + (k + 1) * n
    }

    fn b_range(l: &Layer, k: usize) -> Range<usize> {
        l.b + k * l.out..l.b + (k + 1) * l.out
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }
    pub fn members(&self) -> usize {
        self.members
    }
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }
    pub fn in_dim(&self) -> usize {
        self.sizes[0]
    }
    pub fn out_dim(&self) -> usize {
        self.sizes[self.sizes.len() - 1]
    }
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }
    /// Length of the flat parameter buffer (all members).
    pub fn num_params(&self) -> usize {
        self.n_params
    }

    /// Range of layer `i`'s weights of all members (for per-layer decay).
    pub fn layer_weight_range(&self, i: usize) -> Range<usize> {
        let l = &self.layers[i];
        l.w..l.b
    }

    /// Range of layer `i`'s biases of all members.
    pub fn layer_bias_range(&self, i: usize) -> Range<usize> {
        let l = &self.layers[i];
        l.b..l.b + self.members * l.out
    }

    /// Ranges of member `k`'s tensors in the flat buffers, in [`crate::nn::Mlp`]'s order
    /// (`W0, b0, W1, b1, ...`).
    pub fn member_ranges(&self, k: usize) -> Vec<Range<usize>> {
        assert!(k < self.members, "member {k} of {}", self.members);
        self.layers
            .iter()
            .flat_map(|l| [Self::w_range(l, k), Self::b_range(l, k)])
            .collect()
    }

    /// All parameters (layout of the module documentation), e.g. for checkpoints.
    pub fn params(&self) -> Vec<f32> {
        self.backend
            .to_host(&self.params, 0..self.n_params)
            .into_owned()
    }

    /// Replaces all parameters.
    pub fn load_params(&mut self, src: &[f32]) {
        assert_eq!(src.len(), self.n_params, "load_params: wrong length");
        self.backend.upload(&mut self.params, 0, src);
    }

    /// Member `k`'s parameters in [`crate::nn::Mlp::params`]'s layout (`[W0, b0, W1, ...]`).
    pub fn member_params(&self, k: usize) -> Vec<f32> {
        let host = self.backend.to_host(&self.params, 0..self.n_params);
        self.member_ranges(k)
            .into_iter()
            .flat_map(|r| host[r].to_vec())
            .collect()
    }

    /// Sets member `k`'s parameters from [`crate::nn::Mlp::params`]'s layout.
    pub fn load_member_params(&mut self, k: usize, src: &[f32]) {
        let mut at = 0;
        for r in self.member_ranges(k) {
            let len = r.len();
            self.backend
                .upload(&mut self.params, r.start, &src[at..at + len]);
            at += len;
        }
        assert_eq!(at, src.len(), "load_member_params: wrong length");
    }

    /// Copies member `k`'s parameters from `src` (same layout) into `dst`: per-member best
    /// weights for early stopping.
    pub(super) fn copy_member(&self, src: &B::Buf, dst: &mut B::Buf, k: usize) {
        for r in self.member_ranges(k) {
            self.backend.copy(src, r.start, dst, r.start, r.len());
        }
    }

    /// A cache for up to `max_rows` rows per member, all members.
    pub fn new_cache(&self, max_rows: usize) -> EnsembleCache<B> {
        let (b, n) = (&self.backend, self.members);
        let max_rows = max_rows.max(1);
        let widest = self.sizes.iter().skip(1).copied().max().unwrap_or(1);
        EnsembleCache {
            max_rows,
            rows: 0,
            members: Vec::new(),
            shared_input: false,
            x: b.alloc(n * max_rows * self.in_dim()),
            out: self
                .layers
                .iter()
                .map(|l| b.alloc(n * max_rows * l.out))
                .collect(),
            pre: self
                .layers
                .iter()
                .map(|l| l.act.needs_pre().then(|| b.alloc(n * max_rows * l.out)))
                .collect(),
            d: [
                b.alloc(n * max_rows * widest),
                b.alloc(n * max_rows * widest),
            ],
            staging: Vec::new(),
        }
    }

    fn ensure_ones(&mut self, len: usize) {
        if self.ones_len < len {
            self.ones = self.backend.alloc(len);
            self.backend.fill(&mut self.ones, 0..len, 1.0);
            self.ones_len = len;
        }
    }

    /// Forward pass of the members listed in `members` (slot `j` of the output is member
    /// `members[j]`), `rows` rows each. `x` is `[members.len(), rows, in]`, or one `[rows, in]`
    /// matrix fed to every member when `shared_input`. Returns `[members.len(), rows, out]`.
    pub fn forward<'c>(
        &mut self,
        cache: &'c mut EnsembleCache<B>,
        x: &[f32],
        rows: usize,
        members: &[usize],
        shared_input: bool,
    ) -> &'c [f32] {
        let m = members.len();
        assert!(
            m >= 1 && members.iter().all(|&k| k < self.members),
            "bad members {members:?}"
        );
        assert!(
            rows >= 1 && rows <= cache.max_rows,
            "rows {rows} > cache {}",
            cache.max_rows
        );
        let inp = self.in_dim();
        let x_len = if shared_input {
            rows * inp
        } else {
            m * rows * inp
        };
        assert_eq!(
            x.len(),
            x_len,
            "forward: input is not {}x{rows}x{inp}",
            x_len / rows / inp
        );
        self.ensure_ones(rows);
        let bk = &self.backend;
        bk.upload(&mut cache.x, 0, x);
        for (li, l) in self.layers.iter().enumerate() {
            let (done, rest) = cache.out.split_at_mut(li);
            let (input, in_stride) = match done.last() {
                Some(prev) => (prev, rows * l.inp),
                None if shared_input => (&cache.x, 0),
                None => (&cache.x, rows * l.inp),
            };
            let out = &mut rest[0];
            for (j, &k) in members.iter().enumerate() {
                let o = j * rows * l.out;
                let ones = Mat::new(&self.ones, 0, rows, 1);
                let bias = Mat::new(&self.params, Self::b_range(l, k).start, 1, l.out);
                bk.gemm(1.0, ones, bias, 0.0, MatMut::new(out, o, rows, l.out));
                let xin = Mat::new(input, j * in_stride, rows, l.inp);
                let w = Mat::new(&self.params, Self::w_range(l, k).start, l.out, l.inp);
                bk.gemm(1.0, xin, w.t(), 1.0, MatMut::new(out, o, rows, l.out));
            }
            let pre = cache.pre[li].as_mut();
            bk.bias_act_forward(out, pre, m * rows, l.out, &self.zeros, 0, l.act);
        }
        cache.rows = rows;
        cache.members.clear();
        cache.members.extend_from_slice(members);
        cache.shared_input = shared_input;
        let n = m * rows * self.out_dim();
        match cache.out.last() {
            Some(y) => bk.view(y, 0..n, &mut cache.staging),
            None => &[],
        }
    }

    /// Backward of the last [`EnsembleMlp::forward`] through `cache` given dL/d(output) `dy`
    /// (its shape): accumulates every computed member's parameter gradients (zero them first
    /// with [`EnsembleMlp::zero_grad`]). Input gradients are not computed (no caller needs them).
    pub fn backward(&mut self, cache: &mut EnsembleCache<B>, dy: &[f32]) {
        let (rows, m) = (cache.rows, cache.members.len());
        assert!(rows > 0 && m > 0, "backward before forward");
        assert_eq!(
            dy.len(),
            m * rows * self.out_dim(),
            "backward: dy has the wrong shape"
        );
        self.ensure_ones(rows);
        let bk = &self.backend;
        bk.upload(&mut cache.d[0], 0, dy);
        let mut cur = 0;
        for (li, l) in self.layers.iter().enumerate().rev() {
            let [d0, d1] = &mut cache.d;
            let (dz, dnext) = if cur == 0 { (d0, d1) } else { (d1, d0) };
            let pre = cache.pre[li].as_ref();
            bk.act_backward(dz, &cache.out[li], pre, m * rows, l.out, l.act, None);
            let (input, in_stride) = match li {
                0 if cache.shared_input => (&cache.x, 0),
                0 => (&cache.x, rows * l.inp),
                _ => (&cache.out[li - 1], rows * l.inp),
            };
            for (j, &k) in cache.members.iter().enumerate() {
                let dzk = Mat::new(&*dz, j * rows * l.out, rows, l.out);
                let ones = Mat::new(&self.ones, 0, 1, rows);
                let gb = MatMut::new(&mut self.grads, Self::b_range(l, k).start, 1, l.out);
                bk.gemm(1.0, ones, dzk, 1.0, gb);
                let xin = Mat::new(input, j * in_stride, rows, l.inp);
                let gw = MatMut::new(&mut self.grads, Self::w_range(l, k).start, l.out, l.inp);
                bk.gemm(1.0, dzk.t(), xin, 1.0, gw);
                if li > 0 {
                    let w = Mat::new(&self.params, Self::w_range(l, k).start, l.out, l.inp);
                    let dx = MatMut::new(dnext, j * rows * l.inp, rows, l.inp);
                    bk.gemm(1.0, dzk, w, 0.0, dx);
                }
            }
            cur ^= 1;
        }
    }

    /// Zeroes all gradients.
    pub fn zero_grad(&mut self) {
        self.backend.fill(&mut self.grads, 0..self.n_params, 0.0);
    }

    /// All gradients (layout of [`EnsembleMlp::params`]).
    pub fn grads(&self) -> Vec<f32> {
        self.backend
            .to_host(&self.grads, 0..self.n_params)
            .into_owned()
    }
}

/// Adam over an [`EnsembleMlp`]'s flat buffers with L2 decay per layer on weights only (MBPO's
/// per-layer L2 terms); one [`Backend::adam`] launch per tensor range of all members.
#[derive(Clone, Debug)]
pub struct EnsembleAdam<B: Backend> {
    backend: B,
    /// Learning rate (public so a schedule may change it).
    pub lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    m: B::Buf,
    v: B::Buf,
    n: usize,
    t: u64,
    segments: Vec<(Range<usize>, f32)>,
}

impl<B: Backend> EnsembleAdam<B> {
    /// PyTorch's Adam defaults (betas 0.9, 0.999, eps 1e-8) with learning rate `lr` and one
    /// decay factor per linear layer.
    pub fn new(net: &EnsembleMlp<B>, lr: f32, layer_decay: &[f32]) -> Self {
        assert_eq!(
            layer_decay.len(),
            net.num_layers(),
            "one decay factor per layer"
        );
        let mut segments = Vec::new();
        for (i, &wd) in layer_decay.iter().enumerate() {
            segments.push((net.layer_weight_range(i), wd));
            segments.push((net.layer_bias_range(i), 0.0));
        }
        let (b, n) = (net.backend().clone(), net.num_params());
        Self {
            m: b.alloc(n),
            v: b.alloc(n),
            backend: b,
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            n,
            t: 0,
            segments,
        }
    }

    /// The moments and step count (copied to the host), for checkpoints.
    pub fn state(&self) -> AdamState {
        AdamState::download(&self.backend, &self.m, &self.v, self.n, self.t)
    }

    /// Restores a state taken from an optimizer of the same ensemble shape.
    pub fn load_state(&mut self, st: &AdamState) -> Result<(), String> {
        self.t = st.upload(&self.backend, &mut self.m, &mut self.v, self.n)?;
        Ok(())
    }

    /// One update from the accumulated gradients.
    pub fn step(&mut self, net: &mut EnsembleMlp<B>) {
        assert_eq!(
            net.num_params(),
            self.n,
            "EnsembleAdam::step: another network"
        );
        self.t += 1;
        let t = i32::try_from(self.t).unwrap_or(i32::MAX);
        let mut hyper = AdamHyper {
            lr: self.lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: 0.0,
            bias_correction1: 1.0 - self.beta1.powi(t),
            bias_correction2: 1.0 - self.beta2.powi(t),
        };
        for (range, wd) in &self.segments {
            hyper.weight_decay = *wd;
            self.backend.adam(
                &mut net.params,
                &net.grads,
                &mut self.m,
                &mut self.v,
                range.clone(),
                &hyper,
            );
        }
    }
}
