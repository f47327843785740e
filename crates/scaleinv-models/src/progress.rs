//! A progress bar with rate and ETA for the examples' long loops, drawn only when stdout is a
//! terminal (CI logs keep just the printed lines).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar over `len` units of work. Lines printed through [`Progress::println`]
/// appear above the bar in a terminal and as plain lines elsewhere.
///
/// ```
/// use scaleinv_models::progress::Progress;
///
/// let progress = Progress::new(3, "runs");
/// for run in 0..3 {
///     progress.set_message(format!("run {run}"));
///     progress.println(format!("run {run} done"));
///     progress.inc(1);
/// }
/// progress.finish();
/// ```
#[derive(Debug, Clone)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar over `len` units named `unit` (`"steps"`, `"runs"`); hidden when stdout is not a
    /// terminal.
    pub fn new(len: u64, unit: &str) -> Self {
        let bar = if std::io::stdout().is_terminal() {
            ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        let template = format!(
            "{{msg}} [{{bar:30}}] {{pos}}/{{len}} {unit} ({{per_sec}}, {{elapsed}}, ETA {{eta}})"
        );
        let style = ProgressStyle::with_template(&template)
            .expect("the template is valid")
            .progress_chars("=> ");
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(500));
        Self { bar }
    }

    /// Whether the bar is drawn.
    pub fn is_visible(&self) -> bool {
        !self.bar.is_hidden()
    }

    /// Text in front of the bar (what is running now).
    pub fn set_message(&self, message: impl Into<String>) {
        self.bar.set_message(message.into());
    }

    /// Advances by `units`.
    pub fn inc(&self, units: u64) {
        self.bar.inc(units);
    }

    /// Prints a line to stdout, above the bar when it is drawn.
    pub fn println(&self, line: impl AsRef<str>) {
        if self.is_visible() {
            self.bar.println(line.as_ref());
        } else {
            println!("{}", line.as_ref());
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
