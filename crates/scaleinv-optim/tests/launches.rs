//! What one step asks of the device on wgpu, counted by CubeCL's runtime for every operation
//! (Burn's own, fused or not, and this crate's kernels): kernel launches (its profiling log at
//! the `minimal` level names each one), buffers reserved in the main memory pool and staging
//! buffers (its memory log at the `full` level names each reservation; a read-back is a
//! staging reservation). An upload of host data reserves a main-pool buffer too, so it shows
//! among the allocations.
//!
//! Each optimizer of the catalog steps the parameter lists of ResNet-50 (161 tensors) and
//! GPT-2 small (148), at a sixteenth and a twelfth of their widths for the software device
//! (`scaleinv-models`' `shapes`), with its defaults (`Skip`, fused). Parameters and states are
//! moved into each step and never cloned, so the kernels write them in place: a copy or a
//! fresh output would be a launch and an allocation the count sees. The gradients are uploaded
//! before the count and the steps awaited with a device sync (no read). The first step
//! (state created) is not counted; the next three are, and each per-step figure is their mean
//! (rounded up).
//!
//! Compiled with this crate's `wgpu` feature; passes without running anything when no
//! adapter answers, unless `SCALEINV_REQUIRE_WGPU=1`. It configures the runtime's loggers, so
//! it is the only device test of its binary.
#![cfg(feature = "wgpu")]

mod common;
#[path = "../../scaleinv-models/src/shapes.rs"]
mod shapes;

use std::path::{Path, PathBuf};
use std::time::Duration;

use burn::cubecl::config::memory::MemoryLogLevel;
use burn::cubecl::config::profiling::ProfilingLogLevel;
use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
use burn::optim::Optimizer;
use burn::tensor::{Device, Tensor, TensorData};
use common::catalog::{Entry, OptimizerVisitor, Settings, for_each_optimizer};

/// A model's parameter list by rank (1, 2 and 4).
struct Shapes {
    name: &'static str,
    vectors: Vec<[usize; 1]>,
    matrices: Vec<[usize; 2]>,
    kernels: Vec<[usize; 4]>,
}

impl Shapes {
    fn new(name: &'static str, list: Vec<Vec<usize>>) -> Self {
        let of_rank = |rank: usize| list.iter().filter(move |s| s.len() == rank);
        Self {
            name,
            vectors: of_rank(1).map(|s| [s[0]]).collect(),
            matrices: of_rank(2).map(|s| [s[0], s[1]]).collect(),
            kernels: of_rank(4).map(|s| [s[0], s[1], s[2], s[3]]).collect(),
        }
    }

    fn count(&self) -> usize {
        self.vectors.len() + self.matrices.len() + self.kernels.len()
    }

    /// The tensors of rank ≥ 2 (those AdamP, SGDP and NaP project).
    fn projected(&self) -> usize {
        self.matrices.len() + self.kernels.len()
    }
}

/// The most a step may ask per tensor: `(rank 1, rank ≥ 2)`.
#[derive(Clone, Copy)]
struct PerTensor(usize, usize);

impl PerTensor {
    fn over(self, shapes: &Shapes) -> usize {
        self.0 * shapes.vectors.len() + self.1 * shapes.projected()
    }
}

/// Each entry's budgets per tensor and step, `(launches, allocations)` (allocations `None`:
/// counted, not bounded); `None` for the steps that are tensor operations (counted and
/// printed, not bounded: those operations are Burn's). Every vector of these lists has at most `ONE_CUBE`
/// (8192) elements, so its update is one cube that tests the gradient itself: one launch, no
/// scratch.
fn budget(entry: &Entry) -> Option<(PerTensor, Option<PerTensor>)> {
    // A projected tensor: the channels' statistics, then the update, whose every cube
    // decides (the test, the coefficients and the non-finite test) from them; one buffer, the
    // statistics.
    let projected = (PerTensor(1, 2), Some(PerTensor(0, 1)));
    match entry.name {
        "AdamP" | "SGDP (momentum, Nesterov)" => Some(projected),
        // max|g| by blocks; AdaClip with Σ clip(g)² by blocks; AdaGN with the update. The
        // blocks' maxima, their sums with a copy of the old statistics (the new ones are
        // written in place), and a vector that fills the unread maximum of the second moment
        // without AMSGrad. A vector: all in one cube, with that vector.
        "Stable-SPAM" => Some((PerTensor(1, 3), Some(PerTensor(1, 3)))),
        // The non-finite test by blocks and the update, with the blocks' flags (one launch
        // and no scratch for a tensor of at most 8192 elements).
        "width-scaled AdamW (matrix)" | "AdamC (normalized, running peak)" => {
            Some((PerTensor(1, 2), Some(PerTensor(0, 1))))
        }
        // AdamP's, and NaP's projection of a tensor of rank ≥ 2: Σp² (with the non-finite
        // test) by blocks, the rescale; the sums and the flags.
        "NaP(AdamP)" => Some((PerTensor(1, 2 + 2), Some(PerTensor(0, 1 + 2)))),
        // Around Burn's Adam under `Skip`: the gradient screened (one cube for a tensor of at
        // most 8192 elements, else the blocks' flags and a cube per share), Burn's fused
        // step, then NaP's Σp² and the rescale, which restores the parameter on a bad step
        // (a vector: the guard's restore). The allocations are counted, not bounded: Burn's
        // step writes a new parameter beside the one the screen keeps, and its moments as
        // Burn's fusion decides.
        "NaP(Burn Adam)" => Some((PerTensor(3, 2 + 1 + 2), None)),
        _ => None,
    }
}

/// The runtime's logs: launches and memory, set before any device exists.
struct Logs {
    launches: PathBuf,
    memory: PathBuf,
}

impl Logs {
    fn set() -> Self {
        let file = |what: &str| {
            std::env::temp_dir().join(format!("scaleinv-{what}-{}.log", std::process::id()))
        };
        let (launches, memory) = (file("launches"), file("memory"));
        let mut config = CubeClRuntimeConfig::default();
        config.profiling.logger.level = ProfilingLogLevel::Minimal;
        config.profiling.logger.file = Some(launches.clone());
        config.profiling.logger.append = false;
        config.memory.logger.level = MemoryLogLevel::Full;
        config.memory.logger.file = Some(memory.clone());
        config.memory.logger.append = false;
        assert!(
            CubeClRuntimeConfig::try_set(config),
            "the runtime's configuration was read before this test set it"
        );
        Self { launches, memory }
    }

    /// The counts so far, once the loggers have written them all (they hold still for
    /// 200 ms).
    fn counts(&self) -> Counts {
        let mut last = self.read();
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let now = self.read();
            if now == last {
                return now;
            }
            last = now;
        }
    }

    fn read(&self) -> Counts {
        let lines = |path: &Path, needle: &str| {
            std::fs::read_to_string(path)
                .map(|s| s.lines().filter(|l| l.contains(needle)).count())
                .unwrap_or(0)
        };
        Counts {
            launches: lines(&self.launches, "Executing"),
            allocations: lines(&self.memory, "[Main GPU Memory] Reserved"),
            read_backs: lines(&self.memory, "[Staging CPU Memory] Reserved"),
        }
    }

    fn remove(&self) {
        let _ = std::fs::remove_file(&self.launches);
        let _ = std::fs::remove_file(&self.memory);
    }
}

/// What the device was asked to do.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Counts {
    launches: usize,
    allocations: usize,
    read_backs: usize,
}

impl Counts {
    /// The mean per step of `steps` steps since `before`, rounded up.
    fn per_step(self, before: Self, steps: usize) -> Self {
        let per = |a: usize, b: usize| (a - b).div_ceil(steps);
        Self {
            launches: per(self.launches, before.launches),
            allocations: per(self.allocations, before.allocations),
            read_backs: per(self.read_backs, before.read_backs),
        }
    }
}

fn wave(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 7 + seed * 13) as f32) * 0.37).sin() * 0.5 + 0.01)
        .collect()
}

/// The steps counted after the first.
const STEPS: usize = 3;

/// One tensor with its state and the gradients of its steps, uploaded before any is taken.
struct Slot<const D: usize, S> {
    param: Option<Tensor<D>>,
    state: Option<S>,
    grads: Vec<Tensor<D>>,
}

impl<const D: usize, S> Slot<D, S> {
    fn new(dims: [usize; D], seed: usize, device: &Device) -> Self {
        let n = dims.iter().product();
        let tensor = |seed| Tensor::from_data(TensorData::new(wave(n, seed), dims), device);
        Self {
            param: Some(tensor(seed)),
            state: None,
            grads: (0..=STEPS).rev().map(|k| tensor(seed + k + 5)).collect(),
        }
    }

    fn step<O: Optimizer<State<D> = S>>(&mut self, optim: &O) {
        let grad = self.grads.pop().expect("a gradient per step");
        let param = self.param.take().expect("a parameter");
        let (param, state) = optim.step(1e-3, param, grad, self.state.take());
        self.param = Some(param);
        self.state = state;
    }
}

struct Count<'a> {
    device: &'a Device,
    logs: &'a Logs,
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
            .map(|(i, &d)| Slot::new(d, i + 200, device))
            .collect();
        let mut kernels: Vec<Slot<4, O::State<4>>> = (shapes.kernels.iter().enumerate())
            .map(|(i, &d)| Slot::new(d, i + 400, device))
            .collect();
        let mut step = || {
            vectors.iter_mut().for_each(|s| s.step(&optim));
            matrices.iter_mut().for_each(|s| s.step(&optim));
            kernels.iter_mut().for_each(|s| s.step(&optim));
            device.sync().expect("the device ran the step");
        };
        step();
        let before = self.logs.counts();
        (0..STEPS).for_each(|_| step());
        let per_step = self.logs.counts().per_step(before, STEPS);
        let Counts {
            launches,
            allocations,
            read_backs,
        } = per_step;
        let (name, list, tensors) = (entry.name, shapes.name, shapes.count());
        let Some((most_launches, most_allocations)) = budget(entry) else {
            println!(
                "{name} [{list}, {tensors} tensors], per step: {launches} launches, \
                 {allocations} allocations, {read_backs} read-backs (tensor ops, not bounded)"
            );
            return;
        };
        let most_launches = most_launches.over(shapes);
        let most_allocations = most_allocations.map(|most| most.over(shapes));
        let allocations_budget = match most_allocations {
            Some(most) => format!("at most {most}"),
            None => "Burn's, not bounded".to_string(),
        };
        println!(
            "{name} [{list}, {tensors} tensors], per step: {launches} launches (at most \
             {most_launches}), {allocations} allocations ({allocations_budget}), \
             {read_backs} read-backs"
        );
        let mut over = |what: &str, count: usize, most: usize| {
            if count > most {
                self.failures.push(format!(
                    "{name} on the {list} list: {count} {what} per step, budget {most}"
                ));
            }
        };
        over("launches", launches, most_launches);
        over(
            "allocations",
            allocations,
            most_allocations.unwrap_or(usize::MAX),
        );
        over("read-backs", read_backs, 0);
    }
}

/// Every optimizer's step, and NaP's around one of this crate's, keeps to its budgets: no
/// read-back, the parameter and the state written in place (no allocation but small scratch),
/// and at most the launches its kernels need.
#[test]
fn every_step_keeps_to_its_device_budget() {
    let logs = Logs::set();
    let Some(device) = common::wgpu_device() else {
        assert!(
            std::env::var("SCALEINV_REQUIRE_WGPU").as_deref() != Ok("1"),
            "SCALEINV_REQUIRE_WGPU=1 but wgpu found no adapter"
        );
        eprintln!("wgpu: no adapter on this machine; the device counts are not taken");
        return;
    };
    let mut failures = Vec::new();
    let lists = [
        Shapes::new("ResNet-50 / 16", shapes::resnet50(16)),
        Shapes::new("GPT-2 small / 12", shapes::gpt2_small(12)),
    ];
    for shapes in &lists {
        let mut count = Count {
            device: &device,
            logs: &logs,
            shapes,
            failures: Vec::new(),
        };
        for_each_optimizer(&mut count);
        failures.extend(count.failures);
    }
    logs.remove();
    assert!(failures.is_empty(), "over budget:\n{}", failures.join("\n"));
}
