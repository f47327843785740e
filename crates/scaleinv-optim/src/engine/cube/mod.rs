//! The CubeCL engine of Burn's CubeCL backends (wgpu here; CUDA and ROCm run the same
//! kernels): launch geometry and the non-finite flag ([`launch`]), in-cube reductions
//! ([`reduce`]) and the device checks. It knows nothing of any algorithm: each rule's kernels
//! live in its `cube.rs` (`rules::*::cube`), plugged in as a backend extension of their own
//! (`AdamKernel`, `SgdKernel`, `SpikeKernel`, `NormKernel`): under Burn's fusion each step is
//! registered lazily like any other operation and runs on the `CubeTensor` handles when the
//! stream is flushed. No step reads anything back to the host or uploads anything to it: the
//! non-finite test is a set of device flags in scratch from the runtime's pool, written by the
//! kernels before the update and finished by the update itself. The parameter and the state
//! are written in place when no other tensor shares their buffers.
//!
//! | optimizer | launches per tensor and step (default `Skip`) | scratch buffers |
//! |-----------|-----------------------------------------------|-----------------|
//! | width-scaled AdamW, AdamC | 2 (the non-finite test by blocks, the update) | 1 |
//! | AdamP, SGDP | 2 for a tensor of rank ≥ 2 (the channels' statistics; the update, each of whose cubes decides from them, the non-finite test included), 2 otherwise | 1 |
//! | Stable-SPAM | 3 (`max|g|` by blocks; AdaClip and `Σ clip(g)²` by blocks; AdaGN and the update) | 3 |
//! | NaP around one of these, whole-tensor projection | the base's, and 2 (`Σp²` and the gradient's test by blocks; the factor and the rescale) | the base's, and 2 |
//! | a wrapper around one of Burn's optimizers, under `Skip` ([`guard`]) | 2 to screen the gradient (1 for a tensor of at most `ONE_CUBE` elements), Burn's fused step, 1 to restore the parameter; NaP's projection 2 more | 2, and NaP's 1 |
//!
//! A tensor of at most [`launch::ONE_CUBE`] elements that is not projected (a bias, a norm's
//! scale) is stepped by one cube in one launch that tests the gradient itself: width-scaled
//! AdamW, AdamC, AdamP and SGDP without scratch, Stable-SPAM with one vector of it.
//!
//! `tests/launches.rs` holds every optimizer to these counts, and to no read-back, at
//! CubeCL's runtime over ResNet-50's and GPT-2 small's parameter lists.

pub(crate) mod guard;
pub(crate) mod launch;
#[cfg(test)]
pub(crate) mod parity;
pub(crate) mod reduce;

use burn::backend::DispatchDevice;
use burn::tensor::{DType, Tensor};

/// A step through the CubeCL kernels: the new parameter and state, or (`Err`) the parameter,
/// gradient and state handed back untouched for the tensor ops.
pub(crate) type CubeStep<const D: usize, S> = Result<(Tensor<D>, Option<S>), Box<Inputs<D, S>>>;

/// A step's parameter, gradient and state.
pub(crate) type Inputs<const D: usize, S> = (Tensor<D>, Tensor<D>, Option<S>);

/// An update kernel's non-finite switches: test the gradient and write nothing when it holds
/// NaN or ±∞ (`skip`), and then still step the state on a zero gradient (`zero_gradient`, a
/// wrapper's `Skip`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonFiniteArgs {
    pub skip: bool,
    pub zero_gradient: bool,
}

impl NonFiniteArgs {
    /// The optimizer's own policy: `skip` when it skips.
    pub fn policy(skip: bool) -> Self {
        Self {
            skip,
            zero_gradient: false,
        }
    }

    /// The switches with a non-finite gradient treated as `on` says.
    pub fn under(self, on: OnNonFinite) -> Self {
        match on {
            OnNonFinite::Policy => self,
            OnNonFinite::ZeroGradient => Self {
                skip: true,
                zero_gradient: true,
            },
        }
    }
}

/// What a step's kernels do with a gradient that holds NaN or ±∞.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnNonFinite {
    /// The optimizer's own policy: under `Skip` nothing is written, under `Propagate` nothing
    /// is tested.
    Policy,
    /// A wrapper's `Skip` ([`Nap`](crate::Nap)): tested whatever the optimizer's policy; the
    /// state then steps on a zero gradient and the parameter is kept, as the wrapper's
    /// tensor-op frame does (`framed_wrapper_step`).
    ZeroGradient,
}

/// Whether `tensor` is an f32 tensor on a CubeCL device (the kernels apply).
pub(crate) fn on_cube<const D: usize>(tensor: &Tensor<D>) -> bool {
    matches!(tensor.device().as_dispatch(), DispatchDevice::Cube(_)) && tensor.dtype() == DType::F32
}

/// Whether the kernels can step `param`: a non-empty f32 tensor on a CubeCL device.
pub(crate) fn accepts<const D: usize>(param: &Tensor<D>) -> bool {
    param.shape().num_elements() > 0 && on_cube(param)
}

/// Whether `scalar` is a one-element f32 tensor on a CubeCL device (a per-tensor statistic of
/// a state the kernels read).
pub(crate) fn scalar_fits(scalar: &Tensor<1>) -> bool {
    on_cube(scalar) && scalar.shape().num_elements() == 1
}
