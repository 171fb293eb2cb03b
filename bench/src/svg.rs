//! The one-file report: a self-contained SVG with two charts. Top: the latency percentile
//! curves of every run on one log-log chart (x = 1/(1-percentile), so 99%, 99.9%, 99.99% are
//! evenly spaced; y = latency), produce-ack solid and end-to-end dashed. Below: throughput over
//! time of every run. Runs with `--report-interval` add two more: p99.9 of each interval
//! (produce solid, end-to-end dashed) and the broker's RSS over time, where step changes in the
//! tail and memory growth show. No scripts, fonts or external files.

use std::fmt::Write as _;

use crate::result::RunResult;

const WIDTH: f64 = 960.0;
const CHART_HEIGHT: f64 = 380.0;
const MARGIN_LEFT: f64 = 80.0;
const MARGIN_RIGHT: f64 = 260.0;
const MARGIN_TOP: f64 = 40.0;
const MARGIN_BOTTOM: f64 = 50.0;
/// Rightmost percentile drawn: 99.999%.
const NINES_MAX: f64 = 5.0;
const COLORS: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// One drawn line.
struct Series {
    name: String,
    color: &'static str,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

/// A plot area in pixels and its data ranges.
struct Frame {
    top: f64,
    x_range: (f64, f64),
    y_range: (f64, f64),
}

impl Frame {
    fn px(&self, x: f64) -> f64 {
        let w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
        MARGIN_LEFT + (x - self.x_range.0) / (self.x_range.1 - self.x_range.0) * w
    }

    fn py(&self, y: f64) -> f64 {
        let h = CHART_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
        let f = (y - self.y_range.0) / (self.y_range.1 - self.y_range.0);
        self.top + MARGIN_TOP + h - f.clamp(0.0, 1.0) * h
    }
}

/// Renders the report of `runs` with `title`.
pub fn render(title: &str, runs: &[RunResult]) -> String {
    let latency = latency_series(runs);
    let throughput = throughput_series(runs);
    let tail = interval_series(runs);
    let rss = rss_series(runs);
    let long_run = runs.iter().any(|r| !r.intervals.is_empty());
    let charts = if long_run { 4.0 } else { 2.0 };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{}" font-family="sans-serif" font-size="12">"#,
        charts * CHART_HEIGHT
    );
    let _ = write!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    latency_chart(&mut s, title, &latency);
    let heading = "throughput over time (MB/s of record payload)";
    time_chart(&mut s, CHART_HEIGHT, heading, "MB/s", &throughput);
    if long_run {
        let heading = "p99.9 latency per interval (ms; produce solid, end-to-end dashed)";
        time_chart(&mut s, 2.0 * CHART_HEIGHT, heading, "ms", &tail);
        let heading = "broker resident memory (MB)";
        time_chart(&mut s, 3.0 * CHART_HEIGHT, heading, "MB", &rss);
    }
    s.push_str("</svg>\n");
    s
}

fn run_name(r: &RunResult, multi_label: bool) -> String {
    let base = match r.config.mode.as_str() {
        "" | "plain" => format!("acks={}", r.acks),
        mode => format!("acks={} {mode}", r.acks),
    };
    if multi_label {
        format!("{} {base}", r.label)
    } else {
        base
    }
}

fn multi_label(runs: &[RunResult]) -> bool {
    runs.iter().any(|r| r.label != runs[0].label)
}

fn latency_series(runs: &[RunResult]) -> Vec<Series> {
    let multi = multi_label(runs);
    let mut out = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let curve = |c: &[[f64; 2]]| -> Vec<(f64, f64)> {
            c.iter()
                .map(|[p, us]| (nines(*p), us.max(1e-3).log10()))
                .filter(|(x, _)| *x <= NINES_MAX)
                .collect()
        };
        if !r.produce_curve.is_empty() {
            out.push(Series {
                name: format!("{} produce", run_name(r, multi)),
                color,
                dashed: false,
                points: curve(&r.produce_curve),
            });
        }
        if !r.e2e_curve.is_empty() {
            out.push(Series {
                name: format!("{} end-to-end", run_name(r, multi)),
                color,
                dashed: true,
                points: curve(&r.e2e_curve),
            });
        }
    }
    out
}

/// log10(1/(1-p)) for p in percent; 100% maps past the right edge.
fn nines(percent: f64) -> f64 {
    let q = (percent / 100.0).min(1.0);
    if q >= 1.0 {
        f64::INFINITY
    } else {
        (1.0 / (1.0 - q)).log10()
    }
}

fn throughput_series(runs: &[RunResult]) -> Vec<Series> {
    let multi = multi_label(runs);
    let mut out = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let produced: Vec<(f64, f64)> = r
            .timeline
            .iter()
            .map(|p| (p.t_s, p.produced_mb_per_s))
            .collect();
        if produced.iter().any(|p| p.1 > 0.0) {
            out.push(Series {
                name: format!("{} produced", run_name(r, multi)),
                color,
                dashed: false,
                points: produced,
            });
        }
        let consumed: Vec<(f64, f64)> = r
            .timeline
            .iter()
            .map(|p| (p.t_s, p.consumed_mb_per_s))
            .collect();
        if consumed.iter().any(|p| p.1 > 0.0) {
            out.push(Series {
                name: format!("{} consumed", run_name(r, multi)),
                color,
                dashed: true,
                points: consumed,
            });
        }
    }
    out
}

/// p99.9 of each interval, at the interval's end.
fn interval_series(runs: &[RunResult]) -> Vec<Series> {
    let multi = multi_label(runs);
    let mut out = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pick = |f: &dyn Fn(&crate::result::IntervalRow) -> (u64, f64)| -> Vec<(f64, f64)> {
            r.intervals
                .iter()
                .filter(|row| f(row).0 > 0)
                .map(|row| (row.t_end_s, f(row).1 / 1000.0))
                .collect()
        };
        let produce = pick(&|row| (row.produce.count, row.produce.p999_us));
        if !produce.is_empty() {
            out.push(Series {
                name: format!("{} produce p99.9", run_name(r, multi)),
                color,
                dashed: false,
                points: produce,
            });
        }
        let e2e = pick(&|row| (row.e2e.count, row.e2e.p999_us));
        if !e2e.is_empty() {
            out.push(Series {
                name: format!("{} e2e p99.9", run_name(r, multi)),
                color,
                dashed: true,
                points: e2e,
            });
        }
    }
    out
}

/// The broker's RSS at every progress sample.
fn rss_series(runs: &[RunResult]) -> Vec<Series> {
    let multi = multi_label(runs);
    runs.iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let points: Vec<(f64, f64)> = r
                .timeline
                .iter()
                .filter_map(|p| p.broker_rss_mb.map(|mb| (p.t_s, mb)))
                .collect();
            (!points.is_empty()).then(|| Series {
                name: format!("{} broker RSS", run_name(r, multi)),
                color: COLORS[i % COLORS.len()],
                dashed: false,
                points,
            })
        })
        .collect()
}

fn latency_chart(s: &mut String, title: &str, series: &[Series]) {
    let ys = series.iter().flat_map(|x| x.points.iter().map(|p| p.1));
    let (lo, hi) = ys.fold((f64::MAX, f64::MIN), |(a, b), y| (a.min(y), b.max(y)));
    let (lo, hi) = if lo > hi {
        (0.0, 3.0)
    } else {
        (lo.floor(), hi.ceil().max(lo.floor() + 1.0))
    };
    let f = Frame {
        top: 0.0,
        x_range: (0.0, NINES_MAX),
        y_range: (lo, hi),
    };
    heading(s, &f, &format!("{title}: latency by percentile (log-log)"));
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
        .iter()
        .enumerate()
    {
        x_tick(s, &f, i as f64, label);
    }
    for d in (lo as i32)..=(hi as i32) {
        y_tick(s, &f, f64::from(d), &duration_label(10f64.powi(d)));
    }
    axis_titles(s, &f, "percentile", "latency");
    draw_series(s, &f, series);
}

/// A chart of values over time (seconds) from zero to a round ceiling, at `top`.
fn time_chart(s: &mut String, top: f64, heading_text: &str, unit: &str, series: &[Series]) {
    let t_max = series
        .iter()
        .flat_map(|x| x.points.iter().map(|p| p.0))
        .fold(1.0f64, f64::max);
    let y_max = series
        .iter()
        .flat_map(|x| x.points.iter().map(|p| p.1))
        .fold(1.0f64, f64::max);
    let y_top = nice_ceiling(y_max);
    let f = Frame {
        top,
        x_range: (0.0, t_max.ceil()),
        y_range: (0.0, y_top),
    };
    heading(s, &f, heading_text);
    for i in 0..=5 {
        let t = t_max.ceil() * f64::from(i) / 5.0;
        x_tick(s, &f, t, &format!("{t:.0}s"));
        let y = y_top * f64::from(i) / 5.0;
        y_tick(s, &f, y, &tick_label(y));
    }
    axis_titles(s, &f, "time", unit);
    draw_series(s, &f, series);
}

fn heading(s: &mut String, f: &Frame, text: &str) {
    let _ = write!(
        s,
        r#"<text x="{MARGIN_LEFT}" y="{}" font-size="15" font-weight="bold">{}</text>"#,
        f.top + 24.0,
        escape(text)
    );
}

fn x_tick(s: &mut String, f: &Frame, x: f64, label: &str) {
    let (px, y0, y1) = (f.px(x), f.py(f.y_range.0), f.py(f.y_range.1));
    let _ = write!(
        s,
        r##"<line x1="{px:.1}" y1="{y0:.1}" x2="{px:.1}" y2="{y1:.1}" stroke="#ddd"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
        y0 + 16.0,
        escape(label)
    );
}

fn y_tick(s: &mut String, f: &Frame, y: f64, label: &str) {
    let (py, x0, x1) = (f.py(y), f.px(f.x_range.0), f.px(f.x_range.1));
    let _ = write!(
        s,
        r##"<line x1="{x0:.1}" y1="{py:.1}" x2="{x1:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
        x0 - 6.0,
        py + 4.0,
        escape(label)
    );
}

fn axis_titles(s: &mut String, f: &Frame, x: &str, y: &str) {
    let mid_x = (f.px(f.x_range.0) + f.px(f.x_range.1)) / 2.0;
    let mid_y = (f.py(f.y_range.0) + f.py(f.y_range.1)) / 2.0;
    let _ = write!(
        s,
        r#"<text x="{mid_x:.1}" y="{:.1}" text-anchor="middle">{x}</text><text x="20" y="{mid_y:.1}" transform="rotate(-90 20 {mid_y:.1})" text-anchor="middle">{y}</text>"#,
        f.top + CHART_HEIGHT - 10.0
    );
}

fn draw_series(s: &mut String, f: &Frame, series: &[Series]) {
    for (i, x) in series.iter().enumerate() {
        let points: Vec<String> = x
            .points
            .iter()
            .map(|(a, b)| format!("{:.1},{:.1}", f.px(*a), f.py(*b)))
            .collect();
        let dash = if x.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{}" stroke-width="2"{dash} points="{}"/>"#,
            x.color,
            points.join(" ")
        );
        let ly = f.top + MARGIN_TOP + 10.0 + 18.0 * i as f64;
        let lx = WIDTH - MARGIN_RIGHT + 16.0;
        let _ = write!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
            lx + 28.0,
            x.color,
            lx + 34.0,
            ly + 4.0,
            escape(&x.name)
        );
    }
}

/// 1, 2 or 5 times a power of ten, at or above `v`.
fn nice_ceiling(v: f64) -> f64 {
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * p)
}

/// A tick value: whole numbers, or two decimals below 10.
fn tick_label(v: f64) -> String {
    if v == 0.0 || v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// A latency in microseconds as a short label.
fn duration_label(us: f64) -> String {
    if us < 1.0 {
        format!("{:.0}ns", us * 1000.0)
    } else if us < 1000.0 {
        format!("{us:.0}µs")
    } else if us < 1e6 {
        format!("{:.0}ms", us / 1000.0)
    } else {
        format!("{:.0}s", us / 1e6)
    }
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::Sample;

    fn run(acks: &str, scale: f64) -> RunResult {
        RunResult {
            label: "gregor".into(),
            acks: acks.into(),
            produce_curve: vec![
                [0.0, 10.0 * scale],
                [99.0, 100.0 * scale],
                [100.0, 900.0 * scale],
            ],
            e2e_curve: vec![[50.0, 20.0 * scale], [99.9, 300.0 * scale]],
            timeline: vec![
                Sample {
                    t_s: 1.0,
                    produced_mb_per_s: 120.0,
                    consumed_mb_per_s: 110.0,
                    ..Sample::default()
                },
                Sample {
                    t_s: 2.0,
                    produced_mb_per_s: 130.0,
                    ..Sample::default()
                },
            ],
            ..RunResult::default()
        }
    }

    #[test]
    fn report_has_a_line_per_curve_and_legend() {
        let svg = render("t <1>", &[run("0", 1.0), run("all", 4.0)]);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        // 2 runs x (produce + e2e) latency lines, 2 x (produced + consumed) throughput lines.
        assert_eq!(svg.matches("<polyline").count(), 8);
        assert!(svg.contains("acks=all end-to-end"));
        assert!(svg.contains("t &lt;1&gt;"));
        assert!(svg.contains("99.99%"));
    }

    #[test]
    fn long_runs_add_interval_and_rss_charts() {
        use crate::result::{IntervalLatency, IntervalRow};
        let mut r = run("1", 1.0);
        assert!(!render("t", std::slice::from_ref(&r)).contains("per interval"));
        let lat = |p999_us| IntervalLatency {
            count: 10,
            p999_us,
            ..IntervalLatency::default()
        };
        r.intervals = (0..3)
            .map(|i| IntervalRow {
                t_start_s: 60.0 * f64::from(i),
                t_end_s: 60.0 * f64::from(i + 1),
                produce: lat(1_000.0 * f64::from(i + 1)),
                e2e: lat(3_000.0),
                ..IntervalRow::default()
            })
            .collect();
        for (i, p) in r.timeline.iter_mut().enumerate() {
            p.broker_rss_mb = Some(100.0 + i as f64);
        }
        let svg = render("t", &[r]);
        assert!(svg.contains(&format!(r#"height="{}""#, 4.0 * CHART_HEIGHT)));
        assert!(svg.contains("p99.9 latency per interval"));
        assert!(svg.contains("acks=1 produce p99.9"));
        assert!(svg.contains("acks=1 e2e p99.9"));
        assert!(svg.contains("acks=1 broker RSS"));
        // latency 2 + throughput 2 + interval 2 + RSS 1.
        assert_eq!(svg.matches("<polyline").count(), 7);
        assert_eq!(tick_label(2.5), "2.50");
        assert_eq!(tick_label(40.0), "40");
    }

    #[test]
    fn scales_and_labels() {
        assert_eq!(nines(99.0).round(), 2.0);
        assert!(nines(100.0).is_infinite());
        assert_eq!(nice_ceiling(130.0), 200.0);
        assert_eq!(nice_ceiling(1000.0), 1000.0);
        assert_eq!(duration_label(1000.0), "1ms");
        assert_eq!(duration_label(10.0), "10µs");
    }
}
