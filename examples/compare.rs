//! Adam against AdamP and SGD against SGDP (and any other optimizer by name) on the bundled
//! MNIST digits with Burn's `Learner`, over several seeds.
//!
//! ```text
//! cargo run --release --example compare [-- --device flex|ndarray|wgpu]
//!     [--optimizers adam,adamp,sgd,sgdp] [--seeds N] [--epochs N] [--out results/compare]
//! ```
//!
//! Every run trains the small BatchNorm ResNet of `scaleinv-models` with the same schedule
//! (warm-up over the first 5 % of steps, then cosine), the optimizer's default peak learning
//! rate (1e-2 for the Adam family, 0.1 for the SGD family), no weight decay, batches of 64, and
//! the seed's initial weights and batch order, which every optimizer shares. Writes `runs.csv`
//! (test accuracy, seconds per epoch, mean norm of the conv kernels before and after),
//! `epochs.csv` (validation accuracy and loss per epoch) and `accuracy.svg` into `--out`, and
//! prints mean ± standard deviation over the seeds.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use burn::tensor::Device;
use clap::Parser;
use clap::builder::PossibleValuesParser;
use scaleinv::models::cli::{
    DeviceArg, EpochsArg, OutArg, SeedsArg, default, mean_std, or_exit, write_files,
};
use scaleinv::models::learner::{OPTIMIZERS, RunSettings, train_mnist};
use scaleinv::models::plot::{LinePlot, PALETTE, Series};
use scaleinv::models::progress::Progress;
use scaleinv::models::{ResNet, ResNetConfig};
use scaleinv::weight_norms;

/// Adam against AdamP and SGD against SGDP (and any other optimizer by name) on the bundled
/// MNIST digits with Burn's `Learner`, over several seeds.
#[derive(Parser)]
#[command(
    mut_arg("seeds", default("3")),
    mut_arg("epochs", default("3")),
    mut_arg("out", default("results/compare"))
)]
struct Args {
    #[command(flatten)]
    device: DeviceArg,
    /// The optimizers compared, comma-separated.
    #[arg(
        long,
        value_name = "NAMES",
        value_delimiter = ',',
        default_value = "adam,adamp,sgd,sgdp",
        value_parser = PossibleValuesParser::new(OPTIMIZERS)
    )]
    optimizers: Vec<String>,
    #[command(flatten)]
    seeds: SeedsArg,
    #[command(flatten)]
    epochs: EpochsArg,
    #[command(flatten)]
    out: OutArg,
}

/// Mean norm of the BatchNorm-fed conv kernels (every rank-4 weight).
fn conv_norm(net: &ResNet) -> f64 {
    let norms: Vec<f64> = weight_norms(net)
        .into_iter()
        .filter(|w| w.rank == 4)
        .map(|w| w.norm)
        .collect();
    norms.iter().sum::<f64>() / norms.len().max(1) as f64
}

/// The initial weights of a run with `seed` (the ones `train_mnist` starts from).
fn initial_conv_norm(seed: u64, device: &Device) -> f64 {
    let device = device.clone().autodiff();
    device.seed(seed);
    conv_norm(&ResNetConfig::default().init(&device))
}

/// What one optimizer's runs produced, seed by seed.
#[derive(Default)]
struct Results {
    test_accuracy: Vec<f64>,
    seconds_per_epoch: Vec<f64>,
    norm_before: Vec<f64>,
    norm_after: Vec<f64>,
    /// Validation accuracy per epoch, per seed.
    valid_accuracy: Vec<Vec<f64>>,
}

fn main() {
    let args = Args::parse();
    let (seeds, epochs) = (args.seeds.seeds, args.epochs.epochs);
    let device = args.device.device();
    let scratch = std::env::temp_dir().join(format!("scaleinv-compare-{}", std::process::id()));
    let mut results: BTreeMap<String, Results> = BTreeMap::new();
    let mut runs_csv = String::from(
        "optimizer,seed,test_accuracy,seconds_per_epoch,conv_norm_before,conv_norm_after\n",
    );
    let mut epochs_csv =
        String::from("optimizer,seed,epoch,train_loss,valid_loss,valid_accuracy\n");

    let progress = Progress::new(seeds * args.optimizers.len() as u64, "runs");
    for seed in 0..seeds {
        for name in &args.optimizers {
            progress.set_message(format!("{name}, seed {seed}"));
            let settings = RunSettings {
                optimizer: name.clone(),
                epochs,
                batch_size: 64,
                lr: None,
                weight_decay: 0.0,
                warmup: None,
                seed,
                artifacts: scratch.join(format!("{name}-{seed}")),
                checkpoints: false,
                resume: None,
                quiet: true,
            };
            progress.println(format!("== {name}, seed {seed}"));
            let outcome = or_exit(train_mnist(&settings, &device));
            let r = results.entry(name.clone()).or_default();
            let train: Vec<_> = outcome
                .history
                .iter()
                .filter(|h| h.split == "train")
                .collect();
            let valid: Vec<_> = outcome
                .history
                .iter()
                .filter(|h| h.split == "valid")
                .collect();
            let per_epoch =
                train.iter().map(|h| h.seconds).sum::<f64>() / train.len().max(1) as f64;
            let (before, after) = (
                initial_conv_norm(seed, &device),
                conv_norm(&outcome.model.net),
            );
            let metric = |h: &scaleinv::models::learner::SplitMetrics, name: &str| {
                h.means.get(name).copied().unwrap_or(f64::NAN)
            };
            for (epoch, (t, v)) in train.iter().zip(&valid).enumerate() {
                let _ = writeln!(
                    epochs_csv,
                    "{name},{seed},{},{},{},{}",
                    epoch + 1,
                    metric(t, "Loss"),
                    metric(v, "Loss"),
                    metric(v, "Accuracy") / 100.0
                );
            }
            r.valid_accuracy.push(
                valid
                    .iter()
                    .map(|v| metric(v, "Accuracy") / 100.0)
                    .collect(),
            );
            let _ = writeln!(
                runs_csv,
                "{name},{seed},{},{per_epoch:.2},{before},{after}",
                outcome.test_accuracy
            );
            progress.println(format!(
                "   test accuracy {:.4}, {per_epoch:.1}s per epoch, conv ‖w‖ {before:.3} → {after:.3}",
                outcome.test_accuracy
            ));
            progress.inc(1);
            r.test_accuracy.push(outcome.test_accuracy);
            r.seconds_per_epoch.push(per_epoch);
            r.norm_before.push(before);
            r.norm_after.push(after);
        }
    }
    progress.finish();
    std::fs::remove_dir_all(&scratch).ok();

    println!(
        "\n{:<20} {:>22} {:>14} {:>22}",
        "optimizer",
        format!("test accuracy ({seeds} seeds)"),
        "s / epoch",
        "conv ‖w‖ after/before"
    );
    let mut plot = LinePlot::new("Validation accuracy (mean over seeds)", "epoch", "accuracy");
    for (i, name) in args.optimizers.iter().enumerate() {
        let r = &results[name];
        let (acc, acc_sd) = mean_std(&r.test_accuracy);
        let (secs, _) = mean_std(&r.seconds_per_epoch);
        let growth: Vec<f64> = r
            .norm_after
            .iter()
            .zip(&r.norm_before)
            .map(|(a, b)| a / b)
            .collect();
        let (growth, growth_sd) = mean_std(&growth);
        println!(
            "{name:<20} {:>22} {secs:>14.1} {:>22}",
            format!("{acc:.4} ± {acc_sd:.4}"),
            format!("{growth:.3} ± {growth_sd:.3}")
        );
        let points = (0..epochs)
            .map(|e| {
                let at: Vec<f64> = r
                    .valid_accuracy
                    .iter()
                    .filter_map(|v| v.get(e).copied())
                    .collect();
                ((e + 1) as f64, mean_std(&at).0)
            })
            .collect();
        plot = plot.with_series(Series {
            name: name.clone(),
            points,
            color: PALETTE[i % PALETTE.len()].into(),
            dashed: !name.ends_with('p'),
        });
    }
    write_files(
        &args.out.out,
        vec![
            ("runs.csv", runs_csv),
            ("epochs.csv", epochs_csv),
            ("accuracy.svg", plot.to_svg()),
        ],
    );
}
