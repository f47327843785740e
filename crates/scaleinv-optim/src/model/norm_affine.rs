//! The scale `γ` and offset `β` of normalization layers, and NaP's joint projection of them.

use std::collections::BTreeMap;

use burn::module::{Module, Param};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::model::params::{self, ParamInfo, ParamMap, ParamVisitor};

/// Burn's normalization layers, whose `gamma` and `beta` are the affine of a normalization.
const NORM_LAYERS: [&str; 5] = [
    "LayerNorm",
    "RmsNorm",
    "GroupNorm",
    "BatchNorm",
    "InstanceNorm",
];

/// What NaP does with the scale `γ` and offset `β` of the normalization layers. The paper
/// leaves this open; each choice is one seen in practice.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub enum NormAffine {
    /// `γ` and `β` are left to the base optimizer (as in two PyTorch re-implementations). The
    /// default, because a `ModuleOptimizer` can do it on its own.
    #[default]
    Free,
    /// After every step, `[γ; β] ← [γ; β] · √d / ‖[γ; β]‖`, `d` the normalized width:
    /// both rescaled together to the norm of their default initialisation `γ = 1, β = 0`.
    /// With a positively homogeneous activation (ReLU) and a normalized next layer this is an
    /// exact symmetry of the network. A per-tensor optimizer sees one tensor at a time, so the
    /// base optimizer steps `γ` and `β` freely and
    /// [`NapConfig::project_norm_affine`](crate::NapConfig::project_norm_affine) must run on
    /// the model after each step (in `TrainStep::optimize` under Burn's `Learner`).
    ProjectJointly,
    /// Decoupled weight decay on the scale only, `γ ← γ · (1 − η·rate)` after the base step;
    /// `β` is free.
    DecayScale {
        /// The decay rate λ.
        rate: f64,
    },
}

/// Whether `owner` (a layer's type name) is one of Burn's normalization layers.
pub(crate) fn is_norm_layer(owner: &str) -> bool {
    NORM_LAYERS.contains(&owner)
}

/// Whether each parameter of `params` (a module walk, in visiting order) is a weight that
/// feeds a normalization layer, by the layer-type rule the model's structure allows: a
/// `weight` of rank ≥ 2 of a layer that is not a normalization, when the next layer with
/// parameters in visiting order is a normalization layer inside the same parent module
/// (`conv1, bn1` or `linear, norm.layer_norm` as fields of one struct, declared in forward
/// order). A pre-norm block (`norm, attn`) and a layer whose output leaves its parent module
/// (the last projection of an attention block, followed by the block's norm) get `false`.
pub(crate) fn feeds_normalization(params: &[ParamInfo]) -> Vec<bool> {
    let parent = |layer: &str| layer.rsplit_once('.').map_or("", |(p, _)| p).to_string();
    // The layers in visiting order, each with its owner type.
    let mut layers: Vec<(&str, &str)> = Vec::new();
    for p in params {
        if layers.last().is_none_or(|(l, _)| *l != p.layer_path()) {
            layers.push((p.layer_path(), p.owner.as_str()));
        }
    }
    params
        .iter()
        .map(|p| {
            if p.rank < 2 || p.field() != "weight" || is_norm_layer(&p.owner) {
                return false;
            }
            let layer = p.layer_path();
            let Some(at) = layers.iter().position(|(l, _)| *l == layer) else {
                return false;
            };
            let home = parent(layer);
            let under_home = |next: &str| {
                home.is_empty()
                    || next
                        .strip_prefix(home.as_str())
                        .is_some_and(|rest| rest.starts_with('.'))
            };
            layers
                .get(at + 1)
                .is_some_and(|(next, owner)| is_norm_layer(owner) && under_home(next))
        })
        .collect()
}

/// Whether `param` is the scale or offset of a normalization layer.
pub(crate) fn is_norm_affine(param: &ParamInfo) -> bool {
    NORM_LAYERS.contains(&param.owner.as_str()) && matches!(param.field(), "gamma" | "beta")
}

/// Rescales `[γ; β]` of every normalization layer of `module` to `√d` (see
/// [`NormAffine::ProjectJointly`]); `epsilon` guards the current norm. Everything stays on the
/// device.
pub(crate) fn project_jointly<M: Module>(module: M, epsilon: f64) -> M {
    let mut sums = AffineSums::default();
    params::visit_params(&module, &mut sums);
    let factors = sums
        .layers
        .into_iter()
        .filter(|(_, (_, width))| *width > 0)
        .filter_map(|(layer, (sum_sq, width))| {
            let target = (width as f64).sqrt();
            let factor = sum_sq?.sqrt().clamp_min(epsilon).recip() * target;
            Some((layer, factor))
        })
        .collect();
    params::map_params(module, &mut AffineRescale { factors })
}

/// Per normalization layer: `‖γ‖² + ‖β‖²` and the width `d = len(γ)`.
#[derive(Default)]
struct AffineSums {
    layers: BTreeMap<String, (Option<Tensor<1>>, usize)>,
}

impl ParamVisitor for AffineSums {
    fn param<const D: usize>(&mut self, info: ParamInfo, param: &Param<Tensor<D>>) {
        if !is_norm_affine(&info) {
            return;
        }
        let value = param.val().detach();
        let numel = value.shape().num_elements();
        let sum_sq = value.square().sum();
        let entry = self
            .layers
            .entry(info.layer_path().to_string())
            .or_insert((None, 0));
        entry.0 = Some(match entry.0.take() {
            Some(sum) => sum + sum_sq,
            None => sum_sq,
        });
        if info.field() == "gamma" {
            entry.1 = numel;
        }
    }
}

struct AffineRescale {
    factors: BTreeMap<String, Tensor<1>>,
}

impl ParamMap for AffineRescale {
    fn map<const D: usize>(&mut self, info: &ParamInfo, value: Tensor<D>) -> Option<Tensor<D>> {
        let factor = is_norm_affine(info)
            .then(|| self.factors.get(info.layer_path()).cloned())
            .flatten()?;
        Some(value * factor.inner().unsqueeze::<D>())
    }
}
