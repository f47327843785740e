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
//! | AdamP, SGDP | 3 for a tensor of rank ≥ 2 (statistics, decision, update), 1 otherwise (+1 under `Skip`) |
//! | Stable-SPAM | 5 (`max|g|` by blocks, AdaClip, `Σ clip(g)²` by blocks, AdaGN, update) |
//! | NaP's projection of a whole tensor | 3 (`Σp²` by blocks, the factor, the rescale) |

mod adam;
mod launch;
mod nap;
mod projection;
mod reduce;
mod rule;
mod sgd;
mod spike;

use burn::backend::tensor::FloatTensor;
use burn::backend::wgpu::CubeBackend;
use burn::backend::{Dispatch, DispatchDevice, backend_extension};
use burn::tensor::{DType, Tensor};

pub(crate) use adam::AdamScalars;
pub(crate) use nap::NapScalars;
pub(crate) use sgd::SgdScalars;
pub(crate) use spike::SpikeScalars;

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

    /// SGDP's step (see `sgd`): the new `(p, b)`.
    #[fusion(meta = |p, _g, b, _s| (p.clone(), b.clone()))]
    fn sgd_step(
        p: FloatTensor<Self>,
        g: FloatTensor<Self>,
        b: FloatTensor<Self>,
        s: SgdScalars,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// NaP's projection of `p` back to the norm `radius` (see `nap`).
    #[fusion(meta = |p, _radius, _s| p.clone())]
    fn nap_rescale(
        p: FloatTensor<Self>,
        radius: FloatTensor<Self>,
        s: NapScalars,
    ) -> FloatTensor<Self>;

    /// Stable-SPAM's step (see `spike`): the new `(p, m, v, v̄, M, μ, ν)` (`v̄` as given
    /// without AMSGrad).
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    #[fusion(meta = |p, _g, m, v, max_v, c, mu, nu, _s| (
        p.clone(), m.clone(), v.clone(), max_v.clone(), c.clone(), mu.clone(), nu.clone()
    ))]
    fn spike_step(
        p: FloatTensor<Self>,
        g: FloatTensor<Self>,
        m: FloatTensor<Self>,
        v: FloatTensor<Self>,
        max_v: FloatTensor<Self>,
        clip_average: FloatTensor<Self>,
        norm_mean: FloatTensor<Self>,
        norm_sq_mean: FloatTensor<Self>,
        s: SpikeScalars,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    );
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

    fn sgd_step(
        p: FloatTensor<Self>,
        g: FloatTensor<Self>,
        b: FloatTensor<Self>,
        s: SgdScalars,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        sgd::launch(p, g, b, s)
    }

    fn nap_rescale(
        p: FloatTensor<Self>,
        radius: FloatTensor<Self>,
        s: NapScalars,
    ) -> FloatTensor<Self> {
        nap::launch(p, radius, s)
    }

    fn spike_step(
        p: FloatTensor<Self>,
        g: FloatTensor<Self>,
        m: FloatTensor<Self>,
        v: FloatTensor<Self>,
        max_v: FloatTensor<Self>,
        clip_average: FloatTensor<Self>,
        norm_mean: FloatTensor<Self>,
        norm_sq_mean: FloatTensor<Self>,
        s: SpikeScalars,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    ) {
        let o = spike::launch(
            [p, g, m, v, max_v],
            [clip_average, norm_mean, norm_sq_mean],
            s,
        );
        (
            o.p,
            o.m,
            o.v,
            o.max_v,
            o.clip_average,
            o.norm_mean,
            o.norm_sq_mean,
        )
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

/// SGDP's step on a CubeCL device: the new parameter and buffer.
pub(crate) fn sgd_step<const D: usize>(
    p: Tensor<D>,
    g: Tensor<D>,
    b: Tensor<D>,
    s: SgdScalars,
) -> (Tensor<D>, Tensor<D>) {
    let (p, b) = Dispatch::sgd_step(p.into_dispatch(), g.into_dispatch(), b.into_dispatch(), s);
    (Tensor::from_dispatch(p), Tensor::from_dispatch(b))
}

/// Whether `scalar` is a one-element f32 tensor on a CubeCL device (a per-tensor statistic of
/// a state the kernels read).
pub(crate) fn scalar_fits(scalar: &Tensor<1>) -> bool {
    on_cube_f32(scalar) && scalar.shape().num_elements() == 1
}

/// Stable-SPAM's step on a CubeCL device: the new parameter, moments, AMSGrad maximum (`max_v`
/// as given without AMSGrad) and statistics `(M, μ, ν)`.
#[allow(clippy::type_complexity)]
pub(crate) fn spike_step<const D: usize>(
    [p, g, m, v, max_v]: [Tensor<D>; 5],
    [clip_average, norm_mean, norm_sq_mean]: [Tensor<1>; 3],
    s: SpikeScalars,
) -> ([Tensor<D>; 4], [Tensor<1>; 3]) {
    let (p, m, v, max_v, c, mu, nu) = Dispatch::spike_step(
        p.into_dispatch(),
        g.into_dispatch(),
        m.into_dispatch(),
        v.into_dispatch(),
        max_v.into_dispatch(),
        clip_average.into_dispatch(),
        norm_mean.into_dispatch(),
        norm_sq_mean.into_dispatch(),
        s,
    );
    let d = |t| Tensor::<D>::from_dispatch(t);
    let one = |t| Tensor::<1>::from_dispatch(t);
    ([d(p), d(m), d(v), d(max_v)], [one(c), one(mu), one(nu)])
}

/// NaP's projection of `p` back to the norm held in the one-element `radius`, when both are
/// f32 tensors on a CubeCL device (`None`: they do not fit, and nothing was launched).
pub(crate) fn nap_rescale<const D: usize>(
    p: &Tensor<D>,
    radius: &Tensor<D>,
    epsilon: f64,
) -> Option<Tensor<D>> {
    let fits = accepts(p) && on_cube_f32(radius) && radius.shape().num_elements() == 1;
    fits.then(|| {
        let s = NapScalars {
            epsilon: epsilon as f32,
        };
        let out =
            Dispatch::nap_rescale(p.clone().into_dispatch(), radius.clone().into_dispatch(), s);
        Tensor::from_dispatch(out)
    })
}
