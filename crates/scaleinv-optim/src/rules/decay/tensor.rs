//! Decoupled weight decay on tensors, `p ← p · (1 − rate · r)`, where `r` is a per-tensor
//! ratio kept on the device (the projection's `wd_ratio` when it fires, 1 otherwise). The
//! formulas are `super`'s.

use burn::tensor::Tensor;

use super::{factor, plain};

/// Multiplies `param` by `1 − rate`; a zero `rate` leaves it untouched.
pub(crate) fn decay<const D: usize>(param: Tensor<D>, rate: f64) -> Tensor<D> {
    if rate == 0.0 {
        param
    } else {
        plain(param, rate)
    }
}

/// The decay factor `1 − rate · ratio` as a rank-`D` tensor `[1, …, 1]` for
/// [`write`](super::write); `None` (no multiply) for a zero `rate`.
pub(crate) fn decay_factor<const D: usize>(rate: f64, ratio: Tensor<1>) -> Option<Tensor<D>> {
    (rate != 0.0).then(|| factor(ratio, rate).unsqueeze::<D>())
}

/// Multiplies `param` by `1 − rate · ratio`; a zero `rate` leaves it untouched.
pub(crate) fn decoupled_decay<const D: usize>(
    param: Tensor<D>,
    rate: f64,
    ratio: Tensor<1>,
) -> Tensor<D> {
    match decay_factor(rate, ratio) {
        Some(f) => param * f,
        None => param,
    }
}
