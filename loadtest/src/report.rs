//! The report of a run: `summary.md`, `result.json`, and SVG plots of throughput and latency
//! percentiles over time.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::scenario::Scenario;
use crate::stats::{Stats, Summary};

#[derive(Serialize)]
pub struct Result<'a> {
    pub scenario: &'a Scenario,
    pub server: &'a str,
    pub measured_from_sec: usize,
    pub measured_to_sec: usize,
    /// The measured window in Unix µs, to match with samples taken outside the tool (a
    /// server's CPU time).
    pub measured_from_unix_us: u64,
    pub measured_to_unix_us: u64,
    pub summary: Summary,
    /// Per second of the sending phase: sent, acked, delivered, errors, delivery p50/p99 (ms),
    /// presence changes seen, their p99 (ms), reconnects.
    pub seconds: Vec<[f64; 9]>,
}

pub fn per_second(stats: &Stats) -> Vec<[f64; 9]> {
    let q = |h: &hdrhistogram::Histogram<u64>, q: f64| {
        if h.is_empty() {
            0.0
        } else {
            h.value_at_quantile(q) as f64 / 1000.0
        }
    };
    stats
        .seconds
        .iter()
        .map(|s| {
            [
                s.sent as f64,
                s.acked as f64,
                s.delivered as f64,
                s.errors as f64,
                q(&s.delivery, 0.5),
                q(&s.delivery, 0.99),
                s.presence as f64,
                q(&s.presence_latency, 0.99),
                s.reconnects as f64,
            ]
        })
        .collect()
}

pub fn markdown(r: &Result<'_>) -> String {
    let s = &r.summary;
    let mut out = String::new();
    let _ = writeln!(out, "# telex-loadtest: {} against {}\n", r.scenario.name, r.server);
    let _ = writeln!(
        out,
        "{} driver; {} users × {} devices, {} contacts each; offered {} msg/s ({} B bodies), {} presence changes/s, \
         {} reconnects/s; measured seconds {}..{} of sending.\n",
        format!("{:?}", r.scenario.driver).to_lowercase(),
        r.scenario.users,
        r.scenario.devices,
        r.scenario.contacts,
        r.scenario.message_rate,
        r.scenario.message_bytes,
        r.scenario.presence_rate,
        r.scenario.reconnect_rate,
        r.measured_from_sec,
        r.measured_to_sec
    );
    let _ = writeln!(out, "| figure | value |\n|---|---:|");
    let rows = [
        ("logins/s", s.logins_per_sec),
        ("sent msgs/s", s.sent_per_sec),
        ("acked msgs/s", s.acked_per_sec),
        ("delivered msgs/s", s.delivered_per_sec),
        ("delivery p50 (ms)", s.delivery_p50_ms),
        ("delivery p99 (ms)", s.delivery_p99_ms),
        ("delivery max (ms)", s.delivery_max_ms),
        ("ack p50 (ms)", s.ack_p50_ms),
        ("ack p99 (ms)", s.ack_p99_ms),
        ("presence seen/s", s.presence_per_sec),
        ("presence p50 (ms)", s.presence_p50_ms),
        ("presence p99 (ms)", s.presence_p99_ms),
        ("reconnects/s", s.reconnects_per_sec),
        ("login p50 (ms)", s.login_p50_ms),
        ("login p99 (ms)", s.login_p99_ms),
    ];
    for (k, v) in rows {
        let _ = writeln!(out, "| {k} | {v:.1} |");
    }
    if s.errors.is_empty() {
        let _ = writeln!(out, "\nNo errors.");
    } else {
        let _ = writeln!(out, "\n| error | count |\n|---|---:|");
        for (k, v) in &s.errors {
            let _ = writeln!(out, "| {k} | {v} |");
        }
    }
    let _ = writeln!(out, "\n![throughput](throughput.svg)\n\n![latency](latency.svg)");
    out
}

/// A line chart: one polyline per series over seconds, with axes and a legend.
pub fn svg(title: &str, unit: &str, series: &[(&str, &str, Vec<f64>)]) -> String {
    // A series that stayed at zero (no presence in a chat run, say) is left out.
    let series: Vec<_> = series.iter().filter(|s| s.2.iter().any(|v| *v != 0.0)).collect();
    let (w, h, left, bottom, top, right) = (720.0, 360.0, 60.0, 40.0, 30.0, 150.0);
    let n = series.iter().map(|s| s.2.len()).max().unwrap_or(0).max(2);
    let max = series.iter().flat_map(|s| s.2.iter().copied()).fold(0.0_f64, f64::max).max(1e-9) * 1.1;
    let x = |i: usize| left + (w - left - right) * i as f64 / (n - 1) as f64;
    let y = |v: f64| h - bottom - (h - bottom - top) * v / max;
    let mut out = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif' font-size='12'>\
         <rect width='100%' height='100%' fill='white'/>\
         <text x='{left}' y='18' font-size='14'>{title}</text>\
         <line x1='{left}' y1='{}' x2='{}' y2='{}' stroke='black'/>\
         <line x1='{left}' y1='{top}' x2='{left}' y2='{}' stroke='black'/>\
         <text x='{}' y='{}'>seconds</text><text x='4' y='{top}'>{max:.0} {unit}</text><text x='40' y='{}'>0</text>",
        h - bottom,
        w - right,
        h - bottom,
        h - bottom,
        w - right - 50.0,
        h - 8.0,
        h - bottom
    );
    for (k, (name, color, values)) in series.iter().enumerate() {
        let points: Vec<String> = values.iter().enumerate().map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v))).collect();
        let _ = write!(out, "<polyline fill='none' stroke='{color}' stroke-width='2' points='{}'/>", points.join(" "));
        let ly = top + 16.0 * k as f64;
        let _ = write!(
            out,
            "<line x1='{}' y1='{ly}' x2='{}' y2='{ly}' stroke='{color}' stroke-width='2'/><text x='{}' y='{}'>{name}</text>",
            w - right + 10.0,
            w - right + 30.0,
            w - right + 35.0,
            ly + 4.0
        );
    }
    out.push_str("</svg>\n");
    out
}

/// Writes the report files into `dir`.
pub fn write(dir: &Path, r: &Result<'_>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("result.json"), serde_json::to_vec_pretty(r)?)?;
    std::fs::write(dir.join("summary.md"), markdown(r))?;
    let col = |c: usize| r.seconds.iter().map(|s| s[c]).collect::<Vec<f64>>();
    let throughput = svg(
        "throughput",
        "msg/s",
        &[
            ("sent", "#1f77b4", col(0)),
            ("acked", "#2ca02c", col(1)),
            ("delivered", "#ff7f0e", col(2)),
            ("presence seen", "#9467bd", col(6)),
            ("reconnects", "#8c564b", col(8)),
            ("errors", "#d62728", col(3)),
        ],
    );
    std::fs::write(dir.join("throughput.svg"), throughput)?;
    let latency = svg(
        "latency",
        "ms",
        &[
            ("delivery p50", "#1f77b4", col(4)),
            ("delivery p99", "#d62728", col(5)),
            ("presence p99", "#9467bd", col(7)),
        ],
    );
    std::fs::write(dir.join("latency.svg"), latency)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_has_one_line_per_series() {
        let s = svg("t", "ms", &[("a", "red", vec![1.0, 2.0, 3.0]), ("b", "blue", vec![0.0, 1.0])]);
        assert_eq!(s.matches("<polyline").count(), 2);
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
    }
}
