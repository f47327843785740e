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
    /// Moves the moments to `device`.
    pub fn to_device(self, device: &Device) -> Self {
        Self {
            time: self.time,
            moment_1: self.moment_1.to_device(device),
            moment_2: self.moment_2.to_device(device),
        }
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
        let (b1, b2) = (self.beta_1, self.beta_2);
        let grad_sq = grad.clone().square();
        match state {
            Some(s) => MomentState {
                time: s.time + 1,
                moment_1: s.moment_1 * b1 + grad.clone() * (1.0 - b1),
                moment_2: s.moment_2 * b2 + grad_sq * (1.0 - b2),
            },
            // From zero moments: `m = (1 − β1)·g`, `v = (1 − β2)·g²`, without the zeros.
            None => MomentState {
                time: 1,
                moment_1: grad.clone() * (1.0 - b1),
                moment_2: grad_sq * (1.0 - b2),
            },
        }
    }

    /// Bias corrections `(1 − β1^t, 1 − β2^t)`.
    pub fn bias_corrections(&self, time: usize) -> (f64, f64) {
        let t = time as i32;
        (1.0 - self.beta_1.powi(t), 1.0 - self.beta_2.powi(t))
    }

    /// `√v / √(1 − β2^t) + ε`.
    pub fn denominator<const D: usize>(&self, state: &MomentState<D>) -> Tensor<D> {
        let (_, bc2) = self.bias_corrections(state.time);
        state.moment_2.clone().sqrt() / bc2.sqrt() + self.epsilon
    }
}
