//! Stable-SPAM's per-tensor statistics: AdaClip's threshold and AdaGN's target norm.
//!
//! ```text
//! M ← θ·M + (1 − θ)·max|g| ;  M̂ = M / (1 − θ^t)                 AdaClip: |g_i| > M̂ is scaled by M̂ / max|g|
//! μ ← γ1·μ + (1 − γ1)·n ;  ν ← γ2·ν + (1 − γ2)·n²                AdaGN, n = ‖g‖ after AdaClip
//! g ← g · (μ̂ / (√ν̂ + ε)) / n   (n > 0)
//! ```

#[cfg(feature = "wgpu")]
pub(crate) mod cube;
#[cfg(feature = "flex")]
pub(crate) mod flex;

use crate::rules::adam::Adam;
use crate::rules::arith::{Arith, ema, ratio};

/// An average's bias correction after `t` updates: `avg / (1 − decay^t)`.
#[inline(always)]
pub(crate) fn bias_corrected<T: Arith>(avg: T, decay: f64, time: usize) -> T {
    avg.div_s(1.0 - decay.powi(time as i32))
}

/// AdaClip: the new average of `max|g|` and the clipping limit `M̂`.
#[inline(always)]
pub(crate) fn clip_limit<T: Arith + Clone>(avg: T, max_abs: T, theta: f64, time: usize) -> (T, T) {
    let avg = ema(avg, max_abs, theta);
    (avg.clone(), bias_corrected(avg, theta, time))
}

/// AdaClip's scale on the elements above the limit: `M̂ / max|g|`.
#[inline(always)]
pub(crate) fn spike_scale<T: Arith>(limit: T, max_abs: T) -> T {
    ratio(limit, max_abs)
}

/// AdaGN: the new averages `(μ, ν)` of the norm `n` and of `n²`.
#[inline(always)]
pub(crate) fn norm_averages<T: Arith + Clone>(
    mean: T,
    sq_mean: T,
    norm: T,
    gamma_1: f64,
    gamma_2: f64,
) -> (T, T) {
    (
        ema(mean, norm.clone(), gamma_1),
        ema(sq_mean, norm.square(), gamma_2),
    )
}

/// AdaGN's target norm `μ̂ / (√ν̂ + ε)`, from the bias-corrected averages.
#[inline(always)]
pub(crate) fn target_norm<T: Arith>(mean_hat: T, sq_mean_hat: T, epsilon: f64) -> T {
    mean_hat / sq_mean_hat.sqrt().add_s(epsilon)
}

/// AdaGN's factor on the gradient: `target / n` (the caller keeps 1 where `n = 0`).
#[inline(always)]
pub(crate) fn rescale<T: Arith>(target: T, norm: T) -> T {
    ratio(target, norm)
}

/// One Stable-SPAM step's hyperparameters, decided once on the host for both paths (β1 and γ1
/// already scaled by the cosine multiplier). The tensor path reads the counts and the reset
/// from its state's tensors as well; the flags below are the fused loop's.
#[cfg_attr(not(feature = "flex"), allow(dead_code))]
pub(crate) struct SpikeStep {
    /// The global step `k` (1-based, never reset).
    pub global_step: usize,
    pub adam: Adam,
    pub weight_decay: f64,
    pub gamma_1: f64,
    pub gamma_2: f64,
    pub theta: f64,
    /// The statistics' bias-correction count `t` (steps since the last reset, this one
    /// included) and Adam's (`1` on a reset step).
    pub time: usize,
    pub adam_time: usize,
    /// Whether Adam's moments are zeroed at this step, and whether before the update (clean)
    /// or after it (the reference).
    pub reset: bool,
    pub clean_reset: bool,
    pub skip_non_finite: bool,
    pub lr: f64,
}
