//! The `rescope-volume-count` program against the real Docker engine (CI's set-up
//! starts dockerd; without one the Docker test prints why it skipped), on a real
//! socket in a temporary plugins root, asked over HTTP as the probe asks.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rescope_plugin::TopologyKind;
use rescope_plugin::client::{PluginClient, wait_until_serving};

const IMAGE: &str = "rescope-test/busybox:latest";

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

fn start(plugins_root: &Path, docker_host: &str, log: &Path) -> Plugin {
    let log = std::fs::File::create(log).expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rescope-volume-count"))
        .arg("--plugins-root")
        .arg(plugins_root)
        .args(["--docker-host", docker_host, "--interval-ms", "200"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starts");
    let socket = plugins_root.join("volume-count/volume-count.sock");
    if let Err(e) = wait_until_serving(&socket, Some(&mut child), Duration::from_secs(10)) {
        panic!("{e}");
    }
    Plugin { child, socket }
}

fn docker(args: &[&str]) -> Option<String> {
    docker_or_error(args).ok()
}

/// Runs `docker`; the trimmed standard output, or what went wrong.
fn docker_or_error(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Makes the test image from the host's static busybox if it is missing.
fn ensure_image() -> bool {
    if docker(&["image", "inspect", IMAGE]).is_some() {
        return true;
    }
    let Some(busybox) = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        return false;
    };
    let script = format!(
        "set -e; d=$(mktemp -d); mkdir -p $d/bin; cp {busybox} $d/bin/busybox; \
         for a in sh sleep; do ln -s busybox $d/bin/$a; done; \
         tar -C $d -c . | docker import - {IMAGE} >/dev/null; rm -rf $d"
    );
    Command::new("sh")
        .args(["-c", &script])
        .status()
        .is_ok_and(|s| s.success())
}

/// Removes the container and its anonymous volumes.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.0]);
    }
}

#[tokio::test]
async fn containers_get_the_number_of_their_mounted_volumes() {
    if docker(&["info", "--format", "{{.ServerVersion}}"]).is_none() {
        println!("skipped: no Docker engine answers on this machine (CI starts dockerd)");
        return;
    }
    assert!(ensure_image(), "cannot build the busybox test image");
    let tag = std::process::id();
    let bind = tempfile::tempdir().expect("tempdir");
    let none = docker_or_error(&[
        "run",
        "-d",
        "--name",
        &format!("rescope-vc-none-{tag}"),
        IMAGE,
        "sleep",
        "300",
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let _none = Container(none.clone());
    let bind_arg = format!("{}:/data", bind.path().display());
    let two = docker_or_error(&[
        "run",
        "-d",
        "--name",
        &format!("rescope-vc-two-{tag}"),
        "-v",
        &bind_arg,
        "-v",
        "/cache",
        IMAGE,
        "sleep",
        "300",
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let _two = Container(two.clone());

    let plugins = tempfile::tempdir().expect("tempdir");
    let log = plugins.path().join("plugin.log");
    let plugin = start(plugins.path(), "unix:///var/run/docker.sock", &log);
    let client = PluginClient::new(&plugin.socket);
    let count = |report: &rescope_plugin::model::Report, cid: &str| {
        report[TopologyKind::Container]
            .nodes
            .get(format!("{cid};<container>").as_str())
            .and_then(|n| n.latest_value("volume_count"))
            .map(|v| v.to_string())
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let report = loop {
        let answer = client.report().await.expect("report");
        assert!(answer.errors().is_empty(), "{:?}", answer.problems);
        if count(&answer.report, &none).is_some() && count(&answer.report, &two).is_some() {
            break answer.report;
        }
        assert!(Instant::now() < deadline, "the containers never showed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(count(&report, &none).as_deref(), Some("0"));
    assert_eq!(count(&report, &two).as_deref(), Some("2"));
    let template = &report[TopologyKind::Container].metadata_templates["volume_count"];
    assert_eq!(template.label, "# Volumes");
    let spec = &report.plugins["volume-count"];
    assert!(spec.implements("reporter") && !spec.implements("controller"));

    // A removed container leaves the report.
    drop(_two);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let answer = client.report().await.expect("report");
        if count(&answer.report, &two).is_none() {
            assert_eq!(count(&answer.report, &none).as_deref(), Some("0"));
            break;
        }
        assert!(Instant::now() < deadline, "the removed container stayed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn without_docker_the_plugin_serves_an_empty_report_and_logs_why() {
    let plugins = tempfile::tempdir().expect("tempdir");
    let log = plugins.path().join("plugin.log");
    let missing = plugins.path().join("no-docker.sock");
    let plugin = start(
        plugins.path(),
        &format!("unix://{}", missing.display()),
        &log,
    );
    let answer = PluginClient::new(&plugin.socket)
        .report()
        .await
        .expect("a 200 answer");
    assert!(answer.errors().is_empty(), "{:?}", answer.problems);
    assert!(answer.report[TopologyKind::Container].nodes.is_empty());
    assert_eq!(answer.specs[0].id, "volume-count");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("cannot list containers from Docker at")
            && text.contains("serving an empty report until Docker answers")
        {
            // Several more refreshes (every 200 ms) fail the same way...
            tokio::time::sleep(Duration::from_secs(1)).await;
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            // ...and are not logged again.
            assert_eq!(
                text.matches("serving an empty report").count(),
                1,
                "logged once, not at every refresh:\n{text}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no reason in the log:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
