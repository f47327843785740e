//! The constructor family of every config, written once: a config implements
//! [`OptimizerConfig`] (validate, build for an axis, its clipping, its model-aware module
//! optimizer) and one macro line generates its public `try_build`/`build`,
//! `try_init`/`init` and `try_init_for`/`init_for`; the projected optimizers (AdamP, SGDP)
//! add the channel-axis and observer variants. Wrappers ([`Nap`](crate::Nap),
//! [`RadialProjection`](crate::RadialProjection)) get the same family with the inner
//! optimizer as first argument.

use burn::grad_clipping::GradientClippingConfig;
use burn::module::Module;
use burn::optim::{ModuleOptimizer, Optimizer};

use crate::diagnostics::observer::{Observed, ProjectionObserver};
use crate::engine::dispatch::HasStepOptions;
use crate::error::ConfigError;
use crate::model::channel_axes::{ChannelAxes, grouped};

/// A config with a `validate` (implemented by [`constructors!`] from the config's own).
pub(crate) trait Checked {
    /// Checks every hyperparameter.
    fn check(&self) -> Result<(), ConfigError>;
}

/// A config that builds a per-tensor optimizer.
pub(crate) trait OptimizerConfig: HasStepOptions + Checked {
    /// The bare per-tensor optimizer.
    type Optim: Optimizer;
    /// The optimizer for parameters whose output channels lie on `channel_axis` (ignored by
    /// optimizers that do not project); the config is valid.
    fn for_axis(&self, channel_axis: usize) -> Self::Optim;
    /// The axis used when none is given per parameter.
    fn default_axis(&self) -> usize {
        0
    }
    /// Gradient clipping applied to every group.
    fn clipping(&self) -> Option<&GradientClippingConfig> {
        self.step_options().grad_clipping.as_ref()
    }

    /// The optimizer for [`default_axis`](Self::default_axis), built without a model
    /// (`build`, `init`); the projected optimizers mark it so (see `Projector::without_model`).
    fn without_model(&self) -> Self::Optim {
        self.for_axis(self.default_axis())
    }

    /// The validated optimizer for [`default_axis`](Self::default_axis).
    fn checked_build(&self) -> Result<Self::Optim, ConfigError> {
        self.check()?;
        Ok(self.without_model())
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

    /// The optimizer for `model`: by default one group per channel axis its layers imply.
    fn for_model<M: Module>(&self, model: &M) -> Result<ModuleOptimizer, ConfigError> {
        self.grouped_by_axis(&ChannelAxes::infer(model))
    }

    /// Like [`grouped_by_axis`](Self::grouped_by_axis), with every parameter of rank ≥ 2
    /// reporting its projections to `observer`.
    fn observed_groups(
        &self,
        axes: &ChannelAxes,
        observer: &ProjectionObserver,
    ) -> Result<ModuleOptimizer, ConfigError>
    where
        Self::Optim: Observed,
    {
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

/// The public constructors of an [`OptimizerConfig`]. Sections: `build` (`try_build`/`build`),
/// `init` (`try_init`/`init`), `init_for` (`try_init_for`/`init_for`), `axes`
/// (`try_init_with`, `init_observed`/`try_init_observed`, for the projected optimizers).
macro_rules! constructors {
    ($config:ty => $optim:ty: $($section:ident),+) => {
        impl $crate::optimizers::constructors::Checked for $config {
            fn check(&self) -> Result<(), $crate::ConfigError> {
                self.validate()
            }
        }
        $( $crate::optimizers::constructors::constructors!(@$section $config => $optim); )+
    };
    (@build $config:ty => $optim:ty) => {
        impl $config {
            /// The validated per-tensor optimizer, for
            /// [`ModuleOptimizer::with_group`](burn::optim::ModuleOptimizer::with_group).
            pub fn try_build(&self) -> Result<$optim, $crate::ConfigError> {
                $crate::optimizers::constructors::OptimizerConfig::checked_build(self)
            }

            /// Like [`try_build`](Self::try_build); panics with the validation error.
            pub fn build(&self) -> $optim {
                $crate::optimizers::constructors::or_panic(self.try_build())
            }
        }
    };
    (@init $config:ty => $optim:ty) => {
        impl $config {
            /// A [`ModuleOptimizer`](burn::optim::ModuleOptimizer) applying the optimizer to
            /// every parameter. Prefer [`init_for`](Self::init_for), which reads the model.
            pub fn try_init(&self) -> Result<burn::optim::ModuleOptimizer, $crate::ConfigError> {
                $crate::optimizers::constructors::OptimizerConfig::single_group(self)
            }

            /// Like [`try_init`](Self::try_init); panics with the validation error.
            pub fn init(&self) -> burn::optim::ModuleOptimizer {
                $crate::optimizers::constructors::or_panic(self.try_init())
            }
        }
    };
    (@init_for $config:ty => $optim:ty) => {
        impl $config {
            /// A [`ModuleOptimizer`](burn::optim::ModuleOptimizer) for `model` (for the
            /// projected optimizers: every weight with its output-channel axis by layer type,
            /// [`ChannelAxes::infer`](crate::ChannelAxes::infer)).
            pub fn try_init_for<M: burn::module::Module>(
                &self,
                model: &M,
            ) -> Result<burn::optim::ModuleOptimizer, $crate::ConfigError> {
                $crate::optimizers::constructors::OptimizerConfig::for_model(self, model)
            }

            /// Like [`try_init_for`](Self::try_init_for); panics with the validation error.
            pub fn init_for<M: burn::module::Module>(
                &self,
                model: &M,
            ) -> burn::optim::ModuleOptimizer {
                $crate::optimizers::constructors::or_panic(self.try_init_for(model))
            }
        }
    };
    (@axes $config:ty => $optim:ty) => {
        impl $config {
            /// A [`ModuleOptimizer`](burn::optim::ModuleOptimizer) with the channel axes given
            /// per parameter.
            pub fn try_init_with(
                &self,
                axes: &$crate::ChannelAxes,
            ) -> Result<burn::optim::ModuleOptimizer, $crate::ConfigError> {
                $crate::optimizers::constructors::OptimizerConfig::grouped_by_axis(self, axes)
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
                $crate::optimizers::constructors::or_panic(
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
                $crate::optimizers::constructors::OptimizerConfig::observed_groups(
                    self, axes, observer,
                )
            }
        }
    };
}

pub(crate) use constructors;

/// The panicking constructors of a wrapper config, from its `try_wrap`, `try_init` and
/// `try_init_for` (each wrapper writes those: they differ in what they route where).
macro_rules! wrapper_constructors {
    ($config:ty => $wrapper:ident) => {
        impl $config {
            /// Like [`try_wrap`](Self::try_wrap); panics with the validation error.
            pub fn wrap<O: burn::optim::Optimizer>(&self, inner: O) -> $wrapper<O> {
                $crate::optimizers::constructors::or_panic(self.try_wrap(inner))
            }

            /// Like [`try_init`](Self::try_init); panics with the error.
            pub fn init<O: burn::optim::Optimizer>(
                &self,
                inner: O,
            ) -> burn::optim::ModuleOptimizer {
                $crate::optimizers::constructors::or_panic(self.try_init(inner))
            }

            /// Like [`try_init_for`](Self::try_init_for); panics with the error.
            pub fn init_for<O: burn::optim::Optimizer, M: burn::module::Module>(
                &self,
                inner: O,
                model: &M,
            ) -> burn::optim::ModuleOptimizer {
                $crate::optimizers::constructors::or_panic(self.try_init_for(inner, model))
            }
        }
    };
}

pub(crate) use wrapper_constructors;
