//! Decoupled weight decay.
//!
//! ```text
//! p ← p · (1 − rate·r)         r: the projection's decay ratio (wd_ratio when it fired, else 1)
//! p ← p · (1 − rate)           without a ratio
//! ```

use super::Arith;

/// The factor `1 − rate·r`, computed as `r·(−rate) + 1`.
#[inline(always)]
pub(crate) fn factor<T: Arith>(ratio: T, rate: f64) -> T {
    ratio.mul_s(-rate).add_s(1.0)
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
