//! Time per optimizer step on a conv-net-shaped parameter set, against Burn's own optimizers
//! measured in the same run.
//!
//! ```text
//! cargo run --release --example bench [-- --device flex[,ndarray,wgpu]] [--sizes 1,4,16] [--steps N] [--json out.json]
//! ```
//!
//! Each parameter set is 16 weights `[c, c, 3, 3]` plus 16 biases `[c]`, with `c` chosen for
//! about 1, 4 or 16 million parameters. Every optimizer gets the same gradients; the device is
//! synchronised at the end of every timed step. Read ratios from one run: a shared machine is
//! noisy. The bench also measures each device's copy bandwidth and prints every result as a
//! percentage of its roofline (the bytes a step must move per parameter, see `traffic`, over
//! that bandwidth), with the optimizer state per parameter.

use std::time::Instant;

use burn::module::{Module, Param};
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::{Device, Distribution, Tensor};
use scaleinv::models::device::device_from_name;
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

struct Row {
    optimizer: &'static str,
    device: String,
    params: usize,
    ms_per_step: f64,
    /// The device's measured copy bandwidth, bytes per second.
    copy_bandwidth: f64,
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
    let sync = |d: &Device| d.sync().expect("device sync");
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

fn time_optimizer(make: &MakeOptim, channels: usize, device: &Device, steps: usize) -> f64 {
    // ModuleOptimizer steps parameters that live on an autodiff device.
    let mut set = ParamSet::new(channels, &device.clone().autodiff());
    let mut optim = make(&set);
    let grads = set.gradients(device);
    let sync = |d: &Device| d.sync().expect("device sync");
    for _ in 0..3 {
        set = optim.step(1e-3, set, grads_params(&grads));
    }
    sync(device);
    let mut total = 0.0;
    for _ in 0..steps {
        let g = grads_params(&grads);
        let start = Instant::now();
        set = optim.step(1e-3, set, g);
        sync(device);
        total += start.elapsed().as_secs_f64();
    }
    total / steps as f64 * 1e3
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

struct Args {
    devices: Vec<String>,
    sizes: Vec<f64>,
    steps: usize,
    json: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        devices: vec!["flex".into()],
        sizes: vec![1.0, 4.0, 16.0],
        steps: 10,
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--device" => args.devices = value()?.split(',').map(str::to_string).collect(),
            "--sizes" => {
                args.sizes = value()?
                    .split(',')
                    .map(|s| {
                        s.parse::<f64>()
                            .map_err(|_| format!("--sizes: `{s}` is not a number"))
                    })
                    .collect::<Result<_, _>>()?
            }
            "--steps" => {
                args.steps = value()?
                    .parse()
                    .map_err(|_| "--steps needs a count".to_string())?
            }
            "--json" => args.json = Some(value()?),
            "-h" | "--help" => {
                println!(
                    "usage: bench [--device flex,ndarray,wgpu] [--sizes 1,4,16] [--steps N] [--json PATH]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    Ok(args)
}

/// The step's floor (`bytes · params / bandwidth`) as a percentage of its measured time.
fn roofline_pct(r: &Row, bytes_per_param: f64) -> f64 {
    let floor_s = bytes_per_param * r.params as f64 / r.copy_bandwidth;
    100.0 * floor_s / (r.ms_per_step / 1e3)
}

fn json_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2)
    });
    let mut rows = Vec::new();
    for name in &args.devices {
        let device = device_from_name(name).unwrap_or_else(|e| {
            eprintln!("error: {e}");
            std::process::exit(2)
        });
        let copy = copy_bandwidth(&device);
        eprintln!("  {name:<8} copy bandwidth {:.1} GB/s", copy / 1e9);
        for &millions in &args.sizes {
            let channels = ((millions * 1e6 / LAYERS as f64 / 9.0).sqrt()).round() as usize;
            let params = LAYERS * (channels * channels * 9 + channels);
            for (optimizer, make) in optimizers() {
                let ms = time_optimizer(&make, channels, &device, args.steps);
                eprintln!("  {name:<8} {params:>9} {optimizer:<18} {ms:9.2} ms/step");
                rows.push(Row {
                    optimizer,
                    device: name.clone(),
                    params,
                    ms_per_step: ms,
                    copy_bandwidth: copy,
                });
            }
        }
    }

    println!(
        "{:<21} {:<8} {:>10} {:>9} {:>9} {:>8} {:>9} {:>7}",
        "optimizer", "device", "params", "ms/step", "Mparam/s", "vs base", "roofline", "state"
    );
    for r in &rows {
        let base = if r.optimizer.contains("sgd") {
            "burn_sgd_momentum"
        } else {
            "burn_adam"
        };
        let base_ms = rows
            .iter()
            .find(|b| b.optimizer == base && b.device == r.device && b.params == r.params)
            .map_or(f64::NAN, |b| b.ms_per_step);
        let (bytes, state) = traffic(r.optimizer);
        println!(
            "{:<21} {:<8} {:>10} {:>9.2} {:>9.0} {:>7.2}x {:>8.0}% {:>5.0} B",
            r.optimizer,
            r.device,
            r.params,
            r.ms_per_step,
            r.params as f64 / r.ms_per_step / 1e3,
            base_ms / r.ms_per_step,
            roofline_pct(r, bytes),
            state
        );
    }
    if let Some(path) = &args.json {
        let items: Vec<String> = rows
            .iter()
            .map(|r| {
                let (bytes, state) = traffic(r.optimizer);
                format!(
                    "  {{\"optimizer\": {}, \"device\": {}, \"params\": {}, \"ms_per_step\": {:.4}, \"mparams_per_s\": {:.2}, \"bytes_per_param\": {bytes}, \"state_bytes_per_param\": {state}, \"copy_gb_per_s\": {:.2}, \"roofline_pct\": {:.1}}}",
                    json_string(r.optimizer),
                    json_string(&r.device),
                    r.params,
                    r.ms_per_step,
                    r.params as f64 / r.ms_per_step / 1e3,
                    r.copy_bandwidth / 1e9,
                    roofline_pct(r, bytes)
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
