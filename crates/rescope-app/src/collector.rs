//! Report intake: which probes are reporting, and the reports received but not yet
//! applied.
//!
//! Request handlers only decode a report and queue it here; the rendering thread
//! applies queued reports to every probe's state and the merged report
//! ([`crate::store::Store`]) in batches, right before it renders. A probe silent for
//! longer than the window drops out: its state is forgotten at the next batch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rescope_report::{GoTime, Report, TopologyKind};
use tokio::sync::watch;

/// What the app knows about one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeInfo {
    pub id: String,
    pub hostname: String,
    pub version: String,
    pub last_seen: GoTime,
    pub reports: u64,
}

#[derive(Debug)]
struct ProbeState {
    probe_id: String,
    hostname: String,
    version: String,
    arrived: Instant,
    arrived_wall: GoTime,
    reports: u64,
}

/// A report received and not yet applied.
#[derive(Debug)]
pub struct Queued {
    /// The probe state it belongs to (see [`state_key`]).
    pub key: String,
    pub kind: ReportKind,
    pub report: Report,
    pub arrived: Instant,
}

/// What the rendering thread takes from the collector in one go.
#[derive(Debug, Default)]
pub struct Batch {
    /// Probe states whose probe went silent, to forget first.
    pub expired: Vec<String>,
    /// Reports in the order they arrived.
    pub reports: Vec<Queued>,
}

#[derive(Debug)]
struct Inner {
    probes: HashMap<String, ProbeState>,
    queue: Vec<Queued>,
    expired: Vec<String>,
    generation: u64,
    /// Queued reports dropped because a newer full report of the same probe state
    /// arrived before they were applied.
    superseded: u64,
}

type Wake = Box<dyn Fn() + Send + Sync>;

/// Knows every probe and queues their reports.
pub struct Collector {
    window: Duration,
    inner: Mutex<Inner>,
    changes: watch::Sender<u64>,
    wake: Mutex<Option<Wake>>,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

/// How a received report is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    Full,
    Delta,
    Shortcut,
}

/// Tells full reports from deltas. Deltas carry nodes without a topology (the
/// unchanged part of a node is left out), and probes send their topology templates
/// only in full reports; a report with neither is treated as a delta, which can add
/// and change nodes but never removes any.
pub fn classify(report: &Report) -> ReportKind {
    if report.shortcut {
        return ReportKind::Shortcut;
    }
    let partial = report
        .topologies()
        .any(|(_, t)| t.nodes.values().any(|n| n.topology.is_empty()));
    let host = report.topology(TopologyKind::Host);
    let templated = !host.metadata_templates.is_empty() || !host.metric_templates.is_empty();
    if !partial && templated {
        ReportKind::Full
    } else {
        ReportKind::Delta
    }
}

/// The key of a probe's state: its ID plus the hosts it reports, so two probes that
/// wrongly share an ID do not overwrite each other.
pub fn state_key(probe_id: &str, report: &Report) -> String {
    let mut key = probe_id.to_string();
    for host in report.topology(TopologyKind::Host).nodes.keys() {
        key.push('|');
        key.push_str(host);
    }
    key
}

impl Collector {
    pub fn new(window: Duration) -> Arc<Self> {
        let (changes, _) = watch::channel(0);
        Arc::new(Collector {
            window,
            inner: Mutex::new(Inner {
                probes: HashMap::new(),
                queue: Vec::new(),
                expired: Vec::new(),
                generation: 0,
                superseded: 0,
            }),
            changes,
            wake: Mutex::new(None),
        })
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// Calls `wake` whenever a report is queued (the rendering thread's doorbell).
    pub fn on_report(&self, wake: impl Fn() + Send + Sync + 'static) {
        if let Ok(mut w) = self.wake.lock() {
            *w = Some(Box::new(wake));
        }
    }

    /// Queues a report from `probe_id`. Returns how it will be treated.
    pub fn add(&self, probe_id: &str, report: Report) -> ReportKind {
        let kind = classify(&report);
        let now = Instant::now();
        let wall = GoTime::now();
        let Ok(mut inner) = self.inner.lock() else {
            return kind;
        };
        // Deltas and shortcuts usually carry the host node too; when they do not, they
        // belong to the probe's only state.
        let mut key = state_key(probe_id, &report);
        if kind != ReportKind::Full
            && !inner.probes.contains_key(&key)
            && let Some(existing) = inner
                .probes
                .keys()
                .find(|k| k.split('|').next() == Some(probe_id))
        {
            key = existing.clone();
        }
        let state = inner
            .probes
            .entry(key.clone())
            .or_insert_with(|| ProbeState {
                probe_id: probe_id.to_string(),
                hostname: String::new(),
                version: String::new(),
                arrived: now,
                arrived_wall: wall,
                reports: 0,
            });
        if let Some(host) = report.topology(TopologyKind::Host).nodes.values().next() {
            if let Some(name) = host.latest_value("host_name") {
                state.hostname = name.to_string();
            }
            if let Some(version) = host.latest_value("host_scope_version") {
                state.version = version.to_string();
            }
        }
        state.arrived = now;
        state.arrived_wall = wall;
        state.reports += 1;
        // A full report replaces its probe state whole, so the state's reports still
        // queued (when the rendering thread is behind) would only be undone: they are
        // dropped, which bounds the queue at a few reports per probe however far behind
        // the app is. What is lost is their metric samples (a gap in the sparklines).
        let mut stale = Vec::new();
        if kind == ReportKind::Full && inner.queue.iter().any(|q| q.key == key) {
            let (old, keep): (Vec<Queued>, Vec<Queued>) = std::mem::take(&mut inner.queue)
                .into_iter()
                .partition(|q| q.key == key);
            inner.queue = keep;
            inner.superseded += old.len() as u64;
            stale = old;
        }
        inner.queue.push(Queued {
            key,
            kind,
            report,
            arrived: now,
        });
        inner.generation += 1;
        let generation = inner.generation;
        drop(inner);
        // Freed outside the lock.
        drop(stale);
        self.changes.send_replace(generation);
        if let Ok(wake) = self.wake.lock()
            && let Some(wake) = wake.as_ref()
        {
            wake();
        }
        kind
    }

    /// Removes probes whose latest report is older than the window.
    fn expire(&self, inner: &mut Inner) {
        let window = self.window;
        let gone: Vec<String> = inner
            .probes
            .iter()
            .filter(|(_, p)| p.arrived.elapsed() > window)
            .map(|(k, _)| k.clone())
            .collect();
        if gone.is_empty() {
            return;
        }
        for k in &gone {
            inner.probes.remove(k);
        }
        inner.expired.extend(gone);
        inner.generation += 1;
        self.changes.send_replace(inner.generation);
    }

    /// Takes what the rendering thread has to apply: probes gone silent, then the
    /// queued reports.
    pub fn drain(&self) -> Batch {
        let Ok(mut inner) = self.inner.lock() else {
            return Batch::default();
        };
        self.expire(&mut inner);
        Batch {
            expired: std::mem::take(&mut inner.expired),
            reports: std::mem::take(&mut inner.queue),
        }
    }

    /// Whether reports are queued or probes have gone silent (the merged report is
    /// behind).
    pub fn pending(&self) -> bool {
        self.inner.lock().is_ok_and(|mut inner| {
            self.expire(&mut inner);
            !inner.queue.is_empty() || !inner.expired.is_empty()
        })
    }

    /// How many reports are queued, and how long the oldest has waited.
    pub fn backlog(&self) -> (usize, Duration) {
        self.inner.lock().map_or((0, Duration::ZERO), |inner| {
            let oldest = inner
                .queue
                .first()
                .map_or(Duration::ZERO, |q| q.arrived.elapsed());
            (inner.queue.len(), oldest)
        })
    }

    /// How many queued reports were dropped because a newer full report of the same
    /// probe state superseded them.
    pub fn superseded(&self) -> u64 {
        self.inner.lock().map_or(0, |inner| inner.superseded)
    }

    /// Notified with a new number whenever reports arrive or probes expire.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The probes currently reporting.
    pub fn probes(&self) -> Vec<ProbeInfo> {
        let Ok(mut inner) = self.inner.lock() else {
            return Vec::new();
        };
        self.expire(&mut inner);
        let mut out: Vec<ProbeInfo> = inner
            .probes
            .values()
            .map(|p| ProbeInfo {
                id: p.probe_id.clone(),
                hostname: p.hostname.clone(),
                version: p.version.clone(),
                last_seen: p.arrived_wall,
                reports: p.reports,
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Whether any probe is reporting.
    pub fn has_reports(&self) -> bool {
        let Ok(mut inner) = self.inner.lock() else {
            return false;
        };
        self.expire(&mut inner);
        !inner.probes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use rescope_report::{MetricTemplate, Node, Str};

    /// Applies everything queued, as the rendering thread does.
    fn settled(c: &Collector, store: &mut Store) -> Report {
        let batch = c.drain();
        for key in batch.expired {
            store.remove(&key);
        }
        for q in batch.reports {
            store.apply(&q.key, q.kind, q.report);
        }
        store.take_changes();
        store.full_report()
    }

    fn full(host: &str, processes: &[u32]) -> Report {
        let now = GoTime::now();
        let mut r = Report::empty();
        let hid = rescope_report::id::host_id(host);
        r[TopologyKind::Host].metric_templates.insert(
            Str::new("cpu"),
            MetricTemplate {
                id: Str::new("cpu"),
                ..Default::default()
            },
        );
        r[TopologyKind::Host].add_node(Node::new(hid.as_str()).with_topology("host").with_latest(
            "host_name",
            now,
            host,
        ));
        for pid in processes {
            r[TopologyKind::Process]
                .add_node(Node::new(format!("{host};{pid}")).with_topology("process"));
        }
        r
    }

    #[test]
    fn a_full_report_replaces_the_probes_state_and_a_delta_adds_to_it() {
        let c = Collector::new(Duration::from_secs(15));
        let mut store = Store::new(c.window());
        assert_eq!(c.add("p1", full("a", &[1, 2])), ReportKind::Full);
        assert_eq!(
            settled(&c, &mut store)[TopologyKind::Process].nodes.len(),
            2
        );
        let base = full("a", &[1, 2]);
        let delta = full("a", &[1, 2, 3]).delta_from(&base);
        assert_eq!(c.add("p1", delta), ReportKind::Delta);
        assert_eq!(
            settled(&c, &mut store)[TopologyKind::Process].nodes.len(),
            3
        );
        c.add("p1", full("a", &[3]));
        let merged = settled(&c, &mut store);
        assert_eq!(
            merged[TopologyKind::Process]
                .nodes
                .keys()
                .map(Str::as_str)
                .collect::<Vec<_>>(),
            ["a;3"]
        );
    }

    #[test]
    fn a_full_report_supersedes_its_probes_queued_reports() {
        let c = Collector::new(Duration::from_secs(15));
        let mut store = Store::new(c.window());
        c.add("p1", full("a", &[1]));
        c.add("p2", full("b", &[1]));
        let delta = full("a", &[1, 2]).delta_from(&full("a", &[1]));
        c.add("p1", delta);
        // Before anything was applied, p1 publishes a full report again.
        c.add("p1", full("a", &[3]));
        assert_eq!(c.superseded(), 2);
        assert_eq!(c.backlog().0, 2);
        let merged = settled(&c, &mut store);
        let mut ids: Vec<&str> = merged[TopologyKind::Process]
            .nodes
            .keys()
            .map(Str::as_str)
            .collect();
        ids.sort();
        assert_eq!(ids, ["a;3", "b;1"]);
        // A delta after the full report is kept.
        c.add("p1", full("a", &[3, 4]).delta_from(&full("a", &[3])));
        assert_eq!(c.backlog().0, 1);
        assert_eq!(
            settled(&c, &mut store)[TopologyKind::Process].nodes.len(),
            3
        );
    }

    #[test]
    fn two_probes_sharing_an_id_both_show() {
        let c = Collector::new(Duration::from_secs(15));
        let mut store = Store::new(c.window());
        c.add("same", full("a", &[1]));
        c.add("same", full("b", &[1]));
        assert_eq!(settled(&c, &mut store)[TopologyKind::Host].nodes.len(), 2);
        assert_eq!(c.probes().len(), 2);
        let mut hosts: Vec<String> = c.probes().into_iter().map(|p| p.hostname).collect();
        hosts.sort();
        assert_eq!(hosts, ["a", "b"]);
    }

    #[test]
    fn silent_probes_expire_after_the_window() {
        let c = Collector::new(Duration::from_millis(50));
        let mut store = Store::new(c.window());
        c.add("p", full("a", &[1]));
        assert!(c.has_reports());
        assert!(c.pending());
        assert_eq!(settled(&c, &mut store)[TopologyKind::Host].nodes.len(), 1);
        assert!(!c.pending());
        std::thread::sleep(Duration::from_millis(80));
        assert!(c.pending());
        assert!(settled(&c, &mut store)[TopologyKind::Host].nodes.is_empty());
        assert!(!c.has_reports());
    }
}
