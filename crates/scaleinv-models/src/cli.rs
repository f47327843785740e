//! What the examples share: their common command-line arguments (defined once, flattened into
//! each example's `clap` parser), value parsers, writing result files and summarising runs over
//! seeds.
//!
//! ```
//! use clap::Parser;
//! use scaleinv_models::cli::{DeviceArg, EpochsArg, default};
//!
//! /// Trains something.
//! #[derive(Parser)]
//! #[command(mut_arg("epochs", default("12")))]
//! struct Args {
//!     #[command(flatten)]
//!     device: DeviceArg,
//!     #[command(flatten)]
//!     epochs: EpochsArg,
//! }
//!
//! let args = Args::try_parse_from(["example", "--epochs", "3"]).unwrap();
//! assert_eq!(args.epochs.epochs, 3);
//! assert!(Args::try_parse_from(["example", "--epochs", "0"]).is_err());
//! ```

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use clap::Arg;

use crate::device::{available_backends, device_from_name};

/// `--device NAME`: the backend to run on.
#[derive(clap::Args, Debug, Clone)]
pub struct DeviceArg {
    /// Backend to run on: flex or ndarray (CPU), wgpu (GPU); each needs its cargo feature.
    #[arg(
        long = "device",
        value_name = "NAME",
        default_value = default_backend(),
        value_parser = backend
    )]
    pub name: String,
}

impl DeviceArg {
    /// The device named (checked when the arguments were parsed).
    pub fn device(&self) -> Device {
        device_from_name(&self.name).expect("--device was checked when parsed")
    }
}

/// `--device NAME[,NAME…]`: the backends to run on, in order.
#[derive(clap::Args, Debug, Clone)]
pub struct DevicesArg {
    /// Backends to run on, comma-separated: flex, ndarray (CPU), wgpu (GPU).
    #[arg(
        long = "device",
        value_name = "NAMES",
        value_delimiter = ',',
        default_value = default_backend(),
        value_parser = backend
    )]
    pub names: Vec<String>,
}

/// `--epochs N`: passes over the training data. Each example sets its default with
/// `#[command(mut_arg("epochs", default("N")))]`.
#[derive(clap::Args, Debug, Clone)]
pub struct EpochsArg {
    /// Passes over the training data.
    #[arg(long, value_name = "N", value_parser = positive::<usize>)]
    pub epochs: usize,
}

/// `--seeds N`: independent runs, seeds `0..N`. Each example sets its default with
/// `#[command(mut_arg("seeds", default("N")))]`.
#[derive(clap::Args, Debug, Clone)]
pub struct SeedsArg {
    /// Independent runs per configuration, with seeds 0..N.
    #[arg(long, value_name = "N", value_parser = positive::<u64>)]
    pub seeds: u64,
}

/// `--out DIR`: where result files go. Each example sets its default with
/// `#[command(mut_arg("out", default("results/NAME")))]`.
#[derive(clap::Args, Debug, Clone)]
pub struct OutArg {
    /// Folder for the result files (CSV and SVG); created if needed.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Gives a shared argument its default value in one example:
/// `#[command(mut_arg("epochs", default("12")))]`.
pub fn default(value: &'static str) -> impl FnOnce(Arg) -> Arg {
    move |arg| arg.default_value(value).required(false)
}

/// The first backend compiled in (flex, else ndarray, else wgpu).
pub fn default_backend() -> &'static str {
    available_backends().first().copied().unwrap_or("flex")
}

/// Value parser for a backend name: one of the backends compiled in.
pub fn backend(name: &str) -> Result<String, String> {
    device_from_name(name).map(|_| name.to_string())
}

/// Value parser for a positive number.
pub fn positive<T: std::str::FromStr + PartialOrd + Default>(value: &str) -> Result<T, String> {
    value
        .parse::<T>()
        .ok()
        .filter(|x| *x > T::default())
        .ok_or(format!("`{value}` is not a positive number"))
}

/// Value parser for a finite positive number (a learning rate, a scale).
pub fn positive_finite(value: &str) -> Result<f64, String> {
    positive::<f64>(value)
        .ok()
        .filter(|x| x.is_finite())
        .ok_or(format!("`{value}` is not a finite positive number"))
}

/// Value parser for a finite number ≥ 0 (a weight decay).
pub fn non_negative(value: &str) -> Result<f64, String> {
    value
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x >= 0.0)
        .ok_or(format!("`{value}` is not a finite number ≥ 0"))
}

/// The value, or exits with status 1 after printing `error: {message}` (a failure at run
/// time; usage errors are `clap`'s, status 2).
pub fn or_exit<T>(result: Result<T, String>) -> T {
    result.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    })
}

/// Creates `dir` (if needed) and writes each `(file name, contents)` into it, printing
/// `wrote <path>` for each; exits with status 1 when a file cannot be written.
pub fn write_files(dir: &Path, files: Vec<(&str, String)>) {
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("error: cannot create {}: {e}", dir.display());
        std::process::exit(1)
    }
    for (name, contents) in files {
        let path = dir.join(name);
        if let Err(e) = std::fs::write(&path, contents) {
            eprintln!("error: cannot write {}: {e}", path.display());
            std::process::exit(1)
        }
        println!("wrote {}", path.display());
    }
}

/// Mean and sample standard deviation (0 for a single value).
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// Runs it.
    #[derive(Parser, Debug)]
    #[command(mut_arg("epochs", default("4")), mut_arg("out", default("results/x")))]
    struct Example {
        #[command(flatten)]
        device: DeviceArg,
        #[command(flatten)]
        epochs: EpochsArg,
        #[command(flatten)]
        out: OutArg,
    }

    #[test]
    fn shared_arguments_take_each_examples_defaults() {
        let args = Example::try_parse_from(["x"]).unwrap();
        assert_eq!(args.epochs.epochs, 4);
        assert_eq!(args.out.out, PathBuf::from("results/x"));
        assert_eq!(args.device.name, default_backend());
        let help = Example::try_parse_from(["x", "--help"])
            .unwrap_err()
            .to_string();
        assert!(help.contains("[default: 4]") && help.contains("[default: results/x]"));
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for bad in [
            &["x", "--epochs", "0"][..],
            &["x", "--epochs", "two"],
            &["x", "--device", "tpu"],
            &["x", "--bogus"],
        ] {
            let error = Example::try_parse_from(bad).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{bad:?}: {error}");
        }
    }
}
