//! Time per optimizer step on a conv-net-shaped parameter set, against Burn's own optimizers
//! measured in the same run, round-robin.
//!
//! ```text
//! cargo run --release --example bench [-- --device flex[,ndarray,wgpu]] [--sizes 1,4,16]
//!     [--rounds N] [--warmup N] [--pairs] [--mem-gb G] [--json out.json]
//! ```
//!
//! Each parameter set is 16 weights `[c, c, 3, 3]` plus 16 biases `[c]`, with `c` chosen for
//! about 1, 4 or 16 million parameters. Every optimizer has its own parameter set and its own
//! fixed random gradients, copied afresh before every step (outside the timer); the device is
//! synchronised before and at the end of every timed step.
//!
//! Round-robin: for each device and size, every optimizer's parameters and state are built
//! first and stepped `--warmup` times untimed (default 3); then every timed round (`--rounds`,
//! default 20) steps every optimizer once, round `r` starting at optimizer `r mod n`. A noisy
//! machine's slow spells then fall on all optimizers alike, and each row is compared with its
//! base round by round: `speed-up = base ms / row ms` within one round (> 1: faster than the
//! base), reported as the median and the interquartile range (p25–p75) over the rounds. The
//! `ms/step` column is the median over rounds. `burn_adam_built` against `burn_adam` is an A/A
//! pair (the same algorithm): its spread is the bench's noise floor.
//!
//! All optimizers' states live at once (about 16 B per parameter for an Adam-type optimizer,
//! parameters and gradients included: some 4 GB at 16M parameters). When the estimate exceeds
//! the memory budget (`--mem-gb`; by default 80 % of the host's available memory for the CPU
//! backends, no limit for others), the bench says so and falls back to pairs: each row
//! round-robin with its base alone (`--pairs` forces that mode).
//!
//! The bench also measures each device's copy bandwidth and prints every result as a
//! percentage of its roofline (the bytes a step must move per parameter, see `traffic`, over
//! that bandwidth), with the optimizer state per parameter.

use std::time::Instant;

use burn::module::{Module, Param};
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::{Device, Distribution, Tensor};
use clap::Parser;
use scaleinv::models::cli::{DevicesArg, positive, positive_finite};
use scaleinv::models::device::device_from_name;
use scaleinv::models::progress::Progress;
use scaleinv::{
    AdamPConfig, ChannelAxes, NapConfig, NonFinitePolicy, ProjectionObserver,
    RadialProjectionConfig, SgdpConfig, StableSpamConfig, WidthRole, WidthScaledAdamWConfig,
};

/// The benchmark's parameters: conv-shaped weights and their biases.
#[derive(Module, Debug)]
struct ParamSet {
    weights: Vec<Param<Tensor<4>>>,
    biases: Vec<Param<Tensor<1>>>,
}

const LAYERS: usize = 16;

impl ParamSet {
    fn new(channels: usize, device: &Device) -> Self {
        let normal = Distribution::Normal(0.0, 1.0);
        Self {
            weights: (0..LAYERS)
                .map(|_| {
                    Param::from_tensor(Tensor::random([channels, channels, 3, 3], normal, device))
                })
                .collect(),
            biases: (0..LAYERS)
                .map(|_| Param::from_tensor(Tensor::random([channels], normal, device)))
                .collect(),
        }
    }

    /// Fixed random gradients on `device` (the inner, non-autodiff one), one per parameter.
    fn gradients(&self, device: &Device) -> Vec<Grad> {
        let normal = Distribution::Normal(0.0, 1.0);
        let w = self
            .weights
            .iter()
            .map(|p| Grad::W(p.id, Tensor::random(p.val().shape(), normal, device)));
        let b = self
            .biases
            .iter()
            .map(|p| Grad::B(p.id, Tensor::random(p.val().shape(), normal, device)));
        w.chain(b).collect()
    }
}

#[derive(Clone)]
enum Grad {
    W(burn::module::ParamId, Tensor<4>),
    B(burn::module::ParamId, Tensor<1>),
}

/// A fresh copy of the fixed gradients, each tensor owning its buffer as a real backward
/// pass's gradients do: a shared buffer would keep the backend from updating in place, and
/// slow the tensor-op optimizers down for a reason training does not have.
fn grads_params(grads: &[Grad]) -> GradientsParams {
    let mut out = GradientsParams::new();
    for g in grads {
        match g.clone() {
            Grad::W(id, t) => out.register(id, t * 1.0),
            Grad::B(id, t) => out.register(id, t * 1.0),
        }
    }
    out
}

/// Memory traffic of one step per parameter (f32 reads + writes of an implementation with the
/// fewest passes the algorithm allows) and optimizer state per parameter, both in bytes.
///
/// Adam-type: read p, g, m, v, write p, m, v (7 words). SGD with momentum: read p, g, b, write
/// p, b (5). AdamP: the projection needs reductions over the update before applying it, so two
/// passes: read g, m, v, p, write m, v; then read p, m, v, write p (10). SGDP: read p, g, b for
/// the reductions, then read p, g, b, write p, b (8). Stable-SPAM: a pass over g for max|g| and
/// ‖g‖, then Adam's (8). NaP: Adam's pass with the new norm accumulated, then a rescale (9).
fn traffic(optimizer: &str) -> (f64, f64) {
    let (words, state_words) = match optimizer {
        "burn_sgd_momentum" => (5.0, 1.0),
        "sgdp" | "sgdp_tensor_ops" => (8.0, 1.0),
        "adamp" | "adamp_tensor_ops" | "adamp_observed" | "projected_adam" => (10.0, 2.0),
        "stable_spam" | "stable_spam_tensor_ops" | "stable_spam_propagate" => (8.0, 2.0),
        "nap_adam" => (9.0, 2.0),
        _ => (7.0, 2.0),
    };
    (4.0 * words, 4.0 * state_words)
}

/// The device's memory bandwidth in bytes per second: `x ← 1.0001 · x` over 16M f32, in place
/// when the backend can (read 4 B, write 4 B per element, no fresh allocation to fault in),
/// best of 10 after warm-up.
fn copy_bandwidth(device: &Device) -> f64 {
    let n = 16 << 20;
    let mut x = Tensor::<1>::random([n], Distribution::Default, device);
    let mut best = f64::INFINITY;
    for k in 0..13 {
        sync(device);
        let start = Instant::now();
        x = x * 1.0001;
        sync(device);
        if k >= 3 {
            best = best.min(start.elapsed().as_secs_f64());
        }
    }
    8.0 * n as f64 / best
}

/// Builds an optimizer for the parameter set it will step.
type MakeOptim = Box<dyn Fn(&ParamSet) -> ModuleOptimizer>;

fn optimizers() -> Vec<(&'static str, MakeOptim)> {
    let momentum = MomentumConfig {
        momentum: 0.9,
        dampening: 0.0,
        nesterov: false,
    };
    let adam = || AdamConfig::new().with_epsilon(1e-8);
    vec![
        ("burn_adam", Box::new(move |_| adam().init())),
        (
            // NaP's base as NaP holds it: the bare per-tensor Adam in a ModuleOptimizer.
            "burn_adam_built",
            Box::new(move |_| adam().build().into()),
        ),
        (
            "burn_adamw",
            Box::new(|_| AdamWConfig::new().with_epsilon(1e-8).init()),
        ),
        (
            "burn_sgd_momentum",
            Box::new(move |_| {
                SgdConfig::new()
                    .with_momentum(Some(momentum.clone()))
                    .init()
            }),
        ),
        ("adamp", Box::new(|_| AdamPConfig::new().init())),
        (
            // The tensor-op path, which other backends take, on the same device.
            "adamp_tensor_ops",
            Box::new(|_| AdamPConfig::new().with_fused(false).init()),
        ),
        (
            // One observed group per weight, observer never armed: the cost of being observable.
            "adamp_observed",
            Box::new(|set| {
                let axes = ChannelAxes::infer(set);
                AdamPConfig::new()
                    .try_init_observed(&axes, &ProjectionObserver::new())
                    .expect("a valid config")
            }),
        ),
        (
            "projected_adam",
            Box::new(move |_| RadialProjectionConfig::new().wrap(adam().build()).into()),
        ),
        (
            // Every tensor with the matrix role (the one with decay): the costlier of the two.
            "width_scaled_adamw",
            Box::new(|_| {
                WidthScaledAdamWConfig::new(64, 256)
                    .with_weight_decay(0.1)
                    .build(WidthRole::Matrix)
                    .into()
            }),
        ),
        (
            "nap_adam",
            Box::new(move |_| NapConfig::new().init(adam().build())),
        ),
        (
            "sgdp",
            Box::new(|_| SgdpConfig::new().with_momentum(0.9).init()),
        ),
        (
            "sgdp_tensor_ops",
            Box::new(|_| {
                SgdpConfig::new()
                    .with_momentum(0.9)
                    .with_fused(false)
                    .init()
            }),
        ),
        ("stable_spam", Box::new(|_| StableSpamConfig::new().init())),
        (
            "stable_spam_tensor_ops",
            Box::new(|_| StableSpamConfig::new().with_fused(false).init()),
        ),
        (
            "stable_spam_propagate",
            Box::new(|_| {
                StableSpamConfig::new()
                    .with_non_finite(NonFinitePolicy::Propagate)
                    .init()
            }),
        ),
    ]
}

/// The row each optimizer is compared with, round by round: Burn's Adam for the Adam family,
/// Burn's AdamW for the width-scaled AdamW, Burn's SGD with momentum 0.9 for SGDP, and for a
/// wrapper the very optimizer it wraps (`adam().build()`, i.e. `burn_adam_built`). `None`: a
/// base itself.
fn base_of(optimizer: &str) -> Option<&'static str> {
    match optimizer {
        "burn_adam" | "burn_sgd_momentum" => None,
        // `burn_adam_built` against `burn_adam` is the A/A pair.
        "burn_adam_built" | "burn_adamw" => Some("burn_adam"),
        "width_scaled_adamw" => Some("burn_adamw"),
        "projected_adam" | "nap_adam" => Some("burn_adam_built"),
        o if o.starts_with("sgdp") => Some("burn_sgd_momentum"),
        _ => Some("burn_adam"),
    }
}

/// The A/A pair: two names for the same per-tensor Adam.
const AA: (&str, &str) = ("burn_adam_built", "burn_adam");

fn sync(device: &Device) {
    device.sync().expect("device sync");
}

/// One optimizer under test with its own parameters and fixed gradients, alive for the whole
/// round-robin.
struct Slot {
    optimizer: &'static str,
    set: Option<ParamSet>,
    optim: ModuleOptimizer,
    grads: Vec<Grad>,
}

impl Slot {
    fn new(optimizer: &'static str, make: &MakeOptim, channels: usize, device: &Device) -> Self {
        // ModuleOptimizer steps parameters that live on an autodiff device.
        let set = ParamSet::new(channels, &device.clone().autodiff());
        let optim = make(&set);
        let grads = set.gradients(device);
        Self {
            optimizer,
            set: Some(set),
            optim,
            grads,
        }
    }

    /// One step; returns its time in seconds, gradient copy excluded.
    fn step(&mut self, device: &Device) -> f64 {
        let g = grads_params(&self.grads);
        let set = self.set.take().expect("a parameter set");
        sync(device);
        let start = Instant::now();
        let set = self.optim.step(1e-3, set, g);
        sync(device);
        let t = start.elapsed().as_secs_f64();
        self.set = Some(set);
        t
    }
}

/// Steps `slots` round-robin: `warmup` untimed rounds, then `rounds` timed ones, round `r`
/// starting at slot `r mod n`. Returns each slot's step times in milliseconds, one per round.
fn round_robin(
    slots: &mut [Slot],
    device: &Device,
    (warmup, rounds): (usize, usize),
    progress: &Progress,
) -> Vec<Vec<f64>> {
    let n = slots.len();
    let mut times = vec![Vec::with_capacity(rounds); n];
    for r in 0..warmup + rounds {
        for k in 0..n {
            let i = (r + k) % n;
            let t = slots[i].step(device);
            progress.inc(1);
            if r >= warmup {
                times[i].push(t * 1e3);
            }
        }
    }
    times
}

/// The `q` quantile (0..=1) of `xs`, interpolated linearly between order statistics.
fn quantile(xs: &[f64], q: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut s = xs.to_vec();
    s.sort_by(f64::total_cmp);
    let pos = q * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

/// Median, p25 and p75.
fn summary(xs: &[f64]) -> (f64, f64, f64) {
    (quantile(xs, 0.5), quantile(xs, 0.25), quantile(xs, 0.75))
}

/// Bytes held per parameter by one slot: its parameters, its fixed gradients and its state,
/// with a quarter more for the allocator's slack and the step's temporaries.
fn slot_bytes_per_param(optimizer: &str) -> f64 {
    let (_, state) = traffic(optimizer);
    1.25 * (4.0 + 4.0 + state)
}

/// The host's available memory in bytes, from `/proc/meminfo`.
fn mem_available() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

/// The process's peak resident memory in bytes, from `/proc/self/status`.
fn peak_rss() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

struct Row {
    optimizer: &'static str,
    device: String,
    params: usize,
    /// "round-robin" (all optimizers at once) or "pairs" (each with its base alone).
    mode: &'static str,
    /// Step times in ms, one per timed round.
    ms: Vec<f64>,
    base: Option<&'static str>,
    /// `base ms / row ms` per round, the base stepped in the same round.
    speedups: Vec<f64>,
    /// The device's measured copy bandwidth, bytes per second.
    copy_bandwidth: f64,
}

impl Row {
    fn ms_per_step(&self) -> f64 {
        quantile(&self.ms, 0.5)
    }
}

/// `base ms / row ms`, round by round.
fn ratios(base: &[f64], ms: &[f64]) -> Vec<f64> {
    base.iter().zip(ms).map(|(b, t)| b / t).collect()
}

/// Times every optimizer on one device and size.
#[allow(clippy::too_many_arguments)]
fn bench_size(
    name: &str,
    device: &Device,
    channels: usize,
    params: usize,
    pairs: bool,
    (warmup, rounds): (usize, usize),
    copy: f64,
    progress: &Progress,
) -> Vec<Row> {
    let optims = optimizers();
    let row = |optimizer: &'static str, mode: &'static str, ms: Vec<f64>, speedups: Vec<f64>| Row {
        optimizer,
        device: name.to_string(),
        params,
        mode,
        ms,
        base: base_of(optimizer),
        speedups,
        copy_bandwidth: copy,
    };
    if !pairs {
        let mut slots: Vec<Slot> = optims
            .iter()
            .map(|(o, make)| Slot::new(o, make, channels, device))
            .collect();
        let times = round_robin(&mut slots, device, (warmup, rounds), progress);
        let index = |o: &str| slots.iter().position(|s| s.optimizer == o);
        return slots
            .iter()
            .zip(&times)
            .map(|(s, ms)| {
                let speedups = base_of(s.optimizer)
                    .and_then(index)
                    .map_or_else(Vec::new, |b| ratios(&times[b], ms));
                row(s.optimizer, "round-robin", ms.clone(), speedups)
            })
            .collect();
    }
    optims
        .iter()
        .map(|(o, make)| {
            let o = *o;
            let base = base_of(o).and_then(|b| optims.iter().find(|(n, _)| *n == b));
            let mut slots = vec![Slot::new(o, make, channels, device)];
            if let Some((b, make_b)) = base {
                slots.push(Slot::new(b, make_b, channels, device));
            }
            let times = round_robin(&mut slots, device, (warmup, rounds), progress);
            let speedups = if times.len() == 2 {
                ratios(&times[1], &times[0])
            } else {
                Vec::new()
            };
            row(o, "pairs", times[0].clone(), speedups)
        })
        .collect()
}

/// Time per optimizer step on a conv-net-shaped parameter set, against Burn's own optimizers
/// measured in the same run, round-robin.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    devices: DevicesArg,
    /// Parameter-set sizes in millions of parameters, comma-separated.
    #[arg(long, value_name = "MILLIONS", value_delimiter = ',', default_value = "1,4,16", value_parser = positive_finite)]
    sizes: Vec<f64>,
    /// Timed rounds; each steps every optimizer once.
    #[arg(long, visible_alias = "steps", value_name = "N", default_value = "20", value_parser = positive::<usize>)]
    rounds: usize,
    /// Untimed rounds before the timed ones.
    #[arg(long, value_name = "N", default_value = "3")]
    warmup: usize,
    /// Round-robin each optimizer with its base alone (less memory).
    #[arg(long)]
    pairs: bool,
    /// Memory budget in GB for all states at once [default: 80 % of the available memory on
    /// the CPU backends, no limit on others]; over it the bench falls back to pairs.
    #[arg(long, value_name = "G", value_parser = positive_finite)]
    mem_gb: Option<f64>,
    /// Writes one JSON record per row here.
    #[arg(long, value_name = "PATH")]
    json: Option<String>,
}

/// Whether a size falls back to pairs: forced, or all states over the memory budget.
fn falls_back(params: usize, budget: Option<f64>, forced: bool) -> bool {
    forced || budget.is_some_and(|b| state_bytes(params) > b)
}

/// The memory all optimizers' slots need at once for `params` parameters each.
fn state_bytes(params: usize) -> f64 {
    optimizers()
        .iter()
        .map(|(o, _)| slot_bytes_per_param(o) * params as f64)
        .sum()
}

/// Optimizer steps one size takes: every slot in every round, each row's base again in pairs.
fn steps_per_size(pairs: bool, warmup: usize, rounds: usize) -> u64 {
    let optims = optimizers();
    let slots = match pairs {
        false => optims.len(),
        true => optims
            .iter()
            .map(|(o, _)| 1 + base_of(o).is_some() as usize)
            .sum(),
    };
    (slots * (warmup + rounds)) as u64
}

/// Parameters of the set of about `millions` million: `LAYERS` kernels `[c, c, 3, 3]` and
/// biases `[c]`.
fn channels_and_params(millions: f64) -> (usize, usize) {
    let channels = ((millions * 1e6 / LAYERS as f64 / 9.0).sqrt()).round() as usize;
    (channels, LAYERS * (channels * channels * 9 + channels))
}

/// The memory budget of a device: the CPU backends hold everything in host memory.
fn budget_of(name: &str, mem_gb: Option<f64>) -> Option<f64> {
    mem_gb.map(|g| g * 1e9).or_else(|| {
        matches!(name, "flex" | "ndarray")
            .then(mem_available)
            .flatten()
            .map(|m| 0.8 * m)
    })
}

/// The step's floor (`bytes · params / bandwidth`) as a percentage of its measured time.
fn roofline_pct(r: &Row, bytes_per_param: f64) -> f64 {
    let floor_s = bytes_per_param * r.params as f64 / r.copy_bandwidth;
    100.0 * floor_s / (r.ms_per_step() / 1e3)
}

fn json_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A JSON number, `null` when not finite.
fn json_num(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        format!("{x:.decimals$}")
    } else {
        "null".into()
    }
}

fn main() {
    let args = Args::parse();
    let started = Instant::now();
    let mut rows = Vec::new();
    let total: u64 = args
        .devices
        .names
        .iter()
        .flat_map(|name| args.sizes.iter().map(move |&m| (name, m)))
        .map(|(name, millions)| {
            let pairs = falls_back(
                channels_and_params(millions).1,
                budget_of(name, args.mem_gb),
                args.pairs,
            );
            steps_per_size(pairs, args.warmup, args.rounds)
        })
        .sum();
    let progress = Progress::new(total, "steps");
    for name in &args.devices.names {
        let device = device_from_name(name).expect("--device was checked when parsed");
        let copy = copy_bandwidth(&device);
        progress.println(format!("  {name:<8} copy bandwidth {:.1} GB/s", copy / 1e9));
        let budget = budget_of(name, args.mem_gb);
        for &millions in &args.sizes {
            let (channels, params) = channels_and_params(millions);
            let need = state_bytes(params);
            let pairs = falls_back(params, budget, args.pairs);
            if pairs && !args.pairs {
                progress.println(format!(
                    "  {name:<8} {params:>9}: all states at once need about {:.1} GB, over the \
                     {:.1} GB budget: falling back to pairs (each row round-robin with its base)",
                    need / 1e9,
                    budget.unwrap_or(f64::NAN) / 1e9
                ));
            }
            progress.set_message(format!("{name} {params}"));
            let t0 = Instant::now();
            let size_rows = bench_size(
                name,
                &device,
                channels,
                params,
                pairs,
                (args.warmup, args.rounds),
                copy,
                &progress,
            );
            progress.println(format!(
                "  {name:<8} {params:>9}: {} rounds in {:.1} s, estimated {:.2} GB, peak RSS {}",
                args.rounds,
                t0.elapsed().as_secs_f64(),
                need / 1e9,
                peak_rss().map_or("?".into(), |b| format!("{:.2} GB", b / 1e9))
            ));
            for r in &size_rows {
                progress.println(format!(
                    "  {name:<8} {params:>9} {:<22} {:9.2} ms/step",
                    r.optimizer,
                    r.ms_per_step()
                ));
            }
            rows.extend(size_rows);
        }
    }
    progress.finish();

    let mode = if rows.iter().any(|r| r.mode == "pairs") {
        "pairs (some sizes)"
    } else {
        "round-robin"
    };
    println!(
        "# {mode}: {} warm-up + {} timed rounds; ms/step = median over rounds; speed-up = base ms / \
         row ms in the same round (> 1: faster than the base), median [p25-p75] over rounds",
        args.warmup, args.rounds
    );
    println!(
        "{:<22} {:<8} {:>10} {:>9} {:>9} {:<17} {:>8} {:>13} {:>9} {:>7}",
        "optimizer",
        "device",
        "params",
        "ms/step",
        "Mparam/s",
        "base",
        "speed-up",
        "p25-p75",
        "roofline",
        "state"
    );
    for r in &rows {
        let (bytes, state) = traffic(r.optimizer);
        let (med, p25, p75) = summary(&r.speedups);
        let (speedup, iqr) = if r.base.is_some() {
            (format!("{med:.2}x"), format!("{p25:.2}-{p75:.2}"))
        } else {
            ("-".into(), "-".into())
        };
        println!(
            "{:<22} {:<8} {:>10} {:>9.2} {:>9.0} {:<17} {:>8} {:>13} {:>8.0}% {:>5.0} B",
            r.optimizer,
            r.device,
            r.params,
            r.ms_per_step(),
            r.params as f64 / r.ms_per_step() / 1e3,
            r.base.unwrap_or("-"),
            speedup,
            iqr,
            roofline_pct(r, bytes),
            state
        );
    }
    for r in rows.iter().filter(|r| r.optimizer == AA.0) {
        let (med, p25, p75) = summary(&r.speedups);
        println!(
            "A/A {} vs {} on {} at {} params: speed-up {med:.3}x [{p25:.3}-{p75:.3}] ({})",
            AA.0, AA.1, r.device, r.params, r.mode
        );
    }
    eprintln!("  total {:.1} s", started.elapsed().as_secs_f64());
    if let Some(path) = &args.json {
        let items: Vec<String> = rows
            .iter()
            .map(|r| {
                let (bytes, state) = traffic(r.optimizer);
                let (ms, ms25, ms75) = summary(&r.ms);
                let (med, p25, p75) = summary(&r.speedups);
                let rounds: Vec<String> = r.ms.iter().map(|t| format!("{t:.4}")).collect();
                format!(
                    "  {{\"optimizer\": {}, \"device\": {}, \"params\": {}, \"mode\": {}, \"rounds\": {}, \
                     \"ms_per_step\": {:.4}, \"ms_p25\": {:.4}, \"ms_p75\": {:.4}, \"mparams_per_s\": {:.2}, \
                     \"base\": {}, \"speedup_median\": {}, \"speedup_p25\": {}, \"speedup_p75\": {}, \
                     \"bytes_per_param\": {bytes}, \"state_bytes_per_param\": {state}, \
                     \"copy_gb_per_s\": {:.2}, \"roofline_pct\": {:.1}, \"ms_rounds\": [{}]}}",
                    json_string(r.optimizer),
                    json_string(&r.device),
                    r.params,
                    json_string(r.mode),
                    r.ms.len(),
                    ms,
                    ms25,
                    ms75,
                    r.params as f64 / ms / 1e3,
                    r.base.map_or("null".into(), json_string),
                    json_num(med, 4),
                    json_num(p25, 4),
                    json_num(p75, 4),
                    r.copy_bandwidth / 1e9,
                    roofline_pct(r, bytes),
                    rounds.join(", ")
                )
            })
            .collect();
        std::fs::write(path, format!("[\n{}\n]\n", items.join(",\n"))).unwrap_or_else(|e| {
            eprintln!("error: cannot write {path}: {e}");
            std::process::exit(1)
        });
        println!("wrote {path}");
    }
}
