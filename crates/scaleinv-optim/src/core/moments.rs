//! Adam's moment estimates on tensors, shared by every Adam-type optimizer of the crate (the
//! formulas are [`Adam`]'s, in `math::adam`).

use burn::optim::RecordState;
use burn::tensor::{Device, Tensor};

use crate::math::adam::Adam;
use crate::math::{Arith, ema_from_zero};

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

#[cfg(feature = "flex")]
impl<const D: usize> MomentState<D> {
    /// One fused Adam-type step on flex buffers: the moments (zeros before the first step)
    /// become buffers, `pass(t)` steps them with the parameter, and they come back as the new
    /// state (as given, for a step skipped under `measure`: see `TwoPaths::fused`). The
    /// caller checked [`accepts`](crate::kernels::accepts) and [`fit`](crate::kernels::fit).
    pub(crate) fn fused<'a>(
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self>,
        measure: bool,
        pass: impl FnOnce(usize) -> crate::kernels::AdamPass<'a>,
    ) -> crate::kernels::Fused<D, Self> {
        use crate::kernels::{Buffer, Fused, Outcome, Target};
        let g = Buffer::new(grad);
        let first = state.is_none();
        let (time, mut m, mut v) = match state {
            Some(s) => (s.time + 1, Buffer::new(s.moment_1), Buffer::new(s.moment_2)),
            None => (1, Buffer::zeros(&g), Buffer::zeros(&g)),
        };
        let mut p = Target::new(param);
        let moments = (m.get_mut(), v.get_mut());
        let outcome = pass(time).run(&mut p, &g, moments, measure);
        let given_back = measure && outcome == Outcome::Skipped;
        let state = MomentState {
            time: if given_back { time - 1 } else { time },
            moment_1: m.tensor(),
            moment_2: v.tensor(),
        };
        Fused {
            param: p.tensor(outcome),
            state: (!(given_back && first)).then_some(state),
            outcome,
        }
    }
}

#[cfg(feature = "wgpu")]
impl<const D: usize> MomentState<D> {
    /// One Adam-type step as the CubeCL kernels: the moments (zeros before the first step)
    /// and the parameter go through `kernels::cube::adam_step` with the scalars of step `t`.
    /// `Err` hands the inputs back when a tensor does not fit the kernels.
    pub(crate) fn on_cube(
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self>,
        scalars: impl FnOnce(usize) -> crate::kernels::cube::AdamScalars,
    ) -> crate::kernels::cube::CubeStep<D, Self> {
        use crate::kernels::cube::{adam_step, fit};
        if !fit(&param, &grad, state.iter().flat_map(|s| s.tensors())) {
            return Err(Box::new((param, grad, state)));
        }
        let (time, m, v) = match state {
            Some(s) => (s.time + 1, s.moment_1, s.moment_2),
            None => (1, grad.zeros_like(), grad.zeros_like()),
        };
        let (param, moment_1, moment_2) = adam_step(param, grad, m, v, scalars(time));
        let state = MomentState {
            time,
            moment_1,
            moment_2,
        };
        Ok((param, Some(state)))
    }
}
