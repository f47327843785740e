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

use scaleinv::models::cli::{or_exit, positive};
use scaleinv::models::device::device_from_name;
use scaleinv::models::learner::{OPTIMIZERS, RunSettings, train_mnist};

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{flag}: `{v}` is not a valid value"))
}

fn parse_args() -> Result<(RunSettings, String), String> {
    let mut s = RunSettings {
        optimizer: "adamp".into(),
        epochs: 3,
        batch_size: 64,
        lr: None,
        weight_decay: 0.0,
        warmup: None,
        seed: 0,
        artifacts: PathBuf::new(),
        checkpoints: true,
        resume: None,
        quiet: false,
    };
    let mut device = "flex".to_string();
    let mut artifacts = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--optimizer" => s.optimizer = value()?,
            "--device" => device = value()?,
            "--epochs" => s.epochs = positive(&flag, &value()?)?,
            "--batch" => s.batch_size = positive(&flag, &value()?)?,
            "--lr" => s.lr = Some(positive(&flag, &value()?)?),
            "--weight-decay" => s.weight_decay = number(&flag, &value()?)?,
            "--warmup" => s.warmup = Some(number(&flag, &value()?)?),
            "--seed" => s.seed = number(&flag, &value()?)?,
            "--artifacts" => artifacts = Some(PathBuf::from(value()?)),
            "--resume" => s.resume = Some(positive(&flag, &value()?)?),
            "-h" | "--help" => {
                println!(
                    "usage: train --optimizer {} [--device flex|ndarray|wgpu] [--epochs N] \
                     [--batch N] [--lr X] [--weight-decay X] [--warmup STEPS] [--seed S] \
                     [--artifacts DIR] [--resume EPOCH]",
                    OPTIMIZERS.join("|")
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    if !OPTIMIZERS.contains(&s.optimizer.as_str()) {
        return Err(format!(
            "--optimizer: `{}` is not one of {}",
            s.optimizer,
            OPTIMIZERS.join(", ")
        ));
    }
    if !(s.weight_decay >= 0.0 && s.weight_decay.is_finite()) {
        return Err("--weight-decay must be a finite value ≥ 0".into());
    }
    s.artifacts = artifacts.unwrap_or_else(|| PathBuf::from(format!("runs/train-{}", s.optimizer)));
    Ok((s, device))
}

fn main() {
    let (settings, device) = or_exit(parse_args());
    let device = or_exit(device_from_name(&device));
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
