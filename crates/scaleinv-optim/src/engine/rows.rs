//! Reductions that keep the rank, shared by the projections.

use burn::tensor::Tensor;

/// Sums `x` over every axis but `axis`, keeping the rank (`[1, …, C, …, 1]`).
///
/// When no axis before `axis` is longer than 1 (convolutions, PyTorch-layout weights), each
/// row is contiguous, and one reduction over a `[C, N/C]` view replaces a chain of per-axis
/// reductions.
pub(crate) fn sum_except<const D: usize>(x: Tensor<D>, axis: usize) -> Tensor<D> {
    let dims = x.dims();
    if dims[..axis].iter().all(|&d| d == 1) {
        let rows = dims[axis];
        let mut row_shape = [1usize; D];
        row_shape[axis] = rows;
        let numel = x.shape().num_elements();
        x.reshape([rows, numel / rows])
            .sum_dim(1)
            .reshape(row_shape)
    } else {
        let axes: Vec<usize> = (0..D).filter(|&a| a != axis).collect();
        x.sum_dims(&axes)
    }
}

/// The sum of all elements of `x` as a rank-`D` tensor of shape `[1, …, 1]`.
pub(crate) fn sum_all<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    x.sum().reshape([1usize; D])
}
