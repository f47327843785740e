//! Which weights are scale-invariant, measured from the model itself, and what projecting
//! only those is worth against AdamP's per-step test.
//!
//! ```text
//! cargo run --release --example probe [-- --device flex|ndarray|wgpu] [--seeds N]
//!     [--epochs N] [--out results/probe]
//! ```
//!
//! 1. Probes the quickstart network (a BatchNorm CNN on the bundled digits) and the tiny
//!    pre-norm transformer of `scaleinv-models` on the bundled Shakespeare text at
//!    initialisation, and prints both tables.
//! 2. Trains the quickstart network with AdamP (per-step cosine test), with Adam projected
//!    only where the probe found invariance (`RadialProjectionConfig::try_init_from_probe`),
//!    and with AdamW (no projection), over `--seeds` seeds: the same weight decay (1e-2),
//!    ε = 1e-8 and learning-rate schedule. Prints which weights each projects (AdamP: the
//!    branch it took most often, sampled every 10 steps) and the test accuracies.
//!
//! Writes `digits_cnn.csv`, `tiny_lm.csv` (the probe's tables), `branches.csv` (AdamP's
//! branch counts per weight and seed) and `accuracy.csv` into `--out`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use burn::optim::AdamConfig;
use burn::tensor::Device;
use clap::Parser;
use scaleinv::models::cli::{
    DeviceArg, EpochsArg, OutArg, SeedsArg, default, mean_std, or_exit, write_files,
};
use scaleinv::models::progress::Progress;
use scaleinv::models::train::{TrainSettings, train_digits_with};
use scaleinv::models::{CharCorpus, Digits, DigitsCnn, DigitsCnnConfig, TinyLmConfig};
use scaleinv::{
    AdamPConfig, DiagnosticsTracker, ProbeReport, ProjectionBranch, ProjectionView,
    RadialProjectionConfig, ScaleProbe,
};

/// Which weights are scale-invariant, found by the probe; then AdamP, Adam projected where the
/// probe says, and AdamW trained on the bundled digits over several seeds.
#[derive(Parser)]
#[command(
    mut_arg("seeds", default("3")),
    mut_arg("epochs", default("12")),
    mut_arg("out", default("results/probe"))
)]
struct Args {
    #[command(flatten)]
    device: DeviceArg,
    #[command(flatten)]
    seeds: SeedsArg,
    #[command(flatten)]
    epochs: EpochsArg,
    #[command(flatten)]
    out: OutArg,
}

/// The probe of the quickstart network at initialisation on 256 training digits.
fn probe_digits_cnn(device: &Device, train: &Digits) -> ProbeReport {
    let device = device.clone().autodiff();
    device.seed(0);
    probe_digits_cnn_model(&DigitsCnnConfig::default().init(&device), train)
}

/// The probe of the tiny transformer on 16 windows of 64 characters.
fn probe_tiny_lm(device: &Device) -> ProbeReport {
    let device = device.clone().autodiff();
    device.seed(0);
    let corpus = CharCorpus::load();
    let config = TinyLmConfig::new(corpus.vocab_size());
    let model = config.init(&device);
    let (inputs, targets) = corpus.batch(0, 16, config.seq_len, &device);
    or_exit(
        ScaleProbe::new()
            .run(&model, |m: &scaleinv::models::TinyLm| {
                m.loss(inputs.clone(), targets.clone())
            })
            .map_err(|e| e.to_string()),
    )
}

const OPTIMIZERS: [&str; 3] = ["adamp", "adam+probe", "adamw"];
const WEIGHT_DECAY: f64 = 1e-2;

fn main() {
    let args = Args::parse();
    let device = args.device.device();
    let digits = Digits::load().expect("the embedded digits data decodes");
    let (train, test) = digits.split(0.2);

    let start = Instant::now();
    let cnn = probe_digits_cnn(&device, &train);
    println!(
        "== quickstart network (BatchNorm CNN), 256 digits ({:.1}s)\n{cnn}",
        start.elapsed().as_secs_f64()
    );
    let start = Instant::now();
    let lm = probe_tiny_lm(&device);
    println!(
        "== tiny pre-norm transformer, 16×64 characters ({:.1}s)\n{lm}",
        start.elapsed().as_secs_f64()
    );

    // AdamP, Adam projected where the probe says, and AdamW, on the same seeds.
    let settings = TrainSettings {
        epochs: args.epochs.epochs,
        ..TrainSettings::default()
    };
    let adamp = AdamPConfig::new().with_weight_decay(WEIGHT_DECAY);
    let projection = RadialProjectionConfig::new().with_weight_decay(WEIGHT_DECAY);
    let adam = || AdamConfig::new().with_epsilon(1e-8).build();
    let mut accuracy: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut branches_csv = String::from("seed,path,none,channel,layer\n");
    let mut adamp_counts: BTreeMap<String, [usize; 3]> = BTreeMap::new();
    let progress = Progress::new(args.seeds.seeds * OPTIMIZERS.len() as u64, "runs");
    for seed in 0..args.seeds.seeds {
        let settings = TrainSettings { seed, ..settings };
        for name in OPTIMIZERS {
            progress.set_message(format!("{name}, seed {seed}"));
            let start = Instant::now();
            let mut tracker = DiagnosticsTracker::new(10).with_sigma(None);
            let observer = tracker.observer().clone();
            let (_, last) = train_digits_with(
                &device,
                |model| match name {
                    "adamp" => adamp.init_observed(model, &observer),
                    "adam+probe" => {
                        // Probed on the freshly initialised model and its first batch of 256.
                        let report = probe_digits_cnn_model(model, &train);
                        or_exit(
                            projection
                                .try_init_from_probe(adam(), &report)
                                .map_err(|e| e.to_string()),
                        )
                    }
                    _ => projection
                        .clone()
                        .with_view(ProjectionView::Off)
                        .init_for(adam(), model),
                },
                &train,
                &test,
                settings,
                |_| {},
                &mut tracker,
            );
            progress.println(format!(
                "seed {seed}  {name:<11} test accuracy {:.4}  ({:.1}s)",
                last.test_accuracy,
                start.elapsed().as_secs_f64()
            ));
            progress.inc(1);
            accuracy.entry(name).or_default().push(last.test_accuracy);
            for (path, counts) in tracker.branch_counts() {
                let _ = writeln!(
                    branches_csv,
                    "{seed},{path},{},{},{}",
                    counts[0], counts[1], counts[2]
                );
                let total = adamp_counts.entry(path).or_default();
                for (t, c) in total.iter_mut().zip(counts) {
                    *t += c;
                }
            }
        }
    }

    progress.finish();

    println!("\n== which weights are projected (rank ≥ 2)");
    println!(
        "{:<20} {:<10} AdamP's branch (sampled steps: none / channel / layer)",
        "weight", "probe"
    );
    for entry in cnn.entries.iter().filter(|e| e.shape.len() >= 2) {
        let c = adamp_counts.get(&entry.path).copied().unwrap_or_default();
        println!(
            "{:<20} {:<10} {} / {} / {}  (mostly {})",
            entry.path,
            entry.invariance.name(),
            c[0],
            c[1],
            c[2],
            majority(c).name()
        );
    }

    println!("\n== test accuracy over {} seeds", args.seeds.seeds);
    let mut accuracy_csv = String::from("optimizer,seed,test_accuracy\n");
    for name in OPTIMIZERS {
        let values = &accuracy[name];
        let (mean, std) = mean_std(values);
        println!("{name:<11} {mean:.4} ± {std:.4}   {values:.4?}");
        for (seed, v) in values.iter().enumerate() {
            let _ = writeln!(accuracy_csv, "{name},{seed},{v}");
        }
    }
    write_files(
        &args.out.out,
        vec![
            ("digits_cnn.csv", cnn.to_csv()),
            ("tiny_lm.csv", lm.to_csv()),
            ("branches.csv", branches_csv),
            ("accuracy.csv", accuracy_csv),
        ],
    );
}

/// The probe of `model` itself (the model a run starts from) on 256 training digits.
fn probe_digits_cnn_model(model: &DigitsCnn, train: &Digits) -> ProbeReport {
    let device = model.head.weight.val().device();
    let (images, labels) = train
        .select(&(0..256.min(train.len())).collect::<Vec<_>>())
        .to_tensors(&device);
    or_exit(
        ScaleProbe::new()
            .run(model, |m: &DigitsCnn| {
                m.loss(images.clone(), labels.clone())
            })
            .map_err(|e| e.to_string()),
    )
}

fn majority(counts: [usize; 3]) -> ProjectionBranch {
    let code = (0..3).max_by_key(|&i| counts[i]).unwrap_or(0);
    ProjectionBranch::from_code(code as i64).unwrap_or(ProjectionBranch::None)
}
