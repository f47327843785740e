//! RotationalSgdm: SGD with momentum whose scale-invariant weights are held at rotational
//! equilibrium from the first step. See [`RotationalSgdm`].

use burn::config::Config;
use burn::optim::{LearningRate, RecordState};
use burn::tensor::{Device, Tensor};

use crate::engine::dispatch::{StepOptions, step_setters};
use crate::engine::non_finite::{Checkpoint, NonFinitePolicy, Revert};
use crate::error::{ConfigError, Range, check};
use crate::optimizers::rotational::{
    RotationOptions, rotation_setters, rotational_constructors, rotational_optimizer,
};
use crate::rules::rotation::tensor::RotationState;
use crate::rules::rotation::{Rotation, sgdm_equilibrium};
use crate::rules::sgd;

/// Configuration of [`RotationalSgdm`], with the reference's defaults (`epfml/REQ`
/// `RotationalSGD`): momentum 0, no Nesterov, and the rotational options'
/// ([`RotationOptions`]). The weight decay is required, as in the reference (the learning rate,
/// the reference's other required argument, is passed by Burn to every step).
#[derive(Config, Debug)]
pub struct RotationalSgdmConfig {
    /// Weight decay λ: it sets the rotational tensors' equilibrium angle, and is the L2
    /// penalty `g + λ·p` of the other tensors (PyTorch's SGD). With 0 no tensor is rotational.
    pub weight_decay: f64,
    /// Heavy-ball momentum μ (PyTorch's: no dampening, the first buffer is the first update).
    #[config(default = 0.0)]
    pub momentum: f64,
    /// Nesterov momentum, `d + μ·b` (needs μ > 0).
    #[config(default = false)]
    pub nesterov: bool,
    /// Which tensors are rotational, per neuron or per tensor, centring, the average's β.
    #[config(default = "RotationOptions::new()")]
    pub rotation: RotationOptions,
    /// Non-finite policy, gradient clipping (there is no fused path: `fused` is unread).
    #[config(default = "StepOptions::new()")]
    pub step: StepOptions,
}

step_setters!(RotationalSgdmConfig);
rotation_setters!(RotationalSgdmConfig);
rotational_constructors!(RotationalSgdmConfig => RotationalSgdm);

/// RotationalSgdm (Kosson, Messmer and Jaggi, ICML 2024,
/// [arXiv:2305.17212](https://arxiv.org/abs/2305.17212); reference `epfml/REQ` @ bab824d4,
/// `RotationalSGD`). Per parameter `p` with gradient `g` at learning rate `η`:
///
/// ```text
/// d = g                       rotational (no L2: the rotation sets the norm)
/// d = g + λ·p                 otherwise (PyTorch's L2 penalty)
/// b ← μ·b + d                 (μ ≠ 0; the first buffer is d) ;  d = b  (Nesterov: d + μ·b)
/// rotational:  p ← rotate(p, d) at η_r = √(2·η·λ/(1 + μ))    (as RotationalAdamW's)
/// otherwise:   p ← p − η·d
/// ```
///
/// ```
/// use burn::prelude::*;
/// use burn::nn::{Linear, LinearConfig};
/// use burn::optim::GradientsParams;
/// use scaleinv_optim::RotationalSgdmConfig;
///
/// # #[cfg(feature = "flex")] {
/// let device = Device::flex().autodiff();
/// let model: Linear = LinearConfig::new(4, 3).init(&device);
/// let (model, mut optim) = RotationalSgdmConfig::new(5e-4)
///     .with_momentum(0.9)
///     .init_for(model);
///
/// let loss = model.forward(Tensor::<2>::ones([8, 4], &device)).square().mean();
/// let grads = GradientsParams::from_grads(loss.backward(), &model);
/// let model = optim.step(0.1, model, grads);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RotationalSgdm {
    momentum: f64,
    nesterov: bool,
    weight_decay: f64,
    rotation: Rotation,
    rotational: Option<bool>,
    non_finite: NonFinitePolicy,
}

/// RotationalSgdm's state for one parameter.
#[derive(RecordState, Clone, Debug)]
pub struct RotationalSgdmState<const D: usize> {
    /// The momentum buffer (none with μ = 0).
    pub momentum: Option<Tensor<D>>,
    /// The rotational update's norm, average and step count; `None` for a tensor that is not
    /// rotational.
    pub rotation: Option<RotationState<D>>,
}

impl<const D: usize> RotationalSgdmState<D> {
    /// Moves the state to `device`.
    pub fn to_device(self, device: &Device) -> Self {
        Self {
            momentum: self.momentum.map(|b| b.to_device(device)),
            rotation: self.rotation.map(|r| r.to_device(device)),
        }
    }
}

impl<const D: usize> Revert<D> for RotationalSgdmState<D> {
    fn revert(self, checkpoint: &Checkpoint<D>, old: Option<Self>) -> Self {
        let (momentum, rotation) = old.map(|o| (o.momentum, o.rotation)).unzip();
        Self {
            momentum: self
                .momentum
                .map(|b| checkpoint.keep_or_zero(b, momentum.flatten())),
            rotation: self
                .rotation
                .map(|r| r.revert(checkpoint, rotation.flatten())),
        }
    }
}

impl RotationalSgdmConfig {
    /// Checks every hyperparameter.
    pub fn validate(&self) -> Result<(), ConfigError> {
        const C: &str = "RotationalSgdmConfig";
        check(C, "weight_decay", self.weight_decay, Range::NonNegative)?;
        check(C, "momentum", self.momentum, Range::UnitHalfOpen)?;
        if self.nesterov && self.momentum == 0.0 {
            return Err(ConfigError::Conflict {
                config: C,
                reason: "nesterov needs momentum > 0",
            });
        }
        self.rotation.validate_in(C, self.weight_decay)?;
        self.step.validate_in(C)
    }
}

impl RotationalSgdmConfig {
    /// The per-tensor optimizer around neuron axis `axis`; `rotational` overrides the
    /// default rule.
    fn for_neurons(&self, axis: usize, rotational: Option<bool>) -> RotationalSgdm {
        RotationalSgdm {
            momentum: self.momentum,
            nesterov: self.nesterov,
            weight_decay: self.weight_decay,
            rotation: self.rotation.rotation(axis),
            rotational,
            non_finite: self.step.non_finite,
        }
    }
}

impl RotationalSgdm {
    /// The step as tensor operations (any backend).
    fn tensor_ops<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<RotationalSgdmState<D>>,
    ) -> (Tensor<D>, Option<RotationalSgdmState<D>>) {
        let rotational = self.is_rotational(D);
        let (buffer, rotation) = state.map(|s| (s.momentum, s.rotation)).unzip();
        let update = if self.weight_decay != 0.0 && !rotational {
            grad + param.clone().mul_scalar(self.weight_decay)
        } else {
            grad
        };
        let mu = self.momentum;
        let (update, buffer) = if mu != 0.0 {
            let buffer = match buffer.flatten() {
                Some(b) => sgd::buffer(b, update.clone(), mu),
                None => update.clone(),
            };
            let update = sgd::direction(update, buffer.clone(), mu, self.nesterov);
            (update, Some(buffer))
        } else {
            (update, None)
        };
        if rotational {
            let rate = sgdm_equilibrium(lr, self.weight_decay, mu);
            let (param, rotation) = self
                .rotation
                .rotate(param, update, rotation.flatten(), rate);
            let state = RotationalSgdmState {
                momentum: buffer,
                rotation: Some(rotation),
            };
            (param, Some(state))
        } else {
            let state = RotationalSgdmState {
                momentum: buffer,
                rotation: None,
            };
            (param - update.mul_scalar(lr), Some(state))
        }
    }
}

rotational_optimizer!(RotationalSgdm => RotationalSgdmState);
