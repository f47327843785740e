//! SGDP: SGD with momentum, with the radial component of each scale-invariant weight's update
//! removed. See [`Sgdp`].

use burn::config::Config;
use burn::grad_clipping::GradientClippingConfig;
use burn::optim::{LearningRate, Optimizer};
use burn::tensor::{Device, Tensor};

use crate::RecordState;
use crate::decay::decoupled_decay;
use crate::error::{ConfigError, Range, check};
use crate::non_finite::{Checkpoint, NonFinitePolicy, Revert};
use crate::observer::{Observed, ObserverTag, project_observed};
use crate::per_axis::{PerAxisConfig, per_axis_constructors};
use crate::radial::ScaleInvariance;
use crate::step_guard::framed_step;

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
    /// ε of the cosine norms and of the projection norm.
    #[config(default = 1e-8)]
    pub epsilon: f64,
    /// Threshold δ of the scale-invariance test `max cos < δ / √K`.
    #[config(default = 0.1)]
    pub delta: f64,
    /// Factor on the weight decay of tensors whose update was projected.
    #[config(default = 0.1)]
    pub wd_ratio: f64,
    /// Write the projected update back into the momentum buffer when Nesterov is off, as the
    /// reference does (`true`). `false` keeps the buffer unprojected, as timm ≥ 2026 and
    /// pytorch_optimizer do.
    #[config(default = true)]
    pub project_momentum_buffer: bool,
    /// Channel axis used by [`build`](Self::build) and [`init`](Self::init); `init_for`
    /// sets it per parameter instead.
    #[config(default = 0)]
    pub channel_axis: usize,
    /// Whether an all-zero weight or gradient passes the scale-invariance test: its cosine is
    /// 0, so in the reference it does, and its weight decay is cut by `wd_ratio` (a weight
    /// whose gradient is zero keeps a tenth of its decay). `false` gives such a tensor the
    /// plain update and the full decay.
    #[config(default = true)]
    pub zero_is_invariant: bool,
    /// Run the step as the fused loop on the flex CPU backend (two or three passes over
    /// memory, see the crate's `fused` module) rather than as tensor operations; the two agree
    /// to rounding and both replay the golden trajectories. Other backends, and optimizers
    /// built with an observer, always use the tensor operations.
    #[config(default = true)]
    pub fused: bool,
    /// What a step does when a gradient holds NaN or ±∞.
    #[config(default = "NonFinitePolicy::Skip")]
    pub non_finite: NonFinitePolicy,
    /// Gradient clipping applied before each step.
    pub grad_clipping: Option<GradientClippingConfig>,
}

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
    project_momentum_buffer: bool,
    projection: ScaleInvariance,
    observer: Option<ObserverTag>,
    non_finite: NonFinitePolicy,
    /// Read only by the flex backend's fused path.
    #[cfg_attr(not(feature = "flex"), allow(dead_code))]
    fused: bool,
}

/// SGDP's state for one parameter: the momentum buffer (absent when μ = 0, where the buffer
/// would only ever hold the current gradient).
#[derive(RecordState, Clone, Debug)]
pub struct SgdpState<const D: usize> {
    /// Momentum buffer `b`.
    pub momentum: Tensor<D>,
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
        check(C, "epsilon", self.epsilon, Range::Positive)?;
        check(C, "delta", self.delta, Range::NonNegative)?;
        check(C, "wd_ratio", self.wd_ratio, Range::UnitClosed)?;
        if self.nesterov && (self.momentum == 0.0 || self.dampening != 0.0) {
            return Err(ConfigError::Conflict {
                config: C,
                reason: "nesterov needs momentum > 0 and dampening = 0",
            });
        }
        Ok(())
    }
}

per_axis_constructors!(SgdpConfig => Sgdp);

impl PerAxisConfig for SgdpConfig {
    type Optim = Sgdp;

    fn check(&self) -> Result<(), ConfigError> {
        self.validate()
    }

    fn for_axis(&self, channel_axis: usize) -> Sgdp {
        Sgdp {
            momentum: self.momentum,
            dampening: self.dampening,
            nesterov: self.nesterov,
            weight_decay: self.weight_decay,
            project_momentum_buffer: self.project_momentum_buffer,
            projection: ScaleInvariance::detect(
                self.delta,
                self.wd_ratio,
                self.epsilon,
                channel_axis,
            )
            .with_zero_is_invariant(self.zero_is_invariant),
            observer: None,
            non_finite: self.non_finite,
            fused: self.fused,
        }
    }

    fn default_axis(&self) -> usize {
        self.channel_axis
    }

    fn clipping(&self) -> Option<&GradientClippingConfig> {
        self.grad_clipping.as_ref()
    }
}

impl Sgdp {
    /// Whether a step of `param` runs the fused loop of the flex backend (an f32 tensor on
    /// flex, [`fused`](crate::SgdpConfig::fused) on, no armed observer) rather than tensor operations.
    pub fn takes_fused_path<const D: usize>(&self, param: &Tensor<D>) -> bool {
        #[cfg(feature = "flex")]
        {
            let observed = self.observer.as_ref().is_some_and(ObserverTag::is_armed);
            let axis = Some(self.projection.channel_axis);
            self.fused && !observed && crate::fused::accepts(param, axis)
        }
        #[cfg(not(feature = "flex"))]
        {
            let _ = param;
            false
        }
    }

    /// The scale-invariance test and projection this optimizer applies.
    pub fn scale_invariance(&self) -> &ScaleInvariance {
        &self.projection
    }
}

impl Observed for Sgdp {
    fn observed(self, tag: ObserverTag) -> Self {
        Self {
            observer: Some(tag),
            ..self
        }
    }
}

impl Optimizer for Sgdp {
    type State<const D: usize> = SgdpState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        #[cfg(feature = "flex")]
        if self.takes_fused_path(&param)
            && crate::fused::fit(&param, &grad, state.iter().map(|s| &s.momentum))
        {
            let fused = crate::fused::SgdpStep {
                momentum: self.momentum,
                dampening: self.dampening,
                nesterov: self.nesterov,
                weight_decay: self.weight_decay,
                project_momentum_buffer: self.project_momentum_buffer,
                projection: &self.projection,
                non_finite: self.non_finite,
            };
            return fused.run(lr, param, grad, state);
        }
        framed_step(
            lr,
            self.non_finite,
            param,
            grad,
            state,
            |param, grad, state| {
                let mu = self.momentum;
                let damped = if self.dampening == 0.0 {
                    grad.clone()
                } else {
                    grad.clone() * (1.0 - self.dampening)
                };
                let buffer = match state {
                    Some(s) if mu != 0.0 => s.momentum * mu + damped,
                    _ => damped,
                };
                let update = if self.nesterov {
                    grad.clone() + buffer.clone() * mu
                } else {
                    buffer.clone()
                };

                let projected =
                    project_observed(&self.projection, &self.observer, &param, &grad, update);
                let buffer = if !self.nesterov && self.project_momentum_buffer {
                    projected.update.clone()
                } else {
                    buffer
                };

                let param = decoupled_decay(
                    param,
                    lr * self.weight_decay / (1.0 - mu),
                    projected.decay_ratio,
                );
                let param = param - projected.update * lr;
                let state = (mu != 0.0).then_some(SgdpState { momentum: buffer });
                (param, state)
            },
        )
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        SgdpState {
            momentum: state.momentum.to_device(device),
        }
    }
}
