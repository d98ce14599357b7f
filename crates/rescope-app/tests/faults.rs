//! Faults the app must survive, over real HTTP on 127.0.0.1: a probe that hangs up in
//! the middle of a report, reports stamped decades ahead, a websocket client that
//! never reads, and a control for a probe that is gone. Each time the app answers
//! clearly, keeps what it had and goes on serving everyone else.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rescope_app::{AppConfig, Collector};
use rescope_report::{GoTime, Report, TopologyKind, codec};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

fn fixture(rel: &str) -> Report {
    let bytes = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/scope")
            .join(rel),
    )
    .expect("fixture");
    codec::decode(&bytes).expect("fixture decodes")
}

struct App {
    base: String,
    addr: SocketAddr,
    _stop: tokio::sync::watch::Sender<bool>,
}

async fn start(window: Duration) -> App {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut config = AppConfig::new(addr);
    config.hostname = "testhost".into();
    config.window = window;
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

async fn publish(app: &App, probe: &str, report: &Report) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/api/report", app.base))
        .header("Content-Type", "application/json")
        .header("X-Scope-Probe-ID", probe)
        .body(codec::to_json(report))
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

async fn get_json(app: &App, path: &str) -> Value {
    reqwest::get(format!("{}{path}", app.base))
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

fn probe_ids(probes: &Value) -> Vec<String> {
    probes
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The value of a host's metadata row `id` in its details.
async fn host_row(app: &App, id: &str) -> Option<String> {
    let details = get_json(app, "/api/topology/hosts/vm%3B%3Chost%3E").await;
    details["node"]["metadata"]
        .as_array()?
        .iter()
        .find(|row| row["id"] == id)
        .and_then(|row| row["value"].as_str().map(str::to_string))
}

/// Waits for the host's row `id` to read `want`. A request may be answered from the
/// render of the previous report while the new one is being rendered, so the new
/// value can take a moment to show.
async fn wait_host_row(app: &App, id: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = host_row(app, id).await;
        if seen.as_deref() == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "host row {id} is {seen:?}, expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_probe_that_hangs_up_mid_report_changes_nothing() {
    let app = start(Duration::from_secs(15)).await;
    let report = fixture("published/idle-full.msgpack.gz");
    assert_eq!(publish(&app, "steady", &report).await, 200);
    let body = codec::to_json(&report).into_bytes();

    // With a length that is never reached, and as a chunked body cut off mid-chunk.
    let cut_short = format!(
        "POST /api/report HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         X-Scope-Probe-ID: cut-short\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let chunked = "POST /api/report HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         X-Scope-Probe-ID: cut-chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
        .to_string();
    for (head, chunk) in [(cut_short, false), (chunked, true)] {
        let mut stream = tokio::net::TcpStream::connect(app.addr)
            .await
            .expect("connect");
        stream.write_all(head.as_bytes()).await.expect("head");
        if chunk {
            stream
                .write_all(format!("{:x}\r\n", body.len()).as_bytes())
                .await
                .expect("chunk size");
        }
        stream
            .write_all(&body[..body.len() / 2])
            .await
            .expect("half the body");
        stream.shutdown().await.expect("hang up");
        drop(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let probes = probe_ids(&get_json(&app, "/api/probes").await);
    assert_eq!(
        probes,
        vec!["steady".to_string()],
        "only the whole report counts"
    );
    let hosts = get_json(&app, "/api/topology/hosts").await;
    assert!(hosts["nodes"].get("vm;<host>").is_some(), "{hosts}");
}

#[tokio::test]
async fn reports_stamped_in_the_future_neither_win_over_newer_reports_nor_outlive_the_window() {
    let app = start(Duration::from_secs(2)).await;
    let present = fixture("published/idle-full.msgpack.gz");
    let present_os = present
        .topology(TopologyKind::Host)
        .nodes
        .get("vm;<host>")
        .and_then(|n| n.latest.get("os"))
        .map(|e| e.value.to_string())
        .expect("the fixture's host has an OS");

    // The same report from a probe whose clock is 70 years ahead.
    let mut future = present.clone();
    let ahead = GoTime::parse_rfc3339("2096-01-01T00:00:00Z").expect("time");
    for (_, topology) in future.topologies_mut() {
        for node in topology.nodes.values_mut() {
            for (key, entry) in node.latest.iter_mut() {
                entry.timestamp = ahead;
                if key.as_ref() == "os" {
                    entry.value = "from-the-future".into();
                }
            }
        }
    }
    assert_eq!(publish(&app, "skewed", &future).await, 200);
    wait_host_row(&app, "os", "from-the-future").await;

    // The probe's next full report is its state now, whatever the stamps say.
    assert_eq!(publish(&app, "skewed", &present).await, 200);
    wait_host_row(&app, "os", &present_os).await;

    // And a probe that falls silent leaves after the window of the app's clock.
    assert_eq!(publish(&app, "skewed", &future).await, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let probes = probe_ids(&get_json(&app, "/api/probes").await);
        let hosts = get_json(&app, "/api/topology/hosts").await;
        if probes.is_empty() && hosts["nodes"].as_object().is_some_and(|n| n.is_empty()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a future-stamped report outlived the 2 s window: {probes:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `base` with four copies of every process, renamed for round `i`, so each round's
/// view differs from the last in every node (large diffs fill a stalled socket fast).
fn renamed(base: &Report, i: usize) -> Report {
    let mut report = base.clone();
    let processes = &mut report.topology_mut(TopologyKind::Process).nodes;
    let old = std::mem::take(processes);
    for (id, node) in old {
        for copy in 0..4 {
            let mut node = node.clone();
            let new_id: rescope_report::Str = format!("{id}-{i}-{copy}").into();
            node.id = new_id.clone();
            processes.insert(new_id, node);
        }
    }
    report
}

fn open_clients(metrics: &str) -> Option<i64> {
    metrics
        .lines()
        .find(|l| l.starts_with("rescope_app_websocket_clients "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_client_that_never_reads_is_dropped_and_others_keep_their_updates() {
    let app = start(Duration::from_secs(15)).await;
    let base = fixture("published/load-full.msgpack.gz");
    assert_eq!(publish(&app, "p", &renamed(&base, 0)).await, 200);

    // A client with a tiny receive buffer that reads nothing after the handshake.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let stream = socket.connect(app.addr).await.expect("connect");
    let url = format!("ws://{}/api/topology/processes/ws", app.addr);
    let (stuck, _) = tokio_tungstenite::client_async(url.as_str(), stream)
        .await
        .expect("stuck client's handshake");
    // A client that reads.
    let (mut reader, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("reading client connects");

    let metrics_url = format!("{}/metrics", app.base);
    // The kernel buffers up to 4 MiB for the stalled socket; then the app's write
    // times out (10 s) and it drops the client.
    let deadline = Instant::now() + Duration::from_secs(150);
    let mut round = 1;
    let mut updates = 0;
    loop {
        assert_eq!(publish(&app, "p", &renamed(&base, round)).await, 200);
        round += 1;
        // The reading client keeps getting the view's changes.
        while let Ok(Some(Ok(_))) =
            tokio::time::timeout(Duration::from_millis(100), reader.next()).await
        {
            updates += 1;
        }
        let metrics = reqwest::get(&metrics_url)
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        if open_clients(&metrics) == Some(1) {
            break; // the stuck client is gone, the reader is still there
        }
        assert!(
            Instant::now() < deadline,
            "a client that never reads was never dropped (open clients: {:?})",
            open_clients(&metrics)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(updates >= 3, "the reading client got {updates} messages");
    drop(stuck);
    // The app still answers.
    let hosts = get_json(&app, "/api/topology/hosts").await;
    assert!(hosts["nodes"].as_object().is_some_and(|n| !n.is_empty()));
}

#[tokio::test]
async fn a_control_for_a_probe_that_is_gone_gets_a_clear_error() {
    let app = start(Duration::from_secs(15)).await;
    let r = reqwest::Client::new()
        .post(format!(
            "{}/api/control/0123456789abcdef/vm%3B%3Chost%3E/host_exec",
            app.base
        ))
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let body = r.text().await.expect("body");
    assert!((400..500).contains(&status), "{status} {body}");
    assert!(
        body.contains("0123456789abcdef") && body.contains("not connected"),
        "{body}"
    );
}
