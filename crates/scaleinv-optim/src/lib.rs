//! Optimizers for Burn that understand scale invariance.
//!
//! Normalization layers make the weights that feed them scale-invariant: the loss does not
//! change when such a weight is multiplied by a constant. The gradient is then orthogonal to
//! the weight, momentum optimizers grow the weight's norm, and the effective step size
//! `η / ‖w‖²` shrinks. The optimizers here are per-tensor [`burn::optim::Optimizer`]s that
//! plug into [`burn::optim::ModuleOptimizer`] (and so into Burn's `Learner`):
//!
//! - [`AdamP`] / [`Sgdp`] (Heo et al., ICLR 2021): detect scale-invariant weights at each step
//!   and remove the radial component of their update.
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
//!
//! Every config is checked when the optimizer is built ([`ConfigError`] names the field and
//! its range); a gradient holding NaN or ±∞ leaves the parameter and its state untouched by
//! default ([`NonFinitePolicy`]), or is refused with an error by [`CheckedStep::try_step`];
//! [`CheckedLoad`] refuses a record saved from another model or optimizer. On the flex CPU
//! backend AdamP, SGDP, Stable-SPAM and width-scaled AdamW run as fused loops over the raw
//! buffers; elsewhere, as tensor operations.
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

mod adamp;
mod channel_axes;
mod checked_load;
mod checked_step;
mod decay;
mod diagnostics;
mod error;
#[cfg(feature = "flex")]
mod fused;
mod moments;
mod nap;
mod non_finite;
mod norm_affine;
mod observer;
mod params;
mod per_axis;
mod probe;
pub mod radial;
mod radial_projection;
mod reduce;
mod sgdp;
mod spectral;
mod stable_spam;
mod step_guard;
mod tracker;
mod width_scaled_adamw;

pub use adamp::{AdamP, AdamPConfig, AdamPState};
pub use channel_axes::{ChannelAxes, ChannelAxisRules, ParamAxis};
pub use checked_load::{CheckedLoad, RecordMismatch};
pub use checked_step::{CheckedStep, Rejected, StepError, non_finite_gradients};
pub use diagnostics::{StepKind, WeightNorm, weight_norms};
pub use error::ConfigError;
pub use moments::MomentState;
pub use nap::{Nap, NapConfig, NapScope, NapState};
pub use non_finite::NonFinitePolicy;
pub use norm_affine::NormAffine;
pub use observer::{Observed, ObserverTag, ProjectionObserver, ProjectionRecord};
pub use probe::{Invariance, ProbeEntry, ProbeError, ProbeReport, ScaleProbe};
pub use radial::{Projected, ProjectionBranch, ProjectionView, ScaleInvariance};
pub use radial_projection::{RadialProjection, RadialProjectionConfig};
pub use sgdp::{Sgdp, SgdpConfig, SgdpState};
pub use spectral::{
    LayerSpectrum, PowerIteration, SingularValue, SublayerGain, spectral_report, sublayer_gains,
    top_singular_value,
};
pub use stable_spam::{ResetMode, StableSpam, StableSpamConfig, StableSpamState};
pub use tracker::{DiagnosticRow, DiagnosticsTracker};
pub use width_scaled_adamw::{ParamRole, WidthRole, WidthScaledAdamW, WidthScaledAdamWConfig};

// Names that `#[derive(RecordState)]` expands to; not part of the API.
#[doc(hidden)]
pub use burn::optim::{RecordState, StateSink, StateSource, join_index, join_path};
