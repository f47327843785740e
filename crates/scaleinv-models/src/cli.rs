//! What the examples share: exiting on a bad argument, writing result files, summarising
//! runs over seeds.

use std::path::Path;

/// The value, or exits with status 2 after printing `error: {message}`.
pub fn or_exit<T>(result: Result<T, String>) -> T {
    result.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2)
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

/// Parses `value` (given to `flag`) as a positive number.
pub fn positive<T: std::str::FromStr + PartialOrd + Default>(
    flag: &str,
    value: &str,
) -> Result<T, String> {
    value
        .parse::<T>()
        .ok()
        .filter(|x| *x > T::default())
        .ok_or(format!("{flag}: `{value}` is not a positive number"))
}

/// Parses a comma-separated list of positive numbers, e.g. `1e-3,3e-3`.
pub fn positive_list<T: std::str::FromStr + PartialOrd + Default>(
    flag: &str,
    value: &str,
) -> Result<Vec<T>, String> {
    value.split(',').map(|v| positive(flag, v)).collect()
}

/// Mean and sample standard deviation (0 for a single value).
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}
