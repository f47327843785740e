//! Decoupled weight decay, `p ← p · (1 − rate · r)`, where `r` is a per-tensor ratio kept on
//! the device (the projection's `wd_ratio` when it fires, 1 otherwise).

use burn::tensor::Tensor;

/// Multiplies `param` by `1 − rate`; a zero `rate` leaves it untouched.
pub(crate) fn decay<const D: usize>(param: Tensor<D>, rate: f64) -> Tensor<D> {
    if rate == 0.0 {
        param
    } else {
        param * (1.0 - rate)
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
    let factor = ratio * (-rate) + 1.0;
    param * factor.unsqueeze::<D>()
}
