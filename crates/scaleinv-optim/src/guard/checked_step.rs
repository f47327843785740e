//! A step that refuses bad input with an error instead of stepping: the third non-finite
//! policy, and the learning-rate check as a value rather than a panic.

use core::fmt;

use burn::module::{Module, Param};
use burn::optim::{GradientsParams, LearningRate, ModuleOptimizer};
use burn::tensor::{Bool, Tensor};

use crate::model::params::{ParamInfo, ParamVisitor, visit_params};

/// Why [`try_step`](CheckedStep::try_step) refused to step.
#[derive(Debug, Clone, PartialEq)]
pub enum StepError {
    /// The learning rate is negative, NaN or infinite.
    InvalidLearningRate {
        /// The rate that was given.
        lr: LearningRate,
    },
    /// Some gradients hold NaN or ±∞.
    NonFiniteGradient {
        /// The module paths of those parameters, in visiting order.
        paths: Vec<String>,
    },
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidLearningRate { lr } => write!(
                f,
                "learning rate {lr} is invalid: expected a finite value ≥ 0"
            ),
            Self::NonFiniteGradient { paths } => write!(
                f,
                "non-finite gradient (NaN or ±inf) for {}: no parameter was updated",
                paths.join(", ")
            ),
        }
    }
}

impl std::error::Error for StepError {}

/// A refused step: the module, untouched, and the reason.
#[derive(Debug)]
pub struct Rejected<M> {
    /// The module as it was passed in.
    pub module: M,
    /// Why the step was refused.
    pub error: StepError,
}

impl<M> fmt::Display for Rejected<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step refused: {}", self.error)
    }
}

impl<M: fmt::Debug> std::error::Error for Rejected<M> {}

/// A checked step for a [`ModuleOptimizer`] (any optimizer, Burn's included).
pub trait CheckedStep {
    /// Steps like [`ModuleOptimizer::step`], unless the learning rate is invalid or a gradient
    /// holds NaN or ±∞: then nothing is updated (module and optimizer state) and the module
    /// comes back in the error, with the paths of the offending parameters.
    ///
    /// The gradient test runs on the device, one reduction per gradient, and its flags come to
    /// the host in a single read per step: the price of an error the caller can act on. The
    /// optimizers' own [`NonFinitePolicy`](crate::NonFinitePolicy) needs no read.
    ///
    /// ```
    /// use burn::prelude::*;
    /// use burn::nn::{Linear, LinearConfig};
    /// use burn::optim::GradientsParams;
    /// use scaleinv_optim::{AdamPConfig, CheckedStep, StepError};
    ///
    /// # #[cfg(feature = "flex")] {
    /// let device = Device::flex().autodiff();
    /// let model: Linear = LinearConfig::new(4, 3).init(&device);
    /// let mut optim = AdamPConfig::new().init_for(&model);
    ///
    /// let x = Tensor::<2>::full([8, 4], f32::NAN, &device);
    /// let grads = GradientsParams::from_grads(model.forward(x).sum().backward(), &model);
    /// let rejected = optim.try_step(1e-3, model, grads).unwrap_err();
    /// assert!(matches!(rejected.error, StepError::NonFiniteGradient { .. }));
    /// let model = rejected.module; // as it was
    /// # }
    /// ```
    fn try_step<M: Module>(
        &mut self,
        lr: LearningRate,
        module: M,
        grads: GradientsParams,
    ) -> Result<M, Rejected<M>>;
}

impl CheckedStep for ModuleOptimizer {
    fn try_step<M: Module>(
        &mut self,
        lr: LearningRate,
        module: M,
        grads: GradientsParams,
    ) -> Result<M, Rejected<M>> {
        let error = if !(lr.is_finite() && lr >= 0.0) {
            Some(StepError::InvalidLearningRate { lr })
        } else {
            let paths = non_finite_gradients(&module, &grads);
            (!paths.is_empty()).then_some(StepError::NonFiniteGradient { paths })
        };
        match error {
            Some(error) => Err(Rejected { module, error }),
            None => Ok(self.step(lr, module, grads)),
        }
    }
}

/// The paths of the parameters of `module` whose gradient in `grads` is not finite, with one
/// device-to-host read for all of them.
pub fn non_finite_gradients<M: Module>(module: &M, grads: &GradientsParams) -> Vec<String> {
    struct Flags<'a> {
        grads: &'a GradientsParams,
        paths: Vec<String>,
        flags: Vec<Tensor<1, Bool>>,
    }

    impl ParamVisitor for Flags<'_> {
        fn param<const D: usize>(&mut self, info: ParamInfo, _: &Param<Tensor<D>>) {
            if let Some(grad) = self.grads.get::<D>(info.id) {
                let flag = grad.sum().is_finite().bool_not();
                let flag = match self.flags.first() {
                    Some(first) => flag.to_device(&first.device()),
                    None => flag,
                };
                self.paths.push(info.path);
                self.flags.push(flag);
            }
        }
    }

    let mut visitor = Flags {
        grads,
        paths: Vec::new(),
        flags: Vec::new(),
    };
    visit_params(module, &mut visitor);
    if visitor.flags.is_empty() {
        return Vec::new();
    }
    // Booleans are stored natively on the CPU backends and as u32 on wgpu: read floats.
    let flags = Tensor::cat(visitor.flags, 0).float().into_data();
    let flags = flags
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 data after conversion");
    visitor
        .paths
        .into_iter()
        .zip(flags)
        .filter_map(|(path, bad)| (bad != 0.0).then_some(path))
        .collect()
}
