//! `GET /api/topology`: every view with its options and node counts (§7.2.2).

use serde::Serialize;

use crate::catalog::{self, OptionGroup};
use crate::views::RenderContext;
use crate::{pipeline, select};

/// Node and edge counts of a rendered view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub node_count: usize,
    pub nonpseudo_node_count: usize,
    pub edge_count: usize,
    pub filtered_nodes: usize,
}

/// One entry of the topology list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopologyDesc {
    pub name: &'static str,
    pub rank: i64,
    pub hide_if_empty: bool,
    pub url: String,
    pub options: Option<Vec<OptionGroup>>,
    pub stats: Stats,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sub_topologies: Vec<TopologyDesc>,
}

/// The stats of one view rendered with the query's options.
pub fn stats(ctx: &RenderContext<'_>, view: &str, query: &[(String, String)]) -> Stats {
    let Some(r) = select(ctx, view, query) else {
        return Stats::default();
    };
    let mut stats = Stats {
        filtered_nodes: r.filtered(),
        ..Stats::default()
    };
    for (id, n) in r.nodes() {
        stats.node_count += 1;
        stats.nonpseudo_node_count += usize::from(!pipeline::is_pseudo(n));
        stats.edge_count += r.adjacency(id, n).count();
    }
    stats
}

/// Top-level views sorted by name, each with its sub-views in registration order.
pub fn topology_list(ctx: &RenderContext<'_>, query: &[(String, String)]) -> Vec<TopologyDesc> {
    let all = catalog::views();
    let desc = |v: &catalog::ViewSpec| TopologyDesc {
        name: v.name,
        rank: v.rank,
        hide_if_empty: v.hide_if_empty,
        url: format!("/api/topology/{}", v.id),
        options: v.options.clone(),
        stats: stats(ctx, v.id, query),
        sub_topologies: Vec::new(),
    };
    let mut top: Vec<TopologyDesc> = all
        .iter()
        .filter(|v| v.parent.is_none())
        .map(|v| {
            let mut d = desc(v);
            d.sub_topologies = all
                .iter()
                .filter(|s| s.parent == Some(v.id))
                .map(desc)
                .collect();
            d
        })
        .collect();
    top.sort_by(|a, b| a.name.cmp(b.name));
    top
}
