//! Guards a user puts around a step: the checked step that returns an error instead of
//! skipping, the checked record loading, and clipping by the global norm.

pub(crate) mod checked_load;
pub(crate) mod checked_step;
pub(crate) mod global_clip;
