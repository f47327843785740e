//! Plasticity over a sequence of tasks: the same MLP learns one task after another, and the
//! accuracy it still reaches on each new task shows whether it keeps its ability to learn.
//!
//! ```text
//! cargo run --release --example plasticity [-- --device flex|ndarray|wgpu] [--tasks N]
//!     [--steps N] [--samples N] [--batch N] [--lr X] [--hidden 256,256]
//!     [--kind random-labels|permuted-pixels] [--variants adam,adam+ln,nap,nap-free-head]
//!     [--seed S] [--out results/plasticity]
//! ```
//!
//! The variants share the tasks, the batches and (where their layers coincide) the initial
//! weights: `adam` (the plain MLP with Adam), `adam+ln` (LayerNorm before each ReLU, Adam),
//! `nap` (LayerNorm before each ReLU, Adam inside Normalize-and-Project with its defaults:
//! every weight matrix projected, the output layer's included) and `nap-free-head` (the same,
//! the output layer left to Adam). Writes `tasks.csv` (accuracy, loss and weight norms per
//! task), `norms.csv` (every parameter's norm and Adam-type effective learning rate `lr / ‖W‖`
//! before the first task and after each), `accuracy.svg` and `weight_norm.svg` into `--out`, and
//! prints the table.

use std::fmt::Write as _;
use std::time::Instant;

use burn::optim::{AdamConfig, ModuleOptimizer};
use clap::Parser;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use scaleinv::models::cli::{DeviceArg, OutArg, default, positive, positive_finite, write_files};
use scaleinv::models::plasticity::{SequenceSettings, TaskKind, make_tasks, train_task};
use scaleinv::models::plot::{LinePlot, PALETTE, Series};
use scaleinv::models::progress::Progress;
use scaleinv::models::{Digits, NormKind, NormMlp, NormMlpConfig};
use scaleinv::{NapConfig, StepKind, WeightNorm, weight_norms};

const VARIANTS: [&str; 4] = ["adam", "adam+ln", "nap", "nap-free-head"];

/// Plasticity over a sequence of tasks: the same MLP learns one task after another, with Adam,
/// Adam and LayerNorm, or NaP.
#[derive(Parser)]
#[command(mut_arg("out", default("results/plasticity")))]
struct Args {
    #[command(flatten)]
    device: DeviceArg,
    /// Tasks in the sequence.
    #[arg(long, value_name = "N", default_value_t = SequenceSettings::default().tasks, value_parser = positive::<usize>)]
    tasks: usize,
    /// Optimizer steps per task.
    #[arg(long, value_name = "N", default_value_t = SequenceSettings::default().steps_per_task, value_parser = positive::<usize>)]
    steps: usize,
    /// Images per task (the first N of the bundled digits).
    #[arg(long, value_name = "N", default_value_t = SequenceSettings::default().samples, value_parser = positive::<usize>)]
    samples: usize,
    /// Images per step.
    #[arg(long, value_name = "N", default_value_t = SequenceSettings::default().batch_size, value_parser = positive::<usize>)]
    batch: usize,
    /// Learning rate (constant).
    #[arg(long, value_name = "X", default_value_t = SequenceSettings::default().lr, value_parser = positive_finite)]
    lr: f64,
    /// Hidden layer widths, comma-separated.
    #[arg(long, value_name = "WIDTHS", value_delimiter = ',', default_value = "256,256", value_parser = positive::<usize>)]
    hidden: Vec<usize>,
    /// How each task differs from the previous one.
    #[arg(
        long,
        default_value = "random-labels",
        value_parser = PossibleValuesParser::new(["random-labels", "permuted-pixels"])
            .map(|name| TaskKind::from_name(&name).expect("a possible value"))
    )]
    kind: TaskKind,
    /// The variants compared, comma-separated.
    #[arg(
        long,
        value_name = "NAMES",
        value_delimiter = ',',
        default_value = "adam,adam+ln,nap,nap-free-head",
        value_parser = PossibleValuesParser::new(VARIANTS)
    )]
    variants: Vec<String>,
    /// Seed of the labels, permutations and batches.
    #[arg(long, default_value_t = SequenceSettings::default().seed)]
    seed: u64,
    #[command(flatten)]
    out: OutArg,
}

impl Args {
    fn settings(&self) -> SequenceSettings {
        SequenceSettings {
            kind: self.kind,
            tasks: self.tasks,
            samples: self.samples,
            steps_per_task: self.steps,
            batch_size: self.batch,
            lr: self.lr,
            seed: self.seed,
        }
    }
}

/// The network and optimizer of a variant. Adam uses the reference ε = 1e-8.
fn variant(
    name: &str,
    config: &NormMlpConfig,
    device: &burn::tensor::Device,
) -> (NormMlp, ModuleOptimizer) {
    let adam = AdamConfig::new().with_epsilon(1e-8);
    let norm = if name == "adam" {
        NormKind::None
    } else {
        NormKind::LayerNorm
    };
    device.seed(7);
    let model = config.clone().with_norm(norm).init(device);
    let optim = match name {
        "nap" => NapConfig::new().init_for(adam.build(), &model),
        // The output layer left free, as the NaP spec's reading suggests for a layer that no
        // normalization follows.
        "nap-free-head" => NapConfig::new()
            .with_free(vec!["head".into()])
            .init_for(adam.build(), &model),
        _ => adam.init(),
    };
    (model, optim)
}

/// Results of one variant: per task (accuracy, loss, seconds), and the parameter norms before
/// the first task and after each.
struct Run {
    name: String,
    results: Vec<(f64, f64, f64)>,
    norms: Vec<Vec<WeightNorm>>,
    seconds: f64,
}

/// `√(Σ ‖W‖²)` over the weight matrices under `prefix` (`hidden.`: the ones a normalization
/// follows; `head.`: the output layer).
fn weight_norm(norms: &[WeightNorm], prefix: &str) -> f64 {
    norms
        .iter()
        .filter(|w| w.path.starts_with(prefix) && w.path.ends_with(".weight"))
        .map(|w| w.norm * w.norm)
        .sum::<f64>()
        .sqrt()
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    sum / n.max(1) as f64
}

fn main() {
    let args = Args::parse();
    let device = args.device.device();
    let s = &args.settings();
    let data = Digits::load().expect("the bundled digits decode");
    let autodiff = device.clone().autodiff();
    let tasks = make_tasks(&data, s, &autodiff);
    let config = NormMlpConfig::new(64, args.hidden.clone(), 10);
    println!(
        "{} tasks of {} on {} digits; MLP 64-{}-10; {} steps of {} per task, lr {:e}; {}",
        s.tasks,
        s.kind.name(),
        s.samples.min(data.len()),
        args.hidden
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join("-"),
        s.steps_per_task,
        s.batch_size,
        s.lr,
        args.device.name
    );

    let mut runs = Vec::new();
    let progress = Progress::new((args.variants.len() * s.tasks) as u64, "tasks");
    for name in &args.variants {
        progress.set_message(name.clone());
        let start = Instant::now();
        let (mut model, mut optim) = variant(name, &config, &autodiff);
        let mut run = Run {
            name: name.clone(),
            results: Vec::new(),
            norms: vec![weight_norms(&model)],
            seconds: 0.0,
        };
        for task in &tasks {
            let (next, result) = train_task(model, &mut optim, task, s, &mut |m| m);
            model = next;
            let norms = weight_norms(&model);
            progress.println(format!(
                "  {name:<8} task {:>3}/{}: accuracy {:.3}  loss {:.3}  hidden weight norm {:.2}  {:.1} s",
                task.index + 1,
                s.tasks,
                result.accuracy,
                result.loss,
                weight_norm(&norms, "hidden."),
                result.seconds
            ));
            progress.inc(1);
            run.results
                .push((result.accuracy, result.loss, result.seconds));
            run.norms.push(norms);
        }
        run.seconds = start.elapsed().as_secs_f64();
        runs.push(run);
    }
    progress.finish();

    write_outputs(&args, &runs);
}

fn write_outputs(args: &Args, runs: &[Run]) {
    let s = &args.settings();
    let late = (s.tasks / 4).max(1);
    println!(
        "\n| variant | task 1 accuracy | mean of the last {late} tasks | last task | hidden ‖W‖ before → after | output ‖W‖ before → after | seconds |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut tasks_csv =
        String::from("variant,task,accuracy,loss,seconds,hidden_weight_norm,output_weight_norm\n");
    let mut norms_csv = String::from("variant,after_task,path,rank,norm,effective_lr_adam\n");
    let mut accuracy_plot = LinePlot::new(
        &format!("Accuracy reached on each new task ({})", s.kind.name()),
        "task",
        "accuracy after the task's last step",
    );
    accuracy_plot.y_range = Some((0.0, 1.0));
    let mut norm_plot = LinePlot::new(
        "Weight norms after each task: hidden layers (solid), output layer (dashed)",
        "task (0 = initialisation)",
        "√(Σ ‖W‖²)",
    );
    norm_plot.log_y = true;
    for (i, run) in runs.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let accuracies: Vec<f64> = run.results.iter().map(|r| r.0).collect();
        let hidden: Vec<f64> = run
            .norms
            .iter()
            .map(|n| weight_norm(n, "hidden."))
            .collect();
        let head: Vec<f64> = run.norms.iter().map(|n| weight_norm(n, "head.")).collect();
        println!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.1} → {:.1} | {:.1} → {:.1} | {:.0} |",
            run.name,
            accuracies[0],
            mean(accuracies[accuracies.len() - late..].iter().copied()),
            accuracies[accuracies.len() - 1],
            hidden[0],
            hidden[hidden.len() - 1],
            head[0],
            head[head.len() - 1],
            run.seconds
        );
        for (task, (accuracy, loss, seconds)) in run.results.iter().enumerate() {
            let _ = writeln!(
                tasks_csv,
                "{},{},{accuracy:.4},{loss:.4},{seconds:.2},{:.4},{:.4}",
                run.name,
                task + 1,
                hidden[task + 1],
                head[task + 1]
            );
        }
        for (after, norms) in run.norms.iter().enumerate() {
            for w in norms {
                let _ = writeln!(
                    norms_csv,
                    "{},{after},{},{},{:.6},{:.6e}",
                    run.name,
                    w.path,
                    w.rank,
                    w.norm,
                    w.effective_lr(s.lr, StepKind::Adam)
                );
            }
        }
        accuracy_plot = accuracy_plot.with_series(Series {
            name: run.name.clone(),
            points: accuracies
                .iter()
                .enumerate()
                .map(|(t, &a)| ((t + 1) as f64, a))
                .collect(),
            color: color.into(),
            dashed: false,
        });
        let trajectory = |norms: &[f64]| {
            norms
                .iter()
                .enumerate()
                .map(|(t, &n)| (t as f64, n))
                .collect()
        };
        norm_plot = norm_plot
            .with_series(Series {
                name: run.name.clone(),
                points: trajectory(&hidden),
                color: color.into(),
                dashed: false,
            })
            .with_series(Series {
                name: format!("{} (output)", run.name),
                points: trajectory(&head),
                color: color.into(),
                dashed: true,
            });
    }
    write_files(
        &args.out.out,
        vec![
            ("tasks.csv", tasks_csv),
            ("norms.csv", norms_csv),
            ("accuracy.svg", accuracy_plot.to_svg()),
            ("weight_norm.svg", norm_plot.to_svg()),
        ],
    );
}
