//! `rescope launch` as a user runs it: the real binary, probing this machine, serving
//! Scope's API on a loopback port.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{Running, free_port, get};

#[test]
fn launch_shows_this_host_and_its_own_process() {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_rescope"))
        .args([
            "launch",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--hostname",
            "launchtest",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    let pid = child.id();
    let _guard = Running(child);
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut found = None;
    while Instant::now() < deadline {
        if let Some(procs) = get(&format!("{base}/api/topology/processes"))
            && let Some(node) = procs["nodes"].get(format!("launchtest;{pid}"))
        {
            found = Some(node.clone());
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let node = found.expect("rescope's own process appears in the processes view");
    assert_eq!(node["labelMinor"], format!("launchtest ({pid})"));
    assert!(
        node["label"]
            .as_str()
            .is_some_and(|l| l.ends_with("rescope"))
    );
    let hosts = get(&format!("{base}/api/topology/hosts")).expect("hosts");
    assert_eq!(hosts["nodes"]["launchtest;<host>"]["label"], "launchtest");
    let details = get(&format!(
        "{base}/api/topology/hosts/launchtest%3B%3Chost%3E"
    ))
    .expect("details");
    let children: Vec<&str> = details["node"]["children"]
        .as_array()
        .expect("children")
        .iter()
        .filter_map(|g| g["label"].as_str())
        .collect();
    assert!(children.contains(&"Processes"), "{children:?}");
}

#[test]
fn a_python_plugin_shows_up_in_the_api_and_host_details() {
    if Command::new("python3").arg("--version").output().is_err() {
        println!("skipped: python3 is not installed");
        return;
    }
    let dir = std::env::temp_dir().join(format!("rescope-plugins-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let plugin_script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/plugins/python/loadavg.py"
    );
    let plugin = Command::new("python3")
        .arg(plugin_script)
        .env("PLUGINS_ROOT", &dir)
        .env("SCOPE_HOSTNAME", "plugintest")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("plugin starts");
    let _plugin = Running(plugin);
    let port = free_port();
    let app = Command::new(env!("CARGO_BIN_EXE_rescope"))
        .args([
            "launch",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--hostname",
            "plugintest",
        ])
        .arg(format!("--plugins-root={}", dir.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    let _app = Running(app);
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut listed = false;
    let mut metric = None;
    while Instant::now() < deadline && (!listed || metric.is_none()) {
        if let Some(api) = get(&format!("{base}/api")) {
            listed = api["plugins"].as_array().is_some_and(|p| {
                p.iter()
                    .any(|s| s["id"] == "loadavg" && s["status"] == "ok")
            });
        }
        if let Some(d) = get(&format!(
            "{base}/api/topology/hosts/plugintest%3B%3Chost%3E"
        )) {
            metric = d["node"]["metrics"]
                .as_array()
                .and_then(|m| m.iter().find(|m| m["id"] == "loadavg_5").cloned());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(listed, "the plugin is listed with status ok in /api");
    let metric = metric.expect("the plugin's metric is in the host's details");
    assert_eq!(metric["label"], "Load (5m)");
    assert!(
        metric["samples"].as_array().is_some_and(|s| !s.is_empty()),
        "with samples"
    );
}
