//! Errors reported when an optimizer is configured, before any step runs.

use core::fmt;

/// An invalid optimizer configuration or parameter-to-axis assignment.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigError {
    /// A hyperparameter lies outside its accepted range.
    OutOfRange {
        /// The configuration type, e.g. `"AdamPConfig"`.
        config: &'static str,
        /// The field name, e.g. `"beta_1"`.
        field: &'static str,
        /// The value that was given.
        value: f64,
        /// The accepted range, e.g. `"[0, 1)"`.
        expected: &'static str,
    },
    /// Two hyperparameters that cannot be combined.
    Conflict {
        /// The configuration type.
        config: &'static str,
        /// What is wrong, naming the fields.
        reason: &'static str,
    },
    /// A channel-axis override names a parameter path the module does not have.
    UnknownParameter {
        /// The path that was given.
        path: String,
    },
    /// A channel axis is not an axis of the parameter.
    ChannelAxisOutOfRange {
        /// The parameter's path in the module.
        path: String,
        /// The axis that was given.
        axis: usize,
        /// The parameter's rank.
        rank: usize,
    },
    /// A tensor to be held at its initial norm has a zero (or non-finite) norm.
    UnprojectableNorm {
        /// The parameter's path in the module.
        path: String,
        /// Its norm.
        norm: f64,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfRange {
                config,
                field,
                value,
                expected,
            } => {
                write!(
                    f,
                    "{config}.{field} = {value} is invalid: expected a value in {expected}"
                )
            }
            Self::Conflict { config, reason } => write!(f, "{config}: {reason}"),
            Self::UnknownParameter { path } => {
                write!(f, "no parameter at path `{path}` in the module")
            }
            Self::ChannelAxisOutOfRange { path, axis, rank } if *rank < 2 => write!(
                f,
                "`{path}` has rank {rank} and so no channel axis (channel axis {axis} given): \
                 only parameters of rank >= 2 (weights, kernels) are projected per channel"
            ),
            Self::ChannelAxisOutOfRange { path, axis, rank } => write!(
                f,
                "channel axis {axis} is out of range for `{path}`, a parameter of rank {rank}"
            ),
            Self::UnprojectableNorm { path, norm } => write!(
                f,
                "`{path}` has norm {norm}: a zero-initialised tensor cannot be projected to its \
                 initial norm; leave it free (NapConfig::free) or initialise it"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The ranges the configs check, each a predicate and its text for the error.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Range {
    /// `[0, 1)`
    UnitHalfOpen,
    /// `[0, 1]`
    UnitClosed,
    /// `(0, 1)`
    UnitOpen,
    /// `(0, ∞)`
    Positive,
    /// `[0, ∞)`
    NonNegative,
    /// Any finite value.
    Finite,
    /// An integer ≥ 1.
    AtLeastOne,
    /// An ε: `[1e-18, 1e18]`, so that ε and ε² are normal, finite `f32` numbers (a smaller
    /// ε rounds to 0 in f32, or its square does, and `0/0` turns a zero tensor into NaN).
    Epsilon,
}

/// The bounds of [`Range::Epsilon`].
const EPSILON_RANGE: (f64, f64) = (1e-18, 1e18);

impl Range {
    /// Whether `v` lies in the range. Every range holds only values finite in `f32` too (the
    /// steps run in f32), so `1e39` is refused wherever `inf` is.
    fn contains(self, v: f64) -> bool {
        v.is_finite()
            && v.abs() <= f64::from(f32::MAX)
            && match self {
                Self::UnitHalfOpen => (0.0..1.0).contains(&v),
                Self::UnitClosed => (0.0..=1.0).contains(&v),
                Self::UnitOpen => v > 0.0 && v < 1.0,
                Self::Positive => v > 0.0,
                Self::NonNegative => v >= 0.0,
                Self::Finite => true,
                Self::AtLeastOne => v >= 1.0,
                Self::Epsilon => (EPSILON_RANGE.0..=EPSILON_RANGE.1).contains(&v),
            }
    }

    fn text(self) -> &'static str {
        match self {
            Self::UnitHalfOpen => "[0, 1)",
            Self::UnitClosed => "[0, 1]",
            Self::UnitOpen => "(0, 1)",
            Self::Positive => "(0, inf), finite",
            Self::NonNegative => "[0, inf), finite",
            Self::Finite => "(-inf, inf), finite",
            Self::AtLeastOne => "[1, inf), an integer",
            Self::Epsilon => "[1e-18, 1e18] (ε and ε² normal in f32)",
        }
    }
}

/// Checks `value` against `range`, naming `config.field` in the error.
pub(crate) fn check(
    config: &'static str,
    field: &'static str,
    value: f64,
    range: Range,
) -> Result<(), ConfigError> {
    if range.contains(value) {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            config,
            field,
            value,
            expected: range.text(),
        })
    }
}
