//! The radial projection of AdamP and SGDP around any per-tensor optimizer. See
//! [`RadialProjection`].

use burn::config::Config;
use burn::optim::{LearningRate, ModuleOptimizer, Optimizer};
use burn::tensor::{Device, Tensor};

use crate::diagnostics::observer::{Observed, ObserverTag, ProjectionObserver};
use crate::diagnostics::probe::{Invariance, ProbeReport};
use crate::engine::dispatch::StepPolicy;
use crate::engine::non_finite::NonFinitePolicy;
use crate::engine::step_frame::framed_wrapper_step;
use crate::error::{ConfigError, Range, check};
use crate::model::channel_axes::{ChannelAxes, grouped};
use crate::optimizers::constructors::wrapper_constructors;
use crate::rules::decay::tensor::decoupled_decay;
use crate::rules::projection::options::{ProjectionOptions, Projector, projection_setters};
use crate::rules::projection::{ProjectionView, ScaleInvariance};

/// Configuration of [`RadialProjection`], with AdamP's defaults.
#[derive(Config, Debug)]
pub struct RadialProjectionConfig {
    /// The scale-invariance test and projection (δ, wd_ratio, ε, channel axis — used by
    /// [`wrap`](Self::wrap) and [`init`](Self::init) — zero tensors).
    #[config(default = "ProjectionOptions::new()")]
    pub projection: ProjectionOptions,
    /// Decoupled weight decay λ (AdamW-style, multiplied by the learning rate and by
    /// `wd_ratio` when the projection fires). Leave the base optimizer's own decay off.
    #[config(default = 0.0)]
    pub weight_decay: f64,
    /// Per-step detection (the reference) or a fixed view.
    #[config(default = "ProjectionView::Detect")]
    pub view: ProjectionView,
    /// What a step does when a gradient holds NaN or ±∞; under `Skip` the base optimizer
    /// steps on a zero gradient and the parameter is kept (see [`NonFinitePolicy::Skip`]).
    #[config(default = "NonFinitePolicy::Skip")]
    pub non_finite: NonFinitePolicy,
}

projection_setters!(RadialProjectionConfig);
wrapper_constructors!(RadialProjectionConfig => RadialProjection);

/// The radial projection of AdamP and SGDP (Heo et al., ICLR 2021) around any per-tensor
/// optimizer `O` — Burn's Adam, SGD, Lion, or this crate's Stable-SPAM — so that "projected
/// X" exists for every X. Per parameter `p` with raw gradient `g`:
///
/// ```text
/// u = O.step(η, p, g) − p                    the base update (its state advances as usual)
/// (u, r) = project(p, g, u)                  rank ≥ 2; r = wd_ratio if projected, else 1
///                                            (then the cautious mask, `with_caution(true)`)
/// p ← p · (1 − η·λ·r) + u
/// ```
///
/// Around Burn's Adam with ε = 1e-8 this is AdamP (without Nesterov); the golden AdamP
/// trajectories check it. Around SGD it differs from SGDP, which also projects the momentum
/// buffer in place: the wrapper never touches the base optimizer's state.
///
/// ```
/// use burn::prelude::*;
/// use burn::nn::{Linear, LinearConfig};
/// use burn::optim::{AdamConfig, GradientsParams};
/// use scaleinv_optim::RadialProjectionConfig;
///
/// # #[cfg(feature = "flex")] {
/// let device = Device::flex().autodiff();
/// let model: Linear = LinearConfig::new(4, 3).init(&device);
/// let adam = AdamConfig::new().with_epsilon(1e-8).build();
/// let mut optim = RadialProjectionConfig::new()
///     .with_weight_decay(1e-2)
///     .init_for(adam, &model);
///
/// let loss = model.forward(Tensor::<2>::ones([8, 4], &device)).square().mean();
/// let grads = GradientsParams::from_grads(loss.backward(), &model);
/// let model = optim.step(1e-3, model, grads);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RadialProjection<O> {
    inner: O,
    projector: Projector,
    weight_decay: f64,
}

impl RadialProjectionConfig {
    /// Checks every hyperparameter against its accepted range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        const C: &str = "RadialProjectionConfig";
        self.projection.validate_in(C)?;
        check(C, "weight_decay", self.weight_decay, Range::NonNegative)
    }

    fn for_axis<O>(
        &self,
        inner: O,
        channel_axis: usize,
        view: ProjectionView,
    ) -> RadialProjection<O> {
        let projector = Projector::new(
            self.projection.invariance(channel_axis, view),
            StepPolicy {
                fused: false,
                non_finite: self.non_finite,
            },
        );
        RadialProjection {
            inner,
            projector: projector.with_caution(self.projection.caution),
            weight_decay: self.weight_decay,
        }
    }

    /// `inner` wrapped, with [`ProjectionOptions::channel_axis`] (for
    /// [`ModuleOptimizer::with_group`]).
    pub fn try_wrap<O: Optimizer>(&self, inner: O) -> Result<RadialProjection<O>, ConfigError> {
        self.validate()?;
        let wrapped = self.for_axis(inner, self.projection.channel_axis, self.view);
        let projector = wrapped.projector.without_model("RadialProjectionConfig");
        Ok(RadialProjection {
            projector,
            ..wrapped
        })
    }

    /// A [`ModuleOptimizer`] applying [`wrap`](Self::wrap)`(inner)` to every parameter, with
    /// one channel axis for all. Prefer [`init_for`](Self::init_for), which reads the model.
    pub fn try_init<O: Optimizer>(&self, inner: O) -> Result<ModuleOptimizer, ConfigError> {
        Ok(ModuleOptimizer::from(self.try_wrap(inner)?))
    }

    /// A [`ModuleOptimizer`] with the channel axes given per parameter.
    pub fn try_init_with<O: Optimizer>(
        &self,
        inner: O,
        axes: &ChannelAxes,
    ) -> Result<ModuleOptimizer, ConfigError> {
        self.validate()?;
        Ok(axes.module_optimizer(|axis| self.for_axis(inner.clone(), axis, self.view), None))
    }

    /// A [`ModuleOptimizer`] for `model` that gives every weight its output-channel axis by
    /// layer type ([`ChannelAxes::infer`]).
    pub fn try_init_for<O: Optimizer, M: burn::module::Module>(
        &self,
        inner: O,
        model: &M,
    ) -> Result<ModuleOptimizer, ConfigError> {
        self.try_init_with(inner, &ChannelAxes::infer(model))
    }

    /// Like [`try_init_with`](Self::try_init_with), with every parameter of rank ≥ 2
    /// reporting its projections to `observer` (one parameter group each).
    pub fn try_init_observed<O: Optimizer>(
        &self,
        inner: O,
        axes: &ChannelAxes,
        observer: &ProjectionObserver,
    ) -> Result<ModuleOptimizer, ConfigError> {
        self.validate()?;
        Ok(observer.module_optimizer(
            axes,
            |axis| self.for_axis(inner.clone(), axis, self.view),
            None,
        ))
    }

    /// A [`ModuleOptimizer`] that projects only what `report` found invariant, in the view it
    /// found (channel-wise: each output channel; layer-wise: the whole tensor), with no
    /// per-step test; every other parameter gets `inner`'s plain update and the full weight
    /// decay. An alternative to AdamP's per-step cosine test when the model's invariances are
    /// known. [`view`](Self::view) and [`ProjectionOptions::delta`] are not used.
    pub fn try_init_from_probe<O: Optimizer>(
        &self,
        inner: O,
        report: &ProbeReport,
    ) -> Result<ModuleOptimizer, ConfigError> {
        self.validate()?;
        let groups = report.entries.iter().filter_map(|entry| {
            let view = match entry.invariance {
                Invariance::Channel => ProjectionView::Channel,
                Invariance::Layer => ProjectionView::Layer,
                Invariance::None | Invariance::Zero => return None,
            };
            let axis = entry.channel_axis?;
            Some((vec![entry.id], self.for_axis(inner.clone(), axis, view)))
        });
        let fallback = self.for_axis(inner.clone(), 0, ProjectionView::Off);
        Ok(grouped(fallback, groups, None))
    }
}

impl<O> RadialProjection<O> {
    /// The base optimizer.
    pub fn inner(&self) -> &O {
        &self.inner
    }

    /// The scale-invariance test and projection applied to the base update.
    pub fn scale_invariance(&self) -> &ScaleInvariance {
        &self.projector.invariance
    }
}

impl<O: Optimizer> crate::ChannelAxisOptimizer for RadialProjection<O> {
    fn on_channel_axis(&self, axis: usize) -> Result<Self, ConfigError> {
        Ok(Self {
            projector: self.projector.on_channel_axis(axis),
            ..self.clone()
        })
    }
}

impl<O: Optimizer> Observed for RadialProjection<O> {
    fn observed(self, tag: ObserverTag) -> Self {
        let projector = self.projector.observed(tag);
        Self { projector, ..self }
    }
}

impl<O: Optimizer> Optimizer for RadialProjection<O> {
    type State<const D: usize> = O::State<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        self.projector.notice(&param);
        framed_wrapper_step(
            lr,
            self.projector.policy.non_finite,
            param,
            grad,
            state,
            |param, grad, state| {
                let (stepped, state) = self.inner.step(lr, param.clone(), grad.clone(), state);
                // The descent direction `p − O.step(p)` (as AdamP's `η·u`, so that the
                // cautious mask compares it with the gradient as timm does).
                let descent = param.clone() - stepped;
                let projected = self.projector.project(&param, &grad, descent);
                let param = decoupled_decay(param, lr * self.weight_decay, projected.decay_ratio);
                (param - projected.update, state)
            },
        )
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        O::to_device(state, device)
    }
}
