//! 4-bit training of a small causal transformer on tiny-shakespeare: Adam against Stable-SPAM
//! and GradientStabilizer (around AdamW and around Adam) at three learning rates, the same
//! steps, batches and initial weights.
//!
//! ```text
//! cargo run --release --example low_precision [-- --device flex|ndarray|wgpu] [--steps N]
//!     [--lrs 3e-3,3e-2,1e-1] [--bits 4] [--out results/low_precision]
//! ```
//!
//! Every linear layer's weight and input are fake-quantized to `--bits` bits (straight-through
//! gradient). A loss spike is a step whose loss exceeds 1.2× the mean of the 20 steps before
//! it; a gradient-norm spike, a step whose global gradient norm exceeds 3× the median of the 50
//! steps before it. Writes `runs.csv` (one row per run), `curves.csv` (loss and gradient norm per
//! step), `loss.svg` (Adam against Stable-SPAM) and `loss_gs.svg` (Adam against
//! GradientStabilizer around AdamW) into `--out`, and prints the table. `--optimizers` picks a
//! subset of `adam,stable_spam,gs_adamw,gs_adam`.

use std::fmt::Write as _;

use burn::optim::{AdamConfig, AdamWConfig, ModuleOptimizer};
use clap::Parser;
use clap::builder::PossibleValuesParser;
use scaleinv::models::cli::{DeviceArg, OutArg, default, positive, positive_finite, write_files};
use scaleinv::models::lm_train::{LmRun, LmSettings, train_lm};
use scaleinv::models::plot::{LinePlot, PALETTE, Series};
use scaleinv::models::progress::Progress;
use scaleinv::models::{CharCorpus, TinyLmConfig};
use scaleinv::{GradientStabilizerConfig, StableSpamConfig};

/// Low-precision training of a small causal transformer on tiny-shakespeare: Adam against
/// Stable-SPAM and GradientStabilizer at several learning rates, the same steps, batches and
/// initial weights.
#[derive(Parser)]
#[command(mut_arg("out", default("results/low_precision")))]
struct Args {
    #[command(flatten)]
    device: DeviceArg,
    /// Training steps per run.
    #[arg(long, value_name = "N", default_value = "600", value_parser = positive::<usize>)]
    steps: usize,
    /// Peak learning rates, comma-separated; every optimizer runs at each.
    #[arg(
        long,
        value_name = "LRS",
        value_delimiter = ',',
        default_value = "3e-3,3e-2,1e-1",
        value_parser = positive_finite
    )]
    lrs: Vec<f64>,
    /// Bits of the fake-quantized linear layers (0 = full precision).
    #[arg(long, value_name = "B", default_value = "4", value_parser = clap::value_parser!(u32).range(0..=16))]
    bits: u32,
    #[command(flatten)]
    out: OutArg,
    /// The optimizers compared, comma-separated, in the table's order.
    #[arg(
        long,
        value_name = "NAMES",
        value_delimiter = ',',
        default_value = "adam,stable_spam,gs_adamw,gs_adam",
        value_parser = PossibleValuesParser::new(OPTIMIZERS)
    )]
    optimizers: Vec<String>,
}

/// Every optimizer the example can run, in the table's order.
const OPTIMIZERS: [&str; 4] = ["adam", "stable_spam", "gs_adamw", "gs_adam"];

/// The two optimizers compared: Burn's Adam with the reference ε, and Stable-SPAM with the
/// authors' 4-bit settings (γ1 = 0.7, γ2 = 0.9, θ = 0.999, reset every 500 steps, cosine β1/γ1
/// over the run); GradientStabilizer with the reference's defaults (γ1 0.6, γ2 0.999) around
/// AdamW (torch's defaults: ε 1e-8, λ 0.01) and around Adam.
fn optimizer(name: &str, steps: usize) -> ModuleOptimizer {
    let adam = || AdamConfig::new().with_epsilon(1e-8);
    match name {
        "adam" => adam().init(),
        "gs_adamw" => GradientStabilizerConfig::new().init(
            AdamWConfig::new()
                .with_epsilon(1e-8)
                .with_weight_decay(0.01)
                .build(),
        ),
        "gs_adam" => GradientStabilizerConfig::new().init(adam().build()),
        "stable_spam" => StableSpamConfig::new()
            .with_gamma_1(0.7)
            .with_gamma_2(0.9)
            .with_theta(0.999)
            .with_reset_interval(500)
            .with_total_steps(Some(steps))
            .init(),
        other => unreachable!("no optimizer {other}"),
    }
}

/// Steps whose loss exceeds 1.2× the mean of the 20 steps before it.
fn loss_spikes(losses: &[f64]) -> usize {
    const WINDOW: usize = 20;
    (WINDOW..losses.len())
        .filter(|&i| {
            let mean = losses[i - WINDOW..i].iter().sum::<f64>() / WINDOW as f64;
            losses[i] > 1.2 * mean || losses[i].is_nan()
        })
        .count()
}

/// Steps whose global gradient norm exceeds 3× the median of the 50 steps before it.
fn grad_norm_spikes(norms: &[f64]) -> usize {
    const WINDOW: usize = 50;
    (WINDOW..norms.len())
        .filter(|&i| {
            let mut previous = norms[i - WINDOW..i].to_vec();
            previous.sort_by(f64::total_cmp);
            norms[i] > 3.0 * previous[WINDOW / 2] || norms[i].is_nan()
        })
        .count()
}

/// Mean of the last tenth of the losses (the final training loss).
fn final_loss(run: &LmRun) -> f64 {
    if run.diverged_at.is_some() {
        return f64::NAN;
    }
    let tail = (run.losses.len() / 10).max(1);
    run.losses[run.losses.len() - tail..].iter().sum::<f64>() / tail as f64
}

fn main() {
    let args = Args::parse();
    let device = args.device.device();

    let corpus = CharCorpus::load();
    let (train, val) = corpus.split(0.9);
    let settings = LmSettings {
        steps: args.steps,
        ..LmSettings::default()
    };
    let config = TinyLmConfig::new(corpus.vocab_size())
        .with_seq_len(settings.seq_len)
        .with_quant_bits(args.bits);
    println!(
        "tiny-shakespeare: {} train / {} validation characters, vocabulary {}; model d={} layers={} heads={}, {}-bit linear layers; {} steps of {}x{} on {}",
        train.len(),
        val.len(),
        corpus.vocab_size(),
        config.d_model,
        config.n_layers,
        config.n_heads,
        args.bits,
        settings.steps,
        settings.batch_size,
        settings.seq_len,
        args.device.name
    );

    let mut rows = Vec::new();
    let mut curves = String::from("optimizer,lr,step,loss,grad_norm\n");
    let progress = Progress::new(
        (args.optimizers.len() * args.lrs.len() * args.steps) as u64,
        "steps",
    );
    for name in args.optimizers.iter().map(String::as_str) {
        for &lr in &args.lrs {
            progress.set_message(format!("{name} lr {lr:.0e}"));
            let autodiff = device.clone().autodiff();
            autodiff.seed(42);
            let model = config.init(&autodiff);
            let mut optim = optimizer(name, settings.steps);
            let s = LmSettings {
                peak_lr: lr,
                ..settings.clone()
            };
            let report_every = (s.steps / 5).max(1);
            let (_, run) = train_lm(
                model,
                &mut optim,
                &train,
                &val,
                &s,
                &device,
                |step, loss, norm| {
                    progress.inc(1);
                    if (step + 1) % report_every == 0 || !loss.is_finite() {
                        progress.println(format!(
                            "  {name:<12} lr {lr:<7.0e} step {:>5}/{}: loss {loss:.4}, grad norm {norm:.3}",
                            step + 1,
                            s.steps
                        ));
                    }
                },
            );
            // A diverged run stops early: its remaining steps count as done.
            progress.inc((s.steps - run.losses.len()) as u64);
            for (step, (loss, norm)) in run.losses.iter().zip(&run.grad_norms).enumerate() {
                let _ = writeln!(curves, "{name},{lr:e},{step},{loss},{norm}");
            }
            let max_norm = run.grad_norms.iter().cloned().fold(0.0, f64::max);
            progress.println(format!(
                "{name:<12} lr {lr:<7.0e} final loss {:.4}  val loss {:.4}  loss spikes {:>3}  grad-norm spikes {:>3}  max grad norm {max_norm:>8.3}  {:.0} s{}",
                final_loss(&run),
                run.val_loss,
                loss_spikes(&run.losses),
                grad_norm_spikes(&run.grad_norms),
                run.seconds,
                run.diverged_at
                    .map_or(String::new(), |s| format!("  diverged at step {s}"))
            ));
            rows.push((name, lr, run));
        }
    }

    progress.finish();

    let mut table = String::from(
        "optimizer,lr,final_train_loss,val_loss,loss_spikes,grad_norm_spikes,max_grad_norm,diverged_at,seconds\n",
    );
    for (name, lr, run) in &rows {
        let _ = writeln!(
            table,
            "{name},{lr:e},{:.4},{:.4},{},{},{:.4},{},{:.1}",
            final_loss(run),
            run.val_loss,
            loss_spikes(&run.losses),
            grad_norm_spikes(&run.grad_norms),
            run.grad_norms.iter().cloned().fold(0.0, f64::max),
            run.diverged_at.map_or(String::new(), |s| s.to_string()),
            run.seconds
        );
    }

    let plot = |against: &str, title: &str| {
        let mut plot = LinePlot::new(
            &format!("{}-bit loss: {title}", args.bits),
            "step",
            "training loss (moving average of 10)",
        );
        plot.y_range = Some((1.0, 4.5));
        for (name, lr, run) in rows
            .iter()
            .filter(|(n, _, _)| *n == "adam" || *n == against)
        {
            let i = args.lrs.iter().position(|l| l == lr).unwrap_or(0);
            plot = plot.with_series(Series {
                name: format!("{} lr {lr:.0e}", label(name)),
                points: moving_average(&run.losses, 10),
                color: PALETTE[i % PALETTE.len()].into(),
                dashed: *name == "adam",
            });
        }
        plot.to_svg()
    };

    write_files(
        &args.out.out,
        vec![
            ("runs.csv", table),
            ("curves.csv", curves),
            (
                "loss.svg",
                plot("stable_spam", "Adam (dashed), Stable-SPAM"),
            ),
            ("loss_gs.svg", plot("gs_adamw", "Adam (dashed), GS(AdamW)")),
        ],
    );
}

/// The name of an optimizer in the plots.
fn label(name: &str) -> &'static str {
    match name {
        "adam" => "Adam",
        "stable_spam" => "Stable-SPAM",
        "gs_adamw" => "GS(AdamW)",
        "gs_adam" => "GS(Adam)",
        _ => "?",
    }
}

/// `(step, mean of the `window` losses ending at step)`.
fn moving_average(values: &[f64], window: usize) -> Vec<(f64, f64)> {
    (0..values.len())
        .map(|i| {
            let lo = (i + 1).saturating_sub(window);
            let slice = &values[lo..=i];
            (i as f64, slice.iter().sum::<f64>() / slice.len() as f64)
        })
        .collect()
}
