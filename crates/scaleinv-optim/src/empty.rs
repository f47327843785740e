//! Empty tensors: a step of a tensor with no element returns it unchanged, with its state.
//!
//! There is nothing to update, and some backends mishandle operations on empty tensors (flex
//! cannot reduce one to its maximum; CubeCL's contiguity check underflows on a zero-length
//! axis in debug builds). The check reads the shape only: no device work.

use burn::tensor::Tensor;

/// Whether `tensor` has no element.
pub(crate) fn is_empty<const D: usize>(tensor: &Tensor<D>) -> bool {
    tensor.shape().num_elements() == 0
}
