//! The `rescope-iowait` program on a real socket in a temporary plugins root, asked
//! over HTTP as the probe asks, with a proc root the test controls.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rescope_plugin::TopologyKind;
use rescope_plugin::client::{ClientError, PluginClient, wait_until_serving};
use rescope_plugin::model::Report;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

struct Plugin {
    child: Child,
    socket: PathBuf,
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn copy_stat(proc_root: &Path, fixture: &str) {
    std::fs::copy(format!("{FIXTURES}/{fixture}/stat"), proc_root.join("stat")).expect("copy");
}

fn start(plugins_root: &Path, proc_root: &Path) -> Plugin {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rescope-iowait"))
        .arg("--plugins-root")
        .arg(plugins_root)
        .arg("--proc-root")
        .arg(proc_root)
        .args(["--hostname", "iowait-test", "--interval-ms", "50"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    let socket = plugins_root.join("iowait/iowait.sock");
    if let Err(e) = wait_until_serving(&socket, Some(&mut child), Duration::from_secs(10)) {
        panic!("{e}");
    }
    Plugin { child, socket }
}

fn host_metric(report: &Report, id: &str) -> Option<f64> {
    report[TopologyKind::Host]
        .nodes
        .get("iowait-test;<host>")?
        .metrics
        .get(id)?
        .last()
        .map(|s| s.value)
}

/// Polls until the plugin reports `id` = `want` (the sampler runs in the background,
/// so earlier answers may still show the previous reading or error).
async fn wait_for_metric(client: &PluginClient, id: &str, want: f64) -> Report {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = match client.report().await {
            Ok(answer) => {
                assert!(answer.errors().is_empty(), "{:?}", answer.problems);
                match host_metric(&answer.report, id) {
                    Some(v) if v == want => return answer.report,
                    other => format!("{other:?}"),
                }
            }
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "{id} never became {want}: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_plugin_reports_iowait_from_proc_stat_deltas_and_switches_to_idle() {
    let plugins = tempfile::tempdir().expect("tempdir");
    let proc = tempfile::tempdir().expect("tempdir");
    copy_stat(proc.path(), "busy-io/t0");
    let plugin = start(plugins.path(), proc.path());
    let client = PluginClient::new(&plugin.socket);

    // First reading: averages since boot; then the delta between the fixtures.
    copy_stat(proc.path(), "busy-io/t1");
    let report = wait_for_metric(&client, "iowait", 20.0).await;
    let spec = &report.plugins["iowait"];
    assert!(spec.implements("reporter") && spec.implements("controller"));
    let node = &report[TopologyKind::Host].nodes["iowait-test;<host>"];
    assert_eq!(node.active_controls().collect::<Vec<_>>(), ["switchToIdle"]);

    let answer = client
        .control(&rescope_plugin::ControlRequest {
            node_id: "iowait-test;<host>".into(),
            control: "switchToIdle".into(),
            ..Default::default()
        })
        .await
        .expect("control");
    assert_eq!(answer.response.error, "");
    let shortcut = answer.shortcut.expect("a shortcut report");
    assert_eq!(host_metric(&shortcut, "idle"), Some(40.0));
    assert_eq!(host_metric(&shortcut, "iowait"), None);
    assert_eq!(
        shortcut[TopologyKind::Host].nodes["iowait-test;<host>"]
            .active_controls()
            .collect::<Vec<_>>(),
        ["switchToIOWait"]
    );
    let next = client.report().await.expect("report");
    assert_eq!(
        host_metric(&next.report, "idle"),
        Some(40.0),
        "the switch stays"
    );
}

#[tokio::test]
async fn a_missing_proc_stat_answers_500_and_the_plugin_keeps_serving() {
    let plugins = tempfile::tempdir().expect("tempdir");
    let proc = tempfile::tempdir().expect("tempdir");
    copy_stat(proc.path(), "busy-io/t0");
    let plugin = start(plugins.path(), proc.path());
    let client = PluginClient::new(&plugin.socket);
    client.report().await.expect("works at first");

    std::fs::remove_file(proc.path().join("stat")).expect("rm");
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        match client.report().await {
            Err(ClientError::Status { status: 500, body }) => break body,
            Ok(_) => {}
            Err(e) => panic!("unexpected: {e}"),
        }
        assert!(Instant::now() < deadline, "the error never showed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(body.starts_with("cannot read "), "{body}");

    copy_stat(proc.path(), "busy-io/t1");
    // Measured from the last good reading (t0), so the delta is t1 - t0 again.
    wait_for_metric(&client, "iowait", 20.0).await;
}

#[test]
fn sigterm_and_sigint_remove_the_socket_and_its_directory() {
    for signal in ["-TERM", "-INT"] {
        let plugins = tempfile::tempdir().expect("tempdir");
        let mut plugin = start(plugins.path(), Path::new("/proc"));
        let dir = plugins.path().join("iowait");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&dir).expect("dir").permissions(),
        );
        assert_eq!(mode & 0o777, 0o700, "a private directory");
        let status = Command::new("kill")
            .args([signal, &plugin.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let exit = plugin.child.wait().expect("exits");
        assert!(exit.success(), "{signal}: clean exit, got {exit}");
        assert!(!plugin.socket.exists(), "{signal}: socket removed");
        assert!(!dir.exists(), "{signal}: directory removed");
    }
}

#[test]
fn a_stale_socket_from_a_killed_run_is_replaced() {
    let plugins = tempfile::tempdir().expect("tempdir");
    let mut first = start(plugins.path(), Path::new("/proc"));
    first.child.kill().expect("SIGKILL");
    first.child.wait().expect("reaped");
    assert!(first.socket.exists(), "SIGKILL leaves the socket behind");
    let second = start(plugins.path(), Path::new("/proc"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let answer = runtime
        .block_on(PluginClient::new(&second.socket).report())
        .expect("the new run answers");
    assert!(answer.errors().is_empty());
}
