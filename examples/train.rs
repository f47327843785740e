//! Trains a small BatchNorm ResNet on the bundled MNIST digits with Burn's `Learner`: its
//! metrics, checkpoints and a warm-up + cosine learning-rate schedule, and any optimizer by
//! name — Burn's or this crate's.
//!
//! ```text
//! cargo run --release --example train -- --optimizer adamp [--device flex|ndarray|wgpu]
//!     [--epochs N] [--batch N] [--lr X] [--weight-decay X] [--warmup STEPS] [--seed S]
//!     [--artifacts DIR] [--resume EPOCH]
//! ```
//!
//! Optimizers: adam, adamw, sgd (Burn's), adamp, sgdp, projected_adam, stable_spam, nap,
//! width_scaled_adamw. The 10,000 digits are split 7,000 train / 1,000 validation / 2,000
//! test; the test split is only used once, after training. The learning rate warms up
//! linearly over `--warmup` steps (default: the first 5 % of the run), then decays on a cosine.
//! Checkpoints go to `DIR/checkpoint` (default `runs/train-<optimizer>`); `--resume EPOCH`
//! continues from one. The optimizer is built by `optimizer_by_name`
//! (`scaleinv::models::learner`); in your own code it is the one line
//! `AdamPConfig::new().init_for(&model)` in place of `AdamConfig::new().init()`.

use std::path::PathBuf;

use clap::Parser;
use clap::builder::PossibleValuesParser;
use scaleinv::models::cli::{
    DeviceArg, EpochsArg, default, non_negative, positive, positive_finite,
};
use scaleinv::models::learner::{OPTIMIZERS, RunSettings, train_mnist};

/// Trains a small BatchNorm ResNet on the bundled MNIST digits with Burn's `Learner` and any
/// optimizer by name (Burn's or this crate's); prints the test accuracy.
#[derive(Parser)]
#[command(mut_arg("epochs", default("3")))]
struct Args {
    /// The optimizer.
    #[arg(long, default_value = "adamp", value_parser = PossibleValuesParser::new(OPTIMIZERS))]
    optimizer: String,
    #[command(flatten)]
    device: DeviceArg,
    #[command(flatten)]
    epochs: EpochsArg,
    /// Images per batch.
    #[arg(long, value_name = "N", default_value = "64", value_parser = positive::<usize>)]
    batch: usize,
    /// Peak learning rate [default: the optimizer's own, see `default_lr`].
    #[arg(long, value_name = "X", value_parser = positive_finite)]
    lr: Option<f64>,
    /// Weight decay (each optimizer's own kind: decoupled or L2).
    #[arg(long, value_name = "X", default_value = "0", value_parser = non_negative)]
    weight_decay: f64,
    /// Linear warm-up steps [default: the first 5 % of the run].
    #[arg(long, value_name = "STEPS")]
    warmup: Option<usize>,
    /// Seed of the initial weights and the batch order.
    #[arg(long, default_value = "0")]
    seed: u64,
    /// Folder for the Learner's logs and checkpoints [default: runs/train-<optimizer>].
    #[arg(long, value_name = "DIR")]
    artifacts: Option<PathBuf>,
    /// Continue from the checkpoint of this epoch.
    #[arg(long, value_name = "EPOCH", value_parser = positive::<usize>)]
    resume: Option<usize>,
}

fn main() {
    let args = Args::parse();
    let device = args.device.device();
    let settings = RunSettings {
        artifacts: args
            .artifacts
            .unwrap_or_else(|| PathBuf::from(format!("runs/train-{}", args.optimizer))),
        optimizer: args.optimizer,
        epochs: args.epochs.epochs,
        batch_size: args.batch,
        lr: args.lr,
        weight_decay: args.weight_decay,
        warmup: args.warmup,
        seed: args.seed,
        checkpoints: true,
        resume: args.resume,
        quiet: false,
    };
    println!(
        "MNIST: 7000 train / 1000 validation / 2000 test digits; optimizer {}, {} epochs",
        settings.optimizer, settings.epochs
    );
    let outcome = train_mnist(&settings, &device).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
    let epochs = outcome
        .history
        .iter()
        .filter(|h| h.split == "train")
        .count();
    println!(
        "trained {epochs} epochs in {:.1}s ({:.1}s per epoch); checkpoints in {}",
        outcome.seconds,
        outcome.seconds / epochs.max(1) as f64,
        settings.artifacts.join("checkpoint").display()
    );
    println!("test accuracy: {:.4}", outcome.test_accuracy);
}
