//! The numbers every rule's formula runs on, and the formulas they all share (EMA, guarded
//! ratio).
//!
//! Each formula is a small function generic over [`Arith`], a number that may be one `f32`
//! element (the fused flex loops), an `f64` statistic (the host-side decisions of those loops)
//! or a whole tensor (the tensor-op path every backend runs). Both paths call the same
//! functions, in the same order, so they agree to the rounding of the reductions.
//!
//! This folder uses nothing else of the crate.

#[cfg(feature = "wgpu")]
pub(crate) mod cube;

use core::ops::{Add, Div, Mul, Sub};

use burn::tensor::{Float, Tensor};

/// A number the formulas of this module run on: an `f32` element, an `f64` statistic or a
/// tensor (element-wise). Scalars are given in `f64` and converted to the number's precision
/// as Burn converts a tensor's scalar operand (`s as f32` for an f32 tensor).
pub(crate) trait Arith:
    Sized + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + Div<Output = Self>
{
    /// `self · s` (a tensor is returned as it is for `s = 1`: the same values, one operation
    /// fewer; an element is multiplied, which keeps the loops free of branches).
    fn mul_s(self, s: f64) -> Self;
    /// `self + s`
    fn add_s(self, s: f64) -> Self;
    /// `self / s`
    fn div_s(self, s: f64) -> Self;
    /// `√self`
    fn sqrt(self) -> Self;
    /// `self²`
    fn square(self) -> Self;
    /// `|self|`
    fn abs(self) -> Self;
    /// `max(self, s)`
    fn max_s(self, s: f64) -> Self;
}

impl Arith for f32 {
    #[inline(always)]
    fn mul_s(self, s: f64) -> Self {
        self * s as f32
    }
    #[inline(always)]
    fn add_s(self, s: f64) -> Self {
        self + s as f32
    }
    #[inline(always)]
    fn div_s(self, s: f64) -> Self {
        self / s as f32
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    #[inline(always)]
    fn square(self) -> Self {
        self * self
    }
    #[inline(always)]
    fn abs(self) -> Self {
        f32::abs(self)
    }
    #[inline(always)]
    fn max_s(self, s: f64) -> Self {
        self.max(s as f32)
    }
}

impl Arith for f64 {
    #[inline(always)]
    fn mul_s(self, s: f64) -> Self {
        self * s
    }
    #[inline(always)]
    fn add_s(self, s: f64) -> Self {
        self + s
    }
    #[inline(always)]
    fn div_s(self, s: f64) -> Self {
        self / s
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    #[inline(always)]
    fn square(self) -> Self {
        self * self
    }
    #[inline(always)]
    fn abs(self) -> Self {
        f64::abs(self)
    }
    #[inline(always)]
    fn max_s(self, s: f64) -> Self {
        self.max(s)
    }
}

impl<const D: usize> Arith for Tensor<D> {
    fn mul_s(self, s: f64) -> Self {
        if s == 1.0 { self } else { self * s }
    }
    fn add_s(self, s: f64) -> Self {
        self + s
    }
    fn div_s(self, s: f64) -> Self {
        self / s
    }
    fn sqrt(self) -> Self {
        Tensor::<D, Float>::sqrt(self)
    }
    fn square(self) -> Self {
        Tensor::<D, Float>::square(self)
    }
    fn abs(self) -> Self {
        Tensor::<D, Float>::abs(self)
    }
    fn max_s(self, s: f64) -> Self {
        self.clamp_min(s)
    }
}

/// Exponential moving average `prev·decay + x·(1 − decay)`.
#[inline(always)]
pub(crate) fn ema<T: Arith>(prev: T, x: T, decay: f64) -> T {
    prev.mul_s(decay) + x.mul_s(1.0 - decay)
}

/// [`ema`] from a zero average, `x·(1 − decay)` (the same value without the zeros).
#[inline(always)]
pub(crate) fn ema_from_zero<T: Arith>(x: T, decay: f64) -> T {
    x.mul_s(1.0 - decay)
}

/// `a / max(b, f32::MIN_POSITIVE)`: a ratio whose denominator cannot be zero.
#[inline(always)]
pub(crate) fn ratio<T: Arith>(a: T, b: T) -> T {
    a / b.max_s(f64::from(f32::MIN_POSITIVE))
}
