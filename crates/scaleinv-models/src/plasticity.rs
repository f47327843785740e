//! A sequence of tasks that wears plasticity down: the same network trains on one task after
//! another, and the accuracy it still reaches on each new task measures how well it can learn.
//!
//! - [`TaskKind::RandomLabels`]: every task gives the same images fresh random labels, to be
//!   memorised (nothing carries over from one task to the next but the weights).
//! - [`TaskKind::PermutedPixels`]: every task shuffles the pixels with a fresh permutation and
//!   keeps the true labels.

use std::time::Instant;

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::digits::Digits;
use crate::normalized::NormMlp;
use crate::rng::SplitMix64;

/// How each task differs from the previous one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// Fresh uniformly random labels for the same images.
    RandomLabels,
    /// A fresh permutation of the pixels, true labels.
    PermutedPixels,
}

impl TaskKind {
    /// The name used on the command line and in result files.
    pub fn name(self) -> &'static str {
        match self {
            Self::RandomLabels => "random-labels",
            Self::PermutedPixels => "permuted-pixels",
        }
    }

    /// Parses [`name`](Self::name).
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::RandomLabels, Self::PermutedPixels]
            .into_iter()
            .find(|k| k.name() == name)
    }
}

/// Settings of a task sequence.
#[derive(Debug, Clone)]
pub struct SequenceSettings {
    /// How tasks differ.
    pub kind: TaskKind,
    /// Number of tasks.
    pub tasks: usize,
    /// Images per task (the first `samples` of the data).
    pub samples: usize,
    /// Optimizer steps per task.
    pub steps_per_task: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Learning rate (constant).
    pub lr: f64,
    /// Seed of the labels, permutations and batches.
    pub seed: u64,
}

impl Default for SequenceSettings {
    fn default() -> Self {
        Self {
            kind: TaskKind::RandomLabels,
            tasks: 30,
            samples: 1000,
            steps_per_task: 800,
            batch_size: 64,
            lr: 1e-3,
            seed: 1,
        }
    }
}

/// One task: flattened images `[samples, 64]` and labels `[samples]`, on the device.
#[derive(Debug, Clone)]
pub struct Task {
    /// Position in the sequence, from 0.
    pub index: usize,
    /// The images, one row each.
    pub inputs: Tensor<2>,
    /// The labels to learn.
    pub labels: Tensor<1, Int>,
}

/// What one task's training reached.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TaskResult {
    /// Position in the sequence, from 0.
    pub task: usize,
    /// Accuracy on the task's images after its last step.
    pub accuracy: f64,
    /// Mean cross-entropy on the task's images after its last step.
    pub loss: f64,
    /// Wall-clock seconds of the task's training.
    pub seconds: f64,
}

/// The tasks of a sequence over the first `settings.samples` digits, deterministic in
/// `settings.seed`.
pub fn make_tasks(data: &Digits, settings: &SequenceSettings, device: &Device) -> Vec<Task> {
    let n = settings.samples.min(data.len());
    let pixels = data.pixels.len() / data.len().max(1);
    let images = &data.pixels[..n * pixels];
    let mut rng = SplitMix64(settings.seed ^ 0x5EED_7A5C);
    (0..settings.tasks)
        .map(|index| {
            let (inputs, labels): (Vec<f32>, Vec<i64>) = match settings.kind {
                TaskKind::RandomLabels => (
                    images.to_vec(),
                    (0..n).map(|_| rng.below(10) as i64).collect(),
                ),
                TaskKind::PermutedPixels => {
                    let mut order: Vec<usize> = (0..pixels).collect();
                    rng.shuffle(&mut order);
                    let permuted = images
                        .chunks(pixels)
                        .flat_map(|image| order.iter().map(move |&p| image[p]))
                        .collect();
                    let labels = data.labels[..n].iter().map(|&l| l as i64).collect();
                    (permuted, labels)
                }
            };
            Task {
                index,
                inputs: Tensor::from_data(TensorData::new(inputs, [n, pixels]), device),
                labels: Tensor::from_data(TensorData::new(labels, [n]), device),
            }
        })
        .collect()
}

/// Trains `model` on `task` for `settings.steps_per_task` steps of random mini-batches, calling
/// `after_step` on the model after each optimizer step (e.g. a module-level projection), then
/// measures accuracy and loss on the whole task (one read-back).
pub fn train_task(
    mut model: NormMlp,
    optim: &mut ModuleOptimizer,
    task: &Task,
    settings: &SequenceSettings,
    after_step: &mut dyn FnMut(NormMlp) -> NormMlp,
) -> (NormMlp, TaskResult) {
    let start = Instant::now();
    let device = task.inputs.device();
    let n = task.labels.dims()[0];
    let mut rng = SplitMix64(settings.seed.wrapping_mul(0x9E37_79B9) ^ task.index as u64);
    for _ in 0..settings.steps_per_task {
        let batch: Vec<i64> = (0..settings.batch_size)
            .map(|_| rng.below(n) as i64)
            .collect();
        let batch =
            Tensor::<1, Int>::from_data(TensorData::new(batch, [settings.batch_size]), &device);
        let x = task.inputs.clone().select(0, batch.clone());
        let y = task.labels.clone().select(0, batch);
        let grads = GradientsParams::from_grads(model.loss(x, y).backward(), &model);
        model = after_step(optim.step(settings.lr, model, grads));
    }
    let (accuracy, loss) = evaluate(&model, task);
    let result = TaskResult {
        task: task.index,
        accuracy,
        loss,
        seconds: start.elapsed().as_secs_f64(),
    };
    (model, result)
}

/// Accuracy and mean loss of `model` on all of `task`, read back together.
pub fn evaluate(model: &NormMlp, task: &Task) -> (f64, f64) {
    let model = model.clone().valid();
    let inputs = task.inputs.clone().inner();
    let labels = task.labels.clone().inner();
    let both = Tensor::cat(
        vec![
            model.accuracy(inputs.clone(), labels.clone()),
            model.loss(inputs, labels),
        ],
        0,
    );
    let values = both
        .into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .unwrap_or_else(|_| vec![f64::NAN; 2]);
    (values[0], values[1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::cpu_device;
    use crate::normalized::{NormKind, NormMlpConfig};
    use burn::optim::AdamConfig;

    fn ints(t: Tensor<1, Int>) -> Vec<i64> {
        t.into_data().convert::<i64>().try_to_vec::<i64>().unwrap()
    }

    fn floats(t: Tensor<2>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    fn settings(kind: TaskKind) -> SequenceSettings {
        SequenceSettings {
            kind,
            tasks: 3,
            samples: 50,
            steps_per_task: 30,
            batch_size: 16,
            lr: 1e-2,
            seed: 5,
        }
    }

    #[test]
    fn random_label_tasks_share_images_and_draw_new_labels() {
        let data = Digits::load().unwrap();
        let device = cpu_device();
        let tasks = make_tasks(&data, &settings(TaskKind::RandomLabels), &device);
        assert_eq!(tasks.len(), 3);
        assert_eq!(tasks[0].inputs.dims(), [50, 64]);
        assert_eq!(floats(tasks[0].inputs.clone()), data.pixels[..50 * 64]);
        assert_eq!(
            floats(tasks[0].inputs.clone()),
            floats(tasks[2].inputs.clone())
        );
        let (a, b) = (ints(tasks[0].labels.clone()), ints(tasks[1].labels.clone()));
        assert_ne!(a, b);
        assert!(a.iter().all(|&l| (0..10).contains(&l)));
        // Deterministic in the seed.
        let again = make_tasks(&data, &settings(TaskKind::RandomLabels), &device);
        assert_eq!(ints(again[1].labels.clone()), b);
    }

    #[test]
    fn permuted_pixel_tasks_keep_labels_and_pixel_values() {
        let data = Digits::load().unwrap();
        let tasks = make_tasks(&data, &settings(TaskKind::PermutedPixels), &cpu_device());
        let truth: Vec<i64> = data.labels[..50].iter().map(|&l| l as i64).collect();
        let (first, second) = (
            floats(tasks[0].inputs.clone()),
            floats(tasks[1].inputs.clone()),
        );
        assert_ne!(first, second);
        for task in &tasks {
            assert_eq!(ints(task.labels.clone()), truth);
        }
        let sorted = |image: &[f32]| {
            let mut v = image.to_vec();
            v.sort_by(f32::total_cmp);
            v
        };
        assert_eq!(sorted(&first[..64]), sorted(&data.pixels[..64]));
    }

    #[test]
    fn a_task_is_learned_and_the_hook_runs_after_every_step() {
        let data = Digits::load().unwrap();
        let device = cpu_device().autodiff();
        device.seed(1);
        let s = settings(TaskKind::RandomLabels);
        let tasks = make_tasks(&data, &s, &device);
        let model = NormMlpConfig::new(64, vec![64], 10)
            .with_norm(NormKind::LayerNorm)
            .init(&device);
        let (_, before) = evaluate(&model, &tasks[0]);
        let mut optim = AdamConfig::new().init();
        let mut calls = 0;
        let (_, result) = train_task(model, &mut optim, &tasks[0], &s, &mut |m| {
            calls += 1;
            m
        });
        assert_eq!(calls, s.steps_per_task);
        assert!(result.loss < before, "{} → {}", before, result.loss);
        assert!((0.0..=1.0).contains(&result.accuracy));
    }
}
