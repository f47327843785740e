//! Checks at the top of every step, on the host only (no device work).

use burn::optim::LearningRate;
use burn::tensor::{DType, FloatDType, Tensor};

use crate::engine::non_finite::{NonFinitePolicy, Revert, guarded_step};

/// Whether `tensor` has no element. A step of an empty tensor returns it unchanged, with its
/// state: there is nothing to update, and some backends mishandle operations on empty tensors
/// (flex cannot reduce one to its maximum; CubeCL's contiguity check underflows on a
/// zero-length axis in debug builds).
pub(crate) fn is_empty<const D: usize>(tensor: &Tensor<D>) -> bool {
    tensor.shape().num_elements() == 0
}

/// Panics with a clear message when the learning rate Burn passes to a step is negative or
/// not finite (a scheduler's bug would otherwise turn every weight into NaN silently).
pub(crate) fn check_lr(lr: LearningRate) {
    assert!(
        lr.is_finite() && lr >= 0.0,
        "scaleinv: learning rate {lr} is invalid: expected a finite value ≥ 0 \
         (check the learning-rate scheduler passed to the optimizer step)"
    );
}

/// Runs `step` on `param` and `grad` in f32 when the parameter is f16 or bf16, and casts the
/// new parameter back: the state is created from the f32 tensors, so it is kept in f32. Other
/// dtypes run as they are.
pub(crate) fn in_f32<const D: usize, S>(
    param: Tensor<D>,
    grad: Tensor<D>,
    step: impl FnOnce(Tensor<D>, Tensor<D>) -> (Tensor<D>, S),
) -> (Tensor<D>, S) {
    let dtype = param.dtype();
    if !matches!(dtype, DType::F16 | DType::BF16) {
        return step(param, grad);
    }
    let (param, state) = step(param.cast(FloatDType::F32), grad.cast(FloatDType::F32));
    (param.cast(dtype), state)
}

/// The common frame of every step: checks the learning rate, returns an empty tensor as it
/// is, runs `step` in f32 for f16/bf16 parameters and under the non-finite `policy`.
pub(crate) fn framed_step<const D: usize, S: Revert<D> + Clone>(
    lr: LearningRate,
    policy: NonFinitePolicy,
    param: Tensor<D>,
    grad: Tensor<D>,
    state: Option<S>,
    step: impl FnOnce(Tensor<D>, Tensor<D>, Option<S>) -> (Tensor<D>, Option<S>),
) -> (Tensor<D>, Option<S>) {
    frame(lr, param, grad, state, |param, grad, state| {
        guarded_step(policy, param, grad, state, step)
    })
}

/// What every step does around its body: checks the learning rate, returns an empty tensor as
/// it is, and runs the body in f32 for f16/bf16 parameters.
fn frame<const D: usize, S>(
    lr: LearningRate,
    param: Tensor<D>,
    grad: Tensor<D>,
    state: Option<S>,
    body: impl FnOnce(Tensor<D>, Tensor<D>, Option<S>) -> (Tensor<D>, Option<S>),
) -> (Tensor<D>, Option<S>) {
    check_lr(lr);
    if is_empty(&param) {
        return (param, state);
    }
    in_f32(param, grad, |param, grad| body(param, grad, state))
}

/// The frame of a wrapper's step ([`RadialProjection`](crate::RadialProjection),
/// [`Nap`](crate::Nap)): as [`framed_step`], except that under `Skip` the wrapped step sees a
/// zero gradient in place of a non-finite one (the inner optimizer's state is not the
/// wrapper's to restore) and the parameter is kept.
pub(crate) fn framed_wrapper_step<const D: usize, S>(
    lr: LearningRate,
    policy: NonFinitePolicy,
    param: Tensor<D>,
    grad: Tensor<D>,
    state: Option<S>,
    step: impl FnOnce(Tensor<D>, Tensor<D>, Option<S>) -> (Tensor<D>, Option<S>),
) -> (Tensor<D>, Option<S>) {
    frame(lr, param, grad, state, |param, grad, state| {
        // On flex the gradient is read where it lies and the branch taken on the CPU, which
        // spares the masks (and the copy of the parameter they keep).
        #[cfg(feature = "flex")]
        if policy == NonFinitePolicy::Skip
            && let Some(finite) = crate::engine::flex::all_finite(&grad)
        {
            if finite {
                return step(param, grad, state);
            }
            let (_, state) = step(param.clone(), grad.zeros_like(), state);
            return (param, state);
        }
        // On a CubeCL device the screen and the restore are kernels around the inner step,
        // which Burn's fusion then fuses as it would without the wrapper.
        #[cfg(feature = "wgpu")]
        if policy == NonFinitePolicy::Skip && crate::engine::cube::guard::screens(&param, &grad) {
            return crate::engine::cube::guard::guarded(param, grad, state, step);
        }
        match policy.checkpoint(&param, &grad) {
            None => step(param, grad, state),
            Some(checkpoint) => {
                let grad = checkpoint.zero_if_bad(grad);
                let (param, state) = step(param, grad, state);
                (checkpoint.param(param), state)
            }
        }
    })
}
