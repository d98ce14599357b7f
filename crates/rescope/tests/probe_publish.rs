//! A standalone `rescope probe` publishing to a separate `rescope app`, both the real
//! binary, as an operator runs them: the app must show this host, this test's own
//! process and a TCP connection the test opened (with the test's pid on both ends),
//! and the probe's control channel must give a working host terminal.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{Running, expect_pipe_closed, free_port, read_pipe_until};

fn rescope(args: &[&str]) -> Running {
    Running(
        Command::new(env!("CARGO_BIN_EXE_rescope"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rescope starts"),
    )
}

async fn get_json(http: &reqwest::Client, url: &str) -> Option<serde_json::Value> {
    let response = http.get(url).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json().await.ok()
}

/// Polls `url` until `pick` finds what it wants in the answer.
async fn wait_for<T>(
    http: &reqwest::Client,
    url: &str,
    what: &str,
    pick: impl Fn(&serde_json::Value) -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(found) = get_json(http, url).await.as_ref().and_then(&pick) {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("timed out waiting for {what} at {url}");
}

/// Runs `host_exec` on `host` through the app; its JSON answer (with `pipe` when the
/// terminal opened).
async fn open_host_terminal(
    http: &reqwest::Client,
    base: &str,
    probe_id: &str,
    host: &str,
) -> serde_json::Value {
    http.post(format!(
        "{base}/api/control/{probe_id}/{host}%3B%3Chost%3E/host_exec"
    ))
    .send()
    .await
    .expect("POST")
    .json()
    .await
    .expect("json")
}

/// Waits for `host` in the app's raw report and checks that its probe defined no host
/// controls.
async fn expect_no_host_controls(http: &reqwest::Client, base: &str, host: &str) {
    let report = wait_for(http, &format!("{base}/api/report"), "a host", |r| {
        r["Host"]["nodes"][format!("{host};<host>")]
            .is_object()
            .then(|| r.clone())
    })
    .await;
    let controls = report["Host"]["controls"].as_object().map(|c| c.len());
    assert!(
        matches!(controls, None | Some(0)),
        "{}",
        report["Host"]["controls"]
    );
}

/// A probe publishing to an app on free ports; returns (app, probe, base URL).
fn start_pair(hostname: &str, probe_extra: &[&str]) -> (Running, Running, String) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let app = rescope(&["app", "--listen", &listen]);
    let url = format!("http://{listen}");
    let plugins = std::env::temp_dir().join(format!("rescope-probe-test-{}", std::process::id()));
    let plugins = plugins.to_string_lossy().to_string();
    let mut args = vec![
        "probe",
        url.as_str(),
        "--hostname",
        hostname,
        "--plugins-root",
        plugins.as_str(),
    ];
    // Docker is off unless the test says otherwise (the flag may be given once).
    if !probe_extra.iter().any(|a| a.starts_with("--docker=")) {
        args.push("--docker=false");
    }
    args.extend_from_slice(probe_extra);
    let probe = rescope(&args);
    (app, probe, url)
}

fn latest<'a>(node: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    node["latest"][key]["value"].as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_publishes_this_host_its_processes_and_connections_to_an_app() {
    // A connection whose two ends both belong to this test process.
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let server_port = listener.local_addr().expect("addr").port();
    let client = TcpStream::connect(("127.0.0.1", server_port)).expect("connect");
    let client_port = client.local_addr().expect("addr").port();
    let (_accepted, _) = listener.accept().expect("accept");
    let me = std::process::id().to_string();

    let (_app, _probe, base) = start_pair("publishtest", &[]);
    let http = reqwest::Client::new();

    let probes = wait_for(&http, &format!("{base}/api/probes"), "the probe", |v| {
        v.as_array().filter(|a| !a.is_empty()).cloned()
    })
    .await;
    assert_eq!(probes[0]["hostname"], "publishtest");

    let report_url = format!("{base}/api/report");
    let report = wait_for(&http, &report_url, "this test's connection", |r| {
        let endpoints = r["Endpoint"]["nodes"].as_object()?;
        let client_end = endpoints.get(&format!("publishtest;127.0.0.1;{client_port}"))?;
        let server_end = endpoints.get(&format!("publishtest;127.0.0.1;{server_port}"))?;
        let process = &r["Process"]["nodes"][format!("publishtest;{me}")];
        // CPU % needs two samples, so wait for the second collection too.
        let cpu = process["metrics"]["process_cpu_usage_percent"].is_object();
        (latest(client_end, "pid")? == me && latest(server_end, "pid")? == me && cpu)
            .then(|| r.clone())
    })
    .await;
    let client_end = &report["Endpoint"]["nodes"][format!("publishtest;127.0.0.1;{client_port}")];
    let adjacency: Vec<&str> = client_end["adjacency"]
        .as_array()
        .expect("the client end has adjacency")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        adjacency.contains(&format!("publishtest;127.0.0.1;{server_port}").as_str()),
        "the client end points at the server end: {adjacency:?}"
    );
    assert!(
        report["Host"]["nodes"]["publishtest;<host>"].is_object(),
        "the host node is there"
    );
    let process = &report["Process"]["nodes"][format!("publishtest;{me}")];
    assert_eq!(latest(process, "pid"), Some(me.as_str()));
    assert!(
        process["metrics"]["process_cpu_usage_percent"].is_object(),
        "{process}"
    );

    // Rendered views work from what the probe published.
    let hosts = get_json(&http, &format!("{base}/api/topology/hosts"))
        .await
        .expect("hosts view");
    assert_eq!(hosts["nodes"]["publishtest;<host>"]["label"], "publishtest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_terminal_opens_runs_a_command_resizes_and_closes() {
    let (_app, _probe, base) = start_pair("termtest", &[]);
    let http = reqwest::Client::new();
    let probe_id = wait_for(&http, &format!("{base}/api/probes"), "the probe", |v| {
        v.as_array()?.first()?["id"].as_str().map(str::to_string)
    })
    .await;
    let node = "termtest%3B%3Chost%3E";
    // The control channel opens right after the handshake; retry until it is there.
    let control_url = format!("{base}/api/control/{probe_id}/{node}/host_exec");
    let deadline = Instant::now() + Duration::from_secs(20);
    let opened: serde_json::Value = loop {
        let response = http.post(&control_url).send().await.expect("POST");
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        if status.is_success() && body["pipe"].is_string() {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "host_exec never worked: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(opened["raw_tty"], true);
    assert_eq!(opened["resize_tty_control"], "host_resize_exec_tty");
    let pipe = opened["pipe"].as_str().expect("pipe id").to_string();

    let ws_url = format!("{}/api/pipe/{pipe}", base.replace("http://", "ws://"));
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
        .await
        .expect("the browser end connects");

    let mut seen = String::new();
    // The shell computes the value, so seeing it proves the command ran.
    ws.send(Message::Binary("echo rescope-$((6*7))\n".into()))
        .await
        .expect("send");
    read_pipe_until(&mut ws, &mut seen, "rescope-42").await;

    let resize = http
        .post(format!(
            "{base}/api/control/{probe_id}/{node}/host_resize_exec_tty"
        ))
        .json(&serde_json::json!({"pipeID": pipe, "height": "41", "width": "123"}))
        .send()
        .await
        .expect("resize");
    let resized: serde_json::Value = resize.json().await.expect("json");
    assert!(resized.get("error").is_none(), "{resized}");
    ws.send(Message::Binary("stty size\n".into()))
        .await
        .expect("send");
    read_pipe_until(&mut ws, &mut seen, "41 123").await;

    // The shell's pid, to check the probe kills it when the browser closes the pipe.
    ws.send(Message::Binary("echo P2D=$$ E$((2+2))ND\n".into()))
        .await
        .expect("send");
    read_pipe_until(&mut ws, &mut seen, "E4ND").await;
    let pid: u32 = seen
        .rsplit("P2D=")
        .next()
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pid in {seen:?}"));
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());

    let deleted = http
        .delete(format!("{base}/api/pipe/{pipe}"))
        .send()
        .await
        .expect("DELETE");
    assert!(deleted.status().is_success());
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        // A zombie is reaped by the probe right after the kill.
        let mut stat = String::new();
        let _ = std::fs::File::open(format!("/proc/{pid}/stat"))
            .and_then(|mut f| f.read_to_string(&mut stat));
        assert!(
            Instant::now() < deadline,
            "the shell {pid} outlived its pipe: {stat}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exiting_the_shell_closes_the_browser_end() {
    let (_app, _probe, base) = start_pair("exittest", &[]);
    let http = reqwest::Client::new();
    let probe_id = wait_for(&http, &format!("{base}/api/probes"), "the probe", |v| {
        v.as_array()?.first()?["id"].as_str().map(str::to_string)
    })
    .await;
    let url = format!("{base}/api/control/{probe_id}/exittest%3B%3Chost%3E/host_exec");
    let deadline = Instant::now() + Duration::from_secs(20);
    let pipe = loop {
        let body: serde_json::Value = http
            .post(&url)
            .send()
            .await
            .expect("POST")
            .json()
            .await
            .unwrap_or_default();
        if let Some(p) = body["pipe"].as_str() {
            break p.to_string();
        }
        assert!(Instant::now() < deadline, "host_exec never worked: {body}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let ws_url = format!("{}/api/pipe/{pipe}", base.replace("http://", "ws://"));
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
        .await
        .expect("connects");
    ws.send(Message::Binary("exit\n".into()))
        .await
        .expect("send");
    expect_pipe_closed(&mut ws).await;
    // The app now answers 404 for the pipe: it is closed for good.
    let check = http
        .get(format!("{base}/api/pipe/{pipe}/check"))
        .send()
        .await
        .expect("check");
    assert_eq!(check.status(), reqwest::StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_controls_means_no_terminal_and_no_control_definitions() {
    let (_app, _probe, base) = start_pair("nocontrols", &["--no-controls=true"]);
    let http = reqwest::Client::new();
    let probe_id = wait_for(&http, &format!("{base}/api/probes"), "the probe", |v| {
        v.as_array()?.first()?["id"].as_str().map(str::to_string)
    })
    .await;
    expect_no_host_controls(&http, &base, "nocontrols").await;
    let response = http
        .post(format!(
            "{base}/api/control/{probe_id}/nocontrols%3B%3Chost%3E/host_exec"
        ))
        .send()
        .await
        .expect("POST");
    assert!(
        !response.status().is_success() || {
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            body["pipe"].is_null()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_read_only_offers_no_controls_and_refuses_a_terminal() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _launch = rescope(&[
        "launch",
        "--listen",
        &listen,
        "--hostname",
        "readonly",
        "--docker=false",
        "--read-only",
    ]);
    let base = format!("http://{listen}");
    let http = reqwest::Client::new();
    // The built-in probe offers nothing, so even the raw report has no controls.
    expect_no_host_controls(&http, &base, "readonly").await;
    let probe_id = wait_for(&http, &format!("{base}/api/probes"), "the probe", |v| {
        v.as_array()?.first()?["id"].as_str().map(str::to_string)
    })
    .await;
    let response = http
        .post(format!(
            "{base}/api/control/{probe_id}/readonly%3B%3Chost%3E/host_exec"
        ))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 403);
    let message: serde_json::Value = response.json().await.expect("json");
    assert!(
        message.as_str().is_some_and(|m| m.contains("read-only")),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_opens_a_host_terminal_without_a_websocket_to_itself() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let plugins = std::env::temp_dir().join(format!("rescope-launch-term-{}", std::process::id()));
    let _launch = rescope(&[
        "launch",
        "--listen",
        &listen,
        "--hostname",
        "launchterm",
        "--docker=false",
        "--plugins-root",
        &plugins.to_string_lossy(),
    ]);
    let base = format!("http://{listen}");
    let http = reqwest::Client::new();
    let probe_id = wait_for(&http, &format!("{base}/api/probes"), "the probe", |v| {
        v.as_array()?.first()?["id"].as_str().map(str::to_string)
    })
    .await;
    let opened = open_host_terminal(&http, &base, &probe_id, "launchterm").await;
    let pipe = opened["pipe"]
        .as_str()
        .unwrap_or_else(|| panic!("{opened}"));
    let ws_url = format!("ws://{listen}/api/pipe/{pipe}");
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
        .await
        .expect("connects");
    ws.send(Message::Binary("echo launch-$((5*5))\n".into()))
        .await
        .expect("send");
    read_pipe_until(&mut ws, &mut String::new(), "launch-25").await;
    ws.send(Message::Binary("exit\n".into()))
        .await
        .expect("send");
    expect_pipe_closed(&mut ws).await;
}

/// `scripts/build-image.sh` packages this build; the probe then runs in a container
/// the way docs/deploy.md says, and must see the host's processes and open a shell in
/// the host's namespaces, not the container's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_container_image_probes_the_host_and_opens_a_host_shell() {
    if let Some(why) = common::docker_missing() {
        eprintln!("SKIP: no Docker engine ({why}); the image test needs one");
        return;
    }
    let tag = format!("rescope-test/rescope:test-{}", std::process::id());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/build-image.sh");
    let built = Command::new(script)
        .args(["--binary", env!("CARGO_BIN_EXE_rescope"), "--tag", &tag])
        .output()
        .expect("runs build-image.sh");
    assert!(
        built.status.success(),
        "build-image.sh failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    struct Cleanup(String, String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = common::docker(&["rm", "-f", &self.0]);
            let _ = common::docker(&["rmi", "-f", &self.1]);
        }
    }
    let name = format!("rescope-image-test-{}", std::process::id());
    let _cleanup = Cleanup(name.clone(), tag.clone());

    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _app = rescope(&["app", "--listen", &listen]);
    let base = format!("http://{listen}");
    let run = common::docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--pid=host",
        "--net=host",
        "--uts=host",
        "--cap-add",
        "SYS_ADMIN",
        "--cap-add",
        "SYS_PTRACE",
        "--cap-add",
        "NET_ADMIN",
        "--cap-add",
        "DAC_READ_SEARCH",
        "-v",
        "/sys/kernel/tracing:/sys/kernel/tracing",
        "-v",
        "/var/run/docker.sock:/var/run/docker.sock",
        &tag,
        "probe",
        &base,
    ]);
    run.unwrap_or_else(|e| panic!("the probe container did not start: {e}"));

    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_string();
    let me = std::process::id();
    let http = reqwest::Client::new();
    let logs = || common::docker(&["logs", &name]).unwrap_or_else(|e| e);
    let node = wait_for(
        &http,
        &format!("{base}/api/topology/processes?unconnected=show"),
        "this test's own process, seen from the container",
        |v| v["nodes"].get(format!("{host};{me}")).cloned(),
    )
    .await;
    assert_eq!(node["labelMinor"], format!("{host} ({me})"), "{}", logs());

    let probe_id = wait_for(&http, &format!("{base}/api/probes"), "the probe", |v| {
        v.as_array()?.first()?["id"].as_str().map(str::to_string)
    })
    .await;
    let opened = open_host_terminal(&http, &base, &probe_id, &host).await;
    let pipe = opened["pipe"]
        .as_str()
        .unwrap_or_else(|| panic!("{opened}; probe log: {}", logs()));
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{listen}/api/pipe/{pipe}"))
        .await
        .expect("connects");
    ws.send(Message::Binary(
        "echo MNT=$(readlink /proc/self/ns/mnt) E$((3+4))ND\n".into(),
    ))
    .await
    .expect("send");
    let mut seen = String::new();
    read_pipe_until(&mut ws, &mut seen, "E7ND").await;
    let ours = std::fs::read_link("/proc/self/ns/mnt").expect("our mount namespace");
    assert!(
        seen.contains(&format!("MNT={}", ours.display())),
        "the shell is not in the host's mount namespace ({}); saw {seen:?}",
        ours.display()
    );
}

/// What the probe cannot do is shown on the host, in plain words, not only logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_docker_engine_is_shown_in_the_hosts_details() {
    let missing =
        std::env::temp_dir().join(format!("rescope-no-docker-{}.sock", std::process::id()));
    let docker_host = format!("unix://{}", missing.display());
    let (_app, _probe, base) = start_pair(
        "nodocker",
        &["--docker=true", "--docker-host", &docker_host],
    );
    let http = reqwest::Client::new();
    let row = wait_for(
        &http,
        &format!("{base}/api/topology/hosts/nodocker%3B%3Chost%3E"),
        "a Probe problems table",
        |d| {
            let table = d["node"]["tables"]
                .as_array()?
                .iter()
                .find(|t| t["label"] == "Probe problems")?;
            table["rows"]
                .as_array()?
                .iter()
                .find(|r| r["entries"]["label"] == "Docker")
                .cloned()
        },
    )
    .await;
    let text = row["entries"]["value"].as_str().unwrap_or_default();
    assert!(
        text.contains("not reachable")
            && text.contains(&*missing.to_string_lossy())
            && text.contains("containers"),
        "{row}"
    );
}
