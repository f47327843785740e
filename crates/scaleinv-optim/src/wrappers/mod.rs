//! Optimizers around any per-tensor optimizer (Burn's or this crate's): Normalize-and-Project,
//! the radial projection and GradientStabilizer. A wrapper joins a base's fused passes through
//! [`FusedBase`](crate::engine::join::FusedBase), found by `optimizers::fused_base`.

pub(crate) mod gradient_stabilizer;
pub(crate) mod nap;
pub(crate) mod radial_projection;
