//! What the two rotational optimizers ([`RotationalAdamW`](crate::RotationalAdamW),
//! [`RotationalSgdm`](crate::RotationalSgdm)) share: the rotational options, which tensors are
//! rotational, and the constructors that take the model, prepare its rotational weights and
//! return it with the optimizer (the reference centres them when the optimizer is built, before
//! the first forward pass).

use std::collections::BTreeMap;

use burn::config::Config;
use burn::grad_clipping::GradientClippingConfig;
use burn::module::{Module, ParamId};
use burn::optim::{ModuleOptimizer, Optimizer};
use burn::tensor::Tensor;

use crate::engine::dispatch::HasStepOptions;
use crate::error::{ConfigError, Range, check};
use crate::model::channel_axes::{ChannelAxes, grouped, ids_by_axis};
use crate::model::params::{self, ParamInfo, TryParamMap, read_back};
use crate::rules::rotation::Rotation;

/// The rotational update's options, with the reference's defaults (`epfml/REQ`). Nested in
/// both rotational configs as `rotation`; their setters (`with_update_norm_decay_factor`,
/// `with_per_neuron`, `with_zero_mean`, `with_rotational_eps`, `with_neuron_axis`,
/// `with_rotational`, `with_not_rotational`) write here.
#[derive(Config, Debug, PartialEq)]
pub struct RotationOptions {
    /// β of the running average of the update's squared norm, which sets the angle of each
    /// step: 0 holds every step at the equilibrium angle exactly, larger values let the angle
    /// vary from batch to batch around it. In `[0, 1)`.
    #[config(default = 0.9)]
    pub update_norm_decay_factor: f64,
    /// One norm and one angle per neuron (each output channel: a convolution's filter, a
    /// column of Burn's `Linear` weight) when `true`; per tensor (a whole layer) when `false`.
    #[config(default = true)]
    pub per_neuron: bool,
    /// Centre each neuron's weights when the optimizer is built, and every update, as weight
    /// standardization does.
    #[config(default = true)]
    pub zero_mean: bool,
    /// ε added to the running RMS of the update's norm.
    #[config(default = 1e-8)]
    pub rotational_eps: f64,
    /// The neuron axis of `build`'s optimizer; `init_for` takes each weight's from its layer
    /// (1 for Burn's `Linear`, `[d_input, d_output]`; 0 for convolutions), like
    /// [`ChannelAxes::infer`].
    #[config(default = 0)]
    pub neuron_axis: usize,
    /// Module paths made rotational whatever the default rule says (a path matches the
    /// parameter or everything under it). The default rule: weight decay ≠ 0 and rank ≥ 2.
    /// With weight decay 0 a rotational tensor would never move: refused.
    #[config(default = "Vec::new()")]
    pub rotational: Vec<String>,
    /// Module paths kept off the rotational update (they take the base optimizer's step).
    #[config(default = "Vec::new()")]
    pub not_rotational: Vec<String>,
}

impl RotationOptions {
    /// Checks every option; `weight_decay` is the owning config's.
    pub(crate) fn validate_in(
        &self,
        config: &'static str,
        weight_decay: f64,
    ) -> Result<(), ConfigError> {
        check(
            config,
            "update_norm_decay_factor",
            self.update_norm_decay_factor,
            Range::UnitHalfOpen,
        )?;
        check(
            config,
            "rotational_eps",
            self.rotational_eps,
            Range::Epsilon,
        )?;
        if self
            .rotational
            .iter()
            .any(|p| self.not_rotational.contains(p))
        {
            return Err(ConfigError::Conflict {
                config,
                reason: "a path is listed in both rotational and not_rotational",
            });
        }
        if weight_decay == 0.0 && !self.rotational.is_empty() {
            return Err(ConfigError::Conflict {
                config,
                reason: "a rotational tensor needs weight_decay > 0 (its equilibrium angle \
                         √(2·η·λ·…) is zero at λ = 0); unlist it from rotational or set \
                         weight_decay",
            });
        }
        Ok(())
    }

    /// The rotational update around neuron axis `axis`.
    pub(crate) fn rotation(&self, axis: usize) -> Rotation {
        Rotation {
            decay: self.update_norm_decay_factor,
            per_neuron: self.per_neuron,
            zero_mean: self.zero_mean,
            epsilon: self.rotational_eps,
            axis,
        }
    }

    /// `Some(true)` / `Some(false)` when an override names `path` (or a module above it).
    fn overridden(&self, info: &ParamInfo) -> Option<bool> {
        if self.not_rotational.iter().any(|p| info.is_under(p)) {
            Some(false)
        } else if self.rotational.iter().any(|p| info.is_under(p)) {
            Some(true)
        } else {
            None
        }
    }
}

/// Whether a tensor of rank `rank` is rotational by the reference's rule: weight decay ≠ 0
/// and rank ≥ 2.
pub(crate) fn rotational_by_default(weight_decay: f64, rank: usize) -> bool {
    weight_decay != 0.0 && rank >= 2
}

/// Refuses tensors forced rotational under weight decay 0 (the reference asserts).
pub(crate) fn check_forced<C: RotationalConfig>(
    config: &C,
    rotational: bool,
) -> Result<(), ConfigError> {
    check_forced_decay(config.name(), config.weight_decay(), rotational)
}

/// Refuses a tensor forced rotational (`rotational`) under weight decay 0, naming `config`.
pub(crate) fn check_forced_decay(
    config: &'static str,
    weight_decay: f64,
    rotational: bool,
) -> Result<(), ConfigError> {
    if rotational && weight_decay == 0.0 {
        return Err(ConfigError::Conflict {
            config,
            reason: "a rotational tensor needs weight_decay > 0 (its equilibrium angle is zero \
                     at λ = 0)",
        });
    }
    Ok(())
}

/// A rotational config: its options and its per-tensor optimizer.
pub(crate) trait RotationalConfig: HasStepOptions {
    type Optim: Optimizer;
    /// The config's name, for errors.
    fn name(&self) -> &'static str;
    fn check(&self) -> Result<(), ConfigError>;
    fn weight_decay(&self) -> f64;
    fn rotation_options(&self) -> &RotationOptions;
    /// The per-tensor optimizer around neuron axis `axis`; `rotational` overrides the default
    /// rule.
    fn optimizer(&self, axis: usize, rotational: Option<bool>) -> Self::Optim;
}

/// The rotational tensors of `model` and their neuron axes.
struct Plan {
    rotational: BTreeMap<ParamId, (String, usize)>,
}

fn plan<C: RotationalConfig, M: Module>(config: &C, model: &M) -> Result<Plan, ConfigError> {
    config.check()?;
    let options = config.rotation_options();
    let params = params::walk(model, false);
    for prefix in options.rotational.iter().chain(&options.not_rotational) {
        if !params.iter().any(|p| p.is_under(prefix)) {
            return Err(ConfigError::UnknownParameter {
                path: prefix.clone(),
            });
        }
    }
    let axes = ChannelAxes::infer(model);
    let mut rotational = BTreeMap::new();
    for p in &params {
        let by_rule = rotational_by_default(config.weight_decay(), p.rank);
        if !options.overridden(p).unwrap_or(by_rule) {
            continue;
        }
        let axis = axes.axis_of(&p.path).unwrap_or(options.neuron_axis);
        if options.per_neuron && axis >= p.rank {
            return Err(ConfigError::ChannelAxisOutOfRange {
                path: p.path.clone(),
                axis,
                rank: p.rank,
            });
        }
        rotational.insert(p.id, (p.path.clone(), axis));
    }
    Ok(Plan { rotational })
}

/// The module optimizer of `plan`: the base optimizer's step for every tensor that is not
/// rotational, the rotational update for the others, one group per neuron axis.
fn module_optimizer<C: RotationalConfig>(config: &C, plan: &Plan) -> ModuleOptimizer {
    let by_axis = ids_by_axis(plan.rotational.iter().map(|(id, (_, axis))| (*axis, *id)));
    let groups = by_axis
        .into_iter()
        .map(|(axis, ids)| (ids, config.optimizer(axis, Some(true))));
    let clipping = config
        .step_options()
        .grad_clipping
        .as_ref()
        .map(GradientClippingConfig::init);
    let fallback = config.optimizer(config.rotation_options().neuron_axis, Some(false));
    grouped(fallback, groups, clipping)
}

/// `model` with its rotational weights prepared, and the module optimizer for it; fails on an
/// invalid config, an override that names no parameter, or a neuron whose centred weights are
/// all zero (its direction is undefined).
pub(crate) fn init_for<C: RotationalConfig, M: Module>(
    config: &C,
    model: M,
) -> Result<(M, ModuleOptimizer), ConfigError> {
    let plan = plan(config, &model)?;
    let mut prepare = Prepare {
        options: config.rotation_options(),
        plan: &plan,
    };
    let model = params::try_map_params(model, &mut prepare)?;
    Ok((model, module_optimizer(config, &plan)))
}

/// The module optimizer for a model prepared before (by [`init_for`]), to load a record into:
/// nothing is prepared again (centring again would change the weights' bits).
pub(crate) fn resume_for<C: RotationalConfig, M: Module>(
    config: &C,
    model: &M,
) -> Result<ModuleOptimizer, ConfigError> {
    let plan = plan(config, model)?;
    Ok(module_optimizer(config, &plan))
}

/// The set-up of every rotational weight of a plan.
struct Prepare<'a> {
    options: &'a RotationOptions,
    plan: &'a Plan,
}

impl TryParamMap for Prepare<'_> {
    fn try_map<const D: usize>(
        &mut self,
        info: &ParamInfo,
        value: Tensor<D>,
    ) -> Option<Result<Tensor<D>, ConfigError>> {
        let (_, axis) = self.plan.rotational.get(&info.id)?;
        Some(prepare_weight(
            &self.options.rotation(*axis),
            &info.path,
            value,
        ))
    }
}

/// `weight` (at `path`) prepared for the rotational update `rotation`: centred per neuron and
/// rescaled to its norm with `zero_mean`. Fails when a neuron's (centred) weights are all zero:
/// its direction is undefined.
pub(crate) fn prepare_weight<const D: usize>(
    rotation: &Rotation,
    path: &str,
    weight: Tensor<D>,
) -> Result<Tensor<D>, ConfigError> {
    if weight.shape().num_elements() == 0 {
        return Ok(weight);
    }
    let smallest = read_back(rotation.smallest_norm(&weight))[0];
    if !(smallest > 0.0 && smallest.is_finite()) {
        return Err(ConfigError::UnprojectableNorm {
            path: path.to_string(),
            norm: smallest,
        });
    }
    Ok(rotation.prepare(weight))
}

/// The setters of [`RotationOptions`] on a config that nests them as `rotation`.
macro_rules! rotation_setters {
    ($config:ty) => {
        impl $config {
            /// Sets [`RotationOptions::update_norm_decay_factor`](crate::RotationOptions::update_norm_decay_factor).
            pub fn with_update_norm_decay_factor(mut self, factor: f64) -> Self {
                self.rotation.update_norm_decay_factor = factor;
                self
            }

            /// Sets [`RotationOptions::per_neuron`](crate::RotationOptions::per_neuron).
            pub fn with_per_neuron(mut self, per_neuron: bool) -> Self {
                self.rotation.per_neuron = per_neuron;
                self
            }

            /// Sets [`RotationOptions::zero_mean`](crate::RotationOptions::zero_mean).
            pub fn with_zero_mean(mut self, zero_mean: bool) -> Self {
                self.rotation.zero_mean = zero_mean;
                self
            }

            /// Sets [`RotationOptions::rotational_eps`](crate::RotationOptions::rotational_eps).
            pub fn with_rotational_eps(mut self, epsilon: f64) -> Self {
                self.rotation.rotational_eps = epsilon;
                self
            }

            /// Sets [`RotationOptions::neuron_axis`](crate::RotationOptions::neuron_axis).
            pub fn with_neuron_axis(mut self, axis: usize) -> Self {
                self.rotation.neuron_axis = axis;
                self
            }

            /// Sets [`RotationOptions::rotational`](crate::RotationOptions::rotational).
            pub fn with_rotational(mut self, paths: Vec<String>) -> Self {
                self.rotation.rotational = paths;
                self
            }

            /// Sets [`RotationOptions::not_rotational`](crate::RotationOptions::not_rotational).
            pub fn with_not_rotational(mut self, paths: Vec<String>) -> Self {
                self.rotation.not_rotational = paths;
                self
            }
        }
    };
}

pub(crate) use rotation_setters;

/// The public constructors of a [`RotationalConfig`]: `try_init_for`/`init_for` (the model
/// in, prepared, and out with its optimizer), `try_resume_for`/`resume_for` (for a record),
/// `try_build`/`build` (one tensor's optimizer).
macro_rules! rotational_constructors {
    ($config:ident => $optim:ty) => {
        impl $crate::ChannelAxisOptimizer for $optim {
            /// Rotational on every tensor it gets, around neuron axis `axis`; fails without
            /// weight decay (the equilibrium angle is zero at λ = 0).
            fn on_channel_axis(&self, axis: usize) -> Result<Self, $crate::ConfigError> {
                $crate::optimizers::rotational::check_forced_decay(
                    stringify!($optim),
                    self.weight_decay,
                    true,
                )?;
                let rotation = $crate::rules::rotation::Rotation {
                    axis,
                    ..self.rotation
                };
                Ok(Self {
                    rotation,
                    rotational: Some(true),
                    ..self.clone()
                })
            }

            /// Centres each neuron (with `zero_mean`), as `init_for` does.
            fn prepare<const D: usize>(
                &self,
                path: &str,
                weight: burn::tensor::Tensor<D>,
            ) -> Result<burn::tensor::Tensor<D>, $crate::ConfigError> {
                $crate::optimizers::rotational::prepare_weight(&self.rotation, path, weight)
            }
        }

        impl $crate::optimizers::rotational::RotationalConfig for $config {
            type Optim = $optim;

            fn name(&self) -> &'static str {
                stringify!($config)
            }

            fn check(&self) -> Result<(), $crate::ConfigError> {
                self.validate()
            }

            fn weight_decay(&self) -> f64 {
                self.weight_decay
            }

            fn rotation_options(&self) -> &$crate::RotationOptions {
                &self.rotation
            }

            fn optimizer(&self, axis: usize, rotational: Option<bool>) -> $optim {
                self.for_neurons(axis, rotational)
            }
        }

        impl $config {
            /// Prepares `model` and returns it with its optimizer: every rotational weight
            /// (weight decay ≠ 0 and rank ≥ 2, the overrides applied) is centred per neuron
            /// and rescaled to its norm (with `zero_mean`, as the reference does when it is
            /// built), each with its neuron axis from its layer
            /// ([`ChannelAxes::infer`](crate::ChannelAxes::infer)); the other tensors take
            /// the base optimizer's step. Train the returned model: the optimizer cannot tell
            /// a prepared weight from another. Fails on an invalid config, an override that
            /// names no parameter, or a neuron whose centred weights are all zero.
            pub fn try_init_for<M: burn::module::Module>(
                &self,
                model: M,
            ) -> Result<(M, burn::optim::ModuleOptimizer), $crate::ConfigError> {
                $crate::optimizers::rotational::init_for(self, model)
            }

            /// Like [`try_init_for`](Self::try_init_for); panics with the error.
            pub fn init_for<M: burn::module::Module>(
                &self,
                model: M,
            ) -> (M, burn::optim::ModuleOptimizer) {
                $crate::optimizers::constructors::or_panic(self.try_init_for(model))
            }

            /// The optimizer of a model prepared before, to load a record into
            /// (`load_record`): nothing is prepared again, since centring again would change
            /// the trained weights.
            pub fn try_resume_for<M: burn::module::Module>(
                &self,
                model: &M,
            ) -> Result<burn::optim::ModuleOptimizer, $crate::ConfigError> {
                $crate::optimizers::rotational::resume_for(self, model)
            }

            /// Like [`try_resume_for`](Self::try_resume_for); panics with the error.
            pub fn resume_for<M: burn::module::Module>(
                &self,
                model: &M,
            ) -> burn::optim::ModuleOptimizer {
                $crate::optimizers::constructors::or_panic(self.try_resume_for(model))
            }

            /// The validated per-tensor optimizer (the default rule, the neuron axis
            /// [`RotationOptions::neuron_axis`](crate::RotationOptions::neuron_axis)), for
            /// [`ModuleOptimizer::with_group`](burn::optim::ModuleOptimizer::with_group).
            /// Each rotational weight must be prepared with its `prepare` before the first
            /// forward pass; [`init_for`](Self::init_for) does it for a whole model.
            pub fn try_build(&self) -> Result<$optim, $crate::ConfigError> {
                $crate::optimizers::rotational::RotationalConfig::check(self)?;
                let axis = self.rotation.neuron_axis;
                Ok($crate::optimizers::rotational::RotationalConfig::optimizer(
                    self, axis, None,
                ))
            }

            /// Like [`try_build`](Self::try_build); panics with the validation error.
            pub fn build(&self) -> $optim {
                $crate::optimizers::constructors::or_panic(self.try_build())
            }

            /// Like [`try_build`](Self::try_build), for tensors that are all rotational
            /// (`true`) or none (`false`) whatever their rank (the reference's per-group
            /// `rotational`). Rotational with weight decay 0 is refused: nothing would move.
            pub fn try_build_for(&self, rotational: bool) -> Result<$optim, $crate::ConfigError> {
                $crate::optimizers::rotational::RotationalConfig::check(self)?;
                $crate::optimizers::rotational::check_forced(self, rotational)?;
                let axis = self.rotation.neuron_axis;
                Ok($crate::optimizers::rotational::RotationalConfig::optimizer(
                    self,
                    axis,
                    Some(rotational),
                ))
            }
        }
    };
}

pub(crate) use rotational_constructors;

/// What both rotational optimizers give per tensor, from their fields `weight_decay`,
/// `rotation`, `rotational` and `non_finite` and their `tensor_ops`: `is_rotational`,
/// `prepare`, and `impl Optimizer` (the step in the frame of the non-finite policy).
macro_rules! rotational_optimizer {
    ($optim:ident => $state:ident) => {
        impl $optim {
            /// Whether a tensor of rank `rank` takes the rotational update.
            pub fn is_rotational(&self, rank: usize) -> bool {
                self.rotational.unwrap_or_else(|| {
                    $crate::optimizers::rotational::rotational_by_default(self.weight_decay, rank)
                })
            }

            /// `weight` prepared for its first step when it is rotational (centred per neuron
            /// and rescaled to its norm, with `zero_mean`), else as it is: the tensor-level
            /// form of the config's `init_for` set-up.
            pub fn prepare<const D: usize>(
                &self,
                weight: burn::tensor::Tensor<D>,
            ) -> burn::tensor::Tensor<D> {
                if self.is_rotational(D) {
                    self.rotation.prepare(weight)
                } else {
                    weight
                }
            }
        }

        impl burn::optim::Optimizer for $optim {
            type State<const D: usize> = $state<D>;

            fn step<const D: usize>(
                &self,
                lr: burn::optim::LearningRate,
                param: burn::tensor::Tensor<D>,
                grad: burn::tensor::Tensor<D>,
                state: Option<Self::State<D>>,
            ) -> (burn::tensor::Tensor<D>, Option<Self::State<D>>) {
                $crate::engine::step_frame::framed_step(
                    lr,
                    self.non_finite,
                    param,
                    grad,
                    state,
                    |p, g, s| self.tensor_ops(lr, p, g, s),
                )
            }

            fn to_device<const D: usize>(
                state: Self::State<D>,
                device: &burn::tensor::Device,
            ) -> Self::State<D> {
                state.to_device(device)
            }
        }
    };
}

pub(crate) use rotational_optimizer;
