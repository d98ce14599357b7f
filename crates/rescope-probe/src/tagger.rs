//! Taggers: passes over a merged spy report that fill in what every node needs.

use rescope_report::{GoTime, Node, Report, Str, TopologyKind, node::HOST_NODE_ID};

/// Sets `topology` on every node that lacks it. Runs last, so nodes created by any
/// reporter or tagger are covered (Scope ran it first and left some nodes without).
pub fn tag_topologies(report: &mut Report) {
    for (kind, topology) in report.topologies_mut() {
        let name = Str::new(kind.name());
        for node in topology.nodes.values_mut() {
            if node.topology.is_empty() {
                node.topology = name.clone();
            }
        }
    }
}

/// Marks processes, containers, images and the host itself as belonging to this
/// host: `latest.host_node_id` and a `host` parent. Endpoints, overlay and pod nodes
/// are left alone, as in Scope.
pub fn tag_host(report: &mut Report, host_node_id: &str, now: GoTime) {
    for kind in OWNED {
        tag_host_nodes(
            kind,
            report.topology_mut(kind).nodes.values_mut(),
            host_node_id,
            now,
        );
    }
}

/// The topologies whose nodes [`tag_host`] marks.
const OWNED: [TopologyKind; 4] = [
    TopologyKind::Process,
    TopologyKind::Container,
    TopologyKind::ContainerImage,
    TopologyKind::Host,
];

/// What [`tag_host`] does, for `nodes` of topology `kind` outside a report (the
/// changes of a kept topology).
pub fn tag_host_nodes<'a>(
    kind: TopologyKind,
    nodes: impl Iterator<Item = &'a mut Node>,
    host_node_id: &str,
    now: GoTime,
) {
    if !OWNED.contains(&kind) {
        return;
    }
    let host = Str::new(host_node_id);
    for node in nodes {
        node.set_latest(HOST_NODE_ID, now, host.clone());
        node.add_parent(TopologyKind::Host.name(), host.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_gets_a_topology_and_owned_ones_a_host() {
        let mut r = Report::empty();
        r[TopologyKind::Process].add_node(Node::new("h;1"));
        r[TopologyKind::Endpoint].add_node(Node::new(";1.2.3.4;80"));
        let now = GoTime::now();
        tag_host(&mut r, "h;<host>", now);
        tag_topologies(&mut r);
        let p = &r[TopologyKind::Process].nodes["h;1"];
        assert_eq!(p.topology.as_str(), "process");
        assert_eq!(
            p.latest_value(HOST_NODE_ID).map(Str::as_str),
            Some("h;<host>")
        );
        assert!(
            p.parents
                .get("host")
                .is_some_and(|h| h.contains("h;<host>"))
        );
        let e = &r[TopologyKind::Endpoint].nodes[";1.2.3.4;80"];
        assert_eq!(e.topology.as_str(), "endpoint");
        assert!(e.latest_value(HOST_NODE_ID).is_none());
    }
}
