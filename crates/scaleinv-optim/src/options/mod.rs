//! What the configs share: the projection options of AdamP, SGDP and the radial projection,
//! the step options of every optimizer that runs fused (fused path, non-finite policy,
//! gradient clipping), and the constructor family every config gets (`validate`,
//! `try_build`/`build`, `try_init`/`init`, `try_init_for`/`init_for`), each written once.

pub(crate) mod constructors;
pub(crate) mod projection;
pub(crate) mod step;
