//! A training loop for [`TinyLm`] on a [`CharCorpus`]: warm-up then cosine learning rate,
//! per-step loss and global gradient norm, validation loss at the end.

use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};

use crate::shakespeare::{BatchSampler, CharCorpus};
use crate::transformer::TinyLm;

/// Settings of [`train_lm`].
#[derive(Debug, Clone)]
pub struct LmSettings {
    /// Optimizer steps.
    pub steps: usize,
    /// Sequences per batch.
    pub batch_size: usize,
    /// Characters per sequence.
    pub seq_len: usize,
    /// Peak learning rate.
    pub peak_lr: f64,
    /// Fraction of the steps spent in the linear warm-up.
    pub warmup_fraction: f64,
    /// Learning rate at the last step, as a fraction of the peak.
    pub final_lr_fraction: f64,
    /// Seed of the training batches (the validation batches use a fixed seed).
    pub seed: u64,
    /// Batches averaged for the validation loss.
    pub eval_batches: usize,
}

impl Default for LmSettings {
    fn default() -> Self {
        Self {
            steps: 600,
            batch_size: 16,
            seq_len: 64,
            peak_lr: 1e-3,
            warmup_fraction: 0.05,
            final_lr_fraction: 0.1,
            seed: 1,
            eval_batches: 8,
        }
    }
}

/// What a run of [`train_lm`] recorded.
#[derive(Debug, Clone)]
pub struct LmRun {
    /// Training loss at each step taken.
    pub losses: Vec<f64>,
    /// Global gradient norm `√(Σ‖g‖²)` over all parameters at each step taken.
    pub grad_norms: Vec<f64>,
    /// Mean validation loss after training (NaN when the run diverged).
    pub val_loss: f64,
    /// The step at which the loss became non-finite, if it did; the run stops there.
    pub diverged_at: Option<usize>,
    /// Wall-clock seconds of training.
    pub seconds: f64,
}

/// Linear warm-up over `warmup` steps to `peak`, then cosine decay to `floor · peak` at
/// step `total − 1`.
pub fn warmup_cosine_lr(peak: f64, step: usize, total: usize, warmup: usize, floor: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let span = (total - warmup).saturating_sub(1).max(1) as f64;
    let progress = ((step - warmup) as f64 / span).min(1.0);
    peak * (floor + (1.0 - floor) * 0.5 * (1.0 + (core::f64::consts::PI * progress).cos()))
}

/// `Σ‖g‖²` over the gradients of a module's parameters, on the device.
struct SquaredGradNorm<'a> {
    grads: &'a GradientsParams,
    sum: Option<Tensor<1>>,
}

impl ModuleVisitor for SquaredGradNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let sq = g.square().sum();
            self.sum = Some(match self.sum.take() {
                Some(sum) => sum + sq,
                None => sq,
            });
        }
    }
}

/// The global gradient norm of `module`'s parameters, shape `[1]`.
pub fn global_grad_norm<M: Module>(module: &M, grads: &GradientsParams) -> Option<Tensor<1>> {
    let mut visitor = SquaredGradNorm { grads, sum: None };
    module.visit(&mut visitor);
    visitor.sum.map(Tensor::sqrt)
}

/// The values of a small tensor, as `f64`.
fn read_back(t: Tensor<1>) -> Vec<f64> {
    t.into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .unwrap_or_default()
}

/// Mean loss of `model` over `batches` validation batches from a fixed seed.
pub fn eval_loss(
    model: &TinyLm,
    data: &CharCorpus,
    batches: usize,
    batch_size: usize,
    seq_len: usize,
    device: &Device,
) -> f64 {
    let mut sampler = BatchSampler::new(0x5eed);
    let total: f64 = (0..batches)
        .map(|_| {
            let (x, y) = sampler.sample(data, batch_size, seq_len, device);
            read_back(model.loss(x, y))[0]
        })
        .sum();
    total / batches.max(1) as f64
}

/// Trains `model` (on `device.autodiff()`) with `optim`; calls `on_step(step, loss, grad_norm)`
/// after every step. Stops at the first non-finite loss.
pub fn train_lm(
    model: TinyLm,
    optim: &mut ModuleOptimizer,
    train: &CharCorpus,
    val: &CharCorpus,
    s: &LmSettings,
    device: &Device,
    mut on_step: impl FnMut(usize, f64, f64),
) -> (TinyLm, LmRun) {
    let autodiff = device.clone().autodiff();
    let warmup = ((s.steps as f64 * s.warmup_fraction).round() as usize).max(1);
    let mut sampler = BatchSampler::new(s.seed);
    let mut model = model;
    let mut run = LmRun {
        losses: Vec::with_capacity(s.steps),
        grad_norms: Vec::with_capacity(s.steps),
        val_loss: f64::NAN,
        diverged_at: None,
        seconds: 0.0,
    };
    let start = Instant::now();
    for step in 0..s.steps {
        let (x, y) = sampler.sample(train, s.batch_size, s.seq_len, &autodiff);
        let loss = model.loss(x, y);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let norm = global_grad_norm(&model, &grads).unwrap_or_else(|| loss.zeros_like().inner());
        // One read-back per step for both numbers.
        let both = read_back(Tensor::cat(vec![loss.inner(), norm], 0));
        let (loss, norm) = (both[0], both[1]);
        run.losses.push(loss);
        run.grad_norms.push(norm);
        on_step(step, loss, norm);
        if !loss.is_finite() {
            run.diverged_at = Some(step);
            break;
        }
        let lr = warmup_cosine_lr(s.peak_lr, step, s.steps, warmup, s.final_lr_fraction);
        model = optim.step(lr, model, grads);
    }
    run.seconds = start.elapsed().as_secs_f64();
    if run.diverged_at.is_none() {
        run.val_loss = eval_loss(
            &model.valid(),
            val,
            s.eval_batches,
            s.batch_size,
            s.seq_len,
            device,
        );
    }
    (model, run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_the_floor() {
        let lr = |step| warmup_cosine_lr(1.0, step, 100, 10, 0.1);
        assert!((lr(0) - 0.1).abs() < 1e-12);
        assert!((lr(9) - 1.0).abs() < 1e-12);
        assert!((lr(10) - 1.0).abs() < 1e-12);
        assert!((lr(99) - 0.1).abs() < 1e-12);
        assert!(lr(50) < lr(30));
    }
}
