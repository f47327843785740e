//! A hand-written training loop — forward, backward, `GradientsParams`, `step` — for users
//! who do not use Burn's `Learner`: the small BatchNorm ResNet on the bundled MNIST digits.
//!
//! ```text
//! cargo run --release --example train_loop [-- --optimizer adam|adamp] [--device flex|ndarray|wgpu]
//!     [--epochs N]
//! ```

use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;
use scaleinv::AdamPConfig;
use scaleinv::models::cli::{or_exit, positive};
use scaleinv::models::device::device_from_name;
use scaleinv::models::learner::{mnist_splits, test_accuracy};
use scaleinv::models::rng::SplitMix64;
use scaleinv::models::train::cosine_lr;
use scaleinv::models::{ResNet, ResNetConfig};

const BATCH: usize = 64;
const PEAK_LR: f64 = 1e-2;

fn main() {
    let mut optimizer = "adamp".to_string();
    let mut device = "flex".to_string();
    let mut epochs = 2usize;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--optimizer" if ["adam", "adamp"].contains(&value.as_str()) => optimizer = value,
            "--device" => device = value,
            "--epochs" => epochs = or_exit(positive(&flag, &value)),
            _ => or_exit(Err(format!(
                "usage: train_loop [--optimizer adam|adamp] [--device NAME] [--epochs N] \
                 (got `{flag} {value}`)"
            ))),
        }
    }
    let device = or_exit(device_from_name(&device)).autodiff();
    let (train, valid, test) = mnist_splits();
    device.seed(0);
    let mut model: ResNet = ResNetConfig::default().init(&device);

    // The only line that differs between Adam and AdamP:
    let mut optim: ModuleOptimizer = match optimizer.as_str() {
        "adam" => AdamConfig::new().with_epsilon(1e-8).init(),
        _ => AdamPConfig::new().init_for(&model),
    };

    let steps_per_epoch = train.len().div_ceil(BATCH);
    let total = epochs * steps_per_epoch;
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut step = 0;
    for epoch in 1..=epochs {
        SplitMix64(epoch as u64).shuffle(&mut order);
        let mut losses = Vec::with_capacity(steps_per_epoch);
        for batch in order.chunks(BATCH) {
            let (images, labels) = train.select(batch).to_tensors(&device);
            let loss = model.loss(images, labels); // forward
            let grads = loss.backward(); // backward
            let grads = GradientsParams::from_grads(grads, &model); // per-parameter gradients
            model = optim.step(cosine_lr(PEAK_LR, step, total), model, grads); // the update
            losses.push(loss.detach());
            step += 1;
        }
        // One read-back per epoch, not per step.
        let mean_loss = Tensor::cat(losses, 0)
            .mean()
            .into_data()
            .try_to_vec::<f32>();
        let accuracy = test_accuracy(&model, &valid, &device.clone().inner());
        println!(
            "epoch {epoch}/{epochs}  train loss {:.4}  validation accuracy {accuracy:.4}",
            mean_loss.map_or(f32::NAN, |v| v[0])
        );
    }
    let accuracy = test_accuracy(&model, &test, &device.clone().inner());
    println!("{optimizer}: test accuracy {accuracy:.4}");
}
