//! The replay buffer: a fixed-capacity ring of real transitions, stored column-wise in flat f32
//! arrays so a batch is gathered with a few `copy_from_slice` calls and no allocation.
use rand::Rng;
use serde::{Deserialize, Serialize};

/// A batch of transitions in row-major buffers, reused across updates.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub size: usize,
    pub obs: Vec<f32>,
    pub act: Vec<f32>,
    pub rew: Vec<f32>,
    pub next_obs: Vec<f32>,
    /// 1.0 where the transition ended in a true terminal state (no bootstrap), else 0.0.
    /// Time-limit truncations are stored as 0.0: the value past them is bootstrapped.
    pub done: Vec<f32>,
}

impl Batch {
    /// Preallocates a batch for `size` transitions.
    pub fn new(size: usize, obs_dim: usize, act_dim: usize) -> Self {
        Self {
            size,
            obs: vec![0.0; size * obs_dim],
            act: vec![0.0; size * act_dim],
            rew: vec![0.0; size],
            next_obs: vec![0.0; size * obs_dim],
            done: vec![0.0; size],
        }
    }
}

/// Ring buffer of transitions `(s, a, r, s', terminal)`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReplayBuffer {
    obs_dim: usize,
    act_dim: usize,
    capacity: usize,
    len: usize,
    next: usize,
    obs: Vec<f32>,
    act: Vec<f32>,
    rew: Vec<f32>,
    next_obs: Vec<f32>,
    done: Vec<f32>,
}

impl ReplayBuffer {
    /// An empty buffer; memory grows with use up to `capacity` transitions.
    pub fn new(capacity: usize, obs_dim: usize, act_dim: usize) -> Self {
        assert!(capacity > 0, "replay capacity must be positive");
        Self {
            obs_dim,
            act_dim,
            capacity,
            len: 0,
            next: 0,
            obs: Vec::new(),
            act: Vec::new(),
            rew: Vec::new(),
            next_obs: Vec::new(),
            done: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn obs_dim(&self) -> usize {
        self.obs_dim
    }

    pub fn act_dim(&self) -> usize {
        self.act_dim
    }

    /// Adds one transition, overwriting the oldest when full.
    pub fn push(&mut self, obs: &[f32], act: &[f32], rew: f32, next_obs: &[f32], terminal: bool) {
        debug_assert_eq!(obs.len(), self.obs_dim);
        debug_assert_eq!(act.len(), self.act_dim);
        let done = if terminal { 1.0 } else { 0.0 };
        if self.len < self.capacity {
            self.obs.extend_from_slice(obs);
            self.act.extend_from_slice(act);
            self.rew.push(rew);
            self.next_obs.extend_from_slice(next_obs);
            self.done.push(done);
            self.len += 1;
        } else {
            let i = self.next;
            let (o, a) = (self.obs_dim, self.act_dim);
            self.obs[i * o..(i + 1) * o].copy_from_slice(obs);
            self.act[i * a..(i + 1) * a].copy_from_slice(act);
            self.rew[i] = rew;
            self.next_obs[i * o..(i + 1) * o].copy_from_slice(next_obs);
            self.done[i] = done;
        }
        self.next = (self.next + 1) % self.capacity;
    }

    /// Copies transition `i` into row `row` of `batch`.
    pub fn copy_into(&self, i: usize, batch: &mut Batch, row: usize) {
        let (o, a) = (self.obs_dim, self.act_dim);
        batch.obs[row * o..(row + 1) * o].copy_from_slice(&self.obs[i * o..(i + 1) * o]);
        batch.act[row * a..(row + 1) * a].copy_from_slice(&self.act[i * a..(i + 1) * a]);
        batch.rew[row] = self.rew[i];
        batch.next_obs[row * o..(row + 1) * o].copy_from_slice(&self.next_obs[i * o..(i + 1) * o]);
        batch.done[row] = self.done[i];
    }

    /// Fills rows `rows` of `batch` with transitions drawn uniformly with replacement.
    pub fn sample_into<R: Rng>(
        &self,
        rng: &mut R,
        batch: &mut Batch,
        rows: std::ops::Range<usize>,
    ) {
        assert!(
            !self.is_empty(),
            "cannot sample from an empty replay buffer"
        );
        for row in rows {
            let i = rng.random_range(0..self.len);
            self.copy_into(i, batch, row);
        }
    }

    /// Observation `i` (for start states of model rollouts and Lipschitz measurements).
    pub fn obs(&self, i: usize) -> &[f32] {
        &self.obs[i * self.obs_dim..(i + 1) * self.obs_dim]
    }

    /// All stored observations, row-major.
    pub fn all_obs(&self) -> &[f32] {
        &self.obs
    }

    /// Per-dimension mean and standard deviation of the stored observations.
    pub fn obs_mean_std(&self) -> (Vec<f32>, Vec<f32>) {
        let d = self.obs_dim;
        let n = self.len.max(1) as f64;
        let mut mean = vec![0.0f64; d];
        for row in self.obs.chunks_exact(d) {
            mean.iter_mut()
                .zip(row)
                .for_each(|(m, x)| *m += f64::from(*x));
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0.0f64; d];
        for row in self.obs.chunks_exact(d) {
            var.iter_mut()
                .zip(row)
                .zip(&mean)
                .for_each(|((v, x), m)| *v += (f64::from(*x) - m).powi(2));
        }
        (
            mean.iter().map(|m| *m as f32).collect(),
            var.iter()
                .map(|v| ((v / n).sqrt() as f32).max(1e-6))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn ring_overwrites_oldest_and_samples_stored_rows() {
        let mut rb = ReplayBuffer::new(3, 2, 1);
        for k in 0..5 {
            let x = k as f32;
            rb.push(&[x, -x], &[x * 10.0], x, &[x + 1.0, 0.0], k == 4);
        }
        assert_eq!(rb.len(), 3);
        let mut seen: Vec<f32> = (0..3).map(|i| rb.obs(i)[0]).collect();
        seen.sort_by(f32::total_cmp);
        assert_eq!(seen, vec![2.0, 3.0, 4.0]);
        let mut rng = rand_pcg::Pcg64::seed_from_u64(0);
        let mut b = Batch::new(16, 2, 1);
        rb.sample_into(&mut rng, &mut b, 0..16);
        for r in 0..16 {
            let x = b.obs[2 * r];
            assert!((2.0..=4.0).contains(&x));
            assert_eq!(b.obs[2 * r + 1], -x);
            assert_eq!(b.act[r], 10.0 * x);
            assert_eq!(b.rew[r], x);
            assert_eq!(b.next_obs[2 * r], x + 1.0);
            assert_eq!(b.done[r], if x == 4.0 { 1.0 } else { 0.0 });
        }
    }

    #[test]
    fn mean_std() {
        let mut rb = ReplayBuffer::new(10, 1, 1);
        for x in [1.0f32, 3.0] {
            rb.push(&[x], &[0.0], 0.0, &[0.0], false);
        }
        let (m, s) = rb.obs_mean_std();
        assert_eq!(m, vec![2.0]);
        assert!((s[0] - 1.0).abs() < 1e-6);
    }
}
