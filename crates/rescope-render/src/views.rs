//! The view pipelines (protocol.md §8.4): processes, containers, images, host names,
//! hosts. Each is a pure function of the merged report.

use std::cell::{OnceCell, RefCell};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

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
    processes: OnceCell<Arc<Rendered>>,
    containers_base: OnceCell<Arc<Rendered>>,
    containers: OnceCell<Arc<Rendered>>,
    images: OnceCell<Arc<Rendered>>,
    /// Every view rendered so far (before options), shared by details and stats.
    pub(crate) rendered: RefCell<HashMap<String, Arc<Rendered>>>,
}

impl std::fmt::Debug for RenderContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderContext").finish_non_exhaustive()
    }
}

/// Views rendered elsewhere (see [`crate::live`]) for a context to serve from.
#[derive(Debug, Clone, Default)]
pub struct Prerendered {
    pub processes: Option<Arc<Rendered>>,
    pub containers_base: Option<Arc<Rendered>>,
    pub containers: Option<Arc<Rendered>>,
    pub images: Option<Arc<Rendered>>,
    /// Any view by name.
    pub views: HashMap<String, Arc<Rendered>>,
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
            rendered: RefCell::default(),
        }
    }

    /// A context that serves the given views instead of rendering them; views not
    /// given are rendered from `report` as usual.
    pub fn prerendered(
        report: &'a Report,
        now: GoTime,
        local: LocalNetworks,
        views: Prerendered,
    ) -> Self {
        let cell = |v: Option<Arc<Rendered>>| {
            let c = OnceCell::new();
            if let Some(v) = v {
                let _ = c.set(v);
            }
            c
        };
        RenderContext {
            report,
            now,
            local,
            processes: cell(views.processes),
            containers_base: cell(views.containers_base),
            containers: cell(views.containers),
            images: cell(views.images),
            rendered: RefCell::new(views.views),
        }
    }

    /// The `processes` view (before option filters).
    pub fn processes(&self) -> &Nodes {
        &self.processes_rc().nodes
    }

    pub(crate) fn processes_rc(&self) -> &Arc<Rendered> {
        self.processes.get_or_init(|| {
            Arc::new(Rendered {
                nodes: render_processes(self),
                filtered: 0,
            })
        })
    }

    /// Containers before image names are attached (what the hosts view builds on).
    pub fn containers_base(&self) -> &Rendered {
        self.containers_base
            .get_or_init(|| Arc::new(render_containers(self)))
    }

    /// The `containers` view (before option filters): containers with their image's
    /// name and metadata.
    pub fn containers(&self) -> &Rendered {
        self.containers_rc()
    }

    pub(crate) fn containers_rc(&self) -> &Arc<Rendered> {
        self.containers.get_or_init(|| {
            let mut r = self.containers_base().clone();
            with_image_names(self.report, &mut r.nodes);
            Arc::new(r)
        })
    }

    /// The `containers-by-image` view.
    pub fn images(&self) -> &Nodes {
        &self.images_rc().nodes
    }

    pub(crate) fn images_rc(&self) -> &Arc<Rendered> {
        self.images.get_or_init(|| {
            Arc::new(Rendered {
                nodes: render_images(self),
                filtered: 0,
            })
        })
    }
}

pub(crate) fn pass(x: &Node) -> Vec<(Str, Node)> {
    vec![(x.id.clone(), x.clone())]
}

pub(crate) fn fresh(id: &str, topology: &str) -> Node {
    Node::new(id).with_topology(topology)
}

/// The host part of a host node ID (`vm;<host>` → `vm`).
pub(crate) fn host_of(host_node_id: &str) -> Option<&str> {
    id::parse_host_id(host_node_id)
}

/// The process an end point belongs to (§8.4): its host and pid, unless it connects
/// to two or more distinct remote end points (a listening socket shared by processes).
pub(crate) fn process_of_endpoint(report: &Report, e: &Node) -> Option<Str> {
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
}

fn render_processes(ctx: &RenderContext<'_>) -> Nodes {
    let report = ctx.report;
    if report[TopologyKind::Process].nodes.is_empty() {
        return Nodes::new();
    }
    let f = |_: &Str, e: &Node| process_of_endpoint(report, e);
    let mut nodes = map_endpoints(report, TopologyKind::Process, &ctx.local, ctx.now, &f);
    color_connected(&mut nodes, ctx.now);
    nodes
}

/// The route of [`group_by`]: nodes go to the group named by their value of `key`
/// (topology `group`); pseudo nodes pass through, nodes without the key are dropped.
pub(crate) fn group_route(x: &Node, key: &str, group: &str) -> Vec<(Str, Node)> {
    if is_pseudo(x) {
        return pass(x);
    }
    match x.latest_value(key) {
        Some(v) => vec![(v.clone(), fresh(v, group))],
        None => Vec::new(),
    }
}

/// The output IDs of [`group_route`], without building output nodes.
pub(crate) fn group_ids(x: &Node, key: &str) -> Vec<Str> {
    if is_pseudo(x) {
        return vec![x.id.clone()];
    }
    x.latest_value(key).cloned().into_iter().collect()
}

/// Groups `input` by the value of `key` into nodes of topology
/// `group:<base>:<key>`; pseudo nodes pass through, nodes without the key are dropped.
fn group_by(ctx: &RenderContext<'_>, input: &Nodes, base: TopologyKind, key: &str) -> Nodes {
    let group = id::group_topology(base.name(), key);
    let route = |x: &Node| group_route(x, key, &group);
    group_mapper(ctx.now, &route).apply(input)
}

/// The mapper that groups nodes (adopting them and their children as children).
pub(crate) fn group_mapper<'a>(
    now: GoTime,
    route: &'a dyn Fn(&Node) -> Vec<(Str, Node)>,
) -> Mapper<'a> {
    Mapper {
        now,
        with_children: true,
        add_children: true,
        remap_edges: true,
        route,
    }
}

/// `processes-by-name`: processes grouped by name.
pub fn processes_by_name(ctx: &RenderContext<'_>) -> Nodes {
    let mut nodes = group_by(ctx, ctx.processes(), TopologyKind::Process, "name");
    color_connected(&mut nodes, ctx.now);
    nodes
}

/// The IP index that joins connection end points to containers (§8.4).
pub(crate) fn container_ip_index(report: &Report) -> HashMap<String, Option<Str>> {
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

/// Where a process goes in the containers view: its container, or its host's
/// uncontained pseudo node; pseudo nodes pass through.
pub(crate) fn container_of_process(x: &Node) -> Vec<(Str, Node)> {
    if is_pseudo(x) {
        return pass(x);
    }
    match x.latest_value("docker_container_id") {
        Some(cid) => {
            let nid = Str::from(id::container_id(cid));
            vec![(nid.clone(), fresh(&nid, TopologyKind::Container.name()))]
        }
        None => {
            let host = id::parse_process_id(&x.id).map_or("", |(h, _)| h);
            let pid = Str::from(id::uncontained_id(host));
            vec![(pid.clone(), pseudo_node(&pid))]
        }
    }
}

/// The output IDs of [`container_of_process`].
pub(crate) fn container_ids(x: &Node) -> Vec<Str> {
    if is_pseudo(x) {
        return vec![x.id.clone()];
    }
    match x.latest_value("docker_container_id") {
        Some(cid) => vec![Str::from(id::container_id(cid))],
        None => {
            let host = id::parse_process_id(&x.id).map_or("", |(h, _)| h);
            vec![Str::from(id::uncontained_id(host))]
        }
    }
}

/// The container an end point belongs to by its address (§8.4).
pub(crate) fn container_of_endpoint(
    index: &HashMap<String, Option<Str>>,
    eid: &Str,
) -> Option<Str> {
    let ep = id::parse_endpoint_id(eid)?;
    let key = format!("{};{};", ep.scope, ep.ip);
    index
        .get(&key)
        .or_else(|| index.get(eid.as_str()))
        .and_then(|owner| owner.clone())
}

/// Containers the containers view keeps: all but deleted ones.
pub(crate) fn not_deleted(n: &Node) -> bool {
    n.latest_value("docker_container_state")
        .is_none_or(|s| s != "deleted")
}

fn render_containers(ctx: &RenderContext<'_>) -> Rendered {
    let report = ctx.report;
    let from_processes = group_mapper(ctx.now, &container_of_process).apply(ctx.processes());
    let index = container_ip_index(report);
    let by_ip = |eid: &Str, _: &Node| container_of_endpoint(&index, eid);
    let from_ips = map_endpoints(report, TopologyKind::Container, &ctx.local, ctx.now, &by_ip);
    let mut nodes = reduce([from_processes, from_ips]);
    let filtered = filter(&mut nodes, &not_deleted, false);
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
        with_image_name(images, node);
    }
}

/// The image node ID a container's image name comes from, if it is a container.
pub(crate) fn image_of_container(node: &Node) -> Option<Str> {
    if node.topology != TopologyKind::Container.name() {
        return None;
    }
    let image_id = node.latest_value("docker_image_id")?;
    Some(Str::from(id::container_image_id(image_id)))
}

/// [`with_image_names`] for one node.
pub(crate) fn with_image_name(images: &Nodes, node: &mut Node) {
    let Some(image_id) = image_of_container(node) else {
        return;
    };
    let Some(image) = images.get(image_id.as_str()) else {
        return;
    };
    let Some(name) = image.latest_value("docker_image_name").cloned() else {
        return;
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

/// Where a container goes by image ID; pseudo nodes pass through.
pub(crate) fn image_of(x: &Node) -> Vec<(Str, Node)> {
    if is_pseudo(x) {
        return pass(x);
    }
    match x.latest_value("docker_image_id") {
        Some(iid) => {
            let nid = Str::from(id::container_image_id(iid));
            vec![(
                nid.clone(),
                fresh(&nid, TopologyKind::ContainerImage.name()),
            )]
        }
        None => Vec::new(),
    }
}

/// The output IDs of [`image_of`].
pub(crate) fn image_ids(x: &Node) -> Vec<Str> {
    if is_pseudo(x) {
        return vec![x.id.clone()];
    }
    x.latest_value("docker_image_id")
        .map(|iid| Str::from(id::container_image_id(iid)))
        .into_iter()
        .collect()
}

/// An image node renamed to its image name (images of the same name merge).
pub(crate) fn image_by_name(x: &Node) -> Vec<(Str, Node)> {
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
}

/// The mapper that renames image nodes.
pub(crate) fn rename_mapper<'a>(
    now: GoTime,
    route: &'a dyn Fn(&Node) -> Vec<(Str, Node)>,
) -> Mapper<'a> {
    Mapper {
        now,
        with_children: true,
        add_children: false,
        remap_edges: true,
        route,
    }
}

/// Groups the images and host names keep: those with a container.
pub(crate) fn has_container(n: &Node) -> bool {
    let container = TopologyKind::Container.name();
    n.children.values().any(|c| c.topology == container)
}

fn render_images(ctx: &RenderContext<'_>) -> Nodes {
    let report = ctx.report;
    let containers = group_mapper(ctx.now, &image_of).apply(&ctx.containers().nodes);
    let by_id = reduce([
        report[TopologyKind::ContainerImage].nodes.clone(),
        containers,
    ]);
    let mut nodes = rename_mapper(ctx.now, &image_by_name).apply(&by_id);
    filter(&mut nodes, &has_container, false);
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
    filter(&mut nodes, &has_container, false);
    nodes
}

/// Where a node goes in the hosts view: the hosts among its parents (pseudo nodes go
/// nowhere).
pub(crate) fn hosts_of(x: &Node) -> Vec<(Str, Node)> {
    if is_pseudo(x) {
        return Vec::new();
    }
    let host = TopologyKind::Host.name();
    x.parents
        .get(host)
        .into_iter()
        .flatten()
        .map(|h| (h.clone(), fresh(h, host)))
        .collect()
}

/// The output IDs of [`hosts_of`].
pub(crate) fn host_ids(x: &Node) -> Vec<Str> {
    if is_pseudo(x) {
        return Vec::new();
    }
    x.parents
        .get(TopologyKind::Host.name())
        .into_iter()
        .flatten()
        .cloned()
        .collect()
}

/// The mapper that adopts nodes into their hosts (without the nodes' children).
pub(crate) fn hosts_mapper<'a>(
    now: GoTime,
    remap_edges: bool,
    route: &'a dyn Fn(&Node) -> Vec<(Str, Node)>,
) -> Mapper<'a> {
    Mapper {
        now,
        with_children: false,
        add_children: true,
        remap_edges,
        route,
    }
}

/// The host an end point was reported from.
pub(crate) fn host_of_endpoint(e: &Node) -> Option<Str> {
    e.latest_value(HOST_NODE_ID).cloned()
}

/// `hosts`: everything mapped onto the hosts it runs on, plus the hosts' own
/// connections.
pub fn hosts(ctx: &RenderContext<'_>) -> Nodes {
    let report = ctx.report;
    // A host adopts processes, containers and images, not their children: its own
    // connection end points come from the endpoint mapping below.
    let from_processes = hosts_mapper(ctx.now, true, &hosts_of).apply(ctx.processes());
    let from_containers =
        hosts_mapper(ctx.now, true, &hosts_of).apply(&ctx.containers_base().nodes);
    // Images span hosts: their edges are not carried over.
    let from_images = hosts_mapper(ctx.now, false, &hosts_of).apply(ctx.images());
    let f = |_: &Str, e: &Node| host_of_endpoint(e);
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
