//! The `http-statistics` plugin: for every process that serves HTTP/1.x, the
//! requests it reads per second, the responses it writes per second by status code,
//! and the time from reading a request to writing its response (p50 and p99). The
//! numbers come from a BPF program on the read/write syscall exit tracepoints, so
//! no application is changed or restarted; they are shown on the probe's process
//! nodes.
//!
//! - [`probe`] loads and reads the BPF side;
//! - [`counters`] decodes its maps;
//! - [`tracker`] turns counter snapshots into rates, percentiles and totals;
//! - [`HttpStatistics`] puts those on process nodes.

pub mod counters;
pub mod probe;
pub mod tracker;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rescope_plugin::{
    DataType, MetadataTemplate, MetricTemplate, Plugin, PluginError, PluginServer, ReportBuilder,
    ServeError, Spec, TableTemplate, TopologyKind,
};
use tracing::{error, info, warn};

use crate::probe::{HttpProbe, ProbeError};
use crate::tracker::{ProcessView, Tracker};

pub const PLUGIN_ID: &str = "http-statistics";

/// Metric: requests read per second.
pub const REQUESTS_PER_SECOND: &str = "http_requests_per_second";
/// Metric: time from request to response, median, in milliseconds.
pub const LATENCY_P50: &str = "http_latency_p50_ms";
/// Metric: time from request to response, 99th percentile, in milliseconds.
pub const LATENCY_P99: &str = "http_latency_p99_ms";
/// Metadata: requests read since the plugin started.
pub const REQUESTS_TOTAL: &str = "http_requests_total";
/// Table of responses written since the plugin started, one row per status code
/// (`latest` keys `http_responses_total_<code>`).
pub const RESPONSES_TOTAL_TABLE: &str = "http_responses_total_";

/// Metric: responses with status `code` written per second.
pub fn responses_per_second(code: u16) -> String {
    format!("http_responses_{code}_per_second")
}

/// Where and how the plugin runs.
#[derive(Debug, Clone)]
pub struct Config {
    pub plugins_root: PathBuf,
    /// An exact socket path instead of `<root>/http-statistics/http-statistics.sock`.
    pub socket: Option<PathBuf>,
    /// The host ID the probe uses (its host name).
    pub host_id: String,
    /// Where procfs is mounted, to notice processes that exited.
    pub proc_root: PathBuf,
    /// How often the kernel's counters are read; rates are per this interval.
    pub interval: Duration,
    /// Latency percentiles cover this many intervals.
    pub latency_window: usize,
    /// A BPF object to load instead of the built-in one (to try a rebuilt object).
    pub bpf_object: Option<PathBuf>,
    pub limits: probe::Limits,
}

/// The plugin's view of the kernel's counters, refreshed by [`Sampler::sample`].
#[derive(Debug)]
struct Latest {
    /// Why there are no numbers, when the BPF side is not working.
    problem: Option<String>,
    views: Vec<ProcessView>,
}

/// Reads the kernel's counters every interval and keeps what the report shows.
#[derive(Debug)]
pub struct Sampler {
    probe: Mutex<Option<HttpProbe>>,
    tracker: Mutex<(Tracker, Instant)>,
    latest: Mutex<Latest>,
    proc_root: PathBuf,
}

impl Sampler {
    /// A sampler over a loaded probe, or one that only reports why there is none.
    pub fn new(
        probe: Result<HttpProbe, ProbeError>,
        proc_root: impl Into<PathBuf>,
        latency_window: usize,
    ) -> Self {
        let (probe, problem) = match probe {
            Ok(p) => (Some(p), None),
            Err(e) => (None, Some(format!("the BPF program is not running: {e}"))),
        };
        Sampler {
            probe: Mutex::new(probe),
            tracker: Mutex::new((Tracker::new(latency_window), Instant::now())),
            latest: Mutex::new(Latest {
                problem,
                views: Vec::new(),
            }),
            proc_root: proc_root.into(),
        }
    }

    /// Reads the counters, drops processes that exited (here and in the kernel's
    /// maps) and updates the rates.
    pub fn sample(&self) {
        let Ok(mut probe) = self.probe.lock() else {
            return;
        };
        let Some(probe) = probe.as_mut() else {
            return;
        };
        let mut snapshot = match probe.snapshot() {
            Ok(s) => s,
            Err(e) => {
                self.set_problem(Some(format!("reading the BPF counters: {e}")));
                return;
            }
        };
        let mut exited: Vec<u32> = snapshot
            .processes
            .keys()
            .chain(snapshot.statuses.keys().map(|(tgid, _)| tgid))
            .copied()
            .filter(|tgid| !self.proc_root.join(tgid.to_string()).exists())
            .collect();
        exited.sort_unstable();
        exited.dedup();
        if let Err(e) = probe.forget(&exited, &snapshot) {
            warn!(error = %e, "cannot delete the counters of exited processes");
        }
        snapshot
            .processes
            .retain(|t, _| exited.binary_search(t).is_err());
        snapshot
            .statuses
            .retain(|(t, _), _| exited.binary_search(t).is_err());

        let views = match self.tracker.lock() {
            Ok(mut guard) => {
                let (tracker, last) = &mut *guard;
                let now = Instant::now();
                tracker.update(now.duration_since(*last), &snapshot);
                *last = now;
                tracker.views()
            }
            Err(_) => return,
        };
        if let Ok(mut latest) = self.latest.lock() {
            if latest.problem.take().is_some() {
                info!("reading the BPF counters works again");
            }
            latest.views = views;
        }
    }

    fn set_problem(&self, problem: Option<String>) {
        if let Ok(mut latest) = self.latest.lock() {
            if latest.problem != problem
                && let Some(p) = &problem
            {
                error!(problem = %p, "no HTTP statistics");
            }
            latest.problem = problem;
        }
    }

    /// What the report shows, or why there is nothing to show.
    pub fn latest(&self) -> Result<Vec<ProcessView>, String> {
        let latest = self
            .latest
            .lock()
            .map_err(|_| "the sampler's state is poisoned".to_string())?;
        match &latest.problem {
            Some(p) => Err(p.clone()),
            None => Ok(latest.views.clone()),
        }
    }
}

/// The plugin: puts each process's HTTP numbers on its process node.
#[derive(Debug)]
pub struct HttpStatistics {
    host_id: String,
    sampler: Arc<Sampler>,
}

impl HttpStatistics {
    pub fn new(host_id: impl Into<String>, sampler: Arc<Sampler>) -> Self {
        HttpStatistics {
            host_id: host_id.into(),
            sampler,
        }
    }

    pub fn spec() -> Spec {
        Spec::new(PLUGIN_ID, "HTTP statistics").description(
            "HTTP/1.x requests and responses per second and request latency of each \
             process, from eBPF syscall tracepoints",
        )
    }
}

impl Plugin for HttpStatistics {
    fn report(&self, r: &mut ReportBuilder) -> Result<(), PluginError> {
        let views = self.sampler.latest()?;
        write_report(r, &self.host_id, &views);
        Ok(())
    }
}

/// Fills `r` with the templates and one process node per view.
pub fn write_report(r: &mut ReportBuilder, host_id: &str, views: &[ProcessView]) {
    let codes: BTreeSet<u16> = views
        .iter()
        .flat_map(|v| v.responses_per_second.keys().copied())
        .collect();
    let mut topology = r
        .topology(TopologyKind::Process)
        .metric_template(MetricTemplate::new(REQUESTS_PER_SECOND, "HTTP req/s").priority(20.0))
        .metric_template(MetricTemplate::new(LATENCY_P50, "HTTP latency p50 (ms)").priority(21.0))
        .metric_template(MetricTemplate::new(LATENCY_P99, "HTTP latency p99 (ms)").priority(21.1))
        .metadata_template(
            MetadataTemplate::new(REQUESTS_TOTAL, "HTTP requests")
                .data_type(DataType::Number)
                .priority(20.0),
        )
        .table_template(TableTemplate::property_list(
            RESPONSES_TOTAL_TABLE,
            "HTTP responses by status",
        ));
    for code in &codes {
        topology = topology.metric_template(
            MetricTemplate::new(&responses_per_second(*code), &format!("HTTP {code}/s"))
                .priority(22.0 + f64::from(*code) / 1000.0),
        );
    }
    for v in views {
        let mut node = r
            .process(host_id, v.pid)
            .metric(REQUESTS_PER_SECOND, v.requests_per_second, 0.0)
            .latest(REQUESTS_TOTAL, v.requests_total.to_string());
        for (code, rate) in &v.responses_per_second {
            node = node.metric(&responses_per_second(*code), *rate, 0.0);
        }
        for (code, total) in &v.responses_total {
            node = node.table_row(RESPONSES_TOTAL_TABLE, &code.to_string(), total.to_string());
        }
        if let (Some(p50), Some(p99)) = (v.latency_p50_ms, v.latency_p99_ms) {
            node.metric(LATENCY_P50, p50, 0.0)
                .metric(LATENCY_P99, p99, 0.0);
        }
    }
}

/// Loads the BPF program (or notes why it could not), then serves the plugin until
/// `shutdown` completes (the binary passes SIGINT/SIGTERM). Without BPF the plugin
/// still serves, answering `/report` with 500 and the reason, so the probe lists
/// it with an error status.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let probe = load_probe(config.bpf_object.as_deref(), &config.limits);
    match &probe {
        Ok(_) => info!(
            tracepoints = ?probe::PROGRAMS.map(|(_, t)| t),
            "BPF program attached"
        ),
        Err(e) => error!(
            error = %e,
            "cannot load the BPF program; serving an error status until restarted"
        ),
    }
    let sampler = Arc::new(Sampler::new(
        probe,
        &config.proc_root,
        config.latency_window,
    ));
    let plugin = HttpStatistics::new(config.host_id.clone(), sampler.clone());
    let mut server =
        PluginServer::new(HttpStatistics::spec(), plugin).plugins_root(&config.plugins_root);
    if let Some(path) = &config.socket {
        server = server.socket_path(path);
    }
    let bound = server.bind()?;
    info!(socket = %bound.socket_path().display(), "serving");
    let sampling = rescope_plugin::every(config.interval, move || sampler.sample());
    let served = bound.serve_until(shutdown).await;
    sampling.stop();
    served
}

fn load_probe(
    object: Option<&std::path::Path>,
    limits: &probe::Limits,
) -> Result<HttpProbe, ProbeError> {
    let self_tgid = std::process::id();
    match object {
        None => HttpProbe::load_with(probe::BPF_OBJECT, self_tgid, limits),
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| ProbeError::Load {
                message: format!("reading {}: {e}", path.display()),
                hint: "",
            })?;
            HttpProbe::load_with(&bytes, self_tgid, limits)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn view(pid: u32) -> ProcessView {
        ProcessView {
            pid,
            requests_per_second: 12.5,
            responses_per_second: BTreeMap::from([(200, 10.0), (404, 2.5)]),
            latency_p50_ms: Some(0.8),
            latency_p99_ms: Some(4.0),
            requests_total: 125,
            responses_total: BTreeMap::from([(200, 100), (404, 25)]),
        }
    }

    fn metric(r: &rescope_plugin::model::Report, node: &str, id: &str) -> Option<f64> {
        r[TopologyKind::Process]
            .nodes
            .get(node)?
            .metrics
            .get(id)?
            .last()
            .map(|s| s.value)
    }

    #[test]
    fn each_process_gets_rates_latency_and_totals_on_its_probe_node_id() {
        let mut r = ReportBuilder::new();
        write_report(&mut r, "web-1", &[view(4242)]);
        let report = r.into_report();
        let node_id = "web-1;4242";
        assert_eq!(metric(&report, node_id, REQUESTS_PER_SECOND), Some(12.5));
        assert_eq!(
            metric(&report, node_id, "http_responses_404_per_second"),
            Some(2.5)
        );
        assert_eq!(metric(&report, node_id, LATENCY_P99), Some(4.0));
        let node = &report[TopologyKind::Process].nodes[node_id];
        assert_eq!(
            node.latest.get(REQUESTS_TOTAL).map(|e| e.value.to_string()),
            Some("125".to_string())
        );
        assert_eq!(
            node.latest
                .get("http_responses_total_404")
                .map(|e| e.value.to_string()),
            Some("25".to_string())
        );
        let templates = &report[TopologyKind::Process].metric_templates;
        assert!(templates.contains_key("http_responses_200_per_second"));
        assert_eq!(
            templates
                .get("http_responses_404_per_second")
                .map(|t| t.label.to_string()),
            Some("HTTP 404/s".to_string())
        );
    }

    #[test]
    fn no_latency_metrics_without_answered_requests() {
        let mut v = view(1);
        v.latency_p50_ms = None;
        v.latency_p99_ms = None;
        let mut r = ReportBuilder::new();
        write_report(&mut r, "h", &[v]);
        let report = r.into_report();
        assert_eq!(metric(&report, "h;1", LATENCY_P50), None);
        assert_eq!(metric(&report, "h;1", REQUESTS_PER_SECOND), Some(12.5));
    }

    #[test]
    fn without_bpf_the_report_fails_with_the_reason() {
        let sampler = Arc::new(Sampler::new(Err(ProbeError::NoKernelBtf), "/proc", 10));
        sampler.sample();
        let plugin = HttpStatistics::new("h", sampler);
        let err = plugin
            .report(&mut ReportBuilder::new())
            .expect_err("no numbers without BPF");
        let text = err.to_string();
        assert!(text.contains("BPF program is not running"), "{text}");
        assert!(text.contains("CONFIG_DEBUG_INFO_BTF"), "{text}");
    }
}
