//! The view pipelines (protocol.md §8.4): processes, containers, images, host names,
//! hosts. Each is a pure function of the merged report.

use std::cell::OnceCell;
use std::collections::{HashMap, HashSet};

use rescope_report::node::HOST_NODE_ID;
use rescope_report::{GoTime, Node, Report, Str, TopologyKind, id};

use crate::pipeline::{
    LocalNetworks, Mapper, Nodes, Rendered, canonical_endpoint, color_connected, filter, is_pseudo,
    map_endpoints, pseudo_node, reduce,
};

/// One render of one report: the shared intermediate views are computed once.
pub struct RenderContext<'a> {
    pub report: &'a Report,
    pub now: GoTime,
    pub local: LocalNetworks,
    processes: OnceCell<Nodes>,
    containers_base: OnceCell<Rendered>,
    containers: OnceCell<Rendered>,
    images: OnceCell<Nodes>,
    /// Every view rendered so far (before options), shared by details and stats.
    pub(crate) rendered:
        std::cell::RefCell<std::collections::HashMap<String, std::rc::Rc<Rendered>>>,
}

impl std::fmt::Debug for RenderContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderContext").finish_non_exhaustive()
    }
}

impl<'a> RenderContext<'a> {
    /// `report` must already be free of part-merged nodes (see [`crate::prepare`]).
    pub fn new(report: &'a Report, now: GoTime) -> Self {
        RenderContext {
            report,
            now,
            local: LocalNetworks::of(report),
            processes: OnceCell::new(),
            containers_base: OnceCell::new(),
            containers: OnceCell::new(),
            images: OnceCell::new(),
            rendered: std::cell::RefCell::default(),
        }
    }

    /// The `processes` view (before option filters).
    pub fn processes(&self) -> &Nodes {
        self.processes.get_or_init(|| render_processes(self))
    }

    /// Containers before image names are attached (what the hosts view builds on).
    pub fn containers_base(&self) -> &Rendered {
        self.containers_base.get_or_init(|| render_containers(self))
    }

    /// The `containers` view (before option filters): containers with their image's
    /// name and metadata.
    pub fn containers(&self) -> &Rendered {
        self.containers.get_or_init(|| {
            let mut r = self.containers_base().clone();
            with_image_names(self.report, &mut r.nodes);
            r
        })
    }

    /// The `containers-by-image` view.
    pub fn images(&self) -> &Nodes {
        self.images.get_or_init(|| render_images(self))
    }
}

fn pass(x: &Node) -> Vec<(Str, Node)> {
    vec![(x.id.clone(), x.clone())]
}

fn fresh(id: &str, topology: &str) -> Node {
    Node::new(id).with_topology(topology)
}

/// The host part of a host node ID (`vm;<host>` → `vm`).
fn host_of(host_node_id: &str) -> Option<&str> {
    id::parse_host_id(host_node_id)
}

fn render_processes(ctx: &RenderContext<'_>) -> Nodes {
    let report = ctx.report;
    if report[TopologyKind::Process].nodes.is_empty() {
        return Nodes::new();
    }
    let f = |_: &Str, e: &Node| -> Option<Str> {
        let pid = e.latest_value("pid")?;
        let host = host_of(e.latest_value(HOST_NODE_ID)?)?;
        if e.adjacency.len() >= 2 {
            let remotes: HashSet<&str> = e
                .adjacency
                .iter()
                .map(|t| canonical_endpoint(report, t))
                .collect();
            if remotes.len() >= 2 {
                return None;
            }
        }
        Some(Str::from(id::process_id_str(host, pid)))
    };
    let mut nodes = map_endpoints(report, TopologyKind::Process, &ctx.local, ctx.now, &f);
    color_connected(&mut nodes, ctx.now);
    nodes
}

/// Groups `input` by the value of `key` into nodes of topology
/// `group:<base>:<key>`; pseudo nodes pass through, nodes without the key are dropped.
fn group_by(ctx: &RenderContext<'_>, input: &Nodes, base: TopologyKind, key: &str) -> Nodes {
    let group = id::group_topology(base.name(), key);
    let route = |x: &Node| -> Vec<(Str, Node)> {
        if is_pseudo(x) {
            return pass(x);
        }
        match x.latest_value(key) {
            Some(v) => vec![(v.clone(), fresh(v, &group))],
            None => Vec::new(),
        }
    };
    Mapper {
        now: ctx.now,
        with_children: true,
        add_children: true,
        remap_edges: true,
        route: &route,
    }
    .apply(input)
}

/// `processes-by-name`: processes grouped by name.
pub fn processes_by_name(ctx: &RenderContext<'_>) -> Nodes {
    let mut nodes = group_by(ctx, ctx.processes(), TopologyKind::Process, "name");
    color_connected(&mut nodes, ctx.now);
    nodes
}

/// The IP index that joins connection end points to containers (§8.4).
fn container_ip_index(report: &Report) -> HashMap<String, Option<Str>> {
    let mut index: HashMap<String, Option<Str>> = HashMap::new();
    let mut claim = |key: String, cid: &Str| {
        index
            .entry(key)
            .and_modify(|owner| {
                if owner.as_ref() != Some(cid) {
                    *owner = None;
                }
            })
            .or_insert_with(|| Some(cid.clone()));
    };
    for (cid, c) in &report[TopologyKind::Container].nodes {
        if c.latest.contains_key("does_not_make_connections")
            || c.latest_value("docker_is_in_host_network")
                .is_some_and(|v| v == "true")
        {
            continue;
        }
        for scoped in c
            .sets
            .get("docker_container_ips_with_scopes")
            .into_iter()
            .flatten()
        {
            let Some((_, ip)) = id::parse_address_id(scoped) else {
                continue;
            };
            if ip
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
            {
                continue;
            }
            claim(format!("{scoped};"), cid);
        }
        for port in c.sets.get("docker_container_ports").into_iter().flatten() {
            if let Some((ip, host_port)) = parse_port_mapping(port) {
                claim(format!(";{ip};{host_port}"), cid);
            }
        }
    }
    index
}

/// `10.0.0.5:8080->80/tcp` → (`10.0.0.5`, `8080`).
fn parse_port_mapping(s: &str) -> Option<(&str, &str)> {
    let (host, rest) = s.split_once("->")?;
    let (ip, port) = host.rsplit_once(':')?;
    let (_, proto) = rest.split_once('/')?;
    let quad = ip.split('.').count() == 4
        && ip
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    (proto == "tcp" && quad && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
        .then_some((ip, port))
}

fn render_containers(ctx: &RenderContext<'_>) -> Rendered {
    let report = ctx.report;
    let container = TopologyKind::Container.name();
    let by_process = |x: &Node| -> Vec<(Str, Node)> {
        if is_pseudo(x) {
            return pass(x);
        }
        match x.latest_value("docker_container_id") {
            Some(cid) => {
                let nid = Str::from(id::container_id(cid));
                vec![(nid.clone(), fresh(&nid, container))]
            }
            None => {
                let host = id::parse_process_id(&x.id).map_or("", |(h, _)| h);
                let pid = Str::from(id::uncontained_id(host));
                vec![(pid.clone(), pseudo_node(&pid))]
            }
        }
    };
    let from_processes = Mapper {
        now: ctx.now,
        with_children: true,
        add_children: true,
        remap_edges: true,
        route: &by_process,
    }
    .apply(ctx.processes());
    let index = container_ip_index(report);
    let by_ip = |eid: &Str, _: &Node| -> Option<Str> {
        let ep = id::parse_endpoint_id(eid)?;
        let key = format!("{};{};", ep.scope, ep.ip);
        index
            .get(&key)
            .or_else(|| index.get(eid.as_str()))
            .and_then(|owner| owner.clone())
    };
    let from_ips = map_endpoints(report, TopologyKind::Container, &ctx.local, ctx.now, &by_ip);
    let mut nodes = reduce([from_processes, from_ips]);
    let filtered = filter(
        &mut nodes,
        &|n: &Node| {
            n.latest_value("docker_container_state")
                .is_none_or(|s| s != "deleted")
        },
        false,
    );
    Rendered { nodes, filtered }
}

/// An image name without registry host and tag, as Scope derives it:
/// `docker.io/library/nginx:1.2` → `library/nginx`.
pub fn image_name_without_tag(name: &str) -> &str {
    let parts: Vec<&str> = name.splitn(3, '/').collect();
    let without_registry = if parts.len() == 3 {
        &name[parts[0].len() + 1..]
    } else {
        name
    };
    without_registry
        .split(':')
        .next()
        .unwrap_or(without_registry)
}

/// Copies image metadata onto containers and points their image parent at the image
/// by name.
fn with_image_names(report: &Report, nodes: &mut Nodes) {
    let images = &report[TopologyKind::ContainerImage].nodes;
    for node in nodes.values_mut() {
        if node.topology != TopologyKind::Container.name() {
            continue;
        }
        let Some(image_id) = node.latest_value("docker_image_id") else {
            continue;
        };
        let Some(image) = images.get(id::container_image_id(image_id).as_str()) else {
            continue;
        };
        let Some(name) = image.latest_value("docker_image_name").cloned() else {
            continue;
        };
        for key in [
            "docker_image_name",
            "docker_image_tag",
            "docker_image_size",
            "docker_image_virtual_size",
            "docker_image_label_works.weave.role",
        ] {
            if let Some(entry) = image.latest.get(key) {
                node.latest.insert(key, entry.clone());
            }
        }
        let parent = id::container_image_id(image_name_without_tag(&name));
        node.parents.insert(
            TopologyKind::ContainerImage.name(),
            std::iter::once(parent).collect(),
        );
    }
}

fn render_images(ctx: &RenderContext<'_>) -> Nodes {
    let report = ctx.report;
    let image = TopologyKind::ContainerImage.name();
    let by_image_id = |x: &Node| -> Vec<(Str, Node)> {
        if is_pseudo(x) {
            return pass(x);
        }
        match x.latest_value("docker_image_id") {
            Some(iid) => {
                let nid = Str::from(id::container_image_id(iid));
                vec![(nid.clone(), fresh(&nid, image))]
            }
            None => Vec::new(),
        }
    };
    let containers = Mapper {
        now: ctx.now,
        with_children: true,
        add_children: true,
        remap_edges: true,
        route: &by_image_id,
    }
    .apply(&ctx.containers().nodes);
    let by_id = reduce([
        report[TopologyKind::ContainerImage].nodes.clone(),
        containers,
    ]);
    let by_name = |x: &Node| -> Vec<(Str, Node)> {
        if is_pseudo(x) {
            return pass(x);
        }
        let Some(name) = x.latest_value("docker_image_name") else {
            return Vec::new();
        };
        let nid = Str::from(id::container_image_id(image_name_without_tag(name)));
        let mut renamed = x.clone();
        renamed.id = nid.clone();
        vec![(nid, renamed)]
    };
    let mut nodes = Mapper {
        now: ctx.now,
        with_children: true,
        add_children: false,
        remap_edges: true,
        route: &by_name,
    }
    .apply(&by_id);
    let container = TopologyKind::Container.name();
    filter(
        &mut nodes,
        &|n: &Node| n.children.values().any(|c| c.topology == container),
        false,
    );
    nodes
}

/// `containers-by-hostname`: containers grouped by their host name.
pub fn containers_by_hostname(ctx: &RenderContext<'_>) -> Nodes {
    let mut nodes = group_by(
        ctx,
        &ctx.containers().nodes,
        TopologyKind::Container,
        "docker_container_hostname",
    );
    let container = TopologyKind::Container.name();
    filter(
        &mut nodes,
        &|n: &Node| n.children.values().any(|c| c.topology == container),
        false,
    );
    nodes
}

/// `hosts`: everything mapped onto the hosts it runs on, plus the hosts' own
/// connections.
pub fn hosts(ctx: &RenderContext<'_>) -> Nodes {
    let report = ctx.report;
    let host = TopologyKind::Host.name();
    let to_hosts = |x: &Node| -> Vec<(Str, Node)> {
        if is_pseudo(x) {
            return Vec::new();
        }
        x.parents
            .get(host)
            .into_iter()
            .flatten()
            .map(|h| (h.clone(), fresh(h, host)))
            .collect()
    };
    let mapped = |input: &Nodes, remap: bool, with_children: bool| {
        Mapper {
            now: ctx.now,
            with_children,
            add_children: true,
            remap_edges: remap,
            route: &to_hosts,
        }
        .apply(input)
    };
    // A host adopts processes, containers and images, not their children: its own
    // connection end points come from the endpoint mapping below.
    let from_processes = mapped(ctx.processes(), true, false);
    let from_containers = mapped(&ctx.containers_base().nodes, true, false);
    // Images span hosts: their edges are not carried over.
    let from_images = mapped(ctx.images(), false, false);
    let f = |_: &Str, e: &Node| e.latest_value(HOST_NODE_ID).cloned();
    let from_endpoints = map_endpoints(report, TopologyKind::Host, &ctx.local, ctx.now, &f);
    reduce([from_endpoints, from_processes, from_containers, from_images])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_lose_registry_and_tag() {
        assert_eq!(
            image_name_without_tag("docker.io/library/nginx:1.2"),
            "library/nginx"
        );
        assert_eq!(image_name_without_tag("tiny:latest"), "tiny");
        assert_eq!(
            image_name_without_tag("weaveworks/scope"),
            "weaveworks/scope"
        );
        assert_eq!(
            parse_port_mapping("10.0.0.5:8080->80/tcp"),
            Some(("10.0.0.5", "8080"))
        );
        assert_eq!(parse_port_mapping("80/tcp"), None);
        assert_eq!(parse_port_mapping("10.0.0.5:53->53/udp"), None);
    }
}
