//! Plots the benchmark's JSON (`bench --json`): parameters updated per second (Mparam/s) for
//! every optimizer next to Burn's own, one chart per device, parameter set and thread count,
//! one bar per parameter-set size, each bar ending in its ratio to its base (base ms / row ms,
//! median over rounds) and, for the optimizers that project, the branch taken.
//!
//! With `--table PATH` it also writes the records as Markdown tables, one per parameter set:
//! a row per optimizer, a column per size and thread count, each cell `Mparam/s (ratio to the
//! base, share of the roofline)`.
//!
//! ```text
//! cargo run --release --example bench -- --json results/bench.json
//! cargo run --release --example bench_plot -- --json results/bench.json --out results/bench.svg
//! ```

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::exit;

use clap::Parser;
use scaleinv::models::plot::{BarChart, Bars, PALETTE, bar_charts_svg};
use serde::Deserialize;

/// Plot the benchmark's JSON as bar charts (SVG): Mparam/s per optimizer, one chart per device,
/// parameter set and thread count.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The records written by `bench --json`.
    #[arg(long, value_name = "PATH", default_value = "results/bench.json")]
    json: PathBuf,
    /// Where to write the SVG.
    #[arg(long, value_name = "PATH", default_value = "results/bench.svg")]
    out: PathBuf,
    /// Also writes the records as Markdown tables here, one per parameter set.
    #[arg(long, value_name = "PATH")]
    table: Option<PathBuf>,
}

/// The fields of a `bench --json` record that the plot uses.
#[derive(Deserialize, Debug)]
struct Record {
    optimizer: String,
    device: String,
    set: String,
    params: u64,
    threads: u64,
    mparams_per_s: f64,
    base: Option<String>,
    ratio_median: Option<f64>,
    branch: String,
    roofline_pct: f64,
}

impl Record {
    /// The chart the record belongs to.
    fn chart_key(&self) -> (&str, &str, u64) {
        (&self.device, &self.set, self.threads)
    }

    /// The text at the end of its bar: the ratio to its base, and the branch if it projects.
    fn note(&self) -> String {
        let ratio = self.ratio_median.map(|r| format!("{r:.2}x"));
        let branch = (self.branch != "-").then(|| self.branch.clone());
        [ratio, branch]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Items in order of first appearance, without repeats.
fn unique<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = Vec::new();
    for item in items {
        if !seen.contains(&item) {
            seen.push(item);
        }
    }
    seen
}

/// One chart per (device, set, threads), in order of first appearance.
fn charts(records: &[Record]) -> Vec<BarChart> {
    let mut keys = Vec::new();
    for r in records {
        if !keys.contains(&r.chart_key()) {
            keys.push(r.chart_key());
        }
    }
    keys.into_iter()
        .map(|key| {
            let rows: Vec<&Record> = records.iter().filter(|r| r.chart_key() == key).collect();
            chart(key, &rows)
        })
        .collect()
}

/// The chart of one (device, set, threads): a row per optimizer (labelled with its base), a bar
/// per size.
fn chart((device, set, threads): (&str, &str, u64), rows: &[&Record]) -> BarChart {
    let optimizers = unique(rows.iter().map(|r| r.optimizer.as_str()));
    let base_of = |name: &str| {
        rows.iter()
            .find(|r| r.optimizer == name)
            .and_then(|r| r.base.as_deref())
    };
    let categories = optimizers
        .iter()
        .map(|&name| match base_of(name) {
            Some(base) => format!("{name} (vs {base})"),
            None => name.to_string(),
        })
        .collect();
    let sizes: BTreeSet<u64> = rows.iter().map(|r| r.params).collect();
    let threads = match threads {
        1 => "1 thread".to_string(),
        k => format!("{k} threads"),
    };
    let mut chart = BarChart::new(
        &format!("Step throughput: {set} on {device}, {threads} (bar ends: ratio vs base)"),
        "Mparam/s (million parameters updated per second)",
        categories,
    );
    for (k, &size) in sizes.iter().enumerate() {
        let at = |name: &str| {
            rows.iter()
                .find(|r| r.optimizer == name && r.params == size)
        };
        let values = optimizers
            .iter()
            .map(|&name| at(name).map_or(f64::NAN, |r| r.mparams_per_s))
            .collect();
        let notes = optimizers
            .iter()
            .map(|&name| at(name).map_or(String::new(), |r| r.note()))
            .collect();
        chart = chart.with_bars(Bars {
            name: format!("{:.2} M params", size as f64 / 1e6),
            values,
            notes,
            color: PALETTE[k % PALETTE.len()].into(),
        });
    }
    chart
}

/// One Markdown table per set: a row per optimizer (with its base and branch), a column per
/// (size, threads), each cell `Mparam/s (ratio, roofline %)`.
fn tables(records: &[Record]) -> String {
    let mut out = String::new();
    for set in unique(records.iter().map(|r| r.set.as_str())) {
        let rows: Vec<&Record> = records.iter().filter(|r| r.set == set).collect();
        let mut columns: Vec<(u64, u64)> = Vec::new();
        for r in &rows {
            if !columns.contains(&(r.params, r.threads)) {
                columns.push((r.params, r.threads));
            }
        }
        columns.sort();
        let header: Vec<String> = columns
            .iter()
            .map(|&(params, threads)| format!("{:.1}M, {threads} thr", params as f64 / 1e6))
            .collect();
        out += &format!(
            "#### `{set}`\n\n| optimizer | base | branch | {} |\n",
            header.join(" | ")
        );
        out += &format!("|---|---|---|{}\n", "---|".repeat(columns.len()));
        for name in unique(rows.iter().map(|r| r.optimizer.as_str())) {
            let of = |&(params, threads): &(u64, u64)| {
                rows.iter()
                    .find(|r| r.optimizer == name && r.params == params && r.threads == threads)
            };
            let first = columns
                .iter()
                .find_map(of)
                .expect("a record of this optimizer");
            let cells: Vec<String> = columns
                .iter()
                .map(|c| {
                    of(c).map_or("-".into(), |r| {
                        let ratio = r.ratio_median.map_or("-".into(), |x| format!("{x:.2}x"));
                        format!("{:.0} ({ratio}, {:.0} %)", r.mparams_per_s, r.roofline_pct)
                    })
                })
                .collect();
            out += &format!(
                "| {name} | {} | {} | {} |\n",
                first.base.as_deref().unwrap_or("-"),
                first.branch,
                cells.join(" | ")
            );
        }
        out += "\n";
    }
    out
}

fn main() {
    let args = Args::parse();
    let fail = |what: String| -> ! {
        eprintln!("error: {what}");
        exit(1)
    };
    let text = std::fs::read_to_string(&args.json)
        .unwrap_or_else(|e| fail(format!("cannot read {}: {e}", args.json.display())));
    let records: Vec<Record> = serde_json::from_str(&text)
        .unwrap_or_else(|e| fail(format!("{} is not bench JSON: {e}", args.json.display())));
    if records.is_empty() {
        fail(format!("{} has no records", args.json.display()));
    }
    let charts = charts(&records);
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .unwrap_or_else(|e| fail(format!("cannot create {}: {e}", dir.display())));
    }
    std::fs::write(&args.out, bar_charts_svg(&charts))
        .unwrap_or_else(|e| fail(format!("cannot write {}: {e}", args.out.display())));
    if let Some(path) = &args.table {
        std::fs::write(path, tables(&records))
            .unwrap_or_else(|e| fail(format!("cannot write {}: {e}", path.display())));
        println!("wrote {}", path.display());
    }
    println!(
        "wrote {} ({} records, {} chart(s))",
        args.out.display(),
        records.len(),
        charts.len()
    );
}
