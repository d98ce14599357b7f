//! Topologies: which kinds exist, their names on the wire, and what a topology holds
//! besides nodes (presentation, controls and templates).

use std::collections::BTreeMap;

use crate::node::Node;
use crate::str::Str;

macro_rules! topology_kinds {
    ($( $variant:ident => $wire:literal, $name:literal, $tag:literal, $shape:literal, $shape_tag:literal, $label:literal, $plural:literal; )*) => {
        /// Every topology a report can hold, in Scope's canonical order (the order used
        /// for walking and merging, and for writing reports).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum TopologyKind { $( $variant, )* }

        impl TopologyKind {
            pub const ALL: [TopologyKind; topology_kinds!(@count $($variant)*)] = [ $( TopologyKind::$variant, )* ];

            /// The report's top-level key (a Go field name), e.g. `ContainerImage`.
            pub fn wire_key(self) -> &'static str {
                match self { $( TopologyKind::$variant => $wire, )* }
            }

            /// The internal name used in a node's `topology`, in `parents` keys and in
            /// `count_*` counters, e.g. `container_image`.
            pub fn name(self) -> &'static str {
                match self { $( TopologyKind::$variant => $name, )* }
            }

            /// The tag of single-component node IDs (`<id>;<tag>`), e.g. `<daemonset>`.
            /// `None` for topologies whose IDs have another shape.
            pub fn id_tag(self) -> Option<&'static str> {
                let tag = match self { $( TopologyKind::$variant => $tag, )* };
                (!tag.is_empty()).then_some(tag)
            }

            /// Default presentation: (shape, tag, label, plural label).
            pub fn defaults(self) -> (&'static str, &'static str, &'static str, &'static str) {
                match self { $( TopologyKind::$variant => ($shape, $shape_tag, $label, $plural), )* }
            }

            pub fn from_wire_key(key: &str) -> Option<Self> {
                match key { $( $wire => Some(TopologyKind::$variant), )* _ => None }
            }

            pub fn from_name(name: &str) -> Option<Self> {
                match name { $( $name => Some(TopologyKind::$variant), )* _ => None }
            }
        }
    };
    (@count $($x:ident)*) => { 0 $( + topology_kinds!(@one $x) )* };
    (@one $x:ident) => { 1 };
}

topology_kinds! {
    Endpoint => "Endpoint", "endpoint", "", "", "", "", "";
    Process => "Process", "process", "", "square", "", "process", "processes";
    Container => "Container", "container", "<container>", "hexagon", "", "container", "containers";
    ContainerImage => "ContainerImage", "container_image", "<container_image>", "hexagon", "", "image", "images";
    Pod => "Pod", "pod", "<pod>", "heptagon", "", "pod", "pods";
    Service => "Service", "service", "<service>", "heptagon", "", "service", "services";
    Deployment => "Deployment", "deployment", "<deployment>", "heptagon", "", "deployment", "deployments";
    ReplicaSet => "ReplicaSet", "replica_set", "<replica_set>", "triangle", "", "replica set", "replica sets";
    DaemonSet => "DaemonSet", "daemon_set", "<daemonset>", "pentagon", "", "daemonset", "daemonsets";
    StatefulSet => "StatefulSet", "stateful_set", "<statefulset>", "octagon", "", "stateful set", "stateful sets";
    CronJob => "CronJob", "cron_job", "<cronjob>", "triangle", "", "cron job", "cron jobs";
    Namespace => "Namespace", "namespace", "<namespace>", "", "", "", "";
    Host => "Host", "host", "<host>", "circle", "", "host", "hosts";
    Overlay => "Overlay", "overlay", "", "circle", "", "peer", "peers";
    EcsTask => "ECSTask", "ecs_task", "<ecs_task>", "heptagon", "", "task", "tasks";
    EcsService => "ECSService", "ecs_service", "", "heptagon", "", "service", "services";
    SwarmService => "SwarmService", "swarm_service", "<swarm_service>", "heptagon", "", "service", "services";
    PersistentVolume => "PersistentVolume", "persistent_volume", "<persistent_volume>", "cylinder", "", "persistent volume", "persistent volumes";
    PersistentVolumeClaim => "PersistentVolumeClaim", "persistent_volume_claim", "<persistent_volume_claim>", "dottedcylinder", "", "persistent volume claim", "persistent volume claims";
    StorageClass => "StorageClass", "storage_class", "<storage_class>", "sheet", "", "storage class", "storage classes";
    VolumeSnapshot => "VolumeSnapshot", "volume_snapshot", "<volume_snapshot>", "dottedcylinder", "camera", "volume snapshot", "volume snapshots";
    VolumeSnapshotData => "VolumeSnapshotData", "volume_snapshot_data", "<volume_snapshot_data>", "cylinder", "camera", "volume snapshot data", "volume snapshot data";
    Job => "Job", "job", "<job>", "dottedtriangle", "", "job", "jobs";
}

/// Number of topologies in a report.
pub const TOPOLOGY_COUNT: usize = TopologyKind::ALL.len();

impl TopologyKind {
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One topology: its presentation, nodes, controls and templates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Topology {
    pub shape: Str,
    pub tag: Str,
    pub label: Str,
    pub label_plural: Str,
    pub nodes: BTreeMap<Str, Node>,
    pub controls: BTreeMap<Str, Control>,
    pub metadata_templates: BTreeMap<Str, MetadataTemplate>,
    pub metric_templates: BTreeMap<Str, MetricTemplate>,
    pub table_templates: BTreeMap<Str, TableTemplate>,
}

impl Topology {
    /// An empty topology with the default presentation of `kind`.
    pub fn empty(kind: TopologyKind) -> Self {
        let (shape, tag, label, plural) = kind.defaults();
        Topology {
            shape: Str::new(shape),
            tag: Str::new(tag),
            label: Str::new(label),
            label_plural: Str::new(plural),
            ..Topology::default()
        }
    }

    /// Adds a node under its own ID, merging with a node already there.
    pub fn add_node(&mut self, node: Node) {
        match self.nodes.get_mut(&node.id) {
            Some(existing) => existing.merge_from(&node),
            None => {
                self.nodes.insert(node.id.clone(), node);
            }
        }
    }

    /// Whether anything besides presentation fields is present.
    pub fn has_content(&self) -> bool {
        !(self.nodes.is_empty()
            && self.controls.is_empty()
            && self.metadata_templates.is_empty()
            && self.metric_templates.is_empty()
            && self.table_templates.is_empty())
    }
}

/// A control a topology offers (`controls` in a topology).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Control {
    pub id: Str,
    pub human: Str,
    pub icon: Str,
    pub confirmation: Str,
    pub rank: i64,
    /// Overrides which probe executes this control for every node.
    pub probe_id: Str,
}

/// How a metadata row is presented (`metadata_templates`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetadataTemplate {
    pub id: Str,
    pub label: Str,
    pub truncate: i64,
    pub data_type: Str,
    pub priority: f64,
    pub from: Str,
}

impl MetadataTemplate {
    /// A template reading `id` from `from` (`latest`, `sets` or `counters`).
    pub fn new(id: &str, label: &str, data_type: &str, priority: f64, from: &str) -> Self {
        MetadataTemplate {
            id: Str::new(id),
            label: Str::new(label),
            data_type: Str::new(data_type),
            priority,
            from: Str::new(from),
            truncate: 0,
        }
    }
}

/// How a metric row is presented (`metric_templates`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricTemplate {
    pub id: Str,
    pub label: Str,
    pub format: Str,
    pub group: Str,
    pub priority: f64,
}

impl MetricTemplate {
    pub fn new(id: &str, label: &str, format: &str, group: &str, priority: f64) -> Self {
        MetricTemplate {
            id: Str::new(id),
            label: Str::new(label),
            format: Str::new(format),
            group: Str::new(group),
            priority,
        }
    }
}

/// How a table is built from `latest` keys (`table_templates`).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct TableTemplate {
    pub id: Str,
    pub label: Str,
    pub prefix: Str,
    pub table_type: Str,
    pub columns: Vec<Column>,
    pub fixed_rows: BTreeMap<Str, Str>,
}

/// A column of a multicolumn table template.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Column {
    pub id: Str,
    pub label: Str,
    pub data_type: Str,
}

/// Table template `type` values.
pub const PROPERTY_LIST: &str = "property-list";
pub const MULTICOLUMN_TABLE: &str = "multicolumn-table";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in TopologyKind::ALL {
            assert_eq!(TopologyKind::from_wire_key(kind.wire_key()), Some(kind));
            assert_eq!(TopologyKind::from_name(kind.name()), Some(kind));
            assert_eq!(TopologyKind::ALL[kind.index()], kind);
        }
        assert_eq!(TOPOLOGY_COUNT, 23);
        assert_eq!(TopologyKind::DaemonSet.id_tag(), Some("<daemonset>"));
        assert_eq!(TopologyKind::Process.id_tag(), None);
    }
}
