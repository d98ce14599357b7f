//! The `iowait` plugin: the host's CPU IO wait or idle percentage, measured from
//! `/proc/stat` between one reading and the next, shown on the host node. Two
//! controls switch which of the two is reported; running one answers with a shortcut
//! report, so the graph changes at once.
//!
//! The plugin's shape (ID, controls, metric IDs) is that of Weave Scope's iowait
//! plugin, which ran `iostat`; this one reads the kernel's counters directly.

pub mod stat;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use rescope_plugin::{
    Control, ControlReply, ControlRequest, MetricTemplate, Plugin, PluginError, PluginServer,
    ReportBuilder, ServeError, Spec, TopologyKind,
};
use tracing::warn;

use crate::stat::{CpuPercent, CpuTimes, StatError};

pub const PLUGIN_ID: &str = "iowait";
/// The controls, with Scope's IDs.
pub const SWITCH_TO_IDLE: &str = "switchToIdle";
pub const SWITCH_TO_IOWAIT: &str = "switchToIOWait";

/// Which percentage is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Iowait,
    Idle,
}

impl Mode {
    /// The metric ID, which is also the template's.
    pub fn metric_id(self) -> &'static str {
        match self {
            Mode::Iowait => "iowait",
            Mode::Idle => "idle",
        }
    }

    /// The control offered in this mode: the one that switches to the other.
    pub fn offered_control(self) -> &'static str {
        match self {
            Mode::Iowait => SWITCH_TO_IDLE,
            Mode::Idle => SWITCH_TO_IOWAIT,
        }
    }
}

/// Where and how the plugin runs.
#[derive(Debug, Clone)]
pub struct Config {
    pub plugins_root: PathBuf,
    /// An exact socket path instead of `<root>/iowait/iowait.sock`.
    pub socket: Option<PathBuf>,
    /// The host ID the probe uses (its host name).
    pub host_id: String,
    /// Where procfs is mounted.
    pub proc_root: PathBuf,
    /// How often `/proc/stat` is read.
    pub interval: Duration,
    pub mode: Mode,
}

/// The latest percentages, from readings taken every [`Config::interval`].
#[derive(Debug)]
pub struct Sampler {
    proc_root: PathBuf,
    state: Mutex<SamplerState>,
}

#[derive(Debug)]
struct SamplerState {
    previous: Option<CpuTimes>,
    latest: Result<CpuPercent, StatError>,
}

impl Sampler {
    /// Takes a first reading, which gives the averages since boot.
    pub fn new(proc_root: impl Into<PathBuf>) -> Self {
        let sampler = Sampler {
            proc_root: proc_root.into(),
            state: Mutex::new(SamplerState {
                previous: None,
                latest: Err(StatError::NothingCounted),
            }),
        };
        sampler.sample();
        sampler
    }

    /// Reads `/proc/stat` and updates the percentages. A failed read replaces them
    /// with the error (logged when it first happens); the next good reading measures
    /// from the last good one.
    pub fn sample(&self) {
        let reading = CpuTimes::read(&self.proc_root);
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        match reading {
            Ok(now) => {
                let pct = match &state.previous {
                    Some(before) => CpuPercent::between(before, &now),
                    None => CpuPercent::since_boot(&now),
                };
                // No time counted (two readings in one tick): keep the last value.
                if let Some(pct) = pct {
                    state.latest = Ok(pct);
                }
                state.previous = Some(now);
            }
            Err(e) => {
                if state.latest.as_ref().err() != Some(&e) {
                    warn!(error = %e, "cannot measure CPU times");
                }
                state.latest = Err(e);
            }
        }
    }

    pub fn latest(&self) -> Result<CpuPercent, StatError> {
        match self.state.lock() {
            Ok(state) => state.latest.clone(),
            Err(_) => Err(StatError::Read {
                path: self.proc_root.join("stat"),
                message: "sampler state poisoned".into(),
            }),
        }
    }
}

/// The plugin: reports one percentage on the host node and switches between them.
#[derive(Debug)]
pub struct IoWait {
    host_id: String,
    sampler: std::sync::Arc<Sampler>,
    mode: Mutex<Mode>,
}

impl IoWait {
    pub fn new(host_id: impl Into<String>, sampler: std::sync::Arc<Sampler>, mode: Mode) -> Self {
        IoWait {
            host_id: host_id.into(),
            sampler,
            mode: Mutex::new(mode),
        }
    }

    pub fn spec() -> Spec {
        Spec::new(PLUGIN_ID, "IO wait")
            .description("CPU IO wait or idle time of the host, from /proc/stat")
            .controller()
    }

    pub fn mode(&self) -> Mode {
        self.mode.lock().map(|m| *m).unwrap_or(Mode::Iowait)
    }

    fn set_mode(&self, mode: Mode) {
        if let Ok(mut m) = self.mode.lock() {
            *m = mode;
        }
    }
}

impl Plugin for IoWait {
    fn report(&self, r: &mut ReportBuilder) -> Result<(), PluginError> {
        let pct = self.sampler.latest()?;
        let mode = self.mode();
        let value = match mode {
            Mode::Iowait => pct.iowait,
            Mode::Idle => pct.idle,
        };
        r.topology(TopologyKind::Host)
            .metric_template(
                MetricTemplate::new("iowait", "IO wait")
                    .percent()
                    .priority(0.1),
            )
            .metric_template(MetricTemplate::new("idle", "Idle").percent().priority(0.1))
            .control(Control::new(SWITCH_TO_IDLE, "Switch to idle", "fa fa-bed").rank(1))
            .control(
                Control::new(
                    SWITCH_TO_IOWAIT,
                    "Switch to IO wait",
                    "fa fa-hourglass-half",
                )
                .rank(1),
            );
        r.host(&self.host_id)
            .metric(mode.metric_id(), value, 100.0)
            .active_controls([mode.offered_control()]);
        Ok(())
    }

    fn control(&self, request: &ControlRequest) -> Result<ControlReply, PluginError> {
        let host_node = rescope_plugin::model::id::host_id(&self.host_id);
        if request.node_id != host_node {
            return Err(format!(
                "the iowait plugin controls only host {host_node:?}, not {:?}",
                request.node_id
            )
            .into());
        }
        let mode = match request.control.as_str() {
            SWITCH_TO_IDLE => Mode::Idle,
            SWITCH_TO_IOWAIT => Mode::Iowait,
            other => return Err(format!("unknown control {other:?}").into()),
        };
        self.set_mode(mode);
        tracing::info!(metric = mode.metric_id(), "switched");
        Ok(ControlReply::ok().with_fresh_report())
    }
}

/// Serves the plugin until `shutdown` completes (the binary passes SIGINT/SIGTERM).
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let sampler = std::sync::Arc::new(Sampler::new(&config.proc_root));
    let plugin = IoWait::new(config.host_id.clone(), sampler.clone(), config.mode);
    let mut server = PluginServer::new(IoWait::spec(), plugin).plugins_root(&config.plugins_root);
    if let Some(path) = &config.socket {
        server = server.socket_path(path);
    }
    let bound = server.bind()?;
    let sampling = rescope_plugin::every(config.interval, move || sampler.sample());
    let served = bound.serve_until(shutdown).await;
    sampling.stop();
    served
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

    /// A proc root whose `stat` the test replaces between readings.
    fn proc_dir(first: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_stat(dir.path(), first);
        dir
    }

    fn copy_stat(dir: &std::path::Path, fixture: &str) {
        std::fs::copy(format!("{FIXTURES}/{fixture}/stat"), dir.join("stat")).expect("copy");
    }

    fn metric(r: &rescope_plugin::model::Report, id: &str) -> Option<f64> {
        r[TopologyKind::Host].nodes["h;<host>"]
            .metrics
            .get(id)
            .and_then(|m| m.last())
            .map(|s| s.value)
    }

    #[test]
    fn the_report_carries_the_delta_percentage_and_the_switch_control() {
        let proc = proc_dir("busy-io/t0");
        let sampler = Arc::new(Sampler::new(proc.path()));
        copy_stat(proc.path(), "busy-io/t1");
        sampler.sample();
        let plugin = IoWait::new("h", sampler, Mode::Iowait);
        let mut r = ReportBuilder::new();
        plugin.report(&mut r).expect("report");
        let report = r.into_report();
        assert_eq!(metric(&report, "iowait"), Some(20.0));
        assert_eq!(metric(&report, "idle"), None, "one metric at a time");
        let node = &report[TopologyKind::Host].nodes["h;<host>"];
        assert_eq!(node.active_controls().collect::<Vec<_>>(), [SWITCH_TO_IDLE]);
        let host = &report[TopologyKind::Host];
        assert!(
            host.controls.contains_key(SWITCH_TO_IDLE)
                && host.controls.contains_key(SWITCH_TO_IOWAIT)
        );
        assert_eq!(
            host.metric_templates
                .get("iowait")
                .map(|t| t.format.as_str()),
            Some("percent")
        );
    }

    #[test]
    fn the_controls_switch_the_metric_and_answer_with_a_shortcut() {
        let proc = proc_dir("busy-io/t0");
        let sampler = Arc::new(Sampler::new(proc.path()));
        copy_stat(proc.path(), "busy-io/t1");
        sampler.sample();
        let plugin = IoWait::new("h", sampler, Mode::Iowait);
        let request = |control: &str| ControlRequest {
            node_id: "h;<host>".into(),
            control: control.into(),
            ..Default::default()
        };
        plugin.control(&request(SWITCH_TO_IDLE)).expect("switch");
        assert_eq!(plugin.mode(), Mode::Idle);
        let mut r = ReportBuilder::new();
        plugin.report(&mut r).expect("report");
        let report = r.into_report();
        assert_eq!(metric(&report, "idle"), Some(40.0));
        assert_eq!(
            report[TopologyKind::Host].nodes["h;<host>"]
                .active_controls()
                .collect::<Vec<_>>(),
            [SWITCH_TO_IOWAIT]
        );
        plugin
            .control(&request(SWITCH_TO_IOWAIT))
            .expect("switch back");
        assert_eq!(plugin.mode(), Mode::Iowait);

        let wrong_node = ControlRequest {
            node_id: "other;<host>".into(),
            ..request(SWITCH_TO_IDLE)
        };
        let err = plugin.control(&wrong_node).expect_err("another host");
        assert!(err.to_string().contains("controls only host"), "{err}");
        assert!(plugin.control(&request("reboot")).is_err());
        assert_eq!(
            plugin.mode(),
            Mode::Iowait,
            "failed controls change nothing"
        );
    }

    #[test]
    fn an_unreadable_proc_stat_fails_the_report_with_the_reason_then_recovers() {
        let proc = proc_dir("busy-io/t0");
        let sampler = Arc::new(Sampler::new(proc.path()));
        let plugin = IoWait::new("h", sampler.clone(), Mode::Iowait);
        std::fs::remove_file(proc.path().join("stat")).expect("rm");
        sampler.sample();
        let err = plugin
            .report(&mut ReportBuilder::new())
            .expect_err("no stat");
        assert!(err.to_string().starts_with("cannot read "), "{err}");
        copy_stat(proc.path(), "busy-io/t1");
        sampler.sample();
        plugin.report(&mut ReportBuilder::new()).expect("recovers");
    }

    #[test]
    fn this_machines_proc_stat_format_parses() {
        let sampler = Sampler::new(format!("{FIXTURES}/debian12-vm"));
        let pct = sampler.latest().expect("parses");
        assert!((0.0..=100.0).contains(&pct.iowait) && (0.0..=100.0).contains(&pct.idle));
        assert!(pct.iowait + pct.idle <= 100.0 + 1e-9);
    }
}
