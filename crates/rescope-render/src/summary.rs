//! Node summaries (protocol.md §8.6, §8.7): what each rendered node looks like in a
//! listing. Metadata, metric and table rows come from the topology's templates in the
//! merged report, so plugin rows appear exactly like built-in ones.

use std::collections::BTreeMap;

use rescope_report::node::{COUNTER_PREFIX, HOST_NODE_ID};
use rescope_report::topology::{MULTICOLUMN_TABLE, PROPERTY_LIST};
use rescope_report::{Metric, Node, Report, Str, Topology, TopologyKind, id};

use crate::views::image_name_without_tag;
use crate::wire::{
    MetadataRow, MetricRow, NodeSummary, Parent, SampleRow, SerTime, Table, TableColumn, TableRow,
};

/// The API view that shows nodes of a report topology.
pub fn primary_view(topology: &str) -> Option<&'static str> {
    Some(match topology {
        "process" => "processes",
        "container" => "containers",
        "container_image" => "containers-by-image",
        "pod"
        | "persistent_volume"
        | "persistent_volume_claim"
        | "storage_class"
        | "volume_snapshot"
        | "volume_snapshot_data" => "pods",
        "deployment" | "daemon_set" | "stateful_set" | "cron_job" | "job" => "kube-controllers",
        "service" => "services",
        "ecs_task" => "ecs-tasks",
        "ecs_service" => "ecs-services",
        "swarm_service" => "swarm-services",
        "host" => "hosts",
        _ => return None,
    })
}

/// Parent topologies in the order details list them.
const PARENT_ORDER: [&str; 12] = [
    "container",
    "container_image",
    "pod",
    "deployment",
    "daemon_set",
    "stateful_set",
    "cron_job",
    "service",
    "ecs_task",
    "ecs_service",
    "swarm_service",
    "host",
];

fn count(node: &Node, topology: &str) -> u64 {
    node.latest_value(&format!("{COUNTER_PREFIX}{topology}"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn plural(n: u64, singular: &str, plural: &str) -> String {
    if n == 1 {
        format!("1 {singular}")
    } else {
        format!("{n} {plural}")
    }
}

fn id_part(node_id: &str) -> &str {
    node_id.split_once(';').map_or(node_id, |(a, _)| a)
}

fn latest<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    node.latest_value(key).map(|v| v.as_str())
}

/// Label, minor label, rank, shape, tag, stack and pseudo of a node; `None` for nodes
/// that are not shown (endpoints, unknown topologies).
pub fn basic(node: &Node, report: &Report) -> Option<NodeSummary> {
    let mut s = NodeSummary {
        id: node.id.clone(),
        label: node.id.clone(),
        label_minor: Str::empty(),
        rank: Str::empty(),
        shape: Str::new("triangle"),
        tag: Str::empty(),
        stack: false,
        pseudo: false,
        metadata: Vec::new(),
        parents: Vec::new(),
        metrics: Vec::new(),
        tables: Vec::new(),
        adjacency: Vec::new(),
    };
    let topology_name = node.topology.as_str();
    let (base, sub_key) = match id::parse_group_topology(topology_name) {
        Some((t, k)) => (t, Some(k)),
        None => (topology_name, None),
    };
    if let Some(t) = report.topology_by_name(base) {
        s.shape = if t.shape.is_empty() {
            Str::new("circle")
        } else {
            t.shape.clone()
        };
        s.tag = t.tag.clone();
    }
    let set = |s: &mut NodeSummary, label: &str, minor: &str, rank: &str| {
        s.label = Str::new(label);
        s.label_minor = Str::new(minor);
        s.rank = Str::new(rank);
    };
    if sub_key.is_some() {
        let kind = TopologyKind::from_name(base)?;
        let t = report.topology(kind);
        let n = count(node, base);
        let minor = if t.label.is_empty() {
            String::new()
        } else {
            plural(n, &t.label, &t.label_plural)
        };
        set(&mut s, &node.id, &minor, &node.id);
        s.stack = true;
        return Some(s);
    }
    match topology_name {
        "pseudo" => {
            s.pseudo = true;
            let rank = node
                .id
                .strip_prefix("pseudo:")
                .unwrap_or(&node.id)
                .to_string();
            if node.id == id::INCOMING_INTERNET_ID || node.id == id::OUTGOING_INTERNET_ID {
                let minor = if node.id == id::INCOMING_INTERNET_ID {
                    "Inbound connections"
                } else {
                    "Outbound connections"
                };
                set(&mut s, "The Internet", minor, &rank);
                s.shape = Str::new("cloud");
            } else if let Some(name) = node.id.strip_prefix(id::SERVICE_PREFIX) {
                set(&mut s, name, "", &rank);
                s.shape = Str::new("cloud");
            } else if let Some(host) = node.id.strip_prefix("pseudo:uncontained:") {
                set(&mut s, "Uncontained", host, &rank);
                s.shape = Str::new("square");
                s.stack = true;
            } else if let Some(of) = node.id.strip_prefix("pseudo:unmanaged:") {
                set(&mut s, "Unmanaged", of, &rank);
                s.shape = Str::new("square");
                s.stack = true;
            } else if let Some(ep) = id::parse_endpoint_id(&node.id) {
                set(&mut s, ep.ip, "", &rank);
                s.shape = Str::new("circle");
            } else {
                set(&mut s, &rank, "", &rank);
            }
        }
        "process" => {
            let host = latest(node, HOST_NODE_ID)
                .and_then(id::parse_host_id)
                .or_else(|| id::parse_process_id(&node.id).map(|(h, _)| h))
                .unwrap_or("");
            let pid = latest(node, "pid")
                .unwrap_or_else(|| id::parse_process_id(&node.id).map_or("", |(_, p)| p));
            let name = latest(node, "name");
            let container = latest(node, "docker_container_name");
            let minor = match (name, container) {
                (Some(_), Some(c)) => format!("{host} ({c}:{pid})"),
                (Some(_), None) => format!("{host} ({pid})"),
                (None, Some(c)) => format!("{host} ({c})"),
                (None, None) => host.to_string(),
            };
            let label = name.unwrap_or(pid);
            set(&mut s, label, &minor, name.unwrap_or(host));
        }
        "container" => {
            let label = [
                "docker_label_com.amazonaws.ecs.container-name",
                "docker_label_io.kubernetes.container.name",
                "docker_env_MARATHON_APP_ID",
                "docker_container_name",
                "docker_container_hostname",
            ]
            .iter()
            .find_map(|k| latest(node, k))
            .map(str::to_string)
            .unwrap_or_else(|| id_part(&node.id).chars().take(12).collect());
            let host = latest(node, HOST_NODE_ID)
                .and_then(id::parse_host_id)
                .unwrap_or("");
            let rank = latest(node, "docker_image_name")
                .map(image_name_without_tag)
                .filter(|r| !r.is_empty())
                .or((!host.is_empty()).then_some(host))
                .unwrap_or(&label)
                .to_string();
            set(&mut s, &label, host, &rank);
        }
        "container_image" => {
            let name = latest(node, "docker_image_name");
            let label = name
                .map(image_name_without_tag)
                .filter(|n| !n.is_empty() && *n != "<none>")
                .or(name)
                .unwrap_or_else(|| id_part(&node.id));
            let minor = plural(count(node, "container"), "container", "containers");
            set(&mut s, label, &minor, label);
            s.stack = true;
        }
        "pod"
        | "service"
        | "deployment"
        | "daemon_set"
        | "stateful_set"
        | "cron_job"
        | "job"
        | "persistent_volume"
        | "persistent_volume_claim"
        | "storage_class"
        | "volume_snapshot"
        | "volume_snapshot_data" => {
            let label = latest(node, "kubernetes_name").unwrap_or_else(|| id_part(&node.id));
            let ns = latest(node, "kubernetes_namespace").unwrap_or("");
            let minor = match topology_name {
                "pod" => plural(count(node, "container"), "container", "containers"),
                "service" => plural(count(node, "pod"), "pod", "pods"),
                "deployment" => format!(
                    "Deployment of {}",
                    plural(count(node, "pod"), "pod", "pods")
                ),
                "daemon_set" => {
                    format!("DaemonSet of {}", plural(count(node, "pod"), "pod", "pods"))
                }
                "stateful_set" => format!(
                    "StatefulSet of {}",
                    plural(count(node, "pod"), "pod", "pods")
                ),
                "cron_job" => format!("CronJob of {}", plural(count(node, "pod"), "pod", "pods")),
                "job" => format!("Job of {}", plural(count(node, "pod"), "pod", "pods")),
                _ => String::new(),
            };
            set(&mut s, label, &minor, &format!("{ns}/{label}"));
            s.stack = matches!(
                topology_name,
                "service" | "deployment" | "daemon_set" | "stateful_set" | "cron_job" | "job"
            );
        }
        "ecs_task" => {
            let label = latest(node, "ecs_task_family").unwrap_or_else(|| id_part(&node.id));
            set(&mut s, label, "", "");
        }
        "ecs_service" => {
            let name = id::parse_ecs_service_id(&node.id).map_or(node.id.as_str(), |(_, svc)| svc);
            set(&mut s, name, "", "");
            s.stack = true;
        }
        "swarm_service" => {
            let label = latest(node, "service_name").unwrap_or_else(|| id_part(&node.id));
            set(&mut s, label, "", "");
        }
        "host" => {
            let name = latest(node, "host_name")
                .unwrap_or_else(|| id::parse_host_id(&node.id).unwrap_or(&node.id));
            let (label, minor) = name.split_once('.').unwrap_or((name, ""));
            set(&mut s, label, minor, minor);
        }
        "overlay" => {
            let peer = match id::parse_overlay_id(&node.id) {
                id::OverlayPeer::Weave(p) | id::OverlayPeer::Docker(p) => p,
            };
            let label = latest(node, "weave_peer_nick_name").unwrap_or(peer);
            set(&mut s, label, peer, "");
        }
        "endpoint" => return None,
        "namespace" | "replica_set" => {}
        _ => return None,
    }
    Some(s)
}

/// Truncates (not rounds) to two decimals, as Scope's summaries do.
fn truncate2(v: f64) -> f64 {
    (v * 100.0).trunc() / 100.0
}

/// A metric row; `with_samples` for node details.
pub fn metric_row(
    id: &Str,
    metric: &Metric,
    template: &rescope_report::MetricTemplate,
    with_samples: bool,
) -> MetricRow {
    MetricRow {
        id: id.clone(),
        label: template.label.clone(),
        format: template.format.clone(),
        group: template.group.clone(),
        value: metric.last().map_or(0.0, |s| truncate2(s.value)),
        value_empty: false,
        priority: template.priority,
        samples: with_samples.then(|| {
            metric
                .samples
                .iter()
                .map(|s| SampleRow {
                    date: SerTime(s.date),
                    value: s.value,
                })
                .collect()
        }),
        min: metric.min,
        max: metric.max,
        url: Str::empty(),
    }
}

fn metadata_rows(node: &Node, t: &Topology) -> Vec<MetadataRow> {
    let mut rows: Vec<MetadataRow> = Vec::new();
    for template in t.metadata_templates.values() {
        let from_latest = || node.latest_value(&template.id).cloned();
        let from_sets = || {
            node.sets.get(&template.id).map(|set| {
                Str::from(
                    set.iter()
                        .map(|v| v.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                )
            })
        };
        let from_counters = || {
            node.latest_value(&format!("{COUNTER_PREFIX}{}", template.id))
                .and_then(|v| v.parse::<i64>().ok())
                .map(|n| Str::from(n.to_string()))
        };
        let value = match template.from.as_str() {
            "latest" => from_latest(),
            "sets" => from_sets(),
            "counters" => from_counters(),
            _ => from_latest().or_else(from_sets).or_else(from_counters),
        };
        if let Some(value) = value {
            rows.push(MetadataRow {
                id: template.id.clone(),
                label: template.label.clone(),
                value,
                priority: template.priority,
                data_type: template.data_type.clone(),
                truncate: template.truncate,
            });
        }
    }
    rows.sort_by(|a, b| a.priority.total_cmp(&b.priority));
    rows
}

fn metric_rows(node: &Node, t: &Topology, with_samples: bool) -> Vec<MetricRow> {
    let mut rows: Vec<MetricRow> = t
        .metric_templates
        .values()
        .filter_map(|template| {
            node.metrics
                .get(&template.id)
                .map(|m| metric_row(&template.id, m, template, with_samples))
        })
        .collect();
    rows.sort_by(|a, b| a.priority.total_cmp(&b.priority));
    rows
}

fn tables(node: &Node, t: &Topology) -> Vec<Table> {
    t.table_templates
        .values()
        .map(|template| {
            let multicolumn = template.table_type == MULTICOLUMN_TABLE;
            let mut rows: BTreeMap<Str, BTreeMap<Str, Str>> = BTreeMap::new();
            for (key, entry) in node.latest.iter() {
                if multicolumn {
                    let Some(rest) = key
                        .strip_prefix(template.prefix.as_str())
                        .filter(|_| !template.prefix.is_empty())
                    else {
                        continue;
                    };
                    let Some((row, column)) = rest.split_once("___") else {
                        continue;
                    };
                    rows.entry(Str::new(row))
                        .or_default()
                        .insert(Str::new(column), entry.value.clone());
                } else {
                    let label = match template.fixed_rows.get(key) {
                        Some(label) => label.as_str(),
                        None if !template.prefix.is_empty()
                            && key.starts_with(template.prefix.as_str()) =>
                        {
                            &key[template.prefix.len()..]
                        }
                        None => continue,
                    };
                    let mut entries = BTreeMap::new();
                    entries.insert(Str::new("label"), Str::new(label));
                    entries.insert(Str::new("value"), entry.value.clone());
                    rows.insert(Str::from(format!("label_{label}")), entries);
                }
            }
            let truncation = node
                .latest_value(&format!("table_truncation_count_{}", template.prefix))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            Table {
                id: template.id.clone(),
                label: template.label.clone(),
                table_type: if template.table_type.is_empty() {
                    Str::new(PROPERTY_LIST)
                } else {
                    template.table_type.clone()
                },
                columns: multicolumn.then(|| {
                    template
                        .columns
                        .iter()
                        .map(|c| TableColumn {
                            id: c.id.clone(),
                            label: c.label.clone(),
                            data_type: c.data_type.clone(),
                        })
                        .collect()
                }),
                rows: rows
                    .into_iter()
                    .map(|(id, entries)| TableRow { id, entries })
                    .collect(),
                truncation_count: truncation,
            }
        })
        .collect()
}

/// Parent links in Scope's topology order, labelled from the parents' own summaries.
pub fn parents(node: &Node, report: &Report) -> Vec<Parent> {
    parents_with(node, report, &|_, _| None)
}

/// The label a parent node shows under (what [`parents`] labels it with).
pub fn parent_label(topology: &str, pid: &Str, report: &Report) -> Str {
    let kind = TopologyKind::from_name(topology);
    let stub;
    let parent = match kind.and_then(|k| report.topology(k).nodes.get(pid)) {
        Some(p) => p,
        None => {
            stub = Node::new(pid.clone()).with_topology(topology);
            &stub
        }
    };
    basic(parent, report).map_or_else(|| pid.clone(), |s| s.label)
}

/// [`parents`], with labels known beforehand: `label(topology, id)` answers for the
/// parents it knows (as [`parent_label`] would).
pub fn parents_with(
    node: &Node,
    report: &Report,
    label: &dyn Fn(&str, &Str) -> Option<Str>,
) -> Vec<Parent> {
    let mut out = Vec::new();
    for topology in PARENT_ORDER {
        let Some(ids) = node.parents.get(topology) else {
            continue;
        };
        let Some(view) = primary_view(topology) else {
            continue;
        };
        for pid in ids.iter() {
            if *pid == node.id {
                continue;
            }
            let label = label(topology, pid).unwrap_or_else(|| parent_label(topology, pid, report));
            out.push(Parent {
                id: pid.clone(),
                label,
                topology_id: Str::new(view),
            });
        }
    }
    out
}

/// The metric rows of a rendered node's listing summary (what [`summarize_with`] gives
/// it without samples): all that changes in a summary when only the node's metrics
/// and the times of its values changed.
pub fn listing_metrics(node: &Node, report: &Report) -> Vec<MetricRow> {
    let Some(t) = report.topology_by_name(&node.topology) else {
        return Vec::new();
    };
    let own_counter = node
        .latest
        .contains_key(&format!("{COUNTER_PREFIX}{}", node.topology));
    if own_counter {
        return Vec::new();
    }
    metric_rows(node, t, false)
}

/// The full summary of a rendered node. `with_samples` keeps metric samples (node
/// details); listings strip them.
pub fn summarize(node: &Node, report: &Report, with_samples: bool) -> Option<NodeSummary> {
    summarize_with(node, report, with_samples, &|_, _| None)
}

/// [`summarize`], with parents' labels known beforehand (see [`parents_with`]).
pub fn summarize_with(
    node: &Node,
    report: &Report,
    with_samples: bool,
    label: &dyn Fn(&str, &Str) -> Option<Str>,
) -> Option<NodeSummary> {
    let mut s = basic(node, report)?;
    if let Some(t) = report.topology_by_name(&node.topology) {
        let own_counter = node
            .latest
            .contains_key(&format!("{COUNTER_PREFIX}{}", node.topology));
        if !own_counter {
            s.metadata = metadata_rows(node, t);
            s.metrics = metric_rows(node, t, with_samples);
            s.tables = tables(node, t);
        }
    }
    s.parents = parents_with(node, report, label);
    s.adjacency = node.adjacency.iter().cloned().collect();
    Some(s)
}
