//! The probe's own metrics, served as Prometheus text on `/metrics`.

use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

fn duration_histogram() -> Histogram {
    // 100 µs to ~3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 15))
}

fn labels(key: &str, value: &str) -> Labels {
    vec![(key.to_string(), value.to_string())]
}

/// Counters and timings of the probe itself.
#[derive(Debug)]
pub struct SelfMetrics {
    registry: Registry,
    reporter_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    reporter_errors: Family<Labels, Counter>,
    spy_seconds: Histogram,
    report_bytes: Family<Labels, Gauge>,
    report_nodes: Family<Labels, Gauge>,
    published: Family<Labels, Counter>,
    publish_errors: Family<Labels, Counter>,
    dropped: Family<Labels, Counter>,
    plugin_errors: Family<Labels, Counter>,
    encode_lock: Mutex<()>,
}

impl Default for SelfMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl SelfMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("rescope_probe");
        let reporter_seconds = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram as fn() -> Histogram,
        );
        let reporter_errors = Family::<Labels, Counter>::default();
        let spy_seconds = duration_histogram();
        let report_bytes = Family::<Labels, Gauge>::default();
        let report_nodes = Family::<Labels, Gauge>::default();
        let published = Family::<Labels, Counter>::default();
        let publish_errors = Family::<Labels, Counter>::default();
        let dropped = Family::<Labels, Counter>::default();
        let plugin_errors = Family::<Labels, Counter>::default();
        registry.register(
            "reporter_duration_seconds",
            "Time each reporter took per spy tick",
            reporter_seconds.clone(),
        );
        registry.register(
            "reporter_errors",
            "Spy ticks in which a reporter failed",
            reporter_errors.clone(),
        );
        registry.register(
            "spy_duration_seconds",
            "Time one spy tick took, all reporters and tagging",
            spy_seconds.clone(),
        );
        registry.register(
            "report_size_bytes",
            "Size of the last published report, by kind (full, delta, shortcut) after gzip",
            report_bytes.clone(),
        );
        registry.register(
            "report_nodes",
            "Nodes in the last spy report, by topology",
            report_nodes.clone(),
        );
        registry.register(
            "reports_published",
            "Reports accepted by an app",
            published.clone(),
        );
        registry.register(
            "publish_errors",
            "Failed attempts to publish to an app",
            publish_errors.clone(),
        );
        registry.register(
            "reports_dropped",
            "Reports dropped because an app could not keep up",
            dropped.clone(),
        );
        registry.register(
            "plugin_errors",
            "Failed plugin requests",
            plugin_errors.clone(),
        );
        SelfMetrics {
            registry,
            reporter_seconds,
            reporter_errors,
            spy_seconds,
            report_bytes,
            report_nodes,
            published,
            publish_errors,
            dropped,
            plugin_errors,
            encode_lock: Mutex::new(()),
        }
    }

    pub fn reporter_ran(&self, reporter: &str, seconds: f64, ok: bool) {
        let l = labels("reporter", reporter);
        self.reporter_seconds.get_or_create(&l).observe(seconds);
        if !ok {
            self.reporter_errors.get_or_create(&l).inc();
        }
    }

    pub fn spy_ran(&self, seconds: f64) {
        self.spy_seconds.observe(seconds);
    }

    pub fn report_nodes(&self, topology: &str, nodes: usize) {
        self.report_nodes
            .get_or_create(&labels("topology", topology))
            .set(nodes as i64);
    }

    /// `kind` is `full`, `delta` or `shortcut`.
    pub fn report_size(&self, kind: &str, bytes: usize) {
        self.report_bytes
            .get_or_create(&labels("kind", kind))
            .set(bytes as i64);
    }

    pub fn published(&self, app: &str) {
        self.published.get_or_create(&labels("app", app)).inc();
    }

    pub fn publish_failed(&self, app: &str) {
        self.publish_errors.get_or_create(&labels("app", app)).inc();
    }

    pub fn dropped(&self, app: &str) {
        self.dropped.get_or_create(&labels("app", app)).inc();
    }

    pub fn plugin_failed(&self, plugin: &str) {
        self.plugin_errors
            .get_or_create(&labels("plugin", plugin))
            .inc();
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let _guard = self.encode_lock.lock();
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_encode_with_labels() {
        let m = SelfMetrics::new();
        m.reporter_ran("process", 0.002, true);
        m.reporter_ran("endpoint", 0.01, false);
        m.publish_failed("http://127.0.0.1:4040");
        m.report_size("full", 12345);
        let text = m.encode();
        assert!(
            text.contains("rescope_probe_reporter_duration_seconds_count{reporter=\"process\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("rescope_probe_reporter_errors_total{reporter=\"endpoint\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("rescope_probe_publish_errors_total{app=\"http://127.0.0.1:4040\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("rescope_probe_report_size_bytes{kind=\"full\"} 12345"),
            "{text}"
        );
    }
}
