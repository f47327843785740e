//! A hand-written training loop — forward, backward, `GradientsParams`, `step` — for users
//! who do not use Burn's `Learner`: the small BatchNorm ResNet on the bundled MNIST digits.
//!
//! ```text
//! cargo run --release --example train_loop [-- --optimizer adam|adamp] [--device flex|ndarray|wgpu]
//!     [--epochs N]
//! ```

use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;
use clap::{Parser, ValueEnum};
use scaleinv::AdamPConfig;
use scaleinv::models::cli::{DeviceArg, EpochsArg, default};
use scaleinv::models::learner::{mnist_splits, test_accuracy};
use scaleinv::models::progress::Progress;
use scaleinv::models::rng::SplitMix64;
use scaleinv::models::train::cosine_lr;
use scaleinv::models::{ResNet, ResNetConfig};

const BATCH: usize = 64;
const PEAK_LR: f64 = 1e-2;

/// A hand-written training loop (forward, backward, `GradientsParams`, `step`): the small
/// BatchNorm ResNet on the bundled MNIST digits, with Adam or AdamP.
#[derive(Parser)]
#[command(mut_arg("epochs", default("2")))]
struct Args {
    /// The optimizer; the only line of the loop that differs between the two.
    #[arg(long, value_enum, default_value_t = Choice::Adamp)]
    optimizer: Choice,
    #[command(flatten)]
    device: DeviceArg,
    #[command(flatten)]
    epochs: EpochsArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum Choice {
    /// Burn's Adam with the reference ε = 1e-8.
    Adam,
    /// AdamP, channel axes from the model.
    Adamp,
}

fn main() {
    let args = Args::parse();
    let epochs = args.epochs.epochs;
    let device = args.device.device().autodiff();
    let (train, valid, test) = mnist_splits();
    device.seed(0);
    let mut model: ResNet = ResNetConfig::default().init(&device);

    // The only line that differs between Adam and AdamP:
    let mut optim: ModuleOptimizer = match args.optimizer {
        Choice::Adam => AdamConfig::new().with_epsilon(1e-8).init(),
        Choice::Adamp => AdamPConfig::new().init_for(&model),
    };

    let steps_per_epoch = train.len().div_ceil(BATCH);
    let total = epochs * steps_per_epoch;
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut step = 0;
    let progress = Progress::new(total as u64, "steps");
    for epoch in 1..=epochs {
        progress.set_message(format!("epoch {epoch}/{epochs}"));
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
            progress.inc(1);
        }
        // One read-back per epoch, not per step.
        let mean_loss = Tensor::cat(losses, 0)
            .mean()
            .into_data()
            .try_to_vec::<f32>();
        let accuracy = test_accuracy(&model, &valid, &device.clone().inner());
        progress.println(format!(
            "epoch {epoch}/{epochs}  train loss {:.4}  validation accuracy {accuracy:.4}",
            mean_loss.map_or(f32::NAN, |v| v[0])
        ));
    }
    progress.finish();
    let accuracy = test_accuracy(&model, &test, &device.clone().inner());
    let name = args
        .optimizer
        .to_possible_value()
        .expect("no variant is skipped");
    println!("{}: test accuracy {accuracy:.4}", name.get_name());
}
