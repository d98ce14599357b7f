//! Nodes: one entity (a process, a container, a connection end point, …) and everything
//! known about it.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use crate::sorted::{Sets, SortedMap, StringSet};
use crate::str::Str;
use crate::time::GoTime;

/// Key of the `latest` entry listing the controls a node offers, joined with `;`.
pub const ACTIVE_CONTROLS: &str = "active_controls";
/// Key of the `latest` entry naming the probe that can run a node's controls.
pub const CONTROL_PROBE_ID: &str = "control_probe_id";
/// Key of the `latest` entry naming the host node a node was reported from.
pub const HOST_NODE_ID: &str = "host_node_id";
/// Prefix of counter entries in `latest` (`count_container` = `"3"`).
pub const COUNTER_PREFIX: &str = "count_";

/// A `latest` value and when it was observed.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct LatestEntry {
    pub timestamp: GoTime,
    pub value: Str,
}

/// A node's `latest` map: key → newest value.
pub type Latest = SortedMap<LatestEntry>;

/// One metric sample.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    pub date: GoTime,
    pub value: f64,
}

/// A metric: samples in ascending date order with unique dates, and its range.
/// `max` is usually a capacity (100 for percentages, the memory limit for memory).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metric {
    pub samples: Vec<Sample>,
    pub min: f64,
    pub max: f64,
}

impl Metric {
    /// A metric holding one sample, with the given capacity as `max`.
    pub fn single(date: GoTime, value: f64, max: f64) -> Self {
        Metric {
            samples: vec![Sample { date, value }],
            min: value,
            max: max.max(value),
        }
    }

    /// The newest sample, the metric's current value.
    pub fn last(&self) -> Option<&Sample> {
        self.samples.last()
    }

    /// Drops samples older than `cutoff`.
    pub fn drop_before(&mut self, cutoff: GoTime) {
        let keep_from = self.samples.partition_point(|s| s.date < cutoff);
        self.samples.drain(..keep_from);
    }
}

/// A node's metrics: metric ID → metric.
pub type Metrics = SortedMap<Metric>;

/// One node of a topology.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Node {
    /// Equal to the node's key in its topology; empty in delta reports.
    pub id: Str,
    /// The internal topology name (`process`, `container_image`, …); empty in deltas.
    pub topology: Str,
    pub sets: Sets,
    /// Destination node IDs in the same topology.
    pub adjacency: StringSet,
    pub latest: Latest,
    pub metrics: Metrics,
    /// Parent topology name → parent node IDs.
    pub parents: Sets,
    /// Used only in rendered nodes.
    pub children: Children,
}

/// A rendered node's children by ID. Copies of a node share its children until one of
/// them changes them (copy on write), so copying a node with thousands of children, as
/// rendering steps do, costs no more than copying one without. Reads and writes go
/// through the map as usual.
#[derive(Clone, Default)]
pub struct Children(Option<Arc<BTreeMap<Str, Node>>>);

static NO_CHILDREN: BTreeMap<Str, Node> = BTreeMap::new();

impl Deref for Children {
    type Target = BTreeMap<Str, Node>;
    fn deref(&self) -> &BTreeMap<Str, Node> {
        self.0.as_deref().unwrap_or(&NO_CHILDREN)
    }
}

impl DerefMut for Children {
    /// The map to change, copied first if another node shares it.
    fn deref_mut(&mut self) -> &mut BTreeMap<Str, Node> {
        Arc::make_mut(self.0.get_or_insert_with(Arc::default))
    }
}

impl Children {
    /// Whether both are the very same map (shared, so equal without looking).
    pub fn shares(&self, other: &Children) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

impl PartialEq for Children {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) if Arc::ptr_eq(a, b) => true,
            _ => **self == **other,
        }
    }
}

impl std::fmt::Debug for Children {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

impl From<BTreeMap<Str, Node>> for Children {
    fn from(map: BTreeMap<Str, Node>) -> Self {
        if map.is_empty() {
            Children(None)
        } else {
            Children(Some(Arc::new(map)))
        }
    }
}

impl FromIterator<(Str, Node)> for Children {
    fn from_iter<I: IntoIterator<Item = (Str, Node)>>(iter: I) -> Self {
        Children::from(iter.into_iter().collect::<BTreeMap<_, _>>())
    }
}

impl<'a> IntoIterator for &'a Children {
    type Item = (&'a Str, &'a Node);
    type IntoIter = std::collections::btree_map::Iter<'a, Str, Node>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl Node {
    pub fn new(id: impl Into<Str>) -> Self {
        Node {
            id: id.into(),
            ..Node::default()
        }
    }

    pub fn with_topology(mut self, topology: impl Into<Str>) -> Self {
        self.topology = topology.into();
        self
    }

    /// Sets a `latest` entry (builder style).
    pub fn with_latest(mut self, key: &str, timestamp: GoTime, value: impl Into<Str>) -> Self {
        self.set_latest(key, timestamp, value);
        self
    }

    /// Sets a `latest` entry, replacing any previous value regardless of its timestamp.
    pub fn set_latest(&mut self, key: &str, timestamp: GoTime, value: impl Into<Str>) {
        let entry = LatestEntry {
            timestamp,
            value: value.into(),
        };
        match self.latest.get_mut(key) {
            Some(existing) => *existing = entry,
            None => {
                self.latest.insert(key, entry);
            }
        }
    }

    /// The value of a `latest` entry.
    pub fn latest_value(&self, key: &str) -> Option<&Str> {
        self.latest.get(key).map(|e| &e.value)
    }

    /// The control IDs in `active_controls` (empty entries skipped).
    pub fn active_controls(&self) -> impl Iterator<Item = &str> {
        self.latest_value(ACTIVE_CONTROLS)
            .map(|v| v.as_str())
            .unwrap_or("")
            .split(';')
            .filter(|s| !s.is_empty())
    }

    /// Adds a parent link.
    pub fn add_parent(&mut self, topology: &str, parent_id: impl Into<Str>) {
        self.parents.add(topology, parent_id);
    }

    /// Adds an edge to another node of the same topology.
    pub fn add_adjacent(&mut self, id: impl Into<Str>) {
        self.adjacency.insert(id);
    }

    /// Adds a child node, merging with a child already there.
    pub fn add_child(&mut self, child: Node) {
        match self.children.get_mut(&child.id) {
            Some(existing) => existing.merge_from(&child),
            None => {
                self.children.insert(child.id.clone(), child);
            }
        }
    }
}
