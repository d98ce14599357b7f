//! Rendering building blocks (protocol.md §8.1, §8.3): mapping nodes to other nodes
//! while carrying their edges along, turning connection end points into processes,
//! containers or hosts, and the pseudo nodes for the Internet and known services.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use rescope_report::{GoTime, Node, Report, Str, TopologyKind, id};

/// Rendered nodes by ID.
pub type Nodes = BTreeMap<Str, Node>;

/// The result of rendering a view: nodes, and how many a filter removed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rendered {
    pub nodes: Nodes,
    pub filtered: usize,
}

/// Adds `child` to `parent.children`, with the child's own children when
/// `with_children`, and counts it in `count_<topology>` (endpoints are not counted).
pub fn add_child(parent: &mut Node, child: &Node, with_children: bool, now: GoTime) {
    if parent.children.contains_key(&child.id) {
        return;
    }
    if !child.topology.is_empty() && child.topology != TopologyKind::Endpoint.name() {
        let key = format!("{}{}", rescope_report::node::COUNTER_PREFIX, child.topology);
        let n = parent
            .latest_value(&key)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        parent.set_latest(&key, now, (n + 1).to_string());
    }
    if with_children {
        for (cid, c) in &child.children {
            parent
                .children
                .entry(cid.clone())
                .or_insert_with(|| child_copy(c));
        }
    }
    parent.children.insert(child.id.clone(), child_copy(child));
}

/// Child topologies kept as stubs (ID and topology only). End point children are only
/// ever read for their IDs (connection tables look the end points up in the report);
/// processes, containers and images are the nodes of another view of the same render,
/// and details look them up there ([`crate::detail`]). Copying them whole made every
/// render copy the fleet's processes and end points into every view built on them.
const STUB_CHILDREN: [TopologyKind; 4] = [
    TopologyKind::Endpoint,
    TopologyKind::Process,
    TopologyKind::Container,
    TopologyKind::ContainerImage,
];

/// Whether children of this topology are kept as stubs (see [`child_copy`]).
pub fn is_stub_child(topology: &str) -> bool {
    STUB_CHILDREN.iter().any(|k| k.name() == topology)
}

/// What a rendered node keeps of a child: a stub for the topologies in
/// `STUB_CHILDREN`, otherwise the child without its own children.
pub fn child_copy(child: &Node) -> Node {
    if is_stub_child(&child.topology) {
        return Node {
            id: child.id.clone(),
            topology: child.topology.clone(),
            ..Node::default()
        };
    }
    without_children(child)
}

/// A copy of a node without its children.
pub fn without_children(node: &Node) -> Node {
    Node {
        id: node.id.clone(),
        topology: node.topology.clone(),
        sets: node.sets.clone(),
        adjacency: node.adjacency.clone(),
        latest: node.latest.clone(),
        metrics: node.metrics.clone(),
        parents: node.parents.clone(),
        children: Default::default(),
    }
}

/// Maps every input node to zero or more output nodes and rewrites edges by the
/// join rule: an edge X→Z becomes Y→W for every output Y of X and W of Z.
///
/// `route(x)` gives the output IDs of `x` with a constructor for each output that does
/// not exist yet. `pass` lets a node through unchanged (pseudo nodes, usually).
pub struct Mapper<'a> {
    pub now: GoTime,
    /// With `add_children`: also adopt the input's own children.
    pub with_children: bool,
    /// Add each input as a child of its outputs (and count it). Without it, the
    /// outputs are the inputs themselves under new IDs, merged when they collide.
    pub add_children: bool,
    /// Copy adjacency from inputs to outputs by the join rule.
    pub remap_edges: bool,
    pub route: &'a dyn Fn(&Node) -> Vec<(Str, Node)>,
}

impl std::fmt::Debug for Mapper<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapper")
            .field("add_children", &self.add_children)
            .finish_non_exhaustive()
    }
}

impl Mapper<'_> {
    pub fn apply(&self, input: &Nodes) -> Nodes {
        let mut out: Nodes = BTreeMap::new();
        let mut routes: HashMap<&Str, Vec<Str>> = HashMap::with_capacity(input.len());
        for (xid, x) in input {
            let targets = (self.route)(x);
            let mut ids = Vec::with_capacity(targets.len());
            for (yid, mut fresh) in targets {
                if self.remap_edges {
                    // Edges come only from the join: a node passed through (or
                    // renamed) would otherwise keep edges to IDs of the input's space.
                    fresh.adjacency = Default::default();
                }
                let passing_through = yid == *xid;
                match out.get_mut(&yid) {
                    Some(y) if !self.add_children || passing_through => y.merge_from(&fresh),
                    Some(_) => {}
                    None => {
                        out.insert(yid.clone(), fresh);
                    }
                }
                if self.add_children
                    && !passing_through
                    && let Some(y) = out.get_mut(&yid)
                {
                    add_child(y, x, self.with_children, self.now);
                }
                ids.push(yid);
            }
            routes.insert(xid, ids);
        }
        if self.remap_edges {
            join_edges(input, &routes, &mut out);
        }
        out
    }
}

/// Adds Y→W for every edge X→Z of the input where X routes to Y and Z to W.
pub fn join_edges(input: &Nodes, routes: &HashMap<&Str, Vec<Str>>, out: &mut Nodes) {
    for (xid, x) in input {
        let Some(ys) = routes.get(xid) else { continue };
        if ys.is_empty() || x.adjacency.is_empty() {
            continue;
        }
        for z in x.adjacency.iter() {
            let Some(ws) = routes.get(z) else { continue };
            for y in ys {
                if let Some(node) = out.get_mut(y) {
                    for w in ws {
                        node.adjacency.insert(w.clone());
                    }
                }
            }
        }
    }
}

/// Merges several renders: nodes with the same ID are merged (§3.3).
pub fn reduce(parts: impl IntoIterator<Item = Nodes>) -> Nodes {
    let mut out = Nodes::new();
    for part in parts {
        if out.is_empty() {
            out = part;
            continue;
        }
        for (id, node) in part {
            match out.get_mut(&id) {
                Some(existing) => existing.merge_from(&node),
                None => {
                    out.insert(id, node);
                }
            }
        }
    }
    out
}

/// A pseudo node (topology `pseudo`).
pub fn pseudo_node(id: &str) -> Node {
    Node::new(id).with_topology(id::PSEUDO_TOPOLOGY)
}

pub fn is_pseudo(node: &Node) -> bool {
    node.topology == id::PSEUDO_TOPOLOGY
}

/// IPv4 networks the report's hosts consider local (§8.3). Each network appears once
/// (every host of a fleet usually lists the same ones), in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalNetworks {
    nets: Vec<(u32, u32)>,
}

impl LocalNetworks {
    /// Every `local_networks` CIDR on Host and Overlay nodes, plus the smallest
    /// network holding every Kubernetes service IP.
    pub fn of(report: &Report) -> Self {
        let mut nets = Vec::new();
        for kind in [TopologyKind::Host, TopologyKind::Overlay] {
            for node in report[kind].nodes.values() {
                for cidr in node.sets.get("local_networks").into_iter().flatten() {
                    if let Some(net) = parse_cidr(cidr) {
                        nets.push(net);
                    }
                }
            }
        }
        let service_ips: Vec<u32> = report[TopologyKind::Service]
            .nodes
            .values()
            .filter_map(|n| n.latest_value("kubernetes_ip")?.parse::<Ipv4Addr>().ok())
            .map(u32::from)
            .collect();
        if let Some(first) = service_ips.first() {
            let mut prefix = 32u32;
            while prefix > 0
                && !service_ips
                    .iter()
                    .all(|ip| mask(*ip, prefix) == mask(*first, prefix))
            {
                prefix -= 1;
            }
            nets.push((mask(*first, prefix), prefix));
        }
        nets.sort_unstable();
        nets.dedup();
        LocalNetworks { nets }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        self.nets
            .iter()
            .any(|(net, prefix)| mask(ip, *prefix) == *net)
    }
}

fn mask(ip: u32, prefix: u32) -> u32 {
    if prefix == 0 {
        0
    } else {
        ip & (u32::MAX << (32 - prefix))
    }
}

fn parse_cidr(s: &str) -> Option<(u32, u32)> {
    let (addr, prefix) = s.split_once('/')?;
    let ip: Ipv4Addr = addr.parse().ok()?;
    let prefix: u32 = prefix.parse().ok().filter(|p| *p <= 32)?;
    Some((mask(u32::from(ip), prefix), prefix))
}

const KNOWN_SERVICE_SUFFIXES: [&str; 10] = [
    ".amazonaws.com",
    ".googleapis.com",
    ".weave.works",
    ".core.windows.net",
    ".servicebus.windows.net",
    ".azure-api.net",
    ".onmicrosoft.com",
    ".cloudapp.azure.com",
    ".database.windows.net",
    ".documents.azure.com",
];

/// Whether a DNS name is a cloud service worth its own pseudo node (EC2 host names
/// are not: they are just machines).
pub fn is_known_service(name: &str) -> bool {
    let ec2 = name.starts_with("ec2") && name.ends_with(".amazonaws.com");
    !ec2 && KNOWN_SERVICE_SUFFIXES
        .iter()
        .any(|s| name.len() > s.len() && name.ends_with(s))
}

/// Where an endpoint without a host (a remote end) goes: a known service, the
/// Internet (inbound or outbound), or nowhere.
pub fn remote_pseudo_id(
    endpoint_id: &str,
    endpoint: &Node,
    report: &Report,
    local: &LocalNetworks,
) -> Option<String> {
    let ep = id::parse_endpoint_id(endpoint_id)?;
    if let Some(rec) = report.dns.get(ep.ip)
        && let Some(name) = rec
            .forward
            .iter()
            .chain(rec.reverse.iter())
            .find(|n| is_known_service(n))
    {
        return Some(id::service_pseudo_id(name));
    }
    let ip: Ipv4Addr = ep.ip.parse().ok()?;
    if local.contains(ip) {
        return None;
    }
    Some(if endpoint.adjacency.is_empty() {
        id::OUTGOING_INTERNET_ID.to_string()
    } else {
        id::INCOMING_INTERNET_ID.to_string()
    })
}

/// Maps connection end points into topology `kind` (§8.3): the output starts with
/// every node of `kind`; each endpoint becomes a child of `f(endpoint)` (created if
/// needed), or of a pseudo node when it is a remote end; endpoint edges become edges
/// between the nodes they map to.
pub fn map_endpoints(
    report: &Report,
    kind: TopologyKind,
    local: &LocalNetworks,
    now: GoTime,
    f: &dyn Fn(&Str, &Node) -> Option<Str>,
) -> Nodes {
    let mut out: Nodes = report[kind].nodes.clone();
    let endpoints = &report[TopologyKind::Endpoint].nodes;
    let mut routes: HashMap<&Str, Vec<Str>> = HashMap::with_capacity(endpoints.len());
    for (eid, e) in endpoints {
        let pseudo = if e.latest.contains_key(rescope_report::node::HOST_NODE_ID) {
            None
        } else {
            remote_pseudo_id(eid, e, report, local)
        };
        let (target, fresh) = match pseudo {
            Some(p) => {
                let p = Str::from(p);
                let node = pseudo_node(&p);
                (p, node)
            }
            None => match f(eid, e) {
                Some(t) => {
                    let node = Node::new(t.clone()).with_topology(kind.name());
                    (t, node)
                }
                None => continue,
            },
        };
        let node = out.entry(target.clone()).or_insert(fresh);
        add_child(node, e, false, now);
        routes.insert(eid, vec![target]);
    }
    join_edges(endpoints, &routes, &mut out);
    out
}

/// The original of an endpoint that is a NAT copy (`copy_of`), else itself.
pub fn canonical_endpoint<'a>(report: &'a Report, endpoint_id: &'a str) -> &'a str {
    report[TopologyKind::Endpoint]
        .nodes
        .get(endpoint_id)
        .and_then(|n| n.latest_value("copy_of"))
        .map(|s| s.as_str())
        .unwrap_or(endpoint_id)
}

/// Sets `is_connected` on every node with an edge to or from a different node.
pub fn color_connected(nodes: &mut Nodes, now: GoTime) {
    let mut connected: Vec<Str> = Vec::new();
    for (id, node) in nodes.iter() {
        for target in node.adjacency.iter() {
            if target != id {
                connected.push(id.clone());
                connected.push(target.clone());
            }
        }
    }
    for id in connected {
        if let Some(node) = nodes.get_mut(&id) {
            node.set_latest("is_connected", now, "true");
        }
    }
}

/// Removes nodes failing `keep` (pseudo nodes always stay unless `pseudo_aware`),
/// deletes edges to removed nodes, and returns how many were removed.
pub fn filter(nodes: &mut Nodes, keep: &dyn Fn(&Node) -> bool, pseudo_aware: bool) -> usize {
    let before = nodes.len();
    nodes.retain(|_, n| (!pseudo_aware && is_pseudo(n)) || keep(n));
    let removed = before - nodes.len();
    if removed > 0 {
        prune_edges(nodes);
    }
    removed
}

/// Deletes edges pointing at nodes that are not in `nodes`.
pub fn prune_edges(nodes: &mut Nodes) {
    let ids: std::collections::HashSet<Str> = nodes.keys().cloned().collect();
    for node in nodes.values_mut() {
        if node.adjacency.iter().any(|t| !ids.contains(t)) {
            let kept: Vec<Str> = node
                .adjacency
                .iter()
                .filter(|t| ids.contains(*t))
                .cloned()
                .collect();
            node.adjacency = kept.into_iter().collect();
        }
    }
}

/// Removes the Internet-to-Internet edge, then every pseudo node without an edge to
/// or from another node. Returns how many nodes were removed.
pub fn filter_unconnected_pseudo(nodes: &mut Nodes) -> usize {
    if let Some(inbound) = nodes.get_mut(id::INCOMING_INTERNET_ID) {
        inbound.adjacency.remove(id::OUTGOING_INTERNET_ID);
    }
    let mut linked: std::collections::HashSet<Str> = std::collections::HashSet::new();
    for (nid, node) in nodes.iter() {
        for t in node.adjacency.iter() {
            if t != nid {
                linked.insert(nid.clone());
                linked.insert(t.clone());
            }
        }
    }
    let before = nodes.len();
    nodes.retain(|nid, n| !is_pseudo(n) || linked.contains(nid));
    let removed = before - nodes.len();
    if removed > 0 {
        prune_edges(nodes);
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_services_and_local_networks() {
        assert!(is_known_service("s3.eu-west-1.amazonaws.com"));
        assert!(!is_known_service("ec2-1-2-3-4.compute.amazonaws.com"));
        assert!(!is_known_service(".amazonaws.com"));
        assert!(!is_known_service("example.com"));
        let mut r = Report::empty();
        let mut h = Node::new("h;<host>");
        h.sets.add("local_networks", "172.17.0.1/16");
        r[TopologyKind::Host].add_node(h);
        let local = LocalNetworks::of(&r);
        assert!(local.contains("172.17.5.5".parse().expect("ip")));
        assert!(!local.contains("8.8.8.8".parse().expect("ip")));
    }
}
