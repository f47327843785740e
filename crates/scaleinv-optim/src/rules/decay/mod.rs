//! Decoupled weight decay, and the parameter's write that applies it with the update.
//!
//! ```text
//! f = 1 − rate·r               r: the projection's decay ratio (wd_ratio when it fired, else 1)
//! p ← p·f − u·s                the write of every step: decay, then the update scaled by s
//! p ← p · (1 − rate)           decay alone (the optimizers that apply their update apart)
//! ```

#[cfg(feature = "wgpu")]
pub(crate) mod cube;
pub(crate) mod tensor;

use crate::rules::arith::Arith;

/// The factor `1 − rate·r`, computed as `r·(−rate) + 1`.
#[inline(always)]
pub(crate) fn factor<T: Arith>(ratio: T, rate: f64) -> T {
    ratio.mul_s(-rate).add_s(1.0)
}

/// The parameter's write `p·f − u·s`: `p` times the decay factor `f` (`None`: no decay, no
/// multiply), less the update `u` scaled by `s`. Every path writes with it: the tensor ops with
/// a factor tensor, the flex loops per element, the CubeCL kernels through `cube::write`.
#[inline(always)]
pub(crate) fn write<T: Arith>(p: T, factor: Option<T>, u: T, scale: f64) -> T {
    let p = match factor {
        Some(f) => p * f,
        None => p,
    };
    p - u.mul_s(scale)
}

/// `p · (1 − rate)`.
#[inline(always)]
pub(crate) fn plain<T: Arith>(p: T, rate: f64) -> T {
    p.mul_s(1.0 - rate)
}

/// AdamC's corrected decay (Defazio et al. 2025): a weight that feeds a normalization layer is
/// decayed by `λ·η²/η_max` rather than `λ·η`, i.e. with `λ` scaled by `η / η_max`. Returns
/// that scale, `0` while `η_max` is `0`.
#[inline(always)]
pub(crate) fn corrected_scale(lr: f64, peak_lr: f64) -> f64 {
    if peak_lr > 0.0 { lr / peak_lr } else { 0.0 }
}

/// λ at learning rate `lr` for a tensor of rank `rank`: `λ·η_t/η_max` for rank ≥ 2 when a peak
/// `η_max` is given (the decay rate `η_t·λ` becomes AdamC's `λ·η_t²/η_max`), else `λ`.
#[inline(always)]
pub(crate) fn corrected_weight_decay(
    weight_decay: f64,
    peak_lr: Option<f64>,
    lr: f64,
    rank: usize,
) -> f64 {
    match peak_lr {
        Some(peak) if rank >= 2 => weight_decay * corrected_scale(lr, peak),
        _ => weight_decay,
    }
}
