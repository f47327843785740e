//! Rotational equilibrium on the bundled digits: AdamW with and without a learning-rate
//! warm-up against RotationalAdamW without one (Kosson et al., ICML 2024, claim the rotational
//! update removes much of the need for warm-up and balances learning across layers).
//!
//! ```text
//! cargo run --release --example rotational [-- --device flex|ndarray|wgpu] [--epochs N]
//!     [--seeds N] [--lr X] [--weight-decay X] [--warmup F] [--every N]
//!     [--out results/rotational]
//! ```
//!
//! Trains the quickstart's BatchNorm CNN four ways from the same initial weights and batches
//! per seed: AdamW with a linear warm-up over the first `--warmup` of the steps, AdamW without
//! it, and RotationalAdamW without it (its model prepared by `init_for`) twice: with the
//! convolutions rotational and the classifier head on AdamW's step (the head feeds the softmax,
//! it is not scale-invariant, and a rotational head is held at its initial norm), and with the
//! reference's default rule (every matrix and kernel, the head included); all at peak `--lr`,
//! cosine decay to 0, weight decay `--weight-decay`. A [`DiagnosticsTracker`] samples every
//! weight's angular update (the angle between `w_t` and `w_{t+1}`) every `--every` steps beside
//! the equilibrium angle `√(2·η·λ·(1 − β1)/(1 + β1))` at that step's learning rate. Writes
//! `summary.csv`, `accuracy.csv`, `angles.csv`, `accuracy.svg`, `angular_update.svg` and
//! `angular_update_by_layer.svg` into `--out`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use burn::optim::AdamWConfig;
use clap::Parser;
use scaleinv::models::cli::{
    DeviceArg, EpochsArg, OutArg, SeedsArg, default, mean_std, non_negative, positive,
    positive_finite, write_files,
};
use scaleinv::models::plot::{LinePlot, PALETTE, Series};
use scaleinv::models::progress::Progress;
use scaleinv::models::train::{Run, StepHooks, TrainSettings, cosine_lr, train_digits_prepared};
use scaleinv::models::{Digits, DigitsCnn};
use scaleinv::{DiagnosticRow, DiagnosticsTracker, Equilibrium, RotationalAdamWConfig};

/// AdamW with and without warm-up against RotationalAdamW without it, on the bundled digits,
/// over several seeds.
#[derive(Parser)]
#[command(
    mut_arg("epochs", default("12")),
    mut_arg("seeds", default("3")),
    mut_arg("out", default("results/rotational"))
)]
struct Args {
    #[command(flatten)]
    device: DeviceArg,
    #[command(flatten)]
    epochs: EpochsArg,
    #[command(flatten)]
    seeds: SeedsArg,
    /// Peak learning rate of every run.
    #[arg(long, value_name = "X", default_value = "1e-2", value_parser = positive_finite)]
    lr: f64,
    /// Weight decay λ of every run (AdamW's decoupled decay; the rotational runs' angle).
    #[arg(long, value_name = "X", default_value = "0.1", value_parser = positive_finite)]
    weight_decay: f64,
    /// Fraction of the steps the warm-up run spends rising linearly to the peak.
    #[arg(long, value_name = "F", default_value = "0.1", value_parser = non_negative)]
    warmup: f64,
    /// Steps between two samples of the angular updates.
    #[arg(long, value_name = "N", default_value = "2", value_parser = positive::<usize>)]
    every: usize,
    #[command(flatten)]
    out: OutArg,
}

const BETA_1: f64 = 0.9;

/// The three runs of each seed.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    AdamWWarmup,
    AdamW,
    /// The convolutions rotational; the classifier head, which feeds the softmax and is not
    /// scale-invariant, takes AdamW's step so that its norm can grow.
    Rotational,
    /// The reference's default rule: every matrix and kernel rotational, the head included.
    RotationalAll,
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::AdamWWarmup,
        Kind::AdamW,
        Kind::Rotational,
        Kind::RotationalAll,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::AdamWWarmup => "adamw_warmup",
            Kind::AdamW => "adamw",
            Kind::Rotational => "rotational_adamw",
            Kind::RotationalAll => "rotational_all",
        }
    }

    fn warms_up(self) -> bool {
        self == Kind::AdamWWarmup
    }
}

/// The learning rate at `step` of `total`: the cosine to 0 from `peak`, times a linear rise
/// over the first `warmup` of the steps when there is one.
fn schedule(peak: f64, warmup: f64, step: usize, total: usize) -> f64 {
    let cosine = cosine_lr(peak, step, total);
    let rise = (warmup * total as f64).ceil();
    if rise > 0.0 {
        cosine * ((step + 1) as f64 / rise).min(1.0)
    } else {
        cosine
    }
}

/// The tracker, given each step's learning rate (for the equilibrium angle).
struct Hooks<'a> {
    tracker: DiagnosticsTracker,
    lr: &'a dyn Fn(usize) -> f64,
}

impl StepHooks for Hooks<'_> {
    fn before_step(&mut self, step: usize, model: &DigitsCnn) {
        self.tracker.before_step_at(step, (self.lr)(step), model);
    }

    fn after_step(&mut self, _step: usize, model: &DigitsCnn) {
        self.tracker.after_step(model);
    }
}

/// One run's results.
struct Outcome {
    kind: Kind,
    seed: u64,
    accuracy: Vec<f64>,
    rows: Vec<DiagnosticRow>,
}

/// The weights whose angle is compared with the equilibrium: every matrix and kernel.
fn is_matrix(row: &DiagnosticRow) -> bool {
    row.rank >= 2
}

/// `(step, mean of f over the rows of each sampled step)` over `outcomes`.
fn mean_by_step<'a>(
    outcomes: impl Iterator<Item = &'a Outcome>,
    keep: impl Fn(&DiagnosticRow) -> bool,
    f: impl Fn(&DiagnosticRow) -> Option<f64>,
) -> Vec<(f64, f64)> {
    let mut by_step: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for row in outcomes.flat_map(|o| &o.rows).filter(|r| keep(r)) {
        if let Some(v) = f(row) {
            by_step.entry(row.step).or_default().push(v);
        }
    }
    by_step
        .into_iter()
        .map(|(step, v)| (step as f64, v.iter().sum::<f64>() / v.len() as f64))
        .collect()
}

fn main() {
    let args = Args::parse();
    let device = args.device.device();
    let digits = Digits::load().expect("the embedded digits data decodes");
    let (train, test) = digits.split(0.2);
    let seeds = args.seeds.seeds;
    let equilibrium = Equilibrium::AdamW {
        weight_decay: args.weight_decay,
        beta_1: BETA_1,
    };
    println!(
        "digits: {} train / {} test; {} epochs of batch 64, peak lr {} cosine to 0 (warm-up \
         {:.0}% of the steps for adamw_warmup), λ {}; {seeds} seeds on {}",
        train.len(),
        test.len(),
        args.epochs.epochs,
        args.lr,
        args.warmup * 100.0,
        args.weight_decay,
        args.device.name,
    );

    let runs = Kind::ALL.len() as u64;
    let progress = Progress::new(runs * seeds * args.epochs.epochs as u64, "epochs");
    let mut outcomes = Vec::new();
    for seed in 0..seeds {
        for kind in Kind::ALL {
            progress.set_message(format!("{} seed {seed}", kind.name()));
            let settings = TrainSettings {
                epochs: args.epochs.epochs,
                lr: args.lr,
                seed,
                ..TrainSettings::default()
            };
            let warmup = if kind.warms_up() { args.warmup } else { 0.0 };
            let steps = args.epochs.epochs * train.len().div_ceil(settings.batch_size);
            let lr_at = |step: usize, total: usize| schedule(args.lr, warmup, step, total);
            let lr_of_step = |step: usize| lr_at(step, steps);
            let mut hooks = Hooks {
                tracker: DiagnosticsTracker::new(args.every)
                    .with_sigma(None)
                    .with_equilibrium(equilibrium),
                lr: &lr_of_step,
            };
            let wd = args.weight_decay;
            let rotational = RotationalAdamWConfig::new()
                .with_beta_1(BETA_1)
                .with_weight_decay(wd);
            let make = |model: DigitsCnn| match kind {
                Kind::Rotational => rotational
                    .with_not_rotational(vec!["head".into()])
                    .init_for(model),
                Kind::RotationalAll => rotational.init_for(model),
                _ => {
                    let optim = AdamWConfig::new()
                        .with_beta_1(BETA_1 as f32)
                        .with_epsilon(1e-8)
                        .with_weight_decay(wd as f32)
                        .init();
                    (model, optim)
                }
            };
            let mut accuracy = Vec::new();
            let run = Run {
                train: &train,
                test: &test,
                settings,
                schedule: &lr_at,
            };
            train_digits_prepared(
                &device,
                make,
                run,
                |report| {
                    accuracy.push(report.test_accuracy);
                    progress.inc(1);
                },
                &mut hooks,
            );
            progress.println(format!(
                "{:<17} seed {seed}: test accuracy {:.4}",
                kind.name(),
                accuracy.last().copied().unwrap_or(f64::NAN)
            ));
            outcomes.push(Outcome {
                kind,
                seed,
                accuracy,
                rows: hooks.tracker.rows().to_vec(),
            });
        }
    }
    progress.finish();
    report(&args, &outcomes);
}

/// Prints the summary and writes the CSV files and the plots.
fn report(args: &Args, outcomes: &[Outcome]) {
    let of = |kind: Kind| outcomes.iter().filter(move |o| o.kind == kind);
    let mut summary = String::from(
        "optimizer,final_accuracy_mean,final_accuracy_std,epoch1_accuracy_mean,\
         angle_over_equilibrium_first_10pct,angle_over_equilibrium_rest,layer_angle_spread\n",
    );
    println!(
        "\n{:<17} {:>16} {:>12} {:>22} {:>14}",
        "", "final accuracy", "epoch 1", "angle / equilibrium", "layer spread"
    );
    println!(
        "{:<17} {:>16} {:>12} {:>11} {:>10} {:>14}",
        "", "mean ± std", "mean", "first 10%", "rest", "max / min"
    );
    for kind in Kind::ALL {
        let finals: Vec<f64> = of(kind)
            .filter_map(|o| o.accuracy.last().copied())
            .collect();
        let (mean, std) = mean_std(&finals);
        let first: Vec<f64> = of(kind)
            .filter_map(|o| o.accuracy.first().copied())
            .collect();
        let (first, _) = mean_std(&first);
        let ratio = mean_by_step(of(kind), is_matrix, |r| {
            Some(r.angular_update? / r.equilibrium_angle.filter(|e| *e > 0.0)?)
        });
        let last_step = ratio.last().map_or(1.0, |p| p.0);
        let split = |early: bool| {
            let v: Vec<f64> = ratio
                .iter()
                .filter(|p| (p.0 < 0.1 * last_step) == early)
                .map(|p| p.1)
                .collect();
            mean_std(&v).0
        };
        let (early, rest) = (split(true), split(false));
        // Per layer, its mean angle over the run; the spread is the largest over the smallest.
        let mut per_layer: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for row in of(kind).flat_map(|o| &o.rows).filter(|r| is_matrix(r)) {
            if let Some(a) = row.angular_update {
                per_layer.entry(&row.path).or_default().push(a);
            }
        }
        let means: Vec<f64> = per_layer.values().map(|v| mean_std(v).0).collect();
        let spread = means.iter().cloned().fold(f64::MIN, f64::max)
            / means.iter().cloned().fold(f64::MAX, f64::min);
        println!(
            "{:<17} {:>16} {:>12.4} {:>11.2} {:>10.2} {:>14.2}",
            kind.name(),
            format!("{mean:.4} ± {std:.4}"),
            first,
            early,
            rest,
            spread
        );
        let _ = writeln!(
            summary,
            "{},{mean},{std},{first},{early},{rest},{spread}",
            kind.name()
        );
    }

    let mut accuracy_csv = String::from("optimizer,seed,epoch,test_accuracy\n");
    let mut angles_csv =
        String::from("optimizer,seed,step,path,rank,angular_update,equilibrium_angle\n");
    for o in outcomes {
        for (epoch, a) in o.accuracy.iter().enumerate() {
            let _ = writeln!(
                accuracy_csv,
                "{},{},{},{a}",
                o.kind.name(),
                o.seed,
                epoch + 1
            );
        }
        for r in &o.rows {
            let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:e}"));
            let _ = writeln!(
                angles_csv,
                "{},{},{},{},{},{},{}",
                o.kind.name(),
                o.seed,
                r.step,
                r.path,
                r.rank,
                opt(r.angular_update),
                opt(r.equilibrium_angle)
            );
        }
    }

    let series = |i: usize, name: &str, points: Vec<(f64, f64)>, dashed: bool| Series {
        name: name.into(),
        points,
        color: PALETTE[i % PALETTE.len()].into(),
        dashed,
    };
    let mut accuracy = LinePlot::new(
        &format!("Test accuracy (mean of {} seeds)", args.seeds.seeds),
        "epoch",
        "accuracy",
    );
    let mut angles = LinePlot::new(
        "Mean angular update of the matrices and kernels, per step",
        "step",
        "angle (rad)",
    );
    angles.log_y = true;
    for (i, kind) in Kind::ALL.into_iter().enumerate() {
        let mut by_epoch: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
        for o in of(kind) {
            for (e, a) in o.accuracy.iter().enumerate() {
                by_epoch.entry(e + 1).or_default().push(*a);
            }
        }
        let points = by_epoch
            .into_iter()
            .map(|(e, v)| (e as f64, mean_std(&v).0))
            .collect();
        accuracy = accuracy.with_series(series(i, kind.name(), points, false));
        let points = mean_by_step(of(kind), is_matrix, |r| r.angular_update);
        angles = angles.with_series(series(i, kind.name(), points, false));
        let predicted = mean_by_step(of(kind), is_matrix, |r| r.equilibrium_angle);
        let name = format!("{}: equilibrium", kind.name());
        angles = angles.with_series(series(i, &name, predicted, true));
    }

    // Per layer, AdamW without warm-up (dashed) against RotationalAdamW (solid).
    let mut layers = LinePlot::new(
        "Angular update per layer: adamw (dashed) and rotational_adamw (solid)",
        "step",
        "angle (rad)",
    );
    layers.log_y = true;
    let paths: Vec<String> = {
        let mut p: Vec<String> = of(Kind::AdamW)
            .flat_map(|o| &o.rows)
            .filter(|r| is_matrix(r))
            .map(|r| r.path.clone())
            .collect();
        p.sort();
        p.dedup();
        p
    };
    for (i, path) in paths.iter().enumerate() {
        for kind in [Kind::AdamW, Kind::Rotational] {
            let points = mean_by_step(of(kind), |r| &r.path == path, |r| r.angular_update);
            let name = format!("{path} ({})", kind.name());
            layers = layers.with_series(series(i, &name, points, kind == Kind::AdamW));
        }
    }

    write_files(
        &args.out.out,
        vec![
            ("summary.csv", summary),
            ("accuracy.csv", accuracy_csv),
            ("angles.csv", angles_csv),
            ("accuracy.svg", accuracy.to_svg()),
            ("angular_update.svg", angles.to_svg()),
            ("angular_update_by_layer.svg", layers.to_svg()),
        ],
    );
}
