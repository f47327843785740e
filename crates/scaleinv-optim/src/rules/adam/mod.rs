//! Adam's moments and update direction.
//!
//! ```text
//! m ← β1·m + (1 − β1)·g ;  v ← β2·v + (1 − β2)·g²
//! denom = √v / √(1 − β2^t) + ε          (ε outside the root, after bias correction: torch's placement)
//! u = m / denom                         (Nesterov, AdamP's form: u = (β1·m + (1 − β1)·g) / denom)
//! step = η / (1 − β1^t) · u
//! ```

#[cfg(feature = "wgpu")]
pub(crate) mod cube;
#[cfg(feature = "flex")]
pub(crate) mod flex;
pub(crate) mod tensor;

use crate::rules::arith::{Arith, ema};

/// Adam's hyperparameters β1, β2 and ε.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Adam {
    pub beta_1: f64,
    pub beta_2: f64,
    pub epsilon: f64,
}

impl Adam {
    /// Bias corrections `(1 − β1^t, 1 − β2^t)` after `t` updates.
    pub fn bias_corrections(&self, time: usize) -> (f64, f64) {
        let t = time as i32;
        (1.0 - self.beta_1.powi(t), 1.0 - self.beta_2.powi(t))
    }

    /// The first moment after `g`.
    #[inline(always)]
    pub fn first<T: Arith>(&self, m: T, g: T) -> T {
        ema(m, g, self.beta_1)
    }

    /// The second moment after `g`.
    #[inline(always)]
    pub fn second<T: Arith>(&self, v: T, g: T) -> T {
        ema(v, g.square(), self.beta_2)
    }

    /// `√v / √(1 − β2^t) + ε`, with `bc2 = 1 − β2^t`.
    #[inline(always)]
    pub fn denominator<T: Arith>(&self, v: T, bc2: f64) -> T {
        v.sqrt().div_s(bc2.sqrt()).add_s(self.epsilon)
    }

    /// The update direction `m / denom`, or AdamP's Nesterov form
    /// `(β1·m + (1 − β1)·g) / denom`.
    #[inline(always)]
    pub fn direction<T: Arith>(&self, m: T, g: T, denom: T, nesterov: bool) -> T {
        if nesterov {
            self.first(m, g) / denom
        } else {
            m / denom
        }
    }
}

impl Adam {
    /// This Adam with ε moved before the bias correction: `√v / √(1 − β2^t) + ε'` with
    /// `ε' = ε / √(1 − β2^t)` is exactly `(√v + ε) / √(1 − β2^t)`, the denominator of
    /// `pytorch_optimizer` (AdamC) at step `t`, so that one formula,
    /// [`denominator`](Self::denominator), serves both placements.
    pub fn with_epsilon_before_correction(&self, time: usize) -> Self {
        let (_, bc2) = self.bias_corrections(time);
        Self {
            epsilon: self.epsilon / bc2.sqrt(),
            ..*self
        }
    }
}
