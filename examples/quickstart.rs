//! Trains a small BatchNorm CNN on the bundled 8×8 digits with AdamP and prints its test
//! accuracy.
//!
//! ```text
//! cargo run --release --example quickstart [-- --device flex|ndarray|wgpu] [--epochs N]
//! ```

use std::time::Instant;

use scaleinv::AdamPConfig;
use scaleinv::ChannelAxes;
use scaleinv::models::cli::or_exit;
use scaleinv::models::device::device_from_name;
use scaleinv::models::train::{TrainSettings, train_digits};
use scaleinv::models::{Digits, DigitsCnnConfig};

struct Args {
    device: String,
    epochs: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        device: "flex".into(),
        epochs: TrainSettings::default().epochs,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--device" => args.device = value()?,
            "--epochs" => {
                let v = value()?;
                args.epochs = v
                    .parse()
                    .map_err(|_| format!("--epochs: `{v}` is not a count"))?;
            }
            "-h" | "--help" => {
                println!("usage: quickstart [--device flex|ndarray|wgpu] [--epochs N]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    Ok(args)
}

fn main() {
    let args = or_exit(parse_args());
    let device = or_exit(device_from_name(&args.device));

    let digits = Digits::load().expect("the embedded digits data decodes");
    let (train, test) = digits.split(0.2);
    println!(
        "digits: {} train / {} test images, device {}",
        train.len(),
        test.len(),
        args.device
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
        epochs: args.epochs,
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
