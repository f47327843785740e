//! What runs the rules and knows nothing of any algorithm: the one dispatch between the paths
//! ([`dispatch`]), the frame of a tensor-op step and the non-finite policy, rank-keeping
//! reductions, the channel geometry, and the two fused engines: [`flex`] (chunks, buffers and
//! element types of the flex CPU backend) and `cube` (launch geometry, in-cube reductions and
//! the device checks of Burn's CubeCL backends).

pub(crate) mod channels;
#[cfg(feature = "wgpu")]
pub(crate) mod cube;
pub(crate) mod dispatch;
#[cfg(any(feature = "flex", feature = "wgpu"))]
pub(crate) mod fits;
#[cfg(feature = "flex")]
pub(crate) mod flex;
#[cfg(any(feature = "flex", feature = "wgpu"))]
pub(crate) mod join;
pub(crate) mod non_finite;
pub(crate) mod rows;
pub(crate) mod step_frame;
