//! Optimizers for Burn that understand scale invariance.
//!
//! Normalization layers make the weights that feed them scale-invariant: the loss does not
//! change when such a weight is multiplied by a constant. The gradient is then orthogonal to
//! the weight, momentum optimizers grow the weight's norm, and the effective step size
//! `η / ‖w‖²` shrinks. The optimizers here are per-tensor [`burn::optim::Optimizer`]s that
//! plug into [`burn::optim::ModuleOptimizer`] (and so into Burn's `Learner`):
//!
//! - [`AdamP`] / [`Sgdp`] (Heo et al., ICLR 2021): detect scale-invariant weights at each step
//!   and remove the radial component of their update; with timm's cautious mask on request.
//! - [`RotationalAdamW`] / [`RotationalSgdm`] (Kosson et al., ICML 2024): every neuron held at
//!   the equilibrium angular update from the first step.
//! - [`StableSpam`] (Huang et al., 2025): Adam behind spike-aware clipping, gradient-norm
//!   normalisation and periodic momentum resets, for stable low-precision training.
//! - [`Nap`] (Normalize-and-Project, Lyle et al., 2024): around any of these or Burn's own,
//!   holds every projected weight at its initial norm, so the learning-rate schedule is the
//!   effective one. [`weight_norms`] and [`StepKind`] give the effective learning rates.
//! - [`RadialProjection`]: AdamP's projection around any per-tensor optimizer ("projected
//!   X" for every X), with the view detected per step or fixed by a [`ScaleProbe`], which
//!   measures from the model itself which weights are scale-invariant.
//! - [`DiagnosticsTracker`]: weight norms, effective step sizes, the radial fraction removed
//!   and the branch taken, sampled every N steps outside the step's hot path.
//! - [`WidthScaledAdamW`] (Fan et al., 2025): AdamW with learning rate `∝ 1/d` and weight decay
//!   `∝ √d` on matrix-like tensors, so hyperparameters tuned at a small width transfer.
//! - [`GradientStabilizer`] (Huang et al., 2026): around any per-tensor optimizer, each
//!   gradient keeps its direction and takes a running estimate of its norm.
//! - [`AdamC`] (Defazio et al., 2025): AdamW whose weights that feed a normalization layer (found
//!   by the probe or the layer types) decay by `λ·η_t²/η_max`, so the gradient norm does not
//!   climb at the end of a decaying schedule.
//! - [`ScaleGroups`]: one call from a model (or a probe report) to a `ModuleOptimizer` with a
//!   projecting optimizer on the scale-invariant weights, no weight decay on the vectors
//!   (biases, normalization scales and offsets) and the user's optimizer on the rest, with a
//!   printable summary of which parameter went where and why.
//! - [`GlobalNormClip`]: clipping of a whole step's gradients by their global norm (PyTorch's
//!   `clip_grad_norm_`), in front of any optimizer.
//!
//! Every config is checked when the optimizer is built ([`ConfigError`] names the field and
//! its range); a gradient holding NaN or ±∞ leaves the parameter and its state untouched by
//! default ([`NonFinitePolicy`]), or is refused with an error by [`CheckedStep::try_step`];
//! [`CheckedLoad`] refuses a record saved from another model or optimizer. On the flex CPU
//! backend AdamP, SGDP, Stable-SPAM and width-scaled AdamW run as fused loops over the raw
//! buffers; elsewhere, as tensor operations.
//!
//! The optimizers, their configs and states, the shared options ([`ProjectionOptions`],
//! [`StepOptions`]), the policies and the errors live at the root; the tools that look at
//! training from outside the step are also grouped in [`diagnostics`].
//!
//! # Architecture
//!
//! The source is sorted by algorithm: each rule in one folder with all its forms side by side,
//! each optimizer one file that composes rules.
//!
//! | folder | holds |
//! |---|---|
//! | `rules` | one folder per rule (Adam's moments, SGD's buffer, decay and the parameter's write, the scale-invariance projection, Stable-SPAM's statistics, NaP's norm, GradientStabilizer's factor): the formula in `mod.rs`, beside it its tensor, flex and CubeCL forms |
//! | `engine` | what runs rules and knows nothing of any algorithm: the one dispatch between paths, the step frame and non-finite policy, the flex chunks and buffers, the CubeCL launch geometry and reductions |
//! | `model` | the parameter walk, channel axes, the norms' affine parameters |
//! | `diagnostics` | probe, observer, tracker, spectral norms, weight norms |
//! | `guard` | checked steps, checked record loading, global-norm clipping |
//! | `grouping` | parameter groups by scale invariance and their module optimizer |
//! | `optimizers` | one file per optimizer: AdamC, AdamP, SGDP, RotationalAdamW, RotationalSgdm, Stable-SPAM, width-scaled AdamW (and what the two rotational ones share) |
//! | `wrappers` | optimizers around any optimizer: GradientStabilizer, NaP, the radial projection |
//!
//! A new optimizer that composes existing rules is one file in `optimizers/` (its config with
//! `step: StepOptions`, the `step_setters!` and `constructors!` lines, an `OptimizerConfig`
//! impl, its step composed of rules), one line each in `optimizers/mod.rs` and here, one in the
//! tests' catalog and one golden case; a new rule is one folder in `rules/`.
//! `docs/architecture.md` says more.
//!
//! ```
//! use burn::prelude::*;
//! use burn::nn::{Linear, LinearConfig};
//! use burn::optim::GradientsParams;
//! use scaleinv_optim::AdamPConfig;
//!
//! # #[cfg(feature = "flex")] {
//! let device = Device::flex().autodiff();
//! let model: Linear = LinearConfig::new(4, 3).init(&device);
//! // One line differs from Adam: `init_for` gives each weight its output-channel axis.
//! let mut optim = AdamPConfig::new().with_weight_decay(1e-2).init_for(&model);
//!
//! let x = Tensor::<2>::ones([8, 4], &device);
//! let loss = model.forward(x).square().mean();
//! let grads = GradientsParams::from_grads(loss.backward(), &model);
//! let model = optim.step(1e-3, model, grads);
//! # }
//! ```

#![warn(missing_docs)]

extern crate alloc;

pub mod diagnostics;
mod engine;
mod error;
mod grouping;
mod guard;
mod model;
mod optimizers;
mod rules;
mod wrappers;

pub use crate::error::ConfigError;
pub use crate::model::channel_axes::{ChannelAxes, ChannelAxisRules, ParamAxis};
pub use crate::model::norm_affine::NormAffine;
pub use crate::rules::adam::tensor::MomentState;
pub use crate::rules::projection::tensor::Projected;
pub use crate::rules::rotation::tensor::RotationState;
pub use diagnostics::{
    DiagnosticRow, DiagnosticsTracker, Equilibrium, Invariance, LayerSpectrum, Observed,
    ObserverTag, PowerIteration, ProbeEntry, ProbeError, ProbeReport, ProjectionObserver,
    ProjectionRecord, ScaleProbe, SingularValue, StepKind, SublayerGain, WeightNorm,
    spectral_report, sublayer_gains, top_singular_value, weight_norms,
};
pub use engine::dispatch::StepOptions;
pub use engine::non_finite::NonFinitePolicy;
pub use grouping::{ChannelAxisOptimizer, GroupReason, GroupedParam, ScaleGroup, ScaleGroups};
pub use guard::checked_load::{CheckedLoad, RecordMismatch};
pub use guard::checked_step::{CheckedStep, Rejected, StepError, non_finite_gradients};
pub use guard::global_clip::{GlobalNorm, GlobalNormClip, clip_grad_norm, global_norm};
pub use optimizers::adamc::{AdamC, AdamCConfig, AdamCState};
pub use optimizers::adamp::{AdamP, AdamPConfig, AdamPState};
pub use optimizers::rotational::RotationOptions;
pub use optimizers::rotational_adamw::{
    RotationalAdamW, RotationalAdamWConfig, RotationalAdamWState,
};
pub use optimizers::rotational_sgdm::{RotationalSgdm, RotationalSgdmConfig, RotationalSgdmState};
pub use optimizers::sgdp::{Sgdp, SgdpConfig, SgdpState};
pub use optimizers::stable_spam::{ResetMode, StableSpam, StableSpamConfig, StableSpamState};
pub use optimizers::width_scaled_adamw::{
    ParamRole, WidthRole, WidthScaledAdamW, WidthScaledAdamWConfig,
};
pub use rules::projection::options::ProjectionOptions;
pub use rules::projection::{ProjectionBranch, ProjectionView, ScaleInvariance};
pub use wrappers::gradient_stabilizer::{
    GradientStabilizer, GradientStabilizerConfig, GradientStabilizerState,
};
pub use wrappers::nap::{Nap, NapConfig, NapScope, NapState};
pub use wrappers::radial_projection::{RadialProjection, RadialProjectionConfig};

/// The former home of the projection's types, kept so that `scaleinv_optim::radial::…`
/// imports still compile; import them from the crate root.
#[doc(hidden)]
#[deprecated(note = "import these names from the crate root")]
pub mod radial {
    pub use crate::rules::projection::tensor::Projected;
    pub use crate::rules::projection::{ProjectionBranch, ProjectionView, ScaleInvariance};
}

/// Lowers the widest vectors the fused flex loops may use to `bits` (128: baseline x86-64;
/// 256: AVX2; 512: AVX-512, the default where the CPU has it), for tests and benchmarks that
/// compare instruction sets. The results' bits are the same at every width.
#[doc(hidden)]
#[cfg(feature = "flex")]
pub fn limit_flex_vector_width(bits: u32) {
    engine::flex::parallel::limit_vector_width(bits);
}

// Names that `#[derive(RecordState)]` expands to; not part of the API.
#[doc(hidden)]
pub use burn::optim::{RecordState, StateSink, StateSource, join_index, join_path};
