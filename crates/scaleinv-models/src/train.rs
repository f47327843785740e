//! A hand-written training loop for [`DigitsCnn`]: forward, backward,
//! [`GradientsParams`], [`ModuleOptimizer::step`]. The optimizer is the only thing the caller
//! chooses.

use std::time::Instant;

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::cnn::{DigitsCnn, DigitsCnnConfig};
use crate::digits::Digits;
use crate::rng::SplitMix64;
use scaleinv_optim::DiagnosticsTracker;

/// Settings of [`train_digits`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainSettings {
    /// Passes over the training set.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Peak learning rate; it decays to 0 on a cosine over the run.
    pub lr: f64,
    /// Seed of the weight initialisation and of the batch order.
    pub seed: u64,
}

impl Default for TrainSettings {
    fn default() -> Self {
        Self {
            epochs: 12,
            batch_size: 64,
            lr: 3e-3,
            seed: 0,
        }
    }
}

/// What one epoch produced, passed to the progress callback.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochReport {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Mean training loss over the epoch.
    pub train_loss: f64,
    /// Accuracy on the test set at the end of the epoch.
    pub test_accuracy: f64,
    /// Wall time of the epoch in seconds (training and evaluation).
    pub seconds: f64,
}

/// Called around every optimizer step of [`train_digits_with`], e.g. to sample diagnostics.
pub trait StepHooks {
    /// Before step `step` (numbered from 0 over the run), with the model about to be stepped.
    fn before_step(&mut self, _step: usize, _model: &DigitsCnn) {}
    /// After the step, with the stepped model.
    fn after_step(&mut self, _step: usize, _model: &DigitsCnn) {}
}

/// No hooks.
impl StepHooks for () {}

/// Samples the run's diagnostics every N steps.
impl StepHooks for DiagnosticsTracker {
    fn before_step(&mut self, step: usize, model: &DigitsCnn) {
        DiagnosticsTracker::before_step(self, step, model);
    }

    fn after_step(&mut self, _step: usize, model: &DigitsCnn) {
        DiagnosticsTracker::after_step(self, model);
    }
}

/// Trains a [`DigitsCnn`] on `train` on `device` (an autodiff device is made from it) with the
/// optimizer that `make_optim` builds for the fresh model, calling `on_epoch` after each epoch.
/// Returns the trained model (inference mode) and the last report.
pub fn train_digits(
    device: &Device,
    make_optim: impl FnOnce(&DigitsCnn) -> ModuleOptimizer,
    train: &Digits,
    test: &Digits,
    settings: TrainSettings,
    on_epoch: impl FnMut(&EpochReport),
) -> (DigitsCnn, EpochReport) {
    train_digits_with(device, make_optim, train, test, settings, on_epoch, &mut ())
}

/// [`train_digits`] with `hooks` called around every optimizer step.
pub fn train_digits_with(
    device: &Device,
    make_optim: impl FnOnce(&DigitsCnn) -> ModuleOptimizer,
    train: &Digits,
    test: &Digits,
    settings: TrainSettings,
    on_epoch: impl FnMut(&EpochReport),
    hooks: &mut impl StepHooks,
) -> (DigitsCnn, EpochReport) {
    let run = Run {
        train,
        test,
        settings,
        schedule: &|step, total| cosine_lr(settings.lr, step, total),
    };
    let make = |model: DigitsCnn| {
        let optim = make_optim(&model);
        (model, optim)
    };
    train_digits_prepared(device, make, run, on_epoch, hooks)
}

/// What one training run of [`train_digits_prepared`] reads: the data, the settings, and the
/// learning rate at step `step` of `total` (`schedule(step, total)`).
pub struct Run<'a> {
    /// The training set.
    pub train: &'a Digits,
    /// The test set, evaluated after each epoch.
    pub test: &'a Digits,
    /// Epochs, batch size, seed (its `lr` is read only by the schedule, if at all).
    pub settings: TrainSettings,
    /// The learning rate at step `step` of `total`.
    pub schedule: &'a dyn Fn(usize, usize) -> f64,
}

/// [`train_digits_with`] for an optimizer that takes the fresh model and hands it back
/// prepared (the rotational optimizers' `init_for`), on the learning-rate schedule of `run`.
pub fn train_digits_prepared(
    device: &Device,
    make_optim: impl FnOnce(DigitsCnn) -> (DigitsCnn, ModuleOptimizer),
    run: Run<'_>,
    mut on_epoch: impl FnMut(&EpochReport),
    hooks: &mut impl StepHooks,
) -> (DigitsCnn, EpochReport) {
    let Run {
        train,
        test,
        settings,
        schedule,
    } = run;
    let device = device.clone().autodiff();
    device.seed(settings.seed);
    let (mut model, mut optim) = make_optim(DigitsCnnConfig::default().init(&device));
    let (test_images, test_labels) = test.to_tensors(&device);
    let steps_per_epoch = train.len().div_ceil(settings.batch_size);
    let total_steps = (settings.epochs * steps_per_epoch).max(1);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut rng = SplitMix64(settings.seed);
    let mut step = 0;
    let mut report = EpochReport {
        epoch: 0,
        train_loss: f64::NAN,
        test_accuracy: 0.0,
        seconds: 0.0,
    };

    for epoch in 1..=settings.epochs {
        let start = Instant::now();
        rng.shuffle(&mut order);
        let mut losses = Vec::with_capacity(steps_per_epoch);
        for batch in order.chunks(settings.batch_size) {
            let (images, labels) = train.select(batch).to_tensors(&device);
            let loss = model.loss(images, labels);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let lr = schedule(step, total_steps);
            hooks.before_step(step, &model);
            model = optim.step(lr, model, grads);
            hooks.after_step(step, &model);
            losses.push(loss.detach());
            step += 1;
        }
        let train_loss = mean_of(losses);
        let test_accuracy = accuracy(
            &model.valid(),
            test_images.clone().inner(),
            test_labels.clone().inner(),
        );
        report = EpochReport {
            epoch,
            train_loss,
            test_accuracy,
            seconds: start.elapsed().as_secs_f64(),
        };
        on_epoch(&report);
    }
    (model.valid(), report)
}

/// `lr · ½(1 + cos(π·step/total))`.
pub fn cosine_lr(peak: f64, step: usize, total: usize) -> f64 {
    let progress = step as f64 / total.max(1) as f64;
    peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// Mean of the per-step losses, read back once per epoch.
fn mean_of(losses: Vec<Tensor<1>>) -> f64 {
    if losses.is_empty() {
        return f64::NAN;
    }
    let data: TensorData = Tensor::cat(losses, 0).mean().into_data();
    data.try_to_vec::<f32>()
        .map(|v| v[0] as f64)
        .unwrap_or(f64::NAN)
}

/// Fraction of `images` whose arg-max logit equals the label, in inference mode.
pub fn accuracy(model: &DigitsCnn, images: Tensor<4>, labels: Tensor<1, Int>) -> f64 {
    let n = labels.dims()[0];
    if n == 0 {
        return 0.0;
    }
    let correct = correct_predictions(model.forward(images), labels);
    correct as f64 / n as f64
}

/// How many rows of `logits` have their arg-max at the label (one read-back).
pub fn correct_predictions(logits: Tensor<2>, labels: Tensor<1, Int>) -> i64 {
    let predicted = logits.argmax(1).squeeze_dim::<1>(1);
    predicted
        .equal(labels)
        .int()
        .sum()
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .map_or(0, |v| v[0])
}
