//! Incremental rendering: the views of a merged report kept up to date as its nodes
//! change, at a cost that follows what changed rather than the size of the report.
//!
//! This is the app's path for fleets. [`LiveViews::update`] takes the merged report
//! after a batch of probe reports was applied, and which of its nodes changed, and
//! brings every view to what [`crate::render_unfiltered`] would render from scratch.
//! Each view is the same pipeline of steps as in [`crate::views`] (mapping end points
//! onto nodes, grouping, merging, filtering, colouring connected nodes), and each step
//! here keeps an index of which inputs make up each output and which inputs have edges
//! to which, so that it rebuilds only the outputs whose inputs changed. An output is
//! rebuilt by the same code, from the same inputs in the same order, as the full
//! render builds it, so both give equal nodes; `tests/live.rs` checks that after every
//! step of random fleet histories.
//!
//! Changes are told apart by kind ([`Changes`]): a node whose ID, topology, children
//! and edges stayed the same changed in content only, and steps that adopt nodes as
//! children (grouping) ignore such changes unless the node moves to another group. So
//! new metric samples on every process of a host rebuild that host's processes, but
//! not the process-name groups that span the fleet.
//!
//! The end point steps, which see the most changes (a busy fleet opens and closes
//! connections all the time), key their indexes by end point number ([`NodeIx`],
//! given once per end point ID by [`EndpointIndex`] and freed when the end point is gone
//! for good) rather than by ID; the ID is looked up only to build an output node.
//!
//! Rendered values that carry a time (`count_*` counters, `is_connected`) are stamped
//! with the time given to [`LiveViews::new`], not the time of each update, so that an
//! unchanged output stays equal from one update to the next.

use std::collections::{BTreeSet, HashMap};

use rescope_report::fasthash::{FastMap, FastSet};
use std::sync::Arc;

use rescope_report::node::HOST_NODE_ID;
use rescope_report::{GoTime, Node, Report, Str, TopologyKind, id};

use crate::ids::{IxVec, NodeIds, NodeIx};
use crate::pipeline::{
    LocalNetworks, Mapper, Nodes, Rendered, add_child, pseudo_node, remote_pseudo_id,
};
use crate::views::{
    self, RenderContext, container_ids, container_ip_index, container_of_endpoint,
    container_of_process, group_ids, group_mapper, group_route, has_container, host_ids,
    host_of_endpoint, hosts_mapper, hosts_of, image_by_name, image_ids, image_of, not_deleted,
    process_of_endpoint, rename_mapper,
};
use crate::{Prerendered, weave_of};

/// Which nodes of a collection changed since the last update, and how.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// Anything may have changed: look at every node.
    pub all: bool,
    /// Nodes added, removed, or changed in ID, topology, children or edges.
    pub structure: FastSet<Str>,
    /// Nodes that changed in nothing but their metadata, metrics or parents.
    pub content: FastSet<Str>,
    /// Those of them that changed in nothing but metrics (and the times of values):
    /// what routes nodes (names, parents, IDs) did not change.
    pub measured: FastSet<Str>,
}

impl Changes {
    /// Every node may have changed.
    pub fn everything() -> Self {
        Changes {
            all: true,
            ..Changes::default()
        }
    }

    /// Changes to the named nodes, all counted as structural.
    pub fn of(ids: impl IntoIterator<Item = Str>) -> Self {
        Changes {
            all: false,
            structure: ids.into_iter().collect(),
            ..Changes::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        !self.all && self.structure.is_empty() && self.content.is_empty()
    }

    /// How many nodes are named.
    pub fn len(&self) -> usize {
        self.structure.len() + self.content.len()
    }

    /// The nodes named (with `all`, others may have changed too).
    pub fn ids(&self) -> impl Iterator<Item = &Str> {
        self.structure.iter().chain(self.content.iter())
    }

    pub fn contains(&self, id: &str) -> bool {
        self.all || self.structure.contains(id) || self.content.contains(id)
    }

    /// Adds `other`'s changes (a structural change outweighs a change of content).
    pub fn merge(&mut self, other: &Changes) {
        self.all |= other.all;
        for id in &other.structure {
            self.content.remove(id);
            self.measured.remove(id);
            self.structure.insert(id.clone());
        }
        for id in &other.content {
            if self.structure.contains(id) {
                continue;
            }
            let measured = other.measured.contains(id)
                && (!self.content.contains(id) || self.measured.contains(id));
            self.content.insert(id.clone());
            if measured {
                self.measured.insert(id.clone());
            } else {
                self.measured.remove(id);
            }
        }
    }

    /// Records that node `id` went from `old` to `new`; false if nothing changed.
    pub fn record(&mut self, id: &Str, old: Option<&Node>, new: Option<&Node>) -> bool {
        match (old, new) {
            (None, None) => false,
            (Some(o), Some(n)) => {
                if o == n {
                    return false;
                }
                self.measured.remove(id);
                if same_structure(o, n) {
                    if !self.structure.contains(id) {
                        self.content.insert(id.clone());
                    }
                } else {
                    self.content.remove(id);
                    self.structure.insert(id.clone());
                }
                true
            }
            _ => {
                self.content.remove(id);
                self.measured.remove(id);
                self.structure.insert(id.clone());
                true
            }
        }
    }
}

fn same_structure(a: &Node, b: &Node) -> bool {
    a.id == b.id
        && a.topology == b.topology
        && a.adjacency == b.adjacency
        && a.children == b.children
}

/// What changed in a merged report since the last update.
#[derive(Debug, Clone, Default)]
pub struct ReportChanges {
    /// Anything may have changed (the first update, or a change nothing else
    /// describes).
    pub all: bool,
    /// Node IDs added, removed or changed, by topology ([`TopologyKind::index`]).
    pub nodes: Vec<FastSet<Str>>,
    /// Those of them whose only change is the time of `latest` values (a full report
    /// repeating what the last one said), by topology.
    pub stamped: Vec<FastSet<Str>>,
    /// Those of them whose only change is their metrics (and the times of values): new
    /// samples, by topology. Includes the stamped ones.
    pub measured: Vec<FastSet<Str>>,
    /// Addresses whose DNS record changed.
    pub dns: FastSet<Str>,
    /// Whether any topology's presentation, templates or controls changed (views do
    /// not depend on them; summaries do).
    pub presentation: bool,
}

impl ReportChanges {
    pub fn new() -> Self {
        ReportChanges {
            nodes: vec![FastSet::default(); rescope_report::topology::TOPOLOGY_COUNT],
            stamped: vec![FastSet::default(); rescope_report::topology::TOPOLOGY_COUNT],
            measured: vec![FastSet::default(); rescope_report::topology::TOPOLOGY_COUNT],
            ..ReportChanges::default()
        }
    }

    pub fn everything() -> Self {
        ReportChanges {
            all: true,
            ..ReportChanges::new()
        }
    }

    /// Notes that node `id` of topology `kind` changed.
    pub fn node(&mut self, kind: TopologyKind, id: &Str) {
        self.grow();
        self.nodes[kind.index()].insert(id.clone());
        self.stamped[kind.index()].remove(id);
        self.measured[kind.index()].remove(id);
    }

    /// Notes that node `id` of topology `kind` changed in the times of its `latest`
    /// values only (unless it changed otherwise too).
    pub fn stamp(&mut self, kind: TopologyKind, id: &Str) {
        self.grow();
        if self.nodes[kind.index()].insert(id.clone()) {
            self.stamped[kind.index()].insert(id.clone());
            self.measured[kind.index()].insert(id.clone());
        }
    }

    /// Notes that node `id` of topology `kind` changed in its metrics (and the times of
    /// its values) only, unless it changed otherwise too.
    pub fn measure(&mut self, kind: TopologyKind, id: &Str) {
        self.grow();
        let i = kind.index();
        if self.nodes[i].insert(id.clone()) {
            self.measured[i].insert(id.clone());
        } else {
            // Changed before in this batch: measured only if it was then too.
            self.stamped[i].remove(id);
        }
    }

    fn grow(&mut self) {
        let n = rescope_report::topology::TOPOLOGY_COUNT;
        if self.nodes.len() < n {
            self.nodes.resize(n, FastSet::default());
        }
        if self.stamped.len() < n {
            self.stamped.resize(n, FastSet::default());
        }
        if self.measured.len() < n {
            self.measured.resize(n, FastSet::default());
        }
    }

    /// The changed nodes of one topology.
    pub fn of(&self, kind: TopologyKind) -> Changes {
        Changes {
            all: self.all,
            structure: self.nodes.get(kind.index()).cloned().unwrap_or_default(),
            ..Changes::default()
        }
    }

    fn touches(&self, kind: TopologyKind) -> bool {
        self.all || self.nodes.get(kind.index()).is_some_and(|s| !s.is_empty())
    }

    pub fn is_empty(&self) -> bool {
        !self.all
            && !self.presentation
            && self.dns.is_empty()
            && self.nodes.iter().all(FastSet::is_empty)
    }

    /// Adds `other`'s changes.
    pub fn merge(&mut self, mut other: ReportChanges) {
        self.all |= other.all;
        self.presentation |= other.presentation;
        self.grow();
        other.grow();
        self.dns.extend(std::mem::take(&mut other.dns));
        for (i, theirs) in other.nodes.into_iter().enumerate() {
            let kind = TopologyKind::ALL[i];
            for id in theirs {
                if other.stamped[i].contains(&id) {
                    if self.nodes[i].contains(&id) {
                        self.stamped[i].remove(&id);
                    } else {
                        self.stamp(kind, &id);
                    }
                } else if other.measured[i].contains(&id) {
                    self.measure(kind, &id);
                } else {
                    self.node(kind, &id);
                }
            }
        }
    }
}

/// A relation from each node to a list of others (the targets of its edges, or the
/// outputs an input goes to), kept both ways: `S` holds the nodes related to one.
#[derive(Debug, Default)]
struct Relation<S> {
    out: FastMap<Str, Vec<Str>>,
    into: FastMap<Str, S>,
}

/// The set [`Relation`] keeps the other way.
trait Sources: Default {
    fn add(&mut self, x: Str);
    /// Takes `x` out; true if none are left.
    fn take(&mut self, x: &Str) -> bool;
}

/// [`Sources`] for sets with `insert`, `remove` and `is_empty`.
macro_rules! sources {
    ($($set:ty),*) => {$(
        impl Sources for $set {
            fn add(&mut self, x: Str) {
                self.insert(x);
            }
            fn take(&mut self, x: &Str) -> bool {
                self.remove(x);
                self.is_empty()
            }
        }
    )*};
}

sources!(FastSet<Str>, BTreeSet<Str>);

impl<S: Sources> Relation<S> {
    fn clear(&mut self) {
        self.out.clear();
        self.into.clear();
    }

    /// Relates `x` to `new` (to nothing when empty); what it was related to before, if
    /// that changed.
    fn replace(&mut self, x: &Str, new: Vec<Str>) -> Option<Vec<Str>> {
        // Most calls leave the relation as it was: look before copying anything.
        let old = match self.out.get_mut(x) {
            Some(cur) if *cur == new => return None,
            Some(_) if new.is_empty() => self.out.remove(x).unwrap_or_default(),
            Some(cur) => std::mem::replace(cur, new),
            None if new.is_empty() => return None,
            None => {
                self.out.insert(x.clone(), new);
                Vec::new()
            }
        };
        for t in &old {
            if self.into.get_mut(t).is_some_and(|r| r.take(x)) {
                self.into.remove(t);
            }
        }
        for t in self.out.get(x).map_or(&[][..], Vec::as_slice) {
            match self.into.get_mut(t) {
                Some(r) => r.add(x.clone()),
                None => self.into.entry(t.clone()).or_default().add(x.clone()),
            }
        }
        Some(old)
    }

    /// What `x` is related to.
    fn of(&self, x: &str) -> &[Str] {
        self.out.get(x).map_or(&[], Vec::as_slice)
    }
}

/// Edges of a collection's nodes: targets, and the nodes pointing at each.
type Edges = Relation<FastSet<Str>>;

impl Edges {
    /// Sets the targets of `x`'s edges; true if they changed.
    fn set(&mut self, x: &Str, new: Vec<Str>) -> bool {
        self.replace(x, new).is_some()
    }

    /// The nodes with an edge to `target`.
    fn pointing_at(&self, target: &str) -> impl Iterator<Item = &Str> {
        self.into.get(target).into_iter().flatten()
    }
}

fn targets(node: Option<&Node>) -> Vec<Str> {
    node.map(|n| n.adjacency.iter().cloned().collect())
        .unwrap_or_default()
}

/// Which outputs each input goes to, and which inputs make up each output (in input
/// order, which is the order a full render visits them in).
type Routing = Relation<BTreeSet<Str>>;

impl Routing {
    /// Sets the outputs of input `x` (none when it is gone); outputs it joins or
    /// leaves go to `dirty`. True if they changed.
    fn route(&mut self, x: &Str, new: Vec<Str>, dirty: &mut FastSet<Str>) -> bool {
        match self.replace(x, new) {
            Some(old) => {
                dirty.extend(old);
                dirty.extend(self.of(x).iter().cloned());
                true
            }
            None => false,
        }
    }

    /// The inputs that make up output `y`.
    fn members(&self, y: &str) -> Option<&BTreeSet<Str>> {
        self.into.get(y)
    }
}

/// How many edges from other nodes point at each node, to tell which nodes are
/// connected (`color_connected`).
#[derive(Debug, Default)]
struct Coloring {
    incoming: FastMap<Str, u32>,
}

impl Coloring {
    /// Accounts for node `y`'s edges going from `old` to `new`; nodes whose incoming
    /// count starts or stops being zero go to `touched`.
    fn update(
        &mut self,
        y: &Str,
        old: Option<&Node>,
        new: Option<&Node>,
        touched: &mut FastSet<Str>,
    ) {
        let empty = rescope_report::StringSet::new();
        let old = old.map_or(&empty, |n| &n.adjacency);
        let new = new.map_or(&empty, |n| &n.adjacency);
        if old == new {
            return;
        }
        for t in old.iter() {
            if t != y && !new.contains(t) {
                let gone = match self.incoming.get_mut(t) {
                    Some(c) => {
                        *c -= 1;
                        *c == 0
                    }
                    None => false,
                };
                if gone {
                    self.incoming.remove(t);
                    touched.insert(t.clone());
                }
            }
        }
        for t in new.iter() {
            if t != y && !old.contains(t) {
                let c = self.incoming.entry(t.clone()).or_insert(0);
                *c += 1;
                if *c == 1 {
                    touched.insert(t.clone());
                }
            }
        }
    }

    fn connected(&self, y: &Str, n: &Node) -> bool {
        n.adjacency.iter().any(|t| t != y) || self.incoming.contains_key(y)
    }
}

/// A step's output. Shared with render contexts between updates (see
/// [`LiveViews::context`]); an update copies it only if a context still holds it.
type Out = Arc<Rendered>;

/// Rebuilds the `dirty` outputs with `build`, colours them if asked, stores them and
/// says what changed.
fn settle(
    out: &mut Out,
    coloring: Option<&mut Coloring>,
    now: GoTime,
    dirty: FastSet<Str>,
    build: &dyn Fn(&Str, Option<&Node>) -> Option<Node>,
) -> Changes {
    let mut built: FastMap<Str, Option<Node>> = dirty
        .into_iter()
        .map(|y| {
            let n = build(&y, out.nodes.get(&y));
            (y, n)
        })
        .collect();
    if let Some(c) = coloring {
        let mut touched = FastSet::default();
        for (y, new) in &built {
            c.update(y, out.nodes.get(y), new.as_ref(), &mut touched);
        }
        for t in touched {
            if !built.contains_key(&t) && out.nodes.contains_key(&t) {
                let n = build(&t, None);
                built.insert(t, n);
            }
        }
        for (y, n) in built.iter_mut() {
            if let Some(n) = n
                && c.connected(y, n)
            {
                n.set_latest("is_connected", now, "true");
            }
        }
    }
    let mut changes = Changes::default();
    if built.is_empty() {
        return changes;
    }
    let nodes = &mut Arc::make_mut(out).nodes;
    for (y, new) in built {
        changes.record(&y, nodes.get(&y), new.as_ref());
        match new {
            Some(n) => {
                nodes.insert(y, n);
            }
            None => {
                nodes.remove(&y);
            }
        }
    }
    changes
}

/// Incremental [`Mapper::apply`].
#[derive(Debug, Default)]
struct MapStep {
    routing: Routing,
    edges: Edges,
    out: Out,
    coloring: Option<Coloring>,
}

impl MapStep {
    fn update(&mut self, m: &Mapper<'_>, input: &Nodes, changes: &Changes) -> Changes {
        let mut dirty = FastSet::default();
        let mut rerouted = Vec::new();
        let xs: Vec<Str> = if changes.all {
            self.routing.clear();
            self.edges.clear();
            dirty.extend(self.out.nodes.keys().cloned());
            input.keys().cloned().collect()
        } else {
            changes.ids().cloned().collect()
        };
        for x in &xs {
            let node = input.get(x);
            let ids: Vec<Str> = node
                .map(|n| (m.route)(n).into_iter().map(|(y, _)| y).collect())
                .unwrap_or_default();
            // Outputs that adopt `x` as a child depend on its structure only; outputs it
            // passes through to, and outputs that merge it (no children), on all of it.
            let structural = changes.all || changes.structure.contains(x) || !m.add_children;
            if self.routing.route(x, ids.clone(), &mut dirty) {
                rerouted.push(x.clone());
            } else if structural {
                dirty.extend(ids);
            } else if ids.iter().any(|y| y == x) {
                dirty.insert(x.clone());
            }
            if m.remap_edges {
                self.edges.set(x, targets(node));
            }
        }
        if m.remap_edges {
            for z in &rerouted {
                for r in self.edges.pointing_at(z) {
                    dirty.extend(self.routing.of(r).iter().cloned());
                }
            }
        }
        let routing = &self.routing;
        let build = |y: &Str, _: Option<&Node>| build_mapped(m, input, routing, y);
        settle(&mut self.out, self.coloring.as_mut(), m.now, dirty, &build)
    }
}

/// Output `y` of a mapper, as [`Mapper::apply`] builds it.
fn build_mapped(m: &Mapper<'_>, input: &Nodes, routing: &Routing, y: &Str) -> Option<Node> {
    let members = routing.members(y)?;
    let mut node: Option<Node> = None;
    for xid in members {
        let Some(x) = input.get(xid) else { continue };
        for (yid, mut fresh) in (m.route)(x) {
            if yid != *y {
                continue;
            }
            if m.remap_edges {
                // As in `Mapper::apply`: edges come only from the join below.
                fresh.adjacency = Default::default();
            }
            let passing = yid == *xid;
            match node.as_mut() {
                Some(n) if !m.add_children || passing => n.merge_from(&fresh),
                Some(_) => {}
                None => node = Some(fresh),
            }
            if m.add_children
                && !passing
                && let Some(n) = node.as_mut()
            {
                add_child(n, x, m.with_children, m.now);
            }
        }
    }
    let mut node = node?;
    if m.remap_edges {
        for xid in members {
            let Some(x) = input.get(xid) else { continue };
            for z in x.adjacency.iter() {
                for w in routing.of(z) {
                    node.adjacency.insert(w.clone());
                }
            }
        }
    }
    Some(node)
}

/// The stub topologies (see [`crate::pipeline::child_copy`]) by index.
fn stub_index(topology: &str) -> Option<usize> {
    [
        TopologyKind::Endpoint,
        TopologyKind::Process,
        TopologyKind::Container,
        TopologyKind::ContainerImage,
    ]
    .iter()
    .position(|k| k.name() == topology)
}

fn stub_topology(i: usize) -> &'static str {
    [
        TopologyKind::Endpoint,
        TopologyKind::Process,
        TopologyKind::Container,
        TopologyKind::ContainerImage,
    ][i]
        .name()
}

/// What one input adds to each output it is grouped into: itself as a child (and a
/// count), its children, and its edges.
#[derive(Debug, Clone, Default, PartialEq)]
struct Contribution {
    topology: Str,
    /// Whether the additive form applies: the input, and every child it brings, is
    /// kept as a stub under its own ID.
    regular: bool,
    /// Children it brings (with `with_children`; shared with the input node).
    children: rescope_report::Children,
    /// Targets of its edges (with `remap_edges`).
    targets: rescope_report::StringSet,
}

impl Contribution {
    fn of(xid: &Str, x: &Node, m: &Mapper<'_>) -> Self {
        let mut regular = stub_index(&x.topology).is_some() && x.id == *xid;
        let children = if m.with_children {
            for (cid, c) in x.children.iter() {
                regular &= stub_index(&c.topology).is_some() && c.id == *cid;
            }
            x.children.clone()
        } else {
            Default::default()
        };
        let targets = if m.remap_edges {
            x.adjacency.clone()
        } else {
            Default::default()
        };
        Contribution {
            topology: x.topology.clone(),
            regular,
            children,
            targets,
        }
    }

    /// The stub topology of each child it brings.
    fn children(&self) -> impl Iterator<Item = (&Str, usize)> {
        self.children
            .iter()
            .map(|(cid, c)| (cid, stub_index(&c.topology).unwrap_or(0)))
    }

    /// Whether the input counts towards `count_<topology>` (as `add_child` counts).
    fn counted(&self) -> bool {
        !self.topology.is_empty() && self.topology != TopologyKind::Endpoint.name()
    }
}

/// Walks two sorted sequences, calling `f` with what only the old one has (`false`)
/// and what only the new one has (`true`).
fn sorted_diff<'a, T: Ord + 'a>(
    old: impl Iterator<Item = T>,
    new: impl Iterator<Item = T>,
    mut f: impl FnMut(T, bool),
) {
    let (mut a, mut b) = (old.peekable(), new.peekable());
    loop {
        match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => match x.cmp(y) {
                std::cmp::Ordering::Less => {
                    if let Some(x) = a.next() {
                        f(x, false);
                    }
                }
                std::cmp::Ordering::Greater => {
                    if let Some(y) = b.next() {
                        f(y, true);
                    }
                }
                std::cmp::Ordering::Equal => {
                    a.next();
                    b.next();
                }
            },
            (Some(_), None) => {
                if let Some(x) = a.next() {
                    f(x, false);
                }
            }
            (None, Some(_)) => {
                if let Some(y) = b.next() {
                    f(y, true);
                }
            }
            (None, None) => break,
        }
    }
}

/// The sums an output of a grouping step is made of.
#[derive(Debug, Default)]
struct Group {
    /// Inputs accounted as members.
    members: FastSet<Str>,
    /// Children brought by members, by stub topology.
    children: FastMap<Str, [u32; 4]>,
    /// Child IDs brought with more than one topology.
    clash: u32,
    /// IDs that are both a member and a child brought by a member.
    overlap: u32,
    /// Members whose contribution is not regular.
    irregular: u32,
    /// Edge targets, with how many member edges lead to each.
    edges: FastMap<Str, u32>,
    /// Members by topology.
    counts: FastMap<Str, u32>,
}

impl Group {
    /// Whether the output must be built the general way ([`build_mapped`]): a member
    /// passes through to it, or the sums do not describe it exactly.
    fn general(&self, y: &Str) -> bool {
        self.clash > 0 || self.overlap > 0 || self.irregular > 0 || self.members.contains(y)
    }

    fn child(&mut self, cid: &Str, i: usize, add: bool, recheck: &mut Recheck) {
        let e = self.children.entry(cid.clone()).or_insert([0; 4]);
        let distinct_before = e.iter().filter(|c| **c > 0).count();
        let total_before: u32 = e.iter().sum();
        if add {
            e[i] += 1;
        } else {
            e[i] = e[i].saturating_sub(1);
        }
        let distinct = e.iter().filter(|c| **c > 0).count();
        let total: u32 = e.iter().sum();
        if distinct_before < 2 && distinct >= 2 {
            self.clash += 1;
        } else if distinct_before >= 2 && distinct < 2 {
            self.clash -= 1;
        }
        if (total_before == 0) != (total == 0) {
            if self.members.contains(cid) {
                if total > 0 {
                    self.overlap += 1;
                } else {
                    self.overlap -= 1;
                }
            }
            recheck.children.insert(cid.clone());
        }
        if total == 0 {
            self.children.remove(cid);
        }
    }

    fn edge(&mut self, w: &Str, add: bool, recheck: &mut Recheck) {
        let e = self.edges.entry(w.clone()).or_insert(0);
        if add {
            *e += 1;
            if *e == 1 {
                recheck.edges.insert(w.clone());
            }
        } else {
            *e = e.saturating_sub(1);
            if *e == 0 {
                self.edges.remove(w);
                recheck.edges.insert(w.clone());
            }
        }
    }

    /// Replaces member `x`'s contribution `old` with `new` (same topology and form),
    /// touching only what differs.
    fn account_diff(
        &mut self,
        old: &Contribution,
        new: &Contribution,
        routing: &Routing,
        recheck: &mut Recheck,
    ) {
        if old.children != new.children {
            sorted_diff(old.children(), new.children(), |(cid, i), add| {
                self.child(cid, i, add, recheck)
            });
        }
        if old.targets != new.targets {
            sorted_diff(old.targets.iter(), new.targets.iter(), |z, add| {
                for w in routing.of(z) {
                    self.edge(w, add, recheck);
                }
            });
        }
    }

    /// Adds or removes member `x`'s contribution; edges go to where `routing` sends their
    /// targets.
    fn account(
        &mut self,
        x: &Str,
        c: &Contribution,
        add: bool,
        routing: &Routing,
        recheck: &mut Recheck,
    ) {
        let brought = self
            .children
            .get(x)
            .is_some_and(|e| e.iter().any(|n| *n > 0));
        if add {
            self.members.insert(x.clone());
            self.overlap += u32::from(brought);
            self.irregular += u32::from(!c.regular);
            if c.counted() {
                *self.counts.entry(c.topology.clone()).or_insert(0) += 1;
            }
        } else {
            self.members.remove(x);
            self.overlap -= u32::from(brought);
            self.irregular -= u32::from(!c.regular);
            if c.counted()
                && let Some(n) = self.counts.get_mut(&c.topology)
            {
                *n -= 1;
                if *n == 0 {
                    self.counts.remove(&c.topology);
                }
            }
        }
        recheck.children.insert(x.clone());
        if c.counted() {
            recheck.counts.insert(c.topology.clone());
        }
        for (cid, i) in c.children() {
            self.child(cid, i, add, recheck);
        }
        for z in c.targets.iter() {
            for w in routing.of(z) {
                self.edge(w, add, recheck);
            }
        }
    }
}

/// Which parts of an output to bring up to date.
#[derive(Debug, Default)]
struct Recheck {
    children: FastSet<Str>,
    edges: FastSet<Str>,
    counts: FastSet<Str>,
}

/// Incremental [`Mapper::apply`] for mappers that adopt their inputs as children
/// (grouping): each output is kept as sums of its members' contributions (children,
/// counts, edges), so a member that changes costs what it brings, not what the group
/// holds. Outputs the sums cannot describe exactly (a member passing through, IDs that
/// clash) are built the general way.
#[derive(Debug, Default)]
struct GroupStep {
    routing: Routing,
    edges: Edges,
    contributions: FastMap<Str, Contribution>,
    groups: FastMap<Str, Group>,
    /// Outputs last built the general way.
    general: FastSet<Str>,
    out: Out,
    coloring: Option<Coloring>,
}

impl GroupStep {
    fn colored() -> Self {
        GroupStep {
            coloring: Some(Coloring::default()),
            ..GroupStep::default()
        }
    }

    /// `ids` gives the output IDs `m.route` gives, without building output nodes.
    fn update(
        &mut self,
        m: &Mapper<'_>,
        ids: &dyn Fn(&Node) -> Vec<Str>,
        input: &Nodes,
        changes: &Changes,
    ) -> Changes {
        debug_assert!(m.add_children);
        let mut touched: FastMap<Str, Recheck> = FastMap::default();
        let xs: Vec<Str> = if changes.all {
            let mut xs: FastSet<Str> = self.contributions.keys().cloned().collect();
            xs.extend(input.keys().cloned());
            xs.into_iter().collect()
        } else {
            // New metrics leave routes and what the input brings as they were: only
            // outputs it passes through to, and outputs built the general way, see them
            // (measured inputs are in the input, as every changed-in-content one is).
            let mut xs: Vec<Str> = changes.structure.iter().cloned().collect();
            let measured = |x: &Str| changes.measured.contains(x);
            xs.extend(changes.content.iter().filter(|x| !measured(x)).cloned());
            for x in &changes.measured {
                if changes.structure.contains(x) {
                    continue;
                }
                if !self.contributions.contains_key(x) {
                    xs.push(x.clone());
                    continue;
                }
                for y in self.routing.of(x) {
                    if y == x || self.general.contains(y) {
                        touched.entry(y.clone()).or_default();
                    }
                }
            }
            xs
        };
        // New routes and contributions first; nothing is accounted yet.
        let mut fresh: Vec<(Str, Vec<Str>, Option<Contribution>)> = Vec::with_capacity(xs.len());
        for x in xs {
            let node = input.get(&x);
            let ids: Vec<Str> = node.map(ids).unwrap_or_default();
            // A change of content leaves what the input brings as it was.
            let content_only = !changes.all
                && !changes.structure.contains(&x)
                && node.is_some()
                && self.contributions.contains_key(&x);
            let contribution = if content_only {
                self.contributions.get(&x).cloned()
            } else {
                node.map(|n| Contribution::of(&x, n, m))
            };
            let same = self.routing.of(&x) == ids.as_slice()
                && (content_only || self.contributions.get(&x) == contribution.as_ref());
            // Content alone changed: only outputs it passes through to, and outputs built
            // the general way, depend on it.
            if same {
                for y in &ids {
                    if *y == x || self.general.contains(y) {
                        touched.entry(y.clone()).or_default();
                    }
                }
                continue;
            }
            fresh.push((x, ids, contribution));
        }
        // Inputs that stay in the same outputs and change a little are accounted by
        // the difference, unless an edge of theirs leads to an input that moves.
        let moving: FastSet<&Str> = fresh
            .iter()
            .filter(|(x, ids, _)| self.routing.of(x) != ids.as_slice())
            .map(|(x, _, _)| x)
            .collect();
        let mut diffed: FastSet<Str> = FastSet::default();
        for (x, ids, new) in &fresh {
            let (Some(old), Some(new)) = (self.contributions.get(x), new.as_ref()) else {
                continue;
            };
            if moving.contains(x)
                || old.topology != new.topology
                || old.regular != new.regular
                || old
                    .targets
                    .iter()
                    .chain(new.targets.iter())
                    .any(|z| moving.contains(z))
            {
                continue;
            }
            let routing = &self.routing;
            for y in ids {
                let recheck = touched.entry(y.clone()).or_default();
                self.groups
                    .entry(y.clone())
                    .or_default()
                    .account_diff(old, new, routing, recheck);
            }
            diffed.insert(x.clone());
        }
        drop(moving);
        let fresh: Vec<(Str, Vec<Str>, Option<Contribution>)> = fresh
            .into_iter()
            .filter_map(|(x, ids, c)| {
                if diffed.contains(&x) {
                    // The edges kept are the targets of the contribution kept.
                    let kept = self.contributions.get(&x).map(|c| &c.targets);
                    if m.remap_edges && kept != c.as_ref().map(|c| &c.targets) {
                        let targets = c.as_ref().map(|c| c.targets.iter().cloned().collect());
                        self.edges.set(&x, targets.unwrap_or_default());
                    }
                    if let Some(c) = c {
                        self.contributions.insert(x, c);
                    }
                    None
                } else {
                    Some((x, ids, c))
                }
            })
            .collect();
        // Take out what changed inputs brought, with the routes as they were.
        for (x, _, _) in &fresh {
            let Some(old) = self.contributions.remove(x) else {
                continue;
            };
            let routing = &self.routing;
            for y in routing.of(x) {
                let recheck = touched.entry(y.clone()).or_default();
                self.groups
                    .entry(y.clone())
                    .or_default()
                    .account(x, &old, false, routing, recheck);
            }
        }
        // Route them anew; inputs with edges to rerouted ones see their edges move.
        let mut rerouted: FastMap<Str, Vec<Str>> = FastMap::default();
        let mut ignored = FastSet::default();
        for (x, ids, c) in &fresh {
            let old = self.routing.of(x).to_vec();
            if self.routing.route(x, ids.clone(), &mut ignored) {
                rerouted.insert(x.clone(), old);
            }
            if m.remap_edges {
                self.edges.set(
                    x,
                    c.as_ref()
                        .map(|c| c.targets.iter().cloned().collect())
                        .unwrap_or_default(),
                );
            }
        }
        if m.remap_edges {
            let changed: FastSet<&Str> = fresh.iter().map(|(x, _, _)| x).collect();
            for (z, old) in &rerouted {
                let new = self.routing.of(z).to_vec();
                for r in self.edges.pointing_at(z) {
                    if changed.contains(r) {
                        continue;
                    }
                    for y in self.routing.of(r) {
                        let recheck = touched.entry(y.clone()).or_default();
                        let g = self.groups.entry(y.clone()).or_default();
                        for w in old {
                            g.edge(w, false, recheck);
                        }
                        for w in &new {
                            g.edge(w, true, recheck);
                        }
                    }
                }
            }
        }
        // Add what they bring now.
        for (x, ids, c) in fresh {
            let Some(c) = c else { continue };
            let routing = &self.routing;
            for y in &ids {
                let recheck = touched.entry(y.clone()).or_default();
                self.groups
                    .entry(y.clone())
                    .or_default()
                    .account(&x, &c, true, routing, recheck);
            }
            self.contributions.insert(x, c);
        }
        self.settle(m, input, touched)
    }

    /// Brings the touched outputs up to date: patched from their sums, or built the
    /// general way.
    fn settle(&mut self, m: &Mapper<'_>, input: &Nodes, touched: FastMap<Str, Recheck>) -> Changes {
        let mut changes = Changes::default();
        if touched.is_empty() {
            return changes;
        }
        let mut rebuilt: FastSet<Str> = FastSet::default();
        let mut old_edges: Vec<(Str, Option<rescope_report::StringSet>)> = Vec::new();
        let colored = self.coloring.is_some();
        let nodes = &mut Arc::make_mut(&mut self.out).nodes;
        for (y, recheck) in touched {
            let group = self.groups.get(&y);
            let empty = group.is_none_or(|g| g.members.is_empty());
            if colored {
                old_edges.push((y.clone(), nodes.get(&y).map(|n| n.adjacency.clone())));
            }
            if empty {
                self.groups.remove(&y);
                self.general.remove(&y);
                if let Some(old) = nodes.remove(&y) {
                    changes.record(&y, Some(&old), None);
                }
                continue;
            }
            let Some(g) = group else { continue };
            if g.general(&y) || self.general.contains(&y) {
                let new = build_mapped(m, input, &self.routing, &y);
                changes.record(&y, nodes.get(&y), new.as_ref());
                match new {
                    Some(n) => {
                        nodes.insert(y.clone(), n);
                    }
                    None => {
                        nodes.remove(&y);
                    }
                }
                if g.general(&y) {
                    self.general.insert(y.clone());
                } else {
                    self.general.remove(&y);
                }
                rebuilt.insert(y);
                continue;
            }
            let node = match nodes.get_mut(&y) {
                Some(n) => n,
                None => {
                    let first = g.members.iter().next().and_then(|x| input.get(x));
                    let fresh = first
                        .and_then(|x| (m.route)(x).into_iter().find(|(id, _)| *id == y))
                        .map(|(_, mut n)| {
                            if m.remap_edges {
                                n.adjacency = Default::default();
                            }
                            n
                        })
                        .unwrap_or_else(|| Node::new(y.clone()));
                    nodes.entry(y.clone()).or_insert(fresh)
                }
            };
            let mut structural = false;
            for k in &recheck.children {
                let want = if g.members.contains(k) {
                    self.contributions.get(k).map(|c| c.topology.clone())
                } else {
                    g.children.get(k).and_then(|e| {
                        e.iter()
                            .position(|n| *n > 0)
                            .map(|i| Str::new(stub_topology(i)))
                    })
                };
                match want {
                    Some(t) => {
                        if node
                            .children
                            .get(k)
                            .is_none_or(|c| c.topology != t || c.id != *k)
                        {
                            node.children.insert(
                                k.clone(),
                                Node {
                                    id: k.clone(),
                                    topology: t,
                                    ..Node::default()
                                },
                            );
                            structural = true;
                        }
                    }
                    None => structural |= node.children.remove(k).is_some(),
                }
            }
            for w in &recheck.edges {
                if g.edges.contains_key(w) {
                    structural |= node.adjacency.insert(w.clone());
                } else {
                    structural |= node.adjacency.remove(w);
                }
            }
            let mut content = false;
            for t in &recheck.counts {
                let key = format!("{}{t}", rescope_report::node::COUNTER_PREFIX);
                match g.counts.get(t) {
                    Some(n) => {
                        let v = n.to_string();
                        if node.latest_value(&key).is_none_or(|old| old.as_str() != v) {
                            node.set_latest(&key, m.now, v);
                            content = true;
                        }
                    }
                    None => content |= node.latest.remove(&key).is_some(),
                }
            }
            if structural {
                changes.content.remove(&y);
                changes.structure.insert(y);
            } else if content && !changes.structure.contains(&y) {
                changes.content.insert(y);
            }
        }
        if let Some(c) = self.coloring.as_mut() {
            let mut recolor: FastSet<Str> = FastSet::default();
            for (y, old) in &old_edges {
                let mut touched = FastSet::default();
                let old_node = old.as_ref().map(|a| Node {
                    adjacency: a.clone(),
                    ..Node::default()
                });
                c.update(y, old_node.as_ref(), nodes.get(y), &mut touched);
                recolor.extend(touched);
                recolor.insert(y.clone());
            }
            for y in recolor {
                let Some(node) = nodes.get_mut(&y) else {
                    continue;
                };
                let connected = c.connected(&y, node);
                let was = node.latest.contains_key("is_connected");
                if self.general.contains(&y) && !rebuilt.contains(&y) {
                    // Built the general way: build it again to colour it from scratch.
                    if let Some(mut n) = build_mapped(m, input, &self.routing, &y) {
                        if connected {
                            n.set_latest("is_connected", m.now, "true");
                        }
                        changes.record(&y, Some(node), Some(&n));
                        *node = n;
                    }
                    continue;
                }
                if connected {
                    node.set_latest("is_connected", m.now, "true");
                } else if !self.general.contains(&y) {
                    node.latest.remove("is_connected");
                }
                if was != connected && !changes.structure.contains(&y) {
                    changes.content.insert(y);
                }
            }
        }
        changes
    }
}

/// What changed among the end points, worked out once for every step that maps them.
#[derive(Debug, Default)]
struct EndpointChanges<'a> {
    all: bool,
    /// The changed and rechecked end points, looked up once for every step.
    nodes: FastMap<NodeIx, Option<&'a Node>>,
    /// End points whose edges or unusualness changed: their edge targets and
    /// unusualness before.
    previous: FastMap<NodeIx, (Vec<NodeIx>, bool)>,
    /// End points to route again although they did not change: those pointing at an
    /// end point whose `copy_of` changed (routes to processes depend on it), and
    /// remote ends whose DNS record or local networks changed.
    recheck: FastSet<NodeIx>,
}

/// Where an end point goes (see [`crate::pipeline::map_endpoints`]): a pseudo node for
/// a remote end, else `target`'s answer. True for a pseudo node.
fn endpoint_route(
    report: &Report,
    local: &LocalNetworks,
    target: &dyn Fn(&Str, &Node) -> Option<Str>,
    eid: &Str,
    e: &Node,
) -> Option<(Str, bool)> {
    let pseudo = if e.latest.contains_key(HOST_NODE_ID) {
        None
    } else {
        remote_pseudo_id(eid, e, report, local)
    };
    match pseudo {
        Some(p) => Some((Str::from(p), true)),
        None => target(eid, e).map(|t| (t, false)),
    }
}

/// Edges between end points, by index: the targets of each, and the end points
/// pointing at each.
#[derive(Debug, Default)]
struct EndpointEdges {
    out: IxVec<Vec<NodeIx>>,
    into: IxVec<Vec<NodeIx>>,
}

impl EndpointEdges {
    fn clear(&mut self) {
        self.out.clear();
        self.into.clear();
    }

    /// Sets the targets of `x`'s edges; what they were, if that changed. Targets no
    /// edge leads to any more go to `orphans`.
    fn replace(
        &mut self,
        x: NodeIx,
        new: Vec<NodeIx>,
        orphans: &mut Vec<NodeIx>,
    ) -> Option<Vec<NodeIx>> {
        if *self.out.get(x) == new {
            return None;
        }
        let old = self.out.replace(x, new);
        for t in &old {
            let from = self.into.get_mut(*t);
            if let Some(at) = from.iter().position(|s| *s == x) {
                from.swap_remove(at);
            }
            if from.is_empty() {
                *from = Vec::new();
                orphans.push(*t);
            }
        }
        for t in self.out.get(x) {
            self.into.get_mut(*t).push(x);
        }
        Some(old)
    }

    /// The targets of `x`'s edges.
    fn of(&self, x: NodeIx) -> &[NodeIx] {
        self.out.get(x)
    }

    /// The end points with an edge to `t`.
    fn pointing_at(&self, t: NodeIx) -> &[NodeIx] {
        self.into.get(t)
    }
}

/// What the end point steps know about every end point: its index, its edges, and
/// whether it is unusual (a topology other than `endpoint`, or an ID other than its
/// key: copied as more than a stub, so any change to it changes its output).
#[derive(Debug, Default)]
struct EndpointIndex {
    /// Indexes of the end points and of their edges' targets.
    ids: NodeIds,
    /// Whether each index is an end point of the report (and not only a target).
    present: IxVec<bool>,
    edges: EndpointEdges,
    unusual: IxVec<bool>,
    /// How many are unusual (mostly none: then nothing needs looking up).
    unusual_count: usize,
    /// End points without a host (remote ends, which DNS names and local networks
    /// route), by address.
    hostless: FastMap<Str, FastSet<NodeIx>>,
    /// The end points that are NAT copies: what they are a copy of (`copy_of`).
    copies: FastMap<NodeIx, Str>,
    /// Indexes that may have lost their last use in this update (end points gone,
    /// targets no edge leads to any more): freed after it if nothing uses them.
    orphans: Vec<NodeIx>,
}

impl EndpointIndex {
    fn clear(&mut self) {
        self.ids.clear();
        self.present.clear();
        self.edges.clear();
        self.unusual.clear();
        self.unusual_count = 0;
        self.hostless.clear();
        self.copies.clear();
        self.orphans.clear();
    }

    /// Takes note of end point `eid` as it is now: its index, its edge targets and
    /// unusualness before if either changed, and whether what it is a copy of changed.
    fn set(&mut self, eid: &Str, e: Option<&Node>) -> Noted {
        let x = self.ids.intern(eid);
        let recopied = match e.and_then(|e| e.latest_value(COPY_OF)) {
            Some(c) => self.copies.insert(x, c.clone()).as_ref() != Some(c),
            None => self.copies.remove(&x).is_some(),
        };
        if let Some(ep) = id::parse_endpoint_id(eid) {
            if e.is_some_and(|e| !e.latest.contains_key(HOST_NODE_ID)) {
                match self.hostless.get_mut(ep.ip) {
                    Some(set) => {
                        set.insert(x);
                    }
                    None => {
                        let set = self.hostless.entry(Str::new(ep.ip)).or_default();
                        set.insert(x);
                    }
                }
            } else if let Some(set) = self.hostless.get_mut(ep.ip) {
                set.remove(&x);
                if set.is_empty() {
                    self.hostless.remove(ep.ip);
                }
            }
        }
        let unusual =
            e.is_some_and(|e| e.topology != TopologyKind::Endpoint.name() || e.id != *eid);
        let was = self.unusual.replace(x, unusual);
        match (was, unusual) {
            (false, true) => self.unusual_count += 1,
            (true, false) => self.unusual_count -= 1,
            _ => {}
        }
        self.present.replace(x, e.is_some());
        if e.is_none() {
            self.orphans.push(x);
        }
        let new: Vec<NodeIx> = match e {
            Some(e) => e.adjacency.iter().map(|t| self.ids.intern(t)).collect(),
            None => Vec::new(),
        };
        let previous = match self.edges.replace(x, new, &mut self.orphans) {
            Some(old) => Some((old, was)),
            // The edges stayed as they were.
            None if was != unusual => Some((self.edges.of(x).to_vec(), was)),
            None => None,
        };
        Noted {
            x,
            previous,
            recopied,
        }
    }

    /// Whether end point `eid` is unusual.
    fn is_unusual(&self, eid: &str) -> bool {
        self.unusual_count > 0 && self.ids.get(eid).is_some_and(|x| *self.unusual.get(x))
    }

    /// Frees the indexes nothing uses any more: not an end point of the report, with
    /// no edges from or to it, and not routed by any step (`routed`). Called after
    /// every step has taken in the update, so none holds them.
    fn release(&mut self, routed: impl Fn(NodeIx) -> bool) {
        for x in std::mem::take(&mut self.orphans) {
            if !*self.present.get(x)
                && self.edges.of(x).is_empty()
                && self.edges.pointing_at(x).is_empty()
                && !routed(x)
            {
                self.ids.free(x);
            }
        }
    }
}

/// What [`EndpointIndex::set`] noted of an end point.
struct Noted {
    x: NodeIx,
    /// Its edge targets and unusualness before, if either changed.
    previous: Option<(Vec<NodeIx>, bool)>,
    /// Whether what it is a NAT copy of changed.
    recopied: bool,
}

/// The key that says which end point an end point is a NAT copy of.
const COPY_OF: &str = "copy_of";

/// What the end points mapped to one output add up to.
#[derive(Debug, Default)]
struct Members {
    /// Targets of the members' edges, with how many member edges lead to each.
    edges: FastMap<Str, u32>,
    /// Members copied as more than a stub.
    unusual: u32,
}

/// Which parts of an end point step's output to bring up to date.
#[derive(Debug, Default)]
struct Touch {
    /// Its own node (from the report) changed.
    base: bool,
    children: FastSet<NodeIx>,
    edges: FastSet<Str>,
}

/// Incremental [`crate::pipeline::map_endpoints`]: each output is its node of the
/// report (or a new node) with its end points as children and their edges mapped, and
/// is kept up to date by adding and removing end points and edges. Outputs this does
/// not describe exactly (a report node that brings children or edges of its own,
/// unusual end points) are built the general way.
#[derive(Debug)]
struct EndpointStep {
    kind: TopologyKind,
    /// The output each end point goes to, by its index ([`EndpointIndex`]).
    route: IxVec<Option<Str>>,
    /// The end points that go to each output.
    members: FastMap<Str, FastSet<NodeIx>>,
    outputs: FastMap<Str, Members>,
    /// Outputs last built the general way.
    general: FastSet<Str>,
    out: Out,
    coloring: Option<Coloring>,
}

/// Whether a report node's output is its copy plus its end points: it brings no
/// children, edges or connected mark of its own.
fn plain(n: &Node) -> bool {
    n.adjacency.is_empty() && n.children.is_empty() && !n.latest.contains_key(CONNECTED)
}

impl EndpointStep {
    fn new(kind: TopologyKind, colored: bool) -> Self {
        EndpointStep {
            kind,
            route: IxVec::default(),
            members: FastMap::default(),
            outputs: FastMap::default(),
            general: FastSet::default(),
            out: Out::default(),
            coloring: colored.then(Coloring::default),
        }
    }

    /// Drops every output (the processes view is empty without process nodes).
    fn clear(&mut self) -> Changes {
        self.route.clear();
        self.members.clear();
        self.outputs.clear();
        self.general.clear();
        if let Some(c) = self.coloring.as_mut() {
            c.incoming.clear();
        }
        let old = std::mem::take(&mut Arc::make_mut(&mut self.out).nodes);
        Changes {
            structure: old.into_keys().collect(),
            ..Changes::default()
        }
    }

    /// Whether end point `x` goes to an output.
    fn routes(&self, x: NodeIx) -> bool {
        self.route.get(x).is_some()
    }

    /// Sends end point `x` to output `new` (to none when `None`); where it went
    /// before, if that changed.
    fn reroute(&mut self, x: NodeIx, new: Option<Str>) -> Option<Option<Str>> {
        if *self.route.get(x) == new {
            return None;
        }
        let old = self.route.replace(x, new);
        if let Some(y) = &old
            && let Some(m) = self.members.get_mut(y)
        {
            m.remove(&x);
            if m.is_empty() {
                self.members.remove(y);
            }
        }
        if let Some(y) = self.route.get(x) {
            match self.members.get_mut(y) {
                Some(m) => {
                    m.insert(x);
                }
                None => {
                    self.members.entry(y.clone()).or_default().insert(x);
                }
            }
        }
        Some(old)
    }

    /// Adds or removes what end point `x` brings to output `y`.
    #[allow(clippy::too_many_arguments)]
    fn account(
        outputs: &mut FastMap<Str, Members>,
        route: &IxVec<Option<Str>>,
        touched: &mut FastMap<Str, Touch>,
        y: &Str,
        x: NodeIx,
        targets: &[NodeIx],
        unusual: bool,
        add: bool,
    ) {
        let m = outputs.entry(y.clone()).or_default();
        let t = touched.entry(y.clone()).or_default();
        t.children.insert(x);
        if unusual {
            if add {
                m.unusual += 1;
            } else {
                m.unusual -= 1;
            }
        }
        for z in targets {
            let Some(w) = route.get(*z) else { continue };
            if add {
                let e = m.edges.entry(w.clone()).or_insert(0);
                *e += 1;
                if *e == 1 {
                    t.edges.insert(w.clone());
                }
            } else if let Some(e) = m.edges.get_mut(w) {
                *e = e.saturating_sub(1);
                if *e == 0 {
                    m.edges.remove(w);
                    t.edges.insert(w.clone());
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn update(
        &mut self,
        report: &Report,
        local: &LocalNetworks,
        now: GoTime,
        target: &dyn Fn(&Str, &Node) -> Option<Str>,
        base: &Changes,
        measured: Option<&FastSet<Str>>,
        eps: &EndpointChanges<'_>,
        extra: &FastSet<NodeIx>,
        index: &EndpointIndex,
        all: bool,
    ) -> Changes {
        let endpoints = &report[TopologyKind::Endpoint].nodes;
        let bases = &report[self.kind].nodes;
        let all = all || eps.all || base.all;
        let route = |eid: &Str, e: &Node| endpoint_route(report, local, target, eid, e);
        let mut touched: FastMap<Str, Touch> = FastMap::default();
        // The end points to account again: with their new routes.
        let mut moved: Vec<(NodeIx, Option<Str>)> = Vec::new();
        if all {
            self.route.clear();
            self.members.clear();
            self.outputs.clear();
            for y in self.out.nodes.keys().chain(bases.keys()) {
                touched.entry(y.clone()).or_default().base = true;
            }
            for (eid, e) in endpoints {
                let Some(x) = index.ids.get(eid) else {
                    continue;
                };
                moved.push((x, route(eid, e).map(|(t, _)| t)));
            }
        } else {
            let more = extra
                .iter()
                .filter(|x| !eps.nodes.contains_key(*x))
                .map(|x| (*x, endpoints.get(index.ids.name(*x))));
            for (x, e) in eps.nodes.iter().map(|(x, e)| (*x, *e)).chain(more) {
                let new = e.and_then(|e| route(index.ids.name(x), e)).map(|(t, _)| t);
                if *self.route.get(x) != new || eps.previous.contains_key(&x) {
                    moved.push((x, new));
                }
            }
            // Take out what they brought, as they were: old routes, old edges.
            for (x, _) in &moved {
                let (targets, unusual) = match eps.previous.get(x) {
                    Some((t, u)) => (t.as_slice(), *u),
                    None => (index.edges.of(*x), *index.unusual.get(*x)),
                };
                if let Some(y) = self.route.get(*x) {
                    Self::account(
                        &mut self.outputs,
                        &self.route,
                        &mut touched,
                        y,
                        *x,
                        targets,
                        unusual,
                        false,
                    );
                }
            }
        }
        // Route them anew; end points with edges to moved ones see their edges move.
        let mut rerouted: Vec<(NodeIx, Option<Str>)> = Vec::new();
        for (x, new) in &moved {
            if let Some(old) = self.reroute(*x, new.clone()) {
                rerouted.push((*x, old));
            }
        }
        if !all {
            let accounted: FastSet<NodeIx> = moved.iter().map(|(x, _)| *x).collect();
            for (z, old) in &rerouted {
                let new = self.route.get(*z);
                for r in index.edges.pointing_at(*z) {
                    if accounted.contains(r) {
                        continue;
                    }
                    let Some(y) = self.route.get(*r) else {
                        continue;
                    };
                    let m = self.outputs.entry(y.clone()).or_default();
                    let t = touched.entry(y.clone()).or_default();
                    if let Some(w) = old
                        && let Some(e) = m.edges.get_mut(w)
                    {
                        *e -= 1;
                        if *e == 0 {
                            m.edges.remove(w);
                            t.edges.insert(w.clone());
                        }
                    }
                    if let Some(w) = new {
                        let e = m.edges.entry(w.clone()).or_insert(0);
                        *e += 1;
                        if *e == 1 {
                            t.edges.insert(w.clone());
                        }
                    }
                }
            }
        }
        // Add what they bring now.
        for (x, new) in &moved {
            if let Some(y) = new {
                Self::account(
                    &mut self.outputs,
                    &self.route,
                    &mut touched,
                    y,
                    *x,
                    index.edges.of(*x),
                    *index.unusual.get(*x),
                    true,
                );
            }
        }
        let mut changes = Changes::default();
        if !all {
            // Outputs whose own node changed in its metrics only, and nothing else of
            // them, take the new values in place; the others are settled below.
            let mut remeasured: Vec<&Str> = Vec::new();
            for y in base.ids() {
                if measured.is_some_and(|m| m.contains(y)) && !touched.contains_key(y) {
                    remeasured.push(y);
                } else {
                    touched.entry(y.clone()).or_default().base = true;
                }
            }
            for y in self.remeasure(report, remeasured, &mut changes) {
                touched.entry(y).or_default().base = true;
            }
        }
        let settled = self.settle(report, local, now, target, index, touched, measured, all);
        changes.merge(&settled);
        changes
    }

    /// Copies the metrics and value times of the report's nodes `ys` into their
    /// outputs, which are that node plus what their end points bring (children and
    /// edges, which did not change) and the connected mark, and notes them as measured.
    /// Gives back the outputs this does not describe (built the general way, new, or
    /// whose node brings more than its values), to be settled the usual way.
    fn remeasure(&mut self, report: &Report, ys: Vec<&Str>, changes: &mut Changes) -> Vec<Str> {
        let mut rest = Vec::new();
        if ys.is_empty() {
            return rest;
        }
        let bases = &report[self.kind].nodes;
        let key = Str::new(CONNECTED);
        let nodes = &mut Arc::make_mut(&mut self.out).nodes;
        for y in ys {
            let patchable =
                !self.general.contains(y) && self.outputs.get(y).is_none_or(|m| m.unusual == 0);
            let pair = bases.get(y).filter(|b| plain(b)).zip(nodes.get_mut(y));
            let (Some((b, node)), true) = (pair, patchable) else {
                rest.push(y.clone());
                continue;
            };
            node.metrics = b.metrics.clone();
            let connected = node.latest.get(CONNECTED).cloned();
            node.latest = b.latest.clone();
            if let Some(c) = connected {
                node.latest.insert(key.clone(), c);
            }
            changes.content.insert(y.clone());
            changes.measured.insert(y.clone());
        }
        rest
    }

    /// Output `y` the general way (as `map_endpoints` builds it).
    #[allow(clippy::too_many_arguments)]
    fn build(
        &self,
        report: &Report,
        local: &LocalNetworks,
        now: GoTime,
        target: &dyn Fn(&Str, &Node) -> Option<Str>,
        index: &EndpointIndex,
        y: &Str,
    ) -> Option<Node> {
        let endpoints = &report[TopologyKind::Endpoint].nodes;
        let base_node = report[self.kind].nodes.get(y);
        let Some(members) = self.members.get(y) else {
            return base_node.cloned();
        };
        // In the order the full render visits them.
        let mut names: Vec<&Str> = members.iter().map(|x| index.ids.name(*x)).collect();
        names.sort_unstable();
        let mut node = match base_node {
            Some(b) => b.clone(),
            None => self.fresh(report, local, target, y, names.first().copied())?,
        };
        for eid in names {
            if let Some(e) = endpoints.get(eid) {
                add_child(&mut node, e, false, now);
            }
        }
        for x in members {
            for z in index.edges.of(*x) {
                if let Some(w) = self.route.get(*z) {
                    node.adjacency.insert(w.clone());
                }
            }
        }
        Some(node)
    }

    /// The node made for an output the report has no node for: a pseudo node if its
    /// first end point (`first`, by ID) is a remote end, else a node of this step's
    /// topology.
    fn fresh(
        &self,
        report: &Report,
        local: &LocalNetworks,
        target: &dyn Fn(&Str, &Node) -> Option<Str>,
        y: &Str,
        first: Option<&Str>,
    ) -> Option<Node> {
        let first = first?;
        let pseudo = report[TopologyKind::Endpoint]
            .nodes
            .get(first)
            .and_then(|e| endpoint_route(report, local, target, first, e))
            .is_some_and(|(_, p)| p);
        Some(if pseudo {
            pseudo_node(y)
        } else {
            Node::new(y.clone()).with_topology(self.kind.name())
        })
    }

    /// Brings the touched outputs up to date: patched, or built the general way.
    #[allow(clippy::too_many_arguments)]
    fn settle(
        &mut self,
        report: &Report,
        local: &LocalNetworks,
        now: GoTime,
        target: &dyn Fn(&Str, &Node) -> Option<Str>,
        index: &EndpointIndex,
        touched: FastMap<Str, Touch>,
        measured: Option<&FastSet<Str>>,
        all: bool,
    ) -> Changes {
        let mut changes = Changes::default();
        if touched.is_empty() {
            return changes;
        }
        let bases = &report[self.kind].nodes;
        let endpoint = Str::new(TopologyKind::Endpoint.name());
        let mut rebuilt: FastSet<Str> = FastSet::default();
        // (output, its new node, whether its structure may have changed; `None` for
        // outputs built the general way, to be compared)
        let mut updates: Vec<(Str, Option<Node>, Option<bool>)> = Vec::new();
        // Outputs whose own node changed in its metrics only, and nothing else of them.
        let mut remeasured: FastSet<Str> = FastSet::default();
        // Colouring: incoming edges that started or stopped, and which touched outputs
        // were connected (accounted as each patched output is made, to look it up once).
        let mut recolor: FastSet<Str> = FastSet::default();
        let mut was_connected: FastSet<Str> = FastSet::default();
        let mut accounted: FastSet<Str> = FastSet::default();
        for (y, t) in &touched {
            let base_node = bases.get(y);
            let members = self.members.get(y);
            if members.is_none() {
                self.outputs.remove(y);
            }
            let general = base_node.is_some_and(|b| !plain(b))
                || self.outputs.get(y).is_some_and(|m| m.unusual > 0);
            if all || general || self.general.contains(y) {
                let n = self.build(report, local, now, target, index, y);
                updates.push((y.clone(), n, None));
                if general {
                    self.general.insert(y.clone());
                } else {
                    self.general.remove(y);
                }
                rebuilt.insert(y.clone());
                continue;
            }
            let old = self.out.nodes.get(y);
            if members.is_none() && base_node.is_none() {
                updates.push((y.clone(), None, Some(true)));
                continue;
            }
            // End points accounted again often leave the output as it was (their edges
            // moved elsewhere, or they left and came back): then, with its own node
            // unchanged too, there is nothing to do.
            let m = self.outputs.get(y);
            let child_moves = |o: &Node| {
                t.children.iter().any(|x| {
                    members.is_some_and(|m| m.contains(x))
                        != o.children.contains_key(index.ids.name(*x))
                })
            };
            let edge_moves = |o: &Node| {
                t.edges
                    .iter()
                    .any(|w| m.is_some_and(|m| m.edges.contains_key(w)) != o.adjacency.contains(w))
            };
            if !t.base && old.is_some_and(|o| !child_moves(o) && !edge_moves(o)) {
                continue;
            }
            // The report's node (or a new one), with the children and edges it had.
            let mut structural = old.is_none();
            let mut node = match (old, t.base) {
                (Some(old), false) => old.clone(),
                (old, _) => {
                    let mut n = match base_node {
                        Some(b) => b.clone(),
                        None => match members {
                            Some(m) => {
                                let first = m.iter().map(|x| index.ids.name(*x)).min();
                                match self.fresh(report, local, target, y, first) {
                                    Some(n) => n,
                                    None => continue,
                                }
                            }
                            None => continue,
                        },
                    };
                    if let Some(old) = old {
                        structural |= old.id != n.id || old.topology != n.topology;
                        n.children = old.children.clone();
                        n.adjacency = old.adjacency.clone();
                    }
                    n
                }
            };
            // Structural only if a child or an edge really came or went.
            for x in &t.children {
                let eid = index.ids.name(*x);
                if members.is_some_and(|m| m.contains(x)) {
                    if !node.children.contains_key(eid) {
                        node.children.insert(
                            eid.clone(),
                            Node {
                                id: eid.clone(),
                                topology: endpoint.clone(),
                                ..Node::default()
                            },
                        );
                        structural = true;
                    }
                } else {
                    structural |= node.children.remove(eid).is_some();
                }
            }
            for w in &t.edges {
                if m.is_some_and(|m| m.edges.contains_key(w)) {
                    structural |= node.adjacency.insert(w.clone());
                } else {
                    structural |= node.adjacency.remove(w);
                }
            }
            if t.base && !structural && old.is_some() && measured.is_some_and(|m| m.contains(y)) {
                remeasured.insert(y.clone());
            }
            if !t.base {
                node.latest.remove(CONNECTED);
            }
            if let Some(c) = self.coloring.as_mut() {
                if old.is_some_and(|o| o.latest.contains_key(CONNECTED)) {
                    was_connected.insert(y.clone());
                }
                c.update(y, old, Some(&node), &mut recolor);
                accounted.insert(y.clone());
            }
            updates.push((y.clone(), Some(node), Some(structural)));
        }
        let key = Str::new(CONNECTED);
        let yes = Str::new("true");
        let mark = |n: &mut Node| {
            n.latest.insert(
                key.clone(),
                rescope_report::LatestEntry {
                    timestamp: now,
                    value: yes.clone(),
                },
            );
        };
        if let Some(c) = self.coloring.as_mut() {
            // Colour the outputs touched; those whose incoming edges started or stopped
            // are coloured afterwards.
            for (y, new, _) in &updates {
                if accounted.contains(y) {
                    continue;
                }
                let old = self.out.nodes.get(y);
                if old.is_some_and(|o| o.latest.contains_key(CONNECTED)) {
                    was_connected.insert(y.clone());
                }
                c.update(y, old, new.as_ref(), &mut recolor);
            }
            for (y, new, _) in updates.iter_mut() {
                recolor.remove(y);
                let connected = new.as_ref().is_some_and(|n| c.connected(y, n));
                if let Some(n) = new.as_mut()
                    && connected
                {
                    mark(n);
                }
                if connected != was_connected.contains(y) {
                    remeasured.remove(y);
                }
            }
        }
        let nodes = &mut Arc::make_mut(&mut self.out).nodes;
        for (y, new, structural) in updates {
            let old = match new {
                Some(n) => nodes.insert(y.clone(), n),
                None => nodes.remove(&y),
            };
            match structural {
                None => {
                    changes.record(&y, old.as_ref(), nodes.get(&y));
                }
                Some(true) => {
                    changes.content.remove(&y);
                    changes.structure.insert(y);
                }
                Some(false) => {
                    if !changes.structure.contains(&y) {
                        if remeasured.contains(&y) {
                            changes.measured.insert(y.clone());
                        }
                        changes.content.insert(y);
                    }
                }
            }
        }
        let mut again: Vec<Str> = Vec::new();
        if let Some(c) = self.coloring.as_ref() {
            for y in recolor {
                let Some(node) = nodes.get_mut(&y) else {
                    continue;
                };
                let connected = c.connected(&y, node);
                let general = self.general.contains(&y);
                if general {
                    // Built the general way: built again below, coloured from scratch.
                    again.push(y);
                    continue;
                }
                let had = node.latest.contains_key(CONNECTED);
                if connected && !had {
                    mark(node);
                } else if !connected && had {
                    node.latest.remove(CONNECTED);
                }
                if had != connected && !changes.structure.contains(&y) {
                    changes.measured.remove(&y);
                    changes.content.insert(y);
                }
            }
        }
        for y in again {
            let Some(mut n) = self.build(report, local, now, target, index, &y) else {
                continue;
            };
            if let Some(c) = self.coloring.as_ref()
                && c.connected(&y, &n)
            {
                mark(&mut n);
            }
            let nodes = &mut Arc::make_mut(&mut self.out).nodes;
            let old = nodes.insert(y.clone(), n);
            changes.record(&y, old.as_ref(), nodes.get(&y));
        }
        let _ = rebuilt;
        changes
    }
}

/// The rendered key that marks connected nodes (`color_connected`).
const CONNECTED: &str = "is_connected";

/// Incremental [`crate::pipeline::reduce`]: outputs merged from several inputs.
#[derive(Debug, Default)]
struct ReduceStep {
    out: Out,
}

impl ReduceStep {
    fn update(&mut self, parts: &[&Nodes], changes: &[&Changes]) -> Changes {
        let mut dirty: FastSet<Str> = FastSet::default();
        if changes.iter().any(|c| c.all) {
            dirty.extend(self.out.nodes.keys().cloned());
            for p in parts {
                dirty.extend(p.keys().cloned());
            }
        } else {
            for c in changes {
                dirty.extend(c.ids().cloned());
            }
        }
        let build = |y: &Str, _: Option<&Node>| -> Option<Node> {
            let mut node: Option<Node> = None;
            for p in parts {
                if let Some(n) = p.get(y) {
                    match node.as_mut() {
                        Some(acc) => acc.merge_from(n),
                        None => node = Some(n.clone()),
                    }
                }
            }
            node
        };
        settle(&mut self.out, None, GoTime::ZERO, dirty, &build)
    }
}

/// Incremental [`crate::pipeline::filter`] (pseudo nodes always stay): when it removes
/// anything, edges to nodes not kept are removed too.
#[derive(Debug, Default)]
struct FilterStep {
    removed: FastSet<Str>,
    edges: Edges,
    out: Out,
}

impl FilterStep {
    fn update(
        &mut self,
        input: &Nodes,
        changes: &Changes,
        keep: &dyn Fn(&Node) -> bool,
    ) -> Changes {
        let kept = |n: &Node| crate::pipeline::is_pseudo(n) || keep(n);
        let pruned_before = !self.removed.is_empty();
        let mut dirty: FastSet<Str> = FastSet::default();
        let mut presence: Vec<Str> = Vec::new();
        let xs: Vec<Str> = if changes.all {
            self.removed.clear();
            self.edges.clear();
            dirty.extend(self.out.nodes.keys().cloned());
            input.keys().cloned().collect()
        } else {
            changes.ids().cloned().collect()
        };
        for y in &xs {
            let node = input.get(y);
            let now_kept = node.map(kept);
            if now_kept == Some(false) {
                self.removed.insert(y.clone());
            } else {
                self.removed.remove(y);
            }
            if self.out.nodes.contains_key(y) != (now_kept == Some(true)) {
                presence.push(y.clone());
            }
            self.edges.set(y, targets(node));
            dirty.insert(y.clone());
        }
        let prune = !self.removed.is_empty();
        if prune != pruned_before {
            dirty.extend(input.keys().cloned());
        } else if prune {
            for t in &presence {
                dirty.extend(self.edges.pointing_at(t).cloned());
            }
        }
        self.out_filtered(self.removed.len());
        let removed = &self.removed;
        let build = |y: &Str, _: Option<&Node>| -> Option<Node> {
            let n = input.get(y).filter(|n| kept(n))?;
            let mut n = n.clone();
            if prune {
                let visible = |t: &Str| input.contains_key(t) && !removed.contains(t);
                if n.adjacency.iter().any(|t| !visible(t)) {
                    n.adjacency = n.adjacency.iter().filter(|t| visible(t)).cloned().collect();
                }
            }
            Some(n)
        };
        settle(&mut self.out, None, GoTime::ZERO, dirty, &build)
    }

    fn out_filtered(&mut self, n: usize) {
        if self.out.filtered != n {
            Arc::make_mut(&mut self.out).filtered = n;
        }
    }
}

/// Incremental `with_image_names`: containers with their image's name.
#[derive(Debug, Default)]
struct ImageNamesStep {
    /// Image node ID → containers of that image.
    users: FastMap<Str, FastSet<Str>>,
    image_of: FastMap<Str, Str>,
    out: Out,
}

impl ImageNamesStep {
    fn update(
        &mut self,
        report: &Report,
        base: &Rendered,
        changes: &Changes,
        images: &Changes,
    ) -> Changes {
        let mut dirty: FastSet<Str> = FastSet::default();
        let xs: Vec<Str> = if changes.all || images.all {
            self.users.clear();
            self.image_of.clear();
            dirty.extend(self.out.nodes.keys().cloned());
            base.nodes.keys().cloned().collect()
        } else {
            for i in images.ids() {
                dirty.extend(self.users.get(i).into_iter().flatten().cloned());
            }
            changes.ids().cloned().collect()
        };
        for y in xs {
            let image = base.nodes.get(&y).and_then(views::image_of_container);
            if let Some(old) = self.image_of.remove(&y)
                && let Some(u) = self.users.get_mut(&old)
            {
                u.remove(&y);
                if u.is_empty() {
                    self.users.remove(&old);
                }
            }
            if let Some(i) = image {
                self.users.entry(i.clone()).or_default().insert(y.clone());
                self.image_of.insert(y.clone(), i);
            }
            dirty.insert(y);
        }
        if self.out.filtered != base.filtered {
            Arc::make_mut(&mut self.out).filtered = base.filtered;
        }
        let images = &report[TopologyKind::ContainerImage].nodes;
        let build = |y: &Str, _: Option<&Node>| -> Option<Node> {
            let mut n = base.nodes.get(y)?.clone();
            views::with_image_name(images, &mut n);
            Some(n)
        };
        settle(&mut self.out, None, GoTime::ZERO, dirty, &build)
    }
}

/// Every view of a merged report, kept up to date (see the module documentation).
#[derive(Debug)]
pub struct LiveViews {
    now: GoTime,
    started: bool,
    local: LocalNetworks,
    index: std::collections::HashMap<String, Option<Str>>,
    endpoints: EndpointIndex,
    has_processes: bool,
    processes: EndpointStep,
    by_name: GroupStep,
    containers_from_processes: GroupStep,
    containers_from_addresses: EndpointStep,
    containers_merged: ReduceStep,
    containers_base: FilterStep,
    containers: ImageNamesStep,
    images_from_containers: GroupStep,
    images_merged: ReduceStep,
    images_renamed: MapStep,
    images: FilterStep,
    hostnames_grouped: GroupStep,
    hostnames: FilterStep,
    hosts_from_endpoints: EndpointStep,
    hosts_from_processes: GroupStep,
    hosts_from_containers: GroupStep,
    hosts_from_images: GroupStep,
    hosts: ReduceStep,
    weave: Out,
    /// How long each step of the last update took, and the clock it is measured with.
    timings: Vec<(&'static str, std::time::Duration)>,
    clock: fn() -> std::time::Duration,
}

/// Runs `a` here and `b` on another thread, and gives back both results.
fn both<A: Send, B: Send>(a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B + Send) -> (A, B) {
    std::thread::scope(|s| {
        let b = s.spawn(b);
        let a = a();
        let b = b.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        (a, b)
    })
}

/// How long each step took, by a clock.
struct Laps {
    clock: fn() -> std::time::Duration,
    at: std::time::Duration,
    list: Vec<(&'static str, std::time::Duration)>,
}

impl Laps {
    fn new(clock: fn() -> std::time::Duration) -> Self {
        Laps {
            clock,
            at: clock(),
            list: Vec::new(),
        }
    }

    /// Notes the time since the last lap as `name`'s.
    fn lap(&mut self, name: &'static str) {
        let at = (self.clock)();
        self.list.push((name, at.saturating_sub(self.at)));
        self.at = at;
    }

    /// Starts the next lap now.
    fn restart(&mut self) {
        self.at = (self.clock)();
    }
}

/// Time since the first call (the default clock for timings).
fn monotonic() -> std::time::Duration {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed()
}

/// The views [`LiveViews`] keeps, by API name.
pub const VIEWS: [&str; 7] = [
    "processes",
    "processes-by-name",
    "containers",
    "containers-by-image",
    "containers-by-hostname",
    "hosts",
    "weave",
];

/// Which nodes of each view changed in one update, by view name.
pub type ViewChanges = HashMap<&'static str, Changes>;

impl LiveViews {
    /// Empty views; rendered values are stamped with `now`.
    pub fn new(now: GoTime) -> Self {
        LiveViews {
            now,
            started: false,
            local: LocalNetworks::default(),
            index: std::collections::HashMap::new(),
            endpoints: EndpointIndex::default(),
            has_processes: false,
            processes: EndpointStep::new(TopologyKind::Process, true),
            by_name: GroupStep::colored(),
            containers_from_processes: GroupStep::default(),
            containers_from_addresses: EndpointStep::new(TopologyKind::Container, false),
            containers_merged: ReduceStep::default(),
            containers_base: FilterStep::default(),
            containers: ImageNamesStep::default(),
            images_from_containers: GroupStep::default(),
            images_merged: ReduceStep::default(),
            images_renamed: MapStep::default(),
            images: FilterStep::default(),
            hostnames_grouped: GroupStep::default(),
            hostnames: FilterStep::default(),
            hosts_from_endpoints: EndpointStep::new(TopologyKind::Host, false),
            hosts_from_processes: GroupStep::default(),
            hosts_from_containers: GroupStep::default(),
            hosts_from_images: GroupStep::default(),
            hosts: ReduceStep::default(),
            weave: Out::default(),
            timings: Vec::new(),
            clock: monotonic,
        }
    }

    /// Measures [`LiveViews::timings`] with another clock (a thread's CPU time, say).
    pub fn set_clock(&mut self, clock: fn() -> std::time::Duration) {
        self.clock = clock;
    }

    /// How long each step of the last update took (for benchmarks).
    pub fn timings(&self) -> &[(&'static str, std::time::Duration)] {
        &self.timings
    }

    /// How many end point IDs the end point steps hold an index for, and one past the
    /// highest index (for tests: indexes of end points gone are reused).
    pub fn endpoint_indexes(&self) -> (usize, usize) {
        (self.endpoints.ids.len(), self.endpoints.ids.bound())
    }

    /// The time rendered values are stamped with.
    pub fn now(&self) -> GoTime {
        self.now
    }

    /// Brings every view up to date with `report` (free of part-merged nodes, see
    /// [`crate::prepare`]), given what changed in it since the last update. The first
    /// update renders everything.
    pub fn update(&mut self, report: &Report, rc: &ReportChanges) -> ViewChanges {
        let now = self.now;
        let now_of = self.clock;
        let mut laps = Laps::new(now_of);
        let all = rc.all || !self.started;
        self.started = true;
        let kind = |k: TopologyKind| {
            let mut c = rc.of(k);
            c.all |= all;
            c
        };

        // What every end point step needs: local networks, DNS, edges.
        let mut hostless = false;
        if all
            || rc.touches(TopologyKind::Host)
            || rc.touches(TopologyKind::Overlay)
            || rc.touches(TopologyKind::Service)
        {
            let local = LocalNetworks::of(report);
            if local != self.local {
                self.local = local;
                hostless = true;
            }
        }
        let endpoints = &report[TopologyKind::Endpoint].nodes;
        let mut eps = EndpointChanges::default();
        if all {
            self.endpoints.clear();
            for (eid, e) in endpoints {
                self.endpoints.set(eid, Some(e));
            }
            eps.all = true;
        } else {
            let changed = rc.nodes.get(TopologyKind::Endpoint.index());
            let stamped = rc.stamped.get(TopologyKind::Endpoint.index());
            for eid in changed.into_iter().flatten() {
                // A new time on the same values changes nothing an end point step uses,
                // unless the end point is copied whole.
                if stamped.is_some_and(|s| s.contains(eid)) && !self.endpoints.is_unusual(eid) {
                    continue;
                }
                let e = endpoints.get(eid);
                let noted = self.endpoints.set(eid, e);
                let x = noted.x;
                if let Some(previous) = noted.previous {
                    eps.previous.insert(x, previous);
                }
                eps.nodes.insert(x, e);
                // Only a route to a process looks at the end points an end point points
                // at, and only at what they are copies of.
                if noted.recopied {
                    eps.recheck
                        .extend(self.endpoints.edges.pointing_at(x).iter().copied());
                }
            }
            // Remote ends are routed by DNS names and local networks.
            if hostless {
                for set in self.endpoints.hostless.values() {
                    eps.recheck.extend(set.iter().copied());
                }
            } else {
                for ip in &rc.dns {
                    if let Some(set) = self.endpoints.hostless.get(ip) {
                        eps.recheck.extend(set.iter().copied());
                    }
                }
            }
            let ids = &self.endpoints.ids;
            for x in &eps.recheck {
                if !eps.nodes.contains_key(x) {
                    eps.nodes.insert(*x, endpoints.get(ids.name(*x)));
                }
            }
        }
        let local = &self.local;

        laps.lap("edges");
        // The steps run on two threads, in two rounds. First the processes step here,
        // and the steps that map end points straight onto containers and hosts on the
        // other thread; then the containers chain (with the images and container
        // hostname views, and what hosts take from containers and images) there, and
        // processes by name and hosts from processes here. Hosts are merged last.
        let endpoint_index = &self.endpoints;
        let has_processes = !report[TopologyKind::Process].nodes.is_empty();
        let was_processes = self.has_processes;
        let processes_step = &mut self.processes;
        let processes_round = || {
            let mut laps = Laps::new(now_of);
            let processes = if has_processes {
                let f = |_: &Str, e: &Node| process_of_endpoint(report, e);
                processes_step.update(
                    report,
                    local,
                    now,
                    &f,
                    &kind(TopologyKind::Process),
                    rc.measured.get(TopologyKind::Process.index()),
                    &eps,
                    &FastSet::default(),
                    endpoint_index,
                    all || !was_processes,
                )
            } else {
                processes_step.clear()
            };
            laps.lap("processes");
            (processes, laps.list)
        };
        let index_now = &mut self.index;
        let by_address_step = &mut self.containers_from_addresses;
        let hosts_step = &mut self.hosts_from_endpoints;
        let endpoints_round = || {
            let mut laps = Laps::new(now_of);
            // End points whose container by address may have changed: those under an
            // address or port the index now maps differently.
            let mut readdressed: FastSet<NodeIx> = FastSet::default();
            if all || rc.touches(TopologyKind::Container) {
                let index = container_ip_index(report);
                if index != *index_now {
                    let differs = |k: &String| index_now.get(k) != index.get(k);
                    let keys: Vec<&String> = index
                        .keys()
                        .chain(index_now.keys())
                        .filter(|k| differs(k))
                        .collect();
                    for k in keys {
                        if k.ends_with(';') {
                            // `scope;ip;`: every end point at that address.
                            for (eid, _) in endpoints
                                .range::<str, _>((
                                    std::ops::Bound::Included(k.as_str()),
                                    std::ops::Bound::Unbounded,
                                ))
                                .take_while(|(eid, _)| eid.starts_with(k.as_str()))
                            {
                                readdressed.extend(endpoint_index.ids.get(eid));
                            }
                        } else if endpoints.contains_key(k.as_str()) {
                            readdressed.extend(endpoint_index.ids.get(k.as_str()));
                        }
                    }
                    *index_now = index;
                }
            }
            let index = &*index_now;
            let by_address = |eid: &Str, _: &Node| container_of_endpoint(index, eid);
            let from_addresses = by_address_step.update(
                report,
                local,
                now,
                &by_address,
                &kind(TopologyKind::Container),
                rc.measured.get(TopologyKind::Container.index()),
                &eps,
                &readdressed,
                endpoint_index,
                all,
            );
            laps.lap("containers: end points");
            let f = |_: &Str, e: &Node| host_of_endpoint(e);
            let from_endpoints = hosts_step.update(
                report,
                local,
                now,
                &f,
                &kind(TopologyKind::Host),
                rc.measured.get(TopologyKind::Host.index()),
                &eps,
                &FastSet::default(),
                endpoint_index,
                all,
            );
            laps.lap("hosts: end points");
            (from_addresses, from_endpoints, laps.list)
        };
        let ((processes, processes_laps), (from_addresses, from_endpoints, endpoints_laps)) =
            both(processes_round, endpoints_round);
        self.has_processes = has_processes;
        // Every step has taken in the end points' changes: free the indexes of those
        // gone for good.
        let routed = [
            &self.processes,
            &self.containers_from_addresses,
            &self.hosts_from_endpoints,
        ];
        self.endpoints
            .release(|x| routed.iter().any(|step| step.routes(x)));
        laps.list.extend(processes_laps);
        laps.list.extend(endpoints_laps);
        let p = &self.processes.out.nodes;
        let containers_chain = || {
            let mut laps = Laps::new(now_of);
            let from_processes = self.containers_from_processes.update(
                &group_mapper(now, &container_of_process),
                &container_ids,
                p,
                &processes,
            );
            laps.lap("containers: processes");
            let merged = self.containers_merged.update(
                &[
                    &self.containers_from_processes.out.nodes,
                    &self.containers_from_addresses.out.nodes,
                ],
                &[&from_processes, &from_addresses],
            );
            let base = self.containers_base.update(
                &self.containers_merged.out.nodes,
                &merged,
                &not_deleted,
            );
            let containers = self.containers.update(
                report,
                &self.containers_base.out,
                &base,
                &kind(TopologyKind::ContainerImage),
            );
            let c = &self.containers.out.nodes;
            laps.lap("containers");
            // containers-by-image
            let from_containers = self.images_from_containers.update(
                &group_mapper(now, &image_of),
                &image_ids,
                c,
                &containers,
            );
            let merged = self.images_merged.update(
                &[
                    &report[TopologyKind::ContainerImage].nodes,
                    &self.images_from_containers.out.nodes,
                ],
                &[&kind(TopologyKind::ContainerImage), &from_containers],
            );
            let renamed = self.images_renamed.update(
                &rename_mapper(now, &image_by_name),
                &self.images_merged.out.nodes,
                &merged,
            );
            let images =
                self.images
                    .update(&self.images_renamed.out.nodes, &renamed, &has_container);
            laps.lap("containers-by-image");
            // containers-by-hostname
            let key = "docker_container_hostname";
            let group = id::group_topology(TopologyKind::Container.name(), key);
            let by_hostname = |x: &Node| group_route(x, key, &group);
            let by_hostname_ids = |x: &Node| group_ids(x, key);
            let grouped = self.hostnames_grouped.update(
                &group_mapper(now, &by_hostname),
                &by_hostname_ids,
                c,
                &containers,
            );
            let hostnames =
                self.hostnames
                    .update(&self.hostnames_grouped.out.nodes, &grouped, &has_container);
            laps.lap("containers-by-hostname");
            // what hosts take from containers and images
            let hosts_from_containers = self.hosts_from_containers.update(
                &hosts_mapper(now, true, &hosts_of),
                &host_ids,
                &self.containers_base.out.nodes,
                &base,
            );
            let hosts_from_images = self.hosts_from_images.update(
                &hosts_mapper(now, false, &hosts_of),
                &host_ids,
                &self.images.out.nodes,
                &images,
            );
            laps.lap("hosts: containers, images");
            (
                containers,
                images,
                hostnames,
                hosts_from_containers,
                hosts_from_images,
                laps.list,
            )
        };
        let rest = || {
            let mut laps = Laps::new(now_of);
            // processes-by-name
            let group = id::group_topology(TopologyKind::Process.name(), "name");
            let by_name = |x: &Node| group_route(x, "name", &group);
            let by_name_ids = |x: &Node| group_ids(x, "name");
            let by_name_changes =
                self.by_name
                    .update(&group_mapper(now, &by_name), &by_name_ids, p, &processes);
            laps.lap("processes-by-name");
            let from_processes = self.hosts_from_processes.update(
                &hosts_mapper(now, true, &hosts_of),
                &host_ids,
                p,
                &processes,
            );
            laps.lap("hosts: processes");
            (by_name_changes, from_processes, laps.list)
        };
        let (
            (by_name_changes, from_processes, rest_laps),
            (containers, images, hostnames, from_containers, from_images, chain_laps),
        ) = both(rest, containers_chain);
        laps.list.extend(rest_laps);
        laps.list.extend(chain_laps);
        laps.restart();
        let hosts = self.hosts.update(
            &[
                &self.hosts_from_endpoints.out.nodes,
                &self.hosts_from_processes.out.nodes,
                &self.hosts_from_containers.out.nodes,
                &self.hosts_from_images.out.nodes,
            ],
            &[
                &from_endpoints,
                &from_processes,
                &from_containers,
                &from_images,
            ],
        );

        laps.lap("hosts");
        // weave: small, rendered again whenever the overlay changes
        let mut weave = Changes::default();
        if all || rc.touches(TopologyKind::Overlay) {
            let new = weave_of(report, now);
            for (id, n) in &new {
                weave.record(id, self.weave.nodes.get(id), Some(n));
            }
            for (id, n) in &self.weave.nodes {
                if !new.contains_key(id) {
                    weave.record(id, Some(n), None);
                }
            }
            self.weave = Arc::new(Rendered {
                nodes: new,
                filtered: 0,
            });
        }

        laps.lap("weave");
        self.timings = laps.list;
        ViewChanges::from([
            ("processes", processes),
            ("processes-by-name", by_name_changes),
            ("containers", containers),
            ("containers-by-image", images),
            ("containers-by-hostname", hostnames),
            ("hosts", hosts),
            ("weave", weave),
        ])
    }

    /// A view as rendered so far (before options), by API name. The Kubernetes, ECS
    /// and Swarm views are always empty, as [`crate::render_unfiltered`] renders them.
    pub fn view(&self, name: &str) -> Option<&Rendered> {
        Some(match name {
            "processes" => &self.processes.out,
            "processes-by-name" => &self.by_name.out,
            "containers" => &self.containers.out,
            "containers-by-image" => &self.images.out,
            "containers-by-hostname" => &self.hostnames.out,
            "hosts" => &self.hosts.out,
            "weave" => &self.weave,
            _ => return None,
        })
    }

    /// A render context that serves these views for `report` (the report they were
    /// last updated with). Drop it before the next update, which otherwise copies the
    /// views it still holds.
    pub fn context<'a>(&self, report: &'a Report) -> RenderContext<'a> {
        let views = VIEWS
            .iter()
            .filter_map(|v| {
                let r = match *v {
                    "processes" => &self.processes.out,
                    "processes-by-name" => &self.by_name.out,
                    "containers" => &self.containers.out,
                    "containers-by-image" => &self.images.out,
                    "containers-by-hostname" => &self.hostnames.out,
                    "hosts" => &self.hosts.out,
                    "weave" => &self.weave,
                    _ => return None,
                };
                Some((v.to_string(), r.clone()))
            })
            .collect();
        RenderContext::prerendered(
            report,
            self.now,
            self.local.clone(),
            Prerendered {
                processes: Some(self.processes.out.clone()),
                containers_base: Some(self.containers_base.out.clone()),
                containers: Some(self.containers.out.clone()),
                images: Some(self.images.out.clone()),
                views,
            },
        )
    }
}
