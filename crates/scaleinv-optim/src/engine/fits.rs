//! Whether a step's tensors fit a fused path together: one check for both engines, each naming
//! its device (`flex::buffer::on_flex`, `cube::on_cube`).

use burn::tensor::{DType, Tensor};

/// Whether the gradient and the state tensors fit a fused path with `param`: each on the
/// engine's device (`on_device`) and of `param`'s shape, the gradient of `param`'s element
/// type and the state in f32.
pub(crate) fn fit<'a, const D: usize>(
    param: &Tensor<D>,
    grad: &Tensor<D>,
    state: impl IntoIterator<Item = &'a Tensor<D>>,
    on_device: impl Fn(&Tensor<D>) -> bool,
) -> bool {
    let shape = param.shape();
    let fits = |t: &Tensor<D>| on_device(t) && t.shape() == shape;
    fits(grad)
        && grad.dtype() == param.dtype()
        && state
            .into_iter()
            .all(|s| fits(s) && s.dtype() == DType::F32)
}
