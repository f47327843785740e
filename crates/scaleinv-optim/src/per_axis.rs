//! What the configs of the projected optimizers (SGDP, AdamP) share: validating, then building
//! one bare optimizer per channel axis and routing parameters to them through groups.

use burn::grad_clipping::GradientClippingConfig;
use burn::optim::{ModuleOptimizer, Optimizer};

use crate::channel_axes::ChannelAxes;
use crate::error::ConfigError;

/// A config that builds its optimizer for a given channel axis.
pub(crate) trait PerAxisConfig {
    /// The bare per-tensor optimizer.
    type Optim: Optimizer;

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
        let mut optim = ModuleOptimizer::from(self.checked_build()?);
        if let Some(clipping) = self.clipping() {
            optim = optim.with_grad_clipping(clipping.init());
        }
        Ok(optim)
    }

    /// One optimizer per distinct axis in `axes`, routed by parameter groups.
    fn grouped_by_axis(&self, axes: &ChannelAxes) -> Result<ModuleOptimizer, ConfigError> {
        self.check()?;
        let clipping = self.clipping().map(GradientClippingConfig::init);
        Ok(axes.module_optimizer(|axis| self.for_axis(axis), clipping))
    }
}

/// Panics with a config error's message (for the infallible convenience constructors).
pub(crate) fn or_panic<T>(result: Result<T, ConfigError>) -> T {
    result.unwrap_or_else(|e| panic!("{e}"))
}
