//! AdamW whose learning rate and weight decay follow the model's width, so hyperparameters
//! tuned on a narrow proxy transfer to a wide model. See [`WidthScaledAdamW`].

use burn::config::Config;
use burn::grad_clipping::GradientClippingConfig;
use burn::module::Module;
use burn::optim::{LearningRate, ModuleOptimizer};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::engine::dispatch::{
    StepOptions, StepPolicy, TwoPaths, step_setters, two_paths_optimizer,
};
use crate::error::{ConfigError, Range, check};
use crate::model::channel_axes::grouped;
use crate::model::params::{self, ParamInfo};
use crate::optimizers::constructors::{constructors, or_panic};
use crate::rules::adam::Adam;
use crate::rules::adam::tensor::MomentState;
use crate::rules::decay::corrected_weight_decay;
use crate::rules::decay::tensor::decay;

/// How a tensor scales with the width `d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WidthRole {
    /// Fan-in and fan-out both grow with `d` (attention and MLP matrices): learning rate
    /// `η·m^lr_exponent`, decay `λ·m^wd_exponent`, with `m = d / d₀`.
    Matrix,
    /// At most one dimension grows with `d` (biases, norm gains, and by default embeddings and
    /// the output head): learning rate `η`, no decay.
    Vector,
}

/// Configuration of [`WidthScaledAdamW`]: AdamW hyperparameters tuned at the proxy width
/// `base_width` (d₀), applied at `width` (d).
///
/// Fan et al., *Robust Layerwise Scaling Rules by Proper Weight Decay Tuning*, 2025
/// ([arXiv:2510.15262](https://arxiv.org/abs/2510.15262)). The steady-state top singular
/// value of an AdamW-trained matrix is `σ_max ≈ C·√(η/λ)·d^0.75`. With the μP learning rate
/// `η₂ ∝ 1/d`, keeping `σ_max` width-invariant needs `√(η₂/λ₂) ∝ d^−0.75`, so
/// `λ₂ ∝ d^−1 / d^−1.5 = d^0.5`: the decay grows as **√d** (the abstract's rule; some copies
/// of the text lost the root and print "∝ d"). Both exponents are fields, `lr_exponent = −1`
/// and `wd_exponent = 0.5` by default.
#[derive(Config, Debug)]
pub struct WidthScaledAdamWConfig {
    /// The proxy width d₀ at which the learning rate and `weight_decay` were tuned.
    pub base_width: usize,
    /// The width d of the model being trained.
    pub width: usize,
    /// β1 of Adam's first moment.
    #[config(default = 0.9)]
    pub beta_1: f64,
    /// β2 of Adam's second moment.
    #[config(default = 0.999)]
    pub beta_2: f64,
    /// ε of Adam's denominator.
    #[config(default = 1e-8)]
    pub epsilon: f64,
    /// Weight decay λ₂ of matrix-like tensors at the proxy width (PyTorch-style: multiplied by
    /// the tensor's learning rate). Vector-like tensors are never decayed.
    #[config(default = 0.01)]
    pub weight_decay: f64,
    /// Matrix-like learning rate `η·m^lr_exponent`, `m = width / base_width` (μP: −1).
    #[config(default = -1.0)]
    pub lr_exponent: f64,
    /// Matrix-like weight decay `λ·m^wd_exponent` (the paper: 0.5).
    #[config(default = 0.5)]
    pub wd_exponent: f64,
    /// Role of `Embedding` weights (a `[vocab, d]` table has one width dimension).
    #[config(default = "WidthRole::Vector")]
    pub embedding_role: WidthRole,
    /// Role of the output head's tensors (a `[d, vocab]` readout has one width dimension).
    #[config(default = "WidthRole::Vector")]
    pub head_role: WidthRole,
    /// Module paths of the output head: a parameter whose path equals an entry or starts with
    /// it followed by `.` gets [`head_role`](Self::head_role).
    #[config(default = "vec![String::from(\"head\")]")]
    pub head: Vec<String>,
    /// AdamC's corrected decay, an extension with no reference (Defazio et al. 2025 correct AdamW
    /// only): `Some(η_max)`, the schedule's peak learning rate, decays every matrix-like tensor by
    /// `λ·η_t²/η_max` instead of `λ·η_t`, so the decay of the weights that feed a normalization
    /// follows the schedule's shape rather than its scale. `None` (the default): the reference's
    /// decay.
    pub corrected_decay: Option<f64>,
    /// Fused path (on flex: one pass over memory, after a read of the gradient for the
    /// non-finite test), non-finite policy, gradient clipping.
    #[config(default = "StepOptions::new()")]
    pub step: StepOptions,
}

step_setters!(WidthScaledAdamWConfig);
constructors!(WidthScaledAdamWConfig => WidthScaledAdamW: init_for);

/// AdamW with a per-role learning-rate scale and weight decay (see
/// [`WidthScaledAdamWConfig`]). For a tensor with scale `s` and decay `λ_g`, at the learning
/// rate `η_t` Burn passes to the step (so any Burn scheduler multiplies every role):
///
/// ```text
/// η_g = η_t · s                       s = m^lr_exponent (matrix) or 1 (vector)
/// p ← p · (1 − η_g · λ_g)             λ_g = λ·m^wd_exponent (matrix) or 0 (vector)
/// m ← β1·m + (1 − β1)·g ;  v ← β2·v + (1 − β2)·g²
/// p ← p − η_g / (1 − β1^t) · m / (√v / √(1 − β2^t) + ε)
/// ```
///
/// ```
/// use burn::prelude::*;
/// use burn::nn::{Linear, LinearConfig};
/// use burn::optim::GradientsParams;
/// use scaleinv_optim::WidthScaledAdamWConfig;
///
/// # #[cfg(feature = "flex")] {
/// let device = Device::flex().autodiff();
/// let model: Linear = LinearConfig::new(256, 256).init(&device);
/// // Tuned at width 64 (lr 3e-3, λ 0.1), trained at width 256: the weight gets lr 7.5e-4 and
/// // λ 0.2, the bias lr 3e-3 and no decay.
/// let mut optim = WidthScaledAdamWConfig::new(64, 256)
///     .with_weight_decay(0.1)
///     .init_for(&model);
/// let loss = model.forward(Tensor::<2>::ones([8, 256], &device)).square().mean();
/// let grads = GradientsParams::from_grads(loss.backward(), &model);
/// let model = optim.step(3e-3, model, grads);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct WidthScaledAdamW {
    adam: Adam,
    lr_scale: f64,
    weight_decay: f64,
    corrected_decay: Option<f64>,
    policy: StepPolicy,
}

/// The role given to one parameter by [`WidthScaledAdamWConfig::roles`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamRole {
    /// Path in the module.
    pub path: String,
    /// Name of the struct that owns the parameter.
    pub owner: String,
    /// The role.
    pub role: WidthRole,
}

impl WidthScaledAdamWConfig {
    /// Checks every hyperparameter.
    pub fn validate(&self) -> Result<(), ConfigError> {
        const C: &str = "WidthScaledAdamWConfig";
        check(C, "base_width", self.base_width as f64, Range::AtLeastOne)?;
        check(C, "width", self.width as f64, Range::AtLeastOne)?;
        check(C, "beta_1", self.beta_1, Range::UnitHalfOpen)?;
        check(C, "beta_2", self.beta_2, Range::UnitHalfOpen)?;
        check(C, "epsilon", self.epsilon, Range::Epsilon)?;
        check(C, "weight_decay", self.weight_decay, Range::NonNegative)?;
        check(C, "lr_exponent", self.lr_exponent, Range::Finite)?;
        check(C, "wd_exponent", self.wd_exponent, Range::Finite)?;
        // `m^exponent` of a finite exponent can still leave f32's range (m = 4, exponent 70).
        let in_f32 = |x: f64| (f64::from(f32::MIN_POSITIVE)..=f64::from(f32::MAX)).contains(&x);
        if !in_f32(self.lr_scale(WidthRole::Matrix)) {
            return Err(ConfigError::Conflict {
                config: C,
                reason: "(width / base_width)^lr_exponent, the matrices' learning-rate factor, \
                         is 0 or beyond f32's range: use a smaller |lr_exponent|",
            });
        }
        let decay = self.weight_decay_for(WidthRole::Matrix);
        if decay > 0.0 && !in_f32(decay) {
            return Err(ConfigError::Conflict {
                config: C,
                reason: "weight_decay · (width / base_width)^wd_exponent, the matrices' decay, \
                         is 0 or beyond f32's range: use a smaller |wd_exponent|",
            });
        }
        if let Some(peak) = self.corrected_decay {
            check(C, "corrected_decay", peak, Range::Positive)?;
        }
        self.step.validate_in(C)
    }

    /// The width multiplier `m = width / base_width`.
    pub fn width_multiplier(&self) -> f64 {
        self.width as f64 / self.base_width as f64
    }

    /// The factor applied to the learning rate of a tensor of this role.
    pub fn lr_scale(&self, role: WidthRole) -> f64 {
        match role {
            WidthRole::Matrix => self.width_multiplier().powf(self.lr_exponent),
            WidthRole::Vector => 1.0,
        }
    }

    /// The weight decay of a tensor of this role.
    pub fn weight_decay_for(&self, role: WidthRole) -> f64 {
        match role {
            WidthRole::Matrix => self.weight_decay * self.width_multiplier().powf(self.wd_exponent),
            WidthRole::Vector => 0.0,
        }
    }

    /// The validated per-tensor optimizer for tensors of `role`, for
    /// [`ModuleOptimizer::with_group`].
    pub fn try_build(&self, role: WidthRole) -> Result<WidthScaledAdamW, ConfigError> {
        self.validate()?;
        Ok(self.for_role(role))
    }

    /// The optimizer for tensors of `role` (the config is valid).
    fn for_role(&self, role: WidthRole) -> WidthScaledAdamW {
        WidthScaledAdamW {
            adam: Adam {
                beta_1: self.beta_1,
                beta_2: self.beta_2,
                epsilon: self.epsilon,
            },
            lr_scale: self.lr_scale(role),
            weight_decay: self.weight_decay_for(role),
            corrected_decay: self.corrected_decay,
            policy: self.step.policy(),
        }
    }

    /// Like [`try_build`](Self::try_build); panics with the validation error.
    pub fn build(&self, role: WidthRole) -> WidthScaledAdamW {
        or_panic(self.try_build(role))
    }

    /// The role of every float parameter of `model`, in visiting order: `Embedding` weights
    /// get [`embedding_role`](Self::embedding_role), tensors under [`head`](Self::head) get
    /// [`head_role`](Self::head_role), other tensors of rank ≥ 2 are matrix-like and the rest
    /// vector-like.
    pub fn roles<M: Module>(&self, model: &M) -> Vec<ParamRole> {
        params::walk(model, false)
            .into_iter()
            .map(|p| ParamRole {
                role: self.role_of(&p),
                path: p.path,
                owner: p.owner,
            })
            .collect()
    }

    fn role_of(&self, param: &ParamInfo) -> WidthRole {
        if param.owner == "Embedding" {
            self.embedding_role
        } else if self.head.iter().any(|prefix| param.is_under(prefix)) {
            self.head_role
        } else if param.rank >= 2 {
            WidthRole::Matrix
        } else {
            WidthRole::Vector
        }
    }
}

impl crate::optimizers::constructors::OptimizerConfig for WidthScaledAdamWConfig {
    type Optim = WidthScaledAdamW;

    /// The vector-role optimizer (the fallback group of [`init_for`](Self::init_for)).
    fn for_axis(&self, _: usize) -> WidthScaledAdamW {
        self.for_role(WidthRole::Vector)
    }

    /// One parameter group per role (see [`roles`](WidthScaledAdamWConfig::roles)).
    fn for_model<M: Module>(&self, model: &M) -> Result<ModuleOptimizer, ConfigError> {
        self.validate()?;
        let matrices: Vec<_> = params::walk(model, false)
            .into_iter()
            .filter(|p| self.role_of(p) == WidthRole::Matrix)
            .map(|p| p.id)
            .collect();
        let matrix_group =
            (!matrices.is_empty()).then(|| (matrices, self.for_role(WidthRole::Matrix)));
        let clipping = self.clipping().map(GradientClippingConfig::init);
        Ok(grouped(
            self.for_role(WidthRole::Vector),
            matrix_group,
            clipping,
        ))
    }
}

impl WidthScaledAdamW {
    /// Whether a step of `param` runs fused (an f32 tensor on flex or on a CubeCL device such
    /// as wgpu, [`fused`](crate::StepOptions::fused) on) rather than as tensor operations.
    pub fn takes_fused_path<const D: usize>(&self, param: &Tensor<D>) -> bool {
        self.policy.fuses_anywhere(param, None, false)
    }

    /// The factor applied to the learning rate Burn passes to the step.
    pub fn lr_scale(&self) -> f64 {
        self.lr_scale
    }

    /// The weight decay λ_g (multiplied by the scaled learning rate at each step).
    pub fn weight_decay(&self) -> f64 {
        self.weight_decay
    }

    /// λ_g at the tensor's learning rate `lr` (scaled by `η_g/η_max` under
    /// [`corrected_decay`](WidthScaledAdamWConfig::corrected_decay), where `η_max` is the
    /// peak given, scaled like `η_g`).
    fn weight_decay_at(&self, lr: LearningRate) -> f64 {
        let peak = self.corrected_decay.map(|peak| peak * self.lr_scale);
        corrected_weight_decay(self.weight_decay, peak, lr, 2)
    }
}

impl TwoPaths for WidthScaledAdamW {
    fn policy(&self) -> &StepPolicy {
        &self.policy
    }

    #[cfg(feature = "flex")]
    fn fuses_param<const D: usize>(&self, param: &Tensor<D>) -> bool {
        self.policy.fuses(param, None, false)
    }

    /// The step as the CubeCL kernels (`rules::adam::cube`: one launch, after the non-finite
    /// test under `Skip`), on the same formulas.
    #[cfg(feature = "wgpu")]
    fn cube<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<MomentState<D>>,
        on_non_finite: crate::engine::cube::OnNonFinite,
    ) -> crate::engine::cube::CubeStep<D, MomentState<D>> {
        if !self.policy.fuses_on_cube(&param, false) {
            return Err(Box::new((param, grad, state)));
        }
        let lr = lr * self.lr_scale;
        let weight_decay = self.weight_decay_at(lr);
        MomentState::on_cube(param, grad, state, |time| {
            crate::rules::adam::cube::AdamScalars::new(
                self.adam,
                time,
                lr,
                weight_decay,
                self.policy.skips(),
            )
            .on_non_finite(on_non_finite)
        })
    }

    /// The step as tensor operations (any backend).
    fn tensor_ops<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<MomentState<D>>,
    ) -> (Tensor<D>, Option<MomentState<D>>) {
        let lr = lr * self.lr_scale;
        let param = decay(param, lr * self.weight_decay_at(lr));
        let moments = self.adam.update(&grad, state);
        let param = param - self.adam.update_step(&moments, None, lr);
        (param, Some(moments))
    }

    /// The step as the fused flex loops (`rules::adam::flex`, no projection), on the same
    /// formulas.
    #[cfg(feature = "flex")]
    fn fused<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<MomentState<D>>,
        measure: bool,
    ) -> crate::engine::flex::Fused<D, MomentState<D>> {
        use crate::engine::flex::passes::Frame;
        use crate::rules::adam::flex::{AdamRule, step};
        let lr = lr * self.lr_scale;
        let (bc1, bc2) = self.adam.bias_corrections(MomentState::next_time(&state));
        let skip = self.policy.skips();
        let frame = Frame::new(skip, measure, lr * self.weight_decay_at(lr), lr / bc1);
        let rule = AdamRule {
            adam: self.adam,
            bc2,
            nesterov: false,
        };
        step(&frame, rule, None, param, grad, state)
    }
}

two_paths_optimizer!(WidthScaledAdamW => MomentState);
