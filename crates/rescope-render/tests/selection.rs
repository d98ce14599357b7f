//! Views served without copying: what `select` keeps and the summaries and stats built
//! from it must equal the straightforward way — copy the unfiltered view, remove what
//! the options reject, prune edges, drop unconnected pseudo nodes — on real reports
//! and on a small synthetic fleet with cross-host connections.

use std::collections::HashSet;
use std::path::PathBuf;

use rescope_render::pipeline::{Nodes, is_pseudo};
use rescope_render::{RenderContext, catalog, list, render_unfiltered};
use rescope_report::{GoTime, Report, Str, codec, id, synthetic};

fn fixture(rel: &str) -> Report {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/scope")
        .join(rel);
    let mut r = codec::decode(&std::fs::read(path).expect("fixture")).expect("decodes");
    r.upgrade();
    rescope_render::prepare(&r)
}

fn fleet() -> Report {
    let mut merged = Report::empty();
    for r in synthetic::fleet_reports(3, 11, GoTime::now()) {
        merged.merge_from(&r);
    }
    merged.upgrade();
    rescope_render::prepare(&merged)
}

fn prune(nodes: &mut Nodes) {
    let ids: HashSet<Str> = nodes.keys().cloned().collect();
    for n in nodes.values_mut() {
        n.adjacency = n
            .adjacency
            .iter()
            .filter(|t| ids.contains(*t))
            .cloned()
            .collect();
    }
}

/// The options applied step by step on a copy, as Scope describes them.
fn reference(
    nodes: &mut Nodes,
    groups: &[catalog::OptionGroup],
    query: &[(String, String)],
) -> usize {
    let mut removed = 0;
    if !query.is_empty() {
        let before = nodes.len();
        nodes.retain(|_, n| {
            groups.iter().all(|g| {
                let value = query
                    .iter()
                    .find(|(k, _)| k == g.id)
                    .map_or(g.default_value, |(_, v)| v.as_str());
                let values: Vec<&str> = if g.select_type == "union" {
                    value.split(',').collect()
                } else {
                    vec![value]
                };
                let preds: Vec<_> = g
                    .options
                    .iter()
                    .filter(|o| values.contains(&o.value))
                    .collect();
                preds.is_empty() || preds.iter().any(|o| o.predicate.matches(n))
            })
        });
        removed = before - nodes.len();
        if removed > 0 {
            prune(nodes);
        }
    }
    if let Some(inbound) = nodes.get_mut(id::INCOMING_INTERNET_ID) {
        inbound.adjacency.remove(id::OUTGOING_INTERNET_ID);
    }
    let mut linked: HashSet<Str> = HashSet::new();
    for (nid, n) in nodes.iter() {
        for t in n.adjacency.iter() {
            if t != nid {
                linked.insert(nid.clone());
                linked.insert(t.clone());
            }
        }
    }
    let before = nodes.len();
    nodes.retain(|nid, n| !is_pseudo(n) || linked.contains(nid));
    let unlinked = before - nodes.len();
    if unlinked > 0 {
        prune(nodes);
    }
    removed + unlinked
}

fn queries() -> Vec<Vec<(String, String)>> {
    let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    vec![
        q(&[]),
        q(&[("unconnected", "hide")]),
        q(&[("unconnected", "show")]),
        q(&[("system", "all"), ("stopped", "both"), ("pseudo", "show")]),
        q(&[("system", "system")]),
        q(&[("stopped", "stopped"), ("pseudo", "hide")]),
        q(&[("t", "1s")]),
    ]
}

fn check(name: &str, report: &Report) {
    let ctx = RenderContext::new(report, GoTime::now());
    for spec in catalog::views() {
        for query in queries() {
            let base = render_unfiltered(&ctx, spec.id).expect("view");
            let mut expected = base.nodes.clone();
            let groups = spec.options.clone().unwrap_or_default();
            let filtered = reference(&mut expected, &groups, &query) + base.filtered;
            let selected = rescope_render::select(&ctx, spec.id, &query).expect("view");
            let what = format!("{name} {} {query:?}", spec.id);
            let expected_summaries = rescope_render::summaries(
                &rescope_render::Rendered {
                    nodes: expected.clone(),
                    filtered,
                },
                report,
            );
            assert_eq!(
                rescope_render::selected_summaries(&selected, report),
                expected_summaries,
                "{what}: summaries"
            );
            let copied = rescope_render::render_in(&ctx, spec.id, &query).expect("view");
            assert_eq!(copied.nodes, expected, "{what}: render_in");
            assert_eq!(copied.filtered, filtered, "{what}: filtered");
            let stats = list::stats(&ctx, spec.id, &query);
            assert_eq!(stats.node_count, expected.len(), "{what}: node count");
            assert_eq!(
                stats.edge_count,
                expected.values().map(|n| n.adjacency.len()).sum::<usize>(),
                "{what}: edge count"
            );
            assert_eq!(stats.filtered_nodes, filtered, "{what}: filtered count");
        }
    }
}

#[test]
fn selections_equal_filtering_a_copy_on_a_real_loaded_host() {
    check("load-full", &fixture("published/load-full.msgpack.gz"));
}

#[test]
fn selections_equal_filtering_a_copy_on_scopes_own_report() {
    check("report-json", &fixture("report.json"));
}

#[test]
fn selections_equal_filtering_a_copy_on_a_small_fleet() {
    check("fleet", &fleet());
}
