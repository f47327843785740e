//! Which parameters a model makes scale-invariant, measured from the model itself. See
//! [`ScaleProbe`].

use core::fmt;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::model::channel_axes::ChannelAxisRules;
use crate::model::params::{ParamInfo, ParamVisitor, read_back, visit_params};

/// How a parameter's loss responds to rescaling it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Invariance {
    /// Scaling each output channel by its own factor leaves the loss unchanged (a weight
    /// feeding BatchNorm, or per-channel normalization). Implies [`Layer`](Self::Layer).
    Channel,
    /// Scaling the whole tensor leaves the loss unchanged, scaling channels apart does not (a
    /// weight feeding a normalization across all its outputs, e.g. LayerNorm).
    Layer,
    /// The loss changes.
    None,
    /// The tensor is all zeros, so rescaling cannot change it (e.g. a norm's offset at
    /// initialisation): untested, and treated as [`None`](Self::None) by
    /// [`RadialProjectionConfig::try_init_from_probe`](crate::RadialProjectionConfig::try_init_from_probe).
    Zero,
}

impl Invariance {
    /// `"channel"`, `"layer"` or `"none"`, the names of AdamP's branches.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Channel => "channel",
            Self::Layer => "layer",
            Self::None => "none",
            Self::Zero => "zero",
        }
    }
}

/// What the probe measured for one trainable parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeEntry {
    /// Path in the module, e.g. `blocks.0.conv.weight`.
    pub path: String,
    /// The parameter's id.
    pub id: ParamId,
    /// The struct that owns it, e.g. `Conv2d`.
    pub module_type: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// The output-channel axis used for the channel test (rank ≥ 2 only).
    pub channel_axis: Option<usize>,
    /// The verdict.
    pub invariance: Invariance,
    /// Largest `|L(c·w) − L(w)| / |L(w)|` over the factors, whole tensor scaled.
    pub layer_change: f64,
    /// The same with each output channel scaled by a different factor; measured only for
    /// rank ≥ 2 tensors that passed the layer test.
    pub channel_change: Option<f64>,
}

/// The probe's findings for one model and batch.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeReport {
    /// The loss of the unchanged model.
    pub baseline_loss: f64,
    /// The relative loss change below which a rescaling counts as invariant.
    pub tolerance: f64,
    /// Every trainable parameter, in visiting order.
    pub entries: Vec<ProbeEntry>,
    /// Number of loss evaluations, the baseline included.
    pub evaluations: usize,
}

impl ProbeReport {
    /// The entry of the parameter at `path`.
    pub fn get(&self, path: &str) -> Option<&ProbeEntry> {
        self.entries.iter().find(|e| e.path == path)
    }

    /// Paths of the parameters with the given verdict.
    pub fn paths(&self, invariance: Invariance) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|e| e.invariance == invariance)
            .map(|e| e.path.as_str())
            .collect()
    }

    /// One line per parameter: `path,module_type,shape,channel_axis,invariance,layer_change,channel_change`.
    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "path,module_type,shape,channel_axis,invariance,layer_change,channel_change\n",
        );
        for e in &self.entries {
            out.push_str(&format!(
                "{},{},{},{},{},{:e},{}\n",
                e.path,
                e.module_type,
                shape_text(&e.shape).replace(", ", "x"),
                e.channel_axis.map_or(String::new(), |a| a.to_string()),
                e.invariance.name(),
                e.layer_change,
                e.channel_change.map_or(String::new(), |c| format!("{c:e}")),
            ));
        }
        out
    }
}

fn shape_text(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    format!("[{}]", dims.join(", "))
}

impl fmt::Display for ProbeReport {
    /// A table: parameter, layer type, shape, verdict and measured relative loss changes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = |pick: &dyn Fn(&ProbeEntry) -> usize, title: &str| {
            self.entries
                .iter()
                .map(pick)
                .max()
                .unwrap_or(0)
                .max(title.len())
        };
        let w_path = width(&|e| e.path.len(), "parameter");
        let w_type = width(&|e| e.module_type.len(), "layer");
        let w_shape = width(&|e| shape_text(&e.shape).len(), "shape");
        writeln!(
            f,
            "baseline loss {:.6}; invariant when the relative loss change is below {:.0e}; \
             {} loss evaluations",
            self.baseline_loss, self.tolerance, self.evaluations
        )?;
        writeln!(
            f,
            "{:<w_path$}  {:<w_type$}  {:<w_shape$}  {:<10}  {:>9}  {:>9}",
            "parameter", "layer", "shape", "invariance", "Δ layer", "Δ channel"
        )?;
        for e in &self.entries {
            let channel = e
                .channel_change
                .map_or_else(|| "-".to_string(), |c| format!("{c:.1e}"));
            writeln!(
                f,
                "{:<w_path$}  {:<w_type$}  {:<w_shape$}  {:<10}  {:>9.1e}  {:>9}",
                e.path,
                e.module_type,
                shape_text(&e.shape),
                e.invariance.name(),
                e.layer_change,
                channel
            )?;
        }
        Ok(())
    }
}

/// Why a probe could not run.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeError {
    /// The loss closure panicked or returned an error.
    LossFailed {
        /// The parameter being rescaled (`None`: the unchanged model).
        path: Option<String>,
        /// The closure's message.
        message: String,
    },
    /// The loss is NaN or infinite.
    NonFiniteLoss {
        /// The parameter being rescaled (`None`: the unchanged model).
        path: Option<String>,
        /// The value.
        value: f64,
    },
    /// The closure returned a tensor of more than one element.
    NotScalar {
        /// Its length.
        len: usize,
    },
    /// No parameter of the model requires a gradient: probe the model on an autodiff device,
    /// as it trains (BatchNorm only normalizes by batch statistics there).
    NoTrainableParameters,
    /// A factor or the tolerance is invalid.
    InvalidSettings(String),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = |path: &Option<String>| match path {
            Some(p) => format!("with `{p}` rescaled"),
            None => "on the unchanged model".to_string(),
        };
        match self {
            Self::LossFailed { path, message } => {
                write!(f, "the loss closure failed {}: {message}", at(path))
            }
            Self::NonFiniteLoss { path, value } => {
                write!(f, "the loss is {value} {}", at(path))
            }
            Self::NotScalar { len } => write!(
                f,
                "the loss closure returned {len} values; it must return a single-element tensor"
            ),
            Self::NoTrainableParameters => write!(
                f,
                "no parameter requires a gradient: probe the model on an autodiff device \
                 (Device::autodiff), where normalization layers run as in training"
            ),
            Self::InvalidSettings(reason) => write!(f, "invalid probe settings: {reason}"),
        }
    }
}

impl std::error::Error for ProbeError {}

/// An empirical scale-invariance probe: rescales each trainable parameter, then each of its
/// output channels, and checks whether the loss moves.
///
/// For each parameter `w` and factor `c` (default 0.5 and 2):
///
/// ```text
/// layer test:    Δ_layer   = max_c |L(c·w) − L(w)| / |L(w)|
/// channel test:  Δ_channel = max_j |L(C_j·w) − L(w)| / |L(w)|,  C_j scales channel i by
///                                                         c[(i + j) mod #factors]
/// ```
///
/// It measures the model as it is: some invariances hold only at initialisation (the scale γ
/// of a BatchNorm followed by ReLU and another normalized layer is invariant while its offset
/// β is still 0). Δ below `tolerance` is invariance. The channel test runs only on rank ≥ 2 tensors that
/// passed the layer test (channel-wise invariance implies layer-wise), so a parameter costs
/// two loss evaluations, or four when it is layer-invariant; no backward pass. Probe the
/// model on an autodiff device so that BatchNorm normalizes with batch statistics; running
/// statistics are put back as they were afterwards.
///
/// ```
/// use burn::prelude::*;
/// use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
/// use burn::tensor::Distribution;
/// use scaleinv_optim::{Invariance, ScaleProbe};
///
/// #[derive(Module, Debug)]
/// struct Net { proj: Linear, norm: LayerNorm, head: Linear }
///
/// # #[cfg(feature = "flex")] {
/// let device = Device::flex().autodiff();
/// device.seed(0);
/// let net = Net {
///     proj: LinearConfig::new(6, 8).with_bias(false).init(&device),
///     norm: LayerNormConfig::new(8).init(&device),
///     head: LinearConfig::new(8, 1).init(&device),
/// };
/// let x = Tensor::<2>::random([16, 6], Distribution::Normal(0.0, 10.0), &device);
/// let report = ScaleProbe::new()
///     .run(&net, |m: &Net| m.head.forward(m.norm.forward(m.proj.forward(x.clone()))).square().mean())
///     .unwrap();
/// assert_eq!(report.get("proj.weight").unwrap().invariance, Invariance::Layer);
/// assert_eq!(report.get("head.weight").unwrap().invariance, Invariance::None);
/// println!("{report}");
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleProbe {
    /// The rescaling factors (each positive, finite and not 1).
    pub factors: Vec<f64>,
    /// The relative loss change below which a parameter counts as invariant (default 1e-4).
    /// f32 round-off moves the loss by ~1e-7 and a normalization's ε by about
    /// `ε / Var · |1/c² − 1|` (~1e-6 in the bundled CNN). A parameter the loss barely uses
    /// yet (attention queries at initialisation, whose logits are near zero) moves it by
    /// 1e-4 to 1e-3: a looser tolerance calls those invariant. Every measured change is in
    /// the report.
    pub tolerance: f64,
    /// Which axis of each weight is its output-channel axis.
    pub rules: ChannelAxisRules,
}

impl Default for ScaleProbe {
    fn default() -> Self {
        Self {
            factors: vec![0.5, 2.0],
            tolerance: 1e-4,
            rules: ChannelAxisRules::burn_nn(),
        }
    }
}

/// A trainable parameter and its shape.
struct Target {
    info: ParamInfo,
    shape: Vec<usize>,
}

impl ScaleProbe {
    /// Factors 0.5 and 2, tolerance 1e-4, Burn's channel axes.
    pub fn new() -> Self {
        Self::default()
    }

    /// With other rescaling factors.
    pub fn with_factors(self, factors: Vec<f64>) -> Self {
        Self { factors, ..self }
    }

    /// With another tolerance.
    pub fn with_tolerance(self, tolerance: f64) -> Self {
        Self { tolerance, ..self }
    }

    fn validate(&self) -> Result<(), ProbeError> {
        let bad = |reason: String| Err(ProbeError::InvalidSettings(reason));
        if self.factors.is_empty() {
            return bad("no rescaling factor".into());
        }
        if let Some(c) = self
            .factors
            .iter()
            .find(|c| !c.is_finite() || **c <= 0.0 || **c == 1.0)
        {
            return bad(format!(
                "factor {c}: expected a finite positive value other than 1"
            ));
        }
        if !(self.tolerance.is_finite() && self.tolerance > 0.0) {
            return bad(format!(
                "tolerance {}: expected a value in (0, ∞)",
                self.tolerance
            ));
        }
        Ok(())
    }

    /// Probes `model` with a loss closure that cannot fail (a panic inside it is caught and
    /// reported as [`ProbeError::LossFailed`]).
    pub fn run<M, F>(&self, model: &M, mut loss: F) -> Result<ProbeReport, ProbeError>
    where
        M: Module + Clone,
        F: FnMut(&M) -> Tensor<1>,
    {
        self.try_run(model, |m: &M| Ok::<_, String>(loss(m)))
    }

    /// Probes `model` with a fallible loss closure; its error ends the probe as
    /// [`ProbeError::LossFailed`].
    pub fn try_run<M, F, E>(&self, model: &M, mut loss: F) -> Result<ProbeReport, ProbeError>
    where
        M: Module + Clone,
        F: FnMut(&M) -> Result<Tensor<1>, E>,
        E: fmt::Display,
    {
        self.validate()?;
        let targets = trainable(model);
        if targets.is_empty() {
            return Err(ProbeError::NoTrainableParameters);
        }
        let axes = self
            .rules
            .infer(model)
            .map_err(|e| ProbeError::InvalidSettings(e.to_string()))?;
        let buffers = Buffers::save(model);
        let result = self.probe_all(
            model,
            &targets,
            |m, path| evaluate(&mut loss, m, path),
            |path| axes.axis_of(path),
        );
        buffers.restore(model);
        result
    }

    fn probe_all<M: Module + Clone>(
        &self,
        model: &M,
        targets: &[Target],
        mut loss: impl FnMut(&M, Option<&str>) -> Result<f64, ProbeError>,
        axis_of: impl Fn(&str) -> Option<usize>,
    ) -> Result<ProbeReport, ProbeError> {
        let baseline = loss(model, None)?;
        let mut evaluations = 1;
        let scale = baseline.abs().max(1e-12);
        let mut change = |target: &Target, factors: Rescale, evaluations: &mut usize| {
            let scaled = model.clone().map(&mut ScaleOne {
                id: target.info.id,
                factors,
            });
            *evaluations += 1;
            loss(&scaled, Some(&target.info.path)).map(|l| (l - baseline).abs() / scale)
        };

        let mut entries = Vec::with_capacity(targets.len());
        for target in targets {
            let mut entry = ProbeEntry {
                path: target.info.path.clone(),
                id: target.info.id,
                module_type: target.info.owner.clone(),
                shape: target.shape.clone(),
                channel_axis: None,
                invariance: Invariance::Zero,
                layer_change: 0.0,
                channel_change: None,
            };
            if target.info.norm == Some(0.0) {
                entries.push(entry);
                continue;
            }
            for &c in &self.factors {
                let delta = change(target, Rescale::Whole(c), &mut evaluations)?;
                entry.layer_change = entry.layer_change.max(delta);
            }
            let layer_invariant = entry.layer_change < self.tolerance;
            entry.channel_axis =
                (target.shape.len() >= 2).then(|| axis_of(&target.info.path).unwrap_or(0));
            if let Some(axis) = entry.channel_axis.filter(|_| layer_invariant) {
                let mut worst = 0.0f64;
                for shift in 0..self.factors.len() {
                    let factors = (0..target.shape[axis])
                        .map(|i| self.factors[(i + shift) % self.factors.len()])
                        .collect();
                    let rescale = Rescale::Channels { axis, factors };
                    worst = worst.max(change(target, rescale, &mut evaluations)?);
                }
                entry.channel_change = Some(worst);
            }
            entry.invariance = match (layer_invariant, entry.channel_change) {
                (true, Some(c)) if c < self.tolerance => Invariance::Channel,
                (true, _) => Invariance::Layer,
                (false, _) => Invariance::None,
            };
            entries.push(entry);
        }
        Ok(ProbeReport {
            baseline_loss: baseline,
            tolerance: self.tolerance,
            entries,
            evaluations,
        })
    }
}

/// One loss evaluation, with the closure's panics and errors turned into [`ProbeError`]s.
fn evaluate<M, F, E>(loss: &mut F, model: &M, path: Option<&str>) -> Result<f64, ProbeError>
where
    F: FnMut(&M) -> Result<Tensor<1>, E>,
    E: fmt::Display,
{
    let path = || path.map(str::to_string);
    let value = match catch_unwind(AssertUnwindSafe(|| loss(model))) {
        Ok(Ok(value)) => value,
        Ok(Err(e)) => {
            return Err(ProbeError::LossFailed {
                path: path(),
                message: e.to_string(),
            });
        }
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".to_string());
            return Err(ProbeError::LossFailed {
                path: path(),
                message,
            });
        }
    };
    let len = value.dims()[0];
    if len != 1 {
        return Err(ProbeError::NotScalar { len });
    }
    let value = read_back(value.detach())[0];
    if !value.is_finite() {
        return Err(ProbeError::NonFiniteLoss {
            path: path(),
            value,
        });
    }
    Ok(value)
}

/// Every parameter of `model` that requires a gradient, with its shape and norm.
fn trainable<M: Module>(model: &M) -> Vec<Target> {
    struct Collect(Vec<Target>);
    impl ParamVisitor for Collect {
        fn param<const D: usize>(&mut self, mut info: ParamInfo, param: &Param<Tensor<D>>) {
            let value = param.val();
            if value.is_require_grad() {
                let norm = value.clone().detach().square().sum().sqrt();
                info.norm = Some(read_back(norm)[0]);
                self.0.push(Target {
                    info,
                    shape: value.dims().to_vec(),
                });
            }
        }
    }
    let mut collect = Collect(Vec::new());
    visit_params(model, &mut collect);
    collect.0
}

/// How one parameter is rescaled.
#[derive(Clone)]
enum Rescale {
    /// The whole tensor by one factor.
    Whole(f64),
    /// Each index of `axis` by its own factor.
    Channels { axis: usize, factors: Vec<f64> },
}

/// Rescales the parameter `id` of a module, leaving every other one as it is.
struct ScaleOne {
    id: ParamId,
    factors: Rescale,
}

impl ModuleMapper for ScaleOne {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if param.id != self.id {
            return param;
        }
        let factors = self.factors.clone();
        param.map(|tensor| match factors {
            Rescale::Whole(c) => tensor * c,
            Rescale::Channels { axis, factors } => {
                let mut dims = [1usize; D];
                dims[axis] = factors.len();
                let factors: Vec<f32> = factors.iter().map(|&c| c as f32).collect();
                let factors = Tensor::<1>::from_floats(factors.as_slice(), &tensor.device())
                    .cast(tensor.dtype())
                    .reshape(dims);
                tensor * factors
            }
        })
    }
}

/// The values of every float tensor of a module (running statistics included), to put back
/// what the probe's training-mode forward passes change.
struct Buffers(HashMap<ParamId, (Tensor<1>, Vec<usize>)>);

impl Buffers {
    fn save<M: Module + Clone>(model: &M) -> Self {
        struct Collect(HashMap<ParamId, (Tensor<1>, Vec<usize>)>);
        impl ParamVisitor for Collect {
            fn param<const D: usize>(&mut self, info: ParamInfo, param: &Param<Tensor<D>>) {
                let value = param.val();
                let dims = value.dims().to_vec();
                let numel = value.shape().num_elements();
                self.0.insert(info.id, (value.reshape([numel]), dims));
            }
        }
        // Folds pending per-thread running-state updates into their values first.
        let _ = model.valid();
        let mut collect = Collect(HashMap::new());
        visit_params(model, &mut collect);
        Self(collect.0)
    }

    fn restore<M: Module + Clone>(self, model: &M) {
        struct Restore(HashMap<ParamId, (Tensor<1>, Vec<usize>)>);
        impl ModuleMapper for Restore {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
                match self.0.remove(&param.id) {
                    Some((value, dims)) => {
                        let mut shape = [0usize; D];
                        shape.copy_from_slice(&dims);
                        param.map(|_| value.reshape(shape))
                    }
                    None => param,
                }
            }
        }
        // The probe's own pending updates are folded in, then overwritten. Parameters are
        // immutable, so only the shared running states of `model` change.
        let _ = model.valid();
        let _ = model.clone().map(&mut Restore(self.0));
    }
}
