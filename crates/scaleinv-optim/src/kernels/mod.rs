//! Fused steps: for the flex CPU backend, each optimizer's step as a few tight loops over the
//! raw buffers instead of one pass per tensor operation; for the CubeCL backends (wgpu), the
//! same steps as CubeCL kernels ([`cube`]).
//!
//! ```text
//! pass 1  read p, g: per channel ⟨p, g⟩, ‖p‖², ‖g‖² (nothing written)
//!         → the non-finite test and the cosine test, computed here on the CPU
//! test failed:   one pass   read p, g, state; write state and p ← p·(1 − ηλ) − η·u
//! channel-wise, one contiguous run per channel (a convolution's kernel):
//!                one pass   per run: state, u in cache, ⟨p, u⟩ → c, p ← p·(1 − ηλr) − η·(u − c·p)
//! otherwise:     pass 2     read g, state, p; write state; ⟨p, u⟩ per channel → c
//!                pass 3     read p, state; write p ← p·(1 − ηλr) − η·(u − c·p)
//! ```
//!
//! A tensor the projection does not apply to (rank 1) skips pass 1, after a read of `g` for
//! the non-finite test. Nothing is written before the non-finite test, so a skipped step
//! leaves the state as it was without a copy.
//!
//! This layer is a leaf: the loops take slices and plain hyperparameters (the formulas of
//! `math`, which they share with the tensor-op path), never an optimizer's config or state;
//! each optimizer turns its state into buffers ([`Buffer`], [`Target`]) and back. Every pass
//! runs on fixed chunks over rayon's current pool ([`parallel`]); the squares are summed in
//! eight f32 lanes per segment of at most 1,024 elements and the dot products in f64
//! ([`sums`]), the chunks combined in order: the same bits on any number of threads, and
//! statistics and projection coefficients that agree with the tensor ops to rounding
//! (`tests/fused.rs` compares the two paths).

#[cfg(feature = "flex")]
mod adam;
#[cfg(feature = "flex")]
mod buffer;
#[cfg(feature = "wgpu")]
pub(crate) mod cube;
#[cfg(feature = "flex")]
mod elem;
#[cfg(feature = "flex")]
mod frame;
#[cfg(feature = "flex")]
mod parallel;
#[cfg(feature = "flex")]
mod sgd;
#[cfg(feature = "flex")]
mod spike;
#[cfg(feature = "flex")]
mod sums;

#[cfg(feature = "flex")]
pub(crate) use adam::AdamPass;
#[cfg(feature = "flex")]
pub(crate) use buffer::{
    Buffer, Fused, Target, accepts, all_finite, fit, norm, readable, scalar_on_flex, scaled,
    single_value,
};
#[cfg(feature = "flex")]
pub(crate) use frame::Outcome;
#[cfg(feature = "flex")]
pub(crate) use sgd::SgdPass;
#[cfg(feature = "flex")]
pub(crate) use spike::{SpikeScalars, SpikeState};
