//! The Process topology: one node per process, from the walker's snapshot.

use std::collections::HashMap;

use rescope_report::{
    GoTime, MetadataTemplate, Metric, MetricTemplate, Node, Report, Str, TopologyKind, id,
};

use crate::config::ProbeConfig;
use crate::kept::NodeChanges;
use crate::reporter::{Reporter, ReporterError, Tick};
use crate::sys::proc::ProcFs;
use crate::walker::ProcessInfo;

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
    /// For [`Reporter::report_changes`]: each process's node ID and what its node was
    /// last sent from; `None` when the receiver needs the whole topology.
    sent: Option<HashMap<u32, (Str, Facts)>>,
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
            sent: None,
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
        self.sent = None;
        let mem_cap = self.mem_cap();
        let now = tick.now;
        let mut report = Report::empty();
        process_presentation(&mut report);
        let topology = report.topology_mut(TopologyKind::Process);
        let mut number = itoa_buffer();
        for p in tick.procs.processes.values() {
            let node = self.node(p, mem_cap, now, &mut number);
            topology.nodes.insert(node.id.clone(), node);
        }
        Ok(report)
    }

    fn report_changes(
        &mut self,
        tick: &Tick,
    ) -> Result<(Report, Option<NodeChanges>), ReporterError> {
        let mem_cap = self.mem_cap();
        let now = tick.now;
        let mut report = Report::empty();
        process_presentation(&mut report);
        let procs = &tick.procs.processes;
        let mut number = itoa_buffer();
        let mut sent = self.sent.take();
        let changes = match sent.as_mut() {
            None => {
                let mut all = HashMap::with_capacity(procs.len());
                let nodes: Vec<Node> = procs
                    .values()
                    .map(|p| {
                        let node = self.node(p, mem_cap, now, &mut number);
                        all.insert(p.pid, (node.id.clone(), Facts::of(p, mem_cap)));
                        node
                    })
                    .collect();
                sent = Some(all);
                NodeChanges::whole(TopologyKind::Process, nodes)
            }
            Some(sent) => {
                let mut changes = NodeChanges::none(TopologyKind::Process, procs.len());
                sent.retain(|pid, (id, _)| {
                    let alive = procs.contains_key(pid);
                    if !alive {
                        changes.nodes.insert(id.clone(), None);
                    }
                    alive
                });
                for p in procs.values() {
                    let facts = Facts::of(p, mem_cap);
                    if let Some((_, known)) = sent.get(&p.pid)
                        && *known == facts
                    {
                        continue;
                    }
                    let node = self.node(p, mem_cap, now, &mut number);
                    sent.insert(p.pid, (node.id.clone(), facts));
                    changes.nodes.insert(node.id.clone(), Some(node));
                }
                changes
            }
        };
        self.sent = sent;
        Ok((report, Some(changes)))
    }
}

impl ProcessReporter {
    /// The memory metric's capacity, the host's memory read again every 60 ticks.
    fn mem_cap(&mut self) -> f64 {
        if self.ticks_since_mem >= 60 {
            self.mem_total = self
                .fs
                .meminfo(&mut self.buf)
                .map(|m| m.total as f64)
                .unwrap_or(0.0);
            self.ticks_since_mem = 0;
        }
        self.ticks_since_mem += 1;
        if self.mem_total > 0.0 {
            self.mem_total
        } else {
            u64::MAX as f64
        }
    }

    fn node(
        &self,
        p: &ProcessInfo,
        mem_cap: f64,
        now: GoTime,
        number: &mut NumberFormatter,
    ) -> Node {
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
        node
    }
}

/// Everything a process's node is built from but the time: the node is built again,
/// and sent as a change, only when these differ from the last ones sent.
#[derive(Debug, PartialEq)]
struct Facts {
    ppid: u32,
    name: Str,
    cmdline: Str,
    threads: u32,
    /// The bits of the CPU figure, so that equal means the same sample.
    cpu: Option<u64>,
    rss_bytes: u64,
    open_files: usize,
    open_files_limit: Option<u64>,
    kernel_thread: bool,
    mem_cap: u64,
}

impl Facts {
    fn of(p: &ProcessInfo, mem_cap: f64) -> Self {
        Facts {
            ppid: p.ppid,
            name: p.name.clone(),
            cmdline: p.cmdline.clone(),
            threads: p.threads,
            cpu: p.cpu_percent.map(f64::to_bits),
            rss_bytes: p.rss_bytes,
            open_files: p.open_files,
            open_files_limit: p.open_files_limit,
            kernel_thread: p.kernel_thread,
            mem_cap: mem_cap.to_bits(),
        }
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

    fn info(pid: u32) -> ProcessInfo {
        ProcessInfo {
            pid,
            ppid: 1,
            name: Str::new("sleep"),
            cmdline: Str::new("sleep 1000"),
            threads: 1,
            cpu_percent: Some(0.0),
            rss_bytes: 4096,
            open_files: 3,
            open_files_limit: Some(1024),
            uid: Some(0),
            netns: None,
            kernel_thread: false,
            state: b'S',
        }
    }

    #[test]
    fn the_changes_sent_give_what_a_whole_report_gives() {
        use crate::kept::KeptNodes;
        use crate::walker::ProcSnapshot;
        let config = ProbeConfig::new("testhost");
        let mut whole = ProcessReporter::new(&config);
        let mut changes = ProcessReporter::new(&config);
        let mut receiver = KeptNodes::default();
        let mut procs: std::collections::BTreeMap<u32, ProcessInfo> =
            (1..=6).map(|pid| (pid, info(pid))).collect();
        for step in 0..12u32 {
            let pid = 2 + step % 5;
            match step % 6 {
                0 => {}
                1 => procs.entry(pid).or_insert_with(|| info(pid)).cpu_percent = Some(12.5),
                2 => procs.entry(pid).or_insert_with(|| info(pid)).cmdline = Str::new("sleep 5"),
                3 => {
                    procs.remove(&pid);
                }
                4 => {
                    procs.insert(100 + step, info(100 + step));
                    procs.get_mut(&1).expect("init").open_files += 1;
                }
                _ => {
                    let p = procs.get_mut(&1).expect("init");
                    p.rss_bytes *= 2;
                    p.cpu_percent = None;
                    p.kernel_thread = !p.kernel_thread;
                }
            }
            if step == 8 {
                // A whole report in between: the next changes are the whole topology.
                changes.report(&tick_of(&procs, step)).expect("report");
            }
            let tick = tick_of(&procs, step);
            let expected = whole.report(&tick).expect("report");
            let (mut got, sent) = changes.report_changes(&tick).expect("changes");
            let sent = sent.expect("the process reporter keeps its topology");
            assert_eq!(sent.whole, step == 0 || step == 8, "step {step}");
            if step > 0 && step != 8 {
                // Only what changed goes: one process at most, or init and a new one.
                assert!(
                    sent.nodes.len() <= 2,
                    "step {step}: {:?}",
                    sent.nodes.keys()
                );
            }
            receiver.end_window();
            receiver.apply(sent, tick.now, drop);
            receiver.merge_into(&mut got);
            assert_eq!(got, expected, "step {step}");
        }

        fn tick_of(procs: &std::collections::BTreeMap<u32, ProcessInfo>, step: u32) -> Tick {
            let now = GoTime::from_unix(1_700_000_000 + i64::from(step), 0).expect("in range");
            Tick {
                now,
                procs: Arc::new(ProcSnapshot {
                    taken: now,
                    processes: procs.clone(),
                    ..ProcSnapshot::default()
                }),
            }
        }
    }
}
