//! Width transfer: the small pre-norm transformer LM on tiny-shakespeare at several widths
//! (depth fixed), trained with plain AdamW and with the width-scaled rule, both with the
//! hyperparameters of the narrowest width, over a grid of learning rates.
//!
//! ```text
//! cargo run --release --example width_transfer [-- --device flex|ndarray|wgpu]
//!     [--widths 64,128,256] [--lrs 1e-3,3e-3,1e-2,3e-2] [--steps N] [--batch N] [--weight-decay X]
//!     [--out results/width_transfer]
//! ```
//!
//! `plain` uses the same learning rate and weight decay at every width; `scaled` uses
//! `WidthScaledAdamWConfig::new(widths[0], d)`: matrix-like tensors at `lr·d₀/d` with decay
//! `λ·√(d/d₀)`. Both decay only the matrix-like tensors (attention and MLP matrices), so the
//! rule is the only difference; at the narrowest width the two are the same run. Heads grow with
//! the width at a fixed head dimension of 16. Writes `runs.csv` (validation loss per method,
//! width and learning rate), `spectra.csv` (σ_max of every matrix after training),
//! `gains.csv` (σ_max per layer type relative to the narrowest width, at each method's best
//! learning rate there), `loss_vs_lr.svg` and `sigma.svg` into `--out`, and prints the tables.

use std::fmt::Write as _;

use clap::Parser;
use scaleinv::models::cli::{
    DeviceArg, OutArg, default, non_negative, positive, positive_finite, write_files,
};
use scaleinv::models::lm_train::{LmSettings, train_lm};
use scaleinv::models::plot::{LinePlot, PALETTE, Series};
use scaleinv::models::progress::Progress;
use scaleinv::models::{CharCorpus, TinyLmConfig};
use scaleinv::{LayerSpectrum, PowerIteration, WidthScaledAdamWConfig, spectral_report};

const HEAD_DIM: usize = 16;
const METHODS: [&str; 2] = ["plain", "scaled"];

/// Learning-rate transfer across widths with width-scaled AdamW: a small transformer on
/// tiny-shakespeare at several widths and learning rates, with and without the scaling rule.
#[derive(Parser)]
#[command(mut_arg("out", default("results/width_transfer")))]
struct Args {
    #[command(flatten)]
    device: DeviceArg,
    /// Model widths, comma-separated, multiples of 16 (the head dimension); the first is the
    /// proxy width the hyperparameters are tuned at.
    #[arg(long, value_name = "WIDTHS", value_delimiter = ',', default_value = "64,128,256", value_parser = width)]
    widths: Vec<usize>,
    /// Peak learning rates, comma-separated.
    #[arg(long, value_name = "LRS", value_delimiter = ',', default_value = "1e-3,3e-3,1e-2,3e-2", value_parser = positive_finite)]
    lrs: Vec<f64>,
    /// Training steps per run.
    #[arg(long, value_name = "N", default_value = "200", value_parser = positive::<usize>)]
    steps: usize,
    /// Sequences per batch.
    #[arg(long, value_name = "N", default_value = "8", value_parser = positive::<usize>)]
    batch: usize,
    /// Decoupled weight decay λ at the proxy width.
    #[arg(long, value_name = "X", default_value = "0.1", value_parser = non_negative)]
    weight_decay: f64,
    #[command(flatten)]
    out: OutArg,
}

/// Value parser for a model width: a positive multiple of the head dimension.
fn width(value: &str) -> Result<usize, String> {
    positive::<usize>(value)
        .ok()
        .filter(|w| w % HEAD_DIM == 0)
        .ok_or(format!(
            "`{value}` is not a positive multiple of {HEAD_DIM}"
        ))
}

/// One training run.
struct Run {
    method: &'static str,
    width: usize,
    lr: f64,
    val_loss: f64,
    seconds: f64,
    spectra: Vec<LayerSpectrum>,
}

fn main() {
    let args = Args::parse();
    let device = args.device.device();
    let corpus = CharCorpus::load();
    let (train, val) = corpus.split(0.9);
    let settings = LmSettings {
        steps: args.steps,
        batch_size: args.batch,
        ..LmSettings::default()
    };
    let base = args.widths[0];
    println!(
        "tiny-shakespeare; widths {:?} (2 blocks, head dim {HEAD_DIM}), {} steps of {}x{}, lrs {:?}, λ {} tuned at width {base}; {}",
        args.widths,
        settings.steps,
        settings.batch_size,
        settings.seq_len,
        args.lrs,
        args.weight_decay,
        args.device.name
    );

    let mut runs: Vec<Run> = Vec::new();
    // At the proxy width one run serves both methods.
    let trained = (2 * args.widths.len() - 1) * args.lrs.len();
    let progress = Progress::new((trained * args.steps) as u64, "steps");
    for &width in &args.widths {
        for &lr in &args.lrs {
            for method in METHODS {
                // At the proxy width the rule changes nothing: one run serves both.
                if width == base && method == "scaled" {
                    let plain = runs.iter().find(|r| r.width == width && r.lr == lr);
                    let plain = plain.expect("the plain run comes first");
                    let copy = Run {
                        method,
                        spectra: plain.spectra.clone(),
                        ..*plain
                    };
                    runs.push(copy);
                    continue;
                }
                let proxy = if method == "plain" { width } else { base };
                let optim_config =
                    WidthScaledAdamWConfig::new(proxy, width).with_weight_decay(args.weight_decay);
                let autodiff = device.clone().autodiff();
                autodiff.seed(42);
                let model = TinyLmConfig::new(corpus.vocab_size())
                    .with_d_model(width)
                    .with_n_heads(width / HEAD_DIM)
                    .with_seq_len(settings.seq_len)
                    .init(&autodiff);
                let mut optim = optim_config.init_for(&model);
                let s = LmSettings {
                    peak_lr: lr,
                    ..settings.clone()
                };
                progress.set_message(format!("{method} width {width} lr {lr:.0e}"));
                let (model, run) =
                    train_lm(model, &mut optim, &train, &val, &s, &device, |_, _, _| {
                        progress.inc(1)
                    });
                progress.inc((s.steps - run.losses.len()) as u64);
                let spectra = spectral_report(&model, &PowerIteration::default());
                progress.println(format!(
                    "  {method:<6} width {width:>4} lr {lr:<7.0e} val loss {:.4}  {:.0} s",
                    run.val_loss, run.seconds
                ));
                runs.push(Run {
                    method,
                    width,
                    lr,
                    val_loss: run.val_loss,
                    seconds: run.seconds,
                    spectra,
                });
            }
        }
    }
    progress.finish();
    report(&args, &runs);
}

/// The learning rate with the lowest validation loss among `runs` of one method and width.
fn best_lr(runs: &[Run], method: &str, width: usize) -> Option<f64> {
    runs.iter()
        .filter(|r| r.method == method && r.width == width && r.val_loss.is_finite())
        .min_by(|a, b| a.val_loss.total_cmp(&b.val_loss))
        .map(|r| r.lr)
}

/// Mean σ_max per layer type of one run, in the run's order.
fn sigma_by_type(run: &Run) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64, usize)> = Vec::new();
    for s in &run.spectra {
        match out.iter_mut().find(|(t, _, _)| *t == s.layer_type) {
            Some((_, sum, n)) => {
                *sum += s.sigma_max;
                *n += 1;
            }
            None => out.push((s.layer_type.clone(), s.sigma_max, 1)),
        }
    }
    out.into_iter()
        .map(|(t, sum, n)| (t, sum / n as f64))
        .collect()
}

fn report(args: &Args, runs: &[Run]) {
    let base = args.widths[0];
    let mut runs_csv = String::from("method,width,lr,val_loss,seconds\n");
    let mut spectra_csv = String::from("method,width,lr,path,layer_type,sigma_max\n");
    for r in runs {
        let _ = writeln!(
            runs_csv,
            "{},{},{:e},{:.4},{:.1}",
            r.method, r.width, r.lr, r.val_loss, r.seconds
        );
        for s in &r.spectra {
            let _ = writeln!(
                spectra_csv,
                "{},{},{:e},{},{},{:.5}",
                r.method, r.width, r.lr, s.path, s.layer_type, s.sigma_max
            );
        }
    }

    // (b) Validation loss against the learning rate, per width.
    println!(
        "\nValidation loss (rows: method and width; columns: learning rate tuned at width {base}):\n"
    );
    let header: Vec<String> = args.lrs.iter().map(|lr| format!("{lr:.0e}")).collect();
    println!("| method | width | {} | best lr |", header.join(" | "));
    println!("|---|---|{}---|", "---|".repeat(args.lrs.len()));
    let mut loss_plot = LinePlot::new(
        "Validation loss against learning rate: width rule (solid), plain AdamW (dashed)",
        "log10(learning rate at the proxy width)",
        "validation loss",
    );
    for method in METHODS {
        for (i, &width) in args.widths.iter().enumerate() {
            let row: Vec<&Run> = runs
                .iter()
                .filter(|r| r.method == method && r.width == width)
                .collect();
            let cells: Vec<String> = row.iter().map(|r| format!("{:.4}", r.val_loss)).collect();
            let best = best_lr(runs, method, width).map_or("-".into(), |lr| format!("{lr:.0e}"));
            println!("| {method} | {width} | {} | {best} |", cells.join(" | "));
            loss_plot = loss_plot.with_series(Series {
                name: format!("{method} d={width}"),
                points: row
                    .iter()
                    .filter(|r| r.val_loss.is_finite())
                    .map(|r| (r.lr.log10(), r.val_loss))
                    .collect(),
                color: PALETTE[i % PALETTE.len()].into(),
                dashed: method == "plain",
            });
        }
    }

    // (a) σ_max per layer type across widths, at each method's best lr at the proxy width.
    let mut gains_csv = String::from("method,lr,layer_type,width,sigma_max,ratio_to_proxy\n");
    let mut sigma_plot = LinePlot::new(
        "Top singular value per layer type: width rule (solid), plain AdamW (dashed)",
        "width d_model",
        "mean σ_max over the blocks",
    );
    sigma_plot.log_y = true;
    println!(
        "\nσ_max per layer type, relative to width {base} (each method at its best lr there):\n"
    );
    let others: Vec<String> = args.widths[1..].iter().map(|w| format!("d={w}")).collect();
    println!(
        "| method | layer type | σ_max at d={base} | {} |",
        others.join(" | ")
    );
    println!("|---|---|---|{}", "---|".repeat(others.len()));
    for method in METHODS {
        let Some(lr) = best_lr(runs, method, base) else {
            continue;
        };
        let at = |width: usize| {
            runs.iter()
                .find(|r| r.method == method && r.width == width && r.lr == lr)
                .map(sigma_by_type)
                .unwrap_or_default()
        };
        let proxy = at(base);
        for (k, (layer_type, proxy_sigma)) in proxy.iter().enumerate() {
            let mut points = vec![(base as f64, *proxy_sigma)];
            let mut cells = Vec::new();
            for &width in &args.widths[1..] {
                let sigma = at(width)
                    .into_iter()
                    .find(|(t, _)| t == layer_type)
                    .map_or(f64::NAN, |(_, s)| s);
                points.push((width as f64, sigma));
                cells.push(format!("{:.2}×", sigma / proxy_sigma));
                let _ = writeln!(
                    gains_csv,
                    "{method},{lr:e},{layer_type},{width},{sigma:.5},{:.4}",
                    sigma / proxy_sigma
                );
            }
            println!(
                "| {method} | `{layer_type}` | {proxy_sigma:.3} | {} |",
                cells.join(" | ")
            );
            sigma_plot = sigma_plot.with_series(Series {
                name: format!("{method} {}", short(layer_type)),
                points,
                color: PALETTE[k % PALETTE.len()].into(),
                dashed: method == "plain",
            });
        }
    }

    write_files(
        &args.out.out,
        vec![
            ("runs.csv", runs_csv),
            ("spectra.csv", spectra_csv),
            ("gains.csv", gains_csv),
            ("loss_vs_lr.svg", loss_plot.to_svg()),
            ("sigma.svg", sigma_plot.to_svg()),
        ],
    );
}

/// `blocks.*.attn.query.linear.weight` → `attn.query`.
fn short(layer_type: &str) -> String {
    layer_type
        .trim_start_matches("blocks.*.")
        .trim_end_matches(".weight")
        .trim_end_matches(".linear")
        .to_string()
}
