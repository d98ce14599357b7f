//! The containers view from a report shaped like Rescope's probe makes it on a Docker
//! host: bridge addresses scoped by the host ID in end points and in the containers'
//! `docker_container_ips_with_scopes`, the bridge subnet known only from the
//! `#docker_peer_<host>` overlay node, a connection conntrack saw whole (no process at
//! either end), and a client outside reaching a published port.

use rescope_render::{RenderContext, render_unfiltered};
use rescope_report::{GoTime, Node, Report, Str, TopologyKind};

const HOST: &str = "h1";

fn container(r: &mut Report, cid: &str, ip: &str, now: GoTime) -> String {
    let nid = format!("{cid};<container>");
    let mut n = Node::new(nid.as_str()).with_topology("container");
    n.set_latest("docker_container_id", now, cid);
    n.set_latest("docker_container_state", now, "running");
    n.set_latest("host_node_id", now, format!("{HOST};<host>"));
    n.sets.add("docker_container_ips", ip);
    n.sets
        .add("docker_container_ips_with_scopes", format!("{HOST};{ip}"));
    r[TopologyKind::Container].add_node(n);
    nid
}

fn process(r: &mut Report, pid: u32, cid: &str, now: GoTime) {
    let mut n = Node::new(format!("{HOST};{pid}")).with_topology("process");
    n.set_latest("pid", now, pid.to_string());
    n.set_latest("docker_container_id", now, cid);
    n.set_latest("host_node_id", now, format!("{HOST};<host>"));
    r[TopologyKind::Process].add_node(n);
}

fn endpoint(r: &mut Report, id: &str, pid: Option<u32>, to: &[&str], now: GoTime) {
    let mut n = Node::new(id).with_topology("endpoint");
    if let Some(pid) = pid {
        n.set_latest("pid", now, pid.to_string());
        n.set_latest("host_node_id", now, format!("{HOST};<host>"));
    }
    for t in to {
        n.adjacency.insert(Str::from(*t));
    }
    r[TopologyKind::Endpoint].add_node(n);
}

#[test]
fn conntrack_flows_join_containers_by_address_and_outside_clients_are_the_internet() {
    let now = GoTime::now();
    let mut r = Report::empty();
    let mut host = Node::new(format!("{HOST};<host>")).with_topology("host");
    host.sets.add("local_networks", "10.0.0.5/24");
    r[TopologyKind::Host].add_node(host);
    let mut peer = Node::new(format!("#docker_peer_{HOST}")).with_topology("overlay");
    peer.sets.add("local_networks", "172.17.0.0/16");
    r[TopologyKind::Overlay].add_node(peer);

    let server = container(&mut r, "aaaa", "172.17.0.2", now);
    let client = container(&mut r, "bbbb", "172.17.0.3", now);
    process(&mut r, 100, "aaaa", now);
    // A short-lived connection, gone before the sockets were read: conntrack's flow
    // names only addresses.
    endpoint(
        &mut r,
        "h1;172.17.0.3;40000",
        None,
        &["h1;172.17.0.2;80"],
        now,
    );
    endpoint(&mut r, "h1;172.17.0.2;80", Some(100), &[], now);
    // A client on another machine, through the published port 8080 (DNAT'd).
    endpoint(
        &mut r,
        ";203.0.113.9;50000",
        None,
        &["h1;172.17.0.2;80", ";10.0.0.5;8080"],
        now,
    );
    let mut copy = Node::new(";10.0.0.5;8080").with_topology("endpoint");
    copy.set_latest("copy_of", now, "h1;172.17.0.2;80");
    copy.set_latest("pid", now, "100");
    copy.set_latest("host_node_id", now, format!("{HOST};<host>"));
    r[TopologyKind::Endpoint].add_node(copy);

    let ctx = RenderContext::new(&r, now);
    let view = render_unfiltered(&ctx, "containers").expect("containers view");
    let edges = |id: &str| -> Vec<String> {
        view.nodes
            .get(id)
            .map(|n| n.adjacency.iter().map(|a| a.to_string()).collect())
            .unwrap_or_default()
    };
    assert_eq!(
        edges(&client),
        std::slice::from_ref(&server),
        "client → server"
    );
    // The Internet reaches the server, and its edges name only nodes of this view
    // (not the processes it was connected to in the processes view).
    assert_eq!(edges("in-theinternet"), std::slice::from_ref(&server));
    for (id, node) in &view.nodes {
        for a in node.adjacency.iter() {
            assert!(view.nodes.contains_key(a), "{id} → {a}, not in the view");
        }
    }
    // Container addresses are local: no Internet node stands for them.
    assert!(!view.nodes.contains_key("out-theinternet"));
}
