//! The rules every optimizer is composed of, one folder each. In each folder `mod.rs` holds
//! the formula, written once over [`Arith`](arith::Arith) numbers (an `f32` element, an `f64`
//! statistic or a whole tensor), and beside it the rule's forms: `tensor.rs` (tensor
//! operations, every backend), `flex.rs` (the fused loops over flex buffers, on
//! [`engine::flex`](crate::engine)) and `cube.rs` (CubeCL kernels, on `engine::cube`). A form
//! that can call the formula does; a CubeCL form, which cannot call generic Rust, sits beside
//! it with a parity test that runs it on wgpu against the formula.
//!
//! | rule | formula | forms |
//! |---|---|---|
//! | `arith` | the number trait, EMA, guarded ratio | `cube` |
//! | `adam` | Adam's moments, denominator and direction | `tensor` (`MomentState`), `flex`, `cube` |
//! | `sgd` | SGD's buffer and direction | `flex`, `cube` |
//! | `decay` | decoupled and corrected decay, the parameter write `p·f − u·s` | `tensor`, `cube` |
//! | `projection` | the scale-invariance test, decision and radial coefficient (and timm's cautious mask) | `tensor`, `flex`, `cube`, `options` |
//! | `rotation` | the rotational update and the equilibrium angles | `tensor` |
//! | `spike` | Stable-SPAM's AdaClip, AdaGN and reset | `flex`, `cube` |
//! | `norm` | NaP's projection back to a norm | `cube` |
//! | `stabilizer` | GradientStabilizer's running norm | – |

pub(crate) mod adam;
pub(crate) mod arith;
pub(crate) mod decay;
pub(crate) mod norm;
pub(crate) mod projection;
pub(crate) mod rotation;
pub(crate) mod sgd;
pub(crate) mod spike;
pub(crate) mod stabilizer;
