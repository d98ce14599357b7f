//! Rendering: pure functions from a merged report to the views Rescope's UI and
//! Scope's HTTP API show (protocol.md §8). No IO.
//!
//! ```
//! use rescope_report::{GoTime, Report};
//! let report = rescope_render::prepare(&Report::empty());
//! let hosts = rescope_render::render(&report, "hosts", &[], GoTime::now()).expect("a known view");
//! assert!(hosts.nodes.is_empty());
//! ```

pub mod catalog;
pub mod detail;
pub mod ids;
pub mod list;
pub mod live;
pub mod pipeline;
pub mod summary;
pub mod views;
pub mod wire;

use std::collections::BTreeMap;

use rescope_report::{GoTime, Report, Str, TopologyKind, id};

pub use pipeline::{Nodes, Rendered};
pub use views::{Prerendered, RenderContext};

/// A copy of `report` without "part-merged" nodes: delta nodes whose full report is
/// gone have no topology and cannot be rendered.
pub fn prepare(report: &Report) -> Report {
    let mut out = report.clone();
    for (_, t) in out.topologies_mut() {
        t.nodes.retain(|_, n| !n.topology.is_empty());
    }
    out
}

fn weave(ctx: &RenderContext<'_>) -> Nodes {
    weave_of(ctx.report, ctx.now)
}

/// The `weave` view: Weave Net peers, and an unmanaged pseudo node per peer nick name
/// for peers without a host.
pub(crate) fn weave_of(report: &Report, now: GoTime) -> Nodes {
    let mut out = Nodes::new();
    for (nid, node) in &report[TopologyKind::Overlay].nodes {
        if nid.starts_with("#docker_peer_") {
            continue;
        }
        if node.latest.contains_key(rescope_report::node::HOST_NODE_ID) {
            out.insert(nid.clone(), node.clone());
        } else {
            let nick = node
                .latest_value("weave_peer_nick_name")
                .map(|s| s.to_string())
                .unwrap_or_else(|| nid.trim_start_matches('#').to_string());
            let pid = Str::from(id::unmanaged_id(&nick));
            let p = out
                .entry(pid.clone())
                .or_insert_with(|| pipeline::pseudo_node(&pid));
            pipeline::add_child(p, node, false, now);
        }
    }
    out
}

/// Renders a view without options (once per context). `None` for an unknown view.
pub fn render_unfiltered(ctx: &RenderContext<'_>, view: &str) -> Option<std::sync::Arc<Rendered>> {
    if let Some(r) = ctx.rendered.borrow().get(view) {
        return Some(r.clone());
    }
    let r = match view {
        "processes" => ctx.processes_rc().clone(),
        "containers" => ctx.containers_rc().clone(),
        "containers-by-image" => ctx.images_rc().clone(),
        _ => std::sync::Arc::new(render_view(ctx, view)?),
    };
    ctx.rendered
        .borrow_mut()
        .insert(view.to_string(), r.clone());
    Some(r)
}

fn render_view(ctx: &RenderContext<'_>, view: &str) -> Option<Rendered> {
    let nodes = match view {
        "processes" => ctx.processes().clone(),
        "processes-by-name" => views::processes_by_name(ctx),
        "containers" => return Some(ctx.containers().clone()),
        "containers-by-hostname" => views::containers_by_hostname(ctx),
        "containers-by-image" => ctx.images().clone(),
        "hosts" => views::hosts(ctx),
        "weave" => weave(ctx),
        // Kubernetes, ECS and Swarm views render only when a probe reports them.
        "pods" | "kube-controllers" | "services" | "ecs-tasks" | "ecs-services"
        | "swarm-services" => Nodes::new(),
        _ => return None,
    };
    Some(Rendered { nodes, filtered: 0 })
}

/// Renders a view and applies the options the query selects (§8.5).
pub fn render_in(
    ctx: &RenderContext<'_>,
    view: &str,
    query: &[(String, String)],
) -> Option<Rendered> {
    let spec = catalog::view(view)?;
    let mut rendered = (*render_unfiltered(ctx, view)?).clone();
    let groups = spec.options.unwrap_or_default();
    rendered.filtered += catalog::apply_options(&mut rendered.nodes, &groups, query);
    Some(rendered)
}

/// A view as a request's options select it: the shared unfiltered render and what the
/// options keep of it. Cheaper than [`render_in`], which copies the kept nodes.
#[derive(Debug, Clone)]
pub struct Selected {
    pub base: std::sync::Arc<Rendered>,
    pub selection: catalog::Selection,
}

impl Selected {
    /// The kept nodes, in ID order.
    pub fn nodes(&self) -> impl Iterator<Item = (&Str, &rescope_report::Node)> {
        self.base
            .nodes
            .iter()
            .filter(|(id, _)| self.selection.keeps(id))
    }

    /// How many nodes the render and the options removed.
    pub fn filtered(&self) -> usize {
        self.base.filtered + self.selection.filtered
    }

    /// The edges of a kept node.
    pub fn adjacency<'a>(
        &'a self,
        id: &'a Str,
        node: &'a rescope_report::Node,
    ) -> impl Iterator<Item = &'a Str> + 'a {
        self.selection.adjacency(&self.base.nodes, id, node)
    }
}

/// Renders a view (once per context) and works out what the query's options keep.
pub fn select(ctx: &RenderContext<'_>, view: &str, query: &[(String, String)]) -> Option<Selected> {
    let spec = catalog::view(view)?;
    let base = render_unfiltered(ctx, view)?;
    let groups = spec.options.unwrap_or_default();
    let selection = catalog::Selection::of(&base.nodes, &groups, query);
    Some(Selected { base, selection })
}

/// Summaries of the nodes a selection keeps, without metric samples (as listings and
/// websockets send them). Equal to [`summaries`] of [`render_in`]'s result.
pub fn selected_summaries(
    selected: &Selected,
    report: &Report,
) -> BTreeMap<Str, wire::NodeSummary> {
    selected
        .nodes()
        .filter_map(|(id, n)| {
            let mut s = summary::summarize(n, report, false)?;
            s.adjacency = selected.adjacency(id, n).cloned().collect();
            Some((id.clone(), s))
        })
        .collect()
}

/// Renders one view of a prepared report.
pub fn render(
    report: &Report,
    view: &str,
    query: &[(String, String)],
    now: GoTime,
) -> Option<Rendered> {
    render_in(&RenderContext::new(report, now), view, query)
}

/// Summaries of rendered nodes, without metric samples (as listings send them).
pub fn summaries(rendered: &Rendered, report: &Report) -> BTreeMap<Str, wire::NodeSummary> {
    rendered
        .nodes
        .iter()
        .filter_map(|(id, n)| summary::summarize(n, report, false).map(|s| (id.clone(), s)))
        .collect()
}
