//! Optimizers around any per-tensor optimizer (Burn's or this crate's): Normalize-and-Project,
//! the radial projection and GradientStabilizer. Same layers below as `optim`.

#[cfg(feature = "flex")]
mod fused_base;
pub(crate) mod gradient_stabilizer;
pub(crate) mod nap;
pub(crate) mod radial_projection;
