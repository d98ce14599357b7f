//! The spy's hand-off to the publisher: a report plus what changed in the topologies
//! that reporters keep between ticks.
//!
//! The endpoint and process reporters keep their nodes from tick to tick and build
//! again only the ones that changed. Sending all of them every second (thousands on a
//! busy host) meant copying each one, merging it into the publisher's pending report
//! and dropping the copy: work that grew with the size of the host, not with what
//! happened on it. Instead each reporter says which nodes changed or went
//! ([`NodeChanges`]), and the receiver keeps its own copy of the topologies
//! ([`KeptNodes`]). Every kept node is current at each tick since it was sent, so the
//! receiver gives it those ticks' times (and a metric sample per tick) when it needs
//! the whole report; the copies that were replaced or went during a publish window
//! are handed back to be merged, so the published union of the window's reports
//! stays exactly what it was.

use std::collections::BTreeMap;

use rescope_report::{GoTime, Node, Report, Sample, Str, TopologyKind};

/// One spy tick, as the spy hands it on.
#[derive(Debug, Clone)]
pub struct SpyReport {
    /// Everything but the nodes of the kept topologies.
    pub report: Report,
    /// What changed in each kept topology since the spy's last report (none for a
    /// topology whose reporter keeps nothing, or failed this tick).
    pub kept: Vec<NodeChanges>,
}

impl From<Report> for SpyReport {
    fn from(report: Report) -> Self {
        SpyReport {
            report,
            kept: Vec::new(),
        }
    }
}

/// `earlier` changes the receiver missed, followed by `later`, topology by topology.
pub fn then_all(mut earlier: Vec<NodeChanges>, later: Vec<NodeChanges>) -> Vec<NodeChanges> {
    for changes in later {
        match earlier.iter().position(|c| c.kind == changes.kind) {
            Some(i) => {
                let before = earlier.swap_remove(i);
                earlier.push(before.then(changes));
            }
            None => earlier.push(changes),
        }
    }
    earlier
}

/// What changed in one topology since the last changes sent.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeChanges {
    pub kind: TopologyKind,
    /// `nodes` is the whole topology: the receiver forgets what it kept.
    pub whole: bool,
    /// Node ID → its new copy, or `None` when it went.
    pub nodes: BTreeMap<Str, Option<Node>>,
    /// How many nodes the topology has after these changes.
    pub total: usize,
}

impl NodeChanges {
    /// No change (yet) to a topology of `total` nodes.
    pub fn none(kind: TopologyKind, total: usize) -> Self {
        NodeChanges {
            kind,
            whole: false,
            nodes: BTreeMap::new(),
            total,
        }
    }

    /// The whole topology.
    pub fn whole(kind: TopologyKind, nodes: impl IntoIterator<Item = Node>) -> Self {
        let nodes: BTreeMap<Str, Option<Node>> =
            nodes.into_iter().map(|n| (n.id.clone(), Some(n))).collect();
        NodeChanges {
            kind,
            whole: true,
            total: nodes.len(),
            nodes,
        }
    }

    /// These changes followed by `later` (when the receiver missed these).
    pub fn then(mut self, later: NodeChanges) -> NodeChanges {
        if later.whole || later.kind != self.kind {
            return later;
        }
        for (id, node) in later.nodes {
            if self.whole && node.is_none() {
                self.nodes.remove(&id);
            } else {
                self.nodes.insert(id, node);
            }
        }
        self.total = later.total;
        self
    }
}

/// A receiver's copy of the kept topologies, brought up to date by [`NodeChanges`].
///
/// The receiver works in windows (a publish interval): every tick whose changes came
/// in the window counts, for each node current at that tick, as a report of the node
/// at that tick. A kept node's `latest` entries are all as old as the last tick it was
/// current at, and each of its metrics holds its current value (its last sample),
/// which the node had at every tick since it was sent: a window gives it one sample
/// per such tick, as merging the window's whole reports does.
#[derive(Debug, Default)]
pub struct KeptNodes {
    topologies: Vec<KeptTopology>,
}

#[derive(Debug)]
struct KeptTopology {
    kind: TopologyKind,
    nodes: BTreeMap<Str, KeptNode>,
    /// The ticks of the current window whose changes came, oldest first, each with
    /// its number among every tick applied.
    window: Vec<(u64, GoTime)>,
    /// The time of the last changes: every kept node was current then.
    stamp: GoTime,
    /// How many ticks were applied.
    applied: u64,
}

#[derive(Debug)]
struct KeptNode {
    node: Node,
    /// The number of the tick that sent this copy.
    since: u64,
}

impl KeptTopology {
    /// `node` as the window's reports of it, merged, say it.
    fn as_reported(&self, node: &Node, since: u64) -> Node {
        let mut node = node.clone();
        stamp(&mut node, self.stamp);
        if !node.metrics.is_empty() {
            let first = self.window.partition_point(|(n, _)| *n < since);
            let ticks = &self.window[first..];
            for (_, metric) in node.metrics.iter_mut() {
                if let Some(last) = metric.samples.last().copied() {
                    metric.samples.clear();
                    metric.samples.extend(ticks.iter().map(|(_, date)| Sample {
                        date: *date,
                        value: last.value,
                    }));
                }
            }
        }
        node
    }
}

impl KeptNodes {
    /// Applies `changes`, made at `ts`. Each copy they replace or remove that was
    /// current at a tick of this window goes to `replaced`, as the window's reports
    /// had it.
    pub fn apply(&mut self, changes: NodeChanges, ts: GoTime, mut replaced: impl FnMut(Node)) {
        let i = match self.topologies.iter().position(|t| t.kind == changes.kind) {
            Some(i) => i,
            None => {
                self.topologies.push(KeptTopology {
                    kind: changes.kind,
                    nodes: BTreeMap::new(),
                    window: Vec::new(),
                    stamp: GoTime::default(),
                    applied: 0,
                });
                self.topologies.len() - 1
            }
        };
        let kept = &mut self.topologies[i];
        let in_window = !kept.window.is_empty();
        let tick = kept.applied;
        kept.applied += 1;
        if changes.whole {
            for (_, old) in std::mem::take(&mut kept.nodes) {
                if in_window {
                    replaced(kept.as_reported(&old.node, old.since));
                }
            }
            kept.nodes = changes
                .nodes
                .into_iter()
                .filter_map(|(id, node)| node.map(|node| (id, KeptNode { node, since: tick })))
                .collect();
        } else {
            for (id, node) in changes.nodes {
                let old = match node {
                    Some(node) => kept.nodes.insert(id, KeptNode { node, since: tick }),
                    None => kept.nodes.remove(&id),
                };
                if let Some(old) = old
                    && in_window
                {
                    replaced(kept.as_reported(&old.node, old.since));
                }
            }
        }
        kept.window.push((tick, ts));
        kept.stamp = ts;
    }

    /// Merges every node kept and current at a tick of this window, as the window's
    /// reports had it, into `report`.
    pub fn merge_into(&self, report: &mut Report) {
        for kept in &self.topologies {
            if kept.window.is_empty() {
                continue;
            }
            let kind = kept.kind;
            let mine = &mut report.topology_mut(kind).nodes;
            if mine.is_empty() {
                *mine = kept
                    .nodes
                    .iter()
                    .map(|(id, k)| (id.clone(), kept.as_reported(&k.node, k.since)))
                    .collect();
                continue;
            }
            for (id, k) in &kept.nodes {
                let node = kept.as_reported(&k.node, k.since);
                crate::pending::merge_node(mine, kind, id.clone(), node);
            }
        }
    }

    /// Starts a new window: the ticks applied so far no longer count.
    pub fn end_window(&mut self) {
        for kept in &mut self.topologies {
            kept.window.clear();
        }
    }

    /// How many nodes are kept, in every topology.
    pub fn len(&self) -> usize {
        self.topologies.iter().map(|t| t.nodes.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Sets the time of every `latest` entry of `node` (a kept node's entries are all as
/// old as its last changes).
fn stamp(node: &mut Node, ts: GoTime) {
    for (_, entry) in node.latest.iter_mut() {
        entry.timestamp = ts;
    }
}
