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
    ClassificationOutput, InferenceStep, Learner, SupervisedTraining, TrainOutput, TrainStep,
};
use scaleinv::AdamPConfig;
use scaleinv::models::{Digits, DigitsCnn, DigitsCnnConfig};

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

impl Classifier {
    fn classify(&self, batch: DigitBatch) -> ClassificationOutput {
        let logits = self.net.forward(batch.images);
        let loss = CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits.clone(), batch.labels.clone());
        ClassificationOutput::new(loss, logits, batch.labels)
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

fn mean_loss(model: &Classifier, data: &Digits, device: &Device) -> f32 {
    let (x, y) = data.to_tensors(device);
    common::values(model.valid().net.loss(x, y))[0]
}

#[test]
fn adamp_trains_in_burn_learner_with_scheduler_and_clipping() {
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
    let loader = |data: &Digits, shuffle: bool| {
        let items = (0..data.len()).map(|index| DigitItem { index }).collect();
        let builder = DataLoaderBuilder::new(DigitBatcher { data: data.clone() })
            .batch_size(batch_size)
            .set_device(device.clone());
        let builder = if shuffle { builder.shuffle(1) } else { builder };
        builder.build(InMemDataset::new(items))
    };
    let steps = epochs * train.len().div_ceil(batch_size);
    let scheduler = CosineAnnealingLrSchedulerConfig::new(1e-2, steps)
        .init()
        .unwrap();
    let optim = AdamPConfig::new()
        .with_weight_decay(1e-2)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(1.0)))
        .init_for(&model);
    let learner = Learner::new(model, optim, scheduler);

    let dir = std::env::temp_dir().join(format!("scaleinv-learner-{}", std::process::id()));
    let result = SupervisedTraining::new(&dir, loader(&train, true), loader(&valid, false))
        .num_epochs(epochs)
        .launch(learner);
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        result.error.is_none(),
        "training failed: {:?}",
        result.error
    );

    let after = mean_loss(&result.model, &train, &device.clone().inner());
    println!("learner: training loss {before:.4} -> {after:.4}");
    assert!(
        after < 0.5 * before,
        "loss did not fall enough: {before} -> {after}"
    );
}
