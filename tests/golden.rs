//! Golden replay: every trajectory recorded from the authors' reference implementations,
//! replayed step by step on every enabled backend.
//!
//! A case fails when any parameter at any step is off by more than `1e-6 + 1e-4·|want|`, or
//! (AdamP, SGDP) when the projection branch differs from the recorded one. Cases come from
//! `tests/golden/` and from the folder named by `SCALEINV_GOLDEN_DIR`; a case from that folder
//! whose optimizer does not exist fails.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::optim::Optimizer;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, SgdConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use scaleinv::{
    AdamPConfig, Nap, NapConfig, RadialProjectionConfig, ResetMode, SgdpConfig, StableSpamConfig,
    WidthRole, WidthScaledAdamWConfig,
};
use serde::Deserialize;
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
    init: Vec<f32>,
}

#[derive(Deserialize)]
struct Step {
    lr: f64,
    grads: BTreeMap<String, Vec<f32>>,
    projection: Option<BTreeMap<String, String>>,
    expect: BTreeMap<String, Vec<f32>>,
}

/// An optimizer the replay can drive, with its projection decision when it has one.
trait Replayable: Optimizer {
    fn branch<const D: usize>(&self, param: &Tensor<D>, grad: &Tensor<D>)
    -> Option<Tensor<1, Int>>;
}

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
    scaleinv::AdamP,
    scaleinv::Sgdp,
    scaleinv::RadialProjection<burn::optim::Adam>
);

impl Replayable for scaleinv::StableSpam {
    fn branch<const D: usize>(&self, _: &Tensor<D>, _: &Tensor<D>) -> Option<Tensor<1, Int>> {
        None
    }
}

impl Replayable for scaleinv::WidthScaledAdamW {
    fn branch<const D: usize>(&self, _: &Tensor<D>, _: &Tensor<D>) -> Option<Tensor<1, Int>> {
        None
    }
}

impl<O: Optimizer> Replayable for Nap<O> {
    fn branch<const D: usize>(&self, _: &Tensor<D>, _: &Tensor<D>) -> Option<Tensor<1, Int>> {
        None
    }
}

/// Reads config keys, failing on any key the case's optimizer does not know.
struct Keys<'a> {
    config: &'a BTreeMap<String, Value>,
}

impl<'a> Keys<'a> {
    fn new(config: &'a BTreeMap<String, Value>, known: &[&str]) -> Result<Self, String> {
        match config.keys().find(|k| !known.contains(&k.as_str())) {
            Some(unknown) => Err(format!("unknown config key `{unknown}`")),
            None => Ok(Self { config }),
        }
    }

    /// `set(c, value)` when `key` holds a number, else `c`.
    fn f64<C>(&self, key: &str, c: C, set: impl FnOnce(C, f64) -> C) -> C {
        match self.config.get(key).and_then(Value::as_f64) {
            Some(v) => set(c, v),
            None => c,
        }
    }

    /// `set(c, value)` when `key` holds a boolean, else `c`.
    fn bool<C>(&self, key: &str, c: C, set: impl FnOnce(C, bool) -> C) -> C {
        match self.config.get(key).and_then(Value::as_bool) {
            Some(v) => set(c, v),
            None => c,
        }
    }

    /// `set(c, value)` when `key` holds a non-negative integer, else `c`.
    fn usize<C>(&self, key: &str, c: C, set: impl FnOnce(C, usize) -> C) -> C {
        match self.config.get(key).and_then(Value::as_u64) {
            Some(v) => set(c, v as usize),
            None => c,
        }
    }

    /// `set(c, (a, b))` when `key` holds a pair of numbers, else `c`.
    fn pair<C>(&self, key: &str, c: C, set: impl FnOnce(C, (f64, f64)) -> C) -> C {
        let pair = self
            .config
            .get(key)
            .and_then(Value::as_array)
            .and_then(|v| Some((v.first()?.as_f64()?, v.get(1)?.as_f64()?)));
        match pair {
            Some(v) => set(c, v),
            None => c,
        }
    }
}

fn adamp_config(config: &BTreeMap<String, Value>) -> Result<AdamPConfig, String> {
    let k = Keys::new(
        config,
        &[
            "lr",
            "betas",
            "eps",
            "weight_decay",
            "delta",
            "wd_ratio",
            "nesterov",
        ],
    )?;
    let c = AdamPConfig::new();
    let c = k.pair("betas", c, |c, (b1, b2)| c.with_beta_1(b1).with_beta_2(b2));
    let c = k.f64("eps", c, AdamPConfig::with_epsilon);
    let c = k.f64("weight_decay", c, AdamPConfig::with_weight_decay);
    let c = k.f64("delta", c, AdamPConfig::with_delta);
    let c = k.f64("wd_ratio", c, AdamPConfig::with_wd_ratio);
    let c = k.bool("nesterov", c, AdamPConfig::with_nesterov);
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

fn sgdp_config(config: &BTreeMap<String, Value>) -> Result<SgdpConfig, String> {
    let k = Keys::new(
        config,
        &[
            "lr",
            "momentum",
            "dampening",
            "weight_decay",
            "nesterov",
            "eps",
            "delta",
            "wd_ratio",
        ],
    )?;
    let c = SgdpConfig::new();
    let c = k.f64("momentum", c, SgdpConfig::with_momentum);
    let c = k.f64("dampening", c, SgdpConfig::with_dampening);
    let c = k.f64("weight_decay", c, SgdpConfig::with_weight_decay);
    let c = k.bool("nesterov", c, SgdpConfig::with_nesterov);
    let c = k.f64("eps", c, SgdpConfig::with_epsilon);
    let c = k.f64("delta", c, SgdpConfig::with_delta);
    let c = k.f64("wd_ratio", c, SgdpConfig::with_wd_ratio);
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

fn stable_spam_config(config: &BTreeMap<String, Value>) -> Result<StableSpamConfig, String> {
    let k = Keys::new(
        config,
        &[
            "lr",
            "betas",
            "eps",
            "weight_decay",
            "amsgrad",
            "gamma1",
            "gamma2",
            "gamma3",
            "update_proj_gap",
            "total_T",
            "eta_min",
            "reset_mode",
        ],
    )?;
    let c = StableSpamConfig::new();
    let c = k.pair("betas", c, |c, (b1, b2)| c.with_beta_1(b1).with_beta_2(b2));
    let c = k.f64("eps", c, StableSpamConfig::with_epsilon);
    let c = k.f64("weight_decay", c, StableSpamConfig::with_weight_decay);
    let c = k.bool("amsgrad", c, StableSpamConfig::with_amsgrad);
    // The reference's `gamma1 = -1` means "use β1".
    let c = k.f64("gamma1", c, |c, g| {
        let g = if g == -1.0 { c.beta_1 } else { g };
        c.with_gamma_1(g)
    });
    let c = k.f64("gamma2", c, StableSpamConfig::with_gamma_2);
    let c = k.f64("gamma3", c, StableSpamConfig::with_theta);
    let c = k.usize("update_proj_gap", c, StableSpamConfig::with_reset_interval);
    let c = k.usize("total_T", c, |c, t| c.with_total_steps(Some(t)));
    let c = k.f64("eta_min", c, StableSpamConfig::with_eta_min);
    let mode = match config.get("reset_mode").and_then(Value::as_str) {
        None | Some("reference") => ResetMode::Reference,
        Some("clean") => ResetMode::Clean,
        Some(other) => return Err(format!("unknown reset_mode `{other}`")),
    };
    let c = c.with_reset_mode(mode);
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

fn width_scaled_adamw_config(
    config: &BTreeMap<String, Value>,
) -> Result<WidthScaledAdamWConfig, String> {
    let k = Keys::new(
        config,
        &["lr", "weight_decay", "base_width", "width", "betas", "eps"],
    )?;
    let width = |key: &str| {
        config
            .get(key)
            .and_then(Value::as_u64)
            .map(|w| w as usize)
            .ok_or(format!("`{key}` must be a positive integer"))
    };
    let c = WidthScaledAdamWConfig::new(width("base_width")?, width("width")?);
    let c = k.pair("betas", c, |c, (b1, b2)| c.with_beta_1(b1).with_beta_2(b2));
    let c = k.f64("eps", c, WidthScaledAdamWConfig::with_epsilon);
    let c = k.f64("weight_decay", c, WidthScaledAdamWConfig::with_weight_decay);
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
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
        Some("adam") => {
            let k = Keys::new(config, &["base", "lr", "betas", "eps"])?;
            // The reference's ε (Burn's default is 1e-5).
            let c = AdamConfig::new().with_epsilon(1e-8);
            let c = k.pair("betas", c, |c, (b1, b2)| {
                c.with_beta_1(b1 as f32).with_beta_2(b2 as f32)
            });
            Ok(NapBase::Adam(
                k.f64("eps", c, |c, e| c.with_epsilon(e as f32)),
            ))
        }
        Some("sgd") => {
            Keys::new(config, &["base", "lr", "momentum"])?;
            let momentum = config
                .get("momentum")
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            let c = SgdConfig::new();
            Ok(NapBase::Sgd(if momentum == 0.0 {
                c
            } else {
                // PyTorch's SGD: no dampening, no Nesterov (Burn's default dampening is 0.1).
                c.with_momentum(Some(
                    MomentumConfig::new()
                        .with_momentum(momentum)
                        .with_dampening(0.0),
                ))
            }))
        }
        other => Err(format!("unknown NaP base optimizer {other:?}")),
    }
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
    },
    Failed(String),
    /// A bundled case whose optimizer the crate does not have yet.
    Pending(String),
}

/// Largest error of one parameter over the run, or the first violation.
type ParamResult = Result<f64, String>;

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
    let mut state = None;
    let mut max_err = 0.0f64;
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
    Ok(max_err)
}

fn replay_with<O: Replayable>(
    make: impl Fn(&ParamSpec) -> O,
    case: &Case,
    device: &Device,
) -> Outcome {
    let mut max_abs_err = 0.0f64;
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
            Ok(e) => max_abs_err = max_abs_err.max(e),
            Err(msg) => return Outcome::Failed(msg),
        }
    }
    Outcome::Ok { max_abs_err }
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
                    Outcome::Ok { max_abs_err } => {
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
        let c = adamp_config(&case.config).expect("a valid AdamP case");
        if c.nesterov {
            report(format!("projected adam {}: skipped (Nesterov)", case.name));
            continue;
        }
        let adam = AdamConfig::new()
            .with_beta_1(c.beta_1 as f32)
            .with_beta_2(c.beta_2 as f32)
            .with_epsilon(c.projection.epsilon as f32)
            .build();
        let projection = RadialProjectionConfig::new()
            .with_delta(c.projection.delta)
            .with_wd_ratio(c.projection.wd_ratio)
            .with_epsilon(c.projection.epsilon)
            .with_weight_decay(c.weight_decay);
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
                Outcome::Ok { max_abs_err } => {
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
