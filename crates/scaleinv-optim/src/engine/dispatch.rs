//! The step options shared by every optimizer with a fused path: AdamP, SGDP, Stable-SPAM and
//! width-scaled AdamW.

use burn::config::Config;
use burn::grad_clipping::GradientClippingConfig;
use burn::optim::{LearningRate, Optimizer};
use burn::tensor::Tensor;

use crate::engine::non_finite::{NonFinitePolicy, Revert};
use crate::engine::step_frame::framed_step;
use crate::error::{ConfigError, Range, check};
use crate::rules::adam::tensor::MomentState;

/// How each step runs: fused or as tensor operations, what it does with a non-finite
/// gradient, and the gradient clipping before it. Nested in every config as `step`; the
/// configs' setters (`with_fused`, `with_non_finite`, `with_grad_clipping`) write here.
#[derive(Config, Debug)]
pub struct StepOptions {
    /// Run the step fused rather than as tensor operations: on the flex CPU backend as a few
    /// loops over memory (see each optimizer's doc), f16/bf16 parameters and gradients read
    /// and written in the same passes, converted a segment at a time (the arithmetic and the
    /// state in f32, as on the tensor-op path); on Burn's CubeCL backends (the `wgpu` feature)
    /// as CubeCL kernels for f32 tensors (two launches per tensor for AdamP, SGDP,
    /// width-scaled AdamW and AdamC, three for Stable-SPAM, the non-finite test included; one
    /// for a small tensor that is not projected; the parameter and the state written in place;
    /// no value read back to the host, nothing uploaded). The paths agree to rounding and
    /// replay the golden trajectories.
    /// Other backends and optimizers, other dtypes and optimizers with an armed observer use
    /// the tensor operations.
    #[config(default = true)]
    pub fused: bool,
    /// What a step does when a gradient holds NaN or ±∞.
    #[config(default = "NonFinitePolicy::Skip")]
    pub non_finite: NonFinitePolicy,
    /// Gradient clipping applied before each step.
    pub grad_clipping: Option<GradientClippingConfig>,
}

impl StepOptions {
    /// Checks the options: a clipping threshold must be in `(0, ∞)` and finite in f32 (NaN
    /// would freeze every gradient it touches, a negative one flip or zero them).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_in("StepOptions")
    }

    /// [`validate`](Self::validate), with errors naming the owning config.
    pub(crate) fn validate_in(&self, config: &'static str) -> Result<(), ConfigError> {
        let (field, threshold) = match self.grad_clipping {
            None => return Ok(()),
            Some(GradientClippingConfig::Value(v)) => ("grad_clipping.value", v),
            Some(GradientClippingConfig::Norm(n)) => ("grad_clipping.norm", n),
        };
        check(config, field, f64::from(threshold), Range::Positive)
    }

    /// What the per-tensor optimizer keeps of the options.
    pub(crate) fn policy(&self) -> StepPolicy {
        StepPolicy {
            fused: self.fused,
            non_finite: self.non_finite,
        }
    }
}

/// The options a per-tensor optimizer reads at each step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct StepPolicy {
    /// Read only by the fused paths (flex loops, CubeCL kernels).
    #[cfg_attr(not(any(feature = "flex", feature = "wgpu")), allow(dead_code))]
    pub fused: bool,
    pub non_finite: NonFinitePolicy,
}

impl StepPolicy {
    /// Whether the fused loops can step `param` (f32, f16 or bf16 on flex, non-empty, its channel axis an
    /// axis of it), when not `held` back (an armed observer needs the tensor ops).
    pub fn fuses<const D: usize>(
        &self,
        param: &Tensor<D>,
        channel_axis: Option<usize>,
        held: bool,
    ) -> bool {
        #[cfg(feature = "flex")]
        {
            self.fused && !held && crate::engine::flex::accepts(param, channel_axis)
        }
        #[cfg(not(feature = "flex"))]
        {
            let _ = (param, channel_axis, held);
            false
        }
    }

    /// Whether either fused path takes `param`: the flex loops ([`fuses`](Self::fuses)) or
    /// the CubeCL kernels ([`fuses_on_cube`](Self::fuses_on_cube)).
    pub fn fuses_anywhere<const D: usize>(
        &self,
        param: &Tensor<D>,
        channel_axis: Option<usize>,
        held: bool,
    ) -> bool {
        #[cfg(feature = "wgpu")]
        if self.fuses_on_cube(param, held) {
            return true;
        }
        self.fuses(param, channel_axis, held)
    }

    /// Whether the CubeCL kernels can step `param` (f32 on a CubeCL device, non-empty), when
    /// not `held` back.
    #[cfg(feature = "wgpu")]
    pub fn fuses_on_cube<const D: usize>(&self, param: &Tensor<D>, held: bool) -> bool {
        self.fused && !held && crate::engine::cube::accepts(param)
    }

    /// Whether a step skips non-finite gradients (read by the fused loops and kernels).
    #[cfg_attr(not(any(feature = "flex", feature = "wgpu")), allow(dead_code))]
    pub fn skips(&self) -> bool {
        self.non_finite == NonFinitePolicy::Skip
    }
}

/// An optimizer with two paths: the tensor ops (every backend) and the fused flex loops. Its
/// `Optimizer::step` is [`step_either`](Self::step_either), which picks the path.
pub(crate) trait TwoPaths: Optimizer {
    /// The options read at each step.
    fn policy(&self) -> &StepPolicy;

    /// The non-finite policy the step's frame applies around the tensor ops (an optimizer
    /// that tests its gradient itself returns `Propagate`).
    fn frame_policy(&self) -> NonFinitePolicy {
        self.policy().non_finite
    }

    /// A host-only look at `param` before each step (the projected optimizers' warning for a
    /// tensor whose channel axis they cannot know, see `Projector::notice`).
    fn notice<const D: usize>(&self, _param: &Tensor<D>) {}

    /// Whether the fused loops can step `param` (see [`StepPolicy::fuses`]).
    #[cfg(feature = "flex")]
    fn fuses_param<const D: usize>(&self, param: &Tensor<D>) -> bool;

    /// Whether the fused loops take this step: the parameter can be fused, and the gradient
    /// and the state are f32 flex tensors that fit it.
    #[cfg(feature = "flex")]
    fn fuses<const D: usize>(
        &self,
        param: &Tensor<D>,
        grad: &Tensor<D>,
        state: Option<&Self::State<D>>,
    ) -> bool
    where
        Self::State<D>: StateTensors<D>,
    {
        use crate::engine::flex::{on_flex, scalar_on_flex};
        let state_tensors = state.into_iter().flat_map(StateTensors::tensors);
        self.fuses_param(param)
            && crate::engine::fits::fit(param, grad, state_tensors, on_flex)
            && state
                .into_iter()
                .flat_map(StateTensors::scalars)
                .all(scalar_on_flex)
    }

    /// The step as the fused loops (called only when [`fuses`](Self::fuses)). With `measure`
    /// (for [`Nap`](crate::Nap)'s projection), a non-finite gradient is skipped whatever the
    /// policy, with the state given back as it came; a written step reports `Σ p'²` of the new
    /// parameter, summed in the pass that writes it.
    #[cfg(feature = "flex")]
    fn fused<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
        measure: bool,
    ) -> crate::engine::flex::Fused<D, Self::State<D>>;

    /// The step as the CubeCL kernels when they apply to this parameter, gradient and state
    /// (`Err` hands the inputs back for the tensor ops), with a non-finite gradient treated as
    /// `on_non_finite` says; an optimizer without kernels keeps this default.
    #[cfg(feature = "wgpu")]
    fn cube<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
        on_non_finite: crate::engine::cube::OnNonFinite,
    ) -> crate::engine::cube::CubeStep<D, Self::State<D>> {
        let _ = (lr, on_non_finite);
        Err(Box::new((param, grad, state)))
    }

    /// The step as tensor operations, inside the frame.
    fn tensor_ops<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>);

    /// The fused loops (flex) or kernels (CubeCL) when they apply, else the tensor ops in the
    /// frame (learning-rate check, empty tensors, f32 for half precision, the non-finite
    /// policy).
    fn step_either<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>)
    where
        Self::State<D>: Revert<D> + StateTensors<D>,
    {
        crate::engine::step_frame::check_lr(lr);
        self.notice(&param);
        #[cfg(feature = "flex")]
        if self.fuses(&param, &grad, state.as_ref()) {
            let fused = self.fused(lr, param, grad, state, false);
            return (fused.param, fused.state);
        }
        #[cfg(feature = "wgpu")]
        let (param, grad, state) = match self.cube(
            lr,
            param,
            grad,
            state,
            crate::engine::cube::OnNonFinite::Policy,
        ) {
            Ok(stepped) => return stepped,
            Err(inputs) => *inputs,
        };
        framed_step(lr, self.frame_policy(), param, grad, state, |p, g, s| {
            self.tensor_ops(lr, p, g, s)
        })
    }
}

/// The tensors of a per-parameter state, for the fused path's check that they fit.
#[cfg_attr(not(feature = "flex"), allow(dead_code))]
pub(crate) trait StateTensors<const D: usize> {
    /// The tensors shaped like the parameter.
    fn tensors(&self) -> impl Iterator<Item = &Tensor<D>>;
    /// The per-tensor statistics (shape `[1]`).
    fn scalars(&self) -> impl Iterator<Item = &Tensor<1>> {
        core::iter::empty()
    }
}

impl<const D: usize> StateTensors<D> for MomentState<D> {
    fn tensors(&self) -> impl Iterator<Item = &Tensor<D>> {
        MomentState::tensors(self).into_iter()
    }
}

/// A config that nests [`StepOptions`] as `step`.
pub(crate) trait HasStepOptions {
    /// The step options.
    fn step_options(&self) -> &StepOptions;
}

/// The setters of [`StepOptions`] on a config that nests them as `step`.
macro_rules! step_setters {
    ($config:ty) => {
        impl $crate::engine::dispatch::HasStepOptions for $config {
            fn step_options(&self) -> &$crate::StepOptions {
                &self.step
            }
        }

        impl $config {
            /// Sets [`StepOptions::fused`](crate::StepOptions::fused).
            pub fn with_fused(mut self, fused: bool) -> Self {
                self.step.fused = fused;
                self
            }

            /// Sets [`StepOptions::non_finite`](crate::StepOptions::non_finite).
            pub fn with_non_finite(mut self, non_finite: $crate::NonFinitePolicy) -> Self {
                self.step.non_finite = non_finite;
                self
            }

            /// Sets [`StepOptions::grad_clipping`](crate::StepOptions::grad_clipping).
            pub fn with_grad_clipping(
                mut self,
                grad_clipping: Option<burn::grad_clipping::GradientClippingConfig>,
            ) -> Self {
                self.step.grad_clipping = grad_clipping;
                self
            }
        }
    };
}

pub(crate) use step_setters;

/// `impl Optimizer` for a [`TwoPaths`] optimizer whose state type `S<D>` has a `to_device`.
macro_rules! two_paths_optimizer {
    ($optim:ty => $state:ident) => {
        impl burn::optim::Optimizer for $optim {
            type State<const D: usize> = $state<D>;

            fn step<const D: usize>(
                &self,
                lr: burn::optim::LearningRate,
                param: burn::tensor::Tensor<D>,
                grad: burn::tensor::Tensor<D>,
                state: Option<Self::State<D>>,
            ) -> (burn::tensor::Tensor<D>, Option<Self::State<D>>) {
                $crate::engine::dispatch::TwoPaths::step_either(self, lr, param, grad, state)
            }

            fn to_device<const D: usize>(
                state: Self::State<D>,
                device: &burn::tensor::Device,
            ) -> Self::State<D> {
                state.to_device(device)
            }
        }
    };
}

pub(crate) use two_paths_optimizer;
