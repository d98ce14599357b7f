//! `GET /metrics`: the app's own counters and the newest value of every node metric,
//! in Prometheus text format, so a fleet can be scraped from one place.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use rescope_report::Report;

use crate::collector::ReportKind;

/// Counters of the app itself.
#[derive(Debug, Default)]
pub struct AppMetrics {
    pub reports_full: AtomicU64,
    pub reports_delta: AtomicU64,
    pub reports_shortcut: AtomicU64,
    pub reports_rejected: AtomicU64,
    pub report_bytes: AtomicU64,
    pub renders: AtomicU64,
    pub render_micros: AtomicU64,
    pub websocket_clients: AtomicI64,
}

impl AppMetrics {
    pub fn received(&self, kind: ReportKind, bytes: usize) {
        let c = match kind {
            ReportKind::Full => &self.reports_full,
            ReportKind::Delta => &self.reports_delta,
            ReportKind::Shortcut => &self.reports_shortcut,
        };
        c.fetch_add(1, Ordering::Relaxed);
        self.report_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn rendered(&self, micros: u64) {
        self.renders.fetch_add(1, Ordering::Relaxed);
        self.render_micros.fetch_add(micros, Ordering::Relaxed);
    }
}

/// Escapes a Prometheus label value.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The whole exposition: app counters, probes, and node metrics.
pub fn exposition(m: &AppMetrics, report: &Report, probes: usize) -> String {
    let mut out = String::with_capacity(4096);
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    // One metric family: help, type, and its samples (`{labels} value` suffixes).
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let plain = |v: String| vec![(String::new(), v)];
    family(
        "rescope_app_reports_received_total",
        "counter",
        "Reports accepted from probes, by kind.",
        &[
            ("full", &m.reports_full),
            ("delta", &m.reports_delta),
            ("shortcut", &m.reports_shortcut),
        ]
        .map(|(kind, c)| (format!("{{kind=\"{kind}\"}}"), load(c).to_string())),
    );
    family(
        "rescope_app_reports_rejected_total",
        "counter",
        "Reports refused as malformed or too large.",
        &plain(load(&m.reports_rejected).to_string()),
    );
    family(
        "rescope_app_report_bytes_total",
        "counter",
        "Bytes of reports received, as sent.",
        &plain(load(&m.report_bytes).to_string()),
    );
    family(
        "rescope_app_renders_total",
        "counter",
        "Views rendered (cache misses).",
        &plain(load(&m.renders).to_string()),
    );
    family(
        "rescope_app_render_seconds_total",
        "counter",
        "Time spent rendering views.",
        &plain(format!("{:.6}", load(&m.render_micros) as f64 / 1e6)),
    );
    family(
        "rescope_app_websocket_clients",
        "gauge",
        "Open topology websockets.",
        &plain(m.websocket_clients.load(Ordering::Relaxed).to_string()),
    );
    family(
        "rescope_app_probes",
        "gauge",
        "Probes that reported within the window.",
        &plain(probes.to_string()),
    );
    let _ = writeln!(
        out,
        "# HELP rescope_node_metric The newest sample of every node metric the probes report."
    );
    let _ = writeln!(out, "# TYPE rescope_node_metric gauge");
    for (kind, topology) in report.topologies() {
        for (id, node) in &topology.nodes {
            for (metric, values) in node.metrics.iter() {
                let Some(last) = values.last() else { continue };
                if !last.value.is_finite() {
                    continue;
                }
                let _ = writeln!(
                    out,
                    "rescope_node_metric{{topology=\"{}\",node=\"{}\",metric=\"{}\"}} {}",
                    kind.name(),
                    escape(id),
                    escape(metric),
                    last.value
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rescope_report::{GoTime, Metric, Node, TopologyKind};

    #[test]
    fn node_metrics_are_labelled_and_escaped() {
        let mut r = Report::empty();
        let mut n = Node::new("odd\"id;<host>").with_topology("host");
        n.metrics
            .insert("cpu", Metric::single(GoTime::now(), 12.5, 100.0));
        r[TopologyKind::Host].add_node(n);
        let m = AppMetrics::default();
        m.received(ReportKind::Full, 100);
        let text = exposition(&m, &r, 1);
        assert!(
            text.contains(
                r#"rescope_node_metric{topology="host",node="odd\"id;<host>",metric="cpu"} 12.5"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"rescope_app_reports_received_total{kind="full"} 1"#));
        assert!(text.contains("rescope_app_probes 1"));
    }
}
