//! The projection options shared by [`AdamPConfig`](crate::AdamPConfig),
//! [`SgdpConfig`](crate::SgdpConfig) and
//! [`RadialProjectionConfig`](crate::RadialProjectionConfig).

use std::sync::{Arc, Once};

use burn::config::Config;
use burn::tensor::Tensor;

use crate::diagnostics::observer::{ObserverTag, project_observed};
use crate::engine::dispatch::StepPolicy;
use crate::error::{ConfigError, Range, check};
use crate::rules::projection::tensor::Projected;
use crate::rules::projection::{ProjectionView, ScaleInvariance};

/// The scale-invariance test and projection's options, with the reference's defaults
/// (Heo et al., ICLR 2021). Nested in every config that projects; the configs' setters
/// (`with_delta`, `with_wd_ratio`, `with_epsilon`, `with_channel_axis`,
/// `with_zero_is_invariant`, `with_caution`) write here.
#[derive(Config, Debug, PartialEq)]
pub struct ProjectionOptions {
    /// Threshold δ of the scale-invariance test `max cos < δ / √K`.
    #[config(default = 0.1)]
    pub delta: f64,
    /// Factor on the weight decay of tensors whose update was projected.
    #[config(default = 0.1)]
    pub wd_ratio: f64,
    /// ε of the cosine norms and of the projection norm (AdamP: also Adam's denominator, one
    /// value as in the reference; 1e-8, not Burn's 1e-5).
    #[config(default = 1e-8)]
    pub epsilon: f64,
    /// Channel axis used by `build`, `init` and `wrap`; `init_for` sets it per parameter from
    /// the layer types instead ([`ChannelAxes`](crate::ChannelAxes)).
    #[config(default = 0)]
    pub channel_axis: usize,
    /// Whether an all-zero weight or gradient passes the scale-invariance test: its cosine is
    /// 0, so in the reference it does, and its weight decay is cut by `wd_ratio` (a weight
    /// whose gradient is zero keeps a tenth of its decay). `false` gives such a tensor the
    /// plain update and the full decay.
    #[config(default = true)]
    pub zero_is_invariant: bool,
    /// timm's cautious update (`caution=True`, timm 1.0.31; Cautious Optimizers,
    /// arXiv 2411.16085, and its spherical form): after the projection only the components of
    /// the update that agree in sign with the gradient's tangent part are kept, rescaled by
    /// the kept fraction of the whole tensor (at least 1e-3), and the update is projected
    /// again; where no view fires (and for rank-1 tensors) the plain cautious mask against the
    /// gradient. Off by default (the reference's AdamP/SGDP). The fused flex loops apply it;
    /// on wgpu a cautious step runs as tensor operations (the kernels do not mask).
    #[config(default = false)]
    pub caution: bool,
}

impl ProjectionOptions {
    /// Checks every option against its accepted range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_in("ProjectionOptions")
    }

    /// [`validate`](Self::validate), with errors naming the owning config.
    pub(crate) fn validate_in(&self, config: &'static str) -> Result<(), ConfigError> {
        check(config, "delta", self.delta, Range::NonNegative)?;
        check(config, "wd_ratio", self.wd_ratio, Range::UnitClosed)?;
        check(config, "epsilon", self.epsilon, Range::Epsilon)
    }

    /// The test and projection for parameters whose output channels lie on `channel_axis`.
    pub(crate) fn invariance(&self, channel_axis: usize, view: ProjectionView) -> ScaleInvariance {
        ScaleInvariance::detect(self.delta, self.wd_ratio, self.epsilon, channel_axis)
            .with_view(view)
            .with_zero_is_invariant(self.zero_is_invariant)
    }

    /// The run-time [`Projector`] of the per-step test (the reference's) for `channel_axis`.
    pub(crate) fn projector(&self, channel_axis: usize, policy: StepPolicy) -> Projector {
        Projector::new(
            self.invariance(channel_axis, ProjectionView::Detect),
            policy,
        )
        .with_caution(self.caution)
    }
}

/// What a projecting optimizer carries at run time: the test and projection for its channel
/// axis, the observer it reports to (if any), its step policy, and whether its axis was
/// chosen without the model.
#[derive(Debug, Clone)]
pub(crate) struct Projector {
    pub invariance: ScaleInvariance,
    /// timm's cautious mask after the projection ([`ProjectionOptions::caution`]).
    pub caution: bool,
    observer: Option<ObserverTag>,
    pub policy: StepPolicy,
    unplaced: Option<Unplaced>,
}

/// An optimizer built without the model (`build`, `init`, `wrap`) on the default channel
/// axis 0: it cannot tell where a rank-2 tensor's output channels lie (axis 1 for Burn's
/// `Linear`, `[d_input, d_output]`), and says so once, at the first one it steps.
#[derive(Debug, Clone)]
struct Unplaced {
    optimizer: &'static str,
    warned: Arc<Once>,
}

impl Projector {
    pub fn new(invariance: ScaleInvariance, policy: StepPolicy) -> Self {
        Self {
            invariance,
            caution: false,
            observer: None,
            policy,
            unplaced: None,
        }
    }

    /// The same, built without a model by `optimizer`'s `build`/`init`/`wrap`: when its axis
    /// is the default 0, the first rank-2 tensor it steps prints a warning pointing to
    /// `init_for(&model)` (an axis set with `with_channel_axis(n)`, n ≠ 0, is the user's
    /// choice and prints nothing).
    pub fn without_model(self, optimizer: &'static str) -> Self {
        let unplaced = (self.invariance.channel_axis == 0).then(|| Unplaced {
            optimizer,
            warned: Arc::new(Once::new()),
        });
        Self { unplaced, ..self }
    }

    /// The same on `channel_axis`, placed there from the model (no warning).
    pub fn on_channel_axis(&self, channel_axis: usize) -> Self {
        let mut placed = self.clone();
        placed.invariance.channel_axis = channel_axis;
        placed.unplaced = None;
        placed
    }

    /// Called at the top of every step (host only): the warning of
    /// [`without_model`](Self::without_model), once per optimizer.
    pub fn notice<const D: usize>(&self, param: &Tensor<D>) {
        let Some(unplaced) = &self.unplaced else {
            return;
        };
        if D != 2
            || matches!(
                self.invariance.view,
                ProjectionView::Off | ProjectionView::Layer
            )
        {
            return;
        }
        unplaced.warned.call_once(|| {
            eprintln!(
                "scaleinv warning: {} was built without the model (init/build/wrap), so it \
                 projects every weight per row of axis 0; this rank-2 weight of shape {:?} may \
                 store its output channels on axis 1, as Burn's Linear does ([d_input, \
                 d_output]). Use init_for(&model) to take each weight's axis from its layer \
                 (or with_channel_axis(n), try_init_with(&axes)). Printed once.",
                unplaced.optimizer,
                param.dims()
            );
        });
    }

    /// The same, with timm's cautious mask after the projection when `caution`.
    pub fn with_caution(self, caution: bool) -> Self {
        Self { caution, ..self }
    }

    /// The same, reporting to `tag`.
    pub fn observed(self, tag: ObserverTag) -> Self {
        Self {
            observer: Some(tag),
            ..self
        }
    }

    /// Whether the fused loops can step `param` (no armed observer: it needs the tensor ops;
    /// the loops apply the cautious mask).
    #[cfg(feature = "flex")]
    pub fn fuses<const D: usize>(&self, param: &Tensor<D>) -> bool {
        self.policy.fuses(param, self.axis(), self.is_observed())
    }

    /// Whether the flex loops or the CubeCL kernels can step `param`.
    pub fn fuses_anywhere<const D: usize>(&self, param: &Tensor<D>) -> bool {
        #[cfg(feature = "wgpu")]
        if self.fuses_on_cube(param) {
            return true;
        }
        #[cfg(feature = "flex")]
        return self.fuses(param);
        #[cfg(not(feature = "flex"))]
        {
            let _ = param;
            false
        }
    }

    /// Whether the CubeCL kernels can step `param`: f32 on a CubeCL device, no armed observer,
    /// no cautious mask (the kernels do not apply it), and a channel axis that is an axis of
    /// it when it is projected (otherwise the tensor ops report the misplaced axis).
    #[cfg(feature = "wgpu")]
    pub fn fuses_on_cube<const D: usize>(&self, param: &Tensor<D>) -> bool {
        self.policy
            .fuses_on_cube(param, self.is_observed() || self.caution)
            && (D < 2 || self.invariance.channel_axis < D)
    }

    #[cfg_attr(not(any(feature = "flex", feature = "wgpu")), allow(dead_code))]
    fn is_observed(&self) -> bool {
        self.observer.as_ref().is_some_and(ObserverTag::is_armed)
    }

    fn axis(&self) -> Option<usize> {
        Some(self.invariance.channel_axis)
    }

    /// The projection of `update`, and the cautious mask when set (reported to the observer
    /// when armed).
    pub fn project<const D: usize>(
        &self,
        param: &Tensor<D>,
        grad: &Tensor<D>,
        update: Tensor<D>,
    ) -> Projected<D> {
        let projection = (&self.invariance, self.caution);
        project_observed(projection, &self.observer, param, grad, update)
    }
}

/// The setters of [`ProjectionOptions`] on a config that nests them as `projection`.
macro_rules! projection_setters {
    ($config:ty) => {
        impl $config {
            /// Sets [`ProjectionOptions::delta`](crate::ProjectionOptions::delta).
            pub fn with_delta(mut self, delta: f64) -> Self {
                self.projection.delta = delta;
                self
            }

            /// Sets [`ProjectionOptions::wd_ratio`](crate::ProjectionOptions::wd_ratio).
            pub fn with_wd_ratio(mut self, wd_ratio: f64) -> Self {
                self.projection.wd_ratio = wd_ratio;
                self
            }

            /// Sets [`ProjectionOptions::epsilon`](crate::ProjectionOptions::epsilon).
            pub fn with_epsilon(mut self, epsilon: f64) -> Self {
                self.projection.epsilon = epsilon;
                self
            }

            /// Sets [`ProjectionOptions::channel_axis`](crate::ProjectionOptions::channel_axis).
            pub fn with_channel_axis(mut self, channel_axis: usize) -> Self {
                self.projection.channel_axis = channel_axis;
                self
            }

            /// Sets
            /// [`ProjectionOptions::zero_is_invariant`](crate::ProjectionOptions::zero_is_invariant).
            pub fn with_zero_is_invariant(mut self, zero_is_invariant: bool) -> Self {
                self.projection.zero_is_invariant = zero_is_invariant;
                self
            }

            /// Sets [`ProjectionOptions::caution`](crate::ProjectionOptions::caution).
            pub fn with_caution(mut self, caution: bool) -> Self {
                self.projection.caution = caution;
                self
            }
        }
    };
}

pub(crate) use projection_setters;
