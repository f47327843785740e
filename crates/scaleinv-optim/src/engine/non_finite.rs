//! What a step does with a gradient that holds NaN or ±∞.
//!
//! Every optimizer of the crate tests each gradient on the device (no host read) and, under
//! the default [`NonFinitePolicy::Skip`], keeps the parameter and its state as they were
//! before the step. The test and the restore are written once here; an optimizer wraps its
//! step in [`guarded_step`] and gives its state a [`Revert`].

use burn::tensor::{Bool, Tensor};
use serde::{Deserialize, Serialize};

use crate::rules::adam::tensor::MomentState;

/// Policy for a parameter whose gradient is not finite at some step.
///
/// The test runs on the device: a gradient counts as non-finite when its sum is NaN or
/// infinite, which any NaN or ±∞ element makes it (as does a sum beyond the float range,
/// `|Σg| > 3.4e38` in f32, a gradient no step should take). Stable-SPAM tests its gradient
/// norm, which it computes anyway.
///
/// A third behaviour, an error returned to the caller, needs the flag on the host; it is
/// [`try_step`](crate::CheckedStep::try_step), one read per step for the whole model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum NonFinitePolicy {
    /// Leave the parameter and every tensor of its state as they were; only the host step
    /// counters advance (so the bias correction of the next steps counts the skipped one).
    /// The default.
    ///
    /// A wrapper around another optimizer ([`RadialProjection`](crate::RadialProjection),
    /// [`Nap`](crate::Nap)) cannot restore a state it does not know: it keeps the parameter
    /// and gives the inner optimizer a zero gradient for the step, so a foreign state (Burn's
    /// Adam) sees no NaN; its moments decay by one step.
    #[default]
    Skip,
    /// Do what the reference does: the NaN or ∞ flows into the parameter and the state. One
    /// reduction per tensor cheaper than `Skip`.
    Propagate,
}

impl NonFinitePolicy {
    /// A checkpoint of `param` with the device flag of `grad`, under `Skip`; `None` under
    /// `Propagate`.
    pub(crate) fn checkpoint<const D: usize>(
        self,
        param: &Tensor<D>,
        grad: &Tensor<D>,
    ) -> Option<Checkpoint<D>> {
        match self {
            Self::Propagate => None,
            Self::Skip => Some(Checkpoint {
                bad: grad.clone().sum().is_finite().bool_not(),
                param: param.clone(),
            }),
        }
    }
}

/// The parameter before a step and whether the step's gradient is non-finite (on the device).
pub(crate) struct Checkpoint<const D: usize> {
    bad: Tensor<1, Bool>,
    param: Tensor<D>,
}

impl<const D: usize> Checkpoint<D> {
    /// Builds a checkpoint from a flag the optimizer already has.
    pub fn with_flag(bad: Tensor<1, Bool>, param: &Tensor<D>) -> Self {
        Self {
            bad,
            param: param.clone(),
        }
    }

    /// The whole-tensor mask of the flag, shaped like `like`.
    fn mask<const E: usize>(&self, like: &Tensor<E>) -> Tensor<E, Bool> {
        self.bad.clone().unsqueeze::<E>().expand(like.shape())
    }

    /// `old` where the gradient was non-finite, else `new`.
    pub fn keep<const E: usize>(&self, new: Tensor<E>, old: Tensor<E>) -> Tensor<E> {
        let mask = self.mask(&new);
        new.mask_where(mask, old)
    }

    /// `old` where the gradient was non-finite, else `new`; zeros when there was no `old`
    /// (the state before the first step).
    pub fn keep_or_zero<const E: usize>(
        &self,
        new: Tensor<E>,
        old: Option<Tensor<E>>,
    ) -> Tensor<E> {
        match old {
            Some(old) => self.keep(new, old),
            None => {
                let mask = self.mask(&new);
                new.mask_fill(mask, 0.0)
            }
        }
    }

    /// The gradient, or zeros in its place when it is non-finite (for a wrapper's inner step).
    pub fn zero_if_bad(&self, grad: Tensor<D>) -> Tensor<D> {
        self.keep_or_zero(grad, None)
    }

    /// The parameter after the step, or the one before it when the gradient was non-finite.
    pub fn param(&self, new: Tensor<D>) -> Tensor<D> {
        self.keep(new, self.param.clone())
    }
}

/// A per-parameter state whose tensors can be put back to their values before a step.
pub(crate) trait Revert<const D: usize>: Sized {
    /// `self` where the checkpoint's gradient was finite, else `old` (zeros for `None`);
    /// host counters stay those of `self`.
    fn revert(self, checkpoint: &Checkpoint<D>, old: Option<Self>) -> Self;
}

/// Runs `step` under `policy`: under `Skip`, a parameter whose gradient is non-finite comes
/// back unchanged, with its state as before the step.
pub(crate) fn guarded_step<const D: usize, S: Revert<D> + Clone>(
    policy: NonFinitePolicy,
    param: Tensor<D>,
    grad: Tensor<D>,
    state: Option<S>,
    step: impl FnOnce(Tensor<D>, Tensor<D>, Option<S>) -> (Tensor<D>, Option<S>),
) -> (Tensor<D>, Option<S>) {
    let Some(checkpoint) = policy.checkpoint(&param, &grad) else {
        return step(param, grad, state);
    };
    let old = state.clone();
    let (param, state) = step(param, grad, state);
    let state = state.map(|new| new.revert(&checkpoint, old));
    (checkpoint.param(param), state)
}

impl<const D: usize> Revert<D> for MomentState<D> {
    fn revert(self, checkpoint: &Checkpoint<D>, old: Option<Self>) -> Self {
        let (m, v) = old.map(|s| (s.moment_1, s.moment_2)).unzip();
        Self {
            time: self.time,
            moment_1: checkpoint.keep_or_zero(self.moment_1, m),
            moment_2: checkpoint.keep_or_zero(self.moment_2, v),
        }
    }
}
