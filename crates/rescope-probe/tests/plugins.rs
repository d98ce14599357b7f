//! The plugin registry against real plugin servers on Unix sockets (protocol.md §6.7).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::OriginalUri;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::routing::get;
use rescope_probe::plugin::{PluginRegistry, PluginSettings};
use rescope_report::{Str, TopologyKind};

/// A plugin server answering `/report` with a fixed status and body, after a delay.
struct Plugin {
    _task: tokio::task::JoinHandle<()>,
    queries: Arc<Mutex<Vec<String>>>,
}

async fn serve(socket: &Path, status: u16, body: String, delay: Duration) -> Plugin {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    let listener = tokio::net::UnixListener::bind(socket).expect("bind socket");
    let queries = Arc::new(Mutex::new(Vec::new()));
    let seen = queries.clone();
    let app = Router::new().route(
        "/report",
        get(move |OriginalUri(uri): OriginalUri, headers: HeaderMap| {
            let body = body.clone();
            let seen = seen.clone();
            async move {
                // The request target exactly as sent (origin form expected) and the Host.
                let host = headers
                    .get("host")
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                seen.lock()
                    .expect("lock")
                    .push(format!("{uri} host={host}"));
                tokio::time::sleep(delay).await;
                (StatusCode::from_u16(status).expect("status"), body)
            }
        }),
    );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Plugin {
        _task: task,
        queries,
    }
}

fn spec_json(id: &str, extra: &str) -> String {
    format!(
        r#"{{"Plugins": [{{"id": "{id}", "label": "{id}", "interfaces": ["reporter"], "api_version": "1"{extra}}}]}}"#
    )
}

fn registry(root: &Path) -> PluginRegistry {
    PluginRegistry::new(PluginSettings::new(root, "probe123"))
}

fn statuses(r: &PluginRegistry) -> Vec<(String, String)> {
    r.specs()
        .into_iter()
        .map(|s| (s.id.to_string(), s.status.to_string()))
        .collect()
}

async fn cycle(r: &PluginRegistry) {
    r.scan();
    r.poll().await;
}

fn tempdir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("plugins");
    (dir, root)
}

#[tokio::test]
async fn a_plugin_is_loaded_and_its_data_merged_with_the_handshake_query() {
    let (_dir, root) = tempdir();
    let body = r#"{"Plugins": [{"id": "iowait", "label": "IOWait", "description": "io wait", "interfaces": ["reporter"], "api_version": "1"}],
      "Host": {"metric_templates": {"iowait": {"id": "iowait", "label": "IO Wait", "format": "percent", "priority": 0.1}},
               "nodes": {"vm;<host>": {"metrics": {"iowait": {"samples": [{"date": "2023-06-01T12:00:00Z", "value": 3.2}], "min": 0, "max": 100}}}}}}"#;
    let p = serve(&root.join("iowait.sock"), 200, body.into(), Duration::ZERO).await;
    let r = registry(&root);
    cycle(&r).await;
    assert_eq!(statuses(&r), [("iowait".into(), "ok".into())]);
    let report = r.report();
    assert_eq!(report.plugins["iowait"].label.as_str(), "IOWait");
    let node = &report[TopologyKind::Host].nodes["vm;<host>"];
    assert_eq!(
        node.id.as_str(),
        "vm;<host>",
        "plugin nodes get their key as ID"
    );
    assert!(node.metrics.contains_key("iowait"));
    assert!(
        report[TopologyKind::Host]
            .metric_templates
            .contains_key("iowait")
    );
    assert_eq!(
        p.queries.lock().expect("lock").as_slice(),
        ["/report?api_version=1&probe_id=probe123 host=plugin"]
    );
}

#[tokio::test]
async fn one_failure_does_not_stop_the_others_and_subdirectories_are_scanned() {
    let (_dir, root) = tempdir();
    let _a = serve(
        &root.join("fail/aFailure.sock"),
        500,
        "Internal Server Error".into(),
        Duration::ZERO,
    )
    .await;
    let _b = serve(
        &root.join("testPlugin.sock"),
        200,
        spec_json("testPlugin", ""),
        Duration::ZERO,
    )
    .await;
    let r = registry(&root);
    cycle(&r).await;
    let specs = r.specs();
    assert_eq!(specs[0].id.as_str(), "aFailure");
    assert_eq!(
        specs[0].status.as_str(),
        "error: plugin returned non-200 status code: 500 Internal Server Error"
    );
    assert_eq!(
        specs[0].label.as_str(),
        "aFailure",
        "the default spec stays"
    );
    assert!(specs[0].interfaces.is_empty());
    assert_eq!(specs[1].status.as_str(), "ok");
}

#[tokio::test]
async fn plugins_appear_on_rescan_and_vanish_when_their_socket_goes() {
    let (_dir, root) = tempdir();
    let r = registry(&root);
    cycle(&r).await;
    assert!(r.specs().is_empty());
    assert!(root.is_dir(), "the plugins root is created");
    let socket = root.join("late.sock");
    let _p = serve(&socket, 200, spec_json("late", ""), Duration::ZERO).await;
    cycle(&r).await;
    assert_eq!(statuses(&r), [("late".into(), "ok".into())]);
    std::fs::remove_file(&socket).expect("rm");
    r.scan();
    assert!(r.specs().is_empty());
    assert!(r.report().plugins.is_empty());
}

#[tokio::test]
async fn erroneous_answers_get_scopes_status_texts() {
    let (_dir, root) = tempdir();
    let cases: Vec<(&str, u16, String, &str)> = vec![
        ("okPlugin", 200, spec_json("okPlugin", ""), "ok"),
        ("non200ResponseCode", 500, spec_json("non200ResponseCode", ""), "error: plugin returned non-200 status code: 500 Internal Server Error"),
        ("noLabel", 200, r#"{"Plugins": [{"id": "noLabel", "interfaces": ["reporter"], "api_version": "1"}]}"#.into(), "error: spec must contain a label"),
        ("noInterface", 200, r#"{"Plugins": [{"id": "noInterface", "label": "x", "interfaces": [], "api_version": "1"}]}"#.into(), "error: spec must implement the \"reporter\" interface"),
        ("wrongApiVersion", 200, r#"{"Plugins": [{"id": "wrongApiVersion", "label": "x", "interfaces": ["reporter"], "api_version": "foo"}]}"#.into(), "error: incorrect API version: expected \"1\", got \"foo\""),
        ("changedID", 200, spec_json("differentID", ""), "error: plugin must not change its id (is \"differentID\", should be \"changedID\")"),
        ("moreThanOnePlugin", 200, r#"{"Plugins": [{"id": "moreThanOnePlugin", "label": "a"}, {"id": "moreThanOnePlugin", "label": "b"}]}"#.into(), "error: report must contain exactly one plugin (found 2)"),
    ];
    let mut servers = Vec::new();
    for (id, status, body, _) in &cases {
        servers.push(
            serve(
                &root.join(format!("{id}.sock")),
                *status,
                body.clone(),
                Duration::ZERO,
            )
            .await,
        );
    }
    let _bad = serve(
        &root.join("nonJSONResponseBody.sock"),
        200,
        "notJSON".into(),
        Duration::ZERO,
    )
    .await;
    let r = registry(&root);
    cycle(&r).await;
    let got: std::collections::BTreeMap<String, String> = statuses(&r).into_iter().collect();
    for (id, _, _, want) in &cases {
        assert_eq!(got[*id], *want, "{id}");
    }
    assert!(
        got["nonJSONResponseBody"].starts_with("error: decoding error: "),
        "{}",
        got["nonJSONResponseBody"]
    );
    let specs: std::collections::BTreeMap<Str, rescope_report::PluginSpec> =
        r.specs().into_iter().map(|s| (s.id.clone(), s)).collect();
    assert_eq!(
        specs["wrongApiVersion"].api_version.as_str(),
        "foo",
        "the adopted spec is kept"
    );
    assert_eq!(
        specs["changedID"].label.as_str(),
        "changedID",
        "the default spec is kept"
    );
    // Only the good plugin contributes data (its spec); the others only their specs.
    assert_eq!(r.report().plugins.len(), cases.len() + 1);
}

#[tokio::test]
async fn oversized_answers_are_cut_off_with_scopes_message() {
    let (_dir, root) = tempdir();
    let long = format!(r#", "description": "{}""#, "x".repeat(129));
    let _p = serve(
        &root.join("foo.sock"),
        200,
        spec_json("foo", &long),
        Duration::ZERO,
    )
    .await;
    let mut settings = PluginSettings::new(&root, "p");
    settings.max_response = 128;
    let r = PluginRegistry::new(settings);
    cycle(&r).await;
    assert_eq!(
        statuses(&r),
        [(
            "foo".into(),
            "error: response must be shorter than 50MB".into()
        )]
    );
}

#[tokio::test]
async fn invalid_socket_names_are_ignored() {
    let (_dir, root) = tempdir();
    let mut servers = Vec::new();
    for name in [
        "testPlugin",
        "P-L-U-G-I-N",
        "another-testPlugin",
        "testPlugin!",
        "test~plugin",
        "testPlugin-",
        "-testPlugin",
    ] {
        servers.push(
            serve(
                &root.join(format!("{name}.sock")),
                200,
                spec_json(name, ""),
                Duration::ZERO,
            )
            .await,
        );
    }
    let r = registry(&root);
    cycle(&r).await;
    let ids: Vec<String> = r.specs().into_iter().map(|s| s.id.to_string()).collect();
    assert_eq!(ids, ["P-L-U-G-I-N", "another-testPlugin", "testPlugin"]);
}

#[tokio::test]
async fn a_hung_plugin_delays_nothing_but_its_own_status() {
    let (_dir, root) = tempdir();
    let _slow = serve(
        &root.join("slow.sock"),
        200,
        spec_json("slow", ""),
        Duration::from_secs(5),
    )
    .await;
    let _fast = serve(
        &root.join("fast.sock"),
        200,
        spec_json("fast", ""),
        Duration::ZERO,
    )
    .await;
    let r = registry(&root);
    r.scan();
    let started = Instant::now();
    r.poll().await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "poll waited {:?}",
        started.elapsed()
    );
    let got: std::collections::BTreeMap<String, String> = statuses(&r).into_iter().collect();
    assert_eq!(got["fast"], "ok");
    assert!(
        got["slow"].starts_with("error: request timed out"),
        "{}",
        got["slow"]
    );
    // The reporter side never waits on plugins.
    let started = Instant::now();
    let _ = r.report();
    assert!(started.elapsed() < Duration::from_millis(100));
}

#[tokio::test]
async fn sockets_in_world_writable_directories_are_refused_unless_allowed() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, root) = tempdir();
    let open = root.join("open");
    let _p = serve(
        &open.join("risky.sock"),
        200,
        spec_json("risky", ""),
        Duration::ZERO,
    )
    .await;
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let r = registry(&root);
    cycle(&r).await;
    let got = statuses(&r);
    assert!(
        got[0].1.starts_with("error: refused: ") && got[0].1.contains("writable by everyone"),
        "{got:?}"
    );
    let mut settings = PluginSettings::new(&root, "p");
    settings.allow_any_owner = true;
    let trusting = PluginRegistry::new(settings);
    cycle(&trusting).await;
    assert_eq!(statuses(&trusting), [("risky".into(), "ok".into())]);
}

#[tokio::test]
async fn a_new_plugin_is_listed_within_a_second_while_running() {
    let (_dir, root) = tempdir();
    let r = registry(&root);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(r.clone().run(Duration::from_millis(250), shutdown));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _p = serve(
        &root.join("quick.sock"),
        200,
        spec_json("quick", ""),
        Duration::ZERO,
    )
    .await;
    let appeared = Instant::now();
    while r.specs().iter().all(|s| s.status.as_str() != "ok") {
        assert!(
            appeared.elapsed() < Duration::from_secs(1),
            "not listed within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(true);
}

#[tokio::test]
async fn directory_events_find_and_drop_plugins_without_waiting_for_the_rescan() {
    let (_dir, root) = tempdir();
    let r = registry(&root);
    let changes = r.change_notify();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    // The periodic rescan is an hour away: only the directory watcher can see anything.
    tokio::spawn(r.clone().run(Duration::from_secs(3600), shutdown));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // In a subdirectory made after the registry started, as the SDK does.
    let socket = root.join("watched").join("watched.sock");
    std::fs::create_dir(root.join("watched")).expect("mkdir");
    let server = serve(&socket, 200, spec_json("watched", ""), Duration::ZERO).await;
    tokio::time::timeout(Duration::from_secs(10), changes.notified())
        .await
        .expect("the registry signals the new plugin");
    let listed = r.specs();
    assert!(
        listed
            .iter()
            .any(|s| s.id.as_str() == "watched" && s.status.as_str() == "ok"),
        "{listed:?}"
    );
    server._task.abort();
    std::fs::remove_file(&socket).expect("rm");
    tokio::time::timeout(Duration::from_secs(10), changes.notified())
        .await
        .expect("the registry signals the removal");
    assert!(r.specs().is_empty(), "{:?}", r.specs());
    let _ = stop.send(true);
}

/// A controller plugin: `/report` defines `ctrl1` on a Pod node that offers
/// `ctrl1;ctrl2`; `/control` echoes `NodeID,Control` and sends a shortcut report.
async fn controller(socket: &Path) -> tokio::task::JoinHandle<()> {
    std::fs::create_dir_all(socket.parent().expect("parent")).expect("mkdir");
    let listener = tokio::net::UnixListener::bind(socket).expect("bind");
    let report = r#"{"Plugins": [{"id": "testPlugin", "label": "Test", "interfaces": ["reporter", "controller"], "api_version": "1"}],
      "Pod": {"controls": {"ctrl1": {"id": "ctrl1", "human": "Ctrl 1", "icon": "fa-at", "rank": 1}},
              "nodes": {"node1": {"latest": {"active_controls": {"timestamp": "2020-01-01T00:00:00Z", "value": "ctrl1;ctrl2"}}}}}}"#;
    let app = Router::new()
        .route("/report", get(move || async move { report }))
        .route(
            "/control",
            axum::routing::post(|body: String| async move {
                let req: serde_json::Value = serde_json::from_str(&body).expect("json");
                let value = format!("{},{}", req["NodeID"].as_str().unwrap_or(""), req["Control"].as_str().unwrap_or(""));
                let shortcut = serde_json::json!({
                    "Plugins": [{"id": "testPlugin", "label": "Test", "interfaces": ["reporter", "controller"], "api_version": "1"}],
                    "Pod": {"controls": {"ctrl1": {"id": "ctrl1", "human": "Ctrl 1", "icon": "fa-at", "rank": 1}},
                            "nodes": {"node1": {"latest": {"state": {"timestamp": "2030-01-01T00:00:00Z", "value": "flipped"}}}}}
                });
                axum::Json(serde_json::json!({"value": value, "shortcutReport": shortcut}))
            }),
        );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

#[tokio::test]
async fn controller_plugins_have_their_controls_renamed_and_relayed() {
    let (_dir, root) = tempdir();
    let _p = controller(&root.join("testPlugin.sock")).await;
    let _r = serve(&root.join("reporterOnly.sock"), 200, r#"{"Plugins": [{"id": "reporterOnly", "label": "R", "interfaces": ["reporter"], "api_version": "1"}],
      "Host": {"controls": {"ctrl1": {"id": "ctrl1", "human": "C", "icon": "x", "rank": 1}},
               "nodes": {"node1": {"latest": {"active_controls": {"timestamp": "2020-01-01T00:00:00Z", "value": "ctrl1;ctrl2"}}}}}}"#.into(), Duration::ZERO).await;
    let r = registry(&root);
    cycle(&r).await;
    let report = r.report();
    // A controller's controls are renamed <plugin>~<control>; undefined ones are kept.
    let pod = &report[TopologyKind::Pod];
    assert_eq!(
        pod.controls.keys().map(Str::as_str).collect::<Vec<_>>(),
        ["testPlugin~ctrl1"]
    );
    assert_eq!(
        pod.controls["testPlugin~ctrl1"].id.as_str(),
        "testPlugin~ctrl1"
    );
    assert_eq!(
        pod.nodes["node1"]
            .latest_value("active_controls")
            .map(Str::as_str),
        Some("testPlugin~ctrl1;ctrl2")
    );
    // A reporter-only plugin is left alone.
    assert_eq!(
        report[TopologyKind::Host].nodes["node1"]
            .latest_value("active_controls")
            .map(Str::as_str),
        Some("ctrl1;ctrl2")
    );

    let req = |control: &str| rescope_report::xfer::ControlRequest {
        node_id: "node1".into(),
        control: control.into(),
        ..Default::default()
    };
    let (answer, shortcut) = r.control(&req("testPlugin~ctrl1")).await;
    assert_eq!(
        answer.value,
        Some(serde_json::json!("node1,ctrl1")),
        "the plugin gets its own control ID"
    );
    let shortcut = shortcut.expect("a shortcut report");
    assert!(shortcut.shortcut);
    assert!(
        shortcut[TopologyKind::Pod]
            .controls
            .contains_key("testPlugin~ctrl1")
    );
    assert_eq!(
        shortcut[TopologyKind::Pod].nodes["node1"]
            .latest_value("state")
            .map(Str::as_str),
        Some("flipped")
    );

    let (answer, _) = r.control(&req("testPlugin~ctrl2")).await;
    assert_eq!(
        answer.error, "Control \"testPlugin~ctrl2\" not recognised",
        "only defined controls are relayed"
    );
    let (answer, _) = r.control(&req("nobody~ctrl1")).await;
    assert_eq!(answer.error, "plugin nobody not found");
    let (answer, _) = r.control(&req("reporterOnly~ctrl1")).await;
    assert_eq!(
        answer.error,
        "the R plugin does not implement the controller interface"
    );
}

/// A controller plugin with one switch on host node `h;<host>`: `/report` answers the
/// switch's position as it was when the request came, after `delay`; `/control`
/// flips it and answers with a shortcut report of the new position.
async fn switch(socket: &Path, delay: Duration) -> tokio::task::JoinHandle<()> {
    std::fs::create_dir_all(socket.parent().expect("parent")).expect("mkdir");
    let listener = tokio::net::UnixListener::bind(socket).expect("bind");
    let flips = Arc::new(Mutex::new(0u32));
    let report = |flips: u32| {
        let (state, offered) = if flips.is_multiple_of(2) {
            ("off", "turnOn")
        } else {
            ("on", "turnOff")
        };
        serde_json::json!({
            "Plugins": [{"id": "switch", "label": "Switch", "interfaces": ["reporter", "controller"], "api_version": "1"}],
            "Host": {
                "controls": {
                    "turnOn": {"id": "turnOn", "human": "On", "icon": "fa-toggle-on", "rank": 1},
                    "turnOff": {"id": "turnOff", "human": "Off", "icon": "fa-toggle-off", "rank": 1}
                },
                "nodes": {"h;<host>": {"latest": {
                    "state": {"timestamp": format!("2030-01-01T00:00:{:02}Z", flips % 60), "value": state},
                    "active_controls": {"timestamp": "2030-01-01T00:00:00Z", "value": offered}
                }}}
            }
        })
    };
    let seen = flips.clone();
    let app = Router::new()
        .route(
            "/report",
            get(move || {
                let now = *seen.lock().expect("lock");
                async move {
                    tokio::time::sleep(delay).await;
                    axum::Json(report(now))
                }
            }),
        )
        .route(
            "/control",
            axum::routing::post(move || {
                let now = {
                    let mut n = flips.lock().expect("lock");
                    *n += 1;
                    *n
                };
                async move { axum::Json(serde_json::json!({"shortcutReport": report(now)})) }
            }),
        );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

/// The switch's position and offered controls in the registry's report.
fn position(r: &PluginRegistry) -> (String, String) {
    let report = r.report();
    let node = &report[TopologyKind::Host].nodes["h;<host>"];
    let value = |key: &str| {
        node.latest_value(key)
            .map(|v| v.to_string())
            .unwrap_or_default()
    };
    (value("state"), value("active_controls"))
}

#[tokio::test]
async fn a_control_shows_at_once_and_no_answer_from_before_it_undoes_it() {
    let (_dir, root) = tempdir();
    let _p = switch(&root.join("switch.sock"), Duration::from_millis(400)).await;
    let r = registry(&root);
    cycle(&r).await;
    assert_eq!(position(&r), ("off".into(), "switch~turnOn".into()));

    // A poll that asks before the control and is answered after it.
    let polling = r.clone();
    let poll = tokio::spawn(async move { polling.poll().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let req = rescope_report::xfer::ControlRequest {
        node_id: "h;<host>".into(),
        control: "switch~turnOn".into(),
        ..Default::default()
    };
    let (answer, shortcut) = r.control(&req).await;
    assert!(answer.error.is_empty(), "{answer:?}");
    assert!(shortcut.is_some(), "the plugin sent a shortcut report");
    assert_eq!(
        position(&r),
        ("on".into(), "switch~turnOff".into()),
        "spy reports carry the shortcut's state before the next poll"
    );

    poll.await.expect("poll");
    assert_eq!(
        position(&r),
        ("on".into(), "switch~turnOff".into()),
        "the answer of the poll sent before the control is dropped"
    );
    cycle(&r).await;
    assert_eq!(position(&r), ("on".into(), "switch~turnOff".into()));
    assert_eq!(statuses(&r), [("switch".into(), "ok".into())]);
}
