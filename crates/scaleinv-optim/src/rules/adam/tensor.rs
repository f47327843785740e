//! Adam's moment estimates on tensors, shared by every Adam-type optimizer of the crate (the
//! formulas are [`Adam`]'s, in `super`).

use burn::optim::RecordState;
use burn::tensor::{Device, Tensor};

use super::Adam;
use crate::rules::arith::{Arith, ema_from_zero};

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

    /// The step count `t` after the next step from `state` (1 from none).
    pub(crate) fn next_time(state: &Option<Self>) -> usize {
        state.as_ref().map_or(1, |s| s.time + 1)
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

impl Adam {
    /// Folds `grad` into the moments; the state starts from zeros at `t = 0`.
    pub(crate) fn update<const D: usize>(
        &self,
        grad: &Tensor<D>,
        state: Option<MomentState<D>>,
    ) -> MomentState<D> {
        match state {
            Some(s) => MomentState {
                time: s.time + 1,
                moment_1: self.first(s.moment_1, grad.clone()),
                moment_2: self.second(s.moment_2, grad.clone()),
            },
            None => MomentState {
                time: 1,
                moment_1: ema_from_zero(grad.clone(), self.beta_1),
                moment_2: ema_from_zero(grad.clone().square(), self.beta_2),
            },
        }
    }

    /// `√v / √(1 − β2^t) + ε` for the second moment `v` after `t` updates.
    pub(crate) fn tensor_denominator<const D: usize>(
        &self,
        moment_2: Tensor<D>,
        time: usize,
    ) -> Tensor<D> {
        let (_, bc2) = self.bias_corrections(time);
        self.denominator(moment_2, bc2)
    }

    /// Adam's step for the learning rate `lr`: `lr / (1 − β1^t) · m / (√v / √(1 − β2^t) + ε)`,
    /// with `second_moment` in place of `v` when given (AMSGrad's running maximum).
    pub(crate) fn update_step<const D: usize>(
        &self,
        moments: &MomentState<D>,
        second_moment: Option<Tensor<D>>,
        lr: f64,
    ) -> Tensor<D> {
        let (bc1, _) = self.bias_corrections(moments.time);
        let second = second_moment.unwrap_or_else(|| moments.moment_2.clone());
        let denom = self.tensor_denominator(second, moments.time);
        (moments.moment_1.clone() / denom).mul_s(lr / bc1)
    }
}
