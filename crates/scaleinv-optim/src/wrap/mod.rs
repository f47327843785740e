//! Optimizers around any per-tensor optimizer (Burn's or this crate's): Normalize-and-Project
//! and the radial projection. Same layers below as `optim`.

pub(crate) mod nap;
pub(crate) mod radial_projection;
