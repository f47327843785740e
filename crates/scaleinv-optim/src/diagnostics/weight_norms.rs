//! Diagnostics read outside the training step: weight norms and effective learning rates.
//!
//! These read values back to the host; call them between steps (for logging), never inside one.

use burn::module::Module;
use serde::{Deserialize, Serialize};

use crate::model::params;

/// How an optimizer's update scales with the gradient, which sets how the effective learning
/// rate of a scale-invariant weight depends on its norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepKind {
    /// The update is proportional to the gradient (SGD, with or without momentum). Since
    /// `∇f(c·w) = ∇f(w)/c`, the angular step of a scale-invariant weight is
    /// `≈ η·‖∇f(ŵ)‖ / ‖w‖²`: the effective learning rate is `η / ‖w‖²`.
    Sgd,
    /// The update does not depend on the gradient's scale (Adam and its variants, Lion): each
    /// coordinate moves by about `η`, so the angular step is `≈ η / ‖w‖` (times the update's
    /// norm, which depends on the tensor's size but not on `‖w‖`). The effective learning
    /// rate is `η / ‖w‖`.
    Adam,
}

impl StepKind {
    /// The effective learning rate of a scale-invariant weight of norm `norm` under the
    /// learning rate `lr`: `lr / norm²` ([`Sgd`](Self::Sgd)) or `lr / norm`
    /// ([`Adam`](Self::Adam)).
    pub fn effective_lr(self, lr: f64, norm: f64) -> f64 {
        match self {
            Self::Sgd => lr / (norm * norm),
            Self::Adam => lr / norm,
        }
    }
}

/// The Frobenius norm of one parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightNorm {
    /// Path in the module, e.g. `hidden.0.linear.weight`.
    pub path: String,
    /// Name of the struct that owns the parameter, e.g. `Linear`.
    pub owner: String,
    /// The parameter's rank.
    pub rank: usize,
    /// `‖p‖_F`.
    pub norm: f64,
}

impl WeightNorm {
    /// The effective learning rate of this parameter, if it is scale-invariant
    /// ([`StepKind::effective_lr`]). Under NaP the norm of a projected weight stays at its
    /// initial value `ρ`, so this is `lr / ρ²` or `lr / ρ` at every step and the learning-rate
    /// schedule is the whole schedule.
    pub fn effective_lr(&self, lr: f64, kind: StepKind) -> f64 {
        kind.effective_lr(lr, self.norm)
    }
}

/// The Frobenius norm of every float parameter of `module`, in visiting order (one read-back
/// per parameter).
///
/// ```
/// use burn::prelude::*;
/// use burn::nn::{Linear, LinearConfig};
/// use scaleinv_optim::{StepKind, weight_norms};
///
/// # #[cfg(feature = "flex")] {
/// let model: Linear = LinearConfig::new(4, 3).init(&Device::flex());
/// let norms = weight_norms(&model);
/// assert_eq!(norms[0].path, "weight");
/// let elr = norms[0].effective_lr(1e-3, StepKind::Adam);
/// assert!(elr > 0.0);
/// # }
/// ```
pub fn weight_norms<M: Module>(module: &M) -> Vec<WeightNorm> {
    params::walk(module, true)
        .into_iter()
        .map(|p| WeightNorm {
            norm: p.norm.unwrap_or(f64::NAN),
            path: p.path,
            owner: p.owner,
            rank: p.rank,
        })
        .collect()
}
