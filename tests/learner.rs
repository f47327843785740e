//! AdamP inside Burn's `Learner`: a short supervised run with a learning-rate scheduler and
//! gradient clipping, whose training loss must fall.

mod common;

use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::InMemDataset;
use burn::grad_clipping::GradientClippingConfig;
use burn::lr_scheduler::cosine::CosineAnnealingLrSchedulerConfig;
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Device, Int, Tensor};
use burn::train::{
    ClassificationOutput, InferenceStep, Learner, LearnerModel, SupervisedTraining, TrainOutput,
    TrainStep,
};
use std::sync::Arc;

use burn::data::dataloader::DataLoader;
use burn::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use scaleinv::models::{Digits, DigitsCnn, DigitsCnnConfig, NormCnn, NormCnnConfig};
use scaleinv::{AdamPConfig, NapConfig, NormAffine, weight_norms};

#[derive(Module, Debug)]
struct Classifier {
    net: DigitsCnn,
}

#[derive(Clone, Debug)]
struct DigitItem {
    index: usize,
}

#[derive(Clone, Debug)]
struct DigitBatch {
    images: Tensor<4>,
    labels: Tensor<1, Int>,
}

struct DigitBatcher {
    data: Digits,
}

impl Batcher<DigitItem, DigitBatch> for DigitBatcher {
    fn batch(&self, items: Vec<DigitItem>, device: &Device) -> DigitBatch {
        let indices: Vec<usize> = items.iter().map(|i| i.index).collect();
        let (images, labels) = self.data.select(&indices).to_tensors(device);
        DigitBatch { images, labels }
    }
}

fn classification(logits: Tensor<2>, labels: Tensor<1, Int>) -> ClassificationOutput {
    let loss = CrossEntropyLossConfig::new()
        .init(&logits.device())
        .forward(logits.clone(), labels.clone());
    ClassificationOutput::new(loss, logits, labels)
}

impl Classifier {
    fn classify(&self, batch: DigitBatch) -> ClassificationOutput {
        classification(self.net.forward(batch.images), batch.labels)
    }
}

impl TrainStep for Classifier {
    type Input = DigitBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: DigitBatch) -> TrainOutput<ClassificationOutput> {
        let output = self.classify(batch);
        TrainOutput::new(self, output.loss.backward(), output)
    }
}

impl InferenceStep for Classifier {
    type Input = DigitBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: DigitBatch) -> ClassificationOutput {
        self.classify(batch)
    }
}

/// A CNN with LayerNorm before each ReLU, trained with NaP: `optimize` adds the joint
/// projection of the norms' `[γ; β]` after Burn's optimizer step.
#[derive(Module, Debug)]
struct NapClassifier {
    net: NormCnn,
}

fn nap_config() -> NapConfig {
    NapConfig::new().with_norm_affine(NormAffine::ProjectJointly)
}

impl TrainStep for NapClassifier {
    type Input = DigitBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: DigitBatch) -> TrainOutput<ClassificationOutput> {
        let output = classification(self.net.forward(batch.images), batch.labels);
        TrainOutput::new(self, output.loss.backward(), output)
    }

    fn optimize(
        self,
        optim: &mut ModuleOptimizer,
        lr: ModuleLearningRate,
        grads: GradientsParams,
    ) -> Self {
        nap_config().project_norm_affine(optim.step(lr, self, grads))
    }
}

impl InferenceStep for NapClassifier {
    type Input = DigitBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: DigitBatch) -> ClassificationOutput {
        classification(self.net.forward(batch.images), batch.labels)
    }
}

fn loaders(train: &Digits, valid: &Digits, batch_size: usize, device: &Device) -> Loaders {
    let loader = |data: &Digits, shuffle: bool| {
        let items = (0..data.len()).map(|index| DigitItem { index }).collect();
        let builder = DataLoaderBuilder::new(DigitBatcher { data: data.clone() })
            .batch_size(batch_size)
            .set_device(device.clone());
        let builder = if shuffle { builder.shuffle(1) } else { builder };
        builder.build(InMemDataset::new(items))
    };
    (loader(train, true), loader(valid, false))
}

type Loaders = (
    Arc<dyn DataLoader<DigitBatch>>,
    Arc<dyn DataLoader<DigitBatch>>,
);

/// Runs `learner` for `epochs` under `SupervisedTraining` and returns the trained model.
fn launch<M>(learner: Learner<M>, label: &str, (train, valid): Loaders, epochs: usize) -> M
where
    M: LearnerModel + TrainStep<Input = DigitBatch> + InferenceStep<Input = DigitBatch>,
{
    let dir = std::env::temp_dir().join(format!("scaleinv-learner-{label}-{}", std::process::id()));
    let result = SupervisedTraining::new(&dir, train, valid)
        .num_epochs(epochs)
        .launch(learner);
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        result.error.is_none(),
        "training failed: {:?}",
        result.error
    );
    result.model
}

/// The tests seed the same global generator: one at a time.
static SEEDED: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn mean_loss(model: &Classifier, data: &Digits, device: &Device) -> f32 {
    let (x, y) = data.to_tensors(device);
    common::values(model.valid().net.loss(x, y))[0]
}

#[test]
fn adamp_trains_in_burn_learner_with_scheduler_and_clipping() {
    let _seeded = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    let device = common::cpu_device().autodiff();
    device.seed(3);
    let (train, valid) = Digits::load().unwrap().split(0.25);
    let model = Classifier {
        net: DigitsCnnConfig {
            width: 8,
            classes: 10,
        }
        .init(&device),
    };
    let before = mean_loss(&model, &train, &device.clone().inner());

    let batch_size = 64;
    let epochs = 4;
    let (train_loader, valid_loader) = loaders(&train, &valid, batch_size, &device);
    let steps = epochs * train.len().div_ceil(batch_size);
    let scheduler = CosineAnnealingLrSchedulerConfig::new(1e-2, steps)
        .init()
        .unwrap();
    let optim = AdamPConfig::new()
        .with_weight_decay(1e-2)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(1.0)))
        .init_for(&model);
    let learner = Learner::new(model, optim, scheduler);

    let trained = launch(learner, "adamp", (train_loader, valid_loader), epochs);

    let after = mean_loss(&trained, &train, &device.clone().inner());
    println!("learner: training loss {before:.4} -> {after:.4}");
    assert!(
        after < 0.5 * before,
        "loss did not fall enough: {before} -> {after}"
    );
}

#[test]
fn nap_trains_in_burn_learner_and_holds_every_norm() {
    let _seeded = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    let device = common::cpu_device().autodiff();
    device.seed(5);
    let (train, valid) = Digits::load().unwrap().split(0.25);
    let model = NapClassifier {
        net: NormCnnConfig::new(1, vec![8, 16, 16], 10).init(&device),
    };
    let initial = weight_norms(&model);
    let before = classification(
        model
            .valid()
            .net
            .forward(train.to_tensors(&device.clone().inner()).0),
        train.to_tensors(&device.clone().inner()).1,
    )
    .loss;
    let before = common::values(before)[0];

    let epochs = 4;
    let (train_loader, valid_loader) = loaders(&train, &valid, 64, &device);
    // The head is left free: held at its small initial norm, after global pooling, it would cap
    // the logits' scale and with it how far the loss can fall.
    let optim = nap_config()
        .with_free(vec!["net.head".into()])
        .init_for(AdamConfig::new().with_epsilon(1e-8).build(), &model);
    let learner = Learner::new(model, optim, 1e-2);
    let trained = launch(learner, "nap", (train_loader, valid_loader), epochs);

    let (x, y) = train.to_tensors(&device.clone().inner());
    let after = common::values(classification(trained.valid().net.forward(x), y).loss)[0];
    println!("learner (NaP): training loss {before:.4} -> {after:.4}");
    assert!(
        after < 0.5 * before,
        "loss did not fall enough: {before} -> {after}"
    );

    let trained = weight_norms(&trained);
    let width = |path: &str| {
        if path.starts_with("net.blocks.0") {
            8.0
        } else {
            16.0f64
        }
    };
    for (start, end) in initial.iter().zip(&trained) {
        if start.rank >= 2 && !start.path.starts_with("net.head") {
            let rel = (end.norm - start.norm).abs() / start.norm;
            assert!(rel < 1e-5, "{}: {} -> {}", end.path, start.norm, end.norm);
        } else if end.path.ends_with("gamma") {
            let beta = trained
                .iter()
                .find(|w| w.path == end.path.replace("gamma", "beta"))
                .unwrap();
            let joint = (end.norm.powi(2) + beta.norm.powi(2)).sqrt();
            let want = width(&end.path).sqrt();
            assert!(
                (joint - want).abs() < 1e-4,
                "{}: ‖[γ; β]‖ = {joint}, want {want}",
                end.path
            );
        }
    }
}
