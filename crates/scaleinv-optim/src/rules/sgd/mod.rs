//! SGD's momentum buffer and update direction (PyTorch's form, as SGDP's reference).
//!
//! ```text
//! b ← μ·b + (1 − τ)·g          (b starts at zero: the first buffer is (1 − τ)·g)
//! u = b                        (Nesterov: u = g + μ·b)
//! ```

#[cfg(feature = "wgpu")]
pub(crate) mod cube;
#[cfg(feature = "flex")]
pub(crate) mod flex;

use crate::rules::arith::Arith;

/// `(1 − τ)·g` (a tensor is not multiplied when τ = 0, see [`Arith::mul_s`]).
#[inline(always)]
pub(crate) fn damped<T: Arith>(g: T, dampening: f64) -> T {
    g.mul_s(1.0 - dampening)
}

/// The buffer after the damped gradient: `μ·b + d`.
#[inline(always)]
pub(crate) fn buffer<T: Arith>(b: T, damped: T, momentum: f64) -> T {
    b.mul_s(momentum) + damped
}

/// The update direction from the new buffer `b`: `b`, or `g + μ·b` with Nesterov.
#[inline(always)]
pub(crate) fn direction<T: Arith>(g: T, b: T, momentum: f64, nesterov: bool) -> T {
    if nesterov { g + b.mul_s(momentum) } else { b }
}
