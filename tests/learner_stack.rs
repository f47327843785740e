//! AdamP in Burn's `Learner` with everything around it: a cosine schedule, a checkpoint per
//! epoch and a run resumed from one, gradients accumulated over micro-batches, and global-norm
//! clipping in the `optimize` and `optimize_multi` hooks on one device and on two, under both of
//! burn-train's multi-device strategies. `docs/learner.md` names these tests.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use burn::data::dataloader::DataLoader;
use burn::lr_scheduler::cosine::CosineAnnealingLrSchedulerConfig;
use burn::lr_scheduler::module_lr_scheduler::{ModuleLearningRate, ModuleLrScheduler};
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer, MultiGradientsParams};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor};
use burn::train::{
    ClassificationOutput, ExecutionStrategy, InferenceStep, Learner, MultiDeviceOptim,
    SupervisedTraining, TrainOutput, TrainStep, TrainingStrategy,
};
use scaleinv::models::learner::DigitBatch as Batch;
use scaleinv::models::{Digits, NormMlp, NormMlpConfig};
use scaleinv::{AdamPConfig, GlobalNormClip};

const HIDDEN: usize = 32;

/// `head(relu(bn(hidden(x))))` on the flattened 8×8 digits, or without the BatchNorm
/// ([`Mlp::plain`]). The BatchNorm over the hidden features makes each column of
/// `hidden.weight` (Burn stores a `Linear` weight as `[d_input, d_output]`) scale-invariant on
/// its own: AdamP's `init_for` gives that weight the channel axis 1, and a projection along
/// another axis is another step.
#[derive(Module, Debug)]
struct Mlp {
    hidden: Linear,
    norm: Option<BatchNorm>,
    head: Linear,
    /// The micro-batches of an optimizer step: each one's loss is divided by it.
    micro_batches: usize,
}

impl Mlp {
    fn new(device: &Device) -> Self {
        Self {
            hidden: LinearConfig::new(64, HIDDEN).with_bias(false).init(device),
            norm: Some(BatchNormConfig::new(HIDDEN).init(device)),
            head: LinearConfig::new(HIDDEN, 10).init(device),
            micro_batches: 1,
        }
    }

    /// Without the BatchNorm (the hidden layer gets a bias): each example's gradient does not
    /// depend on the others of its batch.
    fn plain(micro_batches: usize, device: &Device) -> Self {
        Self {
            hidden: LinearConfig::new(64, HIDDEN).init(device),
            norm: None,
            head: LinearConfig::new(HIDDEN, 10).init(device),
            micro_batches,
        }
    }

    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.hidden.forward(images.flatten::<2>(1, 3));
        let x = match &self.norm {
            Some(norm) => norm.forward(x),
            None => x,
        };
        self.head.forward(relu(x))
    }

    fn classify(&self, batch: Batch) -> ClassificationOutput {
        let logits = self.forward(batch.images);
        let loss = CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits.clone(), batch.labels.clone());
        ClassificationOutput::new(loss, logits, batch.labels)
    }
}

/// The global-norm clipping in the hooks.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Clip {
    /// None: Burn's default steps.
    Off,
    /// By the norm of the whole step's gradients (under `OptimSharded`, of their sum over the
    /// devices).
    Global(f64),
    /// Under `OptimSharded`, each device's part by its own norm.
    EachDevice(f64),
}

/// What the hooks do, and what they saw at each optimizer step: the hook Burn called, the
/// learning rate and the global norm before clipping.
struct Hooks {
    clip: Clip,
    calls: Vec<&'static str>,
    lrs: Vec<f64>,
    norms: Vec<f64>,
}

static HOOKS: Mutex<Hooks> = Mutex::new(Hooks {
    clip: Clip::Off,
    calls: Vec::new(),
    lrs: Vec::new(),
    norms: Vec::new(),
});

fn hooks() -> MutexGuard<'static, Hooks> {
    HOOKS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sets the clipping of the hooks and forgets what they saw.
fn reset_hooks(clip: Clip) {
    let mut hooks = hooks();
    hooks.clip = clip;
    hooks.calls.clear();
    hooks.lrs.clear();
    hooks.norms.clear();
}

fn record(hook: &'static str, lr: f64) -> Clip {
    let mut hooks = hooks();
    hooks.calls.push(hook);
    hooks.lrs.push(lr);
    hooks.clip
}

/// Clips `grads` by their global norm and records the norm.
fn clip(model: &Mlp, max_norm: f64, grads: GradientsParams) -> GradientsParams {
    let (grads, norm) = GlobalNormClip::new(max_norm).clip(model, grads);
    hooks().norms.push(norm.value());
    grads
}

/// Each parameter's gradient summed over the devices, on the device that Burn's
/// `step_multi` would step that parameter on (`MultiGradientsParams::remove` picks the device
/// and sums there).
fn sum_over_devices<M: Module>(model: &M, grads: MultiGradientsParams) -> GradientsParams {
    struct Sum {
        parts: MultiGradientsParams,
        sum: GradientsParams,
    }
    impl ModuleVisitor for Sum {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some((grad, _device)) = self.parts.remove::<D>(param.id) {
                self.sum.register(param.id, grad);
            }
        }
    }
    let mut sum = Sum {
        parts: grads,
        sum: GradientsParams::new(),
    };
    model.visit(&mut sum);
    sum.sum
}

impl TrainStep for Mlp {
    type Input = Batch;
    type Output = ClassificationOutput;

    fn step(&self, batch: Batch) -> TrainOutput<ClassificationOutput> {
        let output = self.classify(batch);
        let loss = output.loss.clone().div_scalar(self.micro_batches as f32);
        TrainOutput::new(self, loss.backward(), output)
    }

    fn optimize(
        self,
        optim: &mut ModuleOptimizer,
        lr: ModuleLearningRate,
        grads: GradientsParams,
    ) -> Self {
        let grads = match record("optimize", lr.base()) {
            Clip::Off => grads,
            Clip::Global(max_norm) | Clip::EachDevice(max_norm) => clip(&self, max_norm, grads),
        };
        optim.step(lr, self, grads)
    }

    fn optimize_multi(
        self,
        optim: &mut ModuleOptimizer,
        lr: ModuleLearningRate,
        grads: MultiGradientsParams,
    ) -> Self {
        match record("optimize_multi", lr.base()) {
            Clip::Off => optim.step_multi(lr, self, grads),
            Clip::Global(max_norm) => {
                let grads = clip(&self, max_norm, sum_over_devices(&self, grads));
                optim.step(lr, self, grads)
            }
            Clip::EachDevice(max_norm) => {
                let grads = grads
                    .grads
                    .into_iter()
                    .map(|(part, device)| (clip(&self, max_norm, part), device))
                    .collect();
                optim.step_multi(lr, self, MultiGradientsParams { grads })
            }
        }
    }
}

impl InferenceStep for Mlp {
    type Input = Batch;
    type Output = ClassificationOutput;

    fn step(&self, batch: Batch) -> ClassificationOutput {
        self.classify(batch)
    }
}

/// A loader over the digits at `items`, in order or shuffled from a seed.
fn loader(
    data: &Digits,
    items: Vec<usize>,
    batch: usize,
    shuffle: Option<u64>,
    device: &Device,
) -> Arc<dyn DataLoader<Batch>> {
    scaleinv::models::learner::loader(&data.select(&items), batch, shuffle, device)
}

/// The tests seed the same global generator and share [`HOOKS`]: one at a time.
static SEEDED: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SEEDED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A fresh folder for a run's logs and checkpoints, removed when dropped (a failed test
/// included).
struct RunDir(PathBuf);

impl RunDir {
    fn new(label: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "scaleinv-learner-stack-{label}-{}",
            std::process::id()
        ));
        Self(dir)
    }
}

impl std::ops::Deref for RunDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

/// Every float parameter of `model` by path, running statistics included.
fn parameters<M: Module>(model: &M) -> Vec<(String, Vec<f32>)> {
    common::float_params(model)
        .into_iter()
        .map(|p| (p.path, p.values))
        .collect()
}

/// The parameters without the BatchNorm running statistics, which each device of a
/// multi-device run updates from its own batches.
fn trainable<M: Module>(model: &M) -> Vec<(String, Vec<f32>)> {
    common::float_params(model)
        .into_iter()
        .filter(|p| !p.is_running_statistic())
        .map(|p| (p.path, p.values))
        .collect()
}

/// The ids of the parameters the optimizer steps (the running statistics left out: a loaded
/// `RunningState` keeps the id of the model it was loaded into).
fn param_ids<M: Module>(model: &M) -> Vec<ParamId> {
    common::float_params(model)
        .into_iter()
        .filter(|p| !p.is_running_statistic())
        .map(|p| p.id)
        .collect()
}

/// The first parameter whose values differ in any bit, with the largest difference.
fn first_difference(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> Option<(String, f32)> {
    assert_eq!(a.len(), b.len(), "the same parameters");
    a.iter().zip(b).find_map(|((path, x), (other, y))| {
        assert_eq!(path, other);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        (bits(x) != bits(y)).then(|| {
            let diff = x
                .iter()
                .zip(y)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f32::max);
            (path.clone(), diff)
        })
    })
}

fn assert_bit_identical(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)], what: &str) {
    if let Some((path, diff)) = first_difference(a, b) {
        panic!("{what}: {path} differs (largest difference {diff:e})");
    }
}

// ---------------------------------------------------------------------------------------------
// Checkpoints and resuming.

/// Batches of an epoch in the resume runs: 512 training digits in batches of 64.
const RESUME_BATCHES: usize = 8;
const RESUME_BATCH: usize = 64;
const RESUME_EPOCHS: usize = 2;

/// AdamP's scheduler: cosine from 1e-2 over every optimizer step of the planned run.
fn cosine(steps: usize) -> ModuleLrScheduler {
    CosineAnnealingLrSchedulerConfig::new(1e-2, steps)
        .init()
        .unwrap()
}

fn adamp(model: &Mlp) -> ModuleOptimizer {
    AdamPConfig::new().with_weight_decay(1e-2).init_for(model)
}

/// A `SupervisedTraining` run of the resume tests, AdamP built for `model` under the cosine
/// schedule of the whole plan, with a checkpoint per epoch: `epochs` epochs in all, from the
/// checkpoint of epoch `resume` when given.
fn fit_adamp(
    model: Mlp,
    dir: &Path,
    epochs: usize,
    resume: Option<usize>,
    shuffle: Option<u64>,
    device: &Device,
) -> Mlp {
    let data = Digits::load().unwrap();
    let train = (0..RESUME_BATCHES * RESUME_BATCH).collect();
    let valid = (512..640).collect();
    let training = SupervisedTraining::new(
        dir,
        loader(&data, train, RESUME_BATCH, shuffle, device),
        loader(&data, valid, 128, None, device),
    )
    .with_application_logger(None)
    .with_default_checkpointers()
    .num_epochs(epochs);
    let training = match resume {
        Some(epoch) => training.checkpoint(epoch),
        None => training,
    };
    let optim = adamp(&model);
    let schedule = cosine(RESUME_EPOCHS * RESUME_BATCHES);
    let result = training.launch(Learner::new(model, optim, schedule));
    assert!(
        result.error.is_none(),
        "training failed: {:?}",
        result.error
    );
    result.model
}

/// A freshly initialised model (its own values and parameter ids).
fn fresh_model(seed: u64, device: &Device) -> Mlp {
    device.seed(seed);
    Mlp::new(device)
}

#[test]
fn a_run_resumed_from_its_checkpoint_retraces_the_uninterrupted_run() {
    let _serial = serial();
    reset_hooks(Clip::Off);
    let device = common::cpu_device().autodiff();

    // Two epochs straight through.
    let straight_dir = RunDir::new("straight");
    let model = fresh_model(7, &device);
    let straight = fit_adamp(model, &straight_dir, RESUME_EPOCHS, None, None, &device);
    for epoch in 1..=RESUME_EPOCHS {
        for name in ["model", "optim", "scheduler"] {
            let file = straight_dir.join(format!("checkpoint/{name}-{epoch}.bpk"));
            assert!(file.is_file(), "{} was written", file.display());
        }
    }

    // One epoch (the same plan: the scheduler covers both epochs), then stopped.
    let dir = RunDir::new("interrupted");
    let model = fresh_model(7, &device);
    let first_epoch = fit_adamp(model, &dir, 1, None, None, &device);
    let checkpoint = dir.join("checkpoint/model-1.bpk");

    // The resumed run: the model loaded from the checkpoint first, then its optimizer.
    let fresh = fresh_model(99, &device);
    let fresh_ids = param_ids(&fresh);
    let loaded = fresh.load_file(&checkpoint);
    assert_eq!(
        param_ids(&loaded),
        param_ids(&first_epoch),
        "the checkpoint restores the parameter ids it saved"
    );
    assert!(
        fresh_ids.iter().all(|id| !param_ids(&loaded).contains(id)),
        "a freshly initialised model has other ids"
    );
    let resumed = fit_adamp(loaded, &dir, RESUME_EPOCHS, Some(1), None, &device);
    assert_bit_identical(
        &parameters(&resumed),
        &parameters(&straight),
        "resumed from epoch 1 against two epochs straight",
    );
    assert!(
        first_difference(&parameters(&first_epoch), &parameters(&straight)).is_some(),
        "the second epoch moved the weights"
    );

    // The optimizer built for a freshly initialised model: its parameter groups name ids that
    // the checkpoint replaces, so every parameter falls back to the first group (axis 0).
    let fresh = fresh_model(99, &device);
    let misrouted = fit_adamp(fresh, &dir, RESUME_EPOCHS, Some(1), None, &device);
    let (path, diff) = first_difference(&parameters(&misrouted), &parameters(&straight))
        .expect("an optimizer built for a fresh model resumes differently");
    println!("resume with the optimizer of a fresh model: {path} differs by up to {diff:e}");
}

#[test]
fn a_shuffling_loader_does_not_resume_exactly() {
    let _serial = serial();
    reset_hooks(Clip::Off);
    let device = common::cpu_device().autodiff();

    let dir = RunDir::new("shuffled");
    let model = fresh_model(7, &device);
    let straight = fit_adamp(model, &dir, RESUME_EPOCHS, None, Some(1), &device);

    let loaded = fresh_model(99, &device).load_file(dir.join("checkpoint/model-1.bpk"));
    let resumed = fit_adamp(loaded, &dir, RESUME_EPOCHS, Some(1), Some(1), &device);
    let (path, diff) = first_difference(&parameters(&resumed), &parameters(&straight))
        .expect("the resumed run shuffles its second epoch as the first");
    println!("resume with a shuffling loader: {path} differs by up to {diff:e}");
}

// ---------------------------------------------------------------------------------------------
// Gradient accumulation.

const MICRO_BATCHES: usize = 4;
const MICRO_BATCH: usize = 16;

fn flat_digits(indices: std::ops::Range<usize>, device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
    let data = Digits::load().unwrap();
    let (images, labels) = data.select(&indices.collect::<Vec<_>>()).to_tensors(device);
    (images.flatten::<2>(1, 3), labels)
}

/// The gradients of one batch of `MICRO_BATCHES × MICRO_BATCH` digits, and those of its
/// micro-batches summed by Burn's `GradientsAccumulator`, each micro-batch's loss divided by
/// `divide_by`.
fn big_and_accumulated<M: Module>(
    model: &M,
    loss: impl Fn(&M, Tensor<2>, Tensor<1, Int>) -> Tensor<1>,
    divide_by: f32,
    device: &Device,
) -> (GradientsParams, GradientsParams) {
    let (x, y) = flat_digits(0..MICRO_BATCHES * MICRO_BATCH, device);
    let big = GradientsParams::from_grads(loss(model, x, y).backward(), model);
    let mut accumulator = GradientsAccumulator::new();
    for k in 0..MICRO_BATCHES {
        let (x, y) = flat_digits(k * MICRO_BATCH..(k + 1) * MICRO_BATCH, device);
        let micro = loss(model, x, y).div_scalar(divide_by);
        accumulator.accumulate(model, GradientsParams::from_grads(micro.backward(), model));
    }
    (big, accumulator.grads())
}

/// Per parameter: `max |a − b| / max |b|`, by path.
fn relative_differences<M: Module>(
    model: &M,
    a: &GradientsParams,
    b: &GradientsParams,
) -> Vec<(String, f32)> {
    struct Compare<'a> {
        path: Vec<String>,
        a: &'a GradientsParams,
        b: &'a GradientsParams,
        out: Vec<(String, f32)>,
    }
    impl ModuleVisitor for Compare<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let path = self.path.join(".");
            let (a, b) = match (self.a.get::<D>(param.id), self.b.get::<D>(param.id)) {
                (Some(a), Some(b)) => (a, b),
                // Running statistics: no gradient on either side.
                (None, None) => return,
                _ => panic!("{path}: a gradient is missing on one side"),
            };
            let (a, b) = (common::values(a), common::values(b));
            let scale = b.iter().map(|v| v.abs()).fold(0.0, f32::max);
            let diff = a
                .iter()
                .zip(&b)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f32::max);
            self.out.push((path, diff / scale));
        }
    }
    let mut compare = Compare {
        path: Vec::new(),
        a,
        b,
        out: Vec::new(),
    };
    model.visit(&mut compare);
    compare.out
}

fn layer_norm_mlp(device: &Device) -> NormMlp {
    device.seed(5);
    NormMlpConfig::new(64, vec![32, 32], 10).init(device)
}

#[test]
fn micro_batch_losses_divided_by_k_accumulate_to_the_larger_batch_gradient() {
    let _serial = serial();
    let device = common::cpu_device().autodiff();
    let model = layer_norm_mlp(&device);
    let loss = |m: &NormMlp, x, y| m.loss(x, y);

    let (big, accumulated) = big_and_accumulated(&model, loss, MICRO_BATCHES as f32, &device);
    for (path, rel) in relative_differences(&model, &accumulated, &big) {
        println!("accumulated over {MICRO_BATCHES} (loss / k) vs one batch: {path} {rel:.1e}");
        assert!(rel <= 1e-5, "{path}: {rel}");
    }

    // Without the division, Burn's accumulator sums: k times the larger batch's gradient.
    let (big, summed) = big_and_accumulated(&model, loss, 1.0, &device);
    let mut times_k = GradientsParams::new();
    struct Scale<'a>(&'a GradientsParams, &'a mut GradientsParams);
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let grad = self.0.get::<D>(param.id).expect("a gradient");
            self.1
                .register(param.id, grad.mul_scalar(MICRO_BATCHES as f32));
        }
    }
    model.visit(&mut Scale(&big, &mut times_k));
    for (path, rel) in relative_differences(&model, &summed, &times_k) {
        assert!(
            rel <= 1e-5,
            "{path}: the sum is not {MICRO_BATCHES}× ({rel})"
        );
    }
}

#[test]
fn with_batch_norm_micro_batches_are_not_a_larger_batch() {
    let _serial = serial();
    let device = common::cpu_device().autodiff();
    device.seed(5);
    let model = Mlp::new(&device);
    let loss = |m: &Mlp, x: Tensor<2>, y| {
        let [n, _] = x.dims();
        m.classify(Batch {
            images: x.reshape([n, 1, 8, 8]),
            labels: y,
        })
        .loss
    };
    let (big, accumulated) = big_and_accumulated(&model, loss, MICRO_BATCHES as f32, &device);
    let worst = relative_differences(&model, &accumulated, &big)
        .into_iter()
        .fold(0.0f32, |worst, (_, rel)| worst.max(rel));
    println!("BatchNorm: accumulated vs one batch, worst relative difference {worst:.2e}");
    assert!(
        worst > 1e-2,
        "micro-batch statistics changed nothing: {worst}"
    );
}

/// A copy of `grads` for `model`'s parameters (the same tensors).
fn copy_of<M: Module>(model: &M, grads: &GradientsParams) -> GradientsParams {
    struct Copy<'a>(&'a GradientsParams, GradientsParams);
    impl ModuleVisitor for Copy<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(grad) = self.0.get::<D>(param.id) {
                self.1.register(param.id, grad);
            }
        }
    }
    let mut copy = Copy(grads, GradientsParams::new());
    model.visit(&mut copy);
    copy.1
}

/// `after − before` for every parameter.
fn updates(before: &[(String, Vec<f32>)], after: &[(String, Vec<f32>)]) -> Vec<(String, Vec<f32>)> {
    before
        .iter()
        .zip(after)
        .map(|((path, b), (_, a))| (path.clone(), a.iter().zip(b).map(|(x, y)| x - y).collect()))
        .collect()
}

#[test]
fn every_catalog_optimizer_steps_alike_from_accumulated_and_larger_batch_gradients() {
    let _serial = serial();
    let device = common::cpu_device().autodiff();
    let model = layer_norm_mlp(&device);
    let (big, accumulated) = big_and_accumulated(
        &model,
        |m: &NormMlp, x, y| m.loss(x, y),
        MICRO_BATCHES as f32,
        &device,
    );
    let before = parameters(&model);

    for (entry, make) in common::catalog::module_optimizers::<NormMlp>() {
        let name = entry.name;
        let step = |grads: &GradientsParams| {
            let mut optim = make(&model);
            parameters(&optim.step(entry.lr, model.clone(), copy_of(&model, grads)))
        };
        let from_accumulated = step(&accumulated);
        // From the same gradient values, the step is the same to the bit.
        assert_bit_identical(&step(&accumulated), &from_accumulated, name);

        // From the larger batch's gradients (equal to about 1e-7), the updates agree.
        let a = updates(&before, &from_accumulated);
        let b = updates(&before, &step(&big));
        let mut worst = 0.0f32;
        for ((path, a), (_, b)) in a.iter().zip(&b) {
            let scale = b.iter().map(|v| v.abs()).fold(0.0, f32::max);
            let diff = a
                .iter()
                .zip(b)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f32::max);
            let rel = if scale > 0.0 { diff / scale } else { diff };
            assert!(rel <= 1e-4, "{name}: {path} update differs by {rel}");
            worst = worst.max(rel);
        }
        println!("{name}: update from accumulated vs larger batch, worst {worst:.1e}");
    }
}

// ---------------------------------------------------------------------------------------------
// Several devices and global-norm clipping in the hooks.

/// Batches of 32 per device and optimizer steps in the multi-device runs.
const DEVICE_BATCH: usize = 32;
const MULTI_STEPS: usize = 12;
const MAX_NORM: f64 = 0.25;

/// What a run left: the trained parameters (running statistics left out), what the hooks saw,
/// and the training loss before and after.
struct Outcome {
    trainable: Vec<(String, Vec<f32>)>,
    calls: Vec<&'static str>,
    lrs: Vec<f64>,
    norms: Vec<f64>,
    loss_before: f32,
    loss_after: f32,
}

/// The training loss, with batch statistics, over the first `items` digits.
fn training_loss(model: &Mlp, items: usize, device: &Device) -> f32 {
    let data = Digits::load().unwrap();
    let indices: Vec<usize> = (0..items).collect();
    let (images, labels) = data.select(&indices).to_tensors(device);
    let output = model.classify(Batch { images, labels });
    common::values(output.loss)[0]
}

/// How a run is laid out.
enum Layout {
    /// One device that accumulates `k` batches of `batch` digits per optimizer step, the loss
    /// of each divided by `micro_batches`, the batches in the order given.
    One {
        k: usize,
        batch: usize,
        micro_batches: usize,
        order: Vec<usize>,
    },
    /// Two devices, batches of [`DEVICE_BATCH`]; burn-train gives each device a contiguous
    /// half of the digits.
    Two(MultiDeviceOptim),
}

/// One epoch of AdamP with the cosine schedule over `MULTI_STEPS` optimizer steps, the
/// network with BatchNorm (`plain = false`) or without.
fn train_epoch(layout: Layout, plain: bool, clip: Clip, label: &str) -> Outcome {
    reset_hooks(clip);
    let device = common::cpu_device().autodiff();
    let data = Digits::load().unwrap();
    let items = 2 * MULTI_STEPS * DEVICE_BATCH;
    device.seed(11);
    let micro_batches = match &layout {
        Layout::One { micro_batches, .. } => *micro_batches,
        Layout::Two(_) => 1,
    };
    let model = match plain {
        true => Mlp::plain(micro_batches, &device),
        false => Mlp::new(&device),
    };
    let loss_before = training_loss(&model, items, &device);
    let optim = adamp(&model);

    let (order, batch) = match &layout {
        Layout::One { order, batch, .. } => (order.clone(), *batch),
        Layout::Two(_) => ((0..items).collect(), DEVICE_BATCH),
    };
    let valid = (items..items + DEVICE_BATCH).collect();
    let dir = RunDir::new(label);
    let training = SupervisedTraining::new(
        &*dir,
        loader(&data, order, batch, None, &device),
        loader(&data, valid, DEVICE_BATCH, None, &device),
    )
    .with_application_logger(None)
    .num_epochs(1);
    let training = match layout {
        Layout::Two(optim) => training.with_training_strategy(TrainingStrategy::Default(
            ExecutionStrategy::multi(vec![device.clone(), device.clone()], optim),
        )),
        Layout::One { k: 1, .. } => training,
        Layout::One { k, .. } => training.grads_accumulation(k),
    };
    let result = training.launch(Learner::new(model, optim, cosine(MULTI_STEPS)));
    assert!(result.error.is_none(), "{label}: {:?}", result.error);

    let trained = result.model.train();
    let loss_after = training_loss(&trained, items, &device);
    let mut hooks = hooks();
    hooks.clip = Clip::Off;
    Outcome {
        trainable: trainable(&trained),
        loss_before,
        loss_after,
        calls: std::mem::take(&mut hooks.calls),
        lrs: std::mem::take(&mut hooks.lrs),
        norms: std::mem::take(&mut hooks.norms),
    }
}

/// One device that sees the two devices' batches interleaved, A0 B0 A1 B1 …, and accumulates
/// each pair before its step.
fn one_device_for_two() -> Layout {
    let half = MULTI_STEPS * DEVICE_BATCH;
    let order = (0..MULTI_STEPS)
        .flat_map(|b| {
            let a = (b * DEVICE_BATCH)..((b + 1) * DEVICE_BATCH);
            a.clone().chain(a.start + half..a.end + half)
        })
        .collect();
    Layout::One {
        k: 2,
        batch: DEVICE_BATCH,
        micro_batches: 1,
        order,
    }
}

/// The learning rates Burn's cosine scheduler gives `MULTI_STEPS` optimizer steps.
fn cosine_lrs() -> Vec<f64> {
    let steps = MULTI_STEPS as f64;
    (0..MULTI_STEPS)
        .map(|t| 0.5 * 1e-2 * (1.0 + (t as f64 / steps * std::f64::consts::PI).cos()))
        .collect()
}

/// One learning rate per optimizer step, along the cosine, through `hook`.
fn assert_steps(outcome: &Outcome, hook: &str, label: &str) {
    assert_eq!(
        outcome.calls,
        vec![hook; MULTI_STEPS],
        "{label}: the hook Burn calls"
    );
    for (got, want) in outcome.lrs.iter().zip(cosine_lrs()) {
        assert!(
            (got - want).abs() <= 1e-12,
            "{label}: lr {got}, want {want}"
        );
    }
}

#[test]
fn global_norm_clipping_in_the_hooks_on_two_devices_equals_clipping_on_one() {
    let _serial = serial();
    let single = train_epoch(
        one_device_for_two(),
        false,
        Clip::Global(MAX_NORM),
        "clip-one",
    );
    assert_steps(&single, "optimize", "one device");
    println!("global norms before clipping: {:?}", single.norms);
    assert!(
        single.norms.iter().all(|&n| n > MAX_NORM),
        "the clipping bit at every step: {:?}",
        single.norms
    );

    for (mode, strategy, hook) in [
        ("main", MultiDeviceOptim::OptimMainDevice, "optimize"),
        ("sharded", MultiDeviceOptim::OptimSharded, "optimize_multi"),
    ] {
        let label = format!("clip-{mode}");
        let multi = train_epoch(Layout::Two(strategy), false, Clip::Global(MAX_NORM), &label);
        assert_steps(&multi, hook, mode);
        assert_eq!(multi.norms, single.norms, "{mode}: the global norms");
        assert_bit_identical(&multi.trainable, &single.trainable, mode);
    }

    // Each device's part clipped by its own norm is another clipping.
    let sharded = Layout::Two(MultiDeviceOptim::OptimSharded);
    let each = train_epoch(sharded, false, Clip::EachDevice(MAX_NORM), "clip-each");
    let (path, diff) = first_difference(&each.trainable, &single.trainable)
        .expect("clipping each device's part by its own norm differs");
    println!("each device clipped by its own norm: {path} differs by up to {diff:e}");
}

#[test]
fn adamp_trains_on_two_devices_as_on_one_under_both_strategies() {
    let _serial = serial();
    let single = train_epoch(one_device_for_two(), false, Clip::Off, "plain-one");
    assert_steps(&single, "optimize", "one device");
    for (mode, strategy, hook) in [
        ("main", MultiDeviceOptim::OptimMainDevice, "optimize"),
        ("sharded", MultiDeviceOptim::OptimSharded, "optimize_multi"),
    ] {
        let multi = train_epoch(
            Layout::Two(strategy),
            false,
            Clip::Off,
            &format!("plain-{mode}"),
        );
        assert_steps(&multi, hook, mode);
        println!(
            "{mode}: training loss {:.4} -> {:.4}",
            multi.loss_before, multi.loss_after
        );
        assert!(
            multi.loss_after < 0.7 * multi.loss_before,
            "{mode}: the loss fell too little: {} -> {}",
            multi.loss_before,
            multi.loss_after
        );
        assert_bit_identical(&multi.trainable, &single.trainable, mode);
    }
}

#[test]
fn learner_accumulation_of_k_micro_batches_trains_as_a_k_times_larger_batch() {
    let _serial = serial();
    let items: Vec<usize> = (0..2 * MULTI_STEPS * DEVICE_BATCH).collect();
    let big_batch = 2 * DEVICE_BATCH;
    let larger = Layout::One {
        k: 1,
        batch: big_batch,
        micro_batches: 1,
        order: items.clone(),
    };
    let larger = train_epoch(larger, true, Clip::Off, "accumulation-larger");
    let accumulated = Layout::One {
        k: MICRO_BATCHES,
        batch: big_batch / MICRO_BATCHES,
        micro_batches: MICRO_BATCHES,
        order: items,
    };
    let accumulated = train_epoch(accumulated, true, Clip::Off, "accumulation-k");
    assert_steps(&larger, "optimize", "larger batches");
    assert_steps(&accumulated, "optimize", "accumulated");
    println!(
        "accumulated: training loss {:.4} -> {:.4}",
        accumulated.loss_before, accumulated.loss_after
    );
    assert!(
        accumulated.loss_after < 0.9 * accumulated.loss_before,
        "the loss fell too little: {} -> {}",
        accumulated.loss_before,
        accumulated.loss_after
    );
    let mut worst = 0.0f32;
    for ((path, a), (_, b)) in accumulated.trainable.iter().zip(&larger.trainable) {
        let scale = b.iter().map(|v| v.abs()).fold(0.0, f32::max);
        let diff = a
            .iter()
            .zip(b)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f32::max);
        println!(
            "accumulated vs larger batches after an epoch: {path} {:.1e}",
            diff / scale
        );
        worst = worst.max(diff / scale);
    }
    assert!(worst <= 1e-5, "{worst}");
}
