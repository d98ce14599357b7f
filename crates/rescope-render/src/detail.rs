//! Node details (protocol.md §8.8): controls, children grouped by topology, parents,
//! and inbound and outbound connection tables.

use std::collections::{BTreeMap, HashSet};

use rescope_report::node::CONTROL_PROBE_ID;
use rescope_report::{Node, Report, Str, TopologyKind, id};

use crate::pipeline::{Nodes, canonical_endpoint, is_pseudo};
use crate::summary::{self, primary_view};
use crate::views::RenderContext;
use crate::wire::{
    ChildGroup, Column, Connection, ConnectionField, ConnectionTable, ControlInstance, NodeDetails,
};
use crate::{render_in, render_unfiltered};

fn column(id: &str, label: &str, data_type: &str, default_sort: bool) -> Column {
    Column {
        id: Str::new(id),
        label: Str::new(label),
        default_sort,
        data_type: Str::new(data_type),
    }
}

/// Child topologies in the order details show them, with their columns.
fn child_groups() -> Vec<(&'static str, &'static str, Vec<Column>)> {
    vec![
        (
            "pod",
            "Pods",
            vec![
                column("kubernetes_state", "State", "", false),
                column("container", "# Containers", "number", false),
                column("kubernetes_ip", "IP", "ip", false),
            ],
        ),
        (
            "ecs_task",
            "Tasks",
            vec![column("ecs_created_at", "Created At", "datetime", false)],
        ),
        (
            "container",
            "Containers",
            vec![
                column("docker_cpu_total_usage", "CPU", "number", false),
                column("docker_memory_usage", "Memory", "number", false),
            ],
        ),
        (
            "process",
            "Processes",
            vec![
                column("pid", "PID", "number", false),
                column("process_cpu_usage_percent", "CPU", "number", false),
                column("process_memory_usage_bytes", "Memory", "number", false),
            ],
        ),
        ("container_image", "Container images", Vec::new()),
        ("persistent_volume", "Persistent Volumes", Vec::new()),
        (
            "persistent_volume_claim",
            "Persistent Volume Claims",
            Vec::new(),
        ),
        ("storage_class", "Storage Classes", Vec::new()),
        ("volume_snapshot", "Volume Snapshots", Vec::new()),
        ("volume_snapshot_data", "Volume Snapshot Data", Vec::new()),
    ]
}

/// The controls a node offers: those in its `active_controls` that its topology
/// defines, run by the control's own probe or the node's.
pub fn controls(node: &Node, report: &Report) -> Vec<ControlInstance> {
    let Some(t) = report.topology_by_name(&node.topology) else {
        return Vec::new();
    };
    let Some(source) = t.nodes.get(&node.id) else {
        return Vec::new();
    };
    let Some(node_probe) = source.latest_value(CONTROL_PROBE_ID) else {
        return Vec::new();
    };
    source
        .active_controls()
        .filter_map(|cid| t.controls.get(cid))
        .map(|c| ControlInstance {
            probe_id: if c.probe_id.is_empty() {
                node_probe.clone()
            } else {
                c.probe_id.clone()
            },
            node_id: node.id.clone(),
            id: c.id.clone(),
            human: c.human.clone(),
            icon: c.icon.clone(),
            confirmation: c.confirmation.clone(),
            rank: c.rank,
        })
        .collect()
}

/// Children summarised and grouped by topology. Unlike Scope, groups for topologies
/// outside the fixed list carry their nodes.
pub fn children(node: &Node, report: &Report) -> Vec<ChildGroup> {
    children_resolved(node, report, &|c| c)
}

/// The full node of a child a view keeps as a stub (see [`crate::pipeline::child_copy`]):
/// the node as the view it came from rendered it. Hosts adopt containers before image
/// names are attached; images and host names group the containers view.
pub fn full_child<'c>(ctx: &'c RenderContext<'_>, view: &str, child: &'c Node) -> &'c Node {
    if !crate::pipeline::is_stub_child(&child.topology) {
        return child;
    }
    let found = match child.topology.as_str() {
        "process" => ctx.processes().get(&child.id),
        "container" if view == "hosts" => ctx.containers_base().nodes.get(&child.id),
        "container" => ctx.containers().nodes.get(&child.id),
        "container_image" => ctx.images().get(&child.id),
        _ => None,
    };
    found.unwrap_or(child)
}

/// [`children`], with stub children replaced by `resolve`.
pub fn children_resolved<'n>(
    node: &'n Node,
    report: &Report,
    resolve: &dyn Fn(&'n Node) -> &'n Node,
) -> Vec<ChildGroup> {
    let mut by_topology: BTreeMap<&str, Vec<&Node>> = BTreeMap::new();
    for child in node.children.values() {
        if child.topology == TopologyKind::Endpoint.name() || child.id == node.id {
            continue;
        }
        by_topology
            .entry(child.topology.as_str())
            .or_default()
            .push(resolve(child));
    }
    let summarise = |nodes: &[&Node]| {
        let mut out: Vec<_> = nodes
            .iter()
            .filter_map(|c| summary::summarize(c, report, false))
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    };
    let mut groups = Vec::new();
    for (topology, label, columns) in child_groups() {
        let Some(nodes) = by_topology.remove(topology) else {
            continue;
        };
        let Some(view) = primary_view(topology) else {
            continue;
        };
        groups.push(ChildGroup {
            id: Str::empty(),
            label: Str::new(label),
            topology_id: Str::new(view),
            columns,
            nodes: summarise(&nodes),
        });
    }
    for (topology, nodes) in by_topology {
        let (Some(view), Some(kind)) = (primary_view(topology), TopologyKind::from_name(topology))
        else {
            continue;
        };
        let label = report.topology(kind).label_plural.clone();
        groups.push(ChildGroup {
            id: Str::empty(),
            label,
            topology_id: Str::new(view),
            columns: Vec::new(),
            nodes: summarise(&nodes),
        });
    }
    groups
}

fn is_internet(node_id: &str) -> bool {
    node_id == id::INCOMING_INTERNET_ID || node_id == id::OUTGOING_INTERNET_ID
}

/// `name (ip)` with the endpoint's first known DNS name, or just the IP.
fn address(report: &Report, endpoint_id: &str) -> String {
    let Some(ep) = id::parse_endpoint_id(endpoint_id) else {
        return String::new();
    };
    let name = report
        .dns
        .get(ep.ip)
        .and_then(|r| r.forward.first().or_else(|| r.reverse.first()));
    match name {
        Some(n) => format!("{n} ({})", ep.ip),
        None => ep.ip.to_string(),
    }
}

fn endpoint_children(node: &Node) -> HashSet<&str> {
    node.children
        .values()
        .filter(|c| c.topology == TopologyKind::Endpoint.name())
        .map(|c| c.id.as_str())
        .collect()
}

#[derive(Default)]
struct Row {
    count: u64,
}

/// Inbound and outbound connection tables of `node` within the rendered `nodes`.
pub fn connections(
    node: &Node,
    nodes: &Nodes,
    report: &Report,
    view: &str,
) -> Vec<ConnectionTable> {
    let endpoints = &report[TopologyKind::Endpoint].nodes;
    let conn_count = |source: &str| -> u64 {
        endpoints
            .get(source)
            .and_then(|e| e.latest_value("conn_count"))
            .and_then(|v| v.parse().ok())
            .unwrap_or(1)
    };
    let ours = endpoint_children(node);
    let node_internet = is_internet(&node.id);
    // (remote node, remote address, local address, port) → count
    let mut tables: [BTreeMap<(Str, String, String, String), Row>; 2] =
        [BTreeMap::new(), BTreeMap::new()];
    let mut seen: [HashSet<String>; 2] = [HashSet::new(), HashSet::new()];
    let mut record =
        |dir: usize, remote: &Node, source: &str, dest: &str, remote_ep: &str, local_ep: &str| {
            let source = canonical_endpoint(report, source).to_string();
            if !seen[dir].insert(source.clone()) {
                return;
            }
            let port = id::parse_endpoint_id(dest)
                .map(|e| e.port.to_string())
                .unwrap_or_default();
            let remote_addr = if is_internet(&remote.id) {
                address(report, remote_ep)
            } else {
                String::new()
            };
            let local_addr = if node_internet {
                address(report, local_ep)
            } else {
                String::new()
            };
            tables[dir]
                .entry((remote.id.clone(), remote_addr, local_addr, port))
                .or_default()
                .count += conn_count(&source);
        };
    // Outbound: our end points with edges into a neighbour's end points.
    for rid in node.adjacency.iter() {
        let Some(remote) = nodes.get(rid) else {
            continue;
        };
        let theirs = endpoint_children(remote);
        for e in &ours {
            let Some(ep) = endpoints.get(*e) else {
                continue;
            };
            for t in ep.adjacency.iter() {
                if theirs.contains(t.as_str()) {
                    record(1, remote, e, t, t, e);
                }
            }
        }
    }
    // Inbound: a neighbour's end points with edges into ours.
    for remote in nodes.values().filter(|r| r.adjacency.contains(&node.id)) {
        for e in endpoint_children(remote) {
            let Some(ep) = endpoints.get(e) else { continue };
            for t in ep.adjacency.iter() {
                if ours.contains(t.as_str()) {
                    record(0, remote, e, t, e, t);
                }
            }
        }
    }
    let mut columns = vec![
        column("port", "Port", "number", false),
        column("count", "Count", "number", true),
    ];
    if node_internet {
        columns.insert(0, column("remote", "Remote", "", false));
    }
    let [inbound, outbound] = tables;
    let rows = |table: BTreeMap<(Str, String, String, String), Row>| -> Vec<Connection> {
        let mut out: Vec<Connection> = table
            .into_iter()
            .map(|((remote_id, remote_addr, local_addr, port), row)| {
                let remote_summary = nodes
                    .get(&remote_id)
                    .and_then(|r| summary::basic(r, report));
                let (label, label_minor) = if is_internet(&remote_id) {
                    (Str::from(remote_addr.clone()), Str::empty())
                } else {
                    remote_summary.map_or((remote_id.clone(), Str::empty()), |s| {
                        (s.label, s.label_minor)
                    })
                };
                let field = |id: &str, value: String| ConnectionField {
                    id: Str::new(id),
                    label: Str::empty(),
                    value: Str::from(value),
                };
                let mut metadata = Vec::new();
                if node_internet {
                    metadata.push(field("remote", local_addr.clone()));
                }
                metadata.push(field("port", port.clone()));
                metadata.push(field("count", row.count.to_string()));
                Connection {
                    id: Str::from(format!("{remote_id}-{remote_addr}-{local_addr}-{port}")),
                    node_id: remote_id,
                    label,
                    label_minor,
                    metadata,
                }
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    };
    vec![
        ConnectionTable {
            id: Str::new("incoming-connections"),
            topology_id: Str::new(view),
            label: Str::new("Inbound"),
            columns: columns.clone(),
            connections: rows(inbound),
        },
        ConnectionTable {
            id: Str::new("outgoing-connections"),
            topology_id: Str::new(view),
            label: Str::new("Outbound"),
            columns,
            connections: rows(outbound),
        },
    ]
}

/// Everything about one node of a view (`GET /api/topology/{view}/{id}`). `None` when
/// the view is unknown or the node is not in it. A node hidden by the query's options
/// is still described; its connections are those to the visible nodes.
pub fn details(
    ctx: &RenderContext<'_>,
    view: &str,
    node_id: &str,
    query: &[(String, String)],
) -> Option<NodeDetails> {
    let node = render_unfiltered(ctx, view)?.nodes.get(node_id)?.clone();
    let mut filtered = render_in(ctx, view, query)?.nodes;
    if !filtered.contains_key(node_id) {
        filtered.insert(node.id.clone(), node.clone());
    }
    let node = filtered.get(node_id).cloned().unwrap_or(node);
    let report = ctx.report;
    let summary = summary::summarize(&node, report, true)?;
    Some(NodeDetails {
        summary,
        controls: if is_pseudo(&node) {
            Vec::new()
        } else {
            controls(&node, report)
        },
        children: children_resolved(&node, report, &|c| full_child(ctx, view, c)),
        connections: connections(&node, &filtered, report, view),
    })
}
