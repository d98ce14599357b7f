//! Deltas: what a probe sends between full reports (protocol.md §3.6), and how a
//! receiver that keeps the last full report rebuilds the current one from a delta.
//!
//! A delta node keeps each section (`latest`, `sets`, `parents`, `adjacency`) only when
//! it changed since the last full report, and always carries its metrics. Unchanged
//! nodes without metrics are left out. Unlike Scope, templates and controls are only
//! dropped when they are identical to the last full report's, so a plugin that appears
//! between two full reports shows up at once instead of waiting for the next full one.
//! Receivers that merge (Scope's app) and receivers that apply (Rescope's) both accept it.

use std::collections::BTreeMap;

use crate::node::{Latest, Node};
use crate::report::Report;
use crate::str::Str;
use crate::topology::{Topology, TopologyKind};

fn same_values(a: &Latest, b: &Latest) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b.iter())
            .all(|((ka, va), (kb, vb))| ka == kb && va.value == vb.value)
}

/// Removes entries equal to the base's from `map`.
fn drop_unchanged<V: PartialEq>(map: &mut BTreeMap<Str, V>, base: &BTreeMap<Str, V>) {
    map.retain(|k, v| base.get(k) != Some(v));
}

fn node_delta(node: &Node, base: &Node) -> Option<Node> {
    let mut d = Node::default();
    let mut changed = false;
    if !same_values(&node.latest, &base.latest) {
        d.latest = node.latest.clone();
        changed = true;
    }
    if node.sets != base.sets {
        d.sets = node.sets.clone();
        changed = true;
    }
    if node.parents != base.parents {
        d.parents = node.parents.clone();
        changed = true;
    }
    if node.adjacency != base.adjacency {
        d.adjacency = node.adjacency.clone();
        changed = true;
    }
    if !changed && node.metrics.is_empty() {
        return None;
    }
    d.metrics = node.metrics.clone();
    d.children = node.children.clone();
    Some(d)
}

fn topology_delta(current: &Topology, base: &Topology) -> Topology {
    let mut out = Topology {
        controls: current.controls.clone(),
        metadata_templates: current.metadata_templates.clone(),
        metric_templates: current.metric_templates.clone(),
        table_templates: current.table_templates.clone(),
        ..Topology::default()
    };
    for (mine, theirs, slot) in [
        (&current.shape, &base.shape, &mut out.shape),
        (&current.tag, &base.tag, &mut out.tag),
        (&current.label, &base.label, &mut out.label),
        (
            &current.label_plural,
            &base.label_plural,
            &mut out.label_plural,
        ),
    ] {
        if mine != theirs {
            *slot = mine.clone();
        }
    }
    drop_unchanged(&mut out.controls, &base.controls);
    drop_unchanged(&mut out.metadata_templates, &base.metadata_templates);
    drop_unchanged(&mut out.metric_templates, &base.metric_templates);
    drop_unchanged(&mut out.table_templates, &base.table_templates);
    for (id, node) in &current.nodes {
        match base.nodes.get(id) {
            Some(old) if old.id == node.id && old.topology == node.topology => {
                if let Some(d) = node_delta(node, old) {
                    out.nodes.insert(id.clone(), d);
                }
            }
            _ => {
                out.nodes.insert(id.clone(), node.clone());
            }
        }
    }
    out
}

impl Report {
    /// The delta that turns `last_full` into `self`. The caller sets `Window`.
    pub fn delta_from(&self, last_full: &Report) -> Report {
        let mut out = Report::empty();
        for (kind, topology) in out.topologies_mut() {
            *topology = topology_delta(self.topology(kind), last_full.topology(kind));
        }
        out.ts = self.ts;
        out.dns = self.dns.clone();
        out.sampling = self.sampling;
        out.window = self.window.saturating_sub(last_full.window);
        out.shortcut = self.shortcut;
        out.plugins = self.plugins.clone();
        out.id = self.id.clone();
        out
    }

    /// Applies a delta to this report, which must be the full report the delta was
    /// computed against (plus any deltas applied since). Sections a delta node carries
    /// replace this report's; sections it leaves out are unchanged; a node that carries
    /// its ID or topology replaces the node here whole. Nodes cannot be removed by a
    /// delta: only the next full report drops them.
    pub fn apply_delta(&mut self, delta: &Report) {
        self.apply_update(delta, false);
    }

    /// Applies a full report (`full`) or a delta to this one, the way a receiver that
    /// keeps one report per probe wants it: a full report replaces everything (nodes it
    /// lacks are gone, its plugin list is the probe's whole list); a delta is applied as
    /// in [`Report::apply_delta`]. Either way, metric samples accumulate instead of
    /// being replaced, so history survives; trim it with
    /// [`Report::drop_samples_before`].
    pub fn apply_keeping_history(&mut self, update: &Report, full: bool) {
        if !full {
            self.apply_update(update, true);
            return;
        }
        let mut next = update.clone();
        for kind in TopologyKind::ALL {
            let old = self.topology_mut(kind);
            for (id, node) in next.topology_mut(kind).nodes.iter_mut() {
                if let Some(previous) = old.nodes.get_mut(id) {
                    keep_history(node, std::mem::take(&mut previous.metrics));
                }
            }
        }
        *self = next;
    }

    /// Drops metric samples older than `cutoff` from every node.
    pub fn drop_samples_before(&mut self, cutoff: crate::time::GoTime) {
        for (_, t) in self.topologies_mut() {
            for node in t.nodes.values_mut() {
                node.drop_samples_before(cutoff);
            }
        }
    }

    fn apply_update(&mut self, delta: &Report, keep_history: bool) {
        self.apply_update_meta(delta);
        for kind in TopologyKind::ALL {
            let theirs = delta.topology(kind);
            let mine = self.topology_mut(kind);
            for (id, d) in &theirs.nodes {
                match mine.nodes.get_mut(id) {
                    Some(node) => apply_delta_node(node, d, keep_history),
                    None => {
                        // A diff node without its base stays as it is: with no
                        // topology it is "part-merged", and renderers drop it.
                        mine.nodes.insert(id.clone(), d.clone());
                    }
                }
            }
        }
    }

    /// What a delta changes besides nodes: presentation, controls and templates
    /// (added or replaced, never removed) and the report's own fields (replaced).
    pub fn apply_update_meta(&mut self, delta: &Report) {
        for kind in TopologyKind::ALL {
            let theirs = delta.topology(kind);
            let mine = self.topology_mut(kind);
            for (slot, value) in [
                (&mut mine.shape, &theirs.shape),
                (&mut mine.tag, &theirs.tag),
                (&mut mine.label, &theirs.label),
                (&mut mine.label_plural, &theirs.label_plural),
            ] {
                if !value.is_empty() {
                    *slot = value.clone();
                }
            }
            mine.controls
                .extend(theirs.controls.iter().map(|(k, v)| (k.clone(), v.clone())));
            mine.metadata_templates.extend(
                theirs
                    .metadata_templates
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
            mine.metric_templates.extend(
                theirs
                    .metric_templates
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
            mine.table_templates.extend(
                theirs
                    .table_templates
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
        }
        self.ts = delta.ts;
        self.dns = delta.dns.clone();
        self.sampling = delta.sampling;
        self.window = delta.window;
        self.shortcut = delta.shortcut;
        self.plugins = delta.plugins.clone();
        self.id = delta.id.clone();
    }
}

/// Gives `node` (a newer version of a node) the metric history of the older version:
/// the older samples followed by the node's own.
pub fn keep_history(node: &mut Node, mut previous: crate::node::Metrics) {
    previous.merge_with(&node.metrics, |_, mine, theirs| mine.merge_from(theirs));
    node.metrics = previous;
}

/// Applies one node of a delta to the receiver's version of that node (see
/// [`Report::apply_delta`]): a delta node that carries its ID or topology is complete
/// and replaces the node; one without replaces only the sections it carries. With
/// `keep_history`, metric samples accumulate.
pub fn apply_delta_node(node: &mut Node, d: &Node, keep_history_: bool) {
    let complete = !d.id.is_empty() || !d.topology.is_empty();
    if !complete {
        if !d.latest.is_empty() {
            node.latest = d.latest.clone();
        }
        if !d.sets.is_empty() {
            node.sets = d.sets.clone();
        }
        if !d.parents.is_empty() {
            node.parents = d.parents.clone();
        }
        if !d.adjacency.is_empty() {
            node.adjacency = d.adjacency.clone();
        }
        if keep_history_ {
            node.metrics
                .merge_with(&d.metrics, |_, mine, theirs| mine.merge_from(theirs));
        } else if !d.metrics.is_empty() {
            node.metrics = d.metrics.clone();
        }
        if !d.children.is_empty() {
            node.children = d.children.clone();
        }
    } else if keep_history_ {
        let metrics = std::mem::take(&mut node.metrics);
        *node = d.clone();
        keep_history(node, metrics);
    } else {
        *node = d.clone();
    }
}

impl Node {
    /// Drops metric samples older than `cutoff`; true if any were dropped.
    pub fn drop_samples_before(&mut self, cutoff: crate::time::GoTime) -> bool {
        let mut dropped = false;
        for (_, m) in self.metrics.iter_mut() {
            let before = m.samples.len();
            m.drop_before(cutoff);
            dropped |= m.samples.len() != before;
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::Metric;
    use crate::time::GoTime;

    fn t(secs: i64) -> GoTime {
        GoTime::from_unix(1_700_000_000 + secs, 0).expect("in range")
    }

    fn process(id: &str, ts: GoTime, name: &str) -> Node {
        Node::new(id)
            .with_topology("process")
            .with_latest("name", ts, name)
    }

    #[test]
    fn unchanged_nodes_without_metrics_are_left_out() {
        let mut full = Report::empty();
        full[TopologyKind::Process].add_node(process("h;1", t(0), "init"));
        let mut now = Report::empty();
        now[TopologyKind::Process].add_node(process("h;1", t(3), "init"));
        let delta = now.delta_from(&full);
        assert!(delta[TopologyKind::Process].nodes.is_empty());
    }

    #[test]
    fn changed_sections_are_kept_and_ids_cleared() {
        let mut full = Report::empty();
        full[TopologyKind::Process].add_node(process("h;1", t(0), "init"));
        let mut now = Report::empty();
        let mut n = process("h;1", t(3), "systemd");
        n.metrics.insert("cpu", Metric::single(t(3), 1.0, 100.0));
        now[TopologyKind::Process].add_node(n);
        now[TopologyKind::Process].add_node(process("h;2", t(3), "new"));
        let delta = now.delta_from(&full);
        let d = &delta[TopologyKind::Process].nodes["h;1"];
        assert!(d.id.is_empty() && d.topology.is_empty());
        assert_eq!(d.latest_value("name").map(Str::as_str), Some("systemd"));
        assert!(d.sets.is_empty() && d.parents.is_empty());
        assert_eq!(delta[TopologyKind::Process].nodes["h;2"].id.as_str(), "h;2");

        let mut rebuilt = full.clone();
        rebuilt.apply_delta(&delta);
        assert_eq!(
            rebuilt[TopologyKind::Process].nodes,
            now[TopologyKind::Process].nodes
        );
    }

    #[test]
    fn history_survives_fulls_and_deltas() {
        let mut state = Report::empty();
        let mut full = Report::empty();
        let mut n = process("h;1", t(0), "init");
        n.metrics.insert("cpu", Metric::single(t(0), 1.0, 100.0));
        full[TopologyKind::Process].add_node(n.clone());
        state.apply_keeping_history(&full, true);
        let mut next = full.clone();
        next[TopologyKind::Process]
            .nodes
            .get_mut("h;1")
            .expect("node")
            .metrics
            .insert("cpu", Metric::single(t(3), 2.0, 100.0));
        state.apply_keeping_history(&next.delta_from(&full), false);
        let mut again = next.clone();
        again[TopologyKind::Process]
            .nodes
            .get_mut("h;1")
            .expect("node")
            .metrics
            .insert("cpu", Metric::single(t(6), 3.0, 100.0));
        state.apply_keeping_history(&again, true);
        let cpu = state[TopologyKind::Process].nodes["h;1"]
            .metrics
            .get("cpu")
            .expect("cpu");
        assert_eq!(
            cpu.samples.iter().map(|s| s.value).collect::<Vec<_>>(),
            [1.0, 2.0, 3.0]
        );
        state.drop_samples_before(t(2));
        let cpu = state[TopologyKind::Process].nodes["h;1"]
            .metrics
            .get("cpu")
            .expect("cpu");
        assert_eq!(cpu.samples.len(), 2);
        // A full report without the node removes it.
        state.apply_keeping_history(&Report::empty(), true);
        assert!(state[TopologyKind::Process].nodes.is_empty());
    }

    #[test]
    fn templates_equal_to_the_last_full_are_dropped_and_new_ones_kept() {
        use crate::topology::MetricTemplate;
        let tmpl = |id: &str| MetricTemplate {
            id: Str::new(id),
            label: Str::new(id),
            ..Default::default()
        };
        let mut full = Report::empty();
        full[TopologyKind::Host]
            .metric_templates
            .insert(Str::new("cpu"), tmpl("cpu"));
        let mut now = full.clone();
        now[TopologyKind::Host]
            .metric_templates
            .insert(Str::new("iowait"), tmpl("iowait"));
        let delta = now.delta_from(&full);
        let kept: Vec<_> = delta[TopologyKind::Host]
            .metric_templates
            .keys()
            .map(Str::as_str)
            .collect();
        assert_eq!(kept, ["iowait"]);
        assert!(
            delta[TopologyKind::Host].shape.is_empty(),
            "unchanged presentation is cleared"
        );
    }
}
