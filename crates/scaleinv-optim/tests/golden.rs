//! Golden replay: every trajectory recorded from the authors' reference implementations,
//! replayed step by step on every enabled backend.
//!
//! A case fails when any parameter at any step is off by more than `1e-6 + 1e-4·|want|`, or
//! (AdamP, SGDP) when the projection branch differs from the recorded one. Cases come from
//! `tests/golden/` and from the folder named by `SCALEINV_GOLDEN_DIR`; a case from that folder
//! whose optimizer does not exist fails.
//!
//! Which path the flex replay takes depends on this crate's `flex` feature (on by default),
//! which compiles the fused flex steps in: `cargo test -p scaleinv-optim`, and the workspace's
//! `--all-features`, replay AdamP, SGDP, Stable-SPAM, width-scaled AdamW and AdamC on flex
//! through the fused path (on by default in their configs), on ndarray through the tensor ops
//! and on wgpu through the CubeCL kernels; `--no-default-features` replays every case on flex
//! through the tensor ops.
//!
//! A case's config keys reach the optimizer's config through one rename table per optimizer
//! (`ADAMP_KEYS`, `SGDP_KEYS`, …): each key goes to a path in the config's JSON and the result
//! is deserialized, so a change of a config's layout is a change of paths in its table.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::optim::Optimizer;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, SgdConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use scaleinv_optim::{
    AdamCConfig, AdamPConfig, GradientStabilizer, GradientStabilizerConfig, Nap, NapConfig,
    RadialProjectionConfig, ResetMode, RotationalAdamWConfig, RotationalSgdmConfig, SgdpConfig,
    StableSpamConfig, WidthRole, WidthScaledAdamWConfig,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

const ABS_TOL: f64 = 1e-6;
const REL_TOL: f64 = 1e-4;

#[derive(Deserialize)]
struct Case {
    schema: u32,
    name: String,
    optimizer: String,
    config: BTreeMap<String, Value>,
    params: Vec<ParamSpec>,
    steps: Vec<Step>,
}

#[derive(Deserialize)]
struct ParamSpec {
    name: String,
    shape: Vec<usize>,
    channel_axis: Option<usize>,
    project: Option<bool>,
    role: Option<String>,
    normalized: Option<bool>,
    rotational: Option<bool>,
    init: Vec<f32>,
    /// The weight after the optimizer's set-up (rotational optimizers).
    centered_init: Option<Vec<f32>>,
}

#[derive(Deserialize)]
struct Step {
    lr: f64,
    grads: BTreeMap<String, Vec<f32>>,
    projection: Option<BTreeMap<String, String>>,
    expect: BTreeMap<String, Vec<f32>>,
}

/// An optimizer the replay can drive, with its projection decision when it has one (none by
/// default) and its set-up of a tensor before the first step (none by default).
trait Replayable: Optimizer {
    fn branch<const D: usize>(&self, _: &Tensor<D>, _: &Tensor<D>) -> Option<Tensor<1, Int>> {
        None
    }

    fn prepare<const D: usize>(&self, weight: Tensor<D>) -> Option<Tensor<D>> {
        let _ = weight;
        None
    }
}

/// The rotational optimizers: their set-up is their `prepare`.
macro_rules! replay_rotational {
    ($($optim:ty),*) => {$(
        impl Replayable for $optim {
            fn prepare<const D: usize>(&self, weight: Tensor<D>) -> Option<Tensor<D>> {
                Some(<$optim>::prepare(self, weight))
            }
        }
    )*};
}

replay_rotational!(
    scaleinv_optim::RotationalAdamW,
    scaleinv_optim::RotationalSgdm
);

/// The optimizers that project: their decision is their `scale_invariance().branch`.
macro_rules! replay_projecting {
    ($($optim:ty),*) => {$(
        impl Replayable for $optim {
            fn branch<const D: usize>(
                &self,
                param: &Tensor<D>,
                grad: &Tensor<D>,
            ) -> Option<Tensor<1, Int>> {
                Some(self.scale_invariance().branch(param, grad))
            }
        }
    )*};
}

replay_projecting!(
    scaleinv_optim::AdamP,
    scaleinv_optim::Sgdp,
    scaleinv_optim::RadialProjection<burn::optim::Adam>
);

impl Replayable for scaleinv_optim::StableSpam {}

impl Replayable for scaleinv_optim::WidthScaledAdamW {}

impl<O: Optimizer> Replayable for Nap<O> {}

impl<O: Optimizer> Replayable for GradientStabilizer<O> {}

impl Replayable for scaleinv_optim::AdamC {}

/// Where a case's config key (named as in the reference) goes in the optimizer's config, read
/// and written as the config's JSON (Burn's configs are serde types).
enum To {
    /// The value, at this path of the config's JSON.
    Path(&'static [&'static str]),
    /// Like [`To::Path`], and the case must give the key.
    Required(&'static [&'static str]),
    /// A pair `[a, b]`, to two paths.
    Pair(&'static [&'static str], &'static [&'static str]),
    /// The value converted by `convert(value, the config's JSON so far)`, to a path.
    Convert(
        &'static [&'static str],
        fn(&Value, &Value) -> Result<Value, String>,
    ),
    /// A key with no counterpart in this config (`lr`: Burn passes it to every step).
    Ignored,
}

/// One table per optimizer: every key its cases may hold, applied in this order. A key that
/// is not in the table fails the case. Paths are checked: a path the config does not have
/// fails the case too, so these tables are the one place to follow a change of the configs'
/// layout.
type Table = &'static [(&'static str, To)];

/// AdamP's ε, δ and the decay ratio are its projection's (the reference's `eps` serves both).
const ADAMP_KEYS: Table = &[
    ("lr", To::Ignored),
    ("betas", To::Pair(&["beta_1"], &["beta_2"])),
    ("eps", To::Path(&["projection", "epsilon"])),
    ("weight_decay", To::Path(&["weight_decay"])),
    ("delta", To::Path(&["projection", "delta"])),
    ("wd_ratio", To::Path(&["projection", "wd_ratio"])),
    ("nesterov", To::Path(&["nesterov"])),
    ("caution", To::Path(&["projection", "caution"])),
];

const SGDP_KEYS: Table = &[
    ("lr", To::Ignored),
    ("momentum", To::Path(&["momentum"])),
    ("dampening", To::Path(&["dampening"])),
    ("weight_decay", To::Path(&["weight_decay"])),
    ("nesterov", To::Path(&["nesterov"])),
    ("eps", To::Path(&["projection", "epsilon"])),
    ("delta", To::Path(&["projection", "delta"])),
    ("wd_ratio", To::Path(&["projection", "wd_ratio"])),
    ("caution", To::Path(&["projection", "caution"])),
];

/// Stable-SPAM's β1, read by the `gamma1 = -1` conversion.
const STABLE_SPAM_BETA_1: &[&str] = &["beta_1"];

const STABLE_SPAM_KEYS: Table = &[
    ("lr", To::Ignored),
    ("betas", To::Pair(STABLE_SPAM_BETA_1, &["beta_2"])),
    ("eps", To::Path(&["epsilon"])),
    ("weight_decay", To::Path(&["weight_decay"])),
    ("amsgrad", To::Path(&["amsgrad"])),
    ("gamma1", To::Convert(&["gamma_1"], gamma_1_or_beta_1)),
    ("gamma2", To::Path(&["gamma_2"])),
    ("gamma3", To::Path(&["theta"])),
    ("update_proj_gap", To::Path(&["reset_interval"])),
    ("total_T", To::Path(&["total_steps"])),
    ("eta_min", To::Path(&["eta_min"])),
    ("reset_mode", To::Convert(&["reset_mode"], reset_mode)),
];

const WIDTH_SCALED_ADAMW_KEYS: Table = &[
    ("lr", To::Ignored),
    ("weight_decay", To::Path(&["weight_decay"])),
    ("base_width", To::Required(&["base_width"])),
    ("width", To::Required(&["width"])),
    ("betas", To::Pair(&["beta_1"], &["beta_2"])),
    ("eps", To::Path(&["epsilon"])),
];

/// NaP's base optimizer when the case's `base` is `adam`: Burn's `AdamConfig`.
const NAP_ADAM_KEYS: Table = &[
    ("base", To::Ignored),
    ("lr", To::Ignored),
    ("betas", To::Pair(&["beta_1"], &["beta_2"])),
    ("eps", To::Path(&["epsilon"])),
];

/// NaP's base optimizer when the case's `base` is `sgd`: Burn's `SgdConfig`.
const NAP_SGD_KEYS: Table = &[
    ("base", To::Ignored),
    ("lr", To::Ignored),
    ("momentum", To::Convert(&["momentum"], pytorch_momentum)),
];

/// An AdamP case replayed as Burn's Adam inside a radial projection: Adam's part.
const PROJECTED_ADAM_ADAM_KEYS: Table = &[
    ("lr", To::Ignored),
    ("betas", To::Pair(&["beta_1"], &["beta_2"])),
    ("eps", To::Path(&["epsilon"])),
    ("weight_decay", To::Ignored),
    ("delta", To::Ignored),
    ("wd_ratio", To::Ignored),
    ("nesterov", To::Ignored),
    ("caution", To::Ignored),
];

/// An AdamP case replayed as Burn's Adam inside a radial projection: the projection's part.
const PROJECTED_ADAM_PROJECTION_KEYS: Table = &[
    ("lr", To::Ignored),
    ("betas", To::Ignored),
    ("eps", To::Path(&["projection", "epsilon"])),
    ("weight_decay", To::Path(&["weight_decay"])),
    ("delta", To::Path(&["projection", "delta"])),
    ("wd_ratio", To::Path(&["projection", "wd_ratio"])),
    ("nesterov", To::Ignored),
    ("caution", To::Path(&["projection", "caution"])),
];

/// The rotational options, named as in the reference (`epfml/REQ`).
macro_rules! rotation_keys {
    () => {
        [
            (
                "update_norm_decay_factor",
                To::Path(&["rotation", "update_norm_decay_factor"]),
            ),
            ("per_neuron", To::Path(&["rotation", "per_neuron"])),
            ("zero_mean", To::Path(&["rotation", "zero_mean"])),
            ("rotational_eps", To::Path(&["rotation", "rotational_eps"])),
            // The group's override, read by `rotational_override`.
            ("rotational", To::Ignored),
        ]
    };
}

const ROTATIONAL_ADAMW_KEYS: Table = &{
    let [a, b, c, d, e] = rotation_keys!();
    [
        ("lr", To::Ignored),
        ("betas", To::Pair(&["beta_1"], &["beta_2"])),
        ("eps", To::Path(&["epsilon"])),
        ("weight_decay", To::Path(&["weight_decay"])),
        a,
        b,
        c,
        d,
        e,
    ]
};

const ROTATIONAL_SGDM_KEYS: Table = &{
    let [a, b, c, d, e] = rotation_keys!();
    [
        ("lr", To::Ignored),
        ("momentum", To::Path(&["momentum"])),
        ("nesterov", To::Path(&["nesterov"])),
        ("weight_decay", To::Required(&["weight_decay"])),
        a,
        b,
        c,
        d,
        e,
    ]
};

/// AdamC: `max_lr` is the fixed peak learning rate.
const ADAMC_KEYS: Table = &[
    ("lr", To::Ignored),
    ("max_lr", To::Convert(&["peak_lr"], positive)),
    ("betas", To::Pair(&["beta_1"], &["beta_2"])),
    ("eps", To::Path(&["epsilon"])),
    ("weight_decay", To::Path(&["weight_decay"])),
];

/// GradientStabilizer's own keys (the base optimizer's are read by its table).
const GS_KEYS: Table = &[
    ("base", To::Ignored),
    ("lr", To::Ignored),
    ("betas", To::Ignored),
    ("eps", To::Ignored),
    ("weight_decay", To::Ignored),
    ("amsgrad", To::Ignored),
    ("momentum", To::Ignored),
    ("gamma1", To::Path(&["gamma_1"])),
    ("gamma2", To::Path(&["gamma_2"])),
    ("gs_eps", To::Path(&["epsilon"])),
    ("bias_correction", To::Path(&["bias_correction"])),
];

/// GradientStabilizer's base `adamw`: Burn's `AdamWConfig` (torch's AdamW: decay first).
const GS_ADAMW_KEYS: Table = &[
    ("base", To::Ignored),
    ("lr", To::Ignored),
    ("betas", To::Pair(&["beta_1"], &["beta_2"])),
    ("eps", To::Path(&["epsilon"])),
    ("weight_decay", To::Path(&["weight_decay"])),
    ("amsgrad", To::Path(&["amsgrad"])),
    ("gamma1", To::Ignored),
    ("gamma2", To::Ignored),
    ("gs_eps", To::Ignored),
    ("bias_correction", To::Ignored),
];

/// GradientStabilizer's base `adam`: Burn's `AdamConfig` (torch's Adam: L2 penalty).
const GS_ADAM_KEYS: Table = &[
    ("base", To::Ignored),
    ("lr", To::Ignored),
    ("betas", To::Pair(&["beta_1"], &["beta_2"])),
    ("eps", To::Path(&["epsilon"])),
    ("weight_decay", To::Convert(&["weight_decay"], l2_penalty)),
    ("amsgrad", To::Path(&["amsgrad"])),
    ("gamma1", To::Ignored),
    ("gamma2", To::Ignored),
    ("gs_eps", To::Ignored),
    ("bias_correction", To::Ignored),
];

/// GradientStabilizer's base `sgd`: Burn's `SgdConfig` with PyTorch's momentum.
const GS_SGD_KEYS: Table = &[
    ("base", To::Ignored),
    ("lr", To::Ignored),
    ("momentum", To::Convert(&["momentum"], pytorch_momentum)),
    ("weight_decay", To::Convert(&["weight_decay"], l2_penalty)),
    ("gamma1", To::Ignored),
    ("gamma2", To::Ignored),
    ("gs_eps", To::Ignored),
    ("bias_correction", To::Ignored),
];

/// A number that must be positive.
fn positive(value: &Value, _: &Value) -> Result<Value, String> {
    match value.as_f64() {
        Some(v) if v > 0.0 => Ok(value.clone()),
        _ => Err(format!("`{value}` is not a positive number")),
    }
}

/// PyTorch's coupled `weight_decay` (an L2 penalty added to the gradient): Burn's
/// `WeightDecayConfig`; none at 0.
fn l2_penalty(value: &Value, _: &Value) -> Result<Value, String> {
    let penalty = value
        .as_f64()
        .ok_or(format!("weight_decay `{value}` is not a number"))?;
    if penalty == 0.0 {
        return Ok(Value::Null);
    }
    serde_json::to_value(WeightDecayConfig::new(penalty as f32)).map_err(|e| e.to_string())
}

/// The reference's `gamma1 = -1` means "use β1".
fn gamma_1_or_beta_1(value: &Value, config: &Value) -> Result<Value, String> {
    if value.as_f64() == Some(-1.0) {
        at(config, STABLE_SPAM_BETA_1).cloned()
    } else {
        Ok(value.clone())
    }
}

fn reset_mode(value: &Value, _: &Value) -> Result<Value, String> {
    let mode = match value.as_str() {
        Some("reference") => ResetMode::Reference,
        Some("clean") => ResetMode::Clean,
        _ => return Err(format!("unknown reset_mode `{value}`")),
    };
    serde_json::to_value(mode).map_err(|e| e.to_string())
}

/// PyTorch's SGD momentum: no dampening, no Nesterov (Burn's default dampening is 0.1); none
/// at 0.
fn pytorch_momentum(value: &Value, _: &Value) -> Result<Value, String> {
    let momentum = value
        .as_f64()
        .ok_or(format!("momentum `{value}` is not a number"))?;
    if momentum == 0.0 {
        return Ok(Value::Null);
    }
    let config = MomentumConfig::new()
        .with_momentum(momentum)
        .with_dampening(0.0);
    serde_json::to_value(config).map_err(|e| e.to_string())
}

/// The value at `path` of a config's JSON.
fn at<'v>(config: &'v Value, path: &[&str]) -> Result<&'v Value, String> {
    path.iter().try_fold(config, |v, field| {
        v.get(field)
            .ok_or(format!("the config has no field `{}`", path.join(".")))
    })
}

/// Sets the value at `path`, which the config must have.
fn set(config: &mut Value, path: &[&str], value: Value) -> Result<(), String> {
    let mut v = config;
    for field in path {
        v = v
            .get_mut(field)
            .ok_or(format!("the config has no field `{}`", path.join(".")))?;
    }
    *v = value;
    Ok(())
}

/// `start` with the case's `config` keys put in through `table`.
fn overlay<C: Serialize + DeserializeOwned>(
    start: C,
    table: Table,
    config: &BTreeMap<String, Value>,
) -> Result<C, String> {
    if let Some(unknown) = config
        .keys()
        .find(|k| !table.iter().any(|(key, _)| key == k))
    {
        return Err(format!("unknown config key `{unknown}`"));
    }
    let mut json = serde_json::to_value(start).map_err(|e| e.to_string())?;
    for (key, to) in table {
        let value = config.get(*key);
        match (to, value) {
            (To::Required(_), None) => return Err(format!("`{key}` is required")),
            (To::Ignored, _) | (_, None) => {}
            (To::Path(path) | To::Required(path), Some(v)) => set(&mut json, path, v.clone())?,
            (To::Pair(a, b), Some(v)) => match v.as_array().map(Vec::as_slice) {
                Some([x, y]) => {
                    set(&mut json, a, x.clone())?;
                    set(&mut json, b, y.clone())?;
                }
                _ => return Err(format!("`{key}` must be a pair, not {v}")),
            },
            (To::Convert(path, convert), Some(v)) => {
                let v = convert(v, &json).map_err(|e| format!("`{key}`: {e}"))?;
                set(&mut json, path, v)?;
            }
        }
    }
    serde_json::from_value(json).map_err(|e| format!("config: {e}"))
}

fn adamp_config(config: &BTreeMap<String, Value>) -> Result<AdamPConfig, String> {
    let c = overlay(AdamPConfig::new(), ADAMP_KEYS, config)?;
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

fn sgdp_config(config: &BTreeMap<String, Value>) -> Result<SgdpConfig, String> {
    let c = overlay(SgdpConfig::new(), SGDP_KEYS, config)?;
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

fn stable_spam_config(config: &BTreeMap<String, Value>) -> Result<StableSpamConfig, String> {
    let c = overlay(StableSpamConfig::new(), STABLE_SPAM_KEYS, config)?;
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

fn width_scaled_adamw_config(
    config: &BTreeMap<String, Value>,
) -> Result<WidthScaledAdamWConfig, String> {
    // Both widths come from the case (`Required`).
    let c = overlay(
        WidthScaledAdamWConfig::new(1, 1),
        WIDTH_SCALED_ADAMW_KEYS,
        config,
    )?;
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

fn adamc_config(config: &BTreeMap<String, Value>) -> Result<AdamCConfig, String> {
    let c = overlay(AdamCConfig::new(), ADAMC_KEYS, config)?;
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

fn gradient_stabilizer_config(
    config: &BTreeMap<String, Value>,
) -> Result<GradientStabilizerConfig, String> {
    let c = overlay(GradientStabilizerConfig::new(), GS_KEYS, config)?;
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

/// Torch's AdamW defaults (ε 1e-8, λ 1e-2; Burn's are 1e-5 and 1e-4), before a case's keys.
fn reference_adamw() -> AdamWConfig {
    AdamWConfig::new()
        .with_epsilon(1e-8)
        .with_weight_decay(1e-2)
}

/// GradientStabilizer's base optimizer, named by the case's `base` key.
enum GsBase {
    AdamW(AdamWConfig),
    Adam(AdamConfig),
    Sgd(SgdConfig),
}

fn gs_base(config: &BTreeMap<String, Value>) -> Result<GsBase, String> {
    // Each base's table also lists GradientStabilizer's keys (ignored); a key of another base
    // (`momentum` for AdamW) fails it by name.
    let own = config;
    match config.get("base").and_then(Value::as_str) {
        Some("adamw") => Ok(GsBase::AdamW(overlay(
            reference_adamw(),
            GS_ADAMW_KEYS,
            own,
        )?)),
        Some("adam") => Ok(GsBase::Adam(overlay(reference_adam(), GS_ADAM_KEYS, own)?)),
        Some("sgd") => Ok(GsBase::Sgd(overlay(SgdConfig::new(), GS_SGD_KEYS, own)?)),
        other => Err(format!(
            "unknown GradientStabilizer base optimizer {other:?}"
        )),
    }
}

fn replay_gradient_stabilizer(case: &Case, device: &Device) -> Outcome {
    let gs = match gradient_stabilizer_config(&case.config) {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(e),
    };
    match gs_base(&case.config) {
        Ok(GsBase::AdamW(c)) => replay_with(|_| gs.wrap(c.build()), case, device),
        Ok(GsBase::Adam(c)) => replay_with(|_| gs.wrap(c.build()), case, device),
        Ok(GsBase::Sgd(c)) => replay_with(|_| gs.wrap(c.build()), case, device),
        Err(e) => Outcome::Failed(e),
    }
}

/// Replays an AdamC case: each tensor with the corrected decay when the case marks it
/// `normalized`.
fn replay_adamc(case: &Case, device: &Device) -> Outcome {
    match adamc_config(&case.config) {
        Ok(c) => replay_with(|s| c.build(s.normalized.unwrap_or(false)), case, device),
        Err(e) => Outcome::Failed(e),
    }
}

/// Burn's Adam with the reference's ε (Burn's default is 1e-5), before a case's keys.
fn reference_adam() -> AdamConfig {
    AdamConfig::new().with_epsilon(1e-8)
}

/// The role a width-scaled AdamW case gives a tensor (`matrix` or `vector`).
fn width_role(spec: &ParamSpec) -> Result<WidthRole, String> {
    match spec.role.as_deref() {
        Some("matrix") => Ok(WidthRole::Matrix),
        Some("vector") => Ok(WidthRole::Vector),
        other => Err(format!("{}: unknown role {other:?}", spec.name)),
    }
}

/// NaP's base optimizer, named by the case's `base` key.
enum NapBase {
    Adam(AdamConfig),
    Sgd(SgdConfig),
}

fn nap_base(config: &BTreeMap<String, Value>) -> Result<NapBase, String> {
    match config.get("base").and_then(Value::as_str) {
        Some("adam") => Ok(NapBase::Adam(overlay(
            reference_adam(),
            NAP_ADAM_KEYS,
            config,
        )?)),
        Some("sgd") => Ok(NapBase::Sgd(overlay(
            SgdConfig::new(),
            NAP_SGD_KEYS,
            config,
        )?)),
        other => Err(format!("unknown NaP base optimizer {other:?}")),
    }
}

/// The case's group override `rotational` (`null` or absent: the default rule).
fn rotational_override(config: &BTreeMap<String, Value>) -> Result<Option<bool>, String> {
    match config.get("rotational") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(format!("`rotational` must be a bool or null, not {other}")),
    }
}

/// Replays a rotational case: each tensor's optimizer by the case's override or the default
/// rule, which must select the tensors the case marks `rotational`.
/// `build(forced, axis)` gives the optimizer of a tensor whose neurons lie on `axis` (its
/// channel axis in the case).
fn replay_rotational<O: Replayable>(
    build: impl Fn(Option<bool>, usize) -> Result<O, String>,
    is_rotational: impl Fn(&O, usize) -> bool,
    case: &Case,
    device: &Device,
) -> Outcome {
    let forced = match rotational_override(&case.config) {
        Ok(forced) => forced,
        Err(e) => return Outcome::Failed(e),
    };
    let axis = |s: &ParamSpec| s.channel_axis.unwrap_or(0);
    for spec in &case.params {
        let optim = match build(forced, axis(spec)) {
            Ok(o) => o,
            Err(e) => return Outcome::Failed(e),
        };
        let ours = is_rotational(&optim, spec.shape.len());
        if let Some(recorded) = spec.rotational
            && recorded != ours
        {
            return Outcome::Failed(format!(
                "{}: rotational here {ours}, in the case {recorded}",
                spec.name
            ));
        }
    }
    replay_with(
        |s| build(forced, axis(s)).expect("built above"),
        case,
        device,
    )
}

fn rotational_adamw_config(
    config: &BTreeMap<String, Value>,
) -> Result<RotationalAdamWConfig, String> {
    let c = overlay(RotationalAdamWConfig::new(), ROTATIONAL_ADAMW_KEYS, config)?;
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

fn rotational_sgdm_config(
    config: &BTreeMap<String, Value>,
) -> Result<RotationalSgdmConfig, String> {
    // The weight decay comes from the case (`Required`).
    let c = overlay(RotationalSgdmConfig::new(0.0), ROTATIONAL_SGDM_KEYS, config)?;
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

/// Replays a NaP case, checking first that the default rule (rank ≥ 2 projected) selects the
/// tensors the case projects.
fn replay_nap(case: &Case, device: &Device) -> Outcome {
    let nap = NapConfig::new();
    match nap_base(&case.config) {
        Ok(NapBase::Adam(c)) => replay_projected(nap.wrap(c.build()), case, device),
        Ok(NapBase::Sgd(c)) => replay_projected(nap.wrap(c.build()), case, device),
        Err(e) => Outcome::Failed(e),
    }
}

fn replay_projected<O: Optimizer>(nap: Nap<O>, case: &Case, device: &Device) -> Outcome {
    for spec in &case.params {
        let recorded = spec.project.unwrap_or(false);
        if nap.projects(spec.shape.len()) != recorded {
            return Outcome::Failed(format!(
                "{}: the default rule projects rank {}: {}, the case: {recorded}",
                spec.name,
                spec.shape.len(),
                !recorded
            ));
        }
    }
    replay_with(|_| nap.clone(), case, device)
}

/// The outcome of one case on one device.
enum Outcome {
    Ok {
        max_abs_err: f64,
        /// A hash of the bits of every value the replay produced, for comparing runs.
        bits: u64,
    },
    Failed(String),
    /// A bundled case whose optimizer the crate does not have yet.
    Pending(String),
}

/// Largest error of one parameter over the run and the hash of its values, or the first
/// violation.
type ParamResult = Result<(f64, u64), String>;

/// FNV-1a over the bits of `values`, continuing from `hash`.
fn hash_bits(hash: u64, values: &[f32]) -> u64 {
    values.iter().fold(hash, |h, v| {
        (h ^ u64::from(v.to_bits())).wrapping_mul(0x0100_0000_01b3)
    })
}

fn tensor<const D: usize>(values: &[f32], shape: &[usize], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape.to_vec()), device)
}

fn replay_param<O: Replayable, const D: usize>(
    opt: &O,
    case: &Case,
    spec: &ParamSpec,
    device: &Device,
) -> ParamResult {
    let numel: usize = spec.shape.iter().product();
    if spec.init.len() != numel {
        return Err(format!(
            "{}: init has {} values for shape {:?}",
            spec.name,
            spec.init.len(),
            spec.shape
        ));
    }
    let mut param = tensor::<D>(&spec.init, &spec.shape, device);
    if let Some(want) = &spec.centered_init {
        let prepared = opt
            .prepare(param)
            .ok_or("the case has a set-up (centered_init) the optimizer does not")?;
        let got = common::values(prepared.clone());
        if got.len() != want.len() {
            return Err(format!(
                "{}: centered_init has {} values",
                spec.name,
                want.len()
            ));
        }
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let err = (g as f64 - w as f64).abs();
            if err.is_nan() || err > ABS_TOL + REL_TOL * (w as f64).abs() {
                return Err(format!(
                    "set-up: {}[{i}] = {g}, reference {w} (|err| = {err:.3e})",
                    spec.name
                ));
            }
        }
        param = prepared;
    }
    let mut state = None;
    let mut max_err = 0.0f64;
    let mut bits = 0xcbf2_9ce4_8422_2325;
    for (k, step) in case.steps.iter().enumerate() {
        let (Some(g), Some(want)) = (step.grads.get(&spec.name), step.expect.get(&spec.name))
        else {
            return Err(format!("step {k}: no grads/expect for {}", spec.name));
        };
        let grad = tensor::<D>(g, &spec.shape, device);
        if let Some(recorded) = step.projection.as_ref().and_then(|p| p.get(&spec.name)) {
            let code = opt
                .branch(&param, &grad)
                .ok_or("the optimizer has no projection to compare")?;
            let got = common::branch(code).name();
            if got != recorded {
                return Err(format!(
                    "step {k}: {} took projection `{got}`, reference `{recorded}`",
                    spec.name
                ));
            }
        }
        let (next, next_state) = opt.step(step.lr, param, grad, state);
        let got = common::values(next.clone());
        bits = hash_bits(bits, &got);
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let err = (g as f64 - w as f64).abs();
            if err.is_nan() || err > ABS_TOL + REL_TOL * (w as f64).abs() {
                return Err(format!(
                    "step {k}: {}[{i}] = {g}, reference {w} (|err| = {err:.3e})",
                    spec.name
                ));
            }
            max_err = max_err.max(err);
        }
        param = next;
        state = next_state;
    }
    Ok((max_err, bits))
}

fn replay_with<O: Replayable>(
    make: impl Fn(&ParamSpec) -> O,
    case: &Case,
    device: &Device,
) -> Outcome {
    let mut max_abs_err = 0.0f64;
    let mut bits = 0u64;
    for spec in &case.params {
        let opt = make(spec);
        let result = match spec.shape.len() {
            1 => replay_param::<O, 1>(&opt, case, spec, device),
            2 => replay_param::<O, 2>(&opt, case, spec, device),
            3 => replay_param::<O, 3>(&opt, case, spec, device),
            4 => replay_param::<O, 4>(&opt, case, spec, device),
            5 => replay_param::<O, 5>(&opt, case, spec, device),
            r => Err(format!("{}: rank {r} is not replayed", spec.name)),
        };
        match result {
            Ok((e, b)) => {
                max_abs_err = max_abs_err.max(e);
                bits = bits.rotate_left(7) ^ b;
            }
            Err(msg) => return Outcome::Failed(msg),
        }
    }
    Outcome::Ok { max_abs_err, bits }
}

fn replay(case: &Case, device: &Device) -> Outcome {
    if case.schema != 1 {
        return Outcome::Failed(format!(
            "schema {} is not supported (expected 1)",
            case.schema
        ));
    }
    let axis = |spec: &ParamSpec| spec.channel_axis.unwrap_or(0);
    match case.optimizer.as_str() {
        "adamp" => match adamp_config(&case.config) {
            Ok(c) => replay_with(
                |s| c.clone().with_channel_axis(axis(s)).build(),
                case,
                device,
            ),
            Err(e) => Outcome::Failed(e),
        },
        "sgdp" => match sgdp_config(&case.config) {
            Ok(c) => replay_with(
                |s| c.clone().with_channel_axis(axis(s)).build(),
                case,
                device,
            ),
            Err(e) => Outcome::Failed(e),
        },
        "stable_spam" => match stable_spam_config(&case.config) {
            Ok(c) => replay_with(|_| c.build(), case, device),
            Err(e) => Outcome::Failed(e),
        },
        "nap" => replay_nap(case, device),
        "rotational_adamw" => match rotational_adamw_config(&case.config) {
            Ok(c) => replay_rotational(
                |forced, axis| {
                    let c = c.clone().with_neuron_axis(axis);
                    match forced {
                        Some(b) => c.try_build_for(b),
                        None => c.try_build(),
                    }
                    .map_err(|e| e.to_string())
                },
                |o, rank| o.is_rotational(rank),
                case,
                device,
            ),
            Err(e) => Outcome::Failed(e),
        },
        "rotational_sgdm" => match rotational_sgdm_config(&case.config) {
            Ok(c) => replay_rotational(
                |forced, axis| {
                    let c = c.clone().with_neuron_axis(axis);
                    match forced {
                        Some(b) => c.try_build_for(b),
                        None => c.try_build(),
                    }
                    .map_err(|e| e.to_string())
                },
                |o, rank| o.is_rotational(rank),
                case,
                device,
            ),
            Err(e) => Outcome::Failed(e),
        },
        "gradient_stabilizer" => replay_gradient_stabilizer(case, device),
        "adamc" => replay_adamc(case, device),
        "width_scaled_adamw" => {
            let roles: Result<Vec<_>, _> = case.params.iter().map(width_role).collect();
            match (width_scaled_adamw_config(&case.config), roles) {
                (Ok(c), Ok(_)) => replay_with(
                    |s| c.build(width_role(s).expect("checked above")),
                    case,
                    device,
                ),
                (Err(e), _) | (_, Err(e)) => Outcome::Failed(e),
            }
        }
        other => Outcome::Pending(format!("optimizer `{other}` is not implemented")),
    }
}

fn load_cases(dir: &Path) -> Vec<(PathBuf, Result<Case, String>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read golden folder {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let case = std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|text| {
                    serde_json::from_str::<Case>(&text).map_err(|e| format!("bad case file: {e}"))
                });
            (path, case)
        })
        .collect()
}

#[test]
fn golden_cases_match_the_references() {
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut sources = vec![(bundled, false)];
    if let Ok(extra) = std::env::var("SCALEINV_GOLDEN_DIR") {
        sources.push((PathBuf::from(extra), true));
    }

    let mut failures = Vec::new();
    let mut passed = 0;
    for (dir, strict) in sources {
        let cases = load_cases(&dir);
        assert!(!cases.is_empty(), "no *.json case in {}", dir.display());
        for (path, case) in cases {
            let case = match case {
                Ok(case) => case,
                Err(e) => {
                    failures.push(format!("golden {}: {e}", path.display()));
                    continue;
                }
            };
            for (device_name, device) in common::devices() {
                let label = format!("golden {} [{device_name}]", case.name);
                match replay(&case, &device) {
                    Outcome::Ok { max_abs_err, .. } => {
                        report(format!("{label}: ok max_abs_err={max_abs_err:.3e}"));
                        passed += 1;
                    }
                    Outcome::Failed(msg) => {
                        report(format!("{label}: FAILED {msg}"));
                        failures.push(format!("{label}: {msg}"));
                    }
                    Outcome::Pending(msg) if strict => {
                        report(format!("{label}: FAILED {msg}"));
                        failures.push(format!("{label}: {msg}"));
                    }
                    Outcome::Pending(msg) => report(format!("{label}: pending ({msg})")),
                }
            }
        }
    }
    assert!(passed > 0, "no golden case was replayed");
    assert!(
        failures.is_empty(),
        "{} golden failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every case replayed on flex gives the same bits on 1, 2 and 3 threads (the fused loops split
/// large tensors over rayon's current pool on fixed chunks).
#[test]
fn golden_cases_give_the_same_bits_on_any_number_of_threads() {
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")];
    dirs.extend(std::env::var("SCALEINV_GOLDEN_DIR").map(PathBuf::from));
    let device = Device::flex();
    let mut compared = 0;
    for (path, case) in dirs.iter().flat_map(|d| load_cases(d)) {
        let Ok(case) = case else { continue };
        let bits = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build();
            match pool
                .expect("a thread pool")
                .install(|| replay(&case, &device))
            {
                Outcome::Ok { bits, .. } => Some(bits),
                _ => None,
            }
        };
        let Some(one) = bits(1) else { continue };
        for threads in [2, 3] {
            assert_eq!(
                bits(threads),
                Some(one),
                "{}: 1 vs {threads} threads",
                path.display()
            );
        }
        compared += 1;
    }
    assert!(compared >= 10, "only {compared} cases compared");
}

/// The radial projection around Burn's Adam is AdamP: replayed on every AdamP case that Burn's
/// Adam can express (Burn's Adam has no Nesterov form).
#[test]
fn projected_burn_adam_matches_the_adamp_cases() {
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut failures = Vec::new();
    let mut replayed = 0;
    for (path, case) in load_cases(&bundled) {
        let case = case.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if case.optimizer != "adamp" {
            continue;
        }
        adamp_config(&case.config).expect("a valid AdamP case");
        if case.config.get("nesterov") == Some(&Value::Bool(true)) {
            report(format!("projected adam {}: skipped (Nesterov)", case.name));
            continue;
        }
        let adam = overlay(reference_adam(), PROJECTED_ADAM_ADAM_KEYS, &case.config)
            .expect("Adam's part of an AdamP case")
            .build();
        let projection = overlay(
            RadialProjectionConfig::new(),
            PROJECTED_ADAM_PROJECTION_KEYS,
            &case.config,
        )
        .expect("the projection's part of an AdamP case");
        for (device_name, device) in common::devices() {
            let label = format!("projected adam {} [{device_name}]", case.name);
            let outcome = replay_with(
                |s| {
                    projection
                        .clone()
                        .with_channel_axis(s.channel_axis.unwrap_or(0))
                        .wrap(adam.clone())
                },
                &case,
                &device,
            );
            match outcome {
                Outcome::Ok { max_abs_err, .. } => {
                    report(format!("{label}: ok max_abs_err={max_abs_err:.3e}"));
                    replayed += 1;
                }
                Outcome::Failed(msg) | Outcome::Pending(msg) => {
                    report(format!("{label}: FAILED {msg}"));
                    failures.push(format!("{label}: {msg}"));
                }
            }
        }
    }
    assert!(replayed >= 2, "too few AdamP cases replayed: {replayed}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Writes a result line straight to stdout, past the test harness's capture, so every run
/// shows one line per case and device.
fn report(line: String) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

/// Every path of every rename table exists in its config, so a change of a config's layout
/// shows here by name, before any replay.
#[test]
fn every_rename_table_path_exists_in_its_config() {
    let json = |v: Result<Value, serde_json::Error>| v.expect("a config serializes");
    let tables: [(&str, Table, Value); 15] = [
        (
            "rotational_adamw",
            ROTATIONAL_ADAMW_KEYS,
            json(serde_json::to_value(RotationalAdamWConfig::new())),
        ),
        (
            "rotational_sgdm",
            ROTATIONAL_SGDM_KEYS,
            json(serde_json::to_value(RotationalSgdmConfig::new(0.0))),
        ),
        (
            "adamc",
            ADAMC_KEYS,
            json(serde_json::to_value(AdamCConfig::new())),
        ),
        (
            "gradient_stabilizer",
            GS_KEYS,
            json(serde_json::to_value(GradientStabilizerConfig::new())),
        ),
        (
            "gradient_stabilizer adamw",
            GS_ADAMW_KEYS,
            json(serde_json::to_value(reference_adamw())),
        ),
        (
            "gradient_stabilizer adam",
            GS_ADAM_KEYS,
            json(serde_json::to_value(reference_adam())),
        ),
        (
            "gradient_stabilizer sgd",
            GS_SGD_KEYS,
            json(serde_json::to_value(SgdConfig::new())),
        ),
        (
            "adamp",
            ADAMP_KEYS,
            json(serde_json::to_value(AdamPConfig::new())),
        ),
        (
            "sgdp",
            SGDP_KEYS,
            json(serde_json::to_value(SgdpConfig::new())),
        ),
        (
            "stable_spam",
            STABLE_SPAM_KEYS,
            json(serde_json::to_value(StableSpamConfig::new())),
        ),
        (
            "width_scaled_adamw",
            WIDTH_SCALED_ADAMW_KEYS,
            json(serde_json::to_value(WidthScaledAdamWConfig::new(1, 1))),
        ),
        (
            "nap adam",
            NAP_ADAM_KEYS,
            json(serde_json::to_value(reference_adam())),
        ),
        (
            "nap sgd",
            NAP_SGD_KEYS,
            json(serde_json::to_value(SgdConfig::new())),
        ),
        (
            "projected adam: adam",
            PROJECTED_ADAM_ADAM_KEYS,
            json(serde_json::to_value(reference_adam())),
        ),
        (
            "projected adam: projection",
            PROJECTED_ADAM_PROJECTION_KEYS,
            json(serde_json::to_value(RadialProjectionConfig::new())),
        ),
    ];
    for (name, table, config) in tables {
        for (key, to) in table {
            let paths: Vec<&[&str]> = match to {
                To::Path(p) | To::Required(p) | To::Convert(p, _) => vec![p],
                To::Pair(a, b) => vec![a, b],
                To::Ignored => vec![],
            };
            for path in paths {
                if let Err(e) = at(&config, path) {
                    panic!("{name}: `{key}`: {e}");
                }
            }
        }
    }
}

/// A config key that the optimizer's table does not list fails the case, naming the key; the
/// listed keys reach the config.
#[test]
fn an_unknown_config_key_is_refused_by_name() {
    let config = |text: &str| -> BTreeMap<String, Value> {
        serde_json::from_str(text).expect("a JSON object")
    };
    let err = adamp_config(&config(r#"{"lr": 1e-3, "epsilon_typo": 1e-6}"#)).unwrap_err();
    assert!(err.contains("`epsilon_typo`"), "{err}");
    let err = nap_base(&config(r#"{"base": "sgd", "betas": [0.9, 0.99]}"#))
        .err()
        .expect("betas refused for NaP's SGD");
    assert!(err.contains("`betas`"), "{err}");
    let err = width_scaled_adamw_config(&config(r#"{"width": 4}"#)).unwrap_err();
    assert!(err.contains("`base_width`"), "{err}");

    let given = adamp_config(&config(
        r#"{"eps": 1e-6, "betas": [0.8, 0.9], "nesterov": true}"#,
    ))
    .expect("valid");
    let want = AdamPConfig::new()
        .with_epsilon(1e-6)
        .with_beta_1(0.8)
        .with_beta_2(0.9)
        .with_nesterov(true);
    assert_eq!(
        serde_json::to_value(given).unwrap(),
        serde_json::to_value(want).unwrap()
    );
    let spam = stable_spam_config(&config(
        r#"{"betas": [0.7, 0.9], "gamma1": -1, "reset_mode": "clean", "total_T": 9}"#,
    ))
    .expect("valid");
    let want = StableSpamConfig::new()
        .with_beta_1(0.7)
        .with_beta_2(0.9)
        .with_gamma_1(0.7)
        .with_reset_mode(ResetMode::Clean)
        .with_total_steps(Some(9));
    assert_eq!(
        serde_json::to_value(spam).unwrap(),
        serde_json::to_value(want).unwrap()
    );
}
