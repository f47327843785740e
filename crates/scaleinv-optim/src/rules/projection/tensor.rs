//! Scale-invariance detection and radial projection (Heo et al., ICLR 2021, §3).
//!
//! A weight `w` that feeds a normalization layer is scale-invariant: `L(c·w) = L(w)` for
//! every `c > 0`. Its gradient is then orthogonal to `w`, and any radial component of the
//! update only grows `‖w‖`, which shrinks the effective step `η / ‖w‖²`. The projection
//! detects such weights from the cosine between the weight and its raw gradient and removes
//! the radial part of the update:
//!
//! ```text
//! for view V in (channel, layer):
//!     cos_i = |⟨G_i, P_i⟩| / (max(‖G_i‖, ε) · max(‖P_i‖, ε))        per row i of the view
//!     if max_i cos_i < δ / √K:                                       K = row width
//!         P̂_i = P_i / (‖P_i‖ + ε)
//!         U_i ← U_i − P̂_i ⟨P̂_i, U_i⟩                                 radial part removed
//!         return (U, wd_ratio)
//! return (U, 1)
//! ```
//!
//! The *channel view* keeps the parameter's channel axis and flattens the rest (one row per
//! output channel); the *layer view* is the whole tensor as one row. Both tests are computed
//! on the device and the branch is selected with tensor masks: no value is read back to the
//! host. Rank-0 and rank-1 tensors (biases, norm gains) are never projected.

use burn::tensor::{Bool, Device, Int, Tensor};

use super::{ProjectionBranch, ProjectionView, ScaleInvariance, TestInputs};
use crate::engine::rows::sum_except;

/// The projected update and the decay ratio of one step, both still on the device.
#[derive(Debug, Clone)]
pub struct Projected<const D: usize> {
    /// The update with its radial component removed in the selected view (unchanged when no
    /// view passed the test).
    pub update: Tensor<D>,
    /// `wd_ratio` when a view passed the test, `1` otherwise; shape `[1]`.
    pub decay_ratio: Tensor<1>,
    decision: Decision,
}

impl<const D: usize> Projected<D> {
    /// The branch taken, as a one-element [`ProjectionBranch::code`] tensor (no host read).
    pub fn branch(&self) -> Tensor<1, Int> {
        let device = self.decay_ratio.device();
        match &self.decision {
            Decision::Fixed(branch) => Tensor::<1, Int>::full([1], branch.code(), &device),
            Decision::Tested(tests) => tests.code(),
        }
    }
}

/// How the branch of one step was decided.
#[derive(Debug, Clone)]
enum Decision {
    Fixed(ProjectionBranch),
    Tested(Box<Tests>),
}

/// A tensor divided by its largest `|element|` (at least `f32::MIN_POSITIVE`), and that
/// scale: squares and products of the scaled tensor cannot overflow f32, whatever the
/// magnitude of the weights or gradients (up to f32's range limits).
struct Scaled<const D: usize> {
    /// `x / s`, every element in `[-1, 1]`.
    tensor: Tensor<D>,
    /// `s`, shape `[1]`.
    scale: Tensor<1>,
}

impl<const D: usize> Scaled<D> {
    fn new(x: &Tensor<D>) -> Self {
        let scale = x.clone().abs().max().clamp_min(f32::MIN_POSITIVE);
        Self {
            tensor: x.clone() / scale.clone().reshape([1; D]),
            scale,
        }
    }

    /// The scale with shape `[1, …, 1]`.
    fn scale_d(&self) -> Tensor<D> {
        self.scale.clone().reshape([1; D])
    }
}

/// Per-row statistics of a (weight, gradient) pair, on the scaled tensors, kept in the
/// channel view's shape (every axis but the channel axis reduced to length 1).
struct RowStats<const D: usize> {
    /// `⟨P̃_i, G̃_i⟩`
    dot: Tensor<D>,
    /// `‖P̃_i‖²`
    weight_sq: Tensor<D>,
    /// `‖G̃_i‖²`
    grad_sq: Tensor<D>,
    /// `s_P`, `s_G` (shape `[1]`).
    weight_scale: Tensor<1>,
    grad_scale: Tensor<1>,
}

/// The decision of the two cosine tests (`super::ScaleInvariance::decide`: at most one true),
/// as one-element boolean tensors.
#[derive(Debug, Clone)]
struct Tests {
    channel: Tensor<1, Bool>,
    layer: Tensor<1, Bool>,
}

impl Tests {
    fn code(&self) -> Tensor<1, Int> {
        let channel = self.channel.clone().int();
        let layer = self.layer.clone().int();
        channel * ProjectionBranch::Channel.code() + layer * ProjectionBranch::Layer.code()
    }
}

impl ScaleInvariance {
    /// Panics with a clear message when the channel axis is not an axis of a rank-`D` tensor
    /// (configs built through `init_for`/`try_init_with` are checked before any step).
    fn check_axis<const D: usize>(&self) {
        assert!(
            self.channel_axis < D,
            "scaleinv: channel_axis {} is out of range for a parameter of rank {D}; \
             set it per parameter with ChannelAxes (see `init_for`)",
            self.channel_axis
        );
    }

    /// Sums `x` over every axis but the channel axis, keeping the rank (`[1, …, C, …, 1]`).
    fn row_sum<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        sum_except(x, self.channel_axis)
    }

    fn row_stats<const D: usize>(&self, param: &Scaled<D>, grad: &Tensor<D>) -> RowStats<D> {
        let grad = Scaled::new(grad);
        let p = &param.tensor;
        RowStats {
            dot: self.row_sum(p.clone() * grad.tensor.clone()),
            weight_sq: self.row_sum(p.clone().square()),
            grad_sq: self.row_sum(grad.tensor.square()),
            weight_scale: param.scale.clone(),
            grad_scale: grad.scale,
        }
    }

    fn tests<const D: usize>(&self, stats: &RowStats<D>, numel: usize) -> Tests {
        let channels = stats.dot.dims()[self.channel_axis];
        let (sp, sg) = (stats.weight_scale.clone(), stats.grad_scale.clone());
        let (sp_d, sg_d) = (sp.clone().reshape([1; D]), sg.clone().reshape([1; D]));
        // `(‖x‖, s)` from `‖x̃‖²` and `s`.
        let norm = |sq: Tensor<D>, s: Tensor<D>| (sq.sqrt() * s.clone(), s);
        let norm_1 = |sq: Tensor<1>, s: Tensor<1>| (sq.sqrt() * s.clone(), s);
        let channel_cos = self.cosine(
            stats.dot.clone(),
            norm(stats.weight_sq.clone(), sp_d),
            norm(stats.grad_sq.clone(), sg_d),
        );
        let weight_sq = stats.weight_sq.clone().sum();
        let grad_sq = stats.grad_sq.clone().sum();
        let layer_cos = self.cosine(
            stats.dot.clone().sum(),
            norm_1(weight_sq.clone(), sp),
            norm_1(grad_sq.clone(), sg),
        );
        let (channel, layer) = self.decide(TestInputs {
            channel_cosine: (channel_cos.max(), numel / channels),
            layer_cosine: (layer_cos, numel),
            squares: (weight_sq, grad_sq),
        });
        Tests { channel, layer }
    }

    /// Whether a rank-`D` tensor with `numel` elements can be projected at all (rank ≥ 2,
    /// non-empty, view not `Off`); checks the channel axis when it can.
    fn projects<const D: usize>(&self, numel: usize) -> bool {
        if numel == 0 || !self.applies_to(D) {
            return false;
        }
        self.check_axis::<D>();
        true
    }

    /// Which view the test selects for `param` and its raw gradient `grad`, as a one-element
    /// integer tensor holding a [`ProjectionBranch::code`]. Rank < 2 gives `None`; a fixed
    /// view gives that view.
    ///
    /// This is the decision [`project`](Self::project) makes; reading it back is a host sync,
    /// so use it for diagnostics and tests, not inside a training step.
    pub fn branch<const D: usize>(&self, param: &Tensor<D>, grad: &Tensor<D>) -> Tensor<1, Int> {
        let device = param.device();
        let fixed = |b: ProjectionBranch| Tensor::<1, Int>::full([1], b.code(), &device);
        if !self.projects::<D>(param.shape().num_elements()) {
            return fixed(ProjectionBranch::None);
        }
        match self.view {
            ProjectionView::Channel => fixed(ProjectionBranch::Channel),
            ProjectionView::Layer => fixed(ProjectionBranch::Layer),
            ProjectionView::Off => fixed(ProjectionBranch::None),
            ProjectionView::Detect => {
                let numel = param.shape().num_elements();
                let stats = self.row_stats(&Scaled::new(param), grad);
                self.tests(&stats, numel).code()
            }
        }
    }

    /// Removes the radial component of `update` in the first view (channel, then layer) in
    /// which `param` and its raw gradient `grad` pass the scale-invariance test, or in the
    /// fixed [`view`](Self::view).
    ///
    /// Returns the update and the decay ratio (`wd_ratio` if a view passed, else 1).
    pub fn project<const D: usize>(
        &self,
        param: &Tensor<D>,
        grad: &Tensor<D>,
        update: Tensor<D>,
    ) -> Projected<D> {
        self.project_with(param, grad, update, false)
    }

    /// [`project`](Self::project), then, with `caution`, timm's spherical cautious mask
    /// (Cautious Optimizers, arXiv 2411.16085): with `R(x)` the radial part of `x` in the view
    /// that fired (zero when none did, and for rank < 2),
    ///
    /// ```text
    /// g⊥ = g − R(g) ;  mask = [u·g⊥ > 0] ;  u ← u · mask / max(mean(mask), 1e-3) ;  u ← u − R(u)
    /// ```
    ///
    /// the mean over the whole tensor. Where no view fired this is the plain cautious mask
    /// `[u·g > 0]`, as in timm.
    pub(crate) fn project_with<const D: usize>(
        &self,
        param: &Tensor<D>,
        grad: &Tensor<D>,
        update: Tensor<D>,
        caution: bool,
    ) -> Projected<D> {
        let device = param.device();
        let (radial, decision, decay_ratio) = if self.projects::<D>(param.shape().num_elements()) {
            self.radial(param, grad)
        } else {
            let none = Decision::Fixed(ProjectionBranch::None);
            (Radial::none(), none, ones(&device))
        };
        let update = radial.removed(update);
        let update = if caution {
            radial.removed(cautious(update, radial.removed(grad.clone())))
        } else {
            update
        };
        Projected {
            update,
            decay_ratio,
            decision,
        }
    }

    /// The radial part of the view the test selects (or the fixed view), the decision and
    /// the decay ratio, for a tensor that [`projects`](Self::projects).
    fn radial<const D: usize>(
        &self,
        param: &Tensor<D>,
        grad: &Tensor<D>,
    ) -> (Radial<D>, Decision, Tensor<1>) {
        let device = param.device();
        let p = Scaled::new(param);
        let fixed = |branch| (Decision::Fixed(branch), ones(&device) * self.wd_ratio);
        let (weight_sq, selection, (decision, decay_ratio)) = match self.view {
            ProjectionView::Channel => (
                self.row_sum(p.tensor.clone().square()),
                Selection::Channel,
                fixed(ProjectionBranch::Channel),
            ),
            ProjectionView::Layer => (
                self.row_sum(p.tensor.clone().square()),
                Selection::Layer,
                fixed(ProjectionBranch::Layer),
            ),
            // Excluded by `projects`.
            ProjectionView::Off => unreachable!("an Off view never projects"),
            ProjectionView::Detect => {
                let stats = self.row_stats(&p, grad);
                let tests = self.tests(&stats, param.shape().num_elements());
                let fired = tests.channel.clone().bool_or(tests.layer.clone());
                let decay_ratio = ones(&device).mask_fill(fired, self.wd_ratio);
                let decision = Decision::Tested(Box::new(tests.clone()));
                (
                    stats.weight_sq,
                    Selection::Tested(Box::new(tests)),
                    (decision, decay_ratio),
                )
            }
        };
        let radial = Radial {
            parts: Some(RadialParts {
                p,
                weight_sq,
                selection,
                invariance: *self,
            }),
        };
        (radial, decision, decay_ratio)
    }
}

/// timm's cautious mask on `update` against `tangent` (the gradient less its radial part):
/// `u · mask / max(mean(mask), 1e-3)`, `mask = [u·tangent > 0]`.
fn cautious<const D: usize>(update: Tensor<D>, tangent: Tensor<D>) -> Tensor<D> {
    let mask = (update.clone() * tangent).greater_elem(0.0).float();
    let kept = mask.clone().mean().clamp_min(1e-3).reshape([1; D]);
    update * (mask / kept)
}

/// Which coefficient of [`RadialParts`] applies: each row's, the layer's, or the one the test
/// selected (zero when neither view passed).
enum Selection {
    Channel,
    Layer,
    Tested(Box<Tests>),
}

/// The radial part `R(x) = P̃·c(x)` of the selected view, for any tensor `x` of the
/// parameter's shape, where the coefficient on the scaled weight `P̃ = P / s_P` is
/// `c̃ = ⟨P̃, x⟩ · (s_P / (‖P‖ + ε))²` per row (channel) or for the whole tensor (layer).
struct Radial<const D: usize> {
    /// `None`: nothing is removed (the tensor is not projected).
    parts: Option<RadialParts<D>>,
}

struct RadialParts<const D: usize> {
    p: Scaled<D>,
    /// `‖P̃_i‖²` per row, in the channel view's shape.
    weight_sq: Tensor<D>,
    selection: Selection,
    invariance: ScaleInvariance,
}

impl<const D: usize> Radial<D> {
    fn none() -> Self {
        Self { parts: None }
    }

    /// `x − R(x)`.
    fn removed(&self, x: Tensor<D>) -> Tensor<D> {
        match &self.parts {
            None => x,
            Some(parts) => {
                let coef = parts.coefficient(&x);
                x - parts.p.tensor.clone() * coef
            }
        }
    }
}

impl<const D: usize> RadialParts<D> {
    /// The coefficient of `x`, broadcastable against the parameter.
    fn coefficient(&self, x: &Tensor<D>) -> Tensor<D> {
        let inv = &self.invariance;
        let p = &self.p;
        let row_dot = inv.row_sum(p.tensor.clone() * x.clone());
        let channel = || {
            let norm = self.weight_sq.clone().sqrt() * p.scale_d();
            inv.radial_coefficient(row_dot.clone(), norm, p.scale_d())
        };
        let layer = || {
            let norm = self.weight_sq.clone().sum().sqrt() * p.scale.clone();
            let dot = row_dot.clone().sum();
            inv.radial_coefficient(dot, norm, p.scale.clone())
        };
        match &self.selection {
            Selection::Channel => channel(),
            Selection::Layer => layer().unsqueeze::<D>(),
            Selection::Tested(tests) => {
                let channel = channel();
                let row_shape = channel.shape();
                let mask = |test: &Tensor<1, Bool>| {
                    test.clone().unsqueeze::<D>().expand(row_shape.clone())
                };
                channel
                    .zeros_like()
                    .mask_where(
                        mask(&tests.layer),
                        layer().unsqueeze::<D>().expand(row_shape.clone()),
                    )
                    .mask_where(mask(&tests.channel), channel)
            }
        }
    }
}

fn ones(device: &Device) -> Tensor<1> {
    Tensor::<1>::ones([1], device)
}
