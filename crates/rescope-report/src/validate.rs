//! Checks on a decoded report that the wire format itself cannot express: node keys
//! that differ from their IDs, nodes filed under the wrong topology, edges to nodes that
//! do not exist, controls offered but never defined, plugin specs the probe would
//! reject. Used by `rescope report validate`, so plugin authors see what is wrong
//! before they run their plugin.

use std::fmt;

use crate::plugin::{PLUGIN_API_VERSION, PluginSpec};
use crate::report::Report;
use crate::topology::TopologyKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Legal, but probably not what was meant.
    Warning,
    /// Scope or Rescope will reject or misread this.
    Error,
}

/// One finding: where, how bad, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    /// A path in the document, e.g. `Host.nodes.vm;<host>.adjacency`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{level}: {}: {}", self.path, self.message)
    }
}

/// What to check beyond the report's own consistency.
#[derive(Debug, Clone, Default)]
pub struct ValidateOptions {
    /// Check the report as a plugin's answer to `GET /report`: the specs exactly as
    /// sent (before merging by ID), and the plugin ID expected from the socket name.
    pub plugin: Option<PluginCheck>,
}

#[derive(Debug, Clone, Default)]
pub struct PluginCheck {
    /// The `Plugins` list as sent, in order, duplicates included.
    pub specs: Vec<PluginSpec>,
    /// The ID the probe derives from the socket file name, when known.
    pub expected_id: Option<String>,
}

/// Everything questionable about `report`, errors first.
pub fn validate(report: &Report, options: &ValidateOptions) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut push = |severity, path: String, message: String| {
        out.push(Problem {
            severity,
            path,
            message,
        })
    };
    for (kind, topology) in report.topologies() {
        let top = kind.wire_key();
        for (key, node) in &topology.nodes {
            let path = format!("{top}.nodes.{key}");
            if !node.id.is_empty() && node.id != *key {
                push(
                    Severity::Error,
                    format!("{path}.id"),
                    format!(
                        "node id {:?} differs from its key {key:?}",
                        node.id.as_str()
                    ),
                );
            }
            if !node.topology.is_empty() && node.topology != kind.name() {
                push(
                    Severity::Error,
                    format!("{path}.topology"),
                    format!(
                        "node says topology {:?} but is in {top} (expected {:?})",
                        node.topology.as_str(),
                        kind.name()
                    ),
                );
            }
            for target in node.adjacency.iter() {
                if !topology.nodes.contains_key(target) {
                    push(
                        Severity::Warning,
                        format!("{path}.adjacency"),
                        format!("edge to {target:?}, which is not a node of {top}"),
                    );
                }
            }
            for (parent_topology, _) in node.parents.iter() {
                if TopologyKind::from_name(parent_topology).is_none() {
                    push(
                        Severity::Warning,
                        format!("{path}.parents.{parent_topology}"),
                        format!("{parent_topology:?} is not a topology name"),
                    );
                }
            }
            for control in node.active_controls() {
                if !topology.controls.contains_key(control) {
                    push(
                        Severity::Warning,
                        format!("{path}.latest.active_controls"),
                        format!(
                            "control {control:?} is offered but not defined in {top}.controls, so it will not be shown"
                        ),
                    );
                }
            }
            for (metric_id, metric) in node.metrics.iter() {
                if metric.min > metric.max {
                    push(
                        Severity::Warning,
                        format!("{path}.metrics.{metric_id}"),
                        format!("min {} is above max {}", metric.min, metric.max),
                    );
                }
                if !topology.metric_templates.contains_key(metric_id) && !metric.samples.is_empty()
                {
                    push(
                        Severity::Warning,
                        format!("{path}.metrics.{metric_id}"),
                        format!(
                            "no metric template {metric_id:?} in {top}.metric_templates, so the metric is not shown"
                        ),
                    );
                }
            }
        }
        for (key, c) in &topology.controls {
            if c.id != *key {
                push(
                    Severity::Error,
                    format!("{top}.controls.{key}.id"),
                    format!("control id {:?} differs from its key", c.id.as_str()),
                );
            }
        }
        for (key, t) in &topology.metadata_templates {
            if t.id != *key {
                push(
                    Severity::Error,
                    format!("{top}.metadata_templates.{key}.id"),
                    format!("template id {:?} differs from its key", t.id.as_str()),
                );
            }
        }
        for (key, t) in &topology.metric_templates {
            if t.id != *key {
                push(
                    Severity::Error,
                    format!("{top}.metric_templates.{key}.id"),
                    format!("template id {:?} differs from its key", t.id.as_str()),
                );
            }
        }
        for (key, t) in &topology.table_templates {
            if t.id != *key {
                push(
                    Severity::Error,
                    format!("{top}.table_templates.{key}.id"),
                    format!("template id {:?} differs from its key", t.id.as_str()),
                );
            }
            if !t.table_type.is_empty()
                && t.table_type != crate::topology::PROPERTY_LIST
                && t.table_type != crate::topology::MULTICOLUMN_TABLE
            {
                push(
                    Severity::Warning,
                    format!("{top}.table_templates.{key}.type"),
                    format!(
                        "unknown table type {:?} (property-list or multicolumn-table)",
                        t.table_type.as_str()
                    ),
                );
            }
        }
    }
    if let Some(check) = &options.plugin {
        plugin_problems(check, &mut out);
    }
    out.sort_by_key(|p| std::cmp::Reverse(p.severity));
    out
}

/// The probe's acceptance rules for a plugin's `/report` answer (protocol.md §6.3).
fn plugin_problems(check: &PluginCheck, out: &mut Vec<Problem>) {
    let mut push = |path: String, message: String| {
        out.push(Problem {
            severity: Severity::Error,
            path,
            message,
        })
    };
    if check.specs.len() != 1 {
        push(
            "Plugins".into(),
            format!(
                "report must contain exactly one plugin (found {})",
                check.specs.len()
            ),
        );
        return;
    }
    let spec = &check.specs[0];
    if let Some(want) = &check.expected_id
        && spec.id != want.as_str()
    {
        push(
            "Plugins.0.id".into(),
            format!(
                "plugin must not change its id (is {:?}, should be {want:?})",
                spec.id.as_str()
            ),
        );
    }
    if spec.api_version != PLUGIN_API_VERSION {
        push(
            "Plugins.0.api_version".into(),
            format!(
                "incorrect API version: expected {PLUGIN_API_VERSION:?}, got {:?}",
                spec.api_version.as_str()
            ),
        );
    }
    if spec.label.is_empty() {
        push("Plugins.0.label".into(), "spec must contain a label".into());
    }
    if !spec.implements("reporter") {
        push(
            "Plugins.0.interfaces".into(),
            "spec must implement the \"reporter\" interface".into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::Node;
    use crate::str::Str;

    #[test]
    fn a_node_under_the_wrong_key_and_topology_is_an_error() {
        let mut r = Report::empty();
        r[TopologyKind::Host].nodes.insert(
            Str::new("a;<host>"),
            Node::new("b;<host>").with_topology("process"),
        );
        let problems = validate(&r, &ValidateOptions::default());
        assert_eq!(
            problems
                .iter()
                .filter(|p| p.severity == Severity::Error)
                .count(),
            2
        );
        assert!(problems[0].path.starts_with("Host.nodes.a;<host>"));
    }

    #[test]
    fn plugin_specs_are_checked_like_the_probe_does() {
        let r = Report::empty();
        let spec = PluginSpec {
            id: Str::new("iowait"),
            label: Str::new(""),
            interfaces: vec![Str::new("controller")],
            api_version: Str::new("2"),
            ..Default::default()
        };
        let check = PluginCheck {
            specs: vec![spec],
            expected_id: Some("io-wait".into()),
        };
        let problems = validate(
            &r,
            &ValidateOptions {
                plugin: Some(check),
            },
        );
        let messages: Vec<_> = problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "plugin must not change its id (is \"iowait\", should be \"io-wait\")",
                "incorrect API version: expected \"1\", got \"2\"",
                "spec must contain a label",
                "spec must implement the \"reporter\" interface",
            ]
        );
        let none = validate(
            &r,
            &ValidateOptions {
                plugin: Some(PluginCheck::default()),
            },
        );
        assert_eq!(
            none[0].message,
            "report must contain exactly one plugin (found 0)"
        );
    }
}
