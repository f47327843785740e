//! The optimizers, one file each, each reading like its paper's algorithm box: the tensor-op
//! step (every backend) and, beside it, the fused flex step that hands the same formulas to
//! `kernels`. Uses every layer below; nothing here uses another optimizer.

pub(crate) mod adamc;
pub(crate) mod adamp;
pub(crate) mod sgdp;
pub(crate) mod stable_spam;
pub(crate) mod width_scaled_adamw;
