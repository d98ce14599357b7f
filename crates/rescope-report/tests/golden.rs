//! Golden tests on real Weave Scope data (testdata/scope, copied from the design
//! fixtures): reports a real Scope 1.13 probe published, Scope's own test report in an
//! older format version, and the byte examples of the protocol description.
//!
//! The expected node counts were counted independently with Python's msgpack and json
//! modules, not with this crate.

use std::path::PathBuf;

use rescope_report::codec::{self, Encoding, Format};
use rescope_report::{GoTime, Node, Report, Str, TopologyKind};

fn testdata(rel: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/scope")
        .join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn counts(r: &Report) -> Vec<(&'static str, usize)> {
    r.topologies()
        .filter(|(_, t)| !t.nodes.is_empty())
        .map(|(k, t)| (k.wire_key(), t.nodes.len()))
        .collect()
}

fn assert_round_trips(r: &Report) {
    for format in [Format::Json, Format::Msgpack] {
        for gzip in [false, true] {
            let enc = Encoding { format, gzip };
            let bytes = codec::encode(r, enc);
            let (back, detected) =
                codec::decode_with(&bytes, Default::default()).expect("own output decodes");
            assert_eq!(detected, enc);
            assert!(back == *r, "{enc} round trip changed the report");
        }
    }
}

#[test]
fn published_full_report_under_load_decodes_with_the_right_counts() {
    let bytes = testdata("published/load-full.msgpack.gz");
    let (r, enc) = codec::decode_with(&bytes, Default::default()).expect("decodes");
    assert_eq!(
        enc,
        Encoding {
            format: Format::Msgpack,
            gzip: true
        }
    );
    assert_eq!(
        counts(&r),
        [
            ("Endpoint", 4019),
            ("Process", 442),
            ("Container", 22),
            ("ContainerImage", 1),
            ("Host", 1),
            ("Overlay", 1)
        ]
    );
    assert_eq!(r.window, 3_074_354_690);
    assert_eq!(r.dns.len(), 3);
    assert_eq!(r.id.as_str(), "2413987970757754220");
    // A few facts checked by eye against the Python dump.
    let host = &r[TopologyKind::Host].nodes["vm;<host>"];
    assert_eq!(
        host.latest_value("control_probe_id").map(Str::as_str),
        Some("45522f0c0946eca6")
    );
    assert!(
        host.sets
            .get("local_networks")
            .is_some_and(|s| s.contains("172.17.0.1/16"))
    );
    let process = &r[TopologyKind::Process].nodes["vm;7420"];
    assert_eq!(process.latest_value("ppid").map(Str::as_str), Some("1"));
    let mem = process
        .metrics
        .get("process_memory_usage_bytes")
        .expect("metric");
    assert_eq!(mem.samples.len(), 3);
    assert_eq!(mem.max, 1.8446744073709552e19);
    assert!(r[TopologyKind::Host].controls.contains_key("host_exec"));
    assert_eq!(
        r[TopologyKind::Container].table_templates["docker_env_"]
            .table_type
            .as_str(),
        "property-list"
    );
    assert_round_trips(&r);
}

#[test]
fn every_published_report_decodes_with_the_right_counts() {
    type Case<'a> = (&'a str, &'a [(&'a str, usize)], &'a [&'a str]);
    let cases: [Case; 5] = [
        (
            "idle-full",
            &[
                ("Endpoint", 20),
                ("Process", 100),
                ("Container", 2),
                ("ContainerImage", 1),
                ("Host", 1),
                ("Overlay", 1),
            ],
            &[],
        ),
        (
            "idle-delta",
            &[
                ("Endpoint", 3),
                ("Process", 96),
                ("Container", 2),
                ("Host", 1),
            ],
            &[],
        ),
        (
            "load-delta",
            &[
                ("Endpoint", 2),
                ("Process", 392),
                ("Container", 1),
                ("Host", 1),
            ],
            &[],
        ),
        (
            "load-full",
            &[
                ("Endpoint", 4019),
                ("Process", 442),
                ("Container", 22),
                ("ContainerImage", 1),
                ("Host", 1),
                ("Overlay", 1),
            ],
            &[],
        ),
        (
            "plugin-full",
            &[
                ("Endpoint", 38),
                ("Process", 89),
                ("Container", 2),
                ("ContainerImage", 1),
                ("Host", 1),
                ("Overlay", 1),
            ],
            &["demo"],
        ),
    ];
    for (name, expected, plugins) in cases {
        let r = codec::decode(&testdata(&format!("published/{name}.msgpack.gz")))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(counts(&r), expected, "{name}");
        assert_eq!(
            r.plugins.keys().map(Str::as_str).collect::<Vec<_>>(),
            plugins,
            "{name}"
        );
        assert!(!r.ts.is_zero(), "{name} has a TS");
        assert_round_trips(&r);
    }
}

#[test]
fn a_plugin_spec_from_a_real_probe_keeps_every_field() {
    let r = codec::decode(&testdata("published/plugin-full.msgpack.gz")).expect("decodes");
    let demo = &r.plugins["demo"];
    assert_eq!(demo.label.as_str(), "Demo plugin demo");
    assert_eq!(demo.description.as_str(), "baseline test plugin");
    assert_eq!(demo.interfaces, [Str::new("reporter")]);
    assert_eq!(demo.api_version.as_str(), "1");
    assert_eq!(demo.status.as_str(), "ok");
}

#[test]
fn delta_and_full_merge_into_a_report_with_both() {
    let full = codec::decode(&testdata("published/load-full.msgpack.gz")).expect("decodes");
    let delta = codec::decode(&testdata("published/load-delta.msgpack.gz")).expect("decodes");
    let merged = full.merged(&delta);
    assert!(merged[TopologyKind::Process].nodes.len() >= full[TopologyKind::Process].nodes.len());
    assert_eq!(merged.window, full.window + delta.window);
    for (id, node) in &delta[TopologyKind::Process].nodes {
        let m = &merged[TopologyKind::Process].nodes[id];
        for (metric_id, metric) in node.metrics.iter() {
            let merged_metric = m.metrics.get(metric_id).expect("metric survives");
            for s in &metric.samples {
                assert!(
                    merged_metric.samples.iter().any(|x| x.date == s.date),
                    "{id} {metric_id} sample kept"
                );
            }
        }
    }
}

#[test]
fn scopes_own_older_report_decodes_with_legacy_fields() {
    let r = codec::decode(&testdata("report.json")).expect("decodes");
    // The legacy "Address" topology is not part of the model and is skipped.
    assert_eq!(
        counts(&r),
        [
            ("Endpoint", 97),
            ("Process", 131),
            ("Container", 22),
            ("ContainerImage", 15),
            ("Host", 1),
            ("Overlay", 1)
        ]
    );
    // Default presentation fills in what the old format did not carry.
    assert_eq!(r[TopologyKind::Process].shape.as_str(), "square");
    assert_eq!(r[TopologyKind::Process].label_plural.as_str(), "processes");
    let ep = &r[TopologyKind::Endpoint].nodes[";10.0.2.15;22"];
    assert_eq!(ep.latest_value("procspied").map(Str::as_str), Some("true"));
    assert_round_trips(&r);
}

const EXAMPLE_TIME: [u8; 15] = [
    0x01, 0x00, 0x00, 0x00, 0x0e, 0xdc, 0x0a, 0x7f, 0x40, 0x07, 0x5b, 0xcd, 0x15, 0xff, 0xff,
];

fn example_time() -> GoTime {
    GoTime::parse_rfc3339("2023-06-01T12:00:00.123456789Z").expect("valid")
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn the_documented_report_prefix_is_reproduced_byte_for_byte() {
    // protocol.md §1.3: map16 of 29 entries, "TS" with the 15-byte time, "Endpoint" {}.
    let mut r = Report::empty();
    r.ts = example_time();
    let bytes = codec::to_msgpack(&r);
    let mut expected = vec![0xde, 0x00, 0x1d, 0xa2, b'T', b'S', 0xaf];
    expected.extend_from_slice(&EXAMPLE_TIME);
    expected.extend_from_slice(&[0xa8]);
    expected.extend_from_slice(b"Endpoint");
    expected.push(0x80);
    assert_eq!(hex(&bytes[..expected.len()]), hex(&expected));
    let back = codec::decode(&bytes).expect("decodes");
    assert_eq!(back.ts, example_time());
}

#[test]
fn the_annotated_host_fragment_is_reproduced_byte_for_byte() {
    // protocol.md Appendix A.3.
    let mut r = Report::empty();
    r.id = Str::new("1");
    r[TopologyKind::Host].add_node(Node::new("h;<host>").with_latest("k", example_time(), "v"));
    let bytes = codec::to_msgpack(&r);

    let mut host = vec![0xa4];
    host.extend_from_slice(b"Host");
    host.push(0x84);
    let s = |out: &mut Vec<u8>, text: &str| {
        out.push(0xa0 | text.len() as u8);
        out.extend_from_slice(text.as_bytes());
    };
    s(&mut host, "shape");
    s(&mut host, "circle");
    s(&mut host, "label");
    s(&mut host, "host");
    s(&mut host, "label_plural");
    s(&mut host, "hosts");
    s(&mut host, "nodes");
    host.push(0x81);
    s(&mut host, "h;<host>");
    host.push(0x85);
    s(&mut host, "id");
    s(&mut host, "h;<host>");
    s(&mut host, "sets");
    host.push(0xc0);
    s(&mut host, "latest");
    host.push(0x81);
    s(&mut host, "k");
    host.push(0x82);
    s(&mut host, "timestamp");
    host.push(0xaf);
    host.extend_from_slice(&EXAMPLE_TIME);
    s(&mut host, "value");
    s(&mut host, "v");
    s(&mut host, "parents");
    host.push(0xc0);
    s(&mut host, "children");
    host.push(0xc0);
    let at = bytes.windows(host.len()).position(|w| w == host.as_slice());
    assert!(at.is_some(), "host fragment not found in\n{}", hex(&bytes));

    let mut tail = Vec::new();
    s(&mut tail, "Sampling");
    tail.push(0x82);
    s(&mut tail, "Count");
    tail.push(0x00);
    s(&mut tail, "Total");
    tail.push(0x00);
    s(&mut tail, "Window");
    tail.push(0x00);
    s(&mut tail, "Shortcut");
    tail.push(0xc2);
    s(&mut tail, "Plugins");
    tail.push(0x90);
    s(&mut tail, "ID");
    s(&mut tail, "1");
    assert!(
        bytes.ends_with(&tail),
        "tail differs:\n{}",
        hex(&bytes[bytes.len() - tail.len()..])
    );

    let back = codec::decode(&bytes).expect("decodes");
    assert_eq!(
        back[TopologyKind::Host].nodes["h;<host>"]
            .latest
            .get("k")
            .map(|e| e.timestamp),
        Some(example_time())
    );
}

#[test]
fn strings_of_32_to_255_bytes_use_str16_as_scope_does() {
    let mut r = Report::empty();
    r.id = Str::from("x".repeat(40));
    let bytes = codec::to_msgpack(&r);
    let mut expected = vec![0xda, 0x00, 40];
    expected.extend(std::iter::repeat_n(b'x', 40));
    assert!(bytes.ends_with(&expected));
    assert!(!bytes.contains(&0xd9) || !bytes.windows(2).any(|w| w == [0xd9, 40]));
}

#[test]
fn the_documented_small_json_report_decodes() {
    // protocol.md §2.13 without the elision placeholder.
    let json = r#"{
      "TS": "2023-06-01T12:00:00.123456789Z",
      "Endpoint": {"nodes": {
        ";10.0.0.5;43210": {"id": ";10.0.0.5;43210", "topology": "endpoint", "sets": null,
          "adjacency": [";93.184.216.34;443"],
          "latest": {"host_node_id": {"timestamp": "2023-06-01T12:00:00.123456789Z", "value": "host1;\u003chost\u003e"},
                     "pid": {"timestamp": "2023-06-01T12:00:00.123456789Z", "value": "4242"}},
          "parents": null, "children": null},
        ";93.184.216.34;443": {"id": ";93.184.216.34;443", "topology": "endpoint", "sets": null, "parents": null, "children": null}}},
      "Process": {"shape": "square", "label": "process", "label_plural": "processes",
        "nodes": {"host1;4242": {"id": "host1;4242", "topology": "process", "sets": null,
          "latest": {"name": {"timestamp": "2023-06-01T12:00:00.123456789Z", "value": "nginx"}},
          "parents": {"host": ["host1;<host>"]}, "children": null}},
        "metadata_templates": {"pid": {"id": "pid", "label": "PID", "dataType": "number", "priority": 1.0, "from": "latest"}}},
      "Host": {"shape": "circle", "label": "host", "label_plural": "hosts",
        "nodes": {"host1;<host>": {"id": "host1;<host>", "topology": "host", "sets": {"local_networks": ["10.0.0.0/24"]},
          "latest": {"active_controls": {"timestamp": "2023-06-01T12:00:00.123456789Z", "value": "host_exec"}},
          "metrics": {"host_cpu_usage_percent": {"samples": [{"date": "2023-06-01T12:00:00.123456789Z", "value": 12.5}], "min": 12.5, "max": 100.0}},
          "parents": null, "children": null}},
        "controls": {"host_exec": {"id": "host_exec", "human": "Exec shell", "icon": "fa fa-terminal", "rank": 0}},
        "metric_templates": {"host_cpu_usage_percent": {"id": "host_cpu_usage_percent", "label": "CPU", "format": "percent", "priority": 1.0}}},
      "DNS": {"93.184.216.34": {"forward": ["example.com"]}},
      "Sampling": {"Count": 0, "Total": 0}, "Window": 3000000000, "Shortcut": false,
      "Plugins": [{"id": "iowait", "label": "IOWait", "description": "io wait", "interfaces": ["reporter"], "api_version": "1", "status": "ok"}],
      "ID": "1234567890"
    }"#;
    let r = codec::decode(json.as_bytes()).expect("decodes");
    let ep = &r[TopologyKind::Endpoint].nodes[";10.0.0.5;43210"];
    assert_eq!(
        ep.latest_value("host_node_id").map(Str::as_str),
        Some("host1;<host>")
    );
    assert_eq!(
        r[TopologyKind::Host].nodes["host1;<host>"]
            .active_controls()
            .collect::<Vec<_>>(),
        ["host_exec"]
    );
    assert_eq!(r.window, 3_000_000_000);
    assert!(r.dns["93.184.216.34"].forward.contains("example.com"));
    assert_eq!(
        r[TopologyKind::Process].metadata_templates["pid"].priority,
        1.0
    );
    let out = codec::to_json(&r);
    assert!(out.contains(r#""priority":1.0"#), "integral floats keep .0");
    assert!(out.contains(r#""TS":"2023-06-01T12:00:00.123456789Z""#));
    assert!(out.contains(r#""Window":3000000000"#));
    assert!(out.contains(r#""sets":null"#));
    assert_round_trips(&r);
}

#[test]
fn legacy_controller_plugin_input_becomes_active_controls() {
    // protocol.md Appendix A.4.
    let json = r#"{
      "Plugins": [{"id": "traffic-control", "label": "Traffic", "interfaces": ["reporter", "controller"], "api_version": "1"}],
      "Container": {
        "controls": {"ctrl1": {"id": "ctrl1", "human": "Slow", "icon": "fa fa-clock", "rank": 1}},
        "nodes": {"abc;<container>": {
          "latestControls": {
            "ctrl1": {"timestamp": "2023-06-01T12:00:00Z", "value": {"dead": false}},
            "ctrl2": {"timestamp": "2023-06-01T12:00:00Z", "value": {"dead": true}}},
          "latest": {"tc_latency": {"timestamp": "2023-06-01T12:00:00Z", "value": "10ms"}}}}}
    }"#;
    let r = codec::decode(json.as_bytes()).expect("decodes");
    let node = &r[TopologyKind::Container].nodes["abc;<container>"];
    let ac = node.latest.get("active_controls").expect("converted");
    assert_eq!(ac.value.as_str(), "ctrl1");
    assert_eq!(
        ac.timestamp,
        GoTime::parse_rfc3339("2023-06-01T12:00:00Z").expect("valid")
    );
    assert_eq!(
        r[TopologyKind::Container].shape.as_str(),
        "hexagon",
        "defaults fill in presentation"
    );
}

#[test]
fn legacy_counters_and_dns_typo_are_converted() {
    let json = r#"{"nodes": {"10.0.0.1": {"forward": ["a.example"]}},
      "Host": {"nodes": {"h;<host>": {"counters": {"container": 2}, "latest": {"count_container": {"timestamp": "2020-01-01T00:00:00Z", "value": "1"}}}}}}"#;
    let r = codec::decode(json.as_bytes()).expect("decodes");
    assert!(r.dns["10.0.0.1"].forward.contains("a.example"));
    assert_eq!(
        r[TopologyKind::Host].nodes["h;<host>"]
            .latest_value("count_container")
            .map(Str::as_str),
        Some("3")
    );
}

#[test]
fn keys_are_case_sensitive_and_unknown_keys_are_ignored() {
    let json = r#"{"ts": "garbage", "Window": 5, "window": "also ignored", "FutureField": {"deep": [1, 2, {"x": null}]}}"#;
    let r = codec::decode(json.as_bytes()).expect("decodes");
    assert!(r.ts.is_zero());
    assert_eq!(r.window, 5);
}
