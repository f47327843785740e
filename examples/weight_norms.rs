//! The AdamP paper's central picture on the quickstart network: momentum optimizers grow the
//! norms of scale-invariant weights, which shrinks their effective step size; the projected
//! optimizers do not.
//!
//! ```text
//! cargo run --release --example weight_norms [-- --device flex|ndarray|wgpu] [--epochs N]
//!     [--every N] [--weight-decay X] [--seed S] [--out results/weight_norms]
//! ```
//!
//! Trains the BatchNorm CNN of the quickstart on the bundled digits four times from the same
//! initial weights and batches: Adam and AdamP (peak lr 3e-3), SGD and SGDP (momentum 0.9,
//! peak lr 0.1), cosine decay, no weight decay by default (so that norm growth comes from the
//! optimizer alone). Every `--every` steps a [`DiagnosticsTracker`] samples each weight's norm,
//! its effective step size `‖Δw‖/‖w‖`, and for AdamP/SGDP the fraction of the update the
//! projection removed and the branch it took. Writes `diagnostics.csv` (every sample),
//! `summary.csv`, `weight_norm.svg`, `effective_step.svg` and `radial_fraction.svg` into
//! `--out`, and prints the growth ratios.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, SgdConfig};
use clap::Parser;
use scaleinv::models::Digits;
use scaleinv::models::cli::{
    DeviceArg, EpochsArg, OutArg, default, non_negative, positive, write_files,
};
use scaleinv::models::plot::{LinePlot, PALETTE, Series};
use scaleinv::models::progress::Progress;
use scaleinv::models::train::{TrainSettings, train_digits_with};
use scaleinv::{
    AdamPConfig, DiagnosticRow, DiagnosticsTracker, ProjectionView, RadialProjectionConfig,
    SgdpConfig, weight_norms,
};

/// How the norm of BatchNorm-fed weights grows under Adam and SGD, and what AdamP and SGDP do
/// about it, on the bundled digits.
#[derive(Parser)]
#[command(
    mut_arg("epochs", default("30")),
    mut_arg("out", default("results/weight_norms"))
)]
struct Args {
    #[command(flatten)]
    device: DeviceArg,
    #[command(flatten)]
    epochs: EpochsArg,
    /// Steps between two samples of the weight norms.
    #[arg(long, value_name = "N", default_value = "5", value_parser = positive::<usize>)]
    every: usize,
    /// Decoupled weight decay of every optimizer.
    #[arg(long, value_name = "X", default_value = "0", value_parser = non_negative)]
    weight_decay: f64,
    /// Seed of the initial weights and the batch order.
    #[arg(long, default_value = "0")]
    seed: u64,
    #[command(flatten)]
    out: OutArg,
}

const MOMENTUM: f64 = 0.9;

const OPTIMIZERS: [(&str, f64); 4] = [("adam", 3e-3), ("adamp", 3e-3), ("sgd", 0.1), ("sgdp", 0.1)];

/// The BatchNorm-fed weights: every conv kernel.
fn scale_invariant(row: &DiagnosticRow) -> bool {
    row.module_type == "Conv2d" && row.rank == 4
}

/// One optimizer's run.
struct Run {
    name: &'static str,
    initial_norms: BTreeMap<String, f64>,
    rows: Vec<DiagnosticRow>,
    /// The tracker's CSV.
    csv: String,
    accuracy: f64,
    seconds: f64,
}

impl Run {
    /// `(step, mean over the conv weights of f(row))` per sample.
    fn mean_curve(&self, f: impl Fn(&DiagnosticRow) -> Option<f64>) -> Vec<(f64, f64)> {
        let mut by_step: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
        for row in self.rows.iter().filter(|r| scale_invariant(r)) {
            if let Some(v) = f(row) {
                by_step.entry(row.step).or_default().push(v);
            }
        }
        by_step
            .into_iter()
            .map(|(step, v)| (step as f64, v.iter().sum::<f64>() / v.len() as f64))
            .collect()
    }

    fn norm_ratio(&self) -> Vec<(f64, f64)> {
        self.mean_curve(|r| Some(r.norm / self.initial_norms[&r.path]))
    }
}

/// Mean of the values sampled in the second half of the run.
fn second_half_mean(curve: &[(f64, f64)]) -> f64 {
    let half = &curve[curve.len() / 2..];
    half.iter().map(|p| p.1).sum::<f64>() / half.len().max(1) as f64
}

fn main() {
    let args = Args::parse();
    let device = args.device.device();
    let digits = Digits::load().expect("the embedded digits data decodes");
    let (train, test) = digits.split(0.2);

    let mut runs = Vec::new();
    let progress = Progress::new((OPTIMIZERS.len() * args.epochs.epochs) as u64, "epochs");
    for (name, lr) in OPTIMIZERS {
        progress.set_message(name);
        let settings = TrainSettings {
            epochs: args.epochs.epochs,
            lr,
            seed: args.seed,
            ..TrainSettings::default()
        };
        let mut tracker = DiagnosticsTracker::new(args.every);
        let observer = tracker.observer().clone();
        let mut initial_norms = BTreeMap::new();
        let wd = args.weight_decay;
        let start = Instant::now();
        let (_, last) = train_digits_with(
            &device,
            |model| {
                initial_norms = weight_norms(model)
                    .into_iter()
                    .map(|w| (w.path, w.norm))
                    .collect();
                // The plain optimizers get the projected ones' decoupled decay, with the
                // projection off: AdamP's `p(1 − ηλ)` and SGDP's `p(1 − ηλ/(1 − μ))`.
                let plain = |decay: f64| {
                    RadialProjectionConfig::new()
                        .with_view(ProjectionView::Off)
                        .with_weight_decay(decay)
                };
                match name {
                    "adam" => {
                        plain(wd).init_for(AdamConfig::new().with_epsilon(1e-8).build(), model)
                    }
                    "adamp" => AdamPConfig::new()
                        .with_weight_decay(wd)
                        .init_observed(model, &observer),
                    "sgd" => plain(wd / (1.0 - MOMENTUM)).init_for(
                        SgdConfig::new()
                            .with_momentum(Some(MomentumConfig::new().with_momentum(MOMENTUM)))
                            .build(),
                        model,
                    ),
                    _ => SgdpConfig::new()
                        .with_momentum(MOMENTUM)
                        .with_weight_decay(wd)
                        .init_observed(model, &observer),
                }
            },
            &train,
            &test,
            settings,
            |_| progress.inc(1),
            &mut tracker,
        );
        let seconds = start.elapsed().as_secs_f64();
        progress.println(format!(
            "{name:<6} test accuracy {:.4}  ({seconds:.1}s, {} samples)",
            last.test_accuracy,
            tracker.rows().len()
        ));
        runs.push(Run {
            name,
            initial_norms,
            rows: tracker.rows().to_vec(),
            csv: tracker.to_csv(),
            accuracy: last.test_accuracy,
            seconds,
        });
    }

    progress.finish();

    let mut summary = String::from(
        "optimizer,test_accuracy,seconds,conv_norm_ratio_final,conv_effective_step_first,\
         conv_effective_step_second_half,conv_radial_fraction_mean\n",
    );
    println!(
        "\n{:<6} {:>9} {:>22} {:>26} {:>16}",
        "", "accuracy", "conv ‖w_T‖/‖w_0‖", "‖Δw‖/‖w‖ first / 2nd half", "radial removed"
    );
    let mut final_ratio = BTreeMap::new();
    let mut step_means = BTreeMap::new();
    for run in &runs {
        let ratio = run.norm_ratio().last().map_or(f64::NAN, |p| p.1);
        final_ratio.insert(run.name, ratio);
        let steps = run.mean_curve(|r| r.effective_step);
        let first = steps.first().map_or(f64::NAN, |p| p.1);
        let second_half = second_half_mean(&steps);
        step_means.insert(run.name, second_half);
        let radial = run.mean_curve(|r| r.radial_fraction);
        let radial = (!radial.is_empty())
            .then(|| radial.iter().map(|p| p.1).sum::<f64>() / radial.len() as f64);
        println!(
            "{:<6} {:>9.4} {:>22.3} {:>26} {:>16}",
            run.name,
            run.accuracy,
            ratio,
            format!("{first:.2e} / {second_half:.2e}"),
            radial.map_or("-".into(), |r| format!("{r:.3}"))
        );
        let _ = writeln!(
            summary,
            "{},{},{:.2},{ratio},{first},{second_half},{}",
            run.name,
            run.accuracy,
            run.seconds,
            radial.map_or(String::new(), |r| r.to_string())
        );
    }
    println!(
        "norm growth, plain / projected: Adam/AdamP {:.2}×, SGD/SGDP {:.2}×",
        final_ratio["adam"] / final_ratio["adamp"],
        final_ratio["sgd"] / final_ratio["sgdp"]
    );
    println!(
        "effective step over the second half (same lr at every step), projected / plain: \
         AdamP/Adam {:.2}×, SGDP/SGD {:.2}×",
        step_means["adamp"] / step_means["adam"],
        step_means["sgdp"] / step_means["sgd"]
    );

    let mut csv = String::new();
    for run in &runs {
        let mut lines = run.csv.lines();
        if csv.is_empty() {
            let _ = writeln!(csv, "optimizer,{}", lines.next().unwrap_or_default());
        } else {
            lines.next();
        }
        for line in lines {
            let _ = writeln!(csv, "{},{line}", run.name);
        }
    }

    let plot = |title: &str, y: &str, log_y: bool, curve: &dyn Fn(&Run) -> Vec<(f64, f64)>| {
        let mut plot = LinePlot::new(title, "step", y);
        plot.log_y = log_y;
        for (i, run) in runs.iter().enumerate() {
            let points = curve(run);
            if !points.is_empty() {
                plot = plot.with_series(Series {
                    name: run.name.into(),
                    points,
                    color: PALETTE[i % PALETTE.len()].into(),
                    dashed: !run.name.ends_with('p'),
                });
            }
        }
        plot.to_svg()
    };
    let norm_svg = plot(
        "Norm of the BatchNorm-fed conv weights (mean of ‖w_t‖/‖w_0‖)",
        "‖w_t‖ / ‖w_0‖",
        false,
        &|r| r.norm_ratio(),
    );
    let step_svg = plot(
        "Effective step size of the conv weights (mean ‖Δw‖/‖w‖)",
        "‖Δw‖ / ‖w‖",
        true,
        &|r| r.mean_curve(|row| row.effective_step),
    );
    let radial_svg = plot(
        "Fraction of the update removed as radial (conv weights)",
        "‖u − u_proj‖ / ‖u‖",
        false,
        &|r| r.mean_curve(|row| row.radial_fraction),
    );
    write_files(
        &args.out.out,
        vec![
            ("diagnostics.csv", csv),
            ("summary.csv", summary),
            ("weight_norm.svg", norm_svg),
            ("effective_step.svg", step_svg),
            ("radial_fraction.svg", radial_svg),
        ],
    );
}
