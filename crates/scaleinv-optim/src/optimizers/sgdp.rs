//! SGDP: SGD with momentum, with the radial component of each scale-invariant weight's update
//! removed. See [`Sgdp`].

use burn::config::Config;
use burn::optim::{LearningRate, RecordState};
use burn::tensor::{Device, Tensor};

use crate::diagnostics::observer::{Observed, ObserverTag};
use crate::engine::dispatch::{
    StateTensors, StepOptions, StepPolicy, TwoPaths, step_setters, two_paths_optimizer,
};
use crate::engine::non_finite::{Checkpoint, Revert};
use crate::error::{ConfigError, Range, check};
use crate::optimizers::constructors::{OptimizerConfig, constructors};
use crate::rules::decay::corrected_weight_decay;
use crate::rules::decay::tensor::decay_factor;
use crate::rules::decay::write;
use crate::rules::projection::ScaleInvariance;
use crate::rules::projection::options::{ProjectionOptions, Projector, projection_setters};
use crate::rules::sgd;

/// Configuration of [`Sgdp`], with the reference's defaults.
///
/// The learning rate is not part of the config: Burn passes it to every step (the reference
/// has no default; its README uses 0.1).
#[derive(Config, Debug)]
pub struct SgdpConfig {
    /// Heavy-ball momentum μ.
    #[config(default = 0.0)]
    pub momentum: f64,
    /// Dampening τ of the gradient added to the buffer.
    #[config(default = 0.0)]
    pub dampening: f64,
    /// Nesterov momentum, `u = g + μ·b`.
    #[config(default = false)]
    pub nesterov: bool,
    /// Decoupled weight decay λ, multiplied by the learning rate and divided by `1 − μ`.
    #[config(default = 0.0)]
    pub weight_decay: f64,
    /// AdamC's corrected decay, an extension with no reference (Defazio et al. 2025 correct AdamW
    /// only): `Some(η_max)`, the schedule's peak learning rate, decays every tensor of rank ≥ 2 by
    /// `λ·η_t²/η_max` instead of `λ·η_t` (before the division by 1 − μ), so the decay of the
    /// weights that feed a normalization follows the schedule's shape rather than its scale. `None`
    /// (the default): the reference's decay.
    pub corrected_decay: Option<f64>,
    /// Write the projected update back into the momentum buffer when Nesterov is off, as the
    /// reference does (`true`). `false` keeps the buffer unprojected, as timm ≥ 2026 and
    /// pytorch_optimizer do.
    #[config(default = true)]
    pub project_momentum_buffer: bool,
    /// The scale-invariance test and projection (δ, wd_ratio, ε, channel axis, zero tensors).
    #[config(default = "ProjectionOptions::new()")]
    pub projection: ProjectionOptions,
    /// Fused path, non-finite policy, gradient clipping.
    #[config(default = "StepOptions::new()")]
    pub step: StepOptions,
}

projection_setters!(SgdpConfig);
step_setters!(SgdpConfig);
constructors!(SgdpConfig => Sgdp: build, init, init_for, axes);

/// SGDP: SGD with momentum and the radial component of each scale-invariant weight's update
/// removed.
///
/// Heo et al., *AdamP: Slowing Down the Slowdown for Momentum Optimizers on Scale-invariant
/// Weights*, ICLR 2021, [arXiv:2006.08217](https://arxiv.org/abs/2006.08217), Algorithm 1;
/// reference: `clovaai/AdamP` v0.3.0. Per parameter `p` with gradient `g`:
///
/// ```text
/// b ← μ·b + (1 − τ)·g                 (b starts at zero, not at g)
/// u = b                               (Nesterov: u = g + μ·b)
/// (u, r) = project(p, g, u)           (rank ≥ 2 only; r = wd_ratio if projected, else 1)
/// b ← u                               (not Nesterov, `project_momentum_buffer`: the reference
///                                      projects the buffer in place)
/// p ← p · (1 − η·λ·r / (1 − μ))       (decoupled decay, divided by 1 − μ as in the reference)
/// p ← p − η·u
/// ```
#[derive(Debug, Clone)]
pub struct Sgdp {
    momentum: f64,
    dampening: f64,
    nesterov: bool,
    weight_decay: f64,
    corrected_decay: Option<f64>,
    project_momentum_buffer: bool,
    projector: Projector,
}

/// SGDP's state for one parameter: the momentum buffer (absent when μ = 0, where the buffer
/// would only ever hold the current gradient).
#[derive(RecordState, Clone, Debug)]
pub struct SgdpState<const D: usize> {
    /// Momentum buffer `b`.
    pub momentum: Tensor<D>,
}

impl<const D: usize> SgdpState<D> {
    /// Moves the buffer to `device`.
    pub fn to_device(self, device: &Device) -> Self {
        Self {
            momentum: self.momentum.to_device(device),
        }
    }
}

impl<const D: usize> StateTensors<D> for SgdpState<D> {
    fn tensors(&self) -> impl Iterator<Item = &Tensor<D>> {
        core::iter::once(&self.momentum)
    }
}

impl<const D: usize> Revert<D> for SgdpState<D> {
    fn revert(self, checkpoint: &Checkpoint<D>, old: Option<Self>) -> Self {
        Self {
            momentum: checkpoint.keep_or_zero(self.momentum, old.map(|s| s.momentum)),
        }
    }
}

impl SgdpConfig {
    /// Checks every hyperparameter against its accepted range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        const C: &str = "SgdpConfig";
        check(C, "momentum", self.momentum, Range::UnitHalfOpen)?;
        check(C, "dampening", self.dampening, Range::UnitClosed)?;
        check(C, "weight_decay", self.weight_decay, Range::NonNegative)?;
        if let Some(peak) = self.corrected_decay {
            check(C, "corrected_decay", peak, Range::Positive)?;
        }
        self.projection.validate_in(C)?;
        self.step.validate_in(C)?;
        if self.nesterov && (self.momentum == 0.0 || self.dampening != 0.0) {
            return Err(ConfigError::Conflict {
                config: C,
                reason: "nesterov needs momentum > 0 and dampening = 0",
            });
        }
        Ok(())
    }
}

impl OptimizerConfig for SgdpConfig {
    type Optim = Sgdp;

    fn for_axis(&self, channel_axis: usize) -> Sgdp {
        Sgdp {
            momentum: self.momentum,
            dampening: self.dampening,
            nesterov: self.nesterov,
            weight_decay: self.weight_decay,
            corrected_decay: self.corrected_decay,
            project_momentum_buffer: self.project_momentum_buffer,
            projector: self.projection.projector(channel_axis, self.step.policy()),
        }
    }

    fn default_axis(&self) -> usize {
        self.projection.channel_axis
    }

    fn without_model(&self) -> Sgdp {
        let optim = self.for_axis(self.default_axis());
        let projector = optim.projector.without_model("SgdpConfig");
        Sgdp { projector, ..optim }
    }
}

impl Sgdp {
    /// Whether a step of `param` runs fused rather than as tensor operations:
    /// [`fused`](crate::StepOptions::fused) on, no armed observer, and an f32, f16 or bf16
    /// tensor on flex (the fused loops) or an f32 tensor on a CubeCL device (the kernels).
    pub fn takes_fused_path<const D: usize>(&self, param: &Tensor<D>) -> bool {
        self.projector.fuses_anywhere(param)
    }

    /// The decoupled decay rate at learning rate `lr`: `η·λ / (1 − μ)`, as in the reference.
    /// (λ scaled by `η_t/η_max` for a tensor of rank ≥ 2 under
    /// [`corrected_decay`](SgdpConfig::corrected_decay).)
    fn decay_rate<const D: usize>(&self, lr: LearningRate) -> f64 {
        let weight_decay = corrected_weight_decay(self.weight_decay, self.corrected_decay, lr, D);
        lr * weight_decay / (1.0 - self.momentum)
    }

    /// Whether the projected update is written back into the buffer.
    /// Never with the cautious mask: timm's SGDP copies its buffer, so that neither the
    /// projection nor the mask reaches it.
    fn writes_back(&self) -> bool {
        !self.nesterov && self.project_momentum_buffer && !self.projector.caution
    }

    /// The scale-invariance test and projection this optimizer applies.
    pub fn scale_invariance(&self) -> &ScaleInvariance {
        &self.projector.invariance
    }
}

impl crate::ChannelAxisOptimizer for Sgdp {
    fn on_channel_axis(&self, axis: usize) -> Result<Self, ConfigError> {
        Ok(Self {
            projector: self.projector.on_channel_axis(axis),
            ..self.clone()
        })
    }
}

impl Observed for Sgdp {
    fn observed(self, tag: ObserverTag) -> Self {
        let projector = self.projector.observed(tag);
        Self { projector, ..self }
    }
}

impl TwoPaths for Sgdp {
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

    /// The step as the CubeCL kernels (`rules::sgd::cube`: the projection's statistics and
    /// decision for a tensor of rank ≥ 2, then one update), on the same formulas. The buffer
    /// starts from zeros; with μ = 0 it is scratch space that is not kept.
    #[cfg(feature = "wgpu")]
    fn cube<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<SgdpState<D>>,
        on_non_finite: crate::engine::cube::OnNonFinite,
    ) -> crate::engine::cube::CubeStep<D, SgdpState<D>> {
        use crate::rules::sgd::cube::{SgdScalars, sgd_step};
        let mu = self.momentum;
        let buffers = state.iter().filter(|_| mu != 0.0).map(|s| &s.momentum);
        let on_cube = crate::engine::cube::on_cube;
        // A wrapper's zero-gradient step of a projected tensor would write the projection of
        // μ·b back: the tensor ops take it.
        let zeroing = on_non_finite == crate::engine::cube::OnNonFinite::ZeroGradient;
        let zero_written_back =
            zeroing && self.writes_back() && self.projector.invariance.applies_to(D);
        if !self.projector.fuses_on_cube(&param)
            || !crate::engine::fits::fit(&param, &grad, buffers, on_cube)
            || zero_written_back
        {
            return Err(Box::new((param, grad, state)));
        }
        let buffer = match state {
            Some(s) if mu != 0.0 => s.momentum,
            _ => grad.zeros_like(),
        };
        let scalars = SgdScalars::new(
            mu,
            self.dampening,
            self.nesterov,
            self.writes_back(),
            lr,
            self.decay_rate::<D>(lr),
            self.projector.policy.skips(),
            Some(self.projector.invariance),
        )
        .on_non_finite(on_non_finite);
        let (param, buffer) = sgd_step(param, grad, buffer, scalars);
        Ok((param, (mu != 0.0).then_some(SgdpState { momentum: buffer })))
    }

    /// The step as tensor operations (any backend).
    fn tensor_ops<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<SgdpState<D>>,
    ) -> (Tensor<D>, Option<SgdpState<D>>) {
        let mu = self.momentum;
        let damped = sgd::damped(grad.clone(), self.dampening);
        let buffer = match state {
            Some(s) if mu != 0.0 => sgd::buffer(s.momentum, damped, mu),
            _ => damped,
        };
        let update = sgd::direction(grad.clone(), buffer.clone(), mu, self.nesterov);
        let projected = self.projector.project(&param, &grad, update);
        let buffer = if self.writes_back() {
            projected.update.clone()
        } else {
            buffer
        };
        let factor = decay_factor(self.decay_rate::<D>(lr), projected.decay_ratio);
        let param = write(param, factor, projected.update, lr);
        let state = (mu != 0.0).then_some(SgdpState { momentum: buffer });
        (param, state)
    }

    /// The step as the fused flex loops (`rules::sgd::flex`), on the same formulas. The buffer
    /// starts from zeros; with μ = 0 it is scratch space that is not kept.
    #[cfg(feature = "flex")]
    fn fused<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<SgdpState<D>>,
        measure: bool,
    ) -> crate::engine::flex::Fused<D, SgdpState<D>> {
        use crate::engine::flex::passes::Frame;
        use crate::engine::flex::{Buffer, Target};
        use crate::rules::sgd::flex::{SgdRule, step};
        let mu = self.momentum;
        let mut p = Target::new(param);
        let g = Buffer::new(grad);
        let previous = state.filter(|_| mu != 0.0).map(|s| Buffer::new(s.momentum));
        let had_buffer = previous.is_some();
        let mut buffer = previous.unwrap_or_else(|| Buffer::zeros(&g));
        let skip = self.projector.policy.skips();
        let frame = Frame::new(skip, measure, self.decay_rate::<D>(lr), lr)
            .with_caution(self.projector.caution);
        let rule = SgdRule {
            momentum: mu,
            dampening: self.dampening,
            nesterov: self.nesterov,
            write_back: self.writes_back(),
        };
        let projection = Some(&self.projector.invariance);
        let outcome = step(&frame, rule, projection, &mut p, &g, buffer.get_mut());
        // A step skipped under `measure` gives its state back as it came (none before the
        // first step: PyTorch's first step takes the gradient itself as the buffer).
        let given_back = measure && !outcome.written();
        let kept = mu != 0.0 && (had_buffer || !given_back);
        crate::engine::flex::Fused {
            param: p.tensor(outcome),
            state: kept.then(|| SgdpState {
                momentum: buffer.tensor(),
            }),
            outcome,
        }
    }
}

two_paths_optimizer!(Sgdp => SgdpState);
