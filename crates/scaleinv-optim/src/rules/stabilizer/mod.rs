//! GradientStabilizer's per-tensor norm control: the gradient keeps its direction and takes a
//! running estimate of its norm.
//!
//! ```text
//! n = ‖g‖                                 (n not finite or n ≤ 0: g as it is, nothing moves)
//! t ← t + 1 ;  μ ← γ1·μ + (1 − γ1)·n ;  ν ← γ2·ν + (1 − γ2)·n²
//! μ̂ = μ / (1 − γ1^t) ;  ν̂ = ν / (1 − γ2^t)     (bias correction on; else μ̂ = μ, ν̂ = ν)
//! g ← g · (μ̂ / (√ν̂ + ε)) / max(n, ε)
//! ```
//!
//! The averages are AdaGN's ([`spike::norm_averages`], [`spike::target_norm`]); what differs
//! from Stable-SPAM is the skip of an invalid norm, the floor `max(n, ε)` and the optional bias
//! correction. The count `t` is a device tensor (it moves only when the norm is valid, which
//! only the device knows), so its bias correction is written for tensors from
//! `x = t·ln γ` as `1 − eˣ = −tanh(x/2)·(1 + eˣ)`, exact to f32 rounding even when `γ^t ≈ 1`.

use burn::tensor::Tensor;

use crate::rules::arith::Arith;
use crate::rules::spike;

/// GradientStabilizer's hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Stabilizer {
    pub gamma_1: f64,
    pub gamma_2: f64,
    pub epsilon: f64,
    pub bias_correction: bool,
}

impl Stabilizer {
    /// The averages `(μ, ν)` after the norm `n`.
    #[inline(always)]
    pub fn averages<T: Arith + Clone>(&self, mean: T, sq_mean: T, norm: T) -> (T, T) {
        spike::norm_averages(mean, sq_mean, norm, self.gamma_1, self.gamma_2)
    }

    /// The target norm `μ̂ / (√ν̂ + ε)` from the bias-corrected averages.
    #[inline(always)]
    pub fn target<T: Arith>(&self, mean_hat: T, sq_mean_hat: T) -> T {
        spike::target_norm(mean_hat, sq_mean_hat, self.epsilon)
    }

    /// The factor on the gradient, `target / max(n, ε)`.
    #[inline(always)]
    pub fn factor<T: Arith>(&self, target: T, norm: T) -> T {
        target / norm.max_s(self.epsilon)
    }

    /// `(μ̂, ν̂)` after `count` valid steps (a device count, shape `[1]`).
    pub fn debiased(
        &self,
        mean: Tensor<1>,
        sq_mean: Tensor<1>,
        count: &Tensor<1>,
    ) -> (Tensor<1>, Tensor<1>) {
        if !self.bias_correction {
            return (mean, sq_mean);
        }
        let correction = |decay: f64| {
            // 1 − γ^t = 1 − eˣ with x = t·ln γ ≤ 0, written as −tanh(x/2)·(1 + eˣ): no
            // cancellation when γ^t is close to 1 (γ2 = 0.999 at t = 1 loses four digits in
            // f32 as 1 − eˣ). γ = 0 gives x = −∞ and a correction of 1 for t ≥ 1.
            let x = count.clone() * decay.ln();
            (x.clone() * 0.5).tanh().mul_s(-1.0) * x.exp().add_s(1.0)
        };
        (
            mean / correction(self.gamma_1),
            sq_mean / correction(self.gamma_2),
        )
    }

    /// `(μ̂, ν̂)` after `count` valid steps, on the host (the flex path).
    #[cfg_attr(not(feature = "flex"), allow(dead_code))]
    pub fn debiased_host(&self, mean: f64, sq_mean: f64, count: f64) -> (f64, f64) {
        if !self.bias_correction {
            return (mean, sq_mean);
        }
        let correction = |decay: f64| 1.0 - decay.powf(count);
        (
            mean / correction(self.gamma_1),
            sq_mean / correction(self.gamma_2),
        )
    }
}
