//! The official plugins (`plugins/iowait`, `plugins/volume-count`), unchanged, against
//! `rescope launch`: their data must reach the app's node details, and the iowait
//! control must work through the app's control API.
//!
//! The plugin programs are found next to the `rescope` binary. `cargo nextest run
//! --workspace` builds them (their own packages' tests need them); on their own:
//! `cargo build -p rescope-iowait -p rescope-volume-count`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{IMAGE, Running, docker, docker_missing, ensure_image, free_port, get};

/// A plugins root of its own, removed at the end.
struct TempRoot(PathBuf);

impl TempRoot {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("rescope-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        TempRoot(dir)
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An official plugin's program, built into the same directory as `rescope`.
fn plugin_binary(name: &str) -> PathBuf {
    let rescope = Path::new(env!("CARGO_BIN_EXE_rescope"));
    let path = rescope.with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: build the official plugins first \
         (`cargo build -p rescope-iowait -p rescope-volume-count`; \
         `cargo nextest run --workspace` builds them too)",
        path.display()
    );
    path
}

/// POSTs with an empty body; the status code and body.
fn post(url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "5",
            "-X",
            "POST",
            "-w",
            "\n%{http_code}",
            url,
        ])
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn launch(hostname: &str, plugins_root: &Path, docker: bool) -> (Running, String) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_rescope"))
        .args([
            "launch",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--hostname",
            hostname,
            &format!("--docker={docker}"),
        ])
        .arg(format!("--plugins-root={}", plugins_root.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rescope launch starts");
    (Running(child), format!("http://127.0.0.1:{port}"))
}

fn start_plugin(binary: &Path, args: &[&str], hostname: &str) -> Running {
    let child = Command::new(binary)
        .args(args)
        .env("SCOPE_HOSTNAME", hostname)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("plugin starts");
    Running(child)
}

/// Polls `url` until `check` finds what it looks for, or fails after 30 s saying what
/// was last seen.
fn wait_for<T>(what: &str, url: &str, check: impl FnMut(&serde_json::Value) -> Option<T>) -> T {
    wait_within(Duration::from_secs(30), what, url, check)
}

/// [`wait_for`] with another limit.
fn wait_within<T>(
    limit: Duration,
    what: &str,
    url: &str,
    mut check: impl FnMut(&serde_json::Value) -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    let mut last = None;
    loop {
        if let Some(v) = get(url) {
            if let Some(found) = check(&v) {
                return found;
            }
            last = Some(v);
        }
        assert!(
            Instant::now() < deadline,
            "{what} never happened; last answer from {url}: {}",
            last.map(|v| v.to_string()).unwrap_or_else(|| "none".into())
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn plugin_ok(api: &serde_json::Value, id: &str) -> Option<()> {
    api["plugins"]
        .as_array()?
        .iter()
        .any(|p| p["id"] == id && p["status"] == "ok")
        .then_some(())
}

fn metric_value(details: &serde_json::Value, id: &str) -> Option<f64> {
    details["node"]["metrics"]
        .as_array()?
        .iter()
        .find(|m| m["id"] == id)?["samples"]
        .as_array()?
        .last()?["value"]
        .as_f64()
}

/// The offered control with this ID: (probe ID, node ID).
fn control(details: &serde_json::Value, id: &str) -> Option<(String, String)> {
    let c = details["node"]["controls"]
        .as_array()?
        .iter()
        .find(|c| c["id"] == id)?;
    Some((c["probeId"].as_str()?.into(), c["nodeId"].as_str()?.into()))
}

fn encode(id: &str) -> String {
    id.replace('%', "%25")
        .replace(';', "%3B")
        .replace('<', "%3C")
        .replace('>', "%3E")
        .replace('/', "%2F")
        .replace('+', "%2B")
}

#[test]
fn iowait_shows_in_host_details_and_its_control_switches_it_to_idle() {
    let binary = plugin_binary("rescope-iowait");
    let root = TempRoot::new("iowait-e2e");
    let host = "iowait-e2e";
    let plugins = root.0.display().to_string();
    let _plugin = start_plugin(&binary, &["--plugins-root", &plugins], host);
    let (_app, base) = launch(host, &root.0, false);
    let started = Instant::now();

    wait_for(
        "iowait listed with status ok in /api",
        &format!("{base}/api"),
        |api| plugin_ok(api, "iowait"),
    );
    println!("iowait listed in /api {:?} after launch", started.elapsed());
    let details_url = format!(
        "{base}/api/topology/hosts/{}",
        encode(&format!("{host};<host>"))
    );
    let iowait = wait_for(
        "the iowait metric in the host's details",
        &details_url,
        |d| metric_value(d, "iowait"),
    );
    assert!((0.0..=100.0).contains(&iowait), "a percentage: {iowait}");
    println!(
        "iowait metric in host details {:?} after launch",
        started.elapsed()
    );
    let details = get(&details_url).expect("details");
    let row = details["node"]["metrics"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["id"] == "iowait"))
        .expect("row");
    assert_eq!(row["label"], "IO wait");
    assert_eq!(row["format"], "percent");
    let (probe, node) = wait_for("the switch-to-idle control", &details_url, |d| {
        control(d, "iowait~switchToIdle")
    });
    assert_eq!(node, format!("{host};<host>"));

    let (status, body) = post(&format!(
        "{base}/api/control/{}/{}/iowait~switchToIdle",
        encode(&probe),
        encode(&node)
    ));
    assert_eq!(status, 200, "control answer: {body}");

    let switched = Instant::now();
    let idle = wait_for("the idle metric after the switch", &details_url, |d| {
        control(d, "iowait~switchToIOWait")?;
        metric_value(d, "idle")
    });
    assert!((0.0..=100.0).contains(&idle), "a percentage: {idle}");
    println!(
        "idle metric and switch-back control in the host's details {:?} after the control",
        switched.elapsed()
    );
    // Host nodes merge `active_controls` by union (protocol.md §3.3), so the old
    // control can stay offered while reports from before the switch are merged in.
    wait_within(
        Duration::from_secs(40),
        "the switch-to-idle control to go once the window has passed",
        &details_url,
        |d| control(d, "iowait~switchToIdle").is_none().then_some(()),
    );
    let details = get(&details_url).expect("details");
    assert!(control(&details, "iowait~switchToIOWait").is_some());
    println!(
        "switch-to-idle control gone {:?} after the control",
        switched.elapsed()
    );
}

struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.0]);
    }
}

#[test]
fn volume_count_shows_in_container_details() {
    let binary = plugin_binary("rescope-volume-count");
    if let Some(e) = docker_missing() {
        println!("skipped: no Docker engine answers on this machine (CI starts dockerd): {e}");
        return;
    }
    ensure_image().expect("the busybox test image");
    let root = TempRoot::new("volume-count-e2e");
    let bind = root.0.join("data");
    std::fs::create_dir_all(&bind).expect("mkdir");
    let cid = docker(&[
        "run",
        "-d",
        "--name",
        &format!("rescope-vc-e2e-{}", std::process::id()),
        "-v",
        &format!("{}:/data", bind.display()),
        "-v",
        "/cache",
        IMAGE,
        "sleep",
        "300",
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let _container = Container(cid.clone());

    let plugins = root.0.join("plugins");
    std::fs::create_dir_all(&plugins).expect("mkdir");
    let host = "volume-count-e2e";
    let _plugin = start_plugin(
        &binary,
        &["--plugins-root", &plugins.display().to_string()],
        host,
    );
    let (_app, base) = launch(host, &plugins, true);
    let started = Instant::now();

    wait_for(
        "volume-count listed with status ok in /api",
        &format!("{base}/api"),
        |api| plugin_ok(api, "volume-count"),
    );
    let details_url = format!(
        "{base}/api/topology/containers/{}",
        encode(&format!("{cid};<container>"))
    );
    let row = wait_for(
        "the volume count in the container's details",
        &details_url,
        |d| {
            d["node"]["metadata"]
                .as_array()?
                .iter()
                .find(|m| m["id"] == "volume_count")
                .cloned()
        },
    );
    println!(
        "volume count in the container's details {:?} after launch",
        started.elapsed()
    );
    assert_eq!(row["value"], "2", "{row}");
    assert_eq!(row["label"], "# Volumes", "{row}");
}
