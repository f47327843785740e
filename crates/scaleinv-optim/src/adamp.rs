//! AdamP: Adam with the radial component of each scale-invariant weight's update removed.
//! See [`AdamP`].

use burn::config::Config;
use burn::grad_clipping::GradientClippingConfig;
use burn::optim::{LearningRate, Optimizer};
use burn::tensor::{Device, Tensor};

use crate::decay::decoupled_decay;
use crate::error::{ConfigError, Range, check};
use crate::moments::{AdamMoments, MomentState};
use crate::non_finite::NonFinitePolicy;
use crate::observer::{Observed, ObserverTag, project_observed};
use crate::per_axis::{PerAxisConfig, per_axis_constructors};
use crate::radial::ScaleInvariance;
use crate::step_guard::framed_step;

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
    /// ε of Adam's denominator, of the cosine norms and of the projection norm (the
    /// reference's 1e-8, not Burn's 1e-5).
    #[config(default = 1e-8)]
    pub epsilon: f64,
    /// Decoupled weight decay λ, multiplied by the learning rate.
    #[config(default = 0.0)]
    pub weight_decay: f64,
    /// Threshold δ of the scale-invariance test `max cos < δ / √K`.
    #[config(default = 0.1)]
    pub delta: f64,
    /// Factor on the weight decay of tensors whose update was projected.
    #[config(default = 0.1)]
    pub wd_ratio: f64,
    /// Nesterov momentum in AdamP's form (bias correction stays `1 / (1 − β1^t)`).
    #[config(default = false)]
    pub nesterov: bool,
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
#[derive(Debug, Clone)]
pub struct AdamP {
    moments: AdamMoments,
    projection: ScaleInvariance,
    weight_decay: f64,
    nesterov: bool,
    observer: Option<ObserverTag>,
    non_finite: NonFinitePolicy,
    /// Read only by the flex backend's fused path.
    #[cfg_attr(not(feature = "flex"), allow(dead_code))]
    fused: bool,
}

impl AdamPConfig {
    /// Checks every hyperparameter against its accepted range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        const C: &str = "AdamPConfig";
        check(C, "beta_1", self.beta_1, Range::UnitHalfOpen)?;
        check(C, "beta_2", self.beta_2, Range::UnitHalfOpen)?;
        check(C, "epsilon", self.epsilon, Range::Positive)?;
        check(C, "weight_decay", self.weight_decay, Range::NonNegative)?;
        check(C, "delta", self.delta, Range::NonNegative)?;
        check(C, "wd_ratio", self.wd_ratio, Range::UnitClosed)
    }
}

per_axis_constructors!(AdamPConfig => AdamP);

impl PerAxisConfig for AdamPConfig {
    type Optim = AdamP;

    fn check(&self) -> Result<(), ConfigError> {
        self.validate()
    }

    fn for_axis(&self, channel_axis: usize) -> AdamP {
        AdamP {
            moments: AdamMoments {
                beta_1: self.beta_1,
                beta_2: self.beta_2,
                epsilon: self.epsilon,
            },
            projection: ScaleInvariance::detect(
                self.delta,
                self.wd_ratio,
                self.epsilon,
                channel_axis,
            )
            .with_zero_is_invariant(self.zero_is_invariant),
            weight_decay: self.weight_decay,
            nesterov: self.nesterov,
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

impl AdamP {
    /// Whether a step of `param` runs the fused loop of the flex backend (an f32 tensor on
    /// flex, [`fused`](crate::AdamPConfig::fused) on, no armed observer) rather than tensor operations.
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

/// AdamP's state for one parameter: Adam's moments and step count.
pub type AdamPState<const D: usize> = MomentState<D>;

impl Observed for AdamP {
    fn observed(self, tag: ObserverTag) -> Self {
        Self {
            observer: Some(tag),
            ..self
        }
    }
}

impl Optimizer for AdamP {
    type State<const D: usize> = AdamPState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        #[cfg(feature = "flex")]
        if self.takes_fused_path(&param)
            && crate::fused::fit(&param, &grad, state.iter().flat_map(MomentState::tensors))
        {
            let fused = crate::fused::AdamStep {
                moments: &self.moments,
                projection: Some(&self.projection),
                weight_decay: self.weight_decay,
                nesterov: self.nesterov,
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
                let state = self.moments.update(&grad, state);
                let (bc1, _) = self.moments.bias_corrections(state.time);
                let denom = self.moments.denominator(state.moment_2.clone(), state.time);

                let update = if self.nesterov {
                    let b1 = self.moments.beta_1;
                    (state.moment_1.clone() * b1 + grad.clone() * (1.0 - b1)) / denom
                } else {
                    state.moment_1.clone() / denom
                };

                let projected =
                    project_observed(&self.projection, &self.observer, &param, &grad, update);
                let param = decoupled_decay(param, lr * self.weight_decay, projected.decay_ratio);
                let param = param - projected.update * (lr / bc1);
                (param, Some(state))
            },
        )
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        state.to_device(device)
    }
}
