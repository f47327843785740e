//! Line plots and bar charts as standalone SVG files, drawn with [`plotters`].
//!
//! Text is laid out without font files: plotters' SVG backend writes `<text>` elements that the
//! viewer renders, and without its `ttf`/`ab_glyph` features it estimates text width from the
//! character count, so no system font library is linked.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One curve of a [`LinePlot`].
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// `(x, y)` points; non-finite values break the line.
    pub points: Vec<(f64, f64)>,
    /// Stroke colour as `#rrggbb` (`"#1f77b4"`); anything else draws black.
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
    /// Logarithmic y axis; non-positive values break the line.
    pub log_y: bool,
}

/// Ten distinguishable colours (the usual categorical palette).
pub const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

const WIDTH: u32 = 760;
const HEIGHT: u32 = 440;
/// Room right of the plotting area for the legend.
const LEGEND_WIDTH: u32 = 210;
const FONT: &str = "sans-serif";
// Font sizes as plotters takes them (it writes `size / 1.24` pixels into the SVG).
const TITLE: u32 = 20;
const AXIS: u32 = 16;
const TICK: u32 = 15;

type DrawResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;
type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

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

    /// Whether a point is drawn (finite, and positive on a log axis).
    fn drawable(&self, (x, y): (f64, f64)) -> bool {
        x.is_finite() && y.is_finite() && (!self.log_y || y > 0.0)
    }

    /// The x and y ranges: the data's (or `y_range`), widened when empty or a single value.
    fn ranges(&self) -> ((f64, f64), (f64, f64)) {
        let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
        let (mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY);
        for &(x, y) in self.series.iter().flat_map(|s| s.points.iter()) {
            if self.drawable((x, y)) {
                (x0, x1) = (x0.min(x), x1.max(x));
                (y0, y1) = (y0.min(y), y1.max(y));
            }
        }
        if let Some((lo, hi)) = self.y_range {
            (y0, y1) = (lo, hi);
        }
        let x = widen(x0, x1, false);
        let y = widen(y0, y1, self.log_y);
        (x, y)
    }

    /// The plot as an SVG document.
    pub fn to_svg(&self) -> String {
        render((WIDTH, HEIGHT), |root| self.draw(root))
    }

    /// `y` as drawn: its logarithm on a log axis. (plotters' own log axis labels only the top
    /// decade or two of a wide range, so the axis is linear in `log10 y` with labels `10^v`.)
    fn to_axis(&self, y: f64) -> f64 {
        if self.log_y { y.log10() } else { y }
    }

    fn draw(&self, root: &Area) -> DrawResult {
        let ((x0, x1), (y0, y1)) = self.ranges();
        let (y0, y1) = (self.to_axis(y0), self.to_axis(y1));
        let root = root.titled(&self.title, (FONT, TITLE))?;
        let (width, _) = root.dim_in_pixel();
        let (main, legend) = root.split_horizontally(width - LEGEND_WIDTH);
        let mut chart = ChartBuilder::on(&main)
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(65)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| tick(*v))
            .max_light_lines(0)
            .bold_line_style(RGBColor(0, 0, 0).mix(0.08))
            .label_style((FONT, TICK))
            .axis_desc_style((FONT, AXIS));
        if self.log_y {
            // plotters' ticks would fall at round values of log10 y: the 1-2-5 ticks are drawn here.
            mesh.y_label_formatter(&|_| String::new())
                .set_tick_mark_size(LabelAreaPosition::Left, 0)
                .disable_y_mesh();
        }
        mesh.draw()?;
        if self.log_y {
            let grid = ShapeStyle::from(RGBColor(0, 0, 0).mix(0.08));
            let text = TextStyle::from((FONT, TICK)).pos(Pos::new(HPos::Right, VPos::Center));
            for t in log_ticks(10f64.powf(y0), 10f64.powf(y1)) {
                let y = t.log10();
                chart.draw_series([PathElement::new(vec![(x0, y), (x1, y)], grid)])?;
                chart.draw_series([EmptyElement::at((x0, y))
                    + PathElement::new(vec![(-5, 0), (0, 0)], BLACK)
                    + Text::new(tick(t), (-9, 0), text.clone())])?;
            }
        }
        for s in &self.series {
            let style = ShapeStyle::from(&rgb(&s.color)).stroke_width(2);
            for segment in s.points.split(|&p| !self.drawable(p)) {
                let points = segment
                    .iter()
                    .map(|&(x, y)| (x, self.to_axis(y).clamp(y0, y1)));
                if segment.is_empty() {
                    continue;
                }
                if s.dashed {
                    chart.draw_series(DashedLineSeries::new(points, 6, 4, style))?;
                } else {
                    chart.draw_series(LineSeries::new(points, style))?;
                }
            }
        }
        let entries = self.series.iter().map(|s| {
            let mark = if s.dashed { Mark::Dashed } else { Mark::Line };
            (s.name.as_str(), rgb(&s.color), mark)
        });
        draw_legend(&legend, entries)
    }
}

/// One bar per category of a [`BarChart`], drawn side by side with the other series' bars.
#[derive(Debug, Clone)]
pub struct Bars {
    /// Legend text.
    pub name: String,
    /// One value per category; a non-finite value draws no bar.
    pub values: Vec<f64>,
    /// Text written at the end of each bar (`""` or missing: none).
    pub notes: Vec<String>,
    /// Fill colour as `#rrggbb`; anything else draws black.
    pub color: String,
}

/// A horizontal grouped bar chart: one row per category, one bar per series in each row.
#[derive(Debug, Clone)]
pub struct BarChart {
    /// Title above the chart.
    pub title: String,
    /// Label of the value axis, with units.
    pub value_label: String,
    /// Row labels, top to bottom.
    pub categories: Vec<String>,
    /// The bar series.
    pub series: Vec<Bars>,
}

const BAR: u32 = 14;
const ROW_GAP: u32 = 8;
/// Width of the bars' plotting area, in pixels.
const BAR_AREA: u32 = 540;

impl BarChart {
    /// A chart with these rows and no series.
    pub fn new(title: &str, value_label: &str, categories: Vec<String>) -> Self {
        Self {
            title: title.into(),
            value_label: value_label.into(),
            categories,
            series: Vec::new(),
        }
    }

    /// Adds a bar series.
    pub fn with_bars(mut self, bars: Bars) -> Self {
        self.series.push(bars);
        self
    }

    /// Height in pixels: the rows' bars plus title, axis and legend.
    fn height(&self) -> u32 {
        let row = BAR * self.series.len().max(1) as u32 + ROW_GAP;
        let legend = 18 * self.series.len() as u32;
        110 + (row * self.categories.len().max(1) as u32).max(legend)
    }

    /// Room for the row labels: about 7 pixels a character.
    fn category_width(&self) -> u32 {
        let longest = self.categories.iter().map(|c| c.chars().count());
        7 * longest.max().unwrap_or(0) as u32 + 24
    }

    /// The chart as an SVG document.
    pub fn to_svg(&self) -> String {
        bar_charts_svg(std::slice::from_ref(self))
    }

    fn draw(&self, root: &Area, category_width: u32) -> DrawResult {
        let n = self.categories.len().max(1);
        let max = self
            .series
            .iter()
            .flat_map(|b| b.values.iter().copied())
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max);
        let top = if max > 0.0 { max * 1.15 } else { 1.0 };
        // Row i spans [n - i - 1, n - i): the first category on top.
        let root = root.titled(&self.title, (FONT, TITLE))?;
        let (width, _) = root.dim_in_pixel();
        let (main, legend) = root.split_horizontally(width - LEGEND_WIDTH);
        let mut chart = ChartBuilder::on(&main)
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(category_width)
            .build_cartesian_2d(0.0..top, 0.0..n as f64)?;
        chart
            .configure_mesh()
            .x_desc(&self.value_label)
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|_| String::new())
            .set_tick_mark_size(LabelAreaPosition::Left, 0)
            .disable_y_mesh()
            .max_light_lines(0)
            .bold_line_style(RGBColor(0, 0, 0).mix(0.08))
            .label_style((FONT, TICK))
            .axis_desc_style((FONT, AXIS))
            .draw()?;
        // The row labels, right-aligned left of the axis (plotters' tick labels sit at round
        // values, not at row centres).
        let right = TextStyle::from((FONT, TICK)).pos(Pos::new(HPos::Right, VPos::Center));
        chart.draw_series(self.categories.iter().enumerate().map(|(i, name)| {
            let at = (0.0, (n - 1 - i) as f64 + 0.5);
            EmptyElement::at(at) + Text::new(name.clone(), (-8, 0), right.clone())
        }))?;
        let k = self.series.len().max(1) as f64;
        let slot = 0.8 / k;
        for (j, bars) in self.series.iter().enumerate() {
            let color = rgb(&bars.color);
            let bar_at = |i: usize| {
                let base = (n - 1 - i) as f64 + 0.9 - slot * j as f64;
                (base - slot * 0.9, base)
            };
            let drawn = bars.values.iter().take(n).enumerate();
            let rects = drawn.clone().filter(|(_, v)| v.is_finite()).map(|(i, &v)| {
                let (y0, y1) = bar_at(i);
                Rectangle::new([(0.0, y0), (v.max(0.0), y1)], color.filled())
            });
            chart.draw_series(rects)?;
            let notes = drawn.filter(|(_, v)| v.is_finite()).filter_map(|(i, &v)| {
                let note = bars.notes.get(i).filter(|s| !s.is_empty())?;
                let (y0, y1) = bar_at(i);
                let style =
                    TextStyle::from((FONT, AXIS - 3)).pos(Pos::new(HPos::Left, VPos::Center));
                let at = (v.max(0.0), (y0 + y1) / 2.0);
                Some(EmptyElement::at(at) + Text::new(note.clone(), (4, 0), style))
            });
            chart.draw_series(notes)?;
        }
        let entries = self
            .series
            .iter()
            .map(|b| (b.name.as_str(), rgb(&b.color), Mark::Bar));
        draw_legend(&legend, entries)
    }
}

/// The sample drawn beside a legend entry.
#[derive(Clone, Copy)]
enum Mark {
    Line,
    Dashed,
    Bar,
}

/// A legend down the left edge of `area`, below the title's height.
fn draw_legend<'n>(
    area: &Area,
    entries: impl Iterator<Item = (&'n str, RGBColor, Mark)>,
) -> DrawResult {
    let text = TextStyle::from((FONT, TICK)).pos(Pos::new(HPos::Left, VPos::Center));
    for (i, (name, color, mark)) in entries.enumerate() {
        let at = (4, 20 + 20 * i as i32);
        let line = ShapeStyle::from(&color).stroke_width(2);
        let label = Text::new(name.to_string(), (30, 0), text.clone());
        let sample = EmptyElement::at(at) + label;
        match mark {
            Mark::Line => area.draw(&(sample + PathElement::new(vec![(0, 0), (22, 0)], line)))?,
            Mark::Dashed => area.draw(
                &(sample
                    + PathElement::new(vec![(0, 0), (9, 0)], line)
                    + PathElement::new(vec![(13, 0), (22, 0)], line)),
            )?,
            Mark::Bar => {
                area.draw(&(sample + Rectangle::new([(0, -6), (22, 6)], color.filled())))?
            }
        }
    }
    Ok(())
}

/// Several bar charts stacked top to bottom in one SVG document (e.g. one per device).
pub fn bar_charts_svg(charts: &[BarChart]) -> String {
    let heights: Vec<u32> = charts.iter().map(BarChart::height).collect();
    let total = heights.iter().sum::<u32>().max(1);
    let labels = charts
        .iter()
        .map(BarChart::category_width)
        .max()
        .unwrap_or(0);
    render((labels + BAR_AREA + LEGEND_WIDTH, total), |root| {
        let mut rest = root.clone();
        for (chart, &h) in charts.iter().zip(&heights) {
            let (area, below) = rest.split_vertically(h);
            chart.draw(&area, labels)?;
            rest = below;
        }
        Ok(())
    })
}

/// Draws on a white SVG canvas of `size` pixels and returns the document.
fn render(size: (u32, u32), draw: impl FnOnce(&Area) -> DrawResult) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        // Writing into a String cannot fail, and the text estimate without fonts neither.
        root.fill(&WHITE)
            .and_then(|()| draw(&root))
            .and_then(|()| root.present())
            .expect("an in-memory SVG drawing does not fail");
    }
    svg
}

/// `(a, b)` made a non-empty interval: `(0, 1)` when empty, a unit (or ×2 on a log axis) around
/// a single value.
fn widen(a: f64, b: f64, log: bool) -> (f64, f64) {
    if !a.is_finite() || !b.is_finite() || a > b {
        if log { (1.0, 10.0) } else { (0.0, 1.0) }
    } else if a == b {
        if log {
            (a / 2.0, b * 2.0)
        } else {
            (a - 0.5, b + 0.5)
        }
    } else {
        (a, b)
    }
}

/// `#rrggbb` as a colour; black for anything else.
fn rgb(hex: &str) -> RGBColor {
    let channel = |i: usize| {
        hex.get(i..i + 2)
            .and_then(|c| u8::from_str_radix(c, 16).ok())
    };
    match (hex.len(), hex.strip_prefix('#')) {
        (7, Some(_)) => match (channel(1), channel(3), channel(5)) {
            (Some(r), Some(g), Some(b)) => RGBColor(r, g, b),
            _ => BLACK,
        },
        _ => BLACK,
    }
}

/// Ticks for a log axis over `[lo, hi]`: powers of ten, with 2× and 5× between them when the
/// range spans at most four decades, every integer multiple when that gives fewer than two
/// ticks, and the ends when even that does.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (k0, k1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let within = |t: &f64| (lo * (1.0 - 1e-9)..=hi * (1.0 + 1e-9)).contains(t);
    let ticks = |steps: &[f64]| -> Vec<f64> {
        (k0..=k1)
            .flat_map(|k| steps.iter().map(move |m| m * 10f64.powi(k)))
            .filter(within)
            .collect()
    };
    let mut out = ticks(if k1 - k0 > 4 {
        &[1.0]
    } else {
        &[1.0, 2.0, 5.0]
    });
    if out.len() < 2 {
        out = ticks(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    }
    if out.len() < 2 {
        out = vec![lo, hi];
    }
    out
}

/// A short tick label: the number with as many decimals as it needs (plotters' ticks are
/// round numbers, `1.05`, `0.25`), in scientific notation when very small or large.
fn tick(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        return format!("{v:.0e}");
    }
    let fixed = format!("{v:.6}");
    let trimmed = fixed.trim_end_matches('0').trim_end_matches('.');
    if trimmed == "-0" {
        "0".into()
    } else {
        trimmed.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, points: Vec<(f64, f64)>, dashed: bool) -> Series {
        Series {
            name: name.into(),
            points,
            color: PALETTE[0].into(),
            dashed,
        }
    }

    /// Lines drawn in the palette's first colour: the curves and their legend samples.
    fn polylines(svg: &str) -> usize {
        svg.matches(r##"stroke="#1F77B4" stroke-width="2""##)
            .count()
    }

    #[test]
    fn line_plot_has_title_axis_labels_legend_and_one_line_per_finite_run() {
        let svg = LinePlot::new("Loss & co", "step", "loss (nats)")
            .with_series(series(
                "a<b",
                vec![
                    (0.0, 1.0),
                    (1.0, 2.0),
                    (2.0, f64::NAN),
                    (3.0, 1.0),
                    (4.0, 0.5),
                ],
                false,
            ))
            .with_series(Series {
                color: PALETTE[1].into(),
                ..series("c", vec![(0.0, 3.0), (4.0, 2.0)], false)
            })
            .to_svg();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        for text in ["Loss &amp; co", "step", "loss (nats)", "a&lt;b", "\nc\n"] {
            assert!(svg.contains(text), "{text} missing");
        }
        // Two runs of the first series and its legend sample.
        assert_eq!(polylines(&svg), 2 + 1);
    }

    #[test]
    fn dashed_lines_are_drawn_in_pieces() {
        let points = (0..20).map(|i| (i as f64, (i * i) as f64)).collect();
        let solid = LinePlot::new("t", "x", "y").with_series(series("s", points, false));
        let mut dashed = solid.clone();
        dashed.series[0].dashed = true;
        assert_eq!(polylines(&solid.to_svg()), 1 + 1);
        assert!(polylines(&dashed.to_svg()) > 10);
    }

    #[test]
    fn log_axis_fixed_range_and_degenerate_input_draw() {
        let mut plot = LinePlot::new("norms", "step", "norm")
            .with_series(series(
                "p",
                vec![(0.0, 0.0), (1.0, 1e-3), (2.0, 10.0)],
                true,
            ))
            .with_series(series("empty", vec![], false))
            .with_series(series("nan", vec![(0.0, f64::NAN)], false))
            .with_series(series("single", vec![(1.0, 1.0)], false));
        plot.log_y = true;
        let svg = plot.to_svg();
        assert!(svg.contains("empty") && svg.contains("single"));
        plot.log_y = false;
        plot.y_range = Some((0.0, 1.0));
        assert!(plot.to_svg().contains("norms"));
        assert!(LinePlot::new("none", "x", "y").to_svg().contains("none"));
    }

    #[test]
    fn values_outside_a_fixed_range_are_clamped_to_the_frame() {
        let mut plot = LinePlot::new("t", "x", "y").with_series(series(
            "s",
            vec![(0.0, -5.0), (1.0, 0.5), (2.0, 5.0)],
            false,
        ));
        plot.y_range = Some((0.0, 1.0));
        let ((_, _), (y0, y1)) = plot.ranges();
        assert_eq!((y0, y1), (0.0, 1.0));
        // The line's points stay within the SVG canvas.
        let svg = plot.to_svg();
        let line = svg.split("<polyline").nth(1).unwrap();
        let points = line
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        for y in points.split(' ').filter_map(|p| p.split(',').nth(1)) {
            let y: f64 = y.parse().unwrap();
            assert!((0.0..=HEIGHT as f64).contains(&y), "{y}");
        }
    }

    #[test]
    fn bar_chart_has_rows_bars_notes_and_legend() {
        let chart = BarChart::new(
            "Step throughput",
            "Mparam/s",
            vec!["adamp".into(), "burn_adam".into(), "none".into()],
        )
        .with_bars(Bars {
            name: "0.1 M params".into(),
            values: vec![320.0, 240.0, f64::NAN],
            notes: vec!["1.32x".into()],
            color: PALETTE[0].into(),
        })
        .with_bars(Bars {
            name: "1 M params".into(),
            values: vec![300.0],
            notes: vec![],
            color: "not a colour".into(),
        });
        let svg = chart.to_svg();
        for text in [
            "Step throughput",
            "Mparam/s",
            "adamp",
            "burn_adam",
            "1.32x",
            "1 M params",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        // Three bars and a legend swatch per series in two colours (unparsable: black).
        assert_eq!(svg.matches(r##"fill="#1F77B4""##).count(), 2 + 1);
        assert_eq!(svg.matches(r##"<rect"##).count(), 1 + 3 + 2);
        let two = bar_charts_svg(&[chart.clone(), chart]);
        assert_eq!(two.matches("Step throughput").count(), 2);
        assert!(bar_charts_svg(&[]).starts_with("<svg"));
        assert!(
            BarChart::new("empty", "x", vec![])
                .to_svg()
                .contains("empty")
        );
    }

    #[test]
    fn log_ticks_are_round() {
        assert_eq!(log_ticks(3.0, 70.0), vec![5.0, 10.0, 20.0, 50.0]);
        assert_eq!(
            log_ticks(1e-6, 1.0),
            vec![1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]
        );
        assert_eq!(log_ticks(1.1, 1.9), vec![1.1, 1.9]);
        assert_eq!(log_ticks(1.5, 4.5), vec![2.0, 3.0, 4.0]);
    }

    #[test]
    fn colours_parse_as_hex() {
        assert_eq!(rgb("#1f77b4"), RGBColor(0x1f, 0x77, 0xb4));
        assert_eq!(rgb("red"), BLACK);
        assert_eq!(rgb("#12345"), BLACK);
    }

    #[test]
    fn neighbouring_ticks_get_distinct_labels() {
        assert_eq!(tick(0.5), "0.5");
        assert_eq!(tick(2.5), "2.5");
        assert_eq!(tick(300.0), "300");
        assert_eq!(tick(1e-4), "1e-4");
        assert_eq!(tick(-0.0), "0");
        // Ticks 0.05 apart near 1 (a norm ratio's axis), as plotters places them.
        let labels: Vec<String> = (0..8).map(|i| tick(1.0 + 0.05 * i as f64)).collect();
        assert_eq!(
            labels,
            ["1", "1.05", "1.1", "1.15", "1.2", "1.25", "1.3", "1.35"]
        );
    }
}
