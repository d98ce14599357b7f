//! Golden tests: after receiving only one report, the real Weave Scope app answered
//! every view (testdata/scope/rendered/<input>/<view>.json). Rendering the same report
//! must give the same node IDs, labels, minor labels, ranks, shapes, pseudo and stack
//! flags, edges, metadata rows, parents and metric rows.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rescope_report::{GoTime, Report, codec};
use serde_json::Value;

fn testdata(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/scope")
        .join(rel)
}

fn input(name: &str) -> Report {
    let file = match name {
        "report-json" => "report.json",
        "load-full" => "published/load-full.msgpack.gz",
        other => panic!("unknown input {other}"),
    };
    let mut r = codec::decode(&std::fs::read(testdata(file)).expect("fixture")).expect("decodes");
    r.upgrade();
    rescope_render::prepare(&r)
}

/// The fields compared, normalised: metadata as (id, value), metrics as (id, value).
fn essence(node: &Value) -> BTreeMap<&'static str, Value> {
    let mut out = BTreeMap::new();
    for key in ["id", "label", "labelMinor", "rank", "shape", "tag"] {
        out.insert(
            key,
            node.get(key)
                .cloned()
                .unwrap_or(Value::String(String::new())),
        );
    }
    for key in ["pseudo", "stack"] {
        out.insert(key, node.get(key).cloned().unwrap_or(Value::Bool(false)));
    }
    let list = |key: &str, fields: &[&str]| -> Value {
        let mut items: Vec<Value> = node
            .get(key)
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .map(|item| {
                Value::Array(
                    fields
                        .iter()
                        .map(|f| item.get(*f).cloned().unwrap_or(Value::Null))
                        .collect(),
                )
            })
            .collect();
        items.sort_by_key(|v| v.to_string());
        Value::Array(items)
    };
    let mut adjacency: Vec<String> = node
        .get("adjacency")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    adjacency.sort();
    out.insert("adjacency", Value::from(adjacency));
    out.insert(
        "metadata",
        list("metadata", &["id", "label", "value", "dataType"]),
    );
    out.insert("parents", list("parents", &["id", "label", "topologyId"]));
    out.insert(
        "metrics",
        list("metrics", &["id", "label", "format", "value", "min", "max"]),
    );
    out.insert("tables", list("tables", &["id", "label", "type", "rows"]));
    out
}

fn compare(input_name: &str, view: &str) {
    let expected: Value = serde_json::from_slice(
        &std::fs::read(testdata(&format!("rendered/{input_name}/{view}.json")))
            .expect("golden file"),
    )
    .expect("JSON");
    let expected = expected["nodes"].as_object().expect("nodes");
    let report = input(input_name);
    let rendered = rescope_render::render(&report, view, &[], GoTime::now()).expect("known view");
    let ours =
        serde_json::to_value(rescope_render::summaries(&rendered, &report)).expect("serialises");
    let ours = ours.as_object().expect("object");
    let mut want: Vec<&String> = expected.keys().collect();
    let mut got: Vec<&String> = ours.keys().collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "{input_name}/{view}: node IDs differ");
    let mut mismatches = Vec::new();
    for (nid, node) in expected {
        let (a, b) = (essence(&ours[nid]), essence(node));
        for (field, value) in &b {
            if a.get(field) != Some(value) {
                mismatches.push(format!(
                    "{nid} {field}:\n   ours  {}\n   scope {}",
                    a[field], value
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{input_name}/{view}: {} differences, first:\n{}",
        mismatches.len(),
        mismatches
            .iter()
            .take(6)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

macro_rules! golden {
    ($($name:ident: $input:literal, $view:literal;)*) => {
        $( #[test] fn $name() { compare($input, $view); } )*
    };
}

golden! {
    load_full_hosts: "load-full", "hosts";
    load_full_processes: "load-full", "processes";
    load_full_processes_by_name: "load-full", "processes-by-name";
    load_full_containers: "load-full", "containers";
    load_full_containers_by_image: "load-full", "containers-by-image";
    load_full_containers_by_hostname: "load-full", "containers-by-hostname";
    report_json_hosts: "report-json", "hosts";
    report_json_processes: "report-json", "processes";
    report_json_processes_by_name: "report-json", "processes-by-name";
    report_json_containers: "report-json", "containers";
    report_json_containers_by_image: "report-json", "containers-by-image";
    report_json_containers_by_hostname: "report-json", "containers-by-hostname";
}
