//! Trains a small BatchNorm CNN on the bundled 8×8 digits with AdamP and prints its test
//! accuracy.
//!
//! ```text
//! cargo run --release --example quickstart [-- --device flex|ndarray|wgpu] [--epochs N]
//! ```

use std::time::Instant;

use clap::Parser;

use scaleinv::AdamPConfig;
use scaleinv::ChannelAxes;
use scaleinv::models::cli::{DeviceArg, EpochsArg, default};
use scaleinv::models::train::{TrainSettings, train_digits};
use scaleinv::models::{Digits, DigitsCnnConfig};

/// Trains a small BatchNorm CNN on the bundled 8×8 digits with AdamP and prints its test
/// accuracy.
#[derive(Parser)]
#[command(mut_arg("epochs", default("12")))]
struct Args {
    #[command(flatten)]
    device: DeviceArg,
    #[command(flatten)]
    epochs: EpochsArg,
}

fn main() {
    let args = Args::parse();
    let device = args.device.device();

    let digits = Digits::load().expect("the embedded digits data decodes");
    let (train, test) = digits.split(0.2);
    println!(
        "digits: {} train / {} test images, device {}",
        train.len(),
        test.len(),
        args.device.name
    );

    // The channel axis AdamP uses for each weight (Burn's Linear stores [d_input, d_output]).
    let axes = ChannelAxes::infer(&DigitsCnnConfig::default().init(&device));
    for p in axes.iter() {
        println!(
            "  {:<20} {:<8} rank {}  channel axis {}",
            p.path, p.module_type, p.rank, p.axis
        );
    }

    let settings = TrainSettings {
        epochs: args.epochs.epochs,
        ..TrainSettings::default()
    };
    let config = AdamPConfig::new().with_weight_decay(1e-2);
    let start = Instant::now();
    let (_, last) = train_digits(
        &device,
        |model| config.init_for(model),
        &train,
        &test,
        settings,
        |r| {
            println!(
                "epoch {:>2}/{}  loss {:.4}  test accuracy {:.4}  ({:.1}s)",
                r.epoch, settings.epochs, r.train_loss, r.test_accuracy, r.seconds
            )
        },
    );
    println!("trained in {:.1}s", start.elapsed().as_secs_f64());
    println!("test accuracy: {:.4}", last.test_accuracy);
}
