//! `rescope report …` run as a user would: the real binary, real files, stdin.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn rescope(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rescope"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("binary finishes")
}

fn fixture(rel: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/scope")
        .join(rel)
        .display()
        .to_string()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn summary_lists_topologies_and_plugins_of_a_real_report() {
    let out = rescope(
        &[
            "report",
            "summary",
            &fixture("published/plugin-full.msgpack.gz"),
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("gzip-compressed msgpack"), "{s}");
    assert!(s.contains("Endpoint                    38"), "{s}");
    assert!(
        s.contains("demo") && s.contains("Demo plugin demo") && s.contains("ok"),
        "{s}"
    );

    let out = rescope(
        &[
            "report",
            "summary",
            "--json",
            &fixture("published/load-full.msgpack.gz"),
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    assert_eq!(v["total_nodes"], 4486);
    assert_eq!(v["hosts"][0], "vm");
}

#[test]
fn convert_round_trips_through_json_and_msgpack_via_stdin() {
    let original = std::fs::read(fixture("published/load-full.msgpack.gz")).expect("fixture");
    let json = rescope(&["report", "convert", "--to", "json", "-"], Some(&original));
    assert!(json.status.success(), "{}", text(&json.stderr));
    assert_eq!(json.stdout.first(), Some(&b'{'));
    let back = rescope(
        &["report", "convert", "--to", "msgpack", "--gzip", "-"],
        Some(&json.stdout),
    );
    assert!(back.status.success(), "{}", text(&back.stderr));
    let a = rescope_report::codec::decode(&original).expect("decodes");
    let b = rescope_report::codec::decode(&back.stdout).expect("decodes");
    assert_eq!(a, b);
}

#[test]
fn validate_accepts_a_good_plugin_report_and_explains_a_bad_one() {
    let good = br#"{"Plugins": [{"id": "iowait", "label": "IOWait", "interfaces": ["reporter"], "api_version": "1"}],
      "Host": {"metric_templates": {"iowait": {"id": "iowait", "label": "IO Wait", "format": "percent", "priority": 0.1}},
               "nodes": {"vm;<host>": {"metrics": {"iowait": {"samples": [{"date": "2023-06-01T12:00:00Z", "value": 3.2}], "min": 0, "max": 100}}}}}}"#;
    let out = rescope(
        &["report", "validate", "--plugin-id", "iowait", "-"],
        Some(good),
    );
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("0 errors, 0 warnings"));

    let bad = br#"{"Plugins": [{"id": "iowait", "interfaces": ["controller"], "api_version": "2"}],
      "Host": {"nodes": {"vm;<host>": {"id": "other;<host>"}}}}"#;
    let out = rescope(&["report", "validate", "--plugin", "-"], Some(bad));
    assert_eq!(out.status.code(), Some(1));
    let s = text(&out.stdout);
    assert!(
        s.contains("error: Host.nodes.vm;<host>.id: node id \"other;<host>\" differs from its key"),
        "{s}"
    );
    assert!(s.contains("spec must contain a label"), "{s}");
    assert!(
        s.contains("incorrect API version: expected \"1\", got \"2\""),
        "{s}"
    );
    assert!(s.contains("4 errors"), "{s}");
}

#[test]
fn validate_names_the_path_of_a_decoding_error() {
    let doc =
        br#"{"Process": {"nodes": {"h;1": {"latest": {"pid": {"timestamp": "yesterday"}}}}}}"#;
    let out = rescope(&["report", "validate", "-"], Some(doc));
    assert_eq!(out.status.code(), Some(1));
    let s = text(&out.stdout);
    assert!(
        s.contains("invalid JSON at Process.nodes.h;1.latest.pid.timestamp"),
        "{s}"
    );
    assert!(s.contains("\"yesterday\" is not RFC 3339"), "{s}");
}

#[test]
fn unreadable_files_fail_with_a_message_and_exit_code_2() {
    let out = rescope(&["report", "summary", "/nonexistent/report.json"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("reading /nonexistent/report.json"));
    let out = rescope(&["report", "summary", "-"], Some(b"not a report"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("standard input is not a valid report"),
        "{}",
        text(&out.stderr)
    );
}
