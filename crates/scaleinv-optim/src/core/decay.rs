//! Decoupled weight decay on tensors, `p ← p · (1 − rate · r)`, where `r` is a per-tensor
//! ratio kept on the device (the projection's `wd_ratio` when it fires, 1 otherwise). The
//! formulas are `math::decay`'s.

use burn::tensor::Tensor;

use crate::math::decay::{factor, plain};

/// Multiplies `param` by `1 − rate`; a zero `rate` leaves it untouched.
pub(crate) fn decay<const D: usize>(param: Tensor<D>, rate: f64) -> Tensor<D> {
    if rate == 0.0 {
        param
    } else {
        plain(param, rate)
    }
}

/// Multiplies `param` by `1 − rate · ratio`; a zero `rate` leaves it untouched.
pub(crate) fn decoupled_decay<const D: usize>(
    param: Tensor<D>,
    rate: f64,
    ratio: Tensor<1>,
) -> Tensor<D> {
    if rate == 0.0 {
        return param;
    }
    param * factor(ratio, rate).unsqueeze::<D>()
}
