//! Every probe's current report, and their merge kept up to date node by node.
//!
//! Scope's app kept every report of the last 15 seconds and merged them all again for
//! each request. Rescope keeps, per probe, the report as of its latest publish — a full
//! report replaces the probe's state (so nodes and plugins it no longer lists vanish at
//! once), a delta is applied to it, a shortcut report is merged into it, and metric
//! samples accumulate over the window — and keeps the merge of all probes up to date
//! as reports arrive: a report touches only its own probe's nodes, and only nodes that
//! another probe reports too are merged again. Each node is stored once: a node only
//! one probe reports is that probe's version and the merged node at the same time.
//!
//! [`Store::take_changes`] says which merged nodes changed since it was last called,
//! which is what the incremental views ([`rescope_render::live`]) work from.

use std::collections::BTreeMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use rescope_render::live::ReportChanges;
use rescope_report::delta::{apply_delta_node, keep_history};
use rescope_report::fasthash::{FastMap, FastSet};
use rescope_report::topology::TOPOLOGY_COUNT;
use rescope_report::{GoTime, Node, Report, Str, Topology, TopologyKind};

use crate::collector::ReportKind;

/// Which probes report a node (by slot).
#[derive(Debug, Clone, PartialEq)]
enum Owners {
    One(u32),
    Many(Vec<u32>),
}

#[derive(Debug)]
struct Probe {
    /// The probe's report without its nodes: presentation, templates, controls, DNS,
    /// plugins and the report's own fields.
    meta: Report,
    /// The nodes it reports, by topology.
    ids: Vec<FastSet<Str>>,
    /// Those of its nodes that hold metric samples (which age out).
    sampled: FastSet<(usize, Str)>,
    reports: u64,
    /// The newest `latest` timestamp its shortcut reports carried. A report stamped
    /// before it may have been gathered before the control that sent the shortcut, so
    /// the shortcut's entries survive it (see [`keep_newer_latest`]).
    shortcut_until: GoTime,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Store {
    window: Duration,
    /// State key → slot, in key order (the order probes are merged in).
    slots: BTreeMap<String, u32>,
    probes: Vec<Option<Probe>>,
    free: Vec<u32>,
    /// Every probe's nodes merged, without part-merged nodes: what views render.
    merged: Report,
    /// Merged nodes without a topology ("part-merged": delta nodes whose full report
    /// is gone), by topology.
    partial: Vec<BTreeMap<Str, Node>>,
    owners: Vec<FastMap<Str, Owners>>,
    /// For nodes more than one probe reports: each probe's version.
    shared: FastMap<(usize, Str), BTreeMap<u32, Node>>,
    /// Shared nodes whose versions changed since they were last merged: merged once
    /// per batch ([`Store::take_changes`]), not once per report, since a node every
    /// probe reports would otherwise be merged from all its versions for each of them.
    unmerged: FastSet<(usize, Str)>,
    changes: ReportChanges,
    /// Whether the report-level fields must be merged again.
    meta_dirty: bool,
}

fn meta_equal(a: &Topology, b: &Topology) -> bool {
    fn meta(t: &Topology) -> impl PartialEq + '_ {
        (
            (&t.shape, &t.tag, &t.label, &t.label_plural),
            (&t.controls, &t.metadata_templates),
            (&t.metric_templates, &t.table_templates),
        )
    }
    meta(a) == meta(b)
}

fn set_meta(t: &mut Topology, m: Topology) {
    let nodes = std::mem::take(&mut t.nodes);
    *t = m;
    t.nodes = nodes;
}

/// DNS names from the end points' legacy sets, for reports without `DNS`
/// (`Report::upgrade`).
fn legacy_dns(
    report: &Report,
    partial: &BTreeMap<Str, Node>,
) -> BTreeMap<Str, rescope_report::DnsRecord> {
    let mut probe = Report::empty();
    for (id, n) in report[TopologyKind::Endpoint]
        .nodes
        .iter()
        .chain(partial.iter())
    {
        if n.sets.get("snooped_dns_names").is_some() || n.sets.get("reverse_dns_names").is_some() {
            probe[TopologyKind::Endpoint]
                .nodes
                .insert(id.clone(), n.clone());
        }
    }
    probe.upgrade();
    probe.dns
}

impl Store {
    pub fn new(window: Duration) -> Self {
        Store {
            window,
            slots: BTreeMap::new(),
            probes: Vec::new(),
            free: Vec::new(),
            merged: Report::empty(),
            partial: vec![BTreeMap::new(); TOPOLOGY_COUNT],
            owners: vec![FastMap::default(); TOPOLOGY_COUNT],
            shared: FastMap::default(),
            unmerged: FastSet::default(),
            changes: ReportChanges::new(),
            meta_dirty: false,
        }
    }

    /// All probes' reports merged, without part-merged nodes: ready to render, as of the
    /// last [`Store::take_changes`]. DNS is
    /// upgraded as [`Report::upgrade`] does; other upgrades are left to
    /// [`Store::full_report`] (views do not depend on them).
    pub fn report(&self) -> &Report {
        &self.merged
    }

    /// The merged report as `/api/report` shows it: with part-merged nodes, upgraded.
    pub fn full_report(&self) -> Report {
        let mut r = self.merged.clone();
        for kind in TopologyKind::ALL {
            for (id, n) in &self.partial[kind.index()] {
                r[kind].nodes.insert(id.clone(), n.clone());
            }
        }
        r.upgrade();
        r
    }

    /// How many nodes the merge holds, part-merged ones included.
    pub fn node_count(&self) -> usize {
        self.merged.node_count() + self.partial.iter().map(BTreeMap::len).sum::<usize>()
    }

    /// How many probe states are kept.
    pub fn probe_count(&self) -> usize {
        self.slots.len()
    }

    fn slot(&mut self, key: &str) -> u32 {
        if let Some(s) = self.slots.get(key) {
            return *s;
        }
        let probe = Probe {
            meta: Report::empty(),
            ids: vec![FastSet::default(); TOPOLOGY_COUNT],
            sampled: FastSet::default(),
            reports: 0,
            shortcut_until: GoTime::ZERO,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.probes[s as usize] = Some(probe);
                s
            }
            None => {
                self.probes.push(Some(probe));
                (self.probes.len() - 1) as u32
            }
        };
        self.slots.insert(key.to_string(), slot);
        slot
    }

    fn probe_mut(&mut self, slot: u32) -> Option<&mut Probe> {
        self.probes.get_mut(slot as usize).and_then(Option::as_mut)
    }

    /// Applies a report from the probe state `key`.
    pub fn apply(&mut self, key: &str, kind: ReportKind, mut report: Report) {
        // History is trimmed on the probe's own clock (its report's timestamp), so a
        // probe whose clock is off from the app's keeps its samples.
        let reference = if report.ts.is_zero() {
            GoTime::now()
        } else {
            report.ts
        };
        let cutoff = reference.add_nanos(-(self.window.as_nanos().min(i64::MAX as u128) as i64));
        let slot = self.slot(key);
        // What a shortcut report speaks for: its plugins (none: the probe itself).
        let sources: Vec<Str> = report.plugins.keys().cloned().collect();
        let nodes: Vec<BTreeMap<Str, Node>> = TopologyKind::ALL
            .iter()
            .map(|k| std::mem::take(&mut report[*k].nodes))
            .collect();
        let Some(probe) = self.probe_mut(slot) else {
            return;
        };
        // Entries newer than the report, kept from the shortcuts it may predate.
        let mut guard = None;
        if kind == ReportKind::Shortcut {
            let newest = nodes
                .iter()
                .flat_map(BTreeMap::values)
                .flat_map(|n| n.latest.values().map(|e| e.timestamp))
                .max();
            if let Some(t) = newest {
                probe.shortcut_until = probe.shortcut_until.max(t);
            }
        } else if !report.ts.is_zero() && report.ts < probe.shortcut_until {
            guard = Some(report.ts);
        }
        match kind {
            ReportKind::Full => probe.meta = report,
            ReportKind::Delta => probe.meta.apply_update_meta(&report),
            ReportKind::Shortcut => probe.meta.merge_from(&report),
        }
        probe.reports += 1;
        self.meta_dirty = true;
        let mut touched: FastSet<(usize, Str)> = FastSet::default();
        for (k, incoming) in TopologyKind::ALL.into_iter().zip(nodes) {
            if kind == ReportKind::Full {
                let gone: Vec<Str> = self
                    .probe_mut(slot)
                    .map(|p| {
                        p.ids[k.index()]
                            .iter()
                            .filter(|id| !incoming.contains_key(*id))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                for id in gone {
                    self.update(k, &id, slot, |_| (None, How::Other));
                }
            }
            for (id, mut node) in incoming {
                // A node ID the store knows keeps the copy it first came with: later
                // reports' copies are dropped here, and the changes (and so the views'
                // indexes, keyed by that same copy) compare equal IDs by pointer.
                let id = match self.owners[k.index()].get_key_value(&id) {
                    Some((known, _)) => known.clone(),
                    None => id,
                };
                if node.id == id {
                    node.id = id.clone();
                }
                self.update(k, &id, slot, |old| {
                    let mut how = How::Other;
                    let mut new = match (kind, old) {
                        (ReportKind::Full, Some(o)) => {
                            let mut n = node;
                            if let Some(ts) = guard {
                                keep_newer_latest(&mut n, &o.latest, ts);
                            }
                            how = compare(&o, &n);
                            keep_history(&mut n, o.metrics);
                            n
                        }
                        (ReportKind::Delta, Some(mut o)) => {
                            if only_metrics(&node) {
                                how = How::Measured;
                            }
                            let before = guard.map(|_| o.latest.clone());
                            apply_delta_node(&mut o, &node, true);
                            if let (Some(ts), Some(before)) = (guard, before) {
                                keep_newer_latest(&mut o, &before, ts);
                            }
                            o
                        }
                        (ReportKind::Shortcut, Some(mut o)) => {
                            // The same probe's newer word: its active controls replace
                            // the older ones rather than adding to them.
                            o.merge_newer_in_topology(&node, k, &sources);
                            o
                        }
                        (_, None) => node,
                    };
                    new.drop_samples_before(cutoff);
                    (Some(new), how)
                });
                touched.insert((k.index(), id));
            }
        }
        // Samples age out of the nodes this report did not mention too.
        let stale: Vec<(usize, Str)> = self
            .probe_mut(slot)
            .map(|p| p.sampled.difference(&touched).cloned().collect())
            .unwrap_or_default();
        for (ki, id) in stale {
            self.drop_samples(TopologyKind::ALL[ki], &id, slot, cutoff);
        }
    }

    /// Forgets probe state `key` (its probe went silent).
    pub fn remove(&mut self, key: &str) {
        let Some(slot) = self.slots.get(key).copied() else {
            return;
        };
        for kind in TopologyKind::ALL {
            let ids: Vec<Str> = self
                .probe_mut(slot)
                .map(|p| p.ids[kind.index()].iter().cloned().collect())
                .unwrap_or_default();
            for id in ids {
                self.update(kind, &id, slot, |_| (None, How::Other));
            }
        }
        self.slots.remove(key);
        self.probes[slot as usize] = None;
        self.free.push(slot);
        self.meta_dirty = true;
    }

    /// Where a merged node goes: with the renderable nodes, or aside when part-merged.
    fn place(&mut self, kind: TopologyKind, id: &Str, node: Node) {
        if node.topology.is_empty() {
            self.partial[kind.index()].insert(id.clone(), node);
        } else {
            self.merged[kind].nodes.insert(id.clone(), node);
        }
    }

    fn unplace(&mut self, kind: TopologyKind, id: &Str) -> Option<Node> {
        self.merged[kind]
            .nodes
            .remove(id)
            .or_else(|| self.partial[kind.index()].remove(id))
    }

    /// Merges the versions of a node several probes report.
    fn remerge(&mut self, kind: TopologyKind, id: &Str) {
        let Some(versions) = self.shared.get(&(kind.index(), id.clone())) else {
            return;
        };
        let mut merged: Option<Node> = None;
        for v in versions.values() {
            match merged.as_mut() {
                Some(m) => m.merge_in_topology(v, kind),
                None => merged = Some(v.clone()),
            }
        }
        self.unplace(kind, id);
        if let Some(m) = merged {
            self.place(kind, id, m);
        }
    }

    /// Replaces probe `slot`'s version of a node with what `f` makes of it (`None`:
    /// the probe no longer reports it), and how it changed, and merges the node again.
    fn update(
        &mut self,
        kind: TopologyKind,
        id: &Str,
        slot: u32,
        f: impl FnOnce(Option<Node>) -> (Option<Node>, How),
    ) {
        let ki = kind.index();
        let owners = self.owners[ki].get(id).cloned();
        let mut how = How::Other;
        let mut sampled = false;
        let present = match owners {
            None => match f(None).0 {
                Some(new) => {
                    sampled = has_samples(&new);
                    self.owners[ki].insert(id.clone(), Owners::One(slot));
                    self.place(kind, id, new);
                    true
                }
                None => return,
            },
            Some(Owners::One(s)) if s == slot => {
                // Changed in place when it stays renderable (one search of the map).
                if let Some(slot_node) = self.merged[kind].nodes.get_mut(id) {
                    let old = std::mem::take(slot_node);
                    let (new, h) = f(Some(old));
                    how = h;
                    match new {
                        Some(new) if !new.topology.is_empty() => {
                            sampled = has_samples(&new);
                            *slot_node = new;
                            true
                        }
                        Some(new) => {
                            sampled = has_samples(&new);
                            self.merged[kind].nodes.remove(id);
                            self.place(kind, id, new);
                            true
                        }
                        None => {
                            self.merged[kind].nodes.remove(id);
                            self.owners[ki].remove(id);
                            false
                        }
                    }
                } else {
                    let old = self.unplace(kind, id);
                    let (new, h) = f(old);
                    how = h;
                    match new {
                        Some(new) => {
                            sampled = has_samples(&new);
                            self.place(kind, id, new);
                            true
                        }
                        None => {
                            self.owners[ki].remove(id);
                            false
                        }
                    }
                }
            }
            Some(Owners::One(other)) => {
                let Some(new) = f(None).0 else { return };
                sampled = has_samples(&new);
                let theirs = self.unplace(kind, id).unwrap_or_default();
                let versions = BTreeMap::from([(other, theirs), (slot, new)]);
                self.shared.insert((ki, id.clone()), versions);
                self.owners[ki].insert(id.clone(), Owners::Many(vec![other, slot]));
                self.unmerged.insert((ki, id.clone()));
                true
            }
            Some(Owners::Many(mut list)) => {
                let key = (ki, id.clone());
                let Some(versions) = self.shared.get_mut(&key) else {
                    return;
                };
                let old = versions.remove(&slot);
                let present = match f(old).0 {
                    Some(new) => {
                        sampled = has_samples(&new);
                        versions.insert(slot, new);
                        if !list.contains(&slot) {
                            list.push(slot);
                        }
                        true
                    }
                    None => {
                        list.retain(|s| *s != slot);
                        false
                    }
                };
                if versions.len() == 1 {
                    let (only, node) = versions.pop_first().unwrap_or_default();
                    self.shared.remove(&key);
                    self.unmerged.remove(&key);
                    self.owners[ki].insert(id.clone(), Owners::One(only));
                    self.unplace(kind, id);
                    self.place(kind, id, node);
                } else {
                    self.owners[ki].insert(id.clone(), Owners::Many(list));
                    self.unmerged.insert(key);
                }
                present
            }
        };
        if let Some(p) = self.probe_mut(slot) {
            if present {
                if !p.ids[ki].contains(id) {
                    p.ids[ki].insert(id.clone());
                }
            } else {
                p.ids[ki].remove(id);
            }
            let key = (ki, id.clone());
            if present && sampled {
                p.sampled.insert(key);
            } else {
                p.sampled.remove(&key);
            }
        }
        match how {
            How::Stamped if present => self.changes.stamp(kind, id),
            How::Measured if present => self.changes.measure(kind, id),
            _ => self.changes.node(kind, id),
        }
    }

    /// Probe `slot`'s version of a node.
    fn version(&self, kind: TopologyKind, id: &Str, slot: u32) -> Option<&Node> {
        let ki = kind.index();
        match self.owners[ki].get(id)? {
            Owners::One(s) if *s == slot => self.merged[kind]
                .nodes
                .get(id)
                .or_else(|| self.partial[ki].get(id)),
            Owners::One(_) => None,
            Owners::Many(_) => self.shared.get(&(ki, id.clone()))?.get(&slot),
        }
    }

    fn drop_samples(&mut self, kind: TopologyKind, id: &Str, slot: u32, cutoff: GoTime) {
        let ki = kind.index();
        let dropped = match self.owners[ki].get(id) {
            Some(Owners::One(s)) if *s == slot => {
                let node = match self.merged[kind].nodes.get_mut(id) {
                    Some(n) => Some(n),
                    None => self.partial[ki].get_mut(id),
                };
                node.is_some_and(|n| n.drop_samples_before(cutoff))
            }
            Some(Owners::Many(_)) => {
                let dropped = self
                    .shared
                    .get_mut(&(ki, id.clone()))
                    .and_then(|v| v.get_mut(&slot))
                    .is_some_and(|n| n.drop_samples_before(cutoff));
                if dropped {
                    self.unmerged.insert((ki, id.clone()));
                }
                dropped
            }
            _ => false,
        };
        if dropped {
            if !self.version(kind, id, slot).is_some_and(has_samples)
                && let Some(p) = self.probe_mut(slot)
            {
                p.sampled.remove(&(ki, id.clone()));
            }
            self.changes.node(kind, id);
        }
    }

    /// What changed in the merged report since the last call; brings the report's
    /// own fields (presentation, templates, DNS, plugins, …) up to date first.
    pub fn take_changes(&mut self) -> ReportChanges {
        for (ki, id) in std::mem::take(&mut self.unmerged) {
            self.remerge(TopologyKind::ALL[ki], &id);
        }
        if self.meta_dirty {
            self.meta_dirty = false;
            let mut meta = Report::empty();
            let mut hasher = DefaultHasher::new();
            for slot in self.slots.values() {
                if let Some(p) = self.probes.get(*slot as usize).and_then(Option::as_ref) {
                    p.meta.id.hash(&mut hasher);
                    p.reports.hash(&mut hasher);
                    meta.merge_from(&p.meta);
                }
            }
            for kind in TopologyKind::ALL {
                let fresh = std::mem::take(meta.topology_mut(kind));
                let t = self.merged.topology_mut(kind);
                if !meta_equal(t, &fresh) {
                    self.changes.presentation = true;
                    set_meta(t, fresh);
                }
            }
            let mut dns = std::mem::take(&mut meta.dns);
            if dns.is_empty() {
                dns = legacy_dns(&self.merged, &self.partial[TopologyKind::Endpoint.index()]);
            }
            if dns != self.merged.dns {
                for (ip, rec) in &dns {
                    if self.merged.dns.get(ip) != Some(rec) {
                        self.changes.dns.insert(ip.clone());
                    }
                }
                for ip in self.merged.dns.keys() {
                    if !dns.contains_key(ip) {
                        self.changes.dns.insert(ip.clone());
                    }
                }
                self.merged.dns = dns;
            }
            let r = &mut self.merged;
            r.ts = meta.ts;
            r.sampling = meta.sampling;
            r.window = meta.window;
            r.shortcut = meta.shortcut;
            r.plugins = meta.plugins;
            r.id = Str::from(format!("{:x}", hasher.finish()));
        }
        std::mem::replace(&mut self.changes, ReportChanges::new())
    }

    /// The keys of the probe states kept, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.slots.keys().map(String::as_str)
    }
}

/// How a probe's version of a node changed (only single-probe nodes count: a merge
/// of versions can change its values when one version's times change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    /// Only the times of its `latest` values.
    Stamped,
    /// Only its metrics and the times of its `latest` values.
    Measured,
    Other,
}

/// Puts back the `old` entries stamped after `ts` where `new`'s `latest` has none or
/// an older one: a report stamped `ts` was gathered before them, so it cannot undo
/// them. This is how a shortcut report (a control's result) outlives a report the
/// probe gathered before the control but published after it.
fn keep_newer_latest(new: &mut Node, old: &rescope_report::node::Latest, ts: GoTime) {
    for (key, entry) in old.iter() {
        if entry.timestamp <= ts {
            continue;
        }
        if new
            .latest
            .get(key)
            .is_none_or(|e| e.timestamp < entry.timestamp)
        {
            new.latest.insert(key.clone(), entry.clone());
        }
    }
}

/// How `new` (a full report's node) differs from `old`, metric history aside.
fn compare(old: &Node, new: &Node) -> How {
    if !same_but_measures(old, new) {
        How::Other
    } else if old.metrics.is_empty() && new.metrics.is_empty() {
        How::Stamped
    } else {
        How::Measured
    }
}

/// Whether a delta node carries nothing but metrics.
fn only_metrics(d: &Node) -> bool {
    d.id.is_empty()
        && d.topology.is_empty()
        && d.latest.is_empty()
        && d.sets.is_empty()
        && d.parents.is_empty()
        && d.adjacency.is_empty()
        && d.children.is_empty()
}

/// Whether `new` says what `old` said but for metrics and the times of values.
fn same_but_measures(old: &Node, new: &Node) -> bool {
    fn said(n: &Node) -> impl PartialEq + '_ {
        (
            (&n.id, &n.topology, &n.adjacency),
            (&n.sets, &n.parents, &n.children),
        )
    }
    said(old) == said(new)
        && old.latest.len() == new.latest.len()
        && old
            .latest
            .iter()
            .zip(new.latest.iter())
            .all(|((ka, a), (kb, b))| ka == kb && a.value == b.value)
}

fn has_samples(n: &Node) -> bool {
    n.metrics.iter().any(|(_, m)| !m.samples.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rescope_report::synthetic::{HostShape, HostSimulator, fleet_seed};

    /// The straightforward way: each probe's state kept as a whole report, all of them
    /// merged for every look.
    #[derive(Default)]
    struct Reference {
        states: BTreeMap<String, Report>,
    }

    impl Reference {
        fn apply(&mut self, key: &str, kind: ReportKind, report: &Report, window: Duration) {
            let reference = if report.ts.is_zero() {
                GoTime::now()
            } else {
                report.ts
            };
            let cutoff = reference.add_nanos(-(window.as_nanos() as i64));
            let stored = self
                .states
                .entry(key.to_string())
                .or_insert_with(Report::empty);
            match kind {
                ReportKind::Full => stored.apply_keeping_history(report, true),
                ReportKind::Delta => stored.apply_keeping_history(report, false),
                ReportKind::Shortcut => stored.merge_shortcut_from(report),
            }
            stored.drop_samples_before(cutoff);
        }

        /// Merged and upgraded, split into renderable and part-merged nodes.
        fn merged(&self) -> (Report, Report) {
            let mut merged = Report::empty();
            for r in self.states.values() {
                merged.merge_from(r);
            }
            merged.upgrade();
            let mut partial = Report::empty();
            for kind in TopologyKind::ALL {
                let ids: Vec<Str> = merged[kind]
                    .nodes
                    .iter()
                    .filter(|(_, n)| n.topology.is_empty())
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in ids {
                    if let Some(n) = merged[kind].nodes.remove(&id) {
                        partial[kind].nodes.insert(id, n);
                    }
                }
            }
            (merged, partial)
        }
    }

    fn check(store: &mut Store, reference: &Reference, previous: &Report, step: &str) -> Report {
        let changes = store.take_changes();
        let (want, want_partial) = reference.merged();
        let got = store.report();
        for kind in TopologyKind::ALL {
            assert!(
                meta_equal(&got[kind], &want[kind]),
                "{step}: {kind:?} presentation differs"
            );
            assert_eq!(
                got[kind].nodes, want[kind].nodes,
                "{step}: {kind:?} nodes differ"
            );
            assert_eq!(
                store.partial[kind.index()],
                want_partial[kind].nodes,
                "{step}: {kind:?} part-merged nodes differ"
            );
            // Every node that changed was reported as changed.
            for (id, n) in &want[kind].nodes {
                if previous[kind].nodes.get(id) != Some(n) {
                    assert!(
                        changes.nodes[kind.index()].contains(id),
                        "{step}: {kind:?} {id} changed unannounced"
                    );
                }
            }
            for id in previous[kind].nodes.keys() {
                if !want[kind].nodes.contains_key(id) {
                    assert!(
                        changes.nodes[kind.index()].contains(id),
                        "{step}: {id} went unannounced"
                    );
                }
            }
        }
        assert_eq!(got.dns, want.dns, "{step}: DNS differs");
        assert_eq!(got.plugins, want.plugins, "{step}: plugins differ");
        assert_eq!(got.ts, want.ts, "{step}: ts differs");
        assert_eq!(got.window, want.window, "{step}: window differs");
        let mut full = want.clone();
        for kind in TopologyKind::ALL {
            full[kind].nodes.extend(want_partial[kind].nodes.clone());
        }
        let mut got_full = store.full_report();
        got_full.id = full.id.clone();
        assert_eq!(got_full, full, "{step}: /api/report differs");
        got.clone()
    }

    fn shape(i: usize) -> HostShape {
        let mut s = HostShape::fleet_member(i);
        s.processes = 30;
        s.endpoints = 80;
        s.containers = 2;
        s.connection_churn = 0.2;
        s
    }

    #[test]
    fn the_store_merges_like_merging_every_probe_state() {
        let window = Duration::from_secs(15);
        let now = GoTime::now();
        let mut store = Store::new(window);
        let mut reference = Reference::default();
        let mut sims: Vec<HostSimulator> = (0..4)
            .map(|i| HostSimulator::new(shape(i), fleet_seed(3, i), now))
            .collect();
        let mut last_full: Vec<Option<Report>> = vec![None; 4];
        let mut previous = Report::empty();
        let mut seed = 17u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        for step in 0..120 {
            let h = next() % 4;
            // Two probes share an ID but report different hosts; one state per host.
            let key = format!("probe-{}|{}", h % 3, sims[h].shape().hostname);
            let event = next() % 10;
            let label = format!("step {step} (event {event}, host {h})");
            match event {
                0 => {
                    store.remove(&key);
                    reference.states.remove(&key);
                    last_full[h] = None;
                }
                1 => {
                    // A shortcut report: one changed process.
                    let mut r = Report::empty();
                    let mut full = sims[h].report();
                    if let Some((id, n)) = full[TopologyKind::Process].nodes.pop_first() {
                        let mut n = n;
                        n.set_latest("name", now, "shortcut");
                        r[TopologyKind::Process].nodes.insert(id, n);
                    }
                    r.shortcut = true;
                    store.apply(&key, ReportKind::Shortcut, r.clone());
                    reference.apply(&key, ReportKind::Shortcut, &r, window);
                }
                2..=4 => {
                    let report = sims[h].next_report();
                    match &last_full[h] {
                        Some(base) => {
                            let mut d = report.delta_from(base);
                            // Sometimes a node only known from this delta.
                            if event == 4 {
                                let mut orphan = Node::default();
                                orphan.set_latest("pid", now, "1");
                                d[TopologyKind::Endpoint]
                                    .nodes
                                    .insert(Str::new(";10.9.9.9;1"), orphan);
                            }
                            store.apply(&key, ReportKind::Delta, d.clone());
                            reference.apply(&key, ReportKind::Delta, &d, window);
                        }
                        None => {
                            store.apply(&key, ReportKind::Full, report.clone());
                            reference.apply(&key, ReportKind::Full, &report, window);
                            last_full[h] = Some(report);
                        }
                    }
                }
                _ => {
                    let report = sims[h].next_report();
                    store.apply(&key, ReportKind::Full, report.clone());
                    reference.apply(&key, ReportKind::Full, &report, window);
                    last_full[h] = Some(report);
                }
            }
            // Checked after one report or after several, as a pass applies them.
            if next() % 2 == 0 || step == 119 {
                previous = check(&mut store, &reference, &previous, &label);
            }
        }
    }

    #[test]
    fn a_report_gathered_before_a_shortcut_does_not_undo_it() {
        let t = |s: i64| GoTime::from_unix(1_800_000_000 + s, 0).expect("in range");
        let host = |ts: i64, state: &str, controls: &str| {
            let mut r = Report::empty();
            r.ts = t(ts);
            let mut n = Node {
                topology: Str::new("host"),
                ..Default::default()
            };
            n.set_latest("state", t(ts), state);
            n.set_latest(rescope_report::node::ACTIVE_CONTROLS, t(ts), controls);
            r[TopologyKind::Host].nodes.insert(Str::new("h;<host>"), n);
            r
        };
        let seen = |store: &mut Store| {
            store.take_changes();
            let n = &store.report()[TopologyKind::Host].nodes["h;<host>"];
            let v = |k: &str| n.latest_value(k).map(|v| v.to_string()).unwrap_or_default();
            (v("state"), v(rescope_report::node::ACTIVE_CONTROLS))
        };
        let mut store = Store::new(Duration::from_secs(15));
        store.apply("p", ReportKind::Full, host(1, "off", "x~on"));
        assert_eq!(seen(&mut store), ("off".into(), "x~on".into()));
        let mut shortcut = host(3, "on", "x~off");
        shortcut.shortcut = true;
        store.apply("p", ReportKind::Shortcut, shortcut);
        assert_eq!(seen(&mut store), ("on".into(), "x~off".into()));
        // Gathered at 2, before the control, and published after its shortcut.
        store.apply("p", ReportKind::Full, host(2, "off", "x~on"));
        assert_eq!(seen(&mut store), ("on".into(), "x~off".into()));
        let mut delta = Report::empty();
        delta.ts = t(2);
        let mut n = Node::default();
        n.set_latest(rescope_report::node::ACTIVE_CONTROLS, t(2), "x~on");
        delta[TopologyKind::Host]
            .nodes
            .insert(Str::new("h;<host>"), n);
        store.apply("p", ReportKind::Delta, delta);
        assert_eq!(seen(&mut store), ("on".into(), "x~off".into()));
        // Gathered after the control: its word goes, whatever it is.
        store.apply("p", ReportKind::Full, host(4, "off", "x~on"));
        assert_eq!(seen(&mut store), ("off".into(), "x~on".into()));
        // Another probe's shortcut guards nothing of this probe.
        let mut other = host(9, "on", "y~off");
        other.shortcut = true;
        store.apply("q", ReportKind::Shortcut, other);
        store.apply("p", ReportKind::Full, host(5, "off", "x~on"));
        store.take_changes();
        assert_eq!(
            store.probes[store.slots["p"] as usize]
                .as_ref()
                .map(|p| p.shortcut_until),
            Some(t(3))
        );
    }
}
