//! Connections inside another network namespace (what a container has), seen from the
//! host: a real namespace made with `unshare`, sockets opened inside it, and (when
//! `nft` is present) a DNAT rule so conntrack and the NAT copies can be checked.
//!
//! These tests need root (to create and enter namespaces); without it they print why
//! and stop.

mod support;
use support::tick;

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use rescope_probe::config::ProbeConfig;
use rescope_probe::endpoint::EndpointReporter;
use rescope_probe::sys::conntrack::{Conntrack, ConntrackError, ConntrackTracker};
use rescope_probe::sys::netns::{NetnsRunner, NetnsTarget};
use rescope_probe::walker::ProcessWalker;
use rescope_report::{Node, Report, TopologyKind};

const HOST: &str = "testhost";

/// A process sleeping in a fresh network namespace (loopback up), killed on drop.
struct Namespace {
    child: Child,
    inode: u64,
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn missing(tool: &str) -> bool {
    !Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool} >/dev/null"))
        .status()
        .is_ok_and(|s| s.success())
}

/// Why these tests cannot run here, if they cannot.
fn cannot_run() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root to create and enter network namespaces".into());
    }
    for tool in ["unshare", "ip"] {
        if missing(tool) {
            return Some(format!("needs `{tool}` to set up a network namespace"));
        }
    }
    None
}

/// Starts `sh -c "<setup> && echo ready && exec sleep 60"` in a new network namespace.
fn namespace(setup: &str) -> Namespace {
    let script = format!("ip link set lo up && {setup} echo ready && exec sleep 60");
    let child = Command::new("unshare")
        .args(["--net", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn unshare");
    let mut ns = Namespace { child, inode: 0 };
    let mut line = String::new();
    BufReader::new(ns.child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert_eq!(line.trim(), "ready", "namespace setup failed");
    let path = format!("/proc/{}/ns/net", ns.child.id());
    ns.inode = std::fs::metadata(&path).expect("netns").ino();
    let ours = std::fs::metadata("/proc/self/ns/net")
        .expect("own netns")
        .ino();
    assert_ne!(ns.inode, ours, "a new namespace");
    ns
}

fn target(ns: &Namespace) -> NetnsTarget {
    NetnsTarget::of_pid(Path::new("/proc"), ns.child.id(), Some(ns.inode))
}

fn probe(conntrack: bool) -> (Arc<Mutex<ProcessWalker>>, EndpointReporter) {
    let mut config = ProbeConfig::new(HOST);
    config.conntrack = conntrack;
    let walker = Arc::new(Mutex::new(ProcessWalker::new("/proc", false)));
    let reporter = EndpointReporter::new(&config, Some(walker.clone()));
    (walker, reporter)
}

fn node<'a>(report: &'a Report, id: &str) -> &'a Node {
    let endpoints = &report[TopologyKind::Endpoint];
    endpoints.nodes.get(id).unwrap_or_else(|| {
        let ids: Vec<&str> = endpoints
            .nodes
            .keys()
            .map(|k| k.as_str())
            .filter(|k| k.starts_with(HOST))
            .collect();
        panic!("no endpoint {id}; host-scoped endpoints: {ids:?}")
    })
}

fn pid_of(node: &Node) -> Option<&str> {
    node.latest_value("pid").map(|v| v.as_str())
}

#[test]
fn loopback_connections_inside_a_namespace_are_scoped_by_its_inode() {
    if let Some(why) = cannot_run() {
        println!("SKIPPED: {why}");
        return;
    }
    let ns = namespace("");
    // Sockets created by this process, but inside the namespace: they belong to it.
    let mut runner = NetnsRunner::new();
    let (listener, client, accepted) = runner
        .run_in(&target(&ns), || {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            let client = TcpStream::connect(listener.local_addr()?)?;
            let (accepted, _) = listener.accept()?;
            Ok::<_, std::io::Error>((listener, client, accepted))
        })
        .expect("enter namespace")
        .expect("sockets inside the namespace");
    let server_port = listener.local_addr().expect("addr").port();
    let client_port = client.local_addr().expect("addr").port();

    let (walker, mut reporter) = probe(false);
    let report = tick(&walker, &mut reporter);
    let scope = format!("{HOST}-{}", ns.inode);
    let server_id = format!("{scope};127.0.0.1;{server_port}");
    let client_id = format!("{scope};127.0.0.1;{client_port}");
    let me = std::process::id().to_string();
    let server = node(&report, &server_id);
    let client_node = node(&report, &client_id);
    assert_eq!(pid_of(server), Some(me.as_str()));
    assert_eq!(pid_of(client_node), Some(me.as_str()));
    assert_eq!(
        server.latest_value("host_node_id").map(|v| v.as_str()),
        Some("testhost;<host>")
    );
    assert!(
        client_node.adjacency.contains(&server_id),
        "{client_node:?}"
    );
    // Nothing of this connection leaks into the host's loopback scope.
    for port in [server_port, client_port] {
        let host_scoped = format!("{HOST};127.0.0.1;{port}");
        if let Some(n) = report[TopologyKind::Endpoint]
            .nodes
            .get(host_scoped.as_str())
        {
            assert!(
                !n.adjacency.contains(&server_id) && !client_node.adjacency.contains(&host_scoped),
                "a host connection on the same port must not be mixed up: {n:?}"
            );
        }
    }

    // The namespace goes away: its sockets are released and the next tick is clean.
    drop((listener, client, accepted));
    drop(ns);
    let report = tick(&walker, &mut reporter);
    assert!(
        !report[TopologyKind::Endpoint]
            .nodes
            .keys()
            .any(|k| k.starts_with(&scope)),
        "endpoints of a vanished namespace are gone"
    );
}

#[test]
fn conntrack_in_a_namespace_sees_the_flow_and_dnat_gives_a_copy() {
    if let Some(why) = cannot_run() {
        println!("SKIPPED: {why}");
        return;
    }
    if missing("nft") {
        println!("SKIPPED: needs `nft` to add a DNAT rule inside the test namespace");
        return;
    }
    // Inside the namespace: connections to 127.0.0.1:9999 are rewritten to :8080.
    // The nat table also turns conntrack on in that namespace (and only there).
    let ns = namespace(
        "nft add table ip rescope_test && \
         nft 'add chain ip rescope_test out { type nat hook output priority -100; policy accept; }' && \
         nft add rule ip rescope_test out tcp dport 9999 dnat to 127.0.0.1:8080 &&",
    );
    let mut runner = NetnsRunner::new();
    let (listener, client, accepted) = runner
        .run_in(&target(&ns), || {
            let listener = TcpListener::bind("127.0.0.1:8080")?;
            let client = TcpStream::connect("127.0.0.1:9999")?;
            let (accepted, _) = listener.accept()?;
            Ok::<_, std::io::Error>((listener, client, accepted))
        })
        .expect("enter namespace")
        .expect("sockets inside the namespace");
    let client_port = client.local_addr().expect("addr").port();

    // A real conntrack dump of that namespace has the flow, both tuples.
    let flows = runner
        .run_in(&target(&ns), || {
            let mut ct = Conntrack::open()?;
            let mut flows = Vec::new();
            ct.dump_tcp(&mut flows)?;
            Ok::<_, rescope_probe::sys::sockdiag::NetlinkError>(flows)
        })
        .expect("enter namespace");
    let flows = match flows {
        Ok(f) => f,
        Err(e) => {
            println!("SKIPPED: conntrack is not readable on this machine: {e}");
            return;
        }
    };
    let flow = flows
        .iter()
        .find(|f| f.original.src.port() == client_port)
        .unwrap_or_else(|| panic!("the test's flow in {flows:?}"));
    assert_eq!(flow.original.dst.port(), 9999);
    assert_eq!(flow.reply.src.port(), 8080);
    assert!(flow.seen_reply());
    assert!(flow.dnat().is_some());

    let (walker, mut reporter) = probe(true);
    let report = tick(&walker, &mut reporter);
    assert!(!reporter.conntrack_unavailable());
    let scope = format!("{HOST}-{}", ns.inode);
    let real_id = format!("{scope};127.0.0.1;8080");
    let nat_id = format!("{scope};127.0.0.1;9999");
    let client_id = format!("{scope};127.0.0.1;{client_port}");
    let me = std::process::id().to_string();
    let copy = node(&report, &nat_id);
    assert_eq!(
        copy.latest_value("copy_of").map(|v| v.as_str()),
        Some(real_id.as_str()),
        "{copy:?}"
    );
    assert_eq!(
        pid_of(copy),
        Some(me.as_str()),
        "the copy carries the server's pid"
    );
    assert_eq!(pid_of(node(&report, &real_id)), Some(me.as_str()));
    let client_node = node(&report, &client_id);
    assert_eq!(pid_of(client_node), Some(me.as_str()));
    assert!(
        client_node.adjacency.contains(&nat_id),
        "the client's socket points at the address it dialled: {client_node:?}"
    );
    assert!(
        client_node.adjacency.contains(&real_id),
        "conntrack adds the rewritten flow: {client_node:?}"
    );
    drop((listener, client, accepted));
}

/// A namespace where conntrack is active (a rule matching on conntrack state turns it
/// on), if `nft` exists.
fn namespace_with_conntrack() -> Option<Namespace> {
    if missing("nft") {
        println!("SKIPPED: needs `nft` to turn conntrack on inside the test namespace");
        return None;
    }
    Some(namespace(
        "nft add table ip rescope_test && \
         nft 'add chain ip rescope_test out { type filter hook output priority 0; policy accept; }' && \
         nft add rule ip rescope_test out ct state new counter &&",
    ))
}

/// A conntrack namespace with a loopback listener in it, the runner that enters it,
/// and the listener's port; `None` (having said why) where the test cannot run.
fn listener_with_conntrack() -> Option<(Namespace, NetnsRunner, TcpListener, u16)> {
    if let Some(why) = cannot_run() {
        println!("SKIPPED: {why}");
        return None;
    }
    let ns = namespace_with_conntrack()?;
    let mut runner = NetnsRunner::new();
    let listener = runner
        .run_in(&target(&ns), || TcpListener::bind("127.0.0.1:0"))
        .expect("enter namespace")
        .expect("listener");
    let port = listener.local_addr().expect("addr").port();
    Some((ns, runner, listener, port))
}

/// A conntrack tracker opened by `open` inside `ns`, following events; `None`, with
/// the reason printed, when conntrack cannot be read on this machine.
fn tracker_inside(
    runner: &mut NetnsRunner,
    ns: &Namespace,
    open: impl FnOnce() -> Result<ConntrackTracker, ConntrackError> + Send + 'static,
) -> Option<ConntrackTracker> {
    match runner.run_in(&target(ns), open).expect("enter namespace") {
        Ok(tracker) => {
            assert!(tracker.uses_events());
            Some(tracker)
        }
        Err(e) => {
            println!("SKIPPED: conntrack is not readable on this machine: {e}");
            None
        }
    }
}

#[test]
fn conntrack_events_follow_flows_between_dumps() {
    if let Some(why) = cannot_run() {
        println!("SKIPPED: {why}");
        return;
    }
    let Some(ns) = namespace_with_conntrack() else {
        return;
    };
    let mut runner = NetnsRunner::new();
    let Some(mut tracker) = tracker_inside(&mut runner, &ns, || {
        ConntrackTracker::open(std::time::Duration::from_secs(3600))
    }) else {
        return;
    };
    let mut flows = Vec::new();
    tracker
        .poll(std::time::Instant::now(), &mut flows)
        .expect("first poll");
    assert!(
        flows.is_empty(),
        "a fresh namespace has no flows: {flows:?}"
    );
    assert_eq!(tracker.dumps(), 0, "an empty table is not dumped");

    // A connection opened and closed before the next poll.
    let client_port = runner
        .run_in(&target(&ns), || {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            let client = TcpStream::connect(listener.local_addr()?)?;
            let (accepted, _) = listener.accept()?;
            let port = client.local_addr()?.port();
            drop((client, accepted));
            Ok::<_, std::io::Error>(port)
        })
        .expect("enter namespace")
        .expect("connection");
    std::thread::sleep(std::time::Duration::from_millis(50));
    flows.clear();
    tracker
        .poll(std::time::Instant::now(), &mut flows)
        .expect("second poll");
    let flow = flows
        .iter()
        .find(|f| f.original.src.port() == client_port)
        .unwrap_or_else(|| panic!("the closed flow, from events: {flows:?}"));
    assert!(flow.seen_reply());
    assert_eq!(tracker.dumps(), 0, "followed by events, not by dumping");
}

#[test]
fn while_events_come_the_table_is_not_dumped_again_and_without_them_it_is() {
    if let Some(why) = cannot_run() {
        println!("SKIPPED: {why}");
        return;
    }
    let Some((ns, mut runner, listener, port)) = listener_with_conntrack() else {
        return;
    };
    // A check at every poll; while events come, a dump only once an hour.
    let Some(mut tracker) = tracker_inside(&mut runner, &ns, || {
        ConntrackTracker::open(std::time::Duration::ZERO).map(|mut t| {
            t.set_resync_with_events(std::time::Duration::from_secs(3600));
            t
        })
    }) else {
        return;
    };
    let connect = |runner: &mut NetnsRunner| {
        runner
            .run_in(&target(&ns), move || {
                TcpStream::connect(("127.0.0.1", port))
            })
            .expect("enter namespace")
            .expect("connect")
    };
    let first = connect(&mut runner);
    let _first_accepted = listener.accept().expect("accept");
    std::thread::sleep(std::time::Duration::from_millis(50));
    let mut flows = Vec::new();
    tracker
        .poll(std::time::Instant::now(), &mut flows)
        .expect("first poll");
    assert_eq!(tracker.dumps(), 1, "the first poll dumps the table");
    let port_of = |s: &TcpStream| s.local_addr().expect("addr").port();
    assert!(
        flows
            .iter()
            .any(|f| f.original.src.port() == port_of(&first))
    );

    // Events on (a new namespace's default): a new flow shows, without a dump.
    let second = connect(&mut runner);
    let _second_accepted = listener.accept().expect("accept");
    std::thread::sleep(std::time::Duration::from_millis(50));
    flows.clear();
    tracker
        .poll(std::time::Instant::now(), &mut flows)
        .expect("second poll");
    assert!(
        flows
            .iter()
            .any(|f| f.original.src.port() == port_of(&second))
    );
    assert_eq!(tracker.dumps(), 1, "followed by events");

    // Events switched off in the namespace: no event will tell, so it dumps.
    runner
        .run_in(&target(&ns), || {
            std::fs::write("/proc/sys/net/netfilter/nf_conntrack_events", "0")
        })
        .expect("enter namespace")
        .expect("switch events off");
    let third = connect(&mut runner);
    let _third_accepted = listener.accept().expect("accept");
    std::thread::sleep(std::time::Duration::from_millis(50));
    flows.clear();
    tracker
        .poll(std::time::Instant::now(), &mut flows)
        .expect("third poll");
    assert_eq!(tracker.dumps(), 2, "without events, checked by a dump");
    assert!(
        flows
            .iter()
            .any(|f| f.original.src.port() == port_of(&third)),
        "the flow no event announced, from the dump: {flows:?}"
    );
}

#[test]
fn a_connection_that_closed_between_ticks_is_reported_from_conntrack() {
    let Some((ns, mut runner, listener, server_port)) = listener_with_conntrack() else {
        return;
    };
    let (walker, mut reporter) = probe(true);
    tick(&walker, &mut reporter);
    if reporter.conntrack_unavailable() {
        println!("SKIPPED: conntrack is not readable on this machine");
        return;
    }

    let client_port = runner
        .run_in(&target(&ns), move || {
            let client = TcpStream::connect(("127.0.0.1", server_port))?;
            let port = client.local_addr()?.port();
            Ok::<_, std::io::Error>(port)
        })
        .expect("enter namespace")
        .expect("connect");
    drop(listener.accept().expect("accept"));
    std::thread::sleep(std::time::Duration::from_millis(50));

    let report = tick(&walker, &mut reporter);
    let scope = format!("{HOST}-{}", ns.inode);
    let server_id = format!("{scope};127.0.0.1;{server_port}");
    let client = node(&report, &format!("{scope};127.0.0.1;{client_port}"));
    assert!(client.adjacency.contains(&server_id), "{client:?}");
    assert_eq!(pid_of(client), None, "nobody holds a closed socket");

    // Reported once: the tick after, the closed flow is gone.
    let report = tick(&walker, &mut reporter);
    let still = report[TopologyKind::Endpoint]
        .nodes
        .get(format!("{scope};127.0.0.1;{client_port}").as_str())
        .is_some_and(|n| n.adjacency.contains(&server_id));
    assert!(!still, "a closed flow is reported once");
}

#[test]
fn flows_that_closed_before_the_probe_started_are_not_reported() {
    let Some((ns, mut runner, listener, server_port)) = listener_with_conntrack() else {
        return;
    };
    let scope = format!("{HOST}-{}", ns.inode);
    let server_id = format!("{scope};127.0.0.1;{server_port}");
    // Connections opened and closed before the probe starts: conntrack keeps each
    // as a TIME_WAIT flow for two minutes.
    let connect_and_close = |runner: &mut NetnsRunner| {
        let port = runner
            .run_in(&target(&ns), move || {
                let client = TcpStream::connect(("127.0.0.1", server_port))?;
                client.local_addr().map(|a| a.port())
            })
            .expect("enter namespace")
            .expect("connect");
        drop(listener.accept().expect("accept"));
        port
    };
    let before: Vec<u16> = (0..3).map(|_| connect_and_close(&mut runner)).collect();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let closed_flows = runner
        .run_in(&target(&ns), || {
            let mut flows = Vec::new();
            Conntrack::open()?.dump_tcp(&mut flows)?;
            Ok::<_, rescope_probe::sys::sockdiag::NetlinkError>(flows)
        })
        .expect("enter namespace");
    let closed_flows = match closed_flows {
        Ok(flows) => flows,
        Err(e) => {
            println!("SKIPPED: conntrack is not readable on this machine: {e}");
            return;
        }
    };
    for port in &before {
        assert!(
            closed_flows
                .iter()
                .any(|f| f.original.src.port() == *port && f.is_closed() && f.seen_reply()),
            "conntrack keeps the closed flow from port {port}: {closed_flows:?}"
        );
    }

    let (walker, mut reporter) = probe(true);
    for round in 0..2 {
        let report = tick(&walker, &mut reporter);
        assert!(!reporter.conntrack_unavailable());
        for port in &before {
            let id = format!("{scope};127.0.0.1;{port}");
            assert!(
                report[TopologyKind::Endpoint]
                    .nodes
                    .get(id.as_str())
                    .is_none_or(|n| !n.adjacency.contains(&server_id)),
                "round {round}: a flow closed before the probe started is not a connection of now: {id}"
            );
        }
    }

    // One closed after the probe started is still reported.
    let after = connect_and_close(&mut runner);
    std::thread::sleep(std::time::Duration::from_millis(50));
    let report = tick(&walker, &mut reporter);
    let client = node(&report, &format!("{scope};127.0.0.1;{after}"));
    assert!(client.adjacency.contains(&server_id), "{client:?}");
}
