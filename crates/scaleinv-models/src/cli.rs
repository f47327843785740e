//! What the examples' command lines share: exiting on a bad argument, writing result files.

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
