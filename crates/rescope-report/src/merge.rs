//! Merging reports (protocol.md §3).
//!
//! Merges combine what several sources know: a probe's reporters, a probe's queued
//! reports, every probe's reports in the app, nodes that render to the same ID. Every
//! rule here is commutative, associative and idempotent, except `Window` and `Sampling`,
//! which the protocol defines as sums. Where Scope leaves a conflict "unspecified" (two
//! different values with the same timestamp, two different control definitions, …) we
//! pick deterministically, so that merging in any order gives the same report.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::node::{ACTIVE_CONTROLS, Children, LatestEntry, Metric, Node, Sample};
use crate::plugin::PluginSpec;
use crate::report::Report;
use crate::str::Str;
use crate::topology::{
    Column, MetadataTemplate, MetricTemplate, TableTemplate, Topology, TopologyKind,
};

/// Empty is the identity; two non-empty values resolve to the smaller.
fn pick(mine: &mut Str, theirs: &Str) {
    if !theirs.is_empty() && (mine.is_empty() || theirs < mine) {
        *mine = theirs.clone();
    }
}

fn later_entry(mine: &mut LatestEntry, theirs: &LatestEntry) {
    // Later timestamp wins; on a tie the larger value, so the result is order-independent.
    if (theirs.timestamp, &theirs.value) > (mine.timestamp, &mine.value) {
        *mine = theirs.clone();
    }
}

/// Host nodes union their `active_controls`, so a host's own probe and a cluster-level
/// probe can both contribute controls.
fn union_active_controls(mine: &mut LatestEntry, theirs: &LatestEntry) {
    let split = |e: &LatestEntry| -> Vec<Str> {
        let mut ids: Vec<Str> = e
            .value
            .split(';')
            .filter(|s| !s.is_empty())
            .map(Str::new)
            .collect();
        ids.sort();
        ids.dedup();
        ids
    };
    let (a, b) = (split(mine), split(theirs));
    if a == b {
        later_entry(mine, theirs);
        return;
    }
    let mut all = a;
    all.extend(b);
    all.sort();
    all.dedup();
    let joined = all.iter().map(Str::as_str).collect::<Vec<_>>().join(";");
    *mine = LatestEntry {
        timestamp: mine.timestamp.max(theirs.timestamp),
        value: Str::from(joined),
    };
}

impl Metric {
    /// Merges samples by date (one sample per date) and widens the range. A metric
    /// without samples is the identity.
    pub fn merge_from(&mut self, other: &Metric) {
        if other.samples.is_empty() {
            if self.samples.is_empty() {
                self.min = self.min.min(other.min);
                self.max = self.max.max(other.max);
            }
            return;
        }
        if self.samples.is_empty() {
            *self = other.clone();
            return;
        }
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        // Fast path: the other side is entirely newer (the common case when a probe's
        // reports are merged in time order).
        let (Some(my_last), Some(their_first)) = (self.samples.last(), other.samples.first())
        else {
            return;
        };
        if my_last.date < their_first.date {
            self.samples.extend_from_slice(&other.samples);
            return;
        }
        let mine = std::mem::take(&mut self.samples);
        let mut out: Vec<Sample> = Vec::with_capacity(mine.len() + other.samples.len());
        let (mut a, mut b) = (mine.into_iter().peekable(), other.samples.iter().peekable());
        loop {
            match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => match x.date.cmp(&y.date) {
                    Ordering::Less => out.extend(a.next()),
                    Ordering::Greater => out.extend(b.next().copied()),
                    Ordering::Equal => {
                        let (x, y) = (x.value, y.value);
                        let keep = if y.total_cmp(&x).is_gt() {
                            b.peek().copied().copied()
                        } else {
                            a.peek().copied()
                        };
                        out.extend(keep);
                        a.next();
                        b.next();
                    }
                },
                (Some(_), None) => out.extend(a.by_ref()),
                (None, Some(_)) => out.extend(b.by_ref().copied()),
                (None, None) => break,
            }
        }
        self.samples = out;
    }
}

impl Node {
    /// Merges another node's knowledge into this one (protocol.md §3.3). Host nodes
    /// (by either side's `topology`) union their active controls.
    pub fn merge_from(&mut self, other: &Node) {
        let host = self.topology == "host" || other.topology == "host";
        self.merge_with_rules(other, host);
    }

    /// Merges another node's knowledge into this one as merging topology `kind` does
    /// ([`Topology::merge_from`]): nodes of the Host topology union their active
    /// controls.
    pub fn merge_in_topology(&mut self, other: &Node, kind: TopologyKind) {
        self.merge_with_rules(other, kind == TopologyKind::Host);
    }

    /// Merges a newer partial version of this node from the same source (a probe's
    /// shortcut report applied to that probe's own state). Like
    /// [`Node::merge_in_topology`], except that a host node's `active_controls` is not
    /// unioned with the older entry: the controls of the sources the newer report
    /// speaks for (`sources`: the plugin IDs it carries; none: the whole probe) are
    /// replaced by the newer entry's, so a control that was switched off disappears at
    /// once. Controls of other sources (the probe's own `host_exec` when a plugin sends
    /// the shortcut) stay. An older entry never replaces a newer one.
    pub fn merge_newer_in_topology(&mut self, newer: &Node, kind: TopologyKind, sources: &[Str]) {
        if kind != TopologyKind::Host {
            self.merge_with_rules(newer, false);
            return;
        }
        let before = self.latest.get(ACTIVE_CONTROLS).cloned();
        self.merge_with_rules(newer, false);
        let (Some(mine), Some(theirs)) = (before, newer.latest.get(ACTIVE_CONTROLS)) else {
            return;
        };
        if theirs.timestamp < mine.timestamp {
            self.latest.insert(Str::new(ACTIVE_CONTROLS), mine);
            return;
        }
        let owned = |control: &str| {
            sources.is_empty()
                || sources.iter().any(|s| {
                    control
                        .strip_prefix(s.as_str())
                        .is_some_and(|rest| rest.starts_with('~'))
                })
        };
        let mut ids: Vec<&str> = mine
            .value
            .split(';')
            .filter(|c| !c.is_empty() && !owned(c))
            .collect();
        for c in theirs.value.split(';').filter(|c| !c.is_empty()) {
            if !ids.contains(&c) {
                ids.push(c);
            }
        }
        let value = Str::from(ids.join(";"));
        self.latest.insert(
            Str::new(ACTIVE_CONTROLS),
            LatestEntry {
                timestamp: theirs.timestamp,
                value,
            },
        );
    }

    pub(crate) fn merge_with_rules(&mut self, other: &Node, host: bool) {
        pick(&mut self.id, &other.id);
        pick(&mut self.topology, &other.topology);
        if host {
            self.latest.merge_with(&other.latest, |key, mine, theirs| {
                if key == ACTIVE_CONTROLS {
                    union_active_controls(mine, theirs);
                } else {
                    later_entry(mine, theirs);
                }
            });
        } else {
            self.latest
                .merge_with(&other.latest, |_, mine, theirs| later_entry(mine, theirs));
        }
        self.sets.union_with(&other.sets);
        self.parents.union_with(&other.parents);
        self.adjacency.union_with(&other.adjacency);
        self.metrics
            .merge_with(&other.metrics, |_, mine, theirs| mine.merge_from(theirs));
        merge_children(&mut self.children, &other.children);
    }
}

/// Merges `theirs` into `mine`. Rendering merges nodes whose children are mostly the
/// same (a host's end points come from several views): the maps are walked side by
/// side, a map that gains nothing is left as it is (and stays shared), and one that
/// gains many children is built again in one go rather than by a search per child.
fn merge_children(mine: &mut Children, theirs: &Children) {
    if theirs.is_empty() || mine.shares(theirs) {
        return;
    }
    if mine.is_empty() {
        *mine = theirs.clone();
        return;
    }
    // Their children that are new or differ, in ID order.
    let mut gains: Vec<(&Str, &Node)> = Vec::new();
    let mut ours = mine.iter().peekable();
    for (id, child) in theirs.iter() {
        while ours.next_if(|(k, _)| *k < id).is_some() {}
        match ours.peek() {
            Some((k, existing)) if *k == id => {
                if *existing != child {
                    gains.push((id, child));
                }
            }
            _ => gains.push((id, child)),
        }
    }
    if gains.is_empty() {
        return;
    }
    if gains.len() <= mine.len() / 8 {
        for (id, child) in gains {
            match mine.get_mut(id) {
                Some(existing) => existing.merge_from(child),
                None => {
                    mine.insert(id.clone(), child.clone());
                }
            }
        }
        return;
    }
    let mut merged: Vec<(Str, Node)> = Vec::with_capacity(mine.len() + gains.len());
    let mut gains = gains.into_iter().peekable();
    for (id, existing) in mine.iter() {
        while let Some((gid, child)) = gains.next_if(|(g, _)| *g < id) {
            merged.push((gid.clone(), child.clone()));
        }
        match gains.next_if(|(g, _)| *g == id) {
            Some((_, child)) => {
                let mut n = existing.clone();
                n.merge_from(child);
                merged.push((id.clone(), n));
            }
            None => merged.push((id.clone(), existing.clone())),
        }
    }
    merged.extend(gains.map(|(id, child)| (id.clone(), child.clone())));
    *mine = Children::from(merged.into_iter().collect::<BTreeMap<Str, Node>>());
}

fn priority_then<T>(
    a: &T,
    b: &T,
    prio: impl Fn(&T) -> f64,
    rest: impl Fn(&T, &T) -> Ordering,
) -> Ordering {
    prio(a).total_cmp(&prio(b)).then_with(|| rest(a, b))
}

fn metadata_order(a: &MetadataTemplate, b: &MetadataTemplate) -> Ordering {
    priority_then(
        a,
        b,
        |t| t.priority,
        |a, b| {
            (&a.id, &a.label, a.truncate, &a.data_type, &a.from).cmp(&(
                &b.id,
                &b.label,
                b.truncate,
                &b.data_type,
                &b.from,
            ))
        },
    )
}

fn metric_template_order(a: &MetricTemplate, b: &MetricTemplate) -> Ordering {
    priority_then(
        a,
        b,
        |t| t.priority,
        |a, b| (&a.id, &a.label, &a.format, &a.group).cmp(&(&b.id, &b.label, &b.format, &b.group)),
    )
}

fn merge_table_template(mine: &mut TableTemplate, theirs: &TableTemplate) {
    for (m, t) in [
        (&mut mine.id, &theirs.id),
        (&mut mine.label, &theirs.label),
        (&mut mine.prefix, &theirs.prefix),
        (&mut mine.table_type, &theirs.table_type),
    ] {
        if *t > *m {
            *m = t.clone();
        }
    }
    let longer = |a: &Vec<Column>, b: &Vec<Column>| a.len().cmp(&b.len()).then_with(|| a.cmp(b));
    if longer(&theirs.columns, &mine.columns).is_gt() {
        mine.columns = theirs.columns.clone();
    }
    let larger = |a: &BTreeMap<Str, Str>, b: &BTreeMap<Str, Str>| {
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    };
    if larger(&theirs.fixed_rows, &mine.fixed_rows).is_gt() {
        mine.fixed_rows = theirs.fixed_rows.clone();
    }
}

/// Key-wise union; on conflict the value that orders higher is kept.
fn union_by<V: Clone>(
    mine: &mut BTreeMap<Str, V>,
    theirs: &BTreeMap<Str, V>,
    order: impl Fn(&V, &V) -> Ordering,
) {
    for (k, v) in theirs {
        match mine.get_mut(k) {
            Some(existing) => {
                if order(v, existing).is_gt() {
                    *existing = v.clone();
                }
            }
            None => {
                mine.insert(k.clone(), v.clone());
            }
        }
    }
}

impl Topology {
    fn merge_presentation(&mut self, other: &Topology) {
        pick(&mut self.shape, &other.shape);
        pick(&mut self.tag, &other.tag);
        // label and label_plural travel as a pair.
        let theirs = (&other.label, &other.label_plural);
        let take = !other.label.is_empty()
            && (self.label.is_empty() || theirs < (&self.label, &self.label_plural));
        if take {
            self.label = other.label.clone();
            self.label_plural = other.label_plural.clone();
        }
        union_by(&mut self.controls, &other.controls, Ord::cmp);
        union_by(
            &mut self.metadata_templates,
            &other.metadata_templates,
            metadata_order,
        );
        union_by(
            &mut self.metric_templates,
            &other.metric_templates,
            metric_template_order,
        );
        for (k, v) in &other.table_templates {
            match self.table_templates.get_mut(k) {
                Some(existing) => merge_table_template(existing, v),
                None => {
                    self.table_templates.insert(k.clone(), v.clone());
                }
            }
        }
    }

    /// Merges `other` into this topology of kind `kind`.
    pub fn merge_from(&mut self, other: &Topology, kind: TopologyKind) {
        self.merge_presentation(other);
        let host = kind == TopologyKind::Host;
        for (id, node) in &other.nodes {
            match self.nodes.entry(id.clone()) {
                std::collections::btree_map::Entry::Occupied(mut existing) => {
                    existing.get_mut().merge_with_rules(node, host)
                }
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(node.clone());
                }
            }
        }
    }

    /// Like [`Topology::merge_from`], moving nodes out of `other` instead of cloning.
    pub fn merge_owned(&mut self, other: Topology, kind: TopologyKind) {
        self.merge_presentation(&other);
        let host = kind == TopologyKind::Host;
        if self.nodes.is_empty() {
            self.nodes = other.nodes;
            return;
        }
        for (id, node) in other.nodes {
            match self.nodes.entry(id) {
                std::collections::btree_map::Entry::Occupied(mut existing) => {
                    existing.get_mut().merge_with_rules(&node, host)
                }
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(node);
                }
            }
        }
    }
}

fn merge_plugin(mine: &mut PluginSpec, theirs: &PluginSpec) {
    if theirs > mine {
        *mine = theirs.clone();
    }
}

impl Report {
    fn merge_scalars(&mut self, other: &Report) {
        if !other.ts.is_zero() && (self.ts.is_zero() || other.ts < self.ts) {
            self.ts = other.ts;
        }
        for (ip, rec) in &other.dns {
            let mine = self.dns.entry(ip.clone()).or_default();
            mine.forward.union_with(&rec.forward);
            mine.reverse.union_with(&rec.reverse);
        }
        self.sampling.count = self.sampling.count.saturating_add(other.sampling.count);
        self.sampling.total = self.sampling.total.saturating_add(other.sampling.total);
        self.window = self.window.saturating_add(other.window);
        self.shortcut |= other.shortcut;
        for (id, spec) in &other.plugins {
            match self.plugins.get_mut(id) {
                Some(existing) => merge_plugin(existing, spec),
                None => {
                    self.plugins.insert(id.clone(), spec.clone());
                }
            }
        }
        pick(&mut self.id, &other.id);
    }

    /// Merges another report into this one (protocol.md §3.1).
    pub fn merge_from(&mut self, other: &Report) {
        self.merge_scalars(other);
        for (kind, topology) in self.topologies_mut() {
            topology.merge_from(other.topology(kind), kind);
        }
    }

    /// Merges a newer shortcut report of the same probe into this report (that
    /// probe's state): as [`Report::merge_from`], except that nodes take the newer
    /// report's active controls ([`Node::merge_newer_in_topology`]).
    pub fn merge_shortcut_from(&mut self, shortcut: &Report) {
        self.merge_scalars(shortcut);
        let sources: Vec<Str> = shortcut.plugins.keys().cloned().collect();
        for (kind, topology) in self.topologies_mut() {
            let theirs = shortcut.topology(kind);
            topology.merge_presentation(theirs);
            for (id, node) in &theirs.nodes {
                match topology.nodes.get_mut(id) {
                    Some(existing) => existing.merge_newer_in_topology(node, kind, &sources),
                    None => {
                        topology.nodes.insert(id.clone(), node.clone());
                    }
                }
            }
        }
    }

    /// Like [`Report::merge_from`], consuming `other` to avoid copying its nodes.
    pub fn merge_owned(&mut self, mut other: Report) {
        self.merge_scalars(&other);
        for kind in TopologyKind::ALL {
            let theirs = std::mem::take(other.topology_mut(kind));
            self.topology_mut(kind).merge_owned(theirs, kind);
        }
    }

    /// The merge of two reports, leaving both untouched.
    pub fn merged(&self, other: &Report) -> Report {
        let mut out = self.clone();
        out.merge_from(other);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::GoTime;

    fn t(secs: i64) -> GoTime {
        GoTime::from_unix(1_700_000_000 + secs, 0).expect("in range")
    }

    /// Children merged one by one, as a node's children were merged before
    /// `merge_children` walked the maps side by side.
    fn merge_children_one_by_one(mine: &mut Node, theirs: &Node) {
        for (id, child) in theirs.children.iter() {
            match mine.children.get_mut(id) {
                Some(existing) => existing.merge_from(child),
                None => {
                    mine.children.insert(id.clone(), child.clone());
                }
            }
        }
    }

    #[test]
    fn children_merge_like_merging_each_child() {
        // Their children: some new, some the same as ours, some with newer values; few
        // or many of them, to go through both ways of merging a map.
        for (ours, theirs, differ) in [(400, 20, 2), (100, 300, 5), (50, 50, 50), (0, 10, 0)] {
            let mut mine = Node::new("host");
            for i in 0..ours {
                let c = Node::new(format!("c{i:04}")).with_latest("k", t(1), "old");
                mine.children.insert(c.id.clone(), c);
            }
            let mut other = Node::new("host");
            for i in (ours - ours.min(differ))..(ours - ours.min(differ) + theirs) {
                let mut c = Node::new(format!("c{i:04}")).with_latest("k", t(1), "old");
                if i < ours {
                    c.set_latest("k", t(2), "new");
                }
                other.children.insert(c.id.clone(), c);
            }
            let mut want = mine.clone();
            merge_children_one_by_one(&mut want, &other);
            let mut got = mine.clone();
            got.merge_from(&other);
            assert_eq!(got.children, want.children, "{ours} ours, {theirs} theirs");
            // Merging what it already holds changes nothing and keeps the map shared.
            let before = got.children.clone();
            got.merge_from(&other);
            assert!(got.children.shares(&before), "{ours} ours, {theirs} theirs");
        }
    }

    #[test]
    fn latest_entries_with_later_timestamps_win() {
        let mut a = Node::new("n")
            .with_latest("k", t(1), "old")
            .with_latest("a", t(1), "x");
        let b = Node::new("n")
            .with_latest("k", t(2), "new")
            .with_latest("b", t(0), "y");
        a.merge_from(&b);
        assert_eq!(a.latest_value("k").map(Str::as_str), Some("new"));
        assert_eq!(a.latest.len(), 3);
        let mut c = b.clone();
        c.merge_from(&Node::new("n").with_latest("k", t(1), "old"));
        assert_eq!(c.latest_value("k").map(Str::as_str), Some("new"));
    }

    #[test]
    fn host_nodes_union_active_controls_and_others_do_not() {
        let a = Node::new("h;<host>").with_topology("host").with_latest(
            ACTIVE_CONTROLS,
            t(1),
            "host_exec",
        );
        let b = Node::new("h;<host>").with_topology("host").with_latest(
            ACTIVE_CONTROLS,
            t(2),
            "kubernetes_cordon_node",
        );
        let mut m = a.clone();
        m.merge_from(&b);
        assert_eq!(
            m.latest.get(ACTIVE_CONTROLS),
            Some(&LatestEntry {
                timestamp: t(2),
                value: Str::new("host_exec;kubernetes_cordon_node")
            })
        );
        let mut p = a.clone().with_topology("process");
        p.topology = Str::new("process");
        let mut q = b.clone();
        q.topology = Str::new("process");
        p.merge_from(&q);
        assert_eq!(
            p.latest_value(ACTIVE_CONTROLS).map(Str::as_str),
            Some("kubernetes_cordon_node")
        );
    }

    #[test]
    fn a_newer_version_from_the_same_probe_replaces_its_sources_host_controls() {
        let host = |at, controls| {
            Node::new("h;<host>").with_topology("host").with_latest(
                ACTIVE_CONTROLS,
                t(at),
                controls,
            )
        };
        let controls = |n: &Node| n.latest_value(ACTIVE_CONTROLS).map(|v| v.to_string());
        let plugin = [Str::new("tc")];
        // A plugin's shortcut: only that plugin's controls are replaced.
        let mut n = host(1, "host_exec;tc~on");
        n.merge_newer_in_topology(&host(2, "tc~off"), TopologyKind::Host, &plugin);
        assert_eq!(controls(&n).as_deref(), Some("host_exec;tc~off"));
        // Re-stamped to nothing: the plugin's controls go.
        n.merge_newer_in_topology(&host(3, ""), TopologyKind::Host, &plugin);
        assert_eq!(controls(&n).as_deref(), Some("host_exec"));
        // The probe's own shortcut (no plugins) speaks for every control.
        let mut n = host(1, "host_exec;kubernetes_cordon_node");
        n.merge_newer_in_topology(
            &host(2, "kubernetes_uncordon_node"),
            TopologyKind::Host,
            &[],
        );
        assert_eq!(controls(&n).as_deref(), Some("kubernetes_uncordon_node"));
        // An older version changes nothing.
        n.merge_newer_in_topology(&host(1, "host_exec"), TopologyKind::Host, &[]);
        assert_eq!(controls(&n).as_deref(), Some("kubernetes_uncordon_node"));
        // Different probes still union (merge_from), as Scope does.
        let mut m = host(1, "host_exec");
        m.merge_from(&host(2, "kubernetes_cordon_node"));
        assert_eq!(
            controls(&m).as_deref(),
            Some("host_exec;kubernetes_cordon_node")
        );
    }

    #[test]
    fn metric_merge_unions_samples_and_widens_the_range() {
        let s = |secs, value| Sample {
            date: t(secs),
            value,
        };
        let mut a = Metric {
            samples: vec![s(1, 1.0), s(3, 3.0)],
            min: 1.0,
            max: 100.0,
        };
        let b = Metric {
            samples: vec![s(2, 2.0), s(3, 3.0), s(4, 0.5)],
            min: 0.5,
            max: 50.0,
        };
        a.merge_from(&b);
        assert_eq!(
            a.samples.iter().map(|s| s.value).collect::<Vec<_>>(),
            [1.0, 2.0, 3.0, 0.5]
        );
        assert_eq!((a.min, a.max), (0.5, 100.0));
        let mut empty = Metric {
            samples: vec![],
            min: 0.0,
            max: 1e9,
        };
        empty.merge_from(&b);
        assert_eq!(empty, b, "a metric without samples is the identity");
    }

    #[test]
    fn templates_with_higher_priority_win() {
        let mut a = Topology::default();
        a.metric_templates.insert(
            Str::new("cpu"),
            MetricTemplate {
                id: Str::new("cpu"),
                label: Str::new("A"),
                priority: 1.0,
                ..Default::default()
            },
        );
        let mut b = Topology::default();
        b.metric_templates.insert(
            Str::new("cpu"),
            MetricTemplate {
                id: Str::new("cpu"),
                label: Str::new("B"),
                priority: 2.0,
                ..Default::default()
            },
        );
        let mut ab = a.clone();
        ab.merge_from(&b, TopologyKind::Host);
        let mut ba = b.clone();
        ba.merge_from(&a, TopologyKind::Host);
        assert_eq!(ab.metric_templates["cpu"].label.as_str(), "B");
        assert_eq!(ab, ba);
    }

    #[test]
    fn report_ts_is_the_earliest_non_zero_and_windows_add_up() {
        let mut a = Report::empty();
        a.window = 3;
        let mut b = Report::empty();
        b.ts = t(5);
        b.window = 4;
        a.merge_from(&b);
        assert_eq!(a.ts, t(5));
        assert_eq!(a.window, 7);
        let mut c = Report::empty();
        c.ts = t(1);
        a.merge_from(&c);
        assert_eq!(a.ts, t(1));
    }
}
