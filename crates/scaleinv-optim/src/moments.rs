//! Adam's exponential moment estimates, shared by every Adam-type optimizer of the crate.
//!
//! ```text
//! t ← t + 1
//! m ← β1·m + (1 − β1)·g
//! v ← β2·v + (1 − β2)·g²
//! denom = √v / √(1 − β2^t) + ε          (ε outside the root, after bias correction: torch's placement)
//! ```

use burn::tensor::{Device, Tensor};

use crate::RecordState;
use crate::non_finite::{Checkpoint, Revert};

/// The first and second moment of one parameter, with the step count `t`.
#[derive(RecordState, Clone, Debug)]
pub struct MomentState<const D: usize> {
    /// Number of updates folded into the moments.
    pub time: usize,
    /// First moment `m` (exponential average of the gradient).
    pub moment_1: Tensor<D>,
    /// Second moment `v` (exponential average of the squared gradient).
    pub moment_2: Tensor<D>,
}

impl<const D: usize> MomentState<D> {
    /// The two moment tensors.
    pub fn tensors(&self) -> [&Tensor<D>; 2] {
        [&self.moment_1, &self.moment_2]
    }

    /// Moves the moments to `device`.
    pub fn to_device(self, device: &Device) -> Self {
        Self {
            time: self.time,
            moment_1: self.moment_1.to_device(device),
            moment_2: self.moment_2.to_device(device),
        }
    }
}

impl<const D: usize> Revert<D> for MomentState<D> {
    fn revert(self, checkpoint: &Checkpoint<D>, old: Option<Self>) -> Self {
        let (m, v) = old.map(|s| (s.moment_1, s.moment_2)).unzip();
        Self {
            time: self.time,
            moment_1: checkpoint.keep_or_zero(self.moment_1, m),
            moment_2: checkpoint.keep_or_zero(self.moment_2, v),
        }
    }
}

/// `prev·decay + x·(1 − decay)`, or `x·(1 − decay)` when there is no previous value (a zero
/// start without the zeros).
pub(crate) fn ema<const D: usize>(prev: Option<Tensor<D>>, x: Tensor<D>, decay: f64) -> Tensor<D> {
    match prev {
        Some(prev) => prev * decay + x * (1.0 - decay),
        None => x * (1.0 - decay),
    }
}

/// Adam's moment update with β1, β2 and ε.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct AdamMoments {
    pub beta_1: f64,
    pub beta_2: f64,
    pub epsilon: f64,
}

impl AdamMoments {
    /// Folds `grad` into the moments; the state starts from zeros at `t = 0`.
    pub fn update<const D: usize>(
        &self,
        grad: &Tensor<D>,
        state: Option<MomentState<D>>,
    ) -> MomentState<D> {
        let (time, m, v) = match state {
            Some(s) => (s.time, Some(s.moment_1), Some(s.moment_2)),
            None => (0, None, None),
        };
        MomentState {
            time: time + 1,
            moment_1: ema(m, grad.clone(), self.beta_1),
            moment_2: ema(v, grad.clone().square(), self.beta_2),
        }
    }

    /// Bias corrections `(1 − β1^t, 1 − β2^t)`.
    pub fn bias_corrections(&self, time: usize) -> (f64, f64) {
        let t = time as i32;
        (1.0 - self.beta_1.powi(t), 1.0 - self.beta_2.powi(t))
    }

    /// `√v / √(1 − β2^t) + ε` for the second moment `v` after `t` updates.
    pub fn denominator<const D: usize>(&self, moment_2: Tensor<D>, time: usize) -> Tensor<D> {
        let (_, bc2) = self.bias_corrections(time);
        moment_2.sqrt() / bc2.sqrt() + self.epsilon
    }

    /// Adam's update for the learning rate `lr`: `lr / (1 − β1^t) · m / (√v / √(1 − β2^t) + ε)`,
    /// with `second_moment` in place of `v` when given (AMSGrad's running maximum).
    pub fn update_step<const D: usize>(
        &self,
        moments: &MomentState<D>,
        second_moment: Option<Tensor<D>>,
        lr: f64,
    ) -> Tensor<D> {
        let (bc1, _) = self.bias_corrections(moments.time);
        let second = second_moment.unwrap_or_else(|| moments.moment_2.clone());
        moments.moment_1.clone() / self.denominator(second, moments.time) * (lr / bc1)
    }
}
