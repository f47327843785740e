//! What keeps a step safe: the frame around every step (learning-rate check, empty tensors,
//! f32 for half precision), the non-finite policy and its restore, the checked step that
//! returns an error instead, the checked record loading, and clipping by the global norm.
//! Uses `core` and `kernels`.

pub(crate) mod checked_load;
pub(crate) mod checked_step;
pub(crate) mod frame;
pub(crate) mod global_clip;
pub(crate) mod non_finite;
