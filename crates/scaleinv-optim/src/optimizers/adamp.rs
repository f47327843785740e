//! AdamP: Adam with the radial component of each scale-invariant weight's update removed.
//! See [`AdamP`].

use burn::config::Config;
use burn::optim::LearningRate;
use burn::tensor::Tensor;

use crate::diagnostics::observer::{Observed, ObserverTag};
use crate::engine::dispatch::{
    StepOptions, StepPolicy, TwoPaths, step_setters, two_paths_optimizer,
};
#[cfg(feature = "flex")]
use crate::engine::flex::passes::Frame;
use crate::error::{ConfigError, Range, check};
use crate::optimizers::constructors::{OptimizerConfig, constructors};
use crate::rules::adam::Adam;
#[cfg(feature = "flex")]
use crate::rules::adam::flex::AdamRule;
use crate::rules::adam::tensor::MomentState;
use crate::rules::decay::corrected_weight_decay;
use crate::rules::decay::tensor::decay_factor;
use crate::rules::decay::write;
use crate::rules::projection::ScaleInvariance;
use crate::rules::projection::options::{ProjectionOptions, Projector, projection_setters};

/// Configuration of [`AdamP`], with the reference's defaults.
///
/// The learning rate is not part of the config: Burn passes it to every step (reference
/// default 1e-3).
#[derive(Config, Debug)]
pub struct AdamPConfig {
    /// β1 of the first moment.
    #[config(default = 0.9)]
    pub beta_1: f64,
    /// β2 of the second moment.
    #[config(default = 0.999)]
    pub beta_2: f64,
    /// Decoupled weight decay λ, multiplied by the learning rate.
    #[config(default = 0.0)]
    pub weight_decay: f64,
    /// Nesterov momentum in AdamP's form (bias correction stays `1 / (1 − β1^t)`).
    #[config(default = false)]
    pub nesterov: bool,
    /// AdamC's corrected decay, an extension with no reference (Defazio et al. 2025 correct AdamW
    /// only): `Some(η_max)`, the schedule's peak learning rate, decays every tensor of rank ≥ 2 by
    /// `λ·η_t²/η_max` instead of `λ·η_t` (times wd_ratio where the projection fires), so the decay
    /// of the weights that feed a normalization follows the schedule's shape rather than its scale.
    /// `None` (the default): the reference's decay.
    pub corrected_decay: Option<f64>,
    /// The scale-invariance test and projection (δ, wd_ratio, ε — also Adam's — channel
    /// axis, zero tensors).
    #[config(default = "ProjectionOptions::new()")]
    pub projection: ProjectionOptions,
    /// Fused path, non-finite policy, gradient clipping.
    #[config(default = "StepOptions::new()")]
    pub step: StepOptions,
}

projection_setters!(AdamPConfig);
step_setters!(AdamPConfig);
constructors!(AdamPConfig => AdamP: build, init, init_for, axes);

/// AdamP: Adam with the radial component of each scale-invariant weight's update removed.
///
/// Heo et al., *AdamP: Slowing Down the Slowdown for Momentum Optimizers on Scale-invariant
/// Weights*, ICLR 2021, [arXiv:2006.08217](https://arxiv.org/abs/2006.08217), Algorithm 2;
/// reference: `clovaai/AdamP` v0.3.0. Per parameter `p` with gradient `g`:
///
/// ```text
/// t ← t + 1
/// m ← β1·m + (1 − β1)·g ;  v ← β2·v + (1 − β2)·g²
/// denom = √v / √(1 − β2^t) + ε
/// u = m / denom                       (Nesterov: u = (β1·m + (1 − β1)·g) / denom)
/// (u, r) = project(p, g, u)           (rank ≥ 2 only; r = wd_ratio if projected, else 1)
/// p ← p · (1 − η·λ·r)                 (decoupled decay)
/// p ← p − η / (1 − β1^t) · u
/// ```
///
/// With `delta = 0` the projection never fires and AdamP is AdamW with PyTorch-style decay.
/// On flex the step runs as the fused loops of `rules::adam::flex` (two passes, three when the
/// projection fires), on wgpu as CubeCL kernels (statistics, then the update with the decision), on the same
/// formulas.
#[derive(Debug, Clone)]
pub struct AdamP {
    adam: Adam,
    projector: Projector,
    weight_decay: f64,
    corrected_decay: Option<f64>,
    nesterov: bool,
}

impl AdamPConfig {
    /// Checks every hyperparameter against its accepted range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        const C: &str = "AdamPConfig";
        check(C, "beta_1", self.beta_1, Range::UnitHalfOpen)?;
        check(C, "beta_2", self.beta_2, Range::UnitHalfOpen)?;
        check(C, "weight_decay", self.weight_decay, Range::NonNegative)?;
        if let Some(peak) = self.corrected_decay {
            check(C, "corrected_decay", peak, Range::Positive)?;
        }
        self.projection.validate_in(C)?;
        self.step.validate_in(C)
    }
}

impl OptimizerConfig for AdamPConfig {
    type Optim = AdamP;

    fn for_axis(&self, channel_axis: usize) -> AdamP {
        AdamP {
            adam: Adam {
                beta_1: self.beta_1,
                beta_2: self.beta_2,
                epsilon: self.projection.epsilon,
            },
            projector: self.projection.projector(channel_axis, self.step.policy()),
            weight_decay: self.weight_decay,
            corrected_decay: self.corrected_decay,
            nesterov: self.nesterov,
        }
    }

    fn default_axis(&self) -> usize {
        self.projection.channel_axis
    }

    fn without_model(&self) -> AdamP {
        let optim = self.for_axis(self.default_axis());
        let projector = optim.projector.without_model("AdamPConfig");
        AdamP { projector, ..optim }
    }
}

impl AdamP {
    /// Whether a step of `param` runs fused rather than as tensor operations:
    /// [`fused`](crate::StepOptions::fused) on, no armed observer, and an f32, f16 or bf16
    /// tensor on flex (the fused loops) or an f32 tensor on a CubeCL device (the kernels).
    pub fn takes_fused_path<const D: usize>(&self, param: &Tensor<D>) -> bool {
        self.projector.fuses_anywhere(param)
    }

    /// The scale-invariance test and projection this optimizer applies.
    pub fn scale_invariance(&self) -> &ScaleInvariance {
        &self.projector.invariance
    }
}

impl TwoPaths for AdamP {
    fn policy(&self) -> &StepPolicy {
        &self.projector.policy
    }

    fn notice<const D: usize>(&self, param: &Tensor<D>) {
        self.projector.notice(param);
    }

    #[cfg(feature = "flex")]
    fn fuses_param<const D: usize>(&self, param: &Tensor<D>) -> bool {
        self.projector.fuses(param)
    }

    /// The step as the CubeCL kernels (`rules::adam::cube`: the projection's statistics and
    /// decision for a tensor of rank ≥ 2, then one update), on the same formulas.
    #[cfg(feature = "wgpu")]
    fn cube<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<MomentState<D>>,
        on_non_finite: crate::engine::cube::OnNonFinite,
    ) -> crate::engine::cube::CubeStep<D, MomentState<D>> {
        if !self.projector.fuses_on_cube(&param) {
            return Err(Box::new((param, grad, state)));
        }
        let weight_decay = corrected_weight_decay(self.weight_decay, self.corrected_decay, lr, D);
        let skip = self.projector.policy.skips();
        MomentState::on_cube(param, grad, state, |time| {
            crate::rules::adam::cube::AdamScalars::new(self.adam, time, lr, weight_decay, skip)
                .adamp(self.nesterov, Some(self.projector.invariance))
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
        let state = self.adam.update(&grad, state);
        let (bc1, _) = self.adam.bias_corrections(state.time);
        let denom = self
            .adam
            .tensor_denominator(state.moment_2.clone(), state.time);
        let update =
            self.adam
                .direction(state.moment_1.clone(), grad.clone(), denom, self.nesterov);
        let projected = self.projector.project(&param, &grad, update);
        let weight_decay = corrected_weight_decay(self.weight_decay, self.corrected_decay, lr, D);
        let factor = decay_factor(lr * weight_decay, projected.decay_ratio);
        let param = write(param, factor, projected.update, lr / bc1);
        (param, Some(state))
    }

    /// The step as the fused flex loops: Adam's moments (`rules::adam::flex`) inside the
    /// projection's passes (`rules::projection::flex`), on the same formulas.
    #[cfg(feature = "flex")]
    fn fused<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<MomentState<D>>,
        measure: bool,
    ) -> crate::engine::flex::Fused<D, MomentState<D>> {
        let (bc1, bc2) = self.adam.bias_corrections(MomentState::next_time(&state));
        let weight_decay = corrected_weight_decay(self.weight_decay, self.corrected_decay, lr, D);
        let skip = self.projector.policy.skips();
        let frame = Frame::new(skip, measure, lr * weight_decay, lr / bc1)
            .with_caution(self.projector.caution);
        let rule = AdamRule {
            adam: self.adam,
            bc2,
            nesterov: self.nesterov,
        };
        let projection = Some(&self.projector.invariance);
        crate::rules::adam::flex::step(&frame, rule, projection, param, grad, state)
    }
}

/// AdamP's state for one parameter: Adam's moments and step count.
pub type AdamPState<const D: usize> = MomentState<D>;

impl crate::ChannelAxisOptimizer for AdamP {
    fn on_channel_axis(&self, axis: usize) -> Result<Self, ConfigError> {
        Ok(Self {
            projector: self.projector.on_channel_axis(axis),
            ..self.clone()
        })
    }
}

impl Observed for AdamP {
    fn observed(self, tag: ObserverTag) -> Self {
        let projector = self.projector.observed(tag);
        Self { projector, ..self }
    }
}

two_paths_optimizer!(AdamP => AdamPState);
