//! The scale-invariance test and the radial projection's coefficients (Heo et al., ICLR 2021,
//! §3), as formulas on [`Arith`] numbers: the tensor-op path runs them on per-channel
//! statistics tensors, the fused loops on the same statistics summed on the CPU.
//!
//! ```text
//! cos_i = |⟨G_i, P_i⟩| / (max(‖G_i‖, ε) · max(‖P_i‖, ε))        per row i of the view
//! passes: max_i cos_i < δ / √K                                   K = row width
//! coefficient_i = ⟨P_i, U_i⟩ / (‖P_i‖ + ε)²                       U_i ← U_i − coefficient_i · P_i
//! ```
//!
//! The fused loops sum these statistics in f64, where no weight or gradient an f32 tensor can
//! hold overflows when squared, and pass a scale of 1. The tensor path works in f32, so it
//! computes them on the tensors divided by their largest `|element|` and passes that scale:
//! one formula (`cosine`, `radial_coefficient`), finite up to f32's range limits.

use serde::{Deserialize, Serialize};

use super::Arith;

/// Which view of a parameter the scale-invariance test selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProjectionBranch {
    /// No view passed the test: the update is left unchanged.
    None,
    /// The channel-wise view passed: each output channel's radial part was removed.
    Channel,
    /// The channel-wise view failed and the layer-wise view passed.
    Layer,
}

impl ProjectionBranch {
    /// The branch's code in the tensor returned by [`ScaleInvariance::branch`].
    pub const fn code(self) -> i64 {
        match self {
            Self::None => 0,
            Self::Channel => 1,
            Self::Layer => 2,
        }
    }

    /// The branch for a code of [`ScaleInvariance::branch`], if it is one.
    pub const fn from_code(code: i64) -> Option<Self> {
        match code {
            0 => Some(Self::None),
            1 => Some(Self::Channel),
            2 => Some(Self::Layer),
            _ => None,
        }
    }

    /// The reference's name of the branch: `"none"`, `"channel"` or `"layer"`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Channel => "channel",
            Self::Layer => "layer",
        }
    }
}

/// Which view of a parameter the projection uses.
///
/// The reference decides at every step from the cosine test ([`Detect`](Self::Detect)). When
/// the invariance of a weight is known in advance, e.g. from
/// [`ScaleProbe`](crate::ScaleProbe), the view can be fixed instead: the projection then
/// always fires in that view and no cosine is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum ProjectionView {
    /// The reference's per-step cosine test, channel view first, then layer view.
    #[default]
    Detect,
    /// Always project each output channel's radial part.
    Channel,
    /// Always project the whole tensor's radial part.
    Layer,
    /// Never project (the base update, with the full weight decay).
    Off,
}

/// Hyperparameters of the scale-invariance test and projection, shared by SGDP, AdamP and
/// [`RadialProjection`](crate::RadialProjection).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScaleInvariance {
    /// Threshold δ of the cosine test (reference default 0.1).
    pub delta: f64,
    /// Factor applied to the decoupled weight decay of projected tensors (default 0.1).
    pub wd_ratio: f64,
    /// ε: clamps each cosine norm (`max(‖·‖, ε)`) and is added to the projection norm.
    pub epsilon: f64,
    /// Axis of the tensor that indexes its output channels (0 for convolutions, 1 for Burn's
    /// `Linear`, whose weight is stored `[d_input, d_output]`).
    pub channel_axis: usize,
    /// Whether the view is chosen by the cosine test at each step or fixed.
    pub view: ProjectionView,
    /// Whether an all-zero weight or gradient passes the test (its cosine is 0): `true` in the
    /// reference, so such a tensor's decay is cut by `wd_ratio`; `false` fails the test for it.
    pub zero_is_invariant: bool,
}

impl ScaleInvariance {
    /// The reference's test and projection (`view` = [`ProjectionView::Detect`]).
    pub fn detect(delta: f64, wd_ratio: f64, epsilon: f64, channel_axis: usize) -> Self {
        Self {
            delta,
            wd_ratio,
            epsilon,
            channel_axis,
            view: ProjectionView::Detect,
            zero_is_invariant: true,
        }
    }

    /// The same test with `zero_is_invariant` set (see the field).
    pub fn with_zero_is_invariant(self, zero_is_invariant: bool) -> Self {
        Self {
            zero_is_invariant,
            ..self
        }
    }

    /// The same projection with the view fixed.
    pub fn with_view(self, view: ProjectionView) -> Self {
        Self { view, ..self }
    }
}

impl ScaleInvariance {
    /// The reference's cosine `|⟨P, G⟩| / (max(‖G‖, ε) · max(‖P‖, ε))`, each norm clamped
    /// separately, from statistics of the rows scaled by `s_P`, `s_G`: `P̃ = P / s_P`,
    /// `G̃ = G / s_G`, `‖P‖ = s_P·‖P̃‖`, computed as
    /// `|⟨P̃, G̃⟩| · (s_G / max(‖G‖, ε)) · (s_P / max(‖P‖, ε))`. The tensor path (f32) scales by
    /// the largest `|element|`, so each factor is at most 1 and nothing overflows; the fused
    /// loops sum in f64 and pass `s = 1`.
    #[inline(always)]
    pub(crate) fn cosine<T: Arith>(
        &self,
        dot: T,
        (weight_norm, weight_scale): (T, T),
        (grad_norm, grad_scale): (T, T),
    ) -> T {
        let eps = self.epsilon;
        dot.abs() * (grad_scale / grad_norm.max_s(eps)) * (weight_scale / weight_norm.max_s(eps))
    }

    /// The test's threshold `δ / √K` for rows of `width` elements (a channel's row, or the
    /// whole tensor).
    pub(crate) fn threshold(&self, width: usize) -> f64 {
        self.delta / (width as f64).sqrt()
    }

    /// Whether the projection applies to a tensor of rank `rank` at all: rank ≥ 2 and a view
    /// other than `Off` (biases and norm gains are never projected). Every path decides with
    /// this.
    pub(crate) fn applies_to(&self, rank: usize) -> bool {
        rank >= 2 && self.view != ProjectionView::Off
    }

    /// The radial coefficient `c = ⟨P, U⟩ / (‖P‖ + ε)²` of a row (or of the whole tensor), on
    /// the weight scaled by `s_P` (`P̃ = P / s_P`, `U − c·P = U − c̃·P̃`):
    /// `c̃ = ⟨P̃, U⟩ · (s_P / (‖P‖ + ε))²`; with the tensor path's scale the factor is at most 1,
    /// so `‖P‖²` is never formed. The fused loops pass `s = 1`.
    #[inline(always)]
    pub(crate) fn radial_coefficient<T: Arith>(
        &self,
        scaled_dot_update: T,
        weight_norm: T,
        weight_scale: T,
    ) -> T {
        scaled_dot_update * (weight_scale / weight_norm.add_s(self.epsilon)).square()
    }
}
