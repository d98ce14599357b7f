//! The endpoint reporter against the real kernel: sockets opened by this test, walked
//! by a real process walker, dumped with sock_diag.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use rescope_probe::config::ProbeConfig;
use rescope_probe::endpoint::EndpointReporter;
use rescope_probe::reporter::{Reporter, Tick};
use rescope_probe::walker::ProcessWalker;
use rescope_report::{GoTime, Node, Report, TopologyKind};

const HOST: &str = "testhost";

struct Probe {
    walker: Arc<Mutex<ProcessWalker>>,
    reporter: EndpointReporter,
}

impl Probe {
    fn new(conntrack: bool) -> Self {
        let mut config = ProbeConfig::new(HOST);
        config.conntrack = conntrack;
        let walker = Arc::new(Mutex::new(ProcessWalker::new("/proc", false)));
        let reporter = EndpointReporter::new(&config, Some(walker.clone()));
        Probe { walker, reporter }
    }

    fn tick(&mut self) -> Report {
        let now = GoTime::now();
        let procs = self.walker.lock().expect("walker").walk(now).expect("walk");
        let tick = Tick {
            now,
            procs: Arc::new(procs),
        };
        self.reporter.report(&tick).expect("endpoint report")
    }
}

fn node<'a>(report: &'a Report, id: &str) -> &'a Node {
    let endpoints = &report[TopologyKind::Endpoint];
    endpoints.nodes.get(id).unwrap_or_else(|| {
        let ids: Vec<&str> = endpoints
            .nodes
            .keys()
            .map(|k| k.as_str())
            .filter(|k| k.contains("127.0.0.1") || k.contains("::1"))
            .collect();
        panic!("no endpoint {id}; loopback endpoints: {ids:?}")
    })
}

fn latest<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    node.latest_value(key).map(|v| v.as_str())
}

fn assert_owned_by(node: &Node, pid: u32) {
    assert_eq!(
        latest(node, "pid"),
        Some(pid.to_string().as_str()),
        "{node:?}"
    );
    assert_eq!(latest(node, "host_node_id"), Some("testhost;<host>"));
    assert_eq!(node.topology.as_str(), "endpoint");
}

/// A listener, a client connected to it and the accepted end, all in this process.
fn loopback_pair(addr: &str) -> std::io::Result<(TcpListener, TcpStream, TcpStream)> {
    let listener = TcpListener::bind(addr)?;
    let client = TcpStream::connect(listener.local_addr()?)?;
    let (accepted, _) = listener.accept()?;
    Ok((listener, client, accepted))
}

#[test]
fn a_loopback_connection_of_this_process_gives_both_endpoints_with_its_pid() {
    let (listener, client, _accepted) = loopback_pair("127.0.0.1:0").expect("loopback");
    let server_port = listener.local_addr().expect("addr").port();
    let client_port = client.local_addr().expect("addr").port();
    let mut probe = Probe::new(false);
    let report = probe.tick();

    let me = std::process::id();
    let server_id = format!("{HOST};127.0.0.1;{server_port}");
    let client_id = format!("{HOST};127.0.0.1;{client_port}");
    let server = node(&report, &server_id);
    let client_node = node(&report, &client_id);
    assert_owned_by(server, me);
    assert_owned_by(client_node, me);
    assert!(
        client_node.adjacency.contains(&server_id),
        "client → server: {client_node:?}"
    );
    assert!(
        !server.adjacency.contains(&client_id),
        "the server does not point back: {server:?}"
    );
    // The listening socket alone makes no node.
    assert_eq!(
        report[TopologyKind::Endpoint]
            .nodes
            .keys()
            .filter(|k| k.ends_with(&format!(";{server_port}")))
            .count(),
        1
    );

    // The next tick reports the same (IDs are cached across ticks).
    let again = probe.tick();
    assert_owned_by(node(&again, &server_id), me);
    assert!(node(&again, &client_id).adjacency.contains(&server_id));
}

#[test]
fn an_ipv6_loopback_connection_is_reported_too() {
    let (listener, client, _accepted) = match loopback_pair("[::1]:0") {
        Ok(pair) => pair,
        Err(e) => {
            println!("SKIPPED: this machine has no IPv6 loopback ({e})");
            return;
        }
    };
    let server_port = listener.local_addr().expect("addr").port();
    let client_port = client.local_addr().expect("addr").port();
    let report = Probe::new(false).tick();
    let me = std::process::id();
    let server_id = format!("{HOST};::1;{server_port}");
    let client_node = node(&report, &format!("{HOST};::1;{client_port}"));
    assert_owned_by(node(&report, &server_id), me);
    assert_owned_by(client_node, me);
    assert!(client_node.adjacency.contains(&server_id));
}

#[test]
fn sockets_opened_after_the_walk_are_attributed_on_demand() {
    let mut probe = Probe::new(false);
    // The walker has seen this process (and listed its fds) before the sockets exist.
    probe.tick();
    let now = GoTime::now();
    let procs = probe
        .walker
        .lock()
        .expect("walker")
        .walk(now)
        .expect("walk");
    let (listener, client, _accepted) = loopback_pair("127.0.0.1:0").expect("loopback");
    let tick = Tick {
        now,
        procs: Arc::new(procs),
    };
    let report = probe.reporter.report(&tick).expect("report");
    let me = std::process::id();
    let server_port = listener.local_addr().expect("addr").port();
    let client_port = client.local_addr().expect("addr").port();
    assert_owned_by(
        node(&report, &format!("{HOST};127.0.0.1;{server_port}")),
        me,
    );
    assert_owned_by(
        node(&report, &format!("{HOST};127.0.0.1;{client_port}")),
        me,
    );
}

#[test]
fn a_connection_waiting_to_be_accepted_belongs_to_the_listener() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let server_port = listener.local_addr().expect("addr").port();
    let client = TcpStream::connect(("127.0.0.1", server_port)).expect("connect");
    let client_port = client.local_addr().expect("addr").port();
    let report = Probe::new(false).tick();
    let me = std::process::id();
    assert_owned_by(
        node(&report, &format!("{HOST};127.0.0.1;{server_port}")),
        me,
    );
    assert_owned_by(
        node(&report, &format!("{HOST};127.0.0.1;{client_port}")),
        me,
    );
}

/// Kills and reaps a child process when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_connection_between_two_local_processes_carries_both_pids() {
    if Command::new("bash").arg("-c").arg("true").status().is_err() {
        println!("SKIPPED: bash is needed to open a connection from another process");
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let server_port = listener.local_addr().expect("addr").port();
    // bash's /dev/tcp opens a client connection from a separate process.
    let child = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "exec 3<>/dev/tcp/127.0.0.1/{server_port} && echo connected && exec sleep 30"
        ))
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn bash");
    let mut child = ChildGuard(child);
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert_eq!(line.trim(), "connected");
    let (_accepted, peer) = listener.accept().expect("accept");

    let report = Probe::new(false).tick();
    let server_id = format!("{HOST};127.0.0.1;{server_port}");
    let client = node(&report, &format!("{HOST};127.0.0.1;{}", peer.port()));
    assert_owned_by(node(&report, &server_id), std::process::id());
    assert_owned_by(client, child.0.id());
    assert!(client.adjacency.contains(&server_id));
}

#[test]
fn connections_opened_and_closed_between_ticks_are_seen_at_the_next_tick() {
    let (listener, _client, _accepted) = loopback_pair("127.0.0.1:0").expect("loopback");
    let server_port = listener.local_addr().expect("addr").port();
    let server_id = format!("{HOST};127.0.0.1;{server_port}");
    let mut probe = Probe::new(false);
    probe.tick();
    // Nothing of ours changed: this tick may reuse the last dump and graph.
    let quiet = probe.tick();
    assert_owned_by(node(&quiet, &server_id), std::process::id());

    let client = TcpStream::connect(("127.0.0.1", server_port)).expect("connect");
    let (accepted, _) = listener.accept().expect("accept");
    let client_id = format!(
        "{HOST};127.0.0.1;{}",
        client.local_addr().expect("addr").port()
    );
    let opened = probe.tick();
    assert!(node(&opened, &client_id).adjacency.contains(&server_id));

    drop(client);
    drop(accepted);
    let mut closed = probe.tick();
    // Closing takes a few packets on loopback; give it a moment if needed.
    for _ in 0..20 {
        if !closed[TopologyKind::Endpoint]
            .nodes
            .contains_key(client_id.as_str())
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        closed = probe.tick();
    }
    assert!(
        !closed[TopologyKind::Endpoint]
            .nodes
            .contains_key(client_id.as_str()),
        "the closed connection is gone"
    );
}
