//! What the API returns: node summaries and details, with Scope's JSON field names
//! and omission rules (protocol.md §7.2.3, §7.2.4).

use std::collections::BTreeMap;
use std::ops::Not;

use rescope_report::Str;
use serde::Serialize;

fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

/// One metadata row of a node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetadataRow {
    pub id: Str,
    pub label: Str,
    pub value: Str,
    #[serde(skip_serializing_if = "is_zero_f64")]
    pub priority: f64,
    #[serde(rename = "dataType", skip_serializing_if = "str::is_empty")]
    pub data_type: Str,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub truncate: i64,
}

/// A sample in a metric row (only in node details).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SampleRow {
    pub date: SerTime,
    pub value: f64,
}

/// A time serialised as RFC 3339, as Scope does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SerTime(pub rescope_report::GoTime);

impl Serialize for SerTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_rfc3339())
    }
}

/// One metric row of a node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricRow {
    pub id: Str,
    pub label: Str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub format: Str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub group: Str,
    pub value: f64,
    #[serde(rename = "valueEmpty", skip_serializing_if = "Not::not")]
    pub value_empty: bool,
    #[serde(skip_serializing_if = "is_zero_f64")]
    pub priority: f64,
    /// `null` in listings and websocket diffs; the samples in node details.
    pub samples: Option<Vec<SampleRow>>,
    pub min: f64,
    pub max: f64,
    pub url: Str,
}

/// A column of a rendered table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableColumn {
    pub id: Str,
    pub label: Str,
    #[serde(rename = "dataType")]
    pub data_type: Str,
}

/// A row of a rendered table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableRow {
    pub id: Str,
    pub entries: BTreeMap<Str, Str>,
}

/// A table of a node (labels, environment, image, plugin tables…).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Table {
    pub id: Str,
    pub label: Str,
    #[serde(rename = "type")]
    pub table_type: Str,
    pub columns: Option<Vec<TableColumn>>,
    pub rows: Vec<TableRow>,
    #[serde(rename = "truncationCount", skip_serializing_if = "is_zero_i64")]
    pub truncation_count: i64,
}

/// A link to a parent node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Parent {
    pub id: Str,
    pub label: Str,
    #[serde(rename = "topologyId")]
    pub topology_id: Str,
}

/// A node as listed in a view.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeSummary {
    pub id: Str,
    pub label: Str,
    #[serde(rename = "labelMinor")]
    pub label_minor: Str,
    pub rank: Str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub shape: Str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub tag: Str,
    #[serde(skip_serializing_if = "Not::not")]
    pub stack: bool,
    #[serde(skip_serializing_if = "Not::not")]
    pub pseudo: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<MetadataRow>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<Parent>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricRow>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<Table>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub adjacency: Vec<Str>,
}

/// A control offered on a node, with the probe that runs it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ControlInstance {
    #[serde(rename = "probeId")]
    pub probe_id: Str,
    #[serde(rename = "nodeId")]
    pub node_id: Str,
    pub id: Str,
    pub human: Str,
    pub icon: Str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub confirmation: Str,
    pub rank: i64,
}

/// A column of a children or connections table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Column {
    pub id: Str,
    pub label: Str,
    #[serde(rename = "defaultSort")]
    pub default_sort: bool,
    #[serde(rename = "dataType")]
    pub data_type: Str,
}

/// Children of one topology (a host's processes, a container's processes, …).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChildGroup {
    pub id: Str,
    pub label: Str,
    #[serde(rename = "topologyId")]
    pub topology_id: Str,
    pub columns: Vec<Column>,
    pub nodes: Vec<NodeSummary>,
}

/// One row of a connections table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Connection {
    pub id: Str,
    #[serde(rename = "nodeId")]
    pub node_id: Str,
    pub label: Str,
    #[serde(rename = "labelMinor", skip_serializing_if = "str::is_empty")]
    pub label_minor: Str,
    pub metadata: Vec<ConnectionField>,
}

/// A cell of a connection row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectionField {
    pub id: Str,
    pub label: Str,
    pub value: Str,
}

/// Inbound or outbound connections of a node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectionTable {
    pub id: Str,
    #[serde(rename = "topologyId")]
    pub topology_id: Str,
    pub label: Str,
    pub columns: Vec<Column>,
    pub connections: Vec<Connection>,
}

/// A node with everything the details panel shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeDetails {
    #[serde(flatten)]
    pub summary: NodeSummary,
    pub controls: Vec<ControlInstance>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<ChildGroup>,
    pub connections: Vec<ConnectionTable>,
}
