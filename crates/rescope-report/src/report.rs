//! The report: one snapshot (or delta, or merge) of every topology a probe knows.

use std::collections::BTreeMap;
use std::ops::{Index, IndexMut};

use crate::plugin::PluginSpecs;
use crate::sorted::StringSet;
use crate::str::Str;
use crate::time::GoTime;
use crate::topology::{TOPOLOGY_COUNT, Topology, TopologyKind};

/// Forward and reverse DNS names known for one address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsRecord {
    pub forward: StringSet,
    pub reverse: StringSet,
}

/// Packet-sampling statistics (probes send zeros; kept for compatibility).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sampling {
    pub count: u64,
    pub total: u64,
}

/// A report, as probes publish it, plugins return it and the app merges it.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// When the report was generated; a merge keeps the earliest non-zero value.
    pub ts: GoTime,
    topologies: [Topology; TOPOLOGY_COUNT],
    /// Address → names.
    pub dns: BTreeMap<Str, DnsRecord>,
    pub sampling: Sampling,
    /// The period this report covers, in nanoseconds. Merging sums windows.
    pub window: i64,
    /// Event-driven partial report, to be propagated at once.
    pub shortcut: bool,
    pub plugins: PluginSpecs,
    /// Random identifier; equal IDs mean identical reports.
    pub id: Str,
}

impl Default for Report {
    fn default() -> Self {
        Self::empty()
    }
}

impl Report {
    /// An empty report whose topologies carry their default shapes and labels.
    pub fn empty() -> Self {
        Report {
            ts: GoTime::ZERO,
            topologies: TopologyKind::ALL.map(Topology::empty),
            dns: BTreeMap::new(),
            sampling: Sampling::default(),
            window: 0,
            shortcut: false,
            plugins: PluginSpecs::new(),
            id: Str::empty(),
        }
    }

    pub fn topology(&self, kind: TopologyKind) -> &Topology {
        &self.topologies[kind.index()]
    }

    pub fn topology_mut(&mut self, kind: TopologyKind) -> &mut Topology {
        &mut self.topologies[kind.index()]
    }

    /// All topologies in canonical order.
    pub fn topologies(&self) -> impl Iterator<Item = (TopologyKind, &Topology)> {
        TopologyKind::ALL.into_iter().zip(self.topologies.iter())
    }

    pub fn topologies_mut(&mut self) -> impl Iterator<Item = (TopologyKind, &mut Topology)> {
        TopologyKind::ALL
            .into_iter()
            .zip(self.topologies.iter_mut())
    }

    /// The topology named by a node's `topology` field (`container_image`, …).
    pub fn topology_by_name(&self, name: &str) -> Option<&Topology> {
        TopologyKind::from_name(name).map(|k| self.topology(k))
    }

    /// Fills every empty presentation field (shape, tag, label, plural label) with the
    /// topology's default, which is what a decoder does: on the wire an empty field
    /// means "the default".
    pub fn fill_default_presentation(&mut self) {
        for (kind, t) in self.topologies_mut() {
            let (shape, tag, label, plural) = kind.defaults();
            for (slot, default) in [
                (&mut t.shape, shape),
                (&mut t.tag, tag),
                (&mut t.label, label),
                (&mut t.label_plural, plural),
            ] {
                if slot.is_empty() && !default.is_empty() {
                    *slot = Str::new(default);
                }
            }
        }
    }

    /// Total number of nodes across all topologies.
    pub fn node_count(&self) -> usize {
        self.topologies.iter().map(|t| t.nodes.len()).sum()
    }
}

impl Index<TopologyKind> for Report {
    type Output = Topology;
    fn index(&self, kind: TopologyKind) -> &Topology {
        self.topology(kind)
    }
}

impl IndexMut<TopologyKind> for Report {
    fn index_mut(&mut self, kind: TopologyKind) -> &mut Topology {
        self.topology_mut(kind)
    }
}
