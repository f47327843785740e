//! The rotational update on tensors (the formulas are `super`'s), per neuron along the
//! neuron axis or per tensor; no value is read back to the host.

use burn::optim::RecordState;
use burn::tensor::{Device, Tensor};

use super::Rotation;
use crate::engine::non_finite::Checkpoint;
use crate::engine::rows::{sum_all, sum_except};

/// The rotational update's state of one tensor.
#[derive(RecordState, Clone, Debug)]
pub struct RotationState<const D: usize> {
    /// Rotational steps taken by this tensor (`k`, for the average's bias correction; its own
    /// count, apart from the inner optimizer's).
    pub steps: usize,
    /// The norm `n` the tensor is held at, saved at its first step: one value per neuron
    /// (every axis but the neuron axis of length 1) or `[1, …, 1]` per tensor.
    pub norm: Tensor<D>,
    /// The running average `a` of the update's squared norm, shaped like `norm`.
    pub update_norm2: Tensor<D>,
}

impl<const D: usize> RotationState<D> {
    /// Moves the state to `device`.
    pub fn to_device(self, device: &Device) -> Self {
        Self {
            steps: self.steps,
            norm: self.norm.to_device(device),
            update_norm2: self.update_norm2.to_device(device),
        }
    }

    /// The state before a step whose gradient was not finite: the average as it was (zero
    /// before the first step), the norm kept (it is the weight's, which the skipped step left
    /// as it was), the count as it is (a host counter).
    pub(crate) fn revert(self, checkpoint: &Checkpoint<D>, old: Option<Self>) -> Self {
        let average = old.map(|s| s.update_norm2);
        Self {
            steps: self.steps,
            norm: self.norm,
            update_norm2: checkpoint.keep_or_zero(self.update_norm2, average),
        }
    }
}

impl Rotation {
    /// `Σ x` per neuron (or over the tensor), keeping the rank.
    fn sum<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if self.per_neuron {
            sum_except(x, self.axis)
        } else {
            sum_all(x)
        }
    }

    /// `‖x‖` per neuron (or of the tensor).
    fn norm<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        self.sum(x.square()).sqrt()
    }

    /// `x − mean(x)` per neuron (or over the tensor).
    fn centred<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let numel = x.shape().num_elements();
        let count = if self.per_neuron {
            numel / x.dims()[self.axis]
        } else {
            numel
        };
        let mean = self.sum(x.clone()) / count as f64;
        x - mean
    }

    /// Panics with a clear message when the neuron axis is not an axis of a rank-`D` tensor.
    fn check_axis<const D: usize>(&self) {
        assert!(
            !self.per_neuron || self.axis < D,
            "scaleinv: the neuron axis {} is out of range for a rotational tensor of rank {D}; \
             build the optimizer with `init_for(model)`, which takes each weight's axis from \
             its layer, or set the axis",
            self.axis
        );
    }

    /// The set-up of a rotational weight (`zero_mean`): each neuron centred and rescaled to
    /// the norm it had, `w ← ‖w‖ · c(w) / ‖c(w)‖`; without `zero_mean`, `w` as it is.
    pub(crate) fn prepare<const D: usize>(&self, weight: Tensor<D>) -> Tensor<D> {
        if !self.zero_mean || weight.shape().num_elements() == 0 {
            return weight;
        }
        self.check_axis::<D>();
        let norm = self.norm(weight.clone());
        let centred = self.centred(weight);
        let centred_norm = self.norm(centred.clone());
        (centred * norm) / centred_norm
    }

    /// The smallest norm a neuron will be held at (of its centred weights with `zero_mean`),
    /// shape `[1]`: zero when the set-up cannot give it a direction.
    pub(crate) fn smallest_norm<const D: usize>(&self, weight: &Tensor<D>) -> Tensor<1> {
        self.first_state(weight).norm.min()
    }

    /// The state before `weight`'s first rotational step: `n = ‖c(w)‖` (or `‖w‖`), no
    /// average yet.
    pub(crate) fn first_state<const D: usize>(&self, weight: &Tensor<D>) -> RotationState<D> {
        self.check_axis::<D>();
        let held = if self.zero_mean {
            self.centred(weight.clone())
        } else {
            weight.clone()
        };
        let norm = self.norm(held);
        RotationState {
            steps: 0,
            update_norm2: norm.zeros_like(),
            norm,
        }
    }

    /// One rotational step of `weight` on the inner update `update` (no decay, no learning
    /// rate) at the equilibrium angle `rate` (see `super`). A neuron held at norm 0 (all zero:
    /// only a per-tensor optimizer stepped without `init_for`, which refuses one, can meet it)
    /// stays zero where the reference divides 0 by 0: `n²` and `‖w‖` are taken at least
    /// `f32::MIN_POSITIVE`, which changes nothing for any other neuron.
    pub(crate) fn rotate<const D: usize>(
        &self,
        weight: Tensor<D>,
        update: Tensor<D>,
        state: Option<RotationState<D>>,
        rate: f64,
    ) -> (Tensor<D>, RotationState<D>) {
        let state = state.unwrap_or_else(|| self.first_state(&weight));
        let steps = state.steps + 1;
        let norm = state.norm;
        let update = if self.zero_mean {
            self.centred(update)
        } else {
            update
        };
        let tiny = f64::from(f32::MIN_POSITIVE);
        let radial =
            self.sum(update.clone() * weight.clone()) / norm.clone().square().clamp_min(tiny);
        let update = update - weight.clone() * radial;
        let update_norm2 = self
            .norm(update.clone())
            .square()
            .mul_scalar(1.0 - self.decay)
            + state.update_norm2.mul_scalar(self.decay);
        let corrected = update_norm2.clone() / (1.0 - self.decay.powf(steps as f64));
        let step = (update / (corrected.sqrt() + self.epsilon)).mul_scalar(rate) * norm.clone();
        let weight = weight - step;
        let weight = (weight.clone() * norm.clone()) / self.norm(weight).clamp_min(tiny);
        let state = RotationState {
            steps,
            norm,
            update_norm2,
        };
        (weight, state)
    }
}
