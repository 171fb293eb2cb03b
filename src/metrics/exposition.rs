//! The Prometheus text exposition format (version 0.0.4): `# HELP` and `# TYPE` once per
//! family, then one line per sample, label values escaped.

use std::fmt::Write;

use super::histogram::{HistogramSample, BOUNDS_NS};

/// What the endpoint answers with in its Content-Type header.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A page of metrics being written. Families must not repeat: each is declared once with
/// [`Page::family`] and its samples follow it.
#[derive(Default)]
pub struct Page {
    out: String,
    declared: std::collections::HashSet<String>,
}

impl Page {
    pub fn new() -> Page {
        Page::default()
    }

    /// Declares a family: its help text and type.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let first = self.declared.insert(name.to_string());
        assert!(first, "metric family {name} declared twice");
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.name());
    }

    /// One sample of a counter or gauge.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        write_labels(&mut self.out, labels, None);
        self.out.push(' ');
        write_value(&mut self.out, value);
        self.out.push('\n');
    }

    /// Declares a family and writes its one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// The `_bucket`, `_sum` and `_count` lines of one histogram, in seconds.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &HistogramSample) {
        let mut total = 0;
        for (i, cum) in h.cumulative().enumerate() {
            let le = match BOUNDS_NS.get(i) {
                Some(ns) => seconds(*ns),
                None => "+Inf".to_string(),
            };
            let _ = write!(self.out, "{name}_bucket");
            write_labels(&mut self.out, labels, Some(&le));
            let _ = writeln!(self.out, " {cum}");
            total = cum;
        }
        let _ = write!(self.out, "{name}_sum");
        write_labels(&mut self.out, labels, None);
        self.out.push(' ');
        write_value(&mut self.out, h.sum_ns as f64 / 1e9);
        self.out.push('\n');
        let _ = write!(self.out, "{name}_count");
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {total}");
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// A bucket bound in seconds, written exactly (`0.00001`, `2.5`, `60`).
fn seconds(ns: u64) -> String {
    let whole = ns / 1_000_000_000;
    let frac = ns % 1_000_000_000;
    if frac == 0 {
        return whole.to_string();
    }
    let digits = format!("{frac:09}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

fn write_labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (k, v) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        for ch in v.chars() {
            match ch {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

fn write_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 9.0e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Histogram;

    #[test]
    fn families_samples_and_escaping() {
        let mut p = Page::new();
        p.family("gregor_x_total", Kind::Counter, "Things.\nCounted \\ here.");
        p.sample("gregor_x_total", &[("topic", "a\"b\\c\nd")], 3.0);
        p.sample("gregor_x_total", &[], 0.5);
        p.single("gregor_up", Kind::Gauge, "Up.", 1.0);
        let text = p.finish();
        assert_eq!(
            text,
            "# HELP gregor_x_total Things.\\nCounted \\\\ here.\n\
             # TYPE gregor_x_total counter\n\
             gregor_x_total{topic=\"a\\\"b\\\\c\\nd\"} 3\n\
             gregor_x_total 0.5\n\
             # HELP gregor_up Up.\n\
             # TYPE gregor_up gauge\n\
             gregor_up 1\n"
        );
    }

    #[test]
    fn histograms_are_cumulative_in_seconds() {
        let h = Histogram::default();
        h.record_ns(20_000);
        h.record_ns(3_000_000_000);
        let mut p = Page::new();
        p.family("lat_seconds", Kind::Histogram, "Latency.");
        p.histogram("lat_seconds", &[("api", "Produce")], &h.sample());
        let text = p.finish();
        assert!(text.contains("lat_seconds_bucket{api=\"Produce\",le=\"0.00001\"} 0\n"));
        assert!(text.contains("lat_seconds_bucket{api=\"Produce\",le=\"0.000025\"} 1\n"));
        assert!(text.contains("lat_seconds_bucket{api=\"Produce\",le=\"2.5\"} 1\n"));
        assert!(text.contains("lat_seconds_bucket{api=\"Produce\",le=\"5\"} 2\n"));
        assert!(text.contains("lat_seconds_bucket{api=\"Produce\",le=\"+Inf\"} 2\n"));
        assert!(text.contains("lat_seconds_sum{api=\"Produce\"} 3.00002\n"));
        assert!(text.contains("lat_seconds_count{api=\"Produce\"} 2\n"));
    }

    #[test]
    #[should_panic(expected = "declared twice")]
    fn a_family_is_declared_once() {
        let mut p = Page::new();
        p.family("a", Kind::Gauge, "A.");
        p.family("a", Kind::Gauge, "A.");
    }
}
