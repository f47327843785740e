//! Checks at the top of every step, on the host only (no device work).

use burn::optim::LearningRate;
use burn::tensor::Tensor;

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
