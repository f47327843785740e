//! # scaleinv
//!
//! Optimizers for [Burn](https://burn.dev) that understand scale invariance.
//!
//! Normalization layers (BatchNorm, LayerNorm, RMSNorm) make the weights that feed them
//! scale-invariant: the loss does not change when such a weight is multiplied by a constant.
//! The gradient is then orthogonal to the weight, momentum grows the weight's norm, and the
//! effective step size `η / ‖w‖²` shrinks. The optimizers of this crate handle that, each
//! matching its authors' reference implementation.
//!
//! This facade re-exports [`scaleinv_optim`] (the optimizers) at its root and, with the
//! `models` feature (on by default), `scaleinv_models` (example models and bundled data) as
//! `models`. A library that needs only the optimizers depends on `scaleinv` with
//! `default-features = false, features = ["flex"]` (or on `scaleinv-optim`), which builds
//! neither burn-train nor the bundled data.
//!
//! ```
//! # #[cfg(feature = "flex")] {
//! use burn::nn::{Linear, LinearConfig};
//! use burn::prelude::*;
//! use scaleinv::{AdamPConfig, SgdpConfig};
//!
//! let device = Device::flex().autodiff();
//! let model: Linear = LinearConfig::new(8, 4).init(&device);
//! // In place of `AdamConfig::new().init()`:
//! let adamp = AdamPConfig::new().with_weight_decay(1e-2).init_for(&model);
//! // In place of `SgdConfig::new().init()`:
//! let sgdp = SgdpConfig::new().with_momentum(0.9).with_nesterov(true).init_for(&model);
//! # let _ = (adamp, sgdp);
//! # }
//! ```

#![warn(missing_docs)]

pub use scaleinv_optim::*;

/// Example models and bundled data (the `models` feature, on by default).
#[cfg(feature = "models")]
pub use scaleinv_models as models;

/// The README's and the guide's Rust blocks, compiled and run as doctests.
#[cfg(doctest)]
mod guide {
    macro_rules! pages {
        ($($name:ident => $path:literal),* $(,)?) => {$(
            #[doc = include_str!($path)]
            struct $name;
        )*};
    }
    pages!(
        Readme => "../README.md",
        GettingStarted => "../docs/getting-started.md",
        Learner => "../docs/learner.md",
        AdampSgdp => "../docs/adamp-sgdp.md",
        Rotational => "../docs/rotational.md",
        StableSpam => "../docs/stable-spam.md",
        Nap => "../docs/nap.md",
        WidthScaledAdamw => "../docs/width-scaled-adamw.md",
        GradientStabilizerAdamc => "../docs/gradient-stabilizer-adamc.md",
        ProbeAndDiagnostics => "../docs/probe-and-diagnostics.md",
        Groups => "../docs/groups.md",
        Guarantees => "../docs/guarantees.md",
        Performance => "../docs/performance.md",
        Architecture => "../docs/architecture.md",
        Faq => "../docs/faq.md",
        Data => "../docs/data.md",
    );
}
