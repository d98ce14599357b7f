//! Golden tests for node details: the host details the real Scope app answered after
//! receiving only one report (testdata/scope/rendered/<input>/host-details-*.json).

use std::collections::BTreeSet;
use std::path::PathBuf;

use rescope_render::{RenderContext, detail};
use rescope_report::{GoTime, Report, codec};
use serde_json::Value;

fn testdata(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/scope")
        .join(rel)
}

fn load(file: &str) -> Report {
    let mut r = codec::decode(&std::fs::read(testdata(file)).expect("fixture")).expect("decodes");
    r.upgrade();
    rescope_render::prepare(&r)
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|x| x[key].as_str().unwrap_or_default().to_string())
        .collect()
}

fn compare(input: &str, golden: &str, node_id: &str) {
    let report = load(input);
    let ctx = RenderContext::new(&report, GoTime::now());
    let ours = detail::details(&ctx, "hosts", node_id, &[]).expect("host is in the view");
    let ours = serde_json::to_value(&ours).expect("serialises");
    let want: Value =
        serde_json::from_slice(&std::fs::read(testdata(golden)).expect("golden")).expect("JSON");
    let want = &want["node"];

    for key in ["id", "label", "labelMinor", "rank", "shape"] {
        assert_eq!(ours[key], want[key], "{key}");
    }
    assert_eq!(ours["controls"], want["controls"], "controls");
    // Metrics with their samples.
    let metric_samples = |v: &Value| -> Vec<(String, usize)> {
        v["metrics"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                (
                    m["id"].as_str().unwrap_or_default().to_string(),
                    m["samples"].as_array().map_or(0, Vec::len),
                )
            })
            .collect()
    };
    assert_eq!(
        metric_samples(&ours),
        metric_samples(want),
        "metrics and sample counts"
    );
    // Children groups: labels, views, columns and the same child nodes.
    let groups = |v: &Value| -> Vec<(String, String, Vec<String>, BTreeSet<String>)> {
        v["children"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|g| {
                (
                    g["label"].as_str().unwrap_or_default().to_string(),
                    g["topologyId"].as_str().unwrap_or_default().to_string(),
                    strings(&g["columns"], "id"),
                    strings(&g["nodes"], "id").into_iter().collect(),
                )
            })
            .collect()
    };
    assert_eq!(groups(&ours), groups(want), "children groups");
    // Child summaries: labels and ranks as Scope showed them inside the details.
    let child_labels = |v: &Value| -> BTreeSet<(String, String, String, String)> {
        v["children"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["nodes"].as_array().cloned().unwrap_or_default())
            .map(|n| {
                let s = |k: &str| n[k].as_str().unwrap_or_default().to_string();
                (s("id"), s("label"), s("labelMinor"), s("rank"))
            })
            .collect()
    };
    let (a, b) = (child_labels(&ours), child_labels(want));
    let only_ours: Vec<_> = a.difference(&b).take(5).collect();
    let only_scope: Vec<_> = b.difference(&a).take(5).collect();
    assert!(
        only_ours.is_empty() && only_scope.is_empty(),
        "child summaries differ:\n ours  {only_ours:?}\n scope {only_scope:?}"
    );
    // Connections: both tables, every row and its metadata.
    type Rows = Vec<(String, String, String, Vec<String>)>;
    let tables = |v: &Value| -> Vec<(String, Vec<String>, Rows)> {
        v["connections"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                let rows = t["connections"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        (
                            r["id"].as_str().unwrap_or_default().to_string(),
                            r["nodeId"].as_str().unwrap_or_default().to_string(),
                            r["label"].as_str().unwrap_or_default().to_string(),
                            strings(&r["metadata"], "value"),
                        )
                    })
                    .collect();
                (
                    t["id"].as_str().unwrap_or_default().to_string(),
                    strings(&t["columns"], "id"),
                    rows,
                )
            })
            .collect()
    };
    let (a, b) = (tables(&ours), tables(want));
    for (ta, tb) in a.iter().zip(b.iter()) {
        let only_ours: Vec<_> = ta.2.iter().filter(|r| !tb.2.contains(r)).collect();
        let only_scope: Vec<_> = tb.2.iter().filter(|r| !ta.2.contains(r)).collect();
        assert!(
            only_ours.is_empty() && only_scope.is_empty(),
            "{} rows differ:\n ours  {only_ours:?}\n scope {only_scope:?}",
            ta.0
        );
    }
    assert_eq!(a, b, "connections");
}

#[test]
fn host_details_of_a_loaded_host_match_scope() {
    compare(
        "published/load-full.msgpack.gz",
        "rendered/load-full/host-details-vm__host__.json",
        "vm;<host>",
    );
}

#[test]
fn host_details_of_scopes_own_report_match_scope() {
    compare(
        "report.json",
        "rendered/report-json/host-details-vagrant-ubuntu-vivid-64__host__.json",
        "vagrant-ubuntu-vivid-64;<host>",
    );
}

#[test]
fn unknown_nodes_and_views_have_no_details() {
    let report = load("published/load-full.msgpack.gz");
    let ctx = RenderContext::new(&report, GoTime::now());
    assert!(detail::details(&ctx, "hosts", "nope;<host>", &[]).is_none());
    assert!(detail::details(&ctx, "no-such-view", "vm;<host>", &[]).is_none());
}
