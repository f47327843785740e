//! What the configs of the projected optimizers (SGDP, AdamP) share: validating, then building
//! one bare optimizer per channel axis and routing parameters to them through groups.

use burn::grad_clipping::GradientClippingConfig;
use burn::optim::{ModuleOptimizer, Optimizer};

use crate::channel_axes::{ChannelAxes, grouped};
use crate::error::ConfigError;
use crate::observer::{Observed, ProjectionObserver};

/// A config that builds its optimizer for a given channel axis.
pub(crate) trait PerAxisConfig {
    /// The bare per-tensor optimizer.
    type Optim: Observed;

    /// Checks every hyperparameter.
    fn check(&self) -> Result<(), ConfigError>;
    /// The optimizer for parameters whose output channels lie on `channel_axis`.
    fn for_axis(&self, channel_axis: usize) -> Self::Optim;
    /// The axis used when none is given per parameter.
    fn default_axis(&self) -> usize;
    /// Gradient clipping applied to every group.
    fn clipping(&self) -> Option<&GradientClippingConfig>;

    /// The validated optimizer for [`default_axis`](Self::default_axis).
    fn checked_build(&self) -> Result<Self::Optim, ConfigError> {
        self.check()?;
        Ok(self.for_axis(self.default_axis()))
    }

    /// One optimizer, with the default axis, for every parameter.
    fn single_group(&self) -> Result<ModuleOptimizer, ConfigError> {
        Ok(for_every_parameter(self.checked_build()?, self.clipping()))
    }

    /// One optimizer per distinct axis in `axes`, routed by parameter groups.
    fn grouped_by_axis(&self, axes: &ChannelAxes) -> Result<ModuleOptimizer, ConfigError> {
        self.check()?;
        let clipping = self.clipping().map(GradientClippingConfig::init);
        Ok(axes.module_optimizer(|axis| self.for_axis(axis), clipping))
    }

    /// Like [`grouped_by_axis`](Self::grouped_by_axis), with every parameter of rank ≥ 2
    /// reporting its projections to `observer`.
    fn observed_groups(
        &self,
        axes: &ChannelAxes,
        observer: &ProjectionObserver,
    ) -> Result<ModuleOptimizer, ConfigError> {
        self.check()?;
        let clipping = self.clipping().map(GradientClippingConfig::init);
        Ok(observer.module_optimizer(axes, |axis| self.for_axis(axis), clipping))
    }
}

/// A [`ModuleOptimizer`] applying `optim` to every parameter, with optional gradient clipping.
pub(crate) fn for_every_parameter<O: Optimizer>(
    optim: O,
    clipping: Option<&GradientClippingConfig>,
) -> ModuleOptimizer {
    grouped(optim, [], clipping.map(GradientClippingConfig::init))
}

/// Panics with a config error's message (for the infallible convenience constructors).
pub(crate) fn or_panic<T>(result: Result<T, ConfigError>) -> T {
    result.unwrap_or_else(|e| panic!("{e}"))
}

/// The public constructors of a [`PerAxisConfig`], written once for every projected optimizer.
macro_rules! per_axis_constructors {
    ($config:ty => $optim:ty) => {
        impl $config {
            /// The bare per-tensor optimizer with [`channel_axis`](Self::channel_axis), for
            /// [`ModuleOptimizer::with_group`](burn::optim::ModuleOptimizer::with_group).
            pub fn try_build(&self) -> Result<$optim, $crate::ConfigError> {
                $crate::per_axis::PerAxisConfig::checked_build(self)
            }

            /// Like [`try_build`](Self::try_build); panics with the validation error.
            pub fn build(&self) -> $optim {
                $crate::per_axis::or_panic(self.try_build())
            }

            /// A [`ModuleOptimizer`](burn::optim::ModuleOptimizer) that uses
            /// [`channel_axis`](Self::channel_axis) for every parameter. Prefer
            /// [`init_for`](Self::init_for) for models with `Linear` layers.
            pub fn init(&self) -> burn::optim::ModuleOptimizer {
                $crate::per_axis::or_panic(self.try_init())
            }

            /// Like [`init`](Self::init), with an invalid config as an error.
            pub fn try_init(&self) -> Result<burn::optim::ModuleOptimizer, $crate::ConfigError> {
                $crate::per_axis::PerAxisConfig::single_group(self)
            }

            /// A [`ModuleOptimizer`](burn::optim::ModuleOptimizer) for `model` that gives every
            /// weight its output-channel axis by layer type
            /// ([`ChannelAxes::infer`](crate::ChannelAxes::infer)). Panics on an invalid config;
            /// see [`try_init_with`](Self::try_init_with).
            pub fn init_for<M: burn::module::Module>(
                &self,
                model: &M,
            ) -> burn::optim::ModuleOptimizer {
                $crate::per_axis::or_panic(self.try_init_for(model))
            }

            /// Like [`init_for`](Self::init_for), with an invalid config as an error.
            pub fn try_init_for<M: burn::module::Module>(
                &self,
                model: &M,
            ) -> Result<burn::optim::ModuleOptimizer, $crate::ConfigError> {
                self.try_init_with(&$crate::ChannelAxes::infer(model))
            }

            /// A [`ModuleOptimizer`](burn::optim::ModuleOptimizer) with the channel axes given
            /// per parameter.
            pub fn try_init_with(
                &self,
                axes: &$crate::ChannelAxes,
            ) -> Result<burn::optim::ModuleOptimizer, $crate::ConfigError> {
                $crate::per_axis::PerAxisConfig::grouped_by_axis(self, axes)
            }

            /// Like [`init_for`](Self::init_for), with every weight reporting what the
            /// projection did to it to `observer` (read it with
            /// [`DiagnosticsTracker`](crate::DiagnosticsTracker)). Panics on an invalid
            /// config; see [`try_init_observed`](Self::try_init_observed).
            pub fn init_observed<M: burn::module::Module>(
                &self,
                model: &M,
                observer: &$crate::ProjectionObserver,
            ) -> burn::optim::ModuleOptimizer {
                $crate::per_axis::or_panic(
                    self.try_init_observed(&$crate::ChannelAxes::infer(model), observer),
                )
            }

            /// Like [`try_init_with`](Self::try_init_with), with every parameter of rank ≥ 2
            /// reporting to `observer` (one parameter group each).
            pub fn try_init_observed(
                &self,
                axes: &$crate::ChannelAxes,
                observer: &$crate::ProjectionObserver,
            ) -> Result<burn::optim::ModuleOptimizer, $crate::ConfigError> {
                $crate::per_axis::PerAxisConfig::observed_groups(self, axes, observer)
            }
        }
    };
}

pub(crate) use per_axis_constructors;
