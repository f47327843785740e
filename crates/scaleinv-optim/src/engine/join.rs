//! How a wrapper joins its base's fused step: on flex, the base's passes (NaP's norm, summed in
//! the pass that writes the parameter); on a CubeCL device, the base's kernels under the
//! wrapper's non-finite rule (a zero gradient, the parameter kept), with no tensor-op frame
//! around them. The base implements [`FusedBase`] (every optimizer with a fused path does,
//! through [`TwoPaths`]), and the wrapper, generic over any `O: Optimizer`, finds it with one
//! type lookup over the list that `optimizers` names with [`fused_bases!`] (stable Rust has no
//! specialization). Adding a fused optimizer adds its name to that list; no wrapper changes.

use std::any::Any;

use burn::optim::{LearningRate, Optimizer};
use burn::tensor::Tensor;

#[cfg(feature = "wgpu")]
use super::cube::{CubeStep, OnNonFinite};
#[cfg(feature = "flex")]
use super::dispatch::StateTensors;
use super::dispatch::TwoPaths;
#[cfg(feature = "flex")]
use super::flex::Fused;

/// A base whose fused flex step a wrapper can run under `measure`: a non-finite gradient
/// skipped whatever the policy with the state given back as it came, and `Σ p'²` of a written
/// parameter summed in the pass that writes it (see `TwoPaths::fused`).
pub(crate) trait FusedBase: Optimizer {
    /// Whether the fused loops take this step.
    #[cfg(feature = "flex")]
    fn fuses_measured<const D: usize>(
        &self,
        param: &Tensor<D>,
        grad: &Tensor<D>,
        state: Option<&Self::State<D>>,
    ) -> bool
    where
        Self::State<D>: StateTensors<D>;

    /// The fused step under `measure`; call it only when
    /// [`fuses_measured`](Self::fuses_measured) says so.
    #[cfg(feature = "flex")]
    fn measured_step<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> Fused<D, Self::State<D>>;

    /// The step as the CubeCL kernels with a non-finite gradient treated as `on_non_finite`
    /// says (`Err`: the kernels do not take it, the inputs handed back).
    #[cfg(feature = "wgpu")]
    fn cube_step<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
        on_non_finite: OnNonFinite,
    ) -> CubeStep<D, Self::State<D>>;
}

impl<T: TwoPaths> FusedBase for T {
    #[cfg(feature = "flex")]
    fn fuses_measured<const D: usize>(
        &self,
        param: &Tensor<D>,
        grad: &Tensor<D>,
        state: Option<&Self::State<D>>,
    ) -> bool
    where
        Self::State<D>: StateTensors<D>,
    {
        self.fuses(param, grad, state)
    }

    #[cfg(feature = "flex")]
    fn measured_step<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> Fused<D, Self::State<D>> {
        self.notice(&param);
        self.fused(lr, param, grad, state, true)
    }

    #[cfg(feature = "wgpu")]
    fn cube_step<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
        on_non_finite: OnNonFinite,
    ) -> CubeStep<D, Self::State<D>> {
        self.notice(&param);
        self.cube(lr, param, grad, state, on_non_finite)
    }
}

/// `inner` as the base `T`, when it is one (its state then is `T`'s): whether `T`'s fused
/// loops take the step.
#[cfg(feature = "flex")]
pub(crate) fn fuses_as<T: FusedBase, O: Optimizer, const D: usize>(
    inner: &O,
    param: &Tensor<D>,
    grad: &Tensor<D>,
    state: Option<&O::State<D>>,
) -> Option<bool>
where
    T::State<D>: StateTensors<D>,
{
    let base = (inner as &dyn Any).downcast_ref::<T>()?;
    let state = match state {
        None => None,
        Some(state) => Some((state as &dyn Any).downcast_ref::<T::State<D>>()?),
    };
    Some(base.fuses_measured(param, grad, state))
}

/// `inner`'s measured step as the base `T`, when it is one (taking the inputs).
#[cfg(feature = "flex")]
pub(crate) fn step_as<T: FusedBase, O: Optimizer, const D: usize>(
    inner: &O,
    lr: LearningRate,
    inputs: &mut Option<(Tensor<D>, Tensor<D>, Option<O::State<D>>)>,
) -> Option<Fused<D, O::State<D>>> {
    let base = (inner as &dyn Any).downcast_ref::<T>()?;
    let (param, grad, state) = inputs.take()?;
    // `O` is `T`: the states are one type.
    let fused = base.measured_step(lr, param, grad, same(state));
    Some(Fused {
        param: fused.param,
        state: same(fused.state),
        outcome: fused.outcome,
    })
}

/// `inner`'s step as the kernels of the base `T` under `on_non_finite`, when it is one (taking
/// the inputs; `Some(Err)` hands them back when the kernels do not take the step).
#[cfg(feature = "wgpu")]
pub(crate) fn cube_step_as<T: FusedBase, O: Optimizer, const D: usize>(
    inner: &O,
    lr: LearningRate,
    inputs: &mut Option<(Tensor<D>, Tensor<D>, Option<O::State<D>>)>,
    on_non_finite: OnNonFinite,
) -> Option<CubeStep<D, O::State<D>>> {
    let base = (inner as &dyn Any).downcast_ref::<T>()?;
    let (param, grad, state) = inputs.take()?;
    // `O` is `T`: the states are one type.
    Some(
        match base.cube_step(lr, param, grad, same(state), on_non_finite) {
            Ok((param, state)) => Ok((param, same(state))),
            Err(inputs) => {
                let (param, grad, state) = *inputs;
                Err(Box::new((param, grad, same(state))))
            }
        },
    )
}

/// `value` as `B`, which is its own type `A` (checked by the caller's downcast).
fn same<A: 'static, B: 'static>(value: A) -> B {
    let mut value = Some(value);
    (&mut value as &mut dyn Any)
        .downcast_mut::<Option<B>>()
        .and_then(Option::take)
        .unwrap_or_else(|| unreachable!("the downcast found the optimizer's own type"))
}

/// The wrappers' lookup over a list of [`FusedBase`] optimizers: generates `fuses` (whether
/// `inner` is one of them and its fused loops take the step), `measured_step` (its step
/// under `measure`; call it only when `fuses` says so) and `cube_step` (its kernels' step
/// under a non-finite rule, or the inputs handed back).
macro_rules! fused_bases {
    ($($base:ty),+ $(,)?) => {
        /// `inner`'s step as its kernels with a non-finite gradient treated as `on_non_finite`
        /// says, when it is one of this crate's fused optimizers and its kernels take the
        /// step; `Err` hands the inputs back.
        #[cfg(feature = "wgpu")]
        pub(crate) fn cube_step<O: burn::optim::Optimizer, const D: usize>(
            inner: &O,
            lr: burn::optim::LearningRate,
            param: burn::tensor::Tensor<D>,
            grad: burn::tensor::Tensor<D>,
            state: Option<O::State<D>>,
            on_non_finite: $crate::engine::cube::OnNonFinite,
        ) -> $crate::engine::cube::CubeStep<D, O::State<D>> {
            let mut inputs = Some((param, grad, state));
            None$(.or_else(|| $crate::engine::join::cube_step_as::<$base, O, D>(inner, lr, &mut inputs, on_non_finite)))+
                .unwrap_or_else(|| Err(Box::new(inputs.take().expect("no base took the inputs"))))
        }

        /// Whether `inner` is one of this crate's fused optimizers and its fused loops take
        /// this step.
        #[cfg(feature = "flex")]
        pub(crate) fn fuses<O: burn::optim::Optimizer, const D: usize>(
            inner: &O,
            param: &burn::tensor::Tensor<D>,
            grad: &burn::tensor::Tensor<D>,
            state: Option<&O::State<D>>,
        ) -> bool {
            None$(.or_else(|| $crate::engine::join::fuses_as::<$base, O, D>(inner, param, grad, state)))+
                .unwrap_or(false)
        }

        /// `inner`'s fused step under `measure` (see `TwoPaths::fused`); call it only when
        /// [`fuses`] says so.
        #[cfg(feature = "flex")]
        pub(crate) fn measured_step<O: burn::optim::Optimizer, const D: usize>(
            inner: &O,
            lr: burn::optim::LearningRate,
            param: burn::tensor::Tensor<D>,
            grad: burn::tensor::Tensor<D>,
            state: Option<O::State<D>>,
        ) -> $crate::engine::flex::Fused<D, O::State<D>> {
            let mut inputs = Some((param, grad, state));
            None$(.or_else(|| $crate::engine::join::step_as::<$base, O, D>(inner, lr, &mut inputs)))+
                .expect("checked by `fuses`")
        }
    };
}

pub(crate) use fused_bases;
