//! The optimizers, one file each, each reading like its paper's algorithm box: the config and
//! its validation, the state, and the step composed of `rules` — on tensors (every backend),
//! and beside it the same rules' flex and CubeCL forms. Nothing here uses another optimizer;
//! [`constructors`] gives every config its `build`/`init`/`init_for` family.

pub(crate) mod adamc;
pub(crate) mod adamp;
pub(crate) mod constructors;
pub(crate) mod rotational;
pub(crate) mod rotational_adamw;
pub(crate) mod rotational_sgdm;
pub(crate) mod sgdp;
pub(crate) mod stable_spam;
pub(crate) mod width_scaled_adamw;

/// The optimizers with a fused path whose passes or kernels a wrapper can join (NaP): the one
/// type lookup of `engine::join`. A new fused optimizer adds its name here.
#[cfg(any(feature = "flex", feature = "wgpu"))]
pub(crate) mod fused_base {
    crate::engine::join::fused_bases!(
        super::adamp::AdamP,
        super::sgdp::Sgdp,
        super::width_scaled_adamw::WidthScaledAdamW,
        super::adamc::AdamC,
        super::stable_spam::StableSpam,
    );
}
