//! Fused steps for Burn's CubeCL backends (wgpu here; CUDA and ROCm run the same kernels),
//! written with CubeCL and plugged in through Burn's backend-extension mechanism.
//!
//! Each step is one operation of the [`CubeSteps`] extension: under Burn's fusion it is
//! registered lazily like any other operation and runs on the `CubeTensor` handles when the
//! stream is flushed. No step reads anything back to the host: the non-finite test is a
//! device flag the update kernel reads.
//!
//! | optimizer | launches per tensor and step |
//! |-----------|------------------------------|
//! | width-scaled AdamW, AdamC | 1 (+1 for the non-finite test under `Skip`) |

mod adam;
mod launch;

use burn::backend::tensor::FloatTensor;
use burn::backend::wgpu::CubeBackend;
use burn::backend::{Dispatch, DispatchDevice, backend_extension};
use burn::tensor::{DType, Tensor};

pub(crate) use adam::AdamScalars;

/// The fused steps, as operations of Burn's CubeCL backend (and of fusion around it).
#[backend_extension(Cube: cfg(feature = "wgpu"), Fusion: cfg(feature = "wgpu"))]
pub trait CubeSteps: burn::backend::Backend {
    /// Adam's step (see `adam`): the new `(p, m, v)`.
    #[fusion(meta = |p, _g, m, v, _s| (p.clone(), m.clone(), v.clone()))]
    fn adam_step(
        p: FloatTensor<Self>,
        g: FloatTensor<Self>,
        m: FloatTensor<Self>,
        v: FloatTensor<Self>,
        s: AdamScalars,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

impl CubeSteps for CubeBackend {
    fn adam_step(
        p: FloatTensor<Self>,
        g: FloatTensor<Self>,
        m: FloatTensor<Self>,
        v: FloatTensor<Self>,
        s: AdamScalars,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        adam::launch(p, g, m, v, s)
    }
}

/// A step through the CubeCL kernels: the new parameter and state, or (`Err`) the parameter,
/// gradient and state handed back untouched for the tensor ops.
pub(crate) type CubeStep<const D: usize, S> = Result<(Tensor<D>, Option<S>), Box<Inputs<D, S>>>;

/// A step's parameter, gradient and state.
pub(crate) type Inputs<const D: usize, S> = (Tensor<D>, Tensor<D>, Option<S>);

/// Whether `tensor` is an f32 tensor on a CubeCL device (the kernels apply).
fn on_cube_f32<const D: usize>(tensor: &Tensor<D>) -> bool {
    matches!(tensor.device().as_dispatch(), DispatchDevice::Cube(_)) && tensor.dtype() == DType::F32
}

/// Whether the kernels can step `param`: a non-empty f32 tensor on a CubeCL device.
pub(crate) fn accepts<const D: usize>(param: &Tensor<D>) -> bool {
    param.shape().num_elements() > 0 && on_cube_f32(param)
}

/// Whether the gradient and the state tensors fit the kernels with `param`: f32 on a CubeCL
/// device, of its shape.
pub(crate) fn fit<'a, const D: usize>(
    param: &Tensor<D>,
    grad: &Tensor<D>,
    state: impl IntoIterator<Item = &'a Tensor<D>>,
) -> bool {
    let shape = param.shape();
    let fits = |t: &Tensor<D>| on_cube_f32(t) && t.shape() == shape;
    fits(grad) && state.into_iter().all(fits)
}

/// Adam's step on a CubeCL device: the new parameter and moments.
pub(crate) fn adam_step<const D: usize>(
    p: Tensor<D>,
    g: Tensor<D>,
    m: Tensor<D>,
    v: Tensor<D>,
    s: AdamScalars,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    let (p, m, v) = Dispatch::adam_step(
        p.into_dispatch(),
        g.into_dispatch(),
        m.into_dispatch(),
        v.into_dispatch(),
        s,
    );
    (
        Tensor::from_dispatch(p),
        Tensor::from_dispatch(m),
        Tensor::from_dispatch(v),
    )
}
