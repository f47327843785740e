//! What a step does with a gradient that holds NaN or ±∞.

use burn::tensor::{Bool, Tensor};
use serde::{Deserialize, Serialize};

/// Policy for a parameter whose gradient is not finite at some step.
///
/// The test runs on the device, from a per-tensor statistic the optimizer computes anyway
/// (no host read): a tensor counts as non-finite when that statistic (for Stable-SPAM, the
/// gradient norm) is NaN or infinite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum NonFinitePolicy {
    /// Leave the parameter and every tensor of its state as they were; only the host step
    /// counters advance. The default.
    #[default]
    Skip,
    /// Do what the reference does: the NaN or ∞ flows into the parameter and the state.
    Propagate,
}

/// Keeps `old` where `bad` (a one-element mask, broadcast over `new`) is set, else `new`.
pub(crate) fn keep_old_if<const D: usize>(
    bad: &Tensor<1, Bool>,
    new: Tensor<D>,
    old: Tensor<D>,
) -> Tensor<D> {
    let mask = bad.clone().unsqueeze::<D>().expand(new.shape());
    new.mask_where(mask, old)
}
