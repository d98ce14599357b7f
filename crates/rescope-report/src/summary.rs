//! A short description of a report: what `rescope report summary` prints.

use std::fmt;

use serde::Serialize;

use crate::report::Report;
use crate::time::GoTime;

/// Counts and facts about one topology.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopologySummary {
    /// The report key, e.g. `ContainerImage`.
    pub key: &'static str,
    pub nodes: usize,
    /// Nodes without `topology`: delta nodes, dropped by renderers unless merged with
    /// their full report.
    pub partial_nodes: usize,
    pub edges: usize,
    pub controls: usize,
    pub metadata_templates: usize,
    pub metric_templates: usize,
    pub table_templates: usize,
}

/// One plugin as listed in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginSummary {
    pub id: String,
    pub label: String,
    pub interfaces: Vec<String>,
    pub status: String,
}

/// What is in a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub id: String,
    /// RFC 3339, or empty when the report has no timestamp.
    pub ts: String,
    pub window_seconds: f64,
    pub shortcut: bool,
    pub total_nodes: usize,
    pub total_edges: usize,
    /// Topologies with any content, in canonical order.
    pub topologies: Vec<TopologySummary>,
    pub plugins: Vec<PluginSummary>,
    pub dns_entries: usize,
    /// Host names of the Host topology's nodes.
    pub hosts: Vec<String>,
    /// Distinct `control_probe_id` values: the probes this report came from.
    pub probes: Vec<String>,
    /// Oldest and newest timestamp among `latest` entries and metric samples.
    pub earliest: Option<String>,
    pub newest: Option<String>,
    /// A full report carries presentation templates; a delta usually does not.
    pub looks_like_delta: bool,
}

impl Summary {
    pub fn of(report: &Report) -> Self {
        let mut topologies = Vec::new();
        let (mut earliest, mut newest): (Option<GoTime>, Option<GoTime>) = (None, None);
        let mut see = |t: GoTime| {
            if t.is_zero() {
                return;
            }
            earliest = Some(earliest.map_or(t, |e| e.min(t)));
            newest = Some(newest.map_or(t, |n| n.max(t)));
        };
        let mut probes = std::collections::BTreeSet::new();
        let mut partial_total = 0;
        let mut with_templates = false;
        for (kind, t) in report.topologies() {
            let mut s = TopologySummary {
                key: kind.wire_key(),
                nodes: t.nodes.len(),
                partial_nodes: 0,
                edges: 0,
                controls: t.controls.len(),
                metadata_templates: t.metadata_templates.len(),
                metric_templates: t.metric_templates.len(),
                table_templates: t.table_templates.len(),
            };
            with_templates |= s.metadata_templates + s.metric_templates + s.table_templates > 0;
            for node in t.nodes.values() {
                if node.topology.is_empty() {
                    s.partial_nodes += 1;
                }
                s.edges += node.adjacency.len();
                for entry in node.latest.values() {
                    see(entry.timestamp);
                }
                for metric in node.metrics.values() {
                    for sample in &metric.samples {
                        see(sample.date);
                    }
                }
                if let Some(p) = node.latest_value(crate::node::CONTROL_PROBE_ID) {
                    probes.insert(p.to_string());
                }
            }
            partial_total += s.partial_nodes;
            if t.has_content() {
                topologies.push(s);
            }
        }
        let hosts = report[crate::topology::TopologyKind::Host]
            .nodes
            .iter()
            .map(|(id, n)| {
                n.latest_value("host_name")
                    .map(|h| h.to_string())
                    .or_else(|| crate::id::parse_host_id(id).map(str::to_string))
                    .unwrap_or_else(|| id.to_string())
            })
            .collect();
        Summary {
            id: report.id.to_string(),
            ts: if report.ts.is_zero() {
                String::new()
            } else {
                report.ts.to_rfc3339()
            },
            window_seconds: report.window as f64 / 1e9,
            shortcut: report.shortcut,
            total_nodes: topologies.iter().map(|t| t.nodes).sum(),
            total_edges: topologies.iter().map(|t| t.edges).sum(),
            topologies,
            plugins: report
                .plugins
                .values()
                .map(|p| PluginSummary {
                    id: p.id.to_string(),
                    label: p.label.to_string(),
                    interfaces: p.interfaces.iter().map(|i| i.to_string()).collect(),
                    status: p.status.to_string(),
                })
                .collect(),
            dns_entries: report.dns.len(),
            hosts,
            probes: probes.into_iter().collect(),
            earliest: earliest.map(|t| t.to_rfc3339()),
            newest: newest.map(|t| t.to_rfc3339()),
            looks_like_delta: partial_total > 0 && !with_templates,
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.shortcut {
            "shortcut report"
        } else if self.looks_like_delta {
            "delta report"
        } else {
            "report"
        };
        writeln!(
            f,
            "{kind} {}",
            if self.id.is_empty() {
                "(no ID)"
            } else {
                &self.id
            }
        )?;
        if !self.ts.is_empty() {
            writeln!(f, "  generated   {}", self.ts)?;
        }
        writeln!(f, "  window      {:.3} s", self.window_seconds)?;
        if let (Some(a), Some(b)) = (&self.earliest, &self.newest) {
            writeln!(f, "  time span   {a} .. {b}")?;
        }
        if !self.hosts.is_empty() {
            writeln!(f, "  hosts       {}", self.hosts.join(", "))?;
        }
        if !self.probes.is_empty() {
            writeln!(f, "  probes      {}", self.probes.join(", "))?;
        }
        writeln!(
            f,
            "  nodes       {} ({} edges)",
            self.total_nodes, self.total_edges
        )?;
        writeln!(f, "  DNS entries {}", self.dns_entries)?;
        writeln!(f)?;
        writeln!(
            f,
            "  {:<22} {:>7} {:>8} {:>6} {:>9} {:>10}",
            "topology", "nodes", "partial", "edges", "controls", "templates"
        )?;
        for t in &self.topologies {
            writeln!(
                f,
                "  {:<22} {:>7} {:>8} {:>6} {:>9} {:>10}",
                t.key,
                t.nodes,
                t.partial_nodes,
                t.edges,
                t.controls,
                t.metadata_templates + t.metric_templates + t.table_templates
            )?;
        }
        writeln!(f)?;
        if self.plugins.is_empty() {
            writeln!(f, "  plugins     none")?;
        } else {
            writeln!(f, "  plugins")?;
            for p in &self.plugins {
                let status = if p.status.is_empty() {
                    "(no status)"
                } else {
                    &p.status
                };
                writeln!(
                    f,
                    "    {:<20} {:<24} [{}] {}",
                    p.id,
                    p.label,
                    p.interfaces.join(","),
                    status
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::Node;
    use crate::topology::TopologyKind;

    #[test]
    fn counts_nodes_edges_and_partial_nodes() {
        let t = GoTime::from_unix(1_700_000_000, 0).expect("in range");
        let mut r = Report::empty();
        let mut a = Node::new("a")
            .with_topology("endpoint")
            .with_latest("pid", t, "1");
        a.add_adjacent("b");
        r[TopologyKind::Endpoint].add_node(a);
        r[TopologyKind::Endpoint].add_node(Node::new("b"));
        r[TopologyKind::Host].add_node(Node::new("vm;<host>").with_topology("host").with_latest(
            "host_name",
            t,
            "vm",
        ));
        let s = Summary::of(&r);
        assert_eq!(s.total_nodes, 3);
        assert_eq!(s.total_edges, 1);
        assert_eq!(s.topologies[0].partial_nodes, 1);
        assert_eq!(s.hosts, ["vm"]);
        assert!(s.looks_like_delta);
        assert!(s.to_string().contains("Endpoint"));
    }
}
