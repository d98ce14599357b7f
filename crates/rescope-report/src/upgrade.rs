//! Upgrading reports from older probes (protocol.md §2.11, rule 4), applied by the app
//! to every stored report before merging.

use std::collections::BTreeMap;

use crate::id;
use crate::node::{LatestEntry, Node};
use crate::report::{DnsRecord, Report};
use crate::str::Str;
use crate::topology::TopologyKind;

impl Report {
    /// Applies all upgrades; a current report is left unchanged.
    pub fn upgrade(&mut self) {
        self.upgrade_replica_sets();
        self.upgrade_namespaces();
        self.upgrade_dns();
    }

    /// Pods whose parent is a replica set get that replica set's deployments instead.
    fn upgrade_replica_sets(&mut self) {
        if self[TopologyKind::ReplicaSet].nodes.is_empty() {
            return;
        }
        let deployments_of: BTreeMap<Str, Vec<Str>> = self[TopologyKind::ReplicaSet]
            .nodes
            .iter()
            .map(|(id, rs)| {
                let deps = rs
                    .parents
                    .get(TopologyKind::Deployment.name())
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default();
                (id.clone(), deps)
            })
            .collect();
        for pod in self[TopologyKind::Pod].nodes.values_mut() {
            let Some(replica_sets) = pod.parents.remove(TopologyKind::ReplicaSet.name()) else {
                continue;
            };
            for rs in replica_sets.iter() {
                for dep in deployments_of.get(rs).into_iter().flatten() {
                    pod.add_parent(TopologyKind::Deployment.name(), dep.clone());
                }
            }
        }
    }

    /// Without a Namespace topology, one namespace node per namespace named by any
    /// Kubernetes object.
    fn upgrade_namespaces(&mut self) {
        if !self[TopologyKind::Namespace].nodes.is_empty() {
            return;
        }
        let mut seen: BTreeMap<Str, LatestEntry> = BTreeMap::new();
        for kind in [
            TopologyKind::Pod,
            TopologyKind::Service,
            TopologyKind::Deployment,
            TopologyKind::DaemonSet,
            TopologyKind::StatefulSet,
            TopologyKind::CronJob,
        ] {
            for node in self[kind].nodes.values() {
                if node
                    .latest_value("kubernetes_state")
                    .is_some_and(|s| s == "deleted")
                {
                    continue;
                }
                if let Some(ns) = node.latest.get("kubernetes_namespace") {
                    let slot = seen.entry(ns.value.clone()).or_insert_with(|| ns.clone());
                    slot.timestamp = slot.timestamp.max(ns.timestamp);
                }
            }
        }
        for (name, entry) in seen {
            let node_id = id::single_id(TopologyKind::Namespace, &name).unwrap_or_default();
            let node = Node::new(node_id)
                .with_topology(TopologyKind::Namespace.name())
                .with_latest("kubernetes_name", entry.timestamp, name);
            self[TopologyKind::Namespace].add_node(node);
        }
    }

    /// Without `DNS`, names come from the endpoints' legacy DNS sets.
    fn upgrade_dns(&mut self) {
        if !self.dns.is_empty() {
            return;
        }
        let mut dns: BTreeMap<Str, DnsRecord> = BTreeMap::new();
        for (node_id, node) in &self[TopologyKind::Endpoint].nodes {
            let forward = node.sets.get("snooped_dns_names");
            let reverse = node.sets.get("reverse_dns_names");
            if forward.is_none() && reverse.is_none() {
                continue;
            }
            let Some(ep) = id::parse_endpoint_id(node_id) else {
                continue;
            };
            let rec = dns.entry(Str::new(ep.ip)).or_default();
            if let Some(f) = forward {
                rec.forward.union_with(f);
            }
            if let Some(r) = reverse {
                rec.reverse.union_with(r);
            }
        }
        self.dns = dns;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::GoTime;

    #[test]
    fn pods_move_from_replica_sets_to_deployments() {
        let t = GoTime::now();
        let mut r = Report::empty();
        let mut rs = Node::new("rs1;<replica_set>").with_topology("replica_set");
        rs.add_parent("deployment", "dep1;<deployment>");
        r[TopologyKind::ReplicaSet].add_node(rs);
        let mut pod = Node::new("p1;<pod>").with_topology("pod").with_latest(
            "kubernetes_namespace",
            t,
            "default",
        );
        pod.add_parent("replica_set", "rs1;<replica_set>");
        r[TopologyKind::Pod].add_node(pod);
        let deleted = Node::new("p2;<pod>")
            .with_topology("pod")
            .with_latest("kubernetes_namespace", t, "gone")
            .with_latest("kubernetes_state", t, "deleted");
        r[TopologyKind::Pod].add_node(deleted);
        r.upgrade();
        let pod = &r[TopologyKind::Pod].nodes["p1;<pod>"];
        assert!(pod.parents.get("replica_set").is_none());
        assert!(
            pod.parents
                .get("deployment")
                .is_some_and(|d| d.contains("dep1;<deployment>"))
        );
        let namespaces: Vec<_> = r[TopologyKind::Namespace]
            .nodes
            .keys()
            .map(Str::as_str)
            .collect();
        assert_eq!(namespaces, ["default;<namespace>"]);
    }

    #[test]
    fn dns_is_rebuilt_from_endpoint_sets() {
        let mut r = Report::empty();
        let mut ep = Node::new(";10.0.0.1;80").with_topology("endpoint");
        ep.sets.add("reverse_dns_names", "web.example");
        r[TopologyKind::Endpoint].add_node(ep);
        r.upgrade();
        assert!(r.dns["10.0.0.1"].reverse.contains("web.example"));
    }
}
