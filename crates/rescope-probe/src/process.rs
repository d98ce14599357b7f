//! The Process topology: one node per process, from the walker's snapshot.

use rescope_report::{
    MetadataTemplate, Metric, MetricTemplate, Node, Report, Str, TopologyKind, id,
};

use crate::config::ProbeConfig;
use crate::reporter::{Reporter, ReporterError, Tick};
use crate::sys::proc::ProcFs;

/// Reports every process of the walker's snapshot (kernel threads and zombies
/// included, as Scope does; the app hides unconnected processes by default).
#[derive(Debug)]
pub struct ProcessReporter {
    host_id: String,
    cpus: f64,
    fs: ProcFs,
    mem_total: f64,
    ticks_since_mem: u32,
    buf: Vec<u8>,
}

impl ProcessReporter {
    pub fn new(config: &ProbeConfig) -> Self {
        let cpus = nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN)
            .ok()
            .flatten()
            .filter(|n| *n > 0)
            .unwrap_or(1) as f64;
        ProcessReporter {
            host_id: config.hostname.clone(),
            cpus,
            fs: ProcFs::new(&config.proc_root),
            mem_total: 0.0,
            ticks_since_mem: u32::MAX,
            buf: Vec::new(),
        }
    }
}

/// The Process topology's templates, as Scope's probe defines them.
pub fn process_presentation(report: &mut Report) {
    let t = report.topology_mut(TopologyKind::Process);
    for (id, label, data_type, priority) in [
        ("pid", "PID", "number", 1.0),
        ("cmdline", "Command", "", 2.0),
        ("ppid", "Parent PID", "number", 3.0),
        ("threads", "# Threads", "number", 4.0),
    ] {
        t.metadata_templates.insert(
            Str::new(id),
            MetadataTemplate::new(id, label, data_type, priority, "latest"),
        );
    }
    for (id, label, format, priority) in [
        ("process_cpu_usage_percent", "CPU", "percent", 1.0),
        ("process_memory_usage_bytes", "Memory", "filesize", 2.0),
        ("open_files_count", "Open files", "integer", 3.0),
    ] {
        t.metric_templates.insert(
            Str::new(id),
            MetricTemplate::new(id, label, format, "", priority),
        );
    }
}

impl Reporter for ProcessReporter {
    fn name(&self) -> &'static str {
        "process"
    }

    fn report(&mut self, tick: &Tick) -> Result<Report, ReporterError> {
        let now = tick.now;
        if self.ticks_since_mem >= 60 {
            self.mem_total = self
                .fs
                .meminfo(&mut self.buf)
                .map(|m| m.total as f64)
                .unwrap_or(0.0);
            self.ticks_since_mem = 0;
        }
        self.ticks_since_mem += 1;
        let mut report = Report::empty();
        process_presentation(&mut report);
        let topology = report.topology_mut(TopologyKind::Process);
        let mut number = itoa_buffer();
        for p in tick.procs.processes.values() {
            let node_id = id::process_id(&self.host_id, p.pid);
            let mut node = Node::new(node_id)
                .with_latest("pid", now, number.format(p.pid))
                .with_latest("ppid", now, number.format(p.ppid))
                .with_latest("name", now, p.name.clone())
                .with_latest("cmdline", now, p.cmdline.clone())
                .with_latest("threads", now, number.format(p.threads));
            if let Some(cpu) = p.cpu_percent {
                node.metrics.insert(
                    "process_cpu_usage_percent",
                    Metric::single(now, cpu, 100.0 * self.cpus),
                );
            }
            let mem_cap = if self.mem_total > 0.0 {
                self.mem_total
            } else {
                u64::MAX as f64
            };
            node.metrics.insert(
                "process_memory_usage_bytes",
                Metric::single(now, p.rss_bytes as f64, mem_cap),
            );
            if !p.kernel_thread {
                let limit = p.open_files_limit.map_or(0.0, |l| l as f64);
                node.metrics.insert(
                    "open_files_count",
                    Metric::single(now, p.open_files as f64, limit),
                );
            }
            topology.nodes.insert(node.id.clone(), node);
        }
        Ok(report)
    }
}

/// Formats small integers into interned strings without a temporary `String`.
struct NumberFormatter {
    buf: String,
}

fn itoa_buffer() -> NumberFormatter {
    NumberFormatter {
        buf: String::with_capacity(12),
    }
}

impl NumberFormatter {
    fn format(&mut self, n: u32) -> Str {
        use std::fmt::Write;
        self.buf.clear();
        let _ = write!(self.buf, "{n}");
        Str::new(&self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::walker::ProcessWalker;
    use rescope_report::GoTime;
    use std::sync::Arc;

    #[test]
    fn reports_this_test_process_with_its_metrics() {
        let config = ProbeConfig::new("testhost");
        let mut walker = ProcessWalker::new("/proc", false);
        let mut reporter = ProcessReporter::new(&config);
        walker.walk(GoTime::now()).expect("walk");
        std::thread::sleep(std::time::Duration::from_millis(20));
        let tick = Tick {
            now: GoTime::now(),
            procs: Arc::new(walker.walk(GoTime::now()).expect("walk")),
        };
        let report = reporter.report(&tick).expect("report");
        let me = std::process::id();
        let node = &report[TopologyKind::Process].nodes[format!("testhost;{me}").as_str()];
        assert_eq!(
            node.latest_value("pid").map(|v| v.to_string()),
            Some(me.to_string())
        );
        assert!(node.latest_value("cmdline").is_some_and(|c| !c.is_empty()));
        for m in [
            "process_cpu_usage_percent",
            "process_memory_usage_bytes",
            "open_files_count",
        ] {
            assert!(node.metrics.contains_key(m), "{m}");
        }
        let cpu = &node.metrics.get("process_cpu_usage_percent").expect("cpu");
        assert!(cpu.max >= 100.0);
        assert!(report[TopologyKind::Process].nodes.len() > 1);
    }
}
