//! Line plots as standalone SVG files, for the examples' results (no plotting dependency).

use std::fmt::Write;

/// One curve of a [`LinePlot`].
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// `(x, y)` points; non-finite `y` values break the line.
    pub points: Vec<(f64, f64)>,
    /// Stroke colour, any SVG colour (`"#1f77b4"`).
    pub color: String,
    /// Dashed stroke.
    pub dashed: bool,
}

/// A line plot with axes, ticks and a legend.
#[derive(Debug, Clone)]
pub struct LinePlot {
    /// Title above the plot.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// The curves.
    pub series: Vec<Series>,
    /// Fixed y range; values outside are clamped to its edges. `None` fits the data.
    pub y_range: Option<(f64, f64)>,
    /// Logarithmic y axis (positive values only).
    pub log_y: bool,
}

/// Ten distinguishable colours (the usual categorical palette).
pub const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 220.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 55.0;

impl LinePlot {
    /// A plot with no series.
    pub fn new(title: &str, x_label: &str, y_label: &str) -> Self {
        Self {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            series: Vec::new(),
            y_range: None,
            log_y: false,
        }
    }

    /// Adds a curve.
    pub fn with_series(mut self, series: Series) -> Self {
        self.series.push(series);
        self
    }

    fn transform_y(&self, y: f64) -> f64 {
        if self.log_y { y.log10() } else { y }
    }

    fn ranges(&self) -> ((f64, f64), (f64, f64)) {
        let finite = |v: f64| v.is_finite();
        let points = self.series.iter().flat_map(|s| s.points.iter());
        let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
        let (mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY);
        for &(x, y) in points {
            let ty = self.transform_y(y);
            if finite(x) && finite(ty) {
                (x0, x1) = (x0.min(x), x1.max(x));
                (y0, y1) = (y0.min(ty), y1.max(ty));
            }
        }
        if let Some((lo, hi)) = self.y_range {
            (y0, y1) = (self.transform_y(lo), self.transform_y(hi));
        }
        let widen = |(a, b): (f64, f64)| {
            if !a.is_finite() || !b.is_finite() {
                (0.0, 1.0)
            } else if a == b {
                (a - 0.5, b + 0.5)
            } else {
                (a, b)
            }
        };
        (widen((x0, x1)), widen((y0, y1)))
    }

    /// The plot as an SVG document.
    pub fn to_svg(&self) -> String {
        let ((x0, x1), (y0, y1)) = self.ranges();
        let (pw, ph) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
        let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * pw;
        let sy = |y: f64| TOP + ph - (y.clamp(y0, y1) - y0) / (y1 - y0) * ph;
        let mut svg = String::new();
        let _ = write!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">"#
        );
        let _ = write!(
            svg,
            r#"<rect width="100%" height="100%" fill="white"/><text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#,
            LEFT + pw / 2.0,
            escape(&self.title)
        );
        for fx in nice_ticks(x0, x1) {
            let _ = write!(
                svg,
                r##"<line x1="{x}" y1="{TOP}" x2="{x}" y2="{b}" stroke="#eee"/><text x="{x}" y="{ty}" text-anchor="middle">{}</text>"##,
                tick(fx),
                x = sx(fx),
                b = TOP + ph,
                ty = TOP + ph + 16.0,
            );
        }
        for fy in nice_ticks(y0, y1) {
            let label = if self.log_y { 10f64.powf(fy) } else { fy };
            let _ = write!(
                svg,
                r##"<line x1="{LEFT}" y1="{y}" x2="{r}" y2="{y}" stroke="#eee"/><text x="{lx}" y="{y4}" text-anchor="end">{}</text>"##,
                tick(label),
                y = sy(fy),
                r = LEFT + pw,
                lx = LEFT - 6.0,
                y4 = sy(fy) + 4.0,
            );
        }
        let _ = write!(
            svg,
            r#"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="black"/><text x="{}" y="{}" text-anchor="middle">{}</text><text transform="translate(16 {}) rotate(-90)" text-anchor="middle">{}</text>"#,
            LEFT + pw / 2.0,
            HEIGHT - 12.0,
            escape(&self.x_label),
            TOP + ph / 2.0,
            escape(&self.y_label)
        );
        for (i, s) in self.series.iter().enumerate() {
            let dash = if s.dashed {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            };
            for segment in s
                .points
                .split(|&(x, y)| !x.is_finite() || !self.transform_y(y).is_finite())
            {
                if segment.is_empty() {
                    continue;
                }
                let path: Vec<String> = segment
                    .iter()
                    .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(self.transform_y(y))))
                    .collect();
                let _ = write!(
                    svg,
                    r#"<polyline fill="none" stroke="{}" stroke-width="1.5"{dash} points="{}"/>"#,
                    s.color,
                    path.join(" ")
                );
            }
            let ly = TOP + 10.0 + 18.0 * i as f64;
            let lx = LEFT + pw + 12.0;
            let _ = write!(
                svg,
                r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
                lx + 28.0,
                s.color,
                lx + 34.0,
                ly + 4.0,
                escape(&s.name)
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}

/// Tick positions at a round step (1, 2 or 5 × 10^k) giving four to ten ticks in `[lo, hi]`.
fn nice_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let raw = (hi - lo) / 6.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * magnitude);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// A short tick label.
fn tick(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-2..1e4).contains(&a) {
        format!("{v:.0e}")
    } else if a >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_has_one_polyline_per_finite_run_and_a_legend() {
        let plot = LinePlot::new("loss", "step", "loss")
            .with_series(Series {
                name: "a<b".into(),
                points: vec![
                    (0.0, 1.0),
                    (1.0, 2.0),
                    (2.0, f64::NAN),
                    (3.0, 1.0),
                    (4.0, 0.5),
                ],
                color: PALETTE[0].into(),
                dashed: true,
            })
            .with_series(Series {
                name: "c".into(),
                points: vec![(0.0, 3.0), (4.0, 2.0)],
                color: PALETTE[1].into(),
                dashed: false,
            });
        let svg = plot.to_svg();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains("a&lt;b"));
        assert_eq!(svg.matches("stroke-dasharray").count(), 3);
    }

    #[test]
    fn ticks_fall_on_round_numbers() {
        assert_eq!(
            nice_ticks(0.0, 599.0),
            vec![0.0, 100.0, 200.0, 300.0, 400.0, 500.0]
        );
        assert_eq!(nice_ticks(1.0, 4.5), vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(nice_ticks(0.0, 0.9).len(), 5);
    }
}
