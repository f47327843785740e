//! Parameter groups by scale invariance: one call from a model (or a [`ScaleProbe`] report)
//! to a [`ModuleOptimizer`] whose scale-invariant weights take a projecting optimizer, whose
//! vectors (biases, normalization scales and offsets) take one without weight decay, and whose
//! other parameters take the user's base optimizer. See [`ScaleGroups`].
//!
//! [`ScaleProbe`]: crate::ScaleProbe

use core::fmt;
use std::collections::BTreeMap;

use burn::grad_clipping::{GradientClipping, GradientClippingConfig};
use burn::module::{Module, Param, ParamGroup, ParamId};
use burn::optim::{ModuleOptimizer, Optimizer};
use burn::tensor::Tensor;

use crate::diagnostics::probe::{Invariance, ProbeReport};
use crate::engine::dispatch::StepOptions;
use crate::error::ConfigError;
use crate::model::channel_axes::{ChannelAxes, grouped, ids_by_axis, with_ids};
use crate::model::norm_affine::{feeds_normalization, is_norm_affine, is_norm_layer};
use crate::model::params::{self, ParamInfo, ParamVisitor, TryParamMap};

/// The three groups of [`ScaleGroups`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScaleGroup {
    /// Scale-invariant weights: the projecting optimizer (AdamP, SGDP, the radial projection
    /// around any optimizer, a rotational optimizer), on each weight's channel axis.
    Invariant,
    /// Parameters of rank < 2 (biases, normalization scales and offsets): an optimizer
    /// without weight decay (timm's `param_groups_weight_decay`).
    Vector,
    /// Everything else: the user's base optimizer.
    Rest,
}

impl ScaleGroup {
    /// `"invariant"`, `"vector"` or `"rest"`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Invariant => "invariant",
            Self::Vector => "vector",
            Self::Rest => "rest",
        }
    }
}

/// Why a parameter went to its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupReason {
    /// The probe's verdict on a parameter of rank ≥ 2 ([`ScaleGroups::from_probe`]).
    Probe(Invariance),
    /// Layer rule: a weight whose layer's output goes into a normalization layer (the next
    /// layer with parameters inside the same parent module is a BatchNorm, LayerNorm,
    /// RmsNorm, GroupNorm or InstanceNorm; [`ScaleGroups::by_layers`]).
    FeedsNormalization,
    /// Layer rule: a parameter of rank ≥ 2 that does not feed a normalization layer.
    NotNormalized,
    /// A parameter of rank < 2.
    Vector,
    /// Placed by [`ScaleGroups::try_with_group`].
    Override,
}

impl fmt::Display for GroupReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Probe(Invariance::Channel) => f.write_str("probe: channel-invariant"),
            Self::Probe(Invariance::Layer) => f.write_str("probe: layer-invariant"),
            Self::Probe(Invariance::None) => f.write_str("probe: not invariant"),
            Self::Probe(Invariance::Zero) => f.write_str("probe: all zeros, untested"),
            Self::FeedsNormalization => f.write_str("layer rule: feeds a normalization layer"),
            Self::NotNormalized => f.write_str("layer rule: no normalization after it"),
            Self::Vector => f.write_str("rank < 2"),
            Self::Override => f.write_str("override"),
        }
    }
}

/// One parameter, the group it went to and why.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupedParam {
    /// Path in the module, e.g. `blocks.0.conv.weight`.
    pub path: String,
    /// The parameter's id.
    pub id: ParamId,
    /// The struct that owns it, e.g. `Conv2d`.
    pub module_type: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its output-channel axis (rank ≥ 2), given to the projecting optimizer.
    pub channel_axis: Option<usize>,
    /// Its group.
    pub group: ScaleGroup,
    /// Why.
    pub reason: GroupReason,
}

/// A built optimizer that can be moved to another output-channel axis: what
/// [`ScaleGroups`] gives the invariant weights. Implemented by [`AdamP`](crate::AdamP),
/// [`Sgdp`](crate::Sgdp), [`RadialProjection`](crate::RadialProjection) around any optimizer,
/// and the rotational optimizers ([`RotationalAdamW`](crate::RotationalAdamW),
/// [`RotationalSgdm`](crate::RotationalSgdm), made rotational on every tensor they get).
pub trait ChannelAxisOptimizer: Optimizer {
    /// The same optimizer for weights whose output channels (neurons) lie on `axis`; fails
    /// when the optimizer cannot step an invariant weight (a rotational optimizer without
    /// weight decay would never move it).
    fn on_channel_axis(&self, axis: usize) -> Result<Self, ConfigError>;

    /// `weight` readied for this optimizer before its first forward pass (the rotational
    /// optimizers centre each neuron, as they do in their own `init_for`); fails, naming
    /// `path`, when it cannot be. The default returns it unchanged.
    fn prepare<const D: usize>(
        &self,
        path: &str,
        weight: Tensor<D>,
    ) -> Result<Tensor<D>, ConfigError> {
        let _ = path;
        Ok(weight)
    }
}

/// Which parameters of a model are scale-invariant, which are vectors and which are neither,
/// and the [`ModuleOptimizer`] that steps each group with its own optimizer through Burn's
/// parameter groups ([`ModuleOptimizer::with_group`]).
///
/// The groups come from the model's layers ([`by_layers`](Self::by_layers): a weight that
/// feeds a normalization layer is invariant) or from what a [`ScaleProbe`](crate::ScaleProbe)
/// measured ([`from_probe`](Self::from_probe)); any path can be moved by hand
/// ([`try_with_group`](Self::try_with_group)); printing the value shows each parameter's group
/// and why. [`param_group`](Self::param_group) gives a group as a Burn [`ParamGroup`], for a
/// per-group learning rate (`ModuleLrScheduler::with_group`).
///
/// ```
/// use burn::prelude::*;
/// use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
/// use burn::optim::{AdamWConfig, GradientsParams};
/// use scaleinv_optim::{AdamPConfig, ScaleGroup, ScaleGroups};
///
/// #[derive(Module, Debug)]
/// struct Block {
///     linear: Linear,
///     norm: LayerNorm,
///     head: Linear,
/// }
///
/// # #[cfg(feature = "flex")] {
/// let device = Device::flex().autodiff();
/// let model = Block {
///     linear: LinearConfig::new(8, 16).init(&device),
///     norm: LayerNormConfig::new(16).init(&device),
///     head: LinearConfig::new(16, 4).init(&device),
/// };
/// let groups = ScaleGroups::by_layers(&model);
/// assert_eq!(groups.group_of("linear.weight"), Some(ScaleGroup::Invariant));
/// assert_eq!(groups.group_of("norm.gamma"), Some(ScaleGroup::Vector));
/// assert_eq!(groups.group_of("head.weight"), Some(ScaleGroup::Rest));
/// println!("{groups}");
///
/// let mut optim = groups.init(
///     &AdamPConfig::new().with_weight_decay(0.1).build(),
///     AdamWConfig::new().with_epsilon(1e-8).with_weight_decay(0.0).build(),
///     AdamWConfig::new().with_epsilon(1e-8).with_weight_decay(0.1).build(),
/// );
/// let x = Tensor::<2>::ones([4, 8], &device);
/// let out = model.head.forward(model.norm.forward(model.linear.forward(x)));
/// let grads = GradientsParams::from_grads(out.square().mean().backward(), &model);
/// let model = optim.step(1e-3, model, grads);
/// # let _ = model;
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ScaleGroups {
    params: Vec<GroupedParam>,
    grad_clipping: Option<GradientClippingConfig>,
}

impl ScaleGroups {
    /// Groups the trainable parameters (those that require a gradient; on a model without
    /// autodiff, all but the normalizations' running statistics) by the model's layers: a `weight` of rank ≥ 2 whose layer is followed, as the
    /// next layer with parameters of the same parent module, by a normalization layer is
    /// invariant (fields must be declared in forward order; a pre-norm block's weights are
    /// not found, measure them with [`from_probe`](Self::from_probe)); every parameter of
    /// rank < 2 is a vector; the rest is the rest. Channel axes by layer type
    /// ([`ChannelAxes::infer`]).
    pub fn by_layers<M: Module>(model: &M) -> Self {
        let infos = params::walk(model, false);
        let feeds = feeds_normalization(&infos);
        let axes = ChannelAxes::infer(model);
        let shapes = trainable_shapes(model);
        let params = infos
            .into_iter()
            .zip(feeds)
            .filter_map(|(info, feeds)| Some((shapes.get(&info.id)?.clone(), info, feeds)))
            .map(|(shape, info, feeds)| {
                let why = match feeds {
                    true => GroupReason::FeedsNormalization,
                    false => GroupReason::NotNormalized,
                };
                let (group, reason) = place(info.rank, feeds, why);
                GroupedParam {
                    channel_axis: axes.axis_of(&info.path),
                    shape,
                    path: info.path,
                    id: info.id,
                    module_type: info.owner,
                    group,
                    reason,
                }
            })
            .collect();
        Self::of(params)
    }

    /// Groups by what a [`ScaleProbe`](crate::ScaleProbe) measured: a parameter of rank ≥ 2
    /// found channel- or layer-invariant is invariant (on the channel axis the probe used),
    /// one found not invariant or all zeros is the rest; every parameter of rank < 2 is a
    /// vector, whatever its verdict.
    pub fn from_probe(report: &ProbeReport) -> Self {
        let params = report
            .entries
            .iter()
            .map(|entry| {
                let invariant = matches!(entry.invariance, Invariance::Channel | Invariance::Layer);
                let why = GroupReason::Probe(entry.invariance);
                let (group, reason) = place(entry.shape.len(), invariant, why);
                GroupedParam {
                    path: entry.path.clone(),
                    id: entry.id,
                    module_type: entry.module_type.clone(),
                    shape: entry.shape.clone(),
                    channel_axis: entry.channel_axis,
                    group,
                    reason,
                }
            })
            .collect();
        Self::of(params)
    }

    fn of(params: Vec<GroupedParam>) -> Self {
        Self {
            params,
            grad_clipping: None,
        }
    }

    /// Moves the parameter at `path`, or every parameter under the module path `path`, to
    /// `group`. Fails when no parameter is there.
    pub fn try_with_group(mut self, path: &str, group: ScaleGroup) -> Result<Self, ConfigError> {
        let mut found = false;
        for param in self
            .params
            .iter_mut()
            .filter(|p| params::is_under(&p.path, path))
        {
            param.group = group;
            param.reason = GroupReason::Override;
            found = true;
        }
        if found {
            Ok(self)
        } else {
            Err(ConfigError::UnknownParameter {
                path: path.to_string(),
            })
        }
    }

    /// Like [`try_with_group`](Self::try_with_group); panics when no parameter is at `path`.
    pub fn with_group(self, path: &str, group: ScaleGroup) -> Self {
        self.try_with_group(path, group)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Gradient clipping applied by every group (Burn's per-tensor clipping; for clipping by
    /// the global norm of a whole step see [`GlobalNormClip`](crate::GlobalNormClip)).
    pub fn with_grad_clipping(mut self, clipping: GradientClippingConfig) -> Self {
        self.grad_clipping = Some(clipping);
        self
    }

    /// Every parameter, in visiting order.
    pub fn params(&self) -> &[GroupedParam] {
        &self.params
    }

    /// The parameter at `path`.
    pub fn get(&self, path: &str) -> Option<&GroupedParam> {
        self.params.iter().find(|p| p.path == path)
    }

    /// The group of the parameter at `path`.
    pub fn group_of(&self, path: &str) -> Option<ScaleGroup> {
        self.get(path).map(|p| p.group)
    }

    /// The paths in `group`, in visiting order.
    pub fn paths(&self, group: ScaleGroup) -> Vec<&str> {
        self.in_group(group).map(|p| p.path.as_str()).collect()
    }

    /// `group` as a Burn [`ParamGroup`] (by ids, which survive a checkpoint), e.g. for a
    /// learning rate of its own: `ModuleLrScheduler::with_group(groups.param_group(…), …)`.
    pub fn param_group(&self, group: ScaleGroup) -> ParamGroup {
        ParamGroup::from_ids(self.in_group(group).map(|p| p.id).collect())
    }

    /// The [`ModuleOptimizer`]: `invariant` on each invariant weight's channel axis (one
    /// Burn parameter group per axis), `vectors` on the vectors, `rest` on everything else
    /// (the fallback, so a parameter added to the model later takes it too). Give `vectors`
    /// no weight decay. Fails on an invalid clipping threshold.
    pub fn try_init<P, V, R>(
        &self,
        invariant: &P,
        vectors: V,
        rest: R,
    ) -> Result<ModuleOptimizer, ConfigError>
    where
        P: ChannelAxisOptimizer,
        V: Optimizer,
        R: Optimizer,
    {
        let clipping = self.clipping()?;
        let vector_ids = self.in_group(ScaleGroup::Vector).map(|p| p.id).collect();
        let optim = grouped(rest, [], clipping.clone());
        let mut optim = with_ids(optim, vector_ids, vectors, clipping.clone());
        for (axis, ids) in self.invariant_by_axis() {
            let optimizer = invariant.on_channel_axis(axis)?;
            optim = with_ids(optim, ids, optimizer, clipping.clone());
        }
        Ok(optim)
    }

    /// Like [`try_init`](Self::try_init); panics with the error.
    pub fn init<P, V, R>(&self, invariant: &P, vectors: V, rest: R) -> ModuleOptimizer
    where
        P: ChannelAxisOptimizer,
        V: Optimizer,
        R: Optimizer,
    {
        self.try_init(invariant, vectors, rest)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `model` with every invariant weight readied for `invariant` before the first forward
    /// pass ([`ChannelAxisOptimizer::prepare`]: the rotational optimizers centre each
    /// neuron; the others change nothing). Call it once, before training, with the optimizer
    /// given to [`try_init`](Self::try_init) (not when resuming: preparing again would change
    /// trained weights). Fails on a weight that cannot be readied.
    pub fn try_prepare<M: Module, P: ChannelAxisOptimizer>(
        &self,
        model: M,
        invariant: &P,
    ) -> Result<M, ConfigError> {
        let optimizers = self
            .invariant()
            .map(|(axis, p)| Ok((p.id, invariant.on_channel_axis(axis)?)))
            .collect::<Result<_, ConfigError>>()?;
        params::try_map_params(model, &mut Prepare { optimizers })
    }

    fn in_group(&self, group: ScaleGroup) -> impl Iterator<Item = &GroupedParam> {
        self.params.iter().filter(move |p| p.group == group)
    }

    /// The invariant parameters' ids by channel axis (a vector moved here by hand: axis 0).
    fn invariant_by_axis(&self) -> BTreeMap<usize, Vec<ParamId>> {
        ids_by_axis(self.invariant().map(|(axis, p)| (axis, p.id)))
    }

    /// The invariant parameters with the channel axis their optimizer takes.
    fn invariant(&self) -> impl Iterator<Item = (usize, &GroupedParam)> {
        self.in_group(ScaleGroup::Invariant)
            .map(|p| (p.channel_axis.unwrap_or(0), p))
    }

    /// The clipping, its threshold checked.
    fn clipping(&self) -> Result<Option<GradientClipping>, ConfigError> {
        let mut options = StepOptions::new();
        options.grad_clipping = self.grad_clipping.clone();
        options.validate_in("ScaleGroups")?;
        Ok(self
            .grad_clipping
            .as_ref()
            .map(GradientClippingConfig::init))
    }
}

impl fmt::Display for ScaleGroups {
    /// A table: parameter, layer type, shape, group and why.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shape = |p: &GroupedParam| format!("{:?}", p.shape);
        let width = |pick: &dyn Fn(&GroupedParam) -> usize, title: &str| {
            self.params
                .iter()
                .map(pick)
                .max()
                .unwrap_or(0)
                .max(title.len())
        };
        let w_path = width(&|p| p.path.len(), "parameter");
        let w_type = width(&|p| p.module_type.len(), "layer");
        let w_shape = width(&|p| shape(p).len(), "shape");
        let count = |g| self.in_group(g).count();
        writeln!(
            f,
            "{} invariant, {} vector, {} rest",
            count(ScaleGroup::Invariant),
            count(ScaleGroup::Vector),
            count(ScaleGroup::Rest)
        )?;
        writeln!(
            f,
            "{:<w_path$}  {:<w_type$}  {:<w_shape$}  {:<9}  why",
            "parameter", "layer", "shape", "group"
        )?;
        for p in &self.params {
            writeln!(
                f,
                "{:<w_path$}  {:<w_type$}  {:<w_shape$}  {:<9}  {}",
                p.path,
                p.module_type,
                shape(p),
                p.group.name(),
                p.reason
            )?;
        }
        Ok(())
    }
}

/// The group of a parameter of rank `rank` found `invariant` or not, for reason `why`: a
/// vector whatever it was found when its rank is below 2.
fn place(rank: usize, invariant: bool, why: GroupReason) -> (ScaleGroup, GroupReason) {
    match (rank < 2, invariant) {
        (true, _) => (ScaleGroup::Vector, GroupReason::Vector),
        (false, true) => (ScaleGroup::Invariant, why),
        (false, false) => (ScaleGroup::Rest, why),
    }
}

/// The shape of every trainable float parameter, by id: those that require a gradient; on a
/// model without autodiff, where none does, every one but the normalization layers' running
/// statistics (a field of a norm layer other than `gamma` and `beta`).
fn trainable_shapes<M: Module>(model: &M) -> BTreeMap<ParamId, Vec<usize>> {
    #[derive(Default)]
    struct Shapes {
        requiring_grad: BTreeMap<ParamId, Vec<usize>>,
        not_statistics: BTreeMap<ParamId, Vec<usize>>,
    }

    impl ParamVisitor for Shapes {
        fn param<const D: usize>(&mut self, info: ParamInfo, param: &Param<Tensor<D>>) {
            let shape: Vec<usize> = param.lazy_shape().iter().copied().collect();
            if param.is_require_grad() {
                self.requiring_grad.insert(info.id, shape.clone());
            }
            if !is_norm_layer(&info.owner) || is_norm_affine(&info) {
                self.not_statistics.insert(info.id, shape);
            }
        }
    }

    let mut shapes = Shapes::default();
    params::visit_params(model, &mut shapes);
    if shapes.requiring_grad.is_empty() {
        shapes.not_statistics
    } else {
        shapes.requiring_grad
    }
}

/// Readies each invariant weight with its optimizer.
struct Prepare<P> {
    optimizers: BTreeMap<ParamId, P>,
}

impl<P: ChannelAxisOptimizer> TryParamMap for Prepare<P> {
    fn try_map<const D: usize>(
        &mut self,
        info: &ParamInfo,
        value: Tensor<D>,
    ) -> Option<Result<Tensor<D>, ConfigError>> {
        Some(self.optimizers.get(&info.id)?.prepare(&info.path, value))
    }
}
