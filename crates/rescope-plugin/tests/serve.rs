//! A real plugin built with the SDK, served on a real Unix socket in a temporary
//! plugins root and asked over HTTP the way the probe asks.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use rescope_plugin::client::{ClientError, PluginClient};
use rescope_plugin::{
    Control, ControlReply, ControlRequest, DataType, MetadataTemplate, MetricTemplate, Plugin,
    PluginError, PluginServer, ReportBuilder, Spec, TableTemplate, TopologyKind,
};
use tokio::sync::oneshot;

const CID: &str = "4f2c1d9e8b7a6f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6";

/// Counts control runs; fails its report on demand; panics on demand.
#[derive(Debug)]
struct Counter {
    runs: AtomicU32,
    fail_with: Mutex<Option<String>>,
}

impl Counter {
    fn new() -> Self {
        Counter {
            runs: AtomicU32::new(0),
            fail_with: Mutex::new(None),
        }
    }
}

impl Plugin for Counter {
    fn report(&self, r: &mut ReportBuilder) -> Result<(), PluginError> {
        if let Some(e) = self.fail_with.lock().expect("lock").clone() {
            return Err(e.into());
        }
        let runs = self.runs.load(Ordering::SeqCst);
        r.topology(TopologyKind::Host)
            .metric_template(MetricTemplate::new("runs", "Runs").priority(5.0))
            .metadata_template(
                MetadataTemplate::new("counter_note", "Note").data_type(DataType::Text),
            )
            .table_template(TableTemplate::property_list("counter_prop_", "Counter"))
            .table_template(
                TableTemplate::multicolumn("counter_tab_", "Per CPU").column(
                    "busy",
                    "Busy",
                    DataType::Number,
                ),
            )
            .control(Control::new("bump", "Bump", "fa fa-plus").rank(1))
            .control(Control::new("boom", "Boom", "fa fa-bomb").rank(2));
        r.host("sdk-test")
            .metric("runs", f64::from(runs), 0.0)
            .latest("counter_note", "hello")
            .table_row("counter_prop_", "mode", "counting")
            .table_cell("counter_tab_", "cpu0", "busy", "3")
            .active_controls(["bump", "boom"]);
        r.process("sdk-test", 1).latest("counter_note", "init");
        r.topology(TopologyKind::Container).metadata_template(
            MetadataTemplate::new("counter_runs", "Runs").data_type(DataType::Number),
        );
        r.container(CID).latest("counter_runs", runs.to_string());
        Ok(())
    }

    fn control(&self, request: &ControlRequest) -> Result<ControlReply, PluginError> {
        match request.control.as_str() {
            "bump" => {
                self.runs.fetch_add(1, Ordering::SeqCst);
                Ok(ControlReply::ok().with_fresh_report())
            }
            "note" => {
                let mut shortcut = ReportBuilder::new();
                shortcut.host("sdk-test").latest("counter_note", "noted");
                Ok(ControlReply::value("noted").with_shortcut(shortcut))
            }
            "boom" => panic!("the handler blew up"),
            other => Err(format!("no control {other:?}").into()),
        }
    }
}

struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), rescope_plugin::ServeError>>,
    client: PluginClient,
    socket: std::path::PathBuf,
}

impl Running {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.expect("join").expect("serve ends cleanly");
    }
}

fn start<P: Plugin>(root: &std::path::Path, spec: Spec, plugin: P) -> Running {
    let (tx, rx) = oneshot::channel::<()>();
    let bound = PluginServer::new(spec, plugin)
        .plugins_root(root)
        .bind()
        .expect("binds");
    let socket = bound.socket_path().to_path_buf();
    let task = tokio::spawn(bound.serve_until(async {
        let _ = rx.await;
    }));
    Running {
        stop: Some(tx),
        task,
        // Generous: a panicking handler prints a backtrace, which takes a while to
        // symbolise on a loaded machine. These tests check answers, not speed.
        client: PluginClient::new(&socket).timeout(std::time::Duration::from_secs(10)),
        socket,
    }
}

fn counter_spec() -> Spec {
    Spec::new("counter", "Counter")
        .description("counts control runs")
        .controller()
}

#[tokio::test]
async fn an_sdk_plugin_answers_get_report_with_a_report_the_probe_accepts() {
    let root = tempfile::tempdir().expect("tempdir");
    let plugin = start(root.path(), counter_spec(), Counter::new());
    assert_eq!(plugin.socket, root.path().join("counter/counter.sock"));

    let answer = plugin.client.report().await.expect("report");
    assert!(answer.errors().is_empty(), "{:?}", answer.problems);
    assert!(
        answer.problems.is_empty(),
        "not even warnings: {:?}",
        answer.problems
    );
    assert_eq!(answer.specs.len(), 1);
    let spec = &answer.specs[0];
    assert_eq!(
        (spec.id.as_str(), spec.label.as_str()),
        ("counter", "Counter")
    );
    assert_eq!(spec.api_version, "1");
    assert!(spec.implements("reporter") && spec.implements("controller"));

    let report = &answer.report;
    let host = &report[TopologyKind::Host].nodes["sdk-test;<host>"];
    assert_eq!(host.metrics.get("runs").expect("metric").samples.len(), 1);
    assert_eq!(host.active_controls().collect::<Vec<_>>(), ["bump", "boom"]);
    assert!(host.latest.contains_key("counter_tab_cpu0___busy"));
    assert!(report[TopologyKind::Host].controls.contains_key("bump"));
    assert!(
        report[TopologyKind::Process]
            .nodes
            .contains_key("sdk-test;1")
    );
    let container = &report[TopologyKind::Container].nodes[format!("{CID};<container>").as_str()];
    assert_eq!(
        container.latest_value("counter_runs").map(|v| v.as_str()),
        Some("0")
    );
    let body = String::from_utf8(answer.body.clone()).expect("utf-8");
    assert!(body.starts_with('{'), "plain JSON");

    let socket = plugin.socket.clone();
    plugin.stop().await;
    assert!(!socket.exists(), "the socket is removed on shutdown");
    assert!(!root.path().join("counter").exists(), "and its directory");
}

#[tokio::test]
async fn a_control_runs_and_answers_with_a_fresh_shortcut_report() {
    let root = tempfile::tempdir().expect("tempdir");
    let plugin = start(root.path(), counter_spec(), Counter::new());
    let request = ControlRequest {
        app_id: "app".into(),
        node_id: "sdk-test;<host>".into(),
        control: "bump".into(),
        control_args: None,
    };
    let answer = plugin.client.control(&request).await.expect("control");
    assert_eq!(answer.response.error, "");
    let shortcut = answer.shortcut.expect("a shortcut report");
    let runs = shortcut[TopologyKind::Host].nodes["sdk-test;<host>"]
        .metrics
        .get("runs")
        .and_then(|m| m.last())
        .map(|s| s.value);
    assert_eq!(runs, Some(1.0), "the shortcut shows the control's effect");
    assert!(
        shortcut.plugins.contains_key("counter"),
        "the shortcut carries the spec"
    );
    assert!(
        shortcut[TopologyKind::Host].controls.contains_key("boom"),
        "and repeats every control definition"
    );
    plugin.stop().await;
}

#[tokio::test]
async fn a_control_can_answer_a_value_and_a_shortcut_report_of_its_own() {
    let root = tempfile::tempdir().expect("tempdir");
    let plugin = start(root.path(), counter_spec(), Counter::new());
    let request = ControlRequest {
        node_id: "sdk-test;<host>".into(),
        control: "note".into(),
        ..Default::default()
    };
    let answer = plugin.client.control(&request).await.expect("control");
    assert_eq!(answer.response.value, Some(serde_json::json!("noted")));
    let shortcut = answer.shortcut.expect("the plugin's own shortcut");
    let node = &shortcut[TopologyKind::Host].nodes["sdk-test;<host>"];
    assert_eq!(
        node.latest_value("counter_note").map(|v| v.as_str()),
        Some("noted")
    );
    assert_eq!(
        shortcut.plugins.get("counter").map(|s| s.label.as_str()),
        Some("Counter"),
        "the server adds the spec"
    );
    plugin.stop().await;
}

#[tokio::test]
async fn control_errors_and_panics_become_error_answers_and_serving_goes_on() {
    let root = tempfile::tempdir().expect("tempdir");
    let plugin = start(root.path(), counter_spec(), Counter::new());
    let mut request = ControlRequest {
        node_id: "sdk-test;<host>".into(),
        control: "nope".into(),
        ..Default::default()
    };
    let answer = plugin.client.control(&request).await.expect("answer");
    assert_eq!(answer.response.error, "no control \"nope\"");
    assert!(answer.shortcut.is_none());

    request.control = "boom".into();
    let answer = plugin.client.control(&request).await.expect("answer");
    assert_eq!(answer.response.error, "the control handler panicked");

    let bad = plugin
        .client
        .send(hyper_post(), "/control", Some(b"{not json".to_vec()))
        .await
        .expect_err("400");
    assert!(
        matches!(&bad, ClientError::Status { status: 400, body } if body.contains("invalid control request")),
        "{bad}"
    );

    let answer = plugin.client.report().await.expect("still serving");
    assert!(answer.errors().is_empty());
    plugin.stop().await;
}

fn hyper_post() -> hyper::Method {
    hyper::Method::POST
}

#[tokio::test]
async fn a_failing_report_answers_500_with_the_reason_until_it_recovers() {
    let root = tempfile::tempdir().expect("tempdir");
    let counter = std::sync::Arc::new(Counter::new());
    let plugin = start(root.path(), counter_spec(), counter.clone());
    *counter.fail_with.lock().expect("lock") = Some("cannot read /proc/stat: gone".into());
    let err = plugin.client.report().await.expect_err("500");
    assert!(
        matches!(&err, ClientError::Status { status: 500, body } if body == "cannot read /proc/stat: gone"),
        "{err}"
    );
    *counter.fail_with.lock().expect("lock") = None;
    plugin.client.report().await.expect("recovers");
    plugin.stop().await;
}

#[tokio::test]
async fn a_reporter_only_plugin_refuses_controls() {
    let root = tempfile::tempdir().expect("tempdir");
    let plugin = start(root.path(), Spec::new("quiet", "Quiet"), Counter::new());
    let answer = plugin.client.report().await.expect("report");
    assert_eq!(answer.specs[0].interfaces.len(), 1);
    let request = ControlRequest {
        control: "bump".into(),
        ..Default::default()
    };
    let answer = plugin.client.control(&request).await.expect("answer");
    assert_eq!(answer.response.error, "the Quiet plugin offers no controls");
    assert_eq!(
        counter_runs(&plugin.client).await,
        "0",
        "the handler did not run"
    );
    plugin.stop().await;
}

async fn counter_runs(client: &PluginClient) -> String {
    let answer = client.report().await.expect("report");
    answer.report[TopologyKind::Container].nodes[format!("{CID};<container>").as_str()]
        .latest_value("counter_runs")
        .map(|v| v.to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn an_invalid_plugin_id_is_refused_before_any_socket_is_made() {
    let root = tempfile::tempdir().expect("tempdir");
    let err = PluginServer::new(Spec::new("io_wait", "IO"), Counter::new())
        .plugins_root(root.path())
        .bind()
        .expect_err("invalid id");
    assert!(err.to_string().contains("not a valid plugin ID"), "{err}");
    assert_eq!(std::fs::read_dir(root.path()).expect("dir").count(), 0);
}

#[tokio::test]
async fn unknown_paths_get_404() {
    let root = tempfile::tempdir().expect("tempdir");
    let plugin = start(root.path(), counter_spec(), Counter::new());
    let err = plugin
        .client
        .send(hyper::Method::GET, "/metrics", None)
        .await
        .expect_err("404");
    assert!(
        matches!(err, ClientError::Status { status: 404, .. }),
        "{err}"
    );
    plugin.stop().await;
}
