//! The spy's hand-off to the publisher: a report plus what changed in a topology that
//! a reporter keeps between ticks.
//!
//! The endpoint reporter keeps its nodes from tick to tick and builds again only the
//! ones whose connections changed. Sending all of them every second (thousands on a
//! busy host) meant copying each one, merging it into the publisher's pending report
//! and dropping the copy: work that grew with the size of the host, not with what
//! happened on it. Instead the reporter says which nodes changed or went
//! ([`NodeChanges`]), and the receiver keeps its own copy of the topology
//! ([`KeptNodes`]). Every kept node is current at the time of the last changes, so
//! the receiver stamps it with that time when it needs the whole report; the copies
//! that were replaced or went during a publish window are handed back to be merged,
//! so the published union of the window's reports stays exactly what it was.

use std::collections::BTreeMap;

use rescope_report::{GoTime, Node, Report, Str, TopologyKind};

/// One spy tick, as the spy hands it on.
#[derive(Debug, Clone)]
pub struct SpyReport {
    /// Everything but the nodes of the kept topology, if there is one.
    pub report: Report,
    /// What changed in the kept topology since the spy's last report (`None` when no
    /// reporter keeps one, or when it failed this tick).
    pub kept: Option<NodeChanges>,
}

impl From<Report> for SpyReport {
    fn from(report: Report) -> Self {
        SpyReport { report, kept: None }
    }
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

/// A receiver's copy of a kept topology, brought up to date by [`NodeChanges`].
#[derive(Debug, Default)]
pub struct KeptNodes {
    kind: Option<TopologyKind>,
    nodes: BTreeMap<Str, Node>,
    /// The time of the last changes: every kept node was current then.
    stamp: GoTime,
}

impl KeptNodes {
    /// Applies `changes`, made at `ts`. Each copy they replace or remove goes to
    /// `replaced`, stamped with the time it was last current.
    pub fn apply(&mut self, changes: NodeChanges, ts: GoTime, mut replaced: impl FnMut(Node)) {
        let before = self.stamp;
        if changes.whole || self.kind != Some(changes.kind) {
            for (_, mut old) in std::mem::take(&mut self.nodes) {
                stamp(&mut old, before);
                replaced(old);
            }
            self.nodes = changes
                .nodes
                .into_iter()
                .filter_map(|(id, node)| node.map(|n| (id, n)))
                .collect();
        } else {
            for (id, node) in changes.nodes {
                let old = match node {
                    Some(node) => self.nodes.insert(id, node),
                    None => self.nodes.remove(&id),
                };
                if let Some(mut old) = old {
                    stamp(&mut old, before);
                    replaced(old);
                }
            }
        }
        self.kind = Some(changes.kind);
        self.stamp = ts;
    }

    /// Merges every kept node, stamped with the time of the last changes, into
    /// `report`.
    pub fn merge_into(&self, report: &mut Report) {
        let Some(kind) = self.kind else {
            return;
        };
        let mine = &mut report.topology_mut(kind).nodes;
        if mine.is_empty() {
            mine.clone_from(&self.nodes);
            for node in mine.values_mut() {
                stamp(node, self.stamp);
            }
            return;
        }
        for (id, node) in &self.nodes {
            let mut node = node.clone();
            stamp(&mut node, self.stamp);
            crate::pending::merge_node(mine, kind, id.clone(), node);
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

/// Sets the time of every `latest` entry of `node` (a kept node's entries are all as
/// old as its last changes).
fn stamp(node: &mut Node, ts: GoTime) {
    for (_, entry) in node.latest.iter_mut() {
        entry.timestamp = ts;
    }
}
