//! The app over real HTTP on 127.0.0.1: reports exactly as a real Weave Scope probe
//! published them go in, Scope's API comes out.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use rescope_app::{AppConfig, Collector};
use rescope_report::codec;
use serde_json::Value;

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/scope")
            .join(rel),
    )
    .expect("fixture")
}

struct App {
    base: String,
    addr: SocketAddr,
    _stop: tokio::sync::watch::Sender<bool>,
}

async fn start(configure: impl FnOnce(&mut AppConfig)) -> App {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut config = AppConfig::new(addr);
    config.hostname = "testhost".into();
    configure(&mut config);
    let config = Arc::new(config);
    let collector = Collector::new(config.window);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(rescope_app::serve_on(listener, config, collector, shutdown));
    App {
        base: format!("http://{addr}"),
        addr,
        _stop: stop,
    }
}

async fn publish(app: &App, body: Vec<u8>, content_type: &str, gzip: bool) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(format!("{}/api/report", app.base))
        .header("Content-Type", content_type)
        .header("X-Scope-Probe-ID", "45522f0c0946eca6")
        .header("Authorization", "Scope-Probe token=")
        .body(body);
    if gzip {
        req = req.header("Content-Encoding", "gzip");
    }
    req.send().await.expect("request")
}

/// The status code of a request.
async fn status(request: reqwest::RequestBuilder) -> u16 {
    request.send().await.expect("request").status().as_u16()
}

async fn get_json(app: &App, path: &str) -> (u16, Value) {
    let r = reqwest::get(format!("{}{path}", app.base))
        .await
        .expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn a_real_scope_probe_report_is_accepted_and_rendered() {
    let app = start(|_| {}).await;
    let r = publish(
        &app,
        fixture("published/load-full.msgpack.gz"),
        "application/msgpack",
        true,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.text().await.expect("body").is_empty(),
        "success is an empty body"
    );

    let (status, api) = get_json(&app, "/api").await;
    assert_eq!(status, 200);
    assert_eq!(api["hostname"], "testhost");
    assert!(api["id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(api["plugins"], Value::Array(vec![]));

    let (_, hosts) = get_json(&app, "/api/topology/hosts").await;
    assert_eq!(hosts["nodes"]["vm;<host>"]["label"], "vm");
    let (_, procs) = get_json(&app, "/api/topology/processes").await;
    assert_eq!(procs["nodes"].as_object().map(|n| n.len()), Some(443));
    // Any query switches Scope's default filters on: unconnected processes are hidden.
    let (_, filtered) = get_json(&app, "/api/topology/processes?unconnected=hide").await;
    assert!(filtered["nodes"].as_object().map_or(0, |n| n.len()) < 443);

    let (status, details) = get_json(&app, "/api/topology/hosts/vm%3B%3Chost%3E").await;
    assert_eq!(status, 200);
    assert_eq!(details["node"]["controls"][0]["id"], "host_exec");
    assert_eq!(
        details["node"]["connections"][0]["id"],
        "incoming-connections"
    );

    let (status, _) = get_json(&app, "/api/topology/hosts/nope%3B%3Chost%3E").await;
    assert_eq!(status, 404);
    let r = reqwest::get(format!("{}/api/topology/no-such-view", app.base))
        .await
        .expect("request");
    assert_eq!(r.status(), 404);

    let (_, list) = get_json(&app, "/api/topology").await;
    let names: Vec<&str> = list
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "Containers",
            "Hosts",
            "Pods",
            "Processes",
            "Services",
            "Tasks"
        ]
    );

    let (_, probes) = get_json(&app, "/api/probes").await;
    assert_eq!(probes[0]["id"], "45522f0c0946eca6");
    assert_eq!(probes[0]["hostname"], "vm");
    let (_, sparse) = get_json(&app, "/api/probes?sparse").await;
    assert_eq!(sparse, Value::Bool(true));

    let metrics = reqwest::get(format!("{}/metrics", app.base))
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    assert!(
        metrics.contains(r#"rescope_app_reports_received_total{kind="full"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"rescope_node_metric{topology="host",node="vm;<host>",metric="load1"} 2.96"#
        )
    );

    // The merged report round-trips in msgpack.
    let r = reqwest::Client::new()
        .get(format!("{}/api/report", app.base))
        .header("Accept", "application/msgpack")
        .send()
        .await
        .expect("request");
    assert_eq!(r.headers()["content-type"], "application/msgpack");
    let report = codec::decode(&r.bytes().await.expect("body")).expect("decodes");
    assert_eq!(
        report[rescope_report::TopologyKind::Process].nodes.len(),
        442
    );
}

#[tokio::test]
async fn bad_reports_get_clear_4xx_answers() {
    let app = start(|c| c.max_report_bytes = 1 << 20).await;
    let r = publish(&app, b"{}".to_vec(), "text/plain", false).await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.expect("json"),
        Value::String("Unsupported Content-Type: text/plain".into())
    );

    let r = publish(
        &app,
        br#"{"Window": "soon"}"#.to_vec(),
        "application/json",
        false,
    )
    .await;
    assert_eq!(r.status(), 400);
    let message = r.json::<Value>().await.expect("json");
    assert!(
        message.as_str().is_some_and(|m| m.contains("at Window")),
        "{message}"
    );

    let mut bomb = b"{\"ID\": \"x\"}".to_vec();
    bomb.extend(std::iter::repeat_n(b' ', 8 << 20));
    let r = publish(&app, codec::gzip(&bomb), "application/json", true).await;
    assert_eq!(r.status(), 413);

    let r = publish(
        &app,
        vec![0x1f, 0x8b, 0x08, 0x00],
        "application/msgpack",
        true,
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.expect("body").contains("gzip"));

    // The app is still up and serving.
    let (status, _) = get_json(&app, "/api/topology").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn basic_auth_and_probe_tokens_guard_the_routes() {
    let app = start(|c| {
        c.basic_auth = Some(rescope_app::config::BasicAuth {
            user: "admin".into(),
            password: rescope_app::config::Secret("s3cret".into()),
        });
        c.probe_token = Some(rescope_app::config::Secret("probe-token".into()));
    })
    .await;
    let client = reqwest::Client::new();
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(
        status(
            client
                .get(format!("{}/api/topology", app.base))
                .send()
                .await
                .expect("req")
        ),
        401
    );
    assert_eq!(
        status(
            client
                .get(format!("{}/api/topology", app.base))
                .basic_auth("admin", Some("s3cret"))
                .send()
                .await
                .expect("req")
        ),
        200
    );
    assert_eq!(
        status(
            client
                .get(format!("{}/api/topology", app.base))
                .basic_auth("admin", Some("wrong"))
                .send()
                .await
                .expect("req")
        ),
        401
    );
    let publish_with = |token: &'static str| {
        client
            .post(format!("{}/api/report", app.base))
            .header("Content-Type", "application/json")
            .header("Authorization", format!("Scope-Probe token={token}"))
            .body("{}")
            .send()
    };
    assert_eq!(status(publish_with("probe-token").await.expect("req")), 200);
    assert_eq!(status(publish_with("guess").await.expect("req")), 401);
    // A probe token does not open the UI routes.
    let r = client
        .get(format!("{}/api/topology", app.base))
        .header("Authorization", "Scope-Probe token=probe-token")
        .send()
        .await
        .expect("req");
    assert_eq!(status(r), 401);
}

#[tokio::test]
async fn the_topology_websocket_sends_a_reset_then_diffs() {
    let app = start(|_| {}).await;
    publish(
        &app,
        fixture("published/idle-full.msgpack.gz"),
        "application/msgpack",
        true,
    )
    .await;
    let url = format!("ws://{}/api/topology/hosts/ws?t=5s", app.addr);
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("ws connect");
    let first = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("first message")
        .expect("open")
        .expect("ok");
    let first: Value = serde_json::from_str(first.to_text().expect("text")).expect("json");
    assert_eq!(first["reset"], true);
    assert!(
        first["add"]
            .as_array()
            .is_some_and(|a| a.iter().any(|n| n["id"] == "vm;<host>"))
    );
    // A new report pushes an update well before the 5 s period.
    publish(
        &app,
        fixture("published/load-full.msgpack.gz"),
        "application/msgpack",
        true,
    )
    .await;
    let started = std::time::Instant::now();
    let next = tokio::time::timeout(Duration::from_secs(3), socket.next())
        .await
        .expect("pushed early")
        .expect("open")
        .expect("ok");
    let next: Value = serde_json::from_str(next.to_text().expect("text")).expect("json");
    assert!(next.get("reset").is_none());
    assert!(
        next["update"]
            .as_array()
            .is_some_and(|u| u.iter().any(|n| n["id"] == "vm;<host>")),
        "{next}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    let r = reqwest::get(format!("{}/api/topology/hosts/ws?t=never", app.base))
        .await
        .expect("request");
    assert_eq!(r.status(), 400);
}

struct Echo;

type ControlFuture = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<rescope_report::xfer::ControlResponse, String>>
            + Send,
    >,
>;

impl rescope_app::controls::ProbeLink for Echo {
    fn call(&self, request: rescope_report::xfer::ControlRequest) -> ControlFuture {
        Box::pin(async move {
            let mut r = rescope_report::xfer::ControlResponse::default();
            if request.control == "fail" {
                r.error = "it broke".into();
            } else {
                r.value = Some(serde_json::json!(format!(
                    "{}|{}|{:?}",
                    request.node_id, request.control, request.control_args
                )));
            }
            Ok(r)
        })
    }
}

async fn start_with_probe(listen: &str) -> App {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = Arc::new(AppConfig::new(listen.parse().expect("addr")));
    let state = rescope_app::AppState::new(config.clone(), Collector::new(config.window));
    state.controls.register("probe1", Arc::new(Echo));
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(rescope_app::serve_with(listener, state, shutdown));
    App {
        base: format!("http://{addr}"),
        addr,
        _stop: stop,
    }
}

#[tokio::test]
async fn controls_are_relayed_to_the_probe_with_scopes_answers() {
    let app = start_with_probe("127.0.0.1:4040").await;
    let client = reqwest::Client::new();
    let r = client
        .post(format!(
            "{}/api/control/probe1/c1%3B%3Ccontainer%3E/plugin~ctl",
            app.base
        ))
        .body(r#"{"width": "80"}"#)
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("json");
    assert_eq!(
        body["value"],
        r#"c1;<container>|plugin~ctl|Some({"width": "80"})"#
    );
    let r = client
        .post(format!("{}/api/control/probe1/n/fail", app.base))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.expect("json"),
        Value::String("it broke".into())
    );
    let r = client
        .post(format!("{}/api/control/gone/n/x", app.base))
        .send()
        .await
        .expect("req");
    assert_eq!(
        r.json::<Value>().await.expect("json"),
        Value::String("probe gone is not connected right now".into())
    );
    let r = client
        .post(format!("{}/api/control/probe1/n/x", app.base))
        .body("[1]")
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn shells_are_refused_when_the_app_is_exposed_without_authentication() {
    // The listen address decides the policy; the test still talks to loopback.
    let app = start_with_probe("0.0.0.0:4040").await;
    let client = reqwest::Client::new();
    let r = client
        .post(format!(
            "{}/api/control/probe1/h%3B%3Chost%3E/host_exec",
            app.base
        ))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 403);
    let message = r.json::<Value>().await.expect("json");
    assert!(
        message
            .as_str()
            .is_some_and(|m| m.contains("--basic-auth") && m.contains("--allow-remote-exec")),
        "{message}"
    );
    // Controls that run nothing still work.
    let r = client
        .post(format!(
            "{}/api/control/probe1/c/docker_stop_container",
            app.base
        ))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 200);
}

/// A probe on the control websocket, answering calls as Scope's probe does.
async fn fake_probe(app: &App, probe_id: &str) -> tokio::task::JoinHandle<()> {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{}/api/control/ws", app.addr)
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert("X-Scope-Probe-ID", probe_id.parse().expect("header"));
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("connects");
    tokio::spawn(async move {
        let mut header: Option<Value> = None;
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Text(text) = msg else { continue };
            let frame: Value = serde_json::from_str(&text).expect("json");
            if !frame["Request"].is_null() {
                header = Some(frame["Request"].clone());
                continue;
            }
            let call = header.take().expect("a header came first");
            let request = frame["Value"].clone();
            let seq = call["Seq"].clone();
            let control = request["Control"].as_str().unwrap_or_default().to_string();
            // Answer slow calls late, so answers arrive out of order.
            if control == "slow" {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let value = serde_json::json!({"value": format!("{}:{}", request["NodeID"].as_str().unwrap_or_default(), control)});
            let reply_header = serde_json::json!({"Request": null, "Response": {"ServiceMethod": "control.Handle", "Seq": seq, "Error": ""}, "Value": null});
            let reply_value =
                serde_json::json!({"Request": null, "Response": null, "Value": value});
            ws.send(Message::Text(reply_header.to_string().into()))
                .await
                .expect("send");
            ws.send(Message::Text(reply_value.to_string().into()))
                .await
                .expect("send");
        }
    })
}

#[tokio::test]
async fn controls_reach_a_probe_over_its_control_websocket() {
    let app = start(|_| {}).await;
    let probe = fake_probe(&app, "wsprobe").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let client = reqwest::Client::new();
    let slow = client
        .post(format!("{}/api/control/wsprobe/node1/slow", app.base))
        .send();
    let fast = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        client
            .post(format!("{}/api/control/wsprobe/node2/fast", app.base))
            .send()
            .await
    };
    let (slow, fast) = tokio::join!(slow, fast);
    assert_eq!(
        fast.expect("req").json::<Value>().await.expect("json")["value"],
        "node2:fast"
    );
    assert_eq!(
        slow.expect("req").json::<Value>().await.expect("json")["value"],
        "node1:slow"
    );
    // Without the probe ID header the websocket is refused.
    let r = client
        .get(format!("{}/api/control/ws", app.base))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 400);
    // When the probe goes, its controls answer that it is not connected.
    probe.abort();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = client
        .post(format!("{}/api/control/wsprobe/node1/fast", app.base))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn pipes_relay_bytes_both_ways_and_close_with_a_tombstone() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let app = start(|_| {}).await;
    let (mut probe, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/api/pipe/pipe-7/probe", app.addr))
            .await
            .expect("probe end");
    let (mut ui, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/api/pipe/pipe-7", app.addr))
            .await
            .expect("ui end");
    ui.send(Message::Text("ls\n".into())).await.expect("send");
    let got = tokio::time::timeout(Duration::from_secs(2), probe.next())
        .await
        .expect("relayed")
        .expect("open")
        .expect("ok");
    assert_eq!(got.into_data().as_ref(), b"ls\n");
    probe
        .send(Message::Binary(b"file.txt\r\n".to_vec().into()))
        .await
        .expect("send");
    let got = tokio::time::timeout(Duration::from_secs(2), ui.next())
        .await
        .expect("relayed")
        .expect("open")
        .expect("ok");
    assert!(got.is_binary(), "the browser gets binary frames");
    assert_eq!(got.into_data().as_ref(), b"file.txt\r\n");

    let client = reqwest::Client::new();
    assert_eq!(
        status(client.get(format!("{}/api/pipe/pipe-7/check", app.base))).await,
        204
    );
    assert_eq!(
        status(client.get(format!("{}/api/pipe/never-seen/check", app.base))).await,
        204
    );
    assert_eq!(
        status(client.delete(format!("{}/api/pipe/pipe-7", app.base))).await,
        200
    );
    assert_eq!(
        status(client.get(format!("{}/api/pipe/pipe-7/check", app.base))).await,
        404
    );
    // Both ends are disconnected, and a late probe learns the pipe is gone.
    let end = tokio::time::timeout(Duration::from_secs(3), probe.next())
        .await
        .expect("closed in time");
    assert!(
        matches!(end, None | Some(Ok(Message::Close(_))) | Some(Err(_))),
        "{end:?}"
    );
    let late =
        tokio_tungstenite::connect_async(format!("ws://{}/api/pipe/pipe-7/probe", app.addr)).await;
    assert!(late.is_err(), "a closed pipe refuses new ends");
}

/// A report in Scope's JSON with one host node, named `name`, offering `controls` (of
/// the host topology's `defined` ones); `full` adds the templates that mark a full
/// report.
struct HostReport<'a> {
    name: &'a str,
    controls: &'a str,
    stamp: &'a str,
    plugins: &'a [&'a str],
    full: bool,
}

impl HostReport<'_> {
    fn json(&self) -> Vec<u8> {
        let defined: serde_json::Map<String, Value> = ["host_exec", "tc~on", "tc~off"]
            .iter()
            .map(|c| {
                (
                    c.to_string(),
                    serde_json::json!({"id": c, "human": c, "icon": "fa fa-cog", "rank": 1}),
                )
            })
            .collect();
        let at = |v: &str| serde_json::json!({"timestamp": self.stamp, "value": v});
        let mut host = serde_json::json!({
            "nodes": {"h1;<host>": {
                "id": "h1;<host>",
                "topology": "host",
                "latest": {
                    "host_name": at(self.name),
                    "control_probe_id": at("45522f0c0946eca6"),
                    "active_controls": at(self.controls),
                },
            }},
            "controls": defined,
        });
        if self.full {
            host["metadata_templates"] = serde_json::json!({
                "host_name": {"id": "host_name", "label": "Hostname", "priority": 1}
            });
        }
        let plugins: Vec<Value> = self
            .plugins
            .iter()
            .map(|p| {
                serde_json::json!({"id": p, "label": p, "interfaces": ["reporter", "controller"], "api_version": "1"})
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "Host": host,
            "Plugins": plugins,
            "Shortcut": !self.full,
        }))
        .expect("json")
    }
}

/// The host's label and the IDs of its controls, once they differ from `before`
/// (answers may come from the render before the last report for a moment).
async fn host_changed(app: &App, before: &(String, Vec<String>)) -> (String, Vec<String>) {
    let mut now = (String::new(), Vec::new());
    for _ in 0..100 {
        let (code, details) = get_json(app, "/api/topology/hosts/h1%3B%3Chost%3E").await;
        assert_eq!(code, 200, "{details}");
        let mut ids: Vec<String> = details["node"]["controls"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["id"].as_str().map(str::to_string))
            .collect();
        ids.sort();
        let label = details["node"]["label"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        now = (label, ids);
        if now != *before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    now
}

#[tokio::test]
async fn a_probes_newer_shortcut_replaces_its_plugins_host_controls() {
    let app = start(|_| {}).await;
    let send = |r: HostReport<'static>| {
        let body = r.json();
        let app = &app;
        async move {
            let r = publish(app, body, "application/json", false).await;
            assert!(r.status().is_success(), "{}", r.status());
        }
    };
    let owned = |label: &str, ids: &[&str]| {
        (
            label.to_string(),
            ids.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    };
    send(HostReport {
        name: "h1",
        controls: "host_exec;tc~on",
        stamp: "2026-01-01T00:00:01Z",
        plugins: &["tc"],
        full: true,
    })
    .await;
    let state = host_changed(&app, &Default::default()).await;
    assert_eq!(state, owned("h1", &["host_exec", "tc~on"]));
    // The plugin switched its control: its shortcut report (as the probe publishes it,
    // with the plugin's spec and only the plugin's controls) replaces the old one, and
    // the probe's own control stays.
    send(HostReport {
        name: "h1",
        controls: "tc~off",
        stamp: "2026-01-01T00:00:02Z",
        plugins: &["tc"],
        full: false,
    })
    .await;
    let state = host_changed(&app, &state).await;
    assert_eq!(state, owned("h1", &["host_exec", "tc~off"]));
    // An older shortcut arriving late does not bring the old control back; another
    // plugin's shortcut (which also renames the host, to see it applied) leaves the
    // controls alone.
    send(HostReport {
        name: "h1",
        controls: "tc~on",
        stamp: "2026-01-01T00:00:01Z",
        plugins: &["tc"],
        full: false,
    })
    .await;
    send(HostReport {
        name: "h1b",
        controls: "",
        stamp: "2026-01-01T00:00:03Z",
        plugins: &["other"],
        full: false,
    })
    .await;
    let state = host_changed(&app, &state).await;
    assert_eq!(state, owned("h1b", &["host_exec", "tc~off"]));
}

#[tokio::test]
async fn a_read_only_app_shows_no_controls_and_refuses_them_all() {
    let app = start(|c| c.read_only = true).await;
    let _probe = fake_probe(&app, "wsprobe").await;
    let r = publish(
        &app,
        fixture("published/load-full.msgpack.gz"),
        "application/msgpack",
        true,
    )
    .await;
    assert_eq!(r.status(), 200);

    // The same report shows host_exec on this host in a normal app (first test).
    let (status, details) = get_json(&app, "/api/topology/hosts/vm%3B%3Chost%3E").await;
    assert_eq!(status, 200);
    assert_eq!(
        details["node"]["controls"],
        Value::Array(vec![]),
        "{details}"
    );
    assert_eq!(details["node"]["label"], "vm", "the rest is still there");
    let (_, containers) = get_json(&app, "/api/topology/containers").await;
    let container = containers["nodes"]
        .as_object()
        .and_then(|n| n.keys().find(|k| k.ends_with(";<container>")).cloned())
        .expect("the report has containers");
    let (_, details) = get_json(
        &app,
        &format!(
            "/api/topology/containers/{}",
            container
                .replace(';', "%3B")
                .replace('<', "%3C")
                .replace('>', "%3E")
        ),
    )
    .await;
    assert_eq!(
        details["node"]["controls"],
        Value::Array(vec![]),
        "{details}"
    );

    for control in ["docker_stop_container", "host_exec", "iowait~switch"] {
        let r = reqwest::Client::new()
            .post(format!("{}/api/control/wsprobe/node1/{control}", app.base))
            .send()
            .await
            .expect("req");
        assert_eq!(r.status(), 403, "{control}");
        let message = r.json::<Value>().await.expect("json");
        assert!(
            message.as_str().is_some_and(|m| m.contains("read-only")),
            "{message}"
        );
    }
}
