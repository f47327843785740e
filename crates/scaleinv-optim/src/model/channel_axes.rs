//! Which axis of each parameter indexes its output channels.
//!
//! The reference implementations view every weight as `[size(0), -1]`, because PyTorch stores
//! both `Linear` (`[out, in]`) and convolution (`[out, in, k…]`) weights with output channels
//! first. Burn's layouts differ: `Linear.weight` is `[d_input, d_output]` and
//! `ConvTranspose*.weight` is `[channels_in, channels_out / groups, k…]`, so their output
//! channels sit on axis 1. [`ChannelAxes`] walks a module once, names every parameter of rank
//! ≥ 2 with the axis its layer type implies, and lets the user override any of them; the
//! optimizers' `init_for` turn it into Burn parameter groups.

use std::collections::BTreeMap;

use burn::grad_clipping::GradientClipping;
use burn::module::{Module, ParamGroup, ParamId};
use burn::optim::{ModuleOptimizer, Optimizer};

use crate::error::ConfigError;
use crate::model::params;

/// One parameter of rank ≥ 2 and the axis that indexes its output channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamAxis {
    /// Path of the parameter in the module, e.g. `blocks.0.conv.weight`.
    pub path: String,
    /// The parameter's id.
    pub id: ParamId,
    /// Name of the struct that owns the parameter, e.g. `Conv2d`.
    pub module_type: String,
    /// The parameter's rank.
    pub rank: usize,
    /// The channel axis.
    pub axis: usize,
}

/// Rules mapping a layer type (the struct that owns the weight) to its channel axis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelAxisRules {
    by_type: Vec<(String, usize)>,
    default_axis: usize,
}

impl Default for ChannelAxisRules {
    fn default() -> Self {
        Self::burn_nn()
    }
}

impl ChannelAxisRules {
    /// Burn's layers: `Linear` → 1, `ConvTranspose1d/2d/3d` → 1; everything else (`Conv1d/2d/3d`,
    /// `DeformConv2d`, `Embedding`, unknown types) → 0, as in the reference.
    ///
    /// For a grouped transposed convolution, axis 1 indexes the output channel *within* a
    /// group, so each row of the channel view gathers that channel across all groups.
    pub fn burn_nn() -> Self {
        let axis_1 = [
            "Linear",
            "ConvTranspose1d",
            "ConvTranspose2d",
            "ConvTranspose3d",
        ];
        Self {
            by_type: axis_1.iter().map(|t| (t.to_string(), 1)).collect(),
            default_axis: 0,
        }
    }

    /// Adds or replaces the axis for weights owned by the struct named `type_name`.
    pub fn with_type(mut self, type_name: impl Into<String>, axis: usize) -> Self {
        let type_name = type_name.into();
        self.by_type.retain(|(t, _)| *t != type_name);
        self.by_type.push((type_name, axis));
        self
    }

    /// Sets the axis for types without a rule (0 by default).
    pub fn with_default_axis(mut self, axis: usize) -> Self {
        self.default_axis = axis;
        self
    }

    fn axis_for(&self, module_type: &str) -> usize {
        self.by_type
            .iter()
            .find(|(t, _)| t == module_type)
            .map_or(self.default_axis, |(_, axis)| *axis)
    }

    /// Walks `module` and assigns every parameter of rank ≥ 2 its axis.
    ///
    /// Fails when a rule gives an axis beyond a parameter's rank.
    pub fn infer<M: Module>(&self, module: &M) -> Result<ChannelAxes, ConfigError> {
        let (matrices, vectors): (Vec<_>, Vec<_>) = params::walk(module, false)
            .into_iter()
            .partition(|p| p.rank >= 2);
        let without_axis = vectors.into_iter().map(|p| (p.path, p.rank)).collect();
        let entries = matrices
            .into_iter()
            .map(|p| ParamAxis {
                axis: self.axis_for(&p.owner),
                path: p.path,
                id: p.id,
                module_type: p.owner,
                rank: p.rank,
            })
            .collect::<Vec<_>>();
        for entry in &entries {
            check_axis(entry)?;
        }
        Ok(ChannelAxes {
            entries,
            without_axis,
        })
    }
}

fn check_axis(entry: &ParamAxis) -> Result<(), ConfigError> {
    if entry.axis < entry.rank {
        Ok(())
    } else {
        Err(ConfigError::ChannelAxisOutOfRange {
            path: entry.path.clone(),
            axis: entry.axis,
            rank: entry.rank,
        })
    }
}

/// The channel axis of every parameter of rank ≥ 2 of one module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelAxes {
    entries: Vec<ParamAxis>,
    /// The parameters of rank < 2 (path, rank): they exist, but have no channel axis.
    without_axis: Vec<(String, usize)>,
}

impl ChannelAxes {
    /// Axes for `module` by [`ChannelAxisRules::burn_nn`].
    pub fn infer<M: Module>(module: &M) -> Self {
        ChannelAxisRules::burn_nn()
            .infer(module)
            .expect("the burn_nn rules only name axis 0 and 1, and every entry has rank >= 2")
    }

    /// Overrides the axis of the parameter at `path`. Fails when the module has no parameter
    /// there, or when it has one of rank < 2 (a bias, a norm's scale), which has no channel
    /// axis.
    pub fn with_axis(mut self, path: &str, axis: usize) -> Result<Self, ConfigError> {
        if let Some((_, rank)) = self.without_axis.iter().find(|(p, _)| p == path) {
            return Err(ConfigError::ChannelAxisOutOfRange {
                path: path.to_string(),
                axis,
                rank: *rank,
            });
        }
        let entry = self
            .entries
            .iter_mut()
            .find(|e| e.path == path)
            .ok_or_else(|| ConfigError::UnknownParameter {
                path: path.to_string(),
            })?;
        let candidate = ParamAxis {
            axis,
            ..entry.clone()
        };
        check_axis(&candidate)?;
        *entry = candidate;
        Ok(self)
    }

    /// The axis of the parameter at `path`, if it has rank ≥ 2.
    pub fn axis_of(&self, path: &str) -> Option<usize> {
        self.entries.iter().find(|e| e.path == path).map(|e| e.axis)
    }

    /// Every parameter of rank ≥ 2, in visiting order.
    pub fn iter(&self) -> impl Iterator<Item = &ParamAxis> {
        self.entries.iter()
    }

    /// Parameter ids by axis.
    fn ids_by_axis(&self) -> BTreeMap<usize, Vec<ParamId>> {
        ids_by_axis(self.entries.iter().map(|e| (e.axis, e.id)))
    }

    /// A [`ModuleOptimizer`] whose fallback optimizer is `build(0)` and which gives every
    /// parameter with another axis `a` the optimizer `build(a)`, through parameter groups.
    /// The same gradient clipping applies to every group.
    pub fn module_optimizer<O: Optimizer>(
        &self,
        build: impl Fn(usize) -> O,
        grad_clipping: Option<GradientClipping>,
    ) -> ModuleOptimizer {
        let groups = self
            .ids_by_axis()
            .into_iter()
            .filter(|(axis, _)| *axis != 0)
            .map(|(axis, ids)| (ids, build(axis)));
        grouped(build(0), groups, grad_clipping)
    }
}

/// The ids of `(axis, id)` pairs gathered by axis, each axis's in the pairs' order.
pub(crate) fn ids_by_axis(
    pairs: impl IntoIterator<Item = (usize, ParamId)>,
) -> BTreeMap<usize, Vec<ParamId>> {
    let mut by_axis: BTreeMap<usize, Vec<ParamId>> = BTreeMap::new();
    for (axis, id) in pairs {
        by_axis.entry(axis).or_default().push(id);
    }
    by_axis
}

/// A [`ModuleOptimizer`] with `fallback` for every parameter and each `(ids, optimizer)` group
/// over it (a later group wins), all with the same gradient clipping.
pub(crate) fn grouped<O: Optimizer>(
    fallback: O,
    groups: impl IntoIterator<Item = (Vec<ParamId>, O)>,
    grad_clipping: Option<GradientClipping>,
) -> ModuleOptimizer {
    let mut optim = ModuleOptimizer::from(fallback);
    if let Some(clipping) = &grad_clipping {
        optim = optim.with_grad_clipping(clipping.clone());
    }
    for (ids, group_optim) in groups {
        optim = with_ids(optim, ids, group_optim, grad_clipping.clone());
    }
    optim
}

/// `optim` with `group_optim` for the parameters `ids` (over any earlier group), under
/// `grad_clipping`; `optim` itself when `ids` is empty.
pub(crate) fn with_ids<O: Optimizer>(
    optim: ModuleOptimizer,
    ids: Vec<ParamId>,
    group_optim: O,
    grad_clipping: Option<GradientClipping>,
) -> ModuleOptimizer {
    if ids.is_empty() {
        return optim;
    }
    optim.with_group(ParamGroup::from_ids(ids), group_optim, grad_clipping)
}
