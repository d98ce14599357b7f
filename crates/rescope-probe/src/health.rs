//! What the probe cannot do on this host right now, and what that costs the user.
//!
//! The parts of the probe that can be degraded (the Docker engine unreachable, no
//! eBPF, no conntrack, no access to other network namespaces, …) log a warning once
//! and record the problem here; the host reporter then shows each problem on the host
//! node, as a "Probe problems" table in its details, until the part records that it
//! works again. One probe runs per process, so the record is process-wide.

use std::collections::BTreeMap;
use std::sync::Mutex;

use rescope_report::{Node, Report, Str, TableTemplate, TopologyKind};

/// The prefix of the host node's `latest` keys that carry problems.
pub const PREFIX: &str = "probe_problem_";
const TABLE_ID: &str = "probe-problems";

static PROBLEMS: Mutex<BTreeMap<&'static str, String>> = Mutex::new(BTreeMap::new());

/// Records that `part` (a short name shown as the row's label, such as "Docker")
/// does not work, with what is wrong and what the user misses because of it.
pub fn problem(part: &'static str, what: impl Into<String>) {
    if let Ok(mut problems) = PROBLEMS.lock() {
        problems.insert(part, what.into());
    }
}

/// Records that `part` works (again).
pub fn resolved(part: &'static str) {
    if let Ok(mut problems) = PROBLEMS.lock() {
        problems.remove(part);
    }
}

/// The problems recorded now, by part.
pub fn problems() -> Vec<(&'static str, String)> {
    PROBLEMS
        .lock()
        .map(|p| p.iter().map(|(k, v)| (*k, v.clone())).collect())
        .unwrap_or_default()
}

/// Adds the current problems to the host node, and the table template that shows
/// them, when there are any.
pub fn add_to_host(report: &mut Report, node: &mut Node, now: rescope_report::GoTime) {
    let problems = problems();
    if problems.is_empty() {
        return;
    }
    for (part, what) in problems {
        node.set_latest(format!("{PREFIX}{part}").as_str(), now, what);
    }
    report
        .topology_mut(TopologyKind::Host)
        .table_templates
        .insert(
            Str::new(TABLE_ID),
            TableTemplate {
                id: Str::new(TABLE_ID),
                label: Str::new("Probe problems"),
                prefix: Str::new(PREFIX),
                table_type: Str::new("property-list"),
                ..Default::default()
            },
        );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_show_on_the_host_until_resolved() {
        let now = rescope_report::GoTime::now();
        problem("Test part A", "cannot do A; B is missing");
        let mut report = Report::empty();
        let mut node = Node::new("h;<host>");
        add_to_host(&mut report, &mut node, now);
        assert_eq!(
            node.latest_value("probe_problem_Test part A")
                .map(Str::as_str),
            Some("cannot do A; B is missing")
        );
        let template = &report[TopologyKind::Host].table_templates[TABLE_ID];
        assert_eq!(template.prefix.as_str(), PREFIX);

        resolved("Test part A");
        let mut node = Node::new("h;<host>");
        add_to_host(&mut Report::empty(), &mut node, now);
        assert!(node.latest_value("probe_problem_Test part A").is_none());
    }
}
