//! Report storage: one current report per probe, merged on demand.
//!
//! Scope's app kept every report of the last 15 seconds and merged them all again for
//! each request. Rescope keeps, per probe, the report as of its latest publish: a full
//! report replaces the probe's state (so nodes and plugins it no longer lists vanish at
//! once), a delta is applied to it, a shortcut report is merged into it. Metric samples
//! accumulate over the window. A probe silent for longer than the window drops out.
//! The merge of all probes is cached until a report arrives or a probe expires.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rescope_report::{GoTime, Report, Str, TopologyKind};
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
    /// Shared with a snapshot being built, which merges outside the lock; a report
    /// arriving meanwhile copies it first.
    report: Arc<Report>,
    arrived: Instant,
    arrived_wall: GoTime,
    reports: u64,
}

/// The merged view of every live probe at one moment.
#[derive(Debug)]
pub struct Snapshot {
    /// Changes whenever the merged report may have changed.
    pub generation: u64,
    /// All probes' reports merged, without part-merged nodes: ready to render.
    pub prepared: Report,
    /// The part-merged nodes (delta nodes whose full report is gone), kept aside for
    /// `/api/report`, which shows them as Scope does.
    pub partial: Vec<(TopologyKind, Str, rescope_report::Node)>,
    pub taken: GoTime,
    built: Instant,
}

impl Snapshot {
    /// When the merge was built.
    pub fn built(&self) -> Instant {
        self.built
    }

    /// The merged report with part-merged nodes, as `/api/report` serves it.
    pub fn merged(&self) -> Report {
        let mut r = self.prepared.clone();
        for (kind, id, node) in &self.partial {
            r.topology_mut(*kind).nodes.insert(id.clone(), node.clone());
        }
        r
    }
}

#[derive(Debug)]
struct Inner {
    probes: HashMap<String, ProbeState>,
    generation: u64,
    cached: Option<Arc<Snapshot>>,
    /// Reports arrived (or probes expired) since `cached` was built.
    dirty: bool,
}

/// Holds every probe's current report.
#[derive(Debug)]
pub struct Collector {
    window: Duration,
    inner: Mutex<Inner>,
    changes: watch::Sender<u64>,
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
fn state_key(probe_id: &str, report: &Report) -> String {
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
                generation: 0,
                cached: None,
                dirty: false,
            }),
            changes,
        })
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// Adds a report from `probe_id`. Returns how it was treated.
    pub fn add(&self, probe_id: &str, report: Report) -> ReportKind {
        let kind = classify(&report);
        let now = Instant::now();
        let wall = GoTime::now();
        // History is trimmed on the probe's own clock (its report's timestamp), so a
        // probe whose clock is off from the app's keeps its samples.
        let reference = if report.ts.is_zero() { wall } else { report.ts };
        let cutoff = reference.add_nanos(-(self.window.as_nanos().min(i64::MAX as u128) as i64));
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
        let state = inner.probes.entry(key).or_insert_with(|| ProbeState {
            probe_id: probe_id.to_string(),
            report: Arc::new(Report::empty()),
            arrived: now,
            arrived_wall: wall,
            reports: 0,
        });
        let stored = Arc::make_mut(&mut state.report);
        match kind {
            ReportKind::Full => stored.apply_keeping_history(&report, true),
            ReportKind::Delta => stored.apply_keeping_history(&report, false),
            ReportKind::Shortcut => stored.merge_from(&report),
        }
        stored.drop_samples_before(cutoff);
        state.arrived = now;
        state.arrived_wall = wall;
        state.reports += 1;
        inner.generation += 1;
        inner.dirty = true;
        let generation = inner.generation;
        drop(inner);
        self.changes.send_replace(generation);
        kind
    }

    /// Removes probes whose latest report is older than the window; true if any went.
    fn expire(&self, inner: &mut Inner) -> bool {
        let before = inner.probes.len();
        let window = self.window;
        inner.probes.retain(|_, p| p.arrived.elapsed() <= window);
        let expired = inner.probes.len() != before;
        if expired {
            inner.generation += 1;
            inner.dirty = true;
            self.changes.send_replace(inner.generation);
        }
        expired
    }

    /// How stale a snapshot may be before a new report forces a rebuild: rebuilding
    /// merges every probe's report, so with many probes reports are batched (up to
    /// one rebuild a second at 100 probes; 10 ms per probe).
    pub fn rebuild_delay(&self) -> Duration {
        let probes = self.inner.lock().map(|i| i.probes.len()).unwrap_or(0) as u64;
        Duration::from_millis((probes * 10).min(1000))
    }

    /// The cached merged view if it is current: nothing arrived since it was built,
    /// or it is younger than the rebuild delay. Never merges.
    pub fn current(&self) -> Option<Arc<Snapshot>> {
        let mut inner = self.inner.lock().ok()?;
        self.expire(&mut inner);
        let delay = Duration::from_millis((inner.probes.len() as u64 * 10).min(1000));
        inner
            .cached
            .as_ref()
            .filter(|c| !inner.dirty || c.built.elapsed() < delay)
            .cloned()
    }

    /// The current merged view (cached until something changes, see
    /// [`Collector::rebuild_delay`]). The merge runs outside the lock, so reports keep
    /// arriving while it is built.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        let (generation, reports) = {
            let Ok(mut inner) = self.inner.lock() else {
                return Arc::new(Snapshot {
                    generation: 0,
                    prepared: Report::empty(),
                    partial: Vec::new(),
                    taken: GoTime::now(),
                    built: Instant::now(),
                });
            };
            self.expire(&mut inner);
            let delay = Duration::from_millis((inner.probes.len() as u64 * 10).min(1000));
            if let Some(cached) = &inner.cached
                && (!inner.dirty || cached.built.elapsed() < delay)
            {
                return cached.clone();
            }
            let mut keys: Vec<&String> = inner.probes.keys().collect();
            keys.sort();
            let reports: Vec<(Arc<Report>, u64)> = keys
                .into_iter()
                .map(|k| (inner.probes[k].report.clone(), inner.probes[k].reports))
                .collect();
            (inner.generation, reports)
        };
        let mut merged = Report::empty();
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for (report, count) in &reports {
            report.id.hash(&mut hasher);
            count.hash(&mut hasher);
            merged.merge_from(report);
        }
        drop(reports);
        merged.id = Str::from(format!("{:x}", hasher.finish()));
        merged.upgrade();
        let mut partial = Vec::new();
        for (kind, t) in merged.topologies_mut() {
            let ids: Vec<Str> = t
                .nodes
                .iter()
                .filter(|(_, n)| n.topology.is_empty())
                .map(|(id, _)| id.clone())
                .collect();
            for id in ids {
                if let Some(node) = t.nodes.remove(&id) {
                    partial.push((kind, id, node));
                }
            }
        }
        let snapshot = Arc::new(Snapshot {
            generation,
            prepared: merged,
            partial,
            taken: GoTime::now(),
            built: Instant::now(),
        });
        if let Ok(mut inner) = self.inner.lock() {
            // Another thread may have built a newer one meanwhile.
            if inner
                .cached
                .as_ref()
                .is_none_or(|c| c.generation <= generation)
            {
                inner.cached = Some(snapshot.clone());
                if inner.generation == generation {
                    inner.dirty = false;
                }
            }
        }
        snapshot
    }

    /// Notified with the new generation whenever reports arrive or probes expire.
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
            .map(|p| {
                let host = p.report.topology(TopologyKind::Host).nodes.values().next();
                ProbeInfo {
                    id: p.probe_id.clone(),
                    hostname: host
                        .and_then(|h| h.latest_value("host_name"))
                        .map(|s| s.to_string())
                        .unwrap_or_default(),
                    version: host
                        .and_then(|h| h.latest_value("host_scope_version"))
                        .map(|s| s.to_string())
                        .unwrap_or_default(),
                    last_seen: p.arrived_wall,
                    reports: p.reports,
                }
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
    use rescope_report::{MetricTemplate, Node};

    /// The snapshot once the rebuild delay has passed.
    fn settled(c: &Collector) -> Arc<Snapshot> {
        std::thread::sleep(c.rebuild_delay());
        c.snapshot()
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
        assert_eq!(c.add("p1", full("a", &[1, 2])), ReportKind::Full);
        assert_eq!(settled(&c).merged()[TopologyKind::Process].nodes.len(), 2);
        let base = full("a", &[1, 2]);
        let delta = full("a", &[1, 2, 3]).delta_from(&base);
        assert_eq!(c.add("p1", delta), ReportKind::Delta);
        assert_eq!(settled(&c).merged()[TopologyKind::Process].nodes.len(), 3);
        c.add("p1", full("a", &[3]));
        let snap = settled(&c);
        assert_eq!(
            snap.merged()[TopologyKind::Process]
                .nodes
                .keys()
                .map(Str::as_str)
                .collect::<Vec<_>>(),
            ["a;3"]
        );
    }

    #[test]
    fn two_probes_sharing_an_id_both_show() {
        let c = Collector::new(Duration::from_secs(15));
        c.add("same", full("a", &[1]));
        c.add("same", full("b", &[1]));
        assert_eq!(settled(&c).merged()[TopologyKind::Host].nodes.len(), 2);
        assert_eq!(c.probes().len(), 2);
    }

    #[test]
    fn silent_probes_expire_after_the_window() {
        let c = Collector::new(Duration::from_millis(50));
        c.add("p", full("a", &[1]));
        assert!(c.has_reports());
        let generation = settled(&c).generation;
        std::thread::sleep(Duration::from_millis(80));
        let snap = settled(&c);
        assert!(snap.merged()[TopologyKind::Host].nodes.is_empty());
        assert!(snap.generation > generation);
        assert!(!c.has_reports());
    }

    #[test]
    fn snapshots_are_cached_until_a_report_arrives() {
        let c = Collector::new(Duration::from_secs(15));
        c.add("p", full("a", &[1]));
        let a = settled(&c);
        let b = settled(&c);
        assert!(Arc::ptr_eq(&a, &b));
        c.add("p", full("a", &[1]));
        std::thread::sleep(c.rebuild_delay());
        assert!(!Arc::ptr_eq(&a, &settled(&c)));
    }
}
