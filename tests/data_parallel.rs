//! Data-parallel training through burn-train's `ExecutionStrategy::multi`: the optimizers keep
//! only per-tensor state, so two workers whose gradients Burn sums before the step train the
//! model exactly as one device accumulating the same two batches.

mod common;

use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::data::dataset::InMemDataset;
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::ModuleOptimizer;
use burn::tensor::{Device, Int, Tensor};
use burn::train::{
    ClassificationOutput, ExecutionStrategy, InferenceStep, Learner, MultiDeviceOptim,
    SupervisedTraining, TrainOutput, TrainStep, TrainingStrategy,
};
use scaleinv::AdamPConfig;
use scaleinv::models::{Digits, DigitsCnn, DigitsCnnConfig};

#[derive(Module, Debug)]
struct Classifier {
    net: DigitsCnn,
}

#[derive(Clone, Debug)]
struct Item(usize);

#[derive(Clone, Debug)]
struct Batch {
    images: Tensor<4>,
    labels: Tensor<1, Int>,
}

struct DigitBatcher(Digits);

impl Batcher<Item, Batch> for DigitBatcher {
    fn batch(&self, items: Vec<Item>, device: &Device) -> Batch {
        let indices: Vec<usize> = items.iter().map(|i| i.0).collect();
        let (images, labels) = self.0.select(&indices).to_tensors(device);
        Batch { images, labels }
    }
}

impl Classifier {
    fn classify(&self, batch: Batch) -> ClassificationOutput {
        let logits = self.net.forward(batch.images);
        let loss = CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits.clone(), batch.labels.clone());
        ClassificationOutput::new(loss, logits, batch.labels)
    }
}

impl TrainStep for Classifier {
    type Input = Batch;
    type Output = ClassificationOutput;

    fn step(&self, batch: Batch) -> TrainOutput<ClassificationOutput> {
        let output = self.classify(batch);
        TrainOutput::new(self, output.loss.backward(), output)
    }
}

impl InferenceStep for Classifier {
    type Input = Batch;
    type Output = ClassificationOutput;

    fn step(&self, batch: Batch) -> ClassificationOutput {
        self.classify(batch)
    }
}

const BATCH: usize = 32;
const BATCHES_PER_WORKER: usize = 6;

fn loader(data: &Digits, order: Vec<usize>, device: &Device) -> Arc<dyn DataLoader<Batch>> {
    DataLoaderBuilder::new(DigitBatcher(data.clone()))
        .batch_size(BATCH)
        .set_device(device.clone())
        .build(InMemDataset::new(order.into_iter().map(Item).collect()))
}

/// Trains for one epoch and returns every parameter's values.
fn train(
    strategy: Option<ExecutionStrategy>,
    optim: impl Fn(&Classifier) -> ModuleOptimizer,
    label: &str,
) -> Vec<Vec<f32>> {
    train_with_order(&common::cpu_device(), strategy, optim, label, true)
}

/// [`train`]; on one device, `interleave = false` feeds the batches in their plain order
/// (A0 A1 … B0 B1 …), which pairs them differently from the two workers.
fn train_with_order(
    device: &Device,
    strategy: Option<ExecutionStrategy>,
    optim: impl Fn(&Classifier) -> ModuleOptimizer,
    label: &str,
    interleave: bool,
) -> Vec<Vec<f32>> {
    let device = device.clone().autodiff();
    let data = Digits::load().unwrap();
    device.seed(11);
    let model = Classifier {
        net: DigitsCnnConfig {
            width: 8,
            classes: 10,
        }
        .init(&device),
    };
    let optim = optim(&model);
    let initial = trainable_values(&model);
    // Worker k of two gets the k-th half of the items (burn-train splits the loader into
    // contiguous slices); the single device sees the same batches interleaved, A0 B0 A1 B1 …,
    // and sums each pair before its step.
    let half = BATCH * BATCHES_PER_WORKER;
    let order: Vec<usize> = match strategy {
        Some(_) => (0..2 * half).collect(),
        None if !interleave => (0..2 * half).collect(),
        None => (0..BATCHES_PER_WORKER)
            .flat_map(|b| {
                let a = (b * BATCH)..((b + 1) * BATCH);
                let other = (half + b * BATCH)..(half + (b + 1) * BATCH);
                a.chain(other)
            })
            .collect(),
    };
    let valid: Vec<usize> = (2 * half..2 * half + BATCH).collect();
    let dir = std::env::temp_dir().join(format!("scaleinv-dp-{label}-{}", std::process::id()));
    let training = SupervisedTraining::new(
        &dir,
        loader(&data, order, &device),
        loader(&data, valid, &device),
    )
    .num_epochs(1);
    let training = match strategy {
        Some(strategy) => training.with_training_strategy(TrainingStrategy::Default(strategy)),
        None => training.grads_accumulation(2),
    };
    let result = training.launch(Learner::new(model, optim, 1e-2));
    std::fs::remove_dir_all(&dir).ok();
    assert!(result.error.is_none(), "{label}: {:?}", result.error);
    let trained = trainable_values(&result.model);
    assert_ne!(trained, initial, "{label}: the parameters moved");
    trained
}

/// The values of every parameter but the running statistics, which each worker updates from
/// its own batches.
fn trainable_values<M: Module>(model: &M) -> Vec<Vec<f32>> {
    let values: Vec<Vec<f32>> = common::float_params(model)
        .into_iter()
        .filter(|p| !p.is_running_statistic())
        .map(|p| p.values)
        .collect();
    assert!(values.len() >= 8, "the model's parameters were found");
    values
}

/// Largest `|a − b| / max(|b|, 1)` over every value.
fn max_rel_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
        .fold(0.0, f32::max)
}

#[test]
fn the_comparison_sees_a_different_pairing_of_batches() {
    let make = |m: &Classifier| AdamPConfig::new().init_for(m);
    let paired = train(None, make, "control-interleaved");
    let plain = train_with_order(&common::cpu_device(), None, make, "control-plain", false);
    let diff = max_rel_diff(&paired, &plain);
    println!("control: pairing A0+A1 instead of A0+B0: max relative difference {diff:.2e}");
    assert!(
        diff > 1e-4,
        "pairing A0+A1 instead of A0+B0 changed nothing: {diff}"
    );
}

#[test]
fn two_workers_train_like_one_device_accumulating_two_batches() {
    let flex = common::cpu_device();
    for (entry, make) in common::catalog::module_optimizers::<Classifier>() {
        let name = entry.name;
        // The name, as a piece of a folder name.
        let dir: String = entry
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let single = train(None, make, &format!("{dir}-single"));
        #[cfg(feature = "wgpu")]
        {
            let devices = vec![flex.clone(), common::devices().last().unwrap().1.clone()];
            let multi = train(
                Some(ExecutionStrategy::multi(
                    devices,
                    MultiDeviceOptim::OptimMainDevice,
                )),
                make,
                &format!("{dir}-wgpu"),
            );
            let diff = max_rel_diff(&multi, &single);
            println!("{name} main [flex, wgpu]: max relative difference {diff:.2e}");
            // wgpu's gradients differ from flex's by rounding; a sign mask (cautious) or an
            // update scaled to a fixed angle (rotational) can turn that into whole steps, and
            // the runs drift apart by more than rounding: held to 5 % of the weights.
            let bound = if entry.amplifies_rounding { 5e-2 } else { 1e-4 };
            assert!(
                diff.is_finite() && diff <= bound,
                "{name} [flex, wgpu]: {diff}"
            );
        }
        for (mode, optim) in [
            ("main", MultiDeviceOptim::OptimMainDevice),
            ("sharded", MultiDeviceOptim::OptimSharded),
        ] {
            let devices = vec![flex.clone(), flex.clone()];
            let multi = train(
                Some(ExecutionStrategy::multi(devices, optim)),
                make,
                &format!("{dir}-{mode}"),
            );
            let diff = max_rel_diff(&multi, &single);
            println!("{name} {mode} [flex, flex]: max relative difference {diff:.2e}");
            assert!(diff <= 1e-6, "{name} {mode}: {diff}");
        }
    }
}

/// `ExecutionStrategy::ddp` needs Burn's collective operations. In Burn 0.22.1 flex and ndarray
/// have none (starting them panics), and wgpu starts them but cannot all-reduce: CubeCL has no
/// transport between wgpu devices. When this test fails, a backend here has gained working
/// collectives, and the comparison above should cover DDP too.
#[test]
fn distributed_data_parallel_is_not_available_on_these_backends() {
    use burn::tensor::distributed::{
        DistributedConfig, DistributedContext, ReduceOperation, all_reduce,
    };
    for (name, device) in common::devices() {
        let devices = vec![device.clone(), device.clone()];
        let reduced = std::panic::catch_unwind(|| {
            let config = DistributedConfig {
                all_reduce_op: ReduceOperation::Sum,
            };
            let _context = DistributedContext::init(devices.clone(), config);
            let ones = Tensor::<1>::ones([4], &device);
            common::values(all_reduce(ones, ReduceOperation::Sum, devices.clone()).resolve())
        });
        assert!(
            reduced.is_err(),
            "{name}: all_reduce worked ({reduced:?}); test DDP against single-device training"
        );
    }
}
