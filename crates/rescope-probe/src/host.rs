//! The Host topology: one node for this machine (protocol.md §2.12).

use rescope_report::{
    Control, GoTime, MetadataTemplate, Metric, MetricTemplate, Node, Report, Str, TopologyKind,
};

use crate::config::ProbeConfig;
use crate::reporter::{Reporter, ReporterError, Tick};
use crate::sys::ifaddr::Ipv4Addresses;
use crate::sys::proc::{CpuTimes, ProcFs};

/// The control that opens a shell on the host.
pub const HOST_EXEC: &str = "host_exec";

/// Reports this host: identity, kernel, uptime, local networks, CPU, memory, load.
#[derive(Debug)]
pub struct HostReporter {
    fs: ProcFs,
    hostname: String,
    host_node_id: String,
    probe_id: String,
    version: String,
    controls: bool,
    kernel_version: String,
    last_cpu: Option<CpuTimes>,
    buf: Vec<u8>,
    /// The address dump socket; `None` before the first tick, after it broke, or
    /// when it cannot be opened (then `getifaddrs` is used).
    addresses: Option<Ipv4Addresses>,
    addresses_failed: bool,
    address_buf: Vec<(std::net::Ipv4Addr, u8)>,
}

impl HostReporter {
    pub fn new(config: &ProbeConfig) -> Self {
        let kernel_version = nix::sys::utsname::uname()
            .map(|u| {
                format!(
                    "{} {}",
                    u.release().to_string_lossy(),
                    u.version().to_string_lossy()
                )
            })
            .unwrap_or_default();
        HostReporter {
            fs: ProcFs::new(&config.proc_root),
            hostname: config.hostname.clone(),
            host_node_id: config.host_node_id(),
            probe_id: config.probe_id.clone(),
            version: config.version.clone(),
            controls: !config.no_controls,
            kernel_version,
            last_cpu: None,
            buf: Vec::with_capacity(4096),
            addresses: None,
            addresses_failed: false,
            address_buf: Vec::new(),
        }
    }

    /// [`local_networks`], from one address dump rather than `getifaddrs` (which
    /// lists every link too); `getifaddrs` when the dump cannot be made.
    fn local_networks(&mut self) -> Vec<String> {
        if self.addresses.is_none() && !self.addresses_failed {
            match Ipv4Addresses::open() {
                Ok(a) => self.addresses = Some(a),
                Err(e) => {
                    tracing::debug!(error = %e, "no rtnetlink socket; using getifaddrs");
                    self.addresses_failed = true;
                }
            }
        }
        let Some(addresses) = self.addresses.as_mut() else {
            return local_networks();
        };
        self.address_buf.clear();
        if let Err(e) = addresses.read(&mut self.address_buf) {
            tracing::debug!(error = %e, "listing addresses failed; using getifaddrs");
            if addresses.is_broken() {
                self.addresses = None;
            }
            return local_networks();
        }
        let mut out: Vec<String> = self
            .address_buf
            .iter()
            .map(|(ip, prefix)| format!("{ip}/{prefix}"))
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// Addresses of this host's IPv4 interfaces with their prefix length, as Scope
/// reports them (`172.17.0.1/16`).
pub fn local_networks() -> Vec<String> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ifa in addrs {
        let (Some(addr), Some(mask)) = (ifa.address, ifa.netmask) else {
            continue;
        };
        let (Some(addr), Some(mask)) = (addr.as_sockaddr_in(), mask.as_sockaddr_in()) else {
            continue;
        };
        let prefix = u32::from(mask.ip()).count_ones();
        out.push(format!("{}/{prefix}", addr.ip()));
    }
    out.sort();
    out.dedup();
    out
}

fn metadata(
    id: &str,
    label: &str,
    data_type: &str,
    priority: f64,
    from: &str,
) -> (Str, MetadataTemplate) {
    (
        Str::new(id),
        MetadataTemplate::new(id, label, data_type, priority, from),
    )
}

fn metric(
    id: &str,
    label: &str,
    format: &str,
    group: &str,
    priority: f64,
) -> (Str, MetricTemplate) {
    (
        Str::new(id),
        MetricTemplate::new(id, label, format, group, priority),
    )
}

/// The Host topology's templates and controls, as Scope's probe defines them.
pub fn host_presentation(report: &mut Report, with_controls: bool) {
    let t = report.topology_mut(TopologyKind::Host);
    t.metadata_templates.extend([
        metadata("kernel_version", "Kernel version", "", 1.0, "latest"),
        metadata("uptime", "Uptime", "duration", 2.0, "latest"),
        metadata("host_name", "Hostname", "", 11.0, "latest"),
        metadata("os", "OS", "", 12.0, "latest"),
        metadata("local_networks", "Local networks", "", 13.0, "sets"),
        metadata("host_scope_version", "Scope version", "", 14.0, "latest"),
    ]);
    t.metric_templates.extend([
        metric("host_cpu_usage_percent", "CPU", "percent", "", 1.0),
        metric("host_mem_usage_bytes", "Memory", "filesize", "", 2.0),
        metric("load1", "Load (1m)", "", "load", 11.0),
    ]);
    if with_controls {
        t.controls.insert(
            Str::new(HOST_EXEC),
            Control {
                id: Str::new(HOST_EXEC),
                human: Str::new("Exec shell"),
                icon: Str::new("fa fa-terminal"),
                rank: 0,
                ..Default::default()
            },
        );
    }
}

impl Reporter for HostReporter {
    fn name(&self) -> &'static str {
        "host"
    }

    fn report(&mut self, tick: &Tick) -> Result<Report, ReporterError> {
        let now = tick.now;
        let io = |what: &str| {
            let what = what.to_string();
            move |source| ReporterError::Io { what, source }
        };
        let mut report = Report::empty();
        host_presentation(&mut report, self.controls);
        let mut node = Node::new(self.host_node_id.as_str())
            .with_latest("ts", now, now.to_rfc3339())
            .with_latest("host_name", now, self.hostname.as_str())
            .with_latest("os", now, std::env::consts::OS)
            .with_latest("kernel_version", now, self.kernel_version.as_str())
            .with_latest("host_scope_version", now, self.version.as_str())
            .with_latest(
                rescope_report::node::CONTROL_PROBE_ID,
                now,
                self.probe_id.as_str(),
            );
        if let Ok(uptime) = self.fs.uptime_secs(&mut self.buf) {
            node.set_latest("uptime", now, (uptime as u64).to_string());
        }
        if self.controls {
            node.set_latest(rescope_report::node::ACTIVE_CONTROLS, now, HOST_EXEC);
        }
        for net in self.local_networks() {
            node.sets.add("local_networks", net);
        }
        let load = self
            .fs
            .loadavg(&mut self.buf)
            .map_err(io("/proc/loadavg"))?;
        node.metrics
            .insert("load1", Metric::single(now, load[0], load[0]));
        let cpu = self.fs.cpu_times(&mut self.buf).map_err(io("/proc/stat"))?;
        if let Some(prev) = self.last_cpu {
            let total = cpu.total().saturating_sub(prev.total());
            let idle = cpu.idle_all().saturating_sub(prev.idle_all());
            if total > 0 {
                let busy = (total - idle.min(total)) as f64 / total as f64 * 100.0;
                node.metrics
                    .insert("host_cpu_usage_percent", Metric::single(now, busy, 100.0));
            }
        }
        self.last_cpu = Some(cpu);
        let mem = self
            .fs
            .meminfo(&mut self.buf)
            .map_err(io("/proc/meminfo"))?;
        let used = mem.total.saturating_sub(mem.available) as f64;
        node.metrics.insert(
            "host_mem_usage_bytes",
            Metric::single(now, used, mem.total as f64),
        );
        crate::health::add_to_host(&mut report, &mut node, now);
        report.topology_mut(TopologyKind::Host).add_node(node);
        Ok(report)
    }
}

/// Timestamps of host metadata are "now" each tick; this helper is shared by tests.
pub fn tick_at(now: GoTime) -> Tick {
    Tick {
        now,
        procs: std::sync::Arc::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_this_host_with_metrics_after_two_ticks() {
        let mut config = ProbeConfig::new("testhost");
        config.probe_id = "abc123".into();
        let mut r = HostReporter::new(&config);
        let first = r.report(&tick_at(GoTime::now())).expect("first tick");
        let node = &first[TopologyKind::Host].nodes["testhost;<host>"];
        assert!(
            !node.metrics.contains_key("host_cpu_usage_percent"),
            "no rate on the first tick"
        );
        std::thread::sleep(std::time::Duration::from_millis(30));
        let second = r.report(&tick_at(GoTime::now())).expect("second tick");
        let node = &second[TopologyKind::Host].nodes["testhost;<host>"];
        for key in [
            "ts",
            "host_name",
            "os",
            "kernel_version",
            "uptime",
            "host_scope_version",
            "control_probe_id",
            "active_controls",
        ] {
            assert!(node.latest.contains_key(key), "{key}");
        }
        assert_eq!(node.latest_value("os").map(Str::as_str), Some("linux"));
        assert_eq!(
            node.latest_value("control_probe_id").map(Str::as_str),
            Some("abc123")
        );
        assert!(
            node.sets
                .get("local_networks")
                .is_some_and(|s| s.contains("127.0.0.1/8"))
        );
        let cpu = node
            .metrics
            .get("host_cpu_usage_percent")
            .expect("cpu after two ticks");
        assert!((0.0..=100.0).contains(&cpu.samples[0].value));
        let mem = node.metrics.get("host_mem_usage_bytes").expect("memory");
        assert!(mem.max > 0.0 && mem.samples[0].value <= mem.max);
    }

    #[test]
    fn the_address_dump_gives_what_getifaddrs_gives() {
        let mut r = HostReporter::new(&ProbeConfig::new("h"));
        let dumped = r.local_networks();
        assert!(r.addresses.is_some(), "the rtnetlink socket opened");
        assert!(dumped.iter().any(|n| n == "127.0.0.1/8"), "{dumped:?}");
        assert_eq!(dumped, local_networks());
    }

    #[test]
    fn no_controls_means_no_host_exec() {
        let mut config = ProbeConfig::new("h");
        config.no_controls = true;
        let r = HostReporter::new(&config)
            .report(&tick_at(GoTime::now()))
            .expect("tick");
        assert!(r[TopologyKind::Host].controls.is_empty());
        assert!(
            !r[TopologyKind::Host].nodes["h;<host>"]
                .latest
                .contains_key("active_controls")
        );
    }
}
