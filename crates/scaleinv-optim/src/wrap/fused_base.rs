//! This crate's fused optimizers reached through a wrapper's generic `O: Optimizer`, so that
//! the wrapper's own work joins the base's passes over memory (NaP's norm, see `wrap::nap`).
//! Any other optimizer stays behind the wrapper's tensor operations.

use std::any::Any;

use burn::optim::{LearningRate, Optimizer};
use burn::tensor::Tensor;

use crate::kernels::Fused;
use crate::optim::adamc::AdamC;
use crate::optim::adamp::AdamP;
use crate::optim::sgdp::Sgdp;
use crate::optim::stable_spam::StableSpam;
use crate::optim::width_scaled_adamw::WidthScaledAdamW;
use crate::options::step::{StateTensors, TwoPaths};

/// Calls `$f::<T>(…)` with `T` each of this crate's optimizers with a fused path, and returns
/// the first answer that is `Some`.
macro_rules! first_base {
    ($f:ident($($arg:expr),*)) => {
        $f::<AdamP, _, D>($($arg),*)
            .or_else(|| $f::<Sgdp, _, D>($($arg),*))
            .or_else(|| $f::<WidthScaledAdamW, _, D>($($arg),*))
            .or_else(|| $f::<AdamC, _, D>($($arg),*))
            .or_else(|| $f::<StableSpam, _, D>($($arg),*))
    };
}

/// Whether `inner` is one of this crate's optimizers and its fused loops take this step.
pub(crate) fn fuses<O: Optimizer, const D: usize>(
    inner: &O,
    param: &Tensor<D>,
    grad: &Tensor<D>,
    state: Option<&O::State<D>>,
) -> bool {
    first_base!(fuses_as(inner, param, grad, state)).is_some()
}

/// `inner`'s fused step under `measure` (see `TwoPaths::fused`); call it only when
/// [`fuses`] says so.
pub(crate) fn measured_step<O: Optimizer, const D: usize>(
    inner: &O,
    lr: LearningRate,
    param: Tensor<D>,
    grad: Tensor<D>,
    state: Option<O::State<D>>,
) -> Fused<D, O::State<D>> {
    let mut inputs = Some((param, grad, state));
    first_base!(step_as(inner, lr, &mut inputs)).expect("checked by `fuses`")
}

fn fuses_as<T: TwoPaths, O: Optimizer, const D: usize>(
    inner: &O,
    param: &Tensor<D>,
    grad: &Tensor<D>,
    state: Option<&O::State<D>>,
) -> Option<()>
where
    T::State<D>: StateTensors<D>,
{
    let base = (inner as &dyn Any).downcast_ref::<T>()?;
    let state = match state {
        None => None,
        Some(state) => Some((state as &dyn Any).downcast_ref::<T::State<D>>()?),
    };
    base.fuses(param, grad, state).then_some(())
}

/// The fused step of `inner` seen as `T`, when it is one (taking the inputs).
fn step_as<T: TwoPaths, O: Optimizer, const D: usize>(
    inner: &O,
    lr: LearningRate,
    inputs: &mut Option<(Tensor<D>, Tensor<D>, Option<O::State<D>>)>,
) -> Option<Fused<D, O::State<D>>>
where
    T::State<D>: StateTensors<D>,
{
    let base = (inner as &dyn Any).downcast_ref::<T>()?;
    let (param, grad, state) = inputs.take()?;
    // `O` is `T`: the states are one type.
    base.notice(&param);
    let fused = base.fused(lr, param, grad, same(state), true);
    Some(Fused {
        param: fused.param,
        state: same(fused.state),
        outcome: fused.outcome,
    })
}

/// `value` as `B`, which is its own type `A` (checked by the caller's downcast).
fn same<A: 'static, B: 'static>(value: A) -> B {
    let mut value = Some(value);
    (&mut value as &mut dyn Any)
        .downcast_mut::<Option<B>>()
        .and_then(Option::take)
        .unwrap_or_else(|| unreachable!("the downcast found the optimizer's own type"))
}
