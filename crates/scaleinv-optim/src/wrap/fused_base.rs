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

/// A step's inputs, given back when the fused loops do not take it.
pub(crate) type Inputs<const D: usize, S> = (Tensor<D>, Tensor<D>, Option<S>);

/// `inner`'s fused step under `measure` (see `TwoPaths::fused`) when `inner` is one of this
/// crate's optimizers and its fused loops take this step; else the inputs back, untouched.
pub(crate) fn measured_step<O: Optimizer, const D: usize>(
    inner: &O,
    lr: LearningRate,
    inputs: Inputs<D, O::State<D>>,
) -> Result<Fused<D, O::State<D>>, Inputs<D, O::State<D>>> {
    as_base::<AdamP, O, D>(inner, lr, inputs)
        .or_else(|inputs| as_base::<Sgdp, O, D>(inner, lr, inputs))
        .or_else(|inputs| as_base::<WidthScaledAdamW, O, D>(inner, lr, inputs))
        .or_else(|inputs| as_base::<AdamC, O, D>(inner, lr, inputs))
        .or_else(|inputs| as_base::<StableSpam, O, D>(inner, lr, inputs))
}

/// The fused step of `inner` seen as `T`, when it is one and its loops take the step.
fn as_base<T: TwoPaths, O: Optimizer, const D: usize>(
    inner: &O,
    lr: LearningRate,
    (param, grad, state): Inputs<D, O::State<D>>,
) -> Result<Fused<D, O::State<D>>, Inputs<D, O::State<D>>>
where
    T::State<D>: StateTensors<D>,
{
    let Some(base) = (inner as &dyn Any).downcast_ref::<T>() else {
        return Err((param, grad, state));
    };
    // `O` is `T`: the states are one type.
    let state: Option<T::State<D>> = same(state);
    if !base.fuses(&param, &grad, state.as_ref()) {
        return Err((param, grad, same(state)));
    }
    base.notice(&param);
    let fused = base.fused(lr, param, grad, state, true);
    Ok(Fused {
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
