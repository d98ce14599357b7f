//! Connections between containers on a real Docker engine, as `rescope launch` draws
//! them: an `httpd` container, a client container holding a connection to it, a
//! client container making short-lived ones (seen whole only by conntrack), the host
//! connecting to the server's port published on loopback, and a client from "outside"
//! (another network namespace no process of which the probe can see) connecting to
//! the port published on every address.
//!
//! Skipped with a message when no Docker engine answers; the outside client needs root
//! and iproute2, and is skipped without them.

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{IMAGE, Running, docker, docker_missing, ensure_image, free_port, get};

/// Every container and network the test makes carries it, for cleaning up by hand.
const LABEL: &str = "rescope-test=containers";

/// A container removed when dropped.
struct Container {
    id: String,
}

impl Container {
    fn run(name: &str, args: &[&str]) -> Self {
        let mut all = vec!["run", "-d", "--name", name, "--label", LABEL];
        all.extend_from_slice(args);
        let id = docker(&all).unwrap_or_else(|e| panic!("docker run {name}: {e}"));
        Container { id }
    }

    fn node_id(&self) -> String {
        format!("{};<container>", self.id)
    }

    fn inspect(&self, format: &str) -> String {
        docker(&["inspect", "--format", format, &self.id]).expect("docker inspect")
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.id]);
    }
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A machine "outside": a network namespace joined to the host by a veth pair, with
/// an address in no network the host has, reaching the host at a /32 address (both
/// from the benchmarking range 198.18.0.0/15, and refused if the host uses them).
/// Removed when dropped.
struct Outside {
    netns: String,
    host_link: String,
}

const OUTSIDE_IP: &str = "198.19.0.2";
const HOST_SIDE_IP: &str = "198.18.0.1";

/// Whether the host has an address, or a route other than the default one, that
/// covers `addr` (then the test must not take it).
fn host_uses(addr: &str) -> bool {
    let out = Command::new("ip")
        .args(["-o", "route", "get", addr])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    let default_via = Command::new("ip")
        .args(["-o", "route", "show", "default"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    let gateway = default_via
        .split_whitespace()
        .skip_while(|w| *w != "via")
        .nth(1)
        .unwrap_or("");
    let through_default = !gateway.is_empty() && out.contains(&format!("via {gateway} "));
    out.starts_with("local ") || !through_default
}

impl Outside {
    fn create() -> Option<Self> {
        if host_uses(OUTSIDE_IP) || host_uses(HOST_SIDE_IP) {
            println!("{OUTSIDE_IP} or {HOST_SIDE_IP} is in use on this host");
            return None;
        }
        let tag = std::process::id() % 100_000;
        let o = Outside {
            netns: format!("rescope-out-{tag}"),
            host_link: format!("rsch{tag}"),
        };
        let peer = format!("rscc{tag}");
        let ns = o.netns.as_str();
        let ok = ip(&["netns", "add", ns])
            && ip(&[
                "link",
                "add",
                &o.host_link,
                "type",
                "veth",
                "peer",
                "name",
                &peer,
            ])
            && ip(&["link", "set", &peer, "netns", ns])
            && ip(&[
                "addr",
                "add",
                &format!("{HOST_SIDE_IP}/32"),
                "dev",
                &o.host_link,
            ])
            && ip(&["link", "set", &o.host_link, "up"])
            && ip(&[
                "route",
                "replace",
                &format!("{OUTSIDE_IP}/32"),
                "dev",
                &o.host_link,
            ])
            && ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{OUTSIDE_IP}/32"),
                "dev",
                &peer,
            ])
            && ip(&["-n", ns, "link", "set", &peer, "up"])
            && ip(&[
                "-n",
                ns,
                "route",
                "add",
                &format!("{HOST_SIDE_IP}/32"),
                "dev",
                &peer,
            ])
            && ip(&["-n", ns, "route", "add", "default", "via", HOST_SIDE_IP]);
        ok.then_some(o)
    }

    /// A connection made from inside the namespace by a thread of this process that
    /// entered it only for the connect: no process lives in the namespace, so the probe
    /// sees only the server's end, as with a client on another machine.
    fn connect(&self, addr: SocketAddr) -> std::io::Result<TcpStream> {
        let path = format!("/var/run/netns/{}", self.netns);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path)?;
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::other)?;
            TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        })
        .join()
        .map_err(|_| std::io::Error::other("connecting thread panicked"))?
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        ip(&["link", "del", &self.host_link]);
        ip(&["netns", "del", &self.netns]);
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn adjacency(view: &Value, node: &str) -> Vec<String> {
    view["nodes"][node]["adjacency"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

fn has_edge(view: &Value, from: &str, to: &str) -> bool {
    adjacency(view, from).iter().any(|a| a == to)
}

#[test]
fn container_connections_show_as_edges_between_containers() {
    if let Some(why) = docker_missing() {
        println!("skipped: no Docker engine answers on this machine (CI starts dockerd): {why}");
        return;
    }
    ensure_image().expect("the busybox test image");
    let tag = std::process::id();
    let loopback_port = free_port();
    let public_port = free_port();
    let server = Container::run(
        &format!("rescope-httpd-{tag}"),
        &[
            "-p",
            &format!("127.0.0.1:{loopback_port}:80"),
            "-p",
            &format!("{public_port}:80"),
            IMAGE,
            "busybox",
            "httpd",
            "-f",
            "-p",
            "80",
        ],
    );
    let server_ip = server.inspect("{{.NetworkSettings.IPAddress}}");
    assert!(!server_ip.is_empty(), "the server has a bridge address");
    // Holds a connection open (httpd drops it after a minute: it reconnects).
    let client = Container::run(
        &format!("rescope-client-{tag}"),
        &[
            IMAGE,
            "sh",
            "-c",
            &format!("while true; do busybox sleep 50 | busybox nc {server_ip} 80; done"),
        ],
    );
    // Connections that close at once: between ticks, only conntrack sees them whole,
    // and they reach the containers view by the containers' addresses alone.
    let fetcher = Container::run(
        &format!("rescope-fetcher-{tag}"),
        &[
            IMAGE,
            "sh",
            "-c",
            &format!(
                "while true; do busybox wget -q -O /dev/null http://{server_ip}/; busybox sleep 0.3; done"
            ),
        ],
    );

    let port = free_port();
    let host = "containerstest";
    let app = Command::new(env!("CARGO_BIN_EXE_rescope"))
        .args([
            "launch",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--hostname",
            host,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rescope starts");
    let _app = Running(app);
    let base = format!("http://127.0.0.1:{port}");

    // The host connects to the port published on loopback.
    let from_host = TcpStream::connect(("127.0.0.1", loopback_port)).expect("published port");
    // And a client outside connects to the port published on every address.
    let outside = if is_root() { Outside::create() } else { None };
    let from_outside = outside.as_ref().and_then(|o| {
        let to = HOST_SIDE_IP
            .parse()
            .map(|ip| SocketAddr::new(ip, public_port));
        o.connect(to.expect("an address"))
            .map_err(|e| println!("the outside client cannot connect: {e}"))
            .ok()
    });
    if from_outside.is_none() {
        println!("skipped the outside client: needs root, iproute2 and Docker's iptables NAT");
    }

    let srv = server.node_id();
    let uncontained = format!("pseudo:uncontained:{host}");
    let wanted: Vec<(&str, String, String)> = [
        ("client → server", client.node_id(), srv.clone()),
        (
            "short-lived client → server",
            fetcher.node_id(),
            srv.clone(),
        ),
        (
            "host (via the published loopback port) → server",
            uncontained.clone(),
            srv.clone(),
        ),
    ]
    .into_iter()
    .chain(from_outside.is_some().then(|| {
        (
            "the Internet → server",
            "in-theinternet".to_string(),
            srv.clone(),
        )
    }))
    .collect();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(45);
    let mut view = Value::Null;
    loop {
        if let Some(v) = get(&format!("{base}/api/topology/containers?pseudo=show")) {
            view = v;
            if wanted.iter().all(|(_, f, t)| has_edge(&view, f, t)) {
                break;
            }
        }
        if Instant::now() > deadline {
            let missing: Vec<&str> = wanted
                .iter()
                .filter(|(_, f, t)| !has_edge(&view, f, t))
                .map(|(what, _, _)| *what)
                .collect();
            panic!("edges missing from the containers view: {missing:?}\n{view:#}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    println!("every edge drawn {:?} after launch", started.elapsed());
    let outside_connected = from_outside.is_some();
    drop(from_host);
    drop(from_outside);

    // Containers are not the Internet; only the outside client is.
    let internet = ["in-theinternet", "out-theinternet"];
    for c in [&client, &fetcher] {
        for a in adjacency(&view, &c.node_id()) {
            assert!(!internet.contains(&a.as_str()), "{a} from a container");
        }
    }
    if outside_connected {
        assert_eq!(
            adjacency(&view, "in-theinternet"),
            std::slice::from_ref(&srv),
            "the Internet reaches only the server"
        );
    }
    assert_eq!(view["nodes"][&srv]["label"], format!("rescope-httpd-{tag}"));

    // Process → container: the server's httpd belongs to the server container.
    let init = server.inspect("{{.State.Pid}}");
    let processes = get(&format!("{base}/api/topology/processes")).expect("processes");
    let parents = &processes["nodes"][format!("{host};{init}")]["parents"];
    assert!(
        parents.as_array().is_some_and(|p| p
            .iter()
            .any(|p| p["id"] == srv && p["topologyId"] == "containers")),
        "httpd's parents: {parents}"
    );
    let details = get(&format!(
        "{base}/api/topology/containers/{}",
        srv.replace(';', "%3B")
            .replace('<', "%3C")
            .replace('>', "%3E")
    ))
    .expect("details");
    let children = details["node"]["children"].as_array().expect("children");
    assert!(
        children.iter().any(|g| g["topologyId"] == "processes"
            && g["nodes"]
                .as_array()
                .is_some_and(|n| n.iter().any(|n| n["id"] == format!("{host};{init}")))),
        "the container's processes: {children:?}"
    );

    // End points and container addresses are scoped alike, and the bridge subnet is a
    // local network of this host.
    let report = get(&format!("{base}/api/report")).expect("report");
    let scoped = format!("{host};{server_ip}");
    let ips = &report["Container"]["nodes"][&srv]["sets"]["docker_container_ips_with_scopes"];
    assert_eq!(ips, &serde_json::json!([scoped]));
    assert!(
        report["Endpoint"]["nodes"]
            .as_object()
            .is_some_and(|e| e.contains_key(&format!("{scoped};80"))),
        "the server's end point is scoped like its address"
    );
    let subnet = docker(&[
        "network",
        "inspect",
        "bridge",
        "--format",
        "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
    ])
    .expect("bridge subnet");
    let locals =
        &report["Overlay"]["nodes"][format!("#docker_peer_{host}")]["sets"]["local_networks"];
    for s in subnet.split_whitespace() {
        assert!(
            locals.as_array().is_some_and(|l| l.iter().any(|n| n == s)),
            "{s} not in {locals}"
        );
    }
}
