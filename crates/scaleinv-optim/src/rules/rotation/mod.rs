//! The rotational update of Kosson, Messmer and Jaggi, *Rotational Equilibrium: How Weight
//! Decay Balances Learning Across Neural Networks*, ICML 2024
//! ([arXiv:2305.17212](https://arxiv.org/abs/2305.17212); reference `epfml/REQ`,
//! `shared/optimizers/common.py`).
//!
//! With weight decay, a scale-invariant weight's norm settles where the expected angle of
//! each step is the equilibrium angle `η_r` of its optimizer. The rotational update holds every
//! neuron (row of the neuron axis), or the whole tensor, there from the first step:
//!
//! ```text
//! set-up (zero_mean):  w ← ‖w‖ · c(w) / ‖c(w)‖            c(x) = x − mean(x), per neuron
//! first step:          n = ‖c(w)‖ (zero_mean) or ‖w‖       kept for the whole run
//! every step, on the inner update d (no decay, no learning rate):
//!     d ← c(d)                                            (zero_mean)
//!     d ← d − w·⟨d, w⟩ / n²                               radial part removed
//!     a ← (1 − β)·‖d‖² + β·a ;  â = a / (1 − β^k)          k: this tensor's rotational steps
//!     w ← w − η_r · (d / (ε + √â)) · n
//!     w ← w · n / ‖w‖                                     back on its sphere
//! η_r = √(2·η·λ·(1 − β1)/(1 + β1))   (AdamW)      η_r = √(2·η·λ/(1 + μ))   (SGD with momentum)
//! ```
//!
//! The paper's optimizers centre the update before they remove its radial part (REQ's later
//! `rotational_wrapper.py` does the two the other way round and counts steps with the inner
//! optimizer); this is the paper's order.

pub(crate) mod tensor;

/// The rotational update's options for one tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rotation {
    /// β of the running average of `‖d‖²` (`update_norm_decay_factor`).
    pub decay: f64,
    /// One norm and one angle per neuron (`true`) or per tensor.
    pub per_neuron: bool,
    /// Centre each neuron's weights once and every update (`zero_mean`).
    pub zero_mean: bool,
    /// ε of `d / (ε + √â)` (`rotational_eps`).
    pub epsilon: f64,
    /// The axis whose index is the neuron (0 for a convolution, 1 for Burn's `Linear`,
    /// `[d_input, d_output]`).
    pub axis: usize,
}

/// AdamW's equilibrium angle per step, `√(2·η·λ·(1 − β1)/(1 + β1))`.
pub(crate) fn adamw_equilibrium(lr: f64, weight_decay: f64, beta_1: f64) -> f64 {
    (2.0 * lr * weight_decay * (1.0 - beta_1) / (1.0 + beta_1)).sqrt()
}

/// SGD with momentum's equilibrium angle per step, `√(2·η·λ/(1 + μ))`.
pub(crate) fn sgdm_equilibrium(lr: f64, weight_decay: f64, momentum: f64) -> f64 {
    (2.0 * lr * weight_decay / (1.0 + momentum)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_equilibrium_angles_are_the_papers() {
        // η = 1e-3, λ = 0.1, β1 = 0.9: √(2e-4 · 0.1/1.9).
        let adamw = adamw_equilibrium(1e-3, 0.1, 0.9);
        assert!((adamw - (2e-4f64 * 0.1 / 1.9).sqrt()).abs() < 1e-15);
        let sgdm = sgdm_equilibrium(0.1, 5e-4, 0.9);
        assert!((sgdm - (1e-4f64 / 1.9).sqrt()).abs() < 1e-15);
        assert_eq!(adamw_equilibrium(1e-3, 0.0, 0.9), 0.0);
    }
}
