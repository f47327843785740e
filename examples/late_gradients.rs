//! Why gradients rise near the end of training (Defazio et al. 2025), at a small scale: a
//! LayerNorm MLP on the bundled digits, a cosine schedule to zero and weight decay, AdamW
//! against AdamC (the weights that feed a LayerNorm found by `init_for`), three seeds each.
//!
//! ```text
//! cargo run --release --example late_gradients [-- --steps N] [--lr 3e-3] [--wd 0.5]
//!     [--seeds 3] [--device flex|ndarray|wgpu] [--out results/late_gradients]
//! ```
//!
//! Both optimizers see the same initial weights and batches for a seed. The global gradient
//! norm is read every step (this example's only host reads). The rise is the mean gradient norm
//! over the last 5 % of the steps divided by its mean over the steps at 75–80 % of the run,
//! where the schedule falls from 0.15 to 0.10 of its peak. Writes `runs.csv`, `curves.csv` and
//! `grad_norm.svg` into `--out` (`curves.csv`: every 10th step), and prints the table.

use std::fmt::Write as _;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor};
use clap::Parser;
use scaleinv::models::cli::{
    DeviceArg, OutArg, SeedsArg, default, mean_std, or_exit, positive_finite, write_files,
};
use scaleinv::models::lm_train::warmup_cosine_lr;
use scaleinv::models::plot::{LinePlot, PALETTE, Series};
use scaleinv::models::progress::Progress;
use scaleinv::models::rng::SplitMix64;
use scaleinv::models::{Digits, NormMlp, NormMlpConfig};
use scaleinv::{AdamCConfig, global_norm};

/// AdamW against AdamC on a LayerNorm MLP trained to the end of a cosine schedule: the
/// gradient norm over the last steps, over several seeds.
#[derive(Parser)]
#[command(
    mut_arg("seeds", default("3")),
    mut_arg("out", default("results/late_gradients"))
)]
struct Args {
    /// Training steps per run (at least 40).
    #[arg(long, value_name = "N", default_value = "10000", value_parser = steps)]
    steps: usize,
    /// Peak learning rate of the warm-up + cosine schedule (to 0).
    #[arg(long, value_name = "X", default_value = "3e-3", value_parser = positive_finite)]
    lr: f64,
    /// Decoupled weight decay λ.
    #[arg(long, value_name = "X", default_value = "0.5", value_parser = positive_finite)]
    wd: f64,
    #[command(flatten)]
    seeds: SeedsArg,
    #[command(flatten)]
    device: DeviceArg,
    #[command(flatten)]
    out: OutArg,
}

/// Value parser for `--steps`: at least 40 (the table averages over the last 5 %).
fn steps(value: &str) -> Result<usize, String> {
    value
        .parse::<usize>()
        .ok()
        .filter(|&n| n >= 40)
        .ok_or(format!("`{value}` is not a step count of at least 40"))
}

const BATCH: usize = 64;
const HIDDEN: [usize; 3] = [128, 128, 128];

/// The two optimizers: AdamW (torch's ε 1e-8) and AdamC with the same λ, its normalized
/// weights found by the layer-type rule and its peak the schedule's.
fn optimizer(name: &str, model: &NormMlp, args: &Args) -> ModuleOptimizer {
    match name {
        "adamw" => AdamWConfig::new()
            .with_epsilon(1e-8)
            .with_weight_decay(args.wd as f32)
            .init(),
        "adamc" => AdamCConfig::new()
            .with_weight_decay(args.wd)
            .with_peak_lr(Some(args.lr))
            .init_for(model),
        other => unreachable!("no optimizer {other}"),
    }
}

fn flat(images: Tensor<4>) -> Tensor<2> {
    let [n, _, h, w] = images.dims();
    images.reshape([n, h * w])
}

fn scalar(t: Tensor<1>) -> f64 {
    t.into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .map_or(f64::NAN, |v| v[0])
}

struct Run {
    losses: Vec<f64>,
    grad_norms: Vec<f64>,
    test_loss: f64,
    test_accuracy: f64,
}

fn train(
    name: &str,
    seed: u64,
    data: (&Digits, &Digits),
    args: &Args,
    device: &Device,
    progress: &Progress,
) -> Run {
    let (train, test) = data;
    let autodiff = device.clone().autodiff();
    autodiff.seed(seed);
    let mut model =
        NormMlpConfig::new(train.side * train.side, HIDDEN.to_vec(), 10).init(&autodiff);
    let mut optim = optimizer(name, &model, args);
    let mut rng = SplitMix64(seed);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut cursor = order.len();
    let warmup = args.steps / 50;
    let (mut losses, mut grad_norms) = (Vec::new(), Vec::new());
    for step in 0..args.steps {
        if cursor + BATCH > order.len() {
            rng.shuffle(&mut order);
            cursor = 0;
        }
        let (x, y) = train
            .select(&order[cursor..cursor + BATCH])
            .to_tensors(&autodiff);
        cursor += BATCH;
        let loss = model.loss(flat(x), y);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let norm = global_norm(&model, &grads).map_or(f64::NAN, scalar);
        losses.push(scalar(loss.detach()));
        grad_norms.push(norm);
        let lr = warmup_cosine_lr(args.lr, step, args.steps, warmup, 0.0);
        model = optim.step(lr, model, grads);
        progress.inc(1);
    }
    let model = model.valid();
    let (x, y): (Tensor<4>, Tensor<1, Int>) = test.to_tensors(device);
    let x = flat(x);
    Run {
        losses,
        grad_norms,
        test_loss: scalar(model.loss(x.clone(), y.clone())),
        test_accuracy: scalar(model.accuracy(x, y)),
    }
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// Mean norm over the last 5 % of the steps, divided by the mean over 75–80 %.
fn rise(norms: &[f64]) -> f64 {
    let n = norms.len();
    mean(&norms[n * 95 / 100..]) / mean(&norms[n * 75 / 100..n * 80 / 100])
}

fn main() {
    let args = Args::parse();
    let device = args.device.device();
    let digits = or_exit(Digits::load().map_err(|e| e.to_string()));
    let (train_set, test_set) = digits.split(0.2);
    println!(
        "digits: {} train / {} test; MLP {:?} with LayerNorm; {} steps of {BATCH}, lr {} cosine to 0, λ {}; {} seeds on {}",
        train_set.len(),
        test_set.len(),
        HIDDEN,
        args.steps,
        args.lr,
        args.wd,
        args.seeds.seeds,
        args.device.name
    );
    let probe_model = NormMlpConfig::new(64, HIDDEN.to_vec(), 10).init(&device);
    println!(
        "AdamC's normalized weights (init_for): {:?}",
        AdamCConfig::new()
            .normalized_paths(&probe_model)
            .unwrap_or_default()
    );

    let names = ["adamw", "adamc"];
    let mut runs: Vec<(&str, u64, Run)> = Vec::new();
    let runs_total = names.len() as u64 * args.seeds.seeds;
    let progress = Progress::new(runs_total * args.steps as u64, "steps");
    for name in names {
        for seed in 0..args.seeds.seeds {
            progress.set_message(format!("{name}, seed {seed}"));
            let run = train(
                name,
                seed,
                (&train_set, &test_set),
                &args,
                &device,
                &progress,
            );
            progress.println(format!(
                "{name:<6} seed {seed}: final train loss {:.4}  test loss {:.4}  test accuracy {:.4}  grad-norm rise (last 5 % / 75–80 %) {:.2}",
                mean(&run.losses[run.losses.len() * 95 / 100..]),
                run.test_loss,
                run.test_accuracy,
                rise(&run.grad_norms)
            ));
            runs.push((name, seed, run));
        }
    }
    progress.finish();

    let mut table = String::from(
        "optimizer,seed,final_train_loss,test_loss,test_accuracy,grad_norm_75_80,grad_norm_last_5,rise\n",
    );
    let mut curves = String::from("optimizer,seed,step,loss,grad_norm\n");
    for (name, seed, run) in &runs {
        let n = run.grad_norms.len();
        let _ = writeln!(
            table,
            "{name},{seed},{:.4},{:.4},{:.4},{:.4},{:.4},{:.3}",
            mean(&run.losses[n * 95 / 100..]),
            run.test_loss,
            run.test_accuracy,
            mean(&run.grad_norms[n * 75 / 100..n * 80 / 100]),
            mean(&run.grad_norms[n * 95 / 100..]),
            rise(&run.grad_norms)
        );
        // Every 10th step (the table and the plot use every step).
        for (step, (loss, norm)) in run.losses.iter().zip(&run.grad_norms).enumerate() {
            if step % 10 == 0 {
                let _ = writeln!(curves, "{name},{seed},{step},{loss},{norm}");
            }
        }
    }
    println!("\nmean ± std over {} seeds:", args.seeds.seeds);
    for name in names {
        let of = |f: &dyn Fn(&Run) -> f64| {
            let values: Vec<f64> = runs
                .iter()
                .filter(|r| r.0 == name)
                .map(|r| f(&r.2))
                .collect();
            mean_std(&values)
        };
        let (rise_m, rise_s) = of(&|r| rise(&r.grad_norms));
        let (acc_m, acc_s) = of(&|r| r.test_accuracy);
        let (loss_m, loss_s) = of(&|r| r.test_loss);
        println!(
            "{name:<6} grad-norm rise {rise_m:.2} ± {rise_s:.2}  test accuracy {acc_m:.4} ± {acc_s:.4}  test loss {loss_m:.4} ± {loss_s:.4}"
        );
    }

    let mut plot = LinePlot::new(
        "gradient norm, cosine to 0 (seed mean)",
        "step",
        "global ‖g‖ (moving average of 50, log scale)",
    );
    plot.log_y = true;
    for (i, name) in names.iter().enumerate() {
        let seeds: Vec<&Run> = runs.iter().filter(|r| r.0 == *name).map(|r| &r.2).collect();
        let averaged: Vec<f64> = (0..args.steps)
            .map(|s| mean(&seeds.iter().map(|r| r.grad_norms[s]).collect::<Vec<_>>()))
            .collect();
        let window = 50;
        let points = (0..averaged.len())
            .step_by(10)
            .map(|s| {
                let from = s.saturating_sub(window - 1);
                (s as f64, mean(&averaged[from..=s]))
            })
            .collect();
        plot = plot.with_series(Series {
            name: if *name == "adamw" {
                "AdamW".into()
            } else {
                "AdamC".into()
            },
            points,
            color: PALETTE[i].into(),
            dashed: *name == "adamw",
        });
    }
    write_files(
        &args.out.out,
        vec![
            ("runs.csv", table),
            ("curves.csv", curves),
            ("grad_norm.svg", plot.to_svg()),
        ],
    );
}
