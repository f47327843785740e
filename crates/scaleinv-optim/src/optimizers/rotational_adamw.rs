//! RotationalAdamW: AdamW whose scale-invariant weights are held at rotational equilibrium
//! from the first step. See [`RotationalAdamW`].

use burn::config::Config;
use burn::optim::{LearningRate, RecordState};
use burn::tensor::{Device, Tensor};

use crate::engine::dispatch::{StepOptions, step_setters};
use crate::engine::non_finite::{Checkpoint, NonFinitePolicy, Revert};
use crate::error::{ConfigError, Range, check};
use crate::optimizers::rotational::{
    RotationOptions, rotation_setters, rotational_constructors, rotational_optimizer,
};
use crate::rules::adam::Adam;
use crate::rules::adam::tensor::MomentState;
use crate::rules::decay::tensor::decay;
use crate::rules::rotation::tensor::RotationState;
use crate::rules::rotation::{Rotation, adamw_equilibrium};

/// Configuration of [`RotationalAdamW`], with the reference's defaults (`epfml/REQ`
/// `RotationalAdamW`): β (0.9, 0.999), ε 1e-8, weight decay 1e-2, and the rotational options'
/// ([`RotationOptions`]).
///
/// The learning rate is not part of the config: Burn passes it to every step (reference
/// default 1e-3).
#[derive(Config, Debug)]
pub struct RotationalAdamWConfig {
    /// β1 of the first moment.
    #[config(default = 0.9)]
    pub beta_1: f64,
    /// β2 of the second moment.
    #[config(default = 0.999)]
    pub beta_2: f64,
    /// ε of Adam's denominator (1e-8, not Burn's 1e-5).
    #[config(default = 1e-8)]
    pub epsilon: f64,
    /// Weight decay λ: it sets the rotational tensors' equilibrium angle, and decays the other
    /// tensors as AdamW does. With 0 no tensor is rotational.
    #[config(default = 1e-2)]
    pub weight_decay: f64,
    /// Which tensors are rotational, per neuron or per tensor, centring, the average's β.
    #[config(default = "RotationOptions::new()")]
    pub rotation: RotationOptions,
    /// Non-finite policy, gradient clipping (there is no fused path: `fused` is unread).
    #[config(default = "StepOptions::new()")]
    pub step: StepOptions,
}

step_setters!(RotationalAdamWConfig);
rotation_setters!(RotationalAdamWConfig);
rotational_constructors!(RotationalAdamWConfig => RotationalAdamW);

/// RotationalAdamW (Kosson, Messmer and Jaggi, *Rotational Equilibrium: How Weight Decay
/// Balances Learning Across Neural Networks*, ICML 2024,
/// [arXiv:2305.17212](https://arxiv.org/abs/2305.17212); reference `epfml/REQ` @ bab824d4,
/// `RotationalAdamW`). Per parameter `p` with gradient `g` at learning rate `η`:
///
/// ```text
/// t ← t + 1
/// m ← β1·m + (1 − β1)·g ;  v ← β2·v + (1 − β2)·g²
/// denom = √v / √(1 − β2^t) + ε
/// rotational:  d = (m / denom) / (1 − β1^t)
///              p ← rotate(p, d) at η_r = √(2·η·λ·(1 − β1)/(1 + β1))
///              (centred, radial part removed, RMS-normalised, back on the sphere: see below)
/// otherwise:   p ← p·(1 − η·λ) − η/(1 − β1^t) · m / denom         (AdamW)
/// ```
///
/// The rotational update, per neuron `w` (or per tensor) with its norm `n` saved at the first
/// step and its own step count `k`:
///
/// ```text
/// d ← d − mean(d) ;  d ← d − w·⟨d, w⟩/n²
/// a ← (1 − β)·‖d‖² + β·a ;  w ← w − η_r · n · d / (ε_r + √(a / (1 − β^k))) ;  w ← w · n/‖w‖
/// ```
///
/// With weight decay a scale-invariant weight's norm settles where each step turns it by the
/// equilibrium angle `η_r`; this update holds every neuron there from the first step, which
/// the paper shows removes much of the need for a warm-up and balances learning across layers.
/// A tensor is rotational when weight decay ≠ 0 and its rank ≥ 2 (with overrides); each
/// rotational weight is centred when the optimizer is built, so build it from the model:
///
/// ```
/// use burn::prelude::*;
/// use burn::nn::{Linear, LinearConfig};
/// use burn::optim::GradientsParams;
/// use scaleinv_optim::RotationalAdamWConfig;
///
/// # #[cfg(feature = "flex")] {
/// let device = Device::flex().autodiff();
/// let model: Linear = LinearConfig::new(4, 3).init(&device);
/// // The model goes in and comes back prepared (each neuron centred), with its optimizer.
/// let (model, mut optim) = RotationalAdamWConfig::new()
///     .with_weight_decay(0.1)
///     .init_for(model);
///
/// let loss = model.forward(Tensor::<2>::ones([8, 4], &device)).square().mean();
/// let grads = GradientsParams::from_grads(loss.backward(), &model);
/// let model = optim.step(1e-3, model, grads);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RotationalAdamW {
    adam: Adam,
    weight_decay: f64,
    rotation: Rotation,
    rotational: Option<bool>,
    non_finite: NonFinitePolicy,
}

/// RotationalAdamW's state for one parameter.
#[derive(RecordState, Clone, Debug)]
pub struct RotationalAdamWState<const D: usize> {
    /// Adam's moments and step count.
    pub moments: MomentState<D>,
    /// The rotational update's norm, average and step count; `None` for a tensor that is not
    /// rotational.
    pub rotation: Option<RotationState<D>>,
}

impl<const D: usize> RotationalAdamWState<D> {
    /// Moves the state to `device`.
    pub fn to_device(self, device: &Device) -> Self {
        Self {
            moments: self.moments.to_device(device),
            rotation: self.rotation.map(|r| r.to_device(device)),
        }
    }
}

impl<const D: usize> Revert<D> for RotationalAdamWState<D> {
    fn revert(self, checkpoint: &Checkpoint<D>, old: Option<Self>) -> Self {
        let (moments, rotation) = old.map(|o| (o.moments, o.rotation)).unzip();
        Self {
            moments: self.moments.revert(checkpoint, moments),
            rotation: self
                .rotation
                .map(|r| r.revert(checkpoint, rotation.flatten())),
        }
    }
}

impl RotationalAdamWConfig {
    /// Checks every hyperparameter.
    pub fn validate(&self) -> Result<(), ConfigError> {
        const C: &str = "RotationalAdamWConfig";
        check(C, "beta_1", self.beta_1, Range::UnitHalfOpen)?;
        check(C, "beta_2", self.beta_2, Range::UnitHalfOpen)?;
        check(C, "epsilon", self.epsilon, Range::Epsilon)?;
        check(C, "weight_decay", self.weight_decay, Range::NonNegative)?;
        self.rotation.validate_in(C, self.weight_decay)?;
        self.step.validate_in(C)
    }
}

impl RotationalAdamWConfig {
    /// The per-tensor optimizer around neuron axis `axis`; `rotational` overrides the
    /// default rule.
    fn for_neurons(&self, axis: usize, rotational: Option<bool>) -> RotationalAdamW {
        RotationalAdamW {
            adam: Adam {
                beta_1: self.beta_1,
                beta_2: self.beta_2,
                epsilon: self.epsilon,
            },
            weight_decay: self.weight_decay,
            rotation: self.rotation.rotation(axis),
            rotational,
            non_finite: self.step.non_finite,
        }
    }
}

impl RotationalAdamW {
    /// The step as tensor operations (any backend).
    fn tensor_ops<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<RotationalAdamWState<D>>,
    ) -> (Tensor<D>, Option<RotationalAdamWState<D>>) {
        let (moments, rotation) = state.map(|s| (s.moments, s.rotation)).unzip();
        let moments = self.adam.update(&grad, moments);
        let (bc1, _) = self.adam.bias_corrections(moments.time);
        let denom = self
            .adam
            .tensor_denominator(moments.moment_2.clone(), moments.time);
        let direction = moments.moment_1.clone() / denom;
        if self.is_rotational(D) {
            let rate = adamw_equilibrium(lr, self.weight_decay, self.adam.beta_1);
            let (param, rotation) =
                self.rotation
                    .rotate(param, direction / bc1, rotation.flatten(), rate);
            let state = RotationalAdamWState {
                moments,
                rotation: Some(rotation),
            };
            (param, Some(state))
        } else {
            let param = decay(param, lr * self.weight_decay) - direction.mul_scalar(lr / bc1);
            let state = RotationalAdamWState {
                moments,
                rotation: None,
            };
            (param, Some(state))
        }
    }
}

rotational_optimizer!(RotationalAdamW => RotationalAdamWState);
