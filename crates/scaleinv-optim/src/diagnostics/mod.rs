//! Tools that look at training from outside the step: which weights are scale-invariant
//! ([`ScaleProbe`]), what the projection did to each weight ([`ProjectionObserver`], read by
//! [`DiagnosticsTracker`]), weight norms and effective learning rates ([`weight_norms`]), and
//! top singular values ([`spectral_report`]). They read values back to the host: call them
//! between steps, never inside one. Every name here is also exported at the crate root.
//!
//! Uses `engine`, `rules` and `model`; the optimizers use the observer (to report), nothing
//! else.

pub(crate) mod observer;
pub(crate) mod probe;
pub(crate) mod spectral;
pub(crate) mod tracker;
pub(crate) mod weight_norms;

pub use observer::{Observed, ObserverTag, ProjectionObserver, ProjectionRecord};
pub use probe::{Invariance, ProbeEntry, ProbeError, ProbeReport, ScaleProbe};
pub use spectral::{
    LayerSpectrum, PowerIteration, SingularValue, SublayerGain, spectral_report, sublayer_gains,
    top_singular_value,
};
pub use tracker::{DiagnosticRow, DiagnosticsTracker, Equilibrium};
pub use weight_norms::{StepKind, WeightNorm, weight_norms};
