//! NaP's projection of a weight back to its norm ρ (Lyle et al., 2024):
//!
//! ```text
//! p ← p · ρ / max(‖p‖, ε)
//! ```
//!
//! The factor is formed from `ρ` and `‖p‖` once per tensor; `tensor`-side it is NaP's own
//! (`wrappers::nap`), on flex a rescale pass of `engine::flex`, on CubeCL the kernels of `cube`.

#[cfg(feature = "wgpu")]
pub(crate) mod cube;

use crate::rules::arith::Arith;

/// The factor `ρ / max(‖p‖, ε)` that puts a weight of norm `norm` back on the sphere of radius
/// `radius`.
#[inline(always)]
pub(crate) fn factor<T: Arith>(radius: T, norm: T, epsilon: f64) -> T {
    radius / norm.max_s(epsilon)
}
