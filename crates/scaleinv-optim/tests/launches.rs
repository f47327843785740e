//! Kernel launches per step on wgpu, counted by CubeCL's runtime: its profiling log at the
//! `minimal` level names every kernel the runtime launches, Burn's own (fused or not)
//! included, so the count is the device's, not this crate's launch helpers'.
//!
//! Each optimizer of the catalog steps two model-shaped parameter lists (a convolutional
//! network's and a transformer's, scaled down for the software device) with its defaults
//! (`Skip`, fused). The parameters and states are moved into each step and never cloned, so
//! the kernels may write them in place: a copy of a shared buffer would be a launch of its own
//! and show in the count. The first step (state created) is not counted; the next three are.
//!
//! Compiled with this crate's `wgpu` feature; passes without running anything when no
//! adapter answers, unless `SCALEINV_REQUIRE_WGPU=1`. It configures the runtime's logger, so
//! it is the only test of its binary.
#![cfg(feature = "wgpu")]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use burn::cubecl::config::profiling::ProfilingLogLevel;
use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
use burn::optim::Optimizer;
use burn::tensor::{Device, Tensor, TensorData};
use common::catalog::{Entry, OptimizerVisitor, Settings, for_each_optimizer};

/// The parameter lists: shapes of rank 1, 2 and 4.
struct Shapes {
    name: &'static str,
    vectors: Vec<[usize; 1]>,
    matrices: Vec<[usize; 2]>,
    kernels: Vec<[usize; 4]>,
}

impl Shapes {
    fn count(&self) -> usize {
        self.vectors.len() + self.matrices.len() + self.kernels.len()
    }

    /// The tensors of rank ≥ 2 (those AdamP and SGDP project).
    fn projected(&self) -> usize {
        self.matrices.len() + self.kernels.len()
    }
}

/// A residual block's convolutions and norms, and a classifier, at a sixteenth of ResNet's
/// widths.
fn convolutional() -> Shapes {
    Shapes {
        name: "convolutional",
        vectors: vec![[16], [16], [16], [16], [32], [32], [10]],
        matrices: vec![[32, 10]],
        kernels: vec![
            [16, 3, 7, 7],
            [16, 16, 3, 3],
            [16, 16, 3, 3],
            [32, 16, 1, 1],
        ],
    }
}

/// One transformer block (Burn's `Linear` layout `[d_in, d_out]`) and an embedding, at a
/// twelfth of GPT-2 small's width.
fn transformer() -> Shapes {
    Shapes {
        name: "transformer",
        vectors: vec![[64], [64], [192], [64], [64], [64], [256], [64]],
        matrices: vec![[512, 64], [64, 192], [64, 64], [64, 256], [256, 64]],
        kernels: vec![],
    }
}

/// The most launches per tensor and step each entry may take, `(rank 1, rank ≥ 2)`; `None`
/// for the wrappers that run tensor operations around their base (printed, not bounded: NaP's
/// non-finite frame and the other wrappers' steps are Burn's fused tensor ops, not kernels of
/// this crate).
fn budget(entry: &Entry) -> Option<(usize, usize)> {
    match entry.name {
        // The non-finite test by blocks, the update; for a projected tensor the statistics,
        // the decision (with the non-finite test) and the update.
        "AdamP" | "SGDP (momentum, Nesterov)" => Some((2, 3)),
        // max|g| by blocks; AdaClip with Σ clip(g)² by blocks; AdaGN with the update.
        "Stable-SPAM" => Some((3, 3)),
        // The non-finite test by blocks, the update.
        "width-scaled AdamW (matrix)" | "AdamC (normalized, running peak)" => Some((2, 2)),
        _ => None,
    }
}

/// The runtime's log of launched kernels, set before any device exists.
fn log_file() -> PathBuf {
    let path = std::env::temp_dir().join(format!("scaleinv-launches-{}.log", std::process::id()));
    let mut config = CubeClRuntimeConfig::default();
    config.profiling.logger.level = ProfilingLogLevel::Minimal;
    config.profiling.logger.file = Some(path.clone());
    config.profiling.logger.append = false;
    assert!(
        CubeClRuntimeConfig::try_set(config),
        "the runtime's configuration was read before this test set it"
    );
    path
}

/// The launches logged so far, once the logger has written them all (the count holds still
/// for 200 ms).
fn logged(path: &Path) -> usize {
    let count = || {
        std::fs::read_to_string(path)
            .map(|s| s.lines().filter(|l| l.contains("Executing")).count())
            .unwrap_or(0)
    };
    let mut last = count();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = count();
        if now == last {
            return now;
        }
        last = now;
    }
}

fn wave(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 7 + seed * 13) as f32) * 0.37).sin() * 0.5 + 0.01)
        .collect()
}

/// One tensor with its state and a gradient per step.
struct Slot<const D: usize, S> {
    dims: [usize; D],
    param: Option<Tensor<D>>,
    state: Option<S>,
}

impl<const D: usize, S> Slot<D, S> {
    fn new(dims: [usize; D], seed: usize, device: &Device) -> Self {
        let n = dims.iter().product();
        let param = Tensor::from_data(TensorData::new(wave(n, seed), dims), device);
        Self {
            dims,
            param: Some(param),
            state: None,
        }
    }

    fn step<O: Optimizer<State<D> = S>>(&mut self, optim: &O, k: usize, device: &Device) {
        let n = self.dims.iter().product();
        let grad = Tensor::from_data(TensorData::new(wave(n, k + 5), self.dims), device);
        let param = self.param.take().expect("a parameter");
        let (param, state) = optim.step(1e-3, param, grad, self.state.take());
        self.param = Some(param);
        self.state = state;
    }

    /// Waits for the step (a read of the parameter: a copy, no launch).
    fn wait(&self) {
        let param = self.param.as_ref().expect("a parameter");
        let _ = param.clone().into_data();
    }
}

struct Count<'a> {
    device: &'a Device,
    log: &'a Path,
    shapes: &'a Shapes,
    failures: Vec<String>,
}

impl OptimizerVisitor for Count<'_> {
    fn visit<O: Optimizer>(&mut self, entry: &Entry, build: &dyn Fn(Settings) -> O) {
        let optim = build(Settings::default());
        let device = self.device;
        let shapes = self.shapes;
        let mut vectors: Vec<Slot<1, O::State<1>>> = (shapes.vectors.iter().enumerate())
            .map(|(i, &d)| Slot::new(d, i, device))
            .collect();
        let mut matrices: Vec<Slot<2, O::State<2>>> = (shapes.matrices.iter().enumerate())
            .map(|(i, &d)| Slot::new(d, i + 20, device))
            .collect();
        let mut kernels: Vec<Slot<4, O::State<4>>> = (shapes.kernels.iter().enumerate())
            .map(|(i, &d)| Slot::new(d, i + 40, device))
            .collect();
        let mut step = |k: usize| {
            vectors.iter_mut().for_each(|s| s.step(&optim, k, device));
            matrices.iter_mut().for_each(|s| s.step(&optim, k, device));
            kernels.iter_mut().for_each(|s| s.step(&optim, k, device));
            vectors.iter().for_each(Slot::wait);
            matrices.iter().for_each(Slot::wait);
            kernels.iter().for_each(Slot::wait);
        };
        step(0);
        let before = logged(self.log);
        const STEPS: usize = 3;
        (1..=STEPS).for_each(&mut step);
        let launches = logged(self.log) - before;
        let per_step = launches.div_ceil(STEPS);
        let Some((vector_budget, projected_budget)) = budget(entry) else {
            println!(
                "launches {} [{}]: {per_step} per step for {} tensors (tensor ops, not bounded)",
                entry.name,
                shapes.name,
                shapes.count()
            );
            return;
        };
        let most = vector_budget * shapes.vectors.len() + projected_budget * shapes.projected();
        println!(
            "launches {} [{}]: {per_step} per step for {} tensors (at most {most})",
            entry.name,
            shapes.name,
            shapes.count()
        );
        if per_step > most {
            self.failures.push(format!(
                "{} on the {} list: {per_step} launches per step, budget {most}",
                entry.name, shapes.name
            ));
        }
    }
}

#[test]
fn every_step_keeps_to_its_launch_budget() {
    let log = log_file();
    let Some(device) = common::wgpu_device() else {
        assert!(
            std::env::var("SCALEINV_REQUIRE_WGPU").as_deref() != Ok("1"),
            "SCALEINV_REQUIRE_WGPU=1 but wgpu found no adapter"
        );
        eprintln!("wgpu: no adapter on this machine; the launch counts are not taken");
        return;
    };
    let mut failures = Vec::new();
    for shapes in [convolutional(), transformer()] {
        let mut count = Count {
            device: &device,
            log: &log,
            shapes: &shapes,
            failures: Vec::new(),
        };
        for_each_optimizer(&mut count);
        failures.extend(count.failures);
    }
    let _ = std::fs::remove_file(&log);
    assert!(failures.is_empty(), "over budget:\n{}", failures.join("\n"));
}
