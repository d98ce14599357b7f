//! Node IDs (protocol.md §4). Every ID in Rescope is built and parsed here.
//!
//! IDs stay plain strings on the wire (plugins send arbitrary ones), but their shapes
//! matter: the app parses them to find hosts, pids and addresses.

use std::net::IpAddr;

use crate::topology::TopologyKind;

/// The main ID delimiter.
pub const SCOPE_DELIM: char = ';';
/// Separates a plugin ID from the plugin's control ID (`iowait~enable`).
pub const PLUGIN_CONTROL_DELIM: char = '~';
/// Pseudo node topology name and ID prefix.
pub const PSEUDO_TOPOLOGY: &str = "pseudo";
const PSEUDO_PREFIX: &str = "pseudo:";
/// Remote clients connecting in.
pub const INCOMING_INTERNET_ID: &str = "in-theinternet";
/// Remote servers we connect out to.
pub const OUTGOING_INTERNET_ID: &str = "out-theinternet";
/// Prefix of "known service" pseudo nodes (`service-<dns name>`).
pub const SERVICE_PREFIX: &str = "service-";
const WEAVE_PEER_PREFIX: &str = "";
const DOCKER_PEER_PREFIX: &str = "docker_peer_";

/// An address in Go's canonical text form: dotted quad for IPv4 and IPv4-mapped IPv6.
pub fn canonical_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// The scope part of an endpoint or address ID (§4.1): the host ID for addresses that
/// are only unique on this host (local bridge networks and loopback, with the network
/// namespace appended for loopback inside a namespace), empty for everything else.
pub fn address_scope(
    host_id: &str,
    ip: IpAddr,
    in_local_network: bool,
    netns: Option<u64>,
) -> String {
    if in_local_network {
        return host_id.to_string();
    }
    if ip.is_loopback()
        || matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()))
    {
        return match netns {
            Some(ns) if ns != 0 => format!("{host_id}-{ns}"),
            _ => host_id.to_string(),
        };
    }
    String::new()
}

/// `<scope>;<ip>;<port>`
pub fn endpoint_id(scope: &str, ip: &str, port: u16) -> String {
    format!("{scope};{ip};{port}")
}

/// An endpoint ID split into (scope, ip, port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointId<'a> {
    pub scope: &'a str,
    pub ip: &'a str,
    pub port: &'a str,
}

/// Splits at the first two `;`. `None` if there are fewer than two.
pub fn parse_endpoint_id(id: &str) -> Option<EndpointId<'_>> {
    let (scope, rest) = id.split_once(SCOPE_DELIM)?;
    let (ip, port) = rest.split_once(SCOPE_DELIM)?;
    Some(EndpointId { scope, ip, port })
}

/// `<scope>;<ip>`
pub fn address_id(scope: &str, ip: &str) -> String {
    format!("{scope};{ip}")
}

/// An address ID split into (scope, ip).
pub fn parse_address_id(id: &str) -> Option<(&str, &str)> {
    id.split_once(SCOPE_DELIM)
}

/// `<id>;<tag>` for topologies with single-component IDs (§4.2). `None` for topologies
/// whose IDs have another shape (endpoint, process, overlay, ECS service).
pub fn single_id(kind: TopologyKind, id: &str) -> Option<String> {
    kind.id_tag().map(|tag| format!("{id};{tag}"))
}

/// The `<id>` of `<id>;<tag>`, if `node_id` has exactly the tag of `kind`.
pub fn parse_single_id(kind: TopologyKind, node_id: &str) -> Option<&str> {
    let tag = kind.id_tag()?;
    let (id, rest) = node_id.split_once(SCOPE_DELIM)?;
    (rest == tag).then_some(id)
}

/// `<hostname>;<host>`
pub fn host_id(hostname: &str) -> String {
    format!("{hostname};<host>")
}

/// The host name of a host node ID.
pub fn parse_host_id(node_id: &str) -> Option<&str> {
    parse_single_id(TopologyKind::Host, node_id)
}

/// `<full container id>;<container>`
pub fn container_id(id: &str) -> String {
    format!("{id};<container>")
}

/// `<image id or name>;<container_image>`
pub fn container_image_id(id: &str) -> String {
    format!("{id};<container_image>")
}

/// `<hostID>;<pid>`
pub fn process_id(host_id: &str, pid: u32) -> String {
    format!("{host_id};{pid}")
}

/// `<hostID>;<pid>` from a pid already in text form (as endpoints carry it).
pub fn process_id_str(host_id: &str, pid: &str) -> String {
    format!("{host_id};{pid}")
}

/// A process ID split into (host ID, pid).
pub fn parse_process_id(node_id: &str) -> Option<(&str, &str)> {
    node_id.split_once(SCOPE_DELIM)
}

/// ECS services: `<cluster>;<service>` (no tag).
pub fn ecs_service_id(cluster: &str, service: &str) -> String {
    format!("{cluster};{service}")
}

/// (cluster, service) of an ECS service ID; the legacy `<service>;<ecs_service>` form
/// maps to cluster `unknown`.
pub fn parse_ecs_service_id(node_id: &str) -> Option<(&str, &str)> {
    let (a, b) = node_id.split_once(SCOPE_DELIM)?;
    if b == "<ecs_service>" {
        Some(("unknown", a))
    } else {
        Some((a, b))
    }
}

/// An overlay peer: a Weave Net peer, or the per-host Docker overlay node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlayPeer<'a> {
    Weave(&'a str),
    Docker(&'a str),
}

/// `#<peer name>` or `#docker_peer_<host>`
pub fn overlay_id(peer: OverlayPeer<'_>) -> String {
    match peer {
        OverlayPeer::Weave(name) => format!("#{WEAVE_PEER_PREFIX}{name}"),
        OverlayPeer::Docker(host) => format!("#{DOCKER_PEER_PREFIX}{host}"),
    }
}

/// Parses an overlay ID. An ID without the leading `#` is read as a Weave peer name.
pub fn parse_overlay_id(node_id: &str) -> OverlayPeer<'_> {
    let rest = node_id.strip_prefix('#').unwrap_or(node_id);
    match rest.strip_prefix(DOCKER_PEER_PREFIX) {
        Some(host) => OverlayPeer::Docker(host),
        None => OverlayPeer::Weave(rest),
    }
}

/// `pseudo:<part>:<part>…`
pub fn pseudo_id(parts: &[&str]) -> String {
    let mut s = String::from(PSEUDO_PREFIX);
    s.push_str(&parts.join(":"));
    s
}

/// The parts of a `pseudo:` ID.
pub fn parse_pseudo_id(node_id: &str) -> Option<impl Iterator<Item = &str>> {
    node_id
        .strip_prefix(PSEUDO_PREFIX)
        .map(|rest| rest.split(':'))
}

/// Processes outside any container on a host.
pub fn uncontained_id(host_id: &str) -> String {
    pseudo_id(&["uncontained", host_id])
}

/// Containers (or processes, or peers) without an orchestrator parent.
pub fn unmanaged_id(of: &str) -> String {
    pseudo_id(&["unmanaged", of])
}

/// A known cloud service pseudo node.
pub fn service_pseudo_id(dns_name: &str) -> String {
    format!("{SERVICE_PREFIX}{dns_name}")
}

/// `group:<topology>:<key>`, the topology of grouped rendered nodes.
pub fn group_topology(topology: &str, key: &str) -> String {
    format!("group:{topology}:{key}")
}

/// (topology, key) of a group topology name.
pub fn parse_group_topology(name: &str) -> Option<(&str, &str)> {
    name.strip_prefix("group:")?.split_once(':')
}

/// `<pluginID>~<controlID>`
pub fn plugin_control_id(plugin: &str, control: &str) -> String {
    format!("{plugin}{PLUGIN_CONTROL_DELIM}{control}")
}

/// Splits a plugin control ID at the first `~`.
pub fn parse_plugin_control_id(id: &str) -> Option<(&str, &str)> {
    id.split_once(PLUGIN_CONTROL_DELIM)
}

/// Scope's UI keeps its state in the URL hash and writes `/` as `<SLASH>` and `%` as
/// `<PERCENT>` there. These two functions convert IDs to and from that form; the HTTP
/// API never sees it.
pub fn escape_for_url_state(id: &str) -> String {
    id.replace('%', "<PERCENT>").replace('/', "<SLASH>")
}

/// The inverse of [`escape_for_url_state`].
pub fn unescape_url_state(s: &str) -> String {
    s.replace("<SLASH>", "/").replace("<PERCENT>", "%")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn endpoint_ids_follow_the_scope_rules() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let bridge = IpAddr::V4(Ipv4Addr::new(172, 17, 0, 2));
        let public = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5));
        assert_eq!(
            endpoint_id(&address_scope("host1", lo, false, None), "127.0.0.1", 6784),
            "host1;127.0.0.1;6784"
        );
        assert_eq!(
            endpoint_id(
                &address_scope("host1", lo, false, Some(4026532481)),
                "127.0.0.1",
                8080
            ),
            "host1-4026532481;127.0.0.1;8080"
        );
        assert_eq!(
            endpoint_id(
                &address_scope("host1", bridge, true, Some(7)),
                "172.17.0.2",
                80
            ),
            "host1;172.17.0.2;80"
        );
        assert_eq!(
            endpoint_id(
                &address_scope("host1", public, false, Some(7)),
                "10.0.0.5",
                43210
            ),
            ";10.0.0.5;43210"
        );
        assert_eq!(
            parse_endpoint_id("host1-4026532481;127.0.0.1;8080"),
            Some(EndpointId {
                scope: "host1-4026532481",
                ip: "127.0.0.1",
                port: "8080"
            })
        );
        assert_eq!(
            parse_endpoint_id(";::1;80").map(|e| (e.ip, e.port)),
            Some(("::1", "80"))
        );
        assert_eq!(
            parse_endpoint_id("a;b;c;d").map(|e| e.port),
            Some("c;d"),
            "splits at the first two delimiters only"
        );
        assert_eq!(parse_endpoint_id("nope"), None);
    }

    #[test]
    fn ipv4_mapped_addresses_print_as_dotted_quads() {
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 1, 2, 3).to_ipv6_mapped());
        assert_eq!(canonical_ip(mapped), "10.1.2.3");
        assert_eq!(canonical_ip(IpAddr::V6(Ipv6Addr::LOCALHOST)), "::1");
        assert_eq!(
            address_scope(
                "h",
                IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped()),
                false,
                None
            ),
            "h"
        );
    }

    #[test]
    fn single_component_ids_require_the_exact_tag() {
        assert_eq!(
            single_id(TopologyKind::DaemonSet, "uid").as_deref(),
            Some("uid;<daemonset>")
        );
        assert_eq!(parse_single_id(TopologyKind::Host, "vm;<host>"), Some("vm"));
        assert_eq!(parse_single_id(TopologyKind::Host, "vm;<container>"), None);
        assert_eq!(parse_single_id(TopologyKind::Host, "vm;<host>;x"), None);
        assert_eq!(single_id(TopologyKind::Process, "1"), None);
        assert_eq!(host_id("vm"), "vm;<host>");
        assert_eq!(parse_process_id("vm;4242"), Some(("vm", "4242")));
    }

    #[test]
    fn special_ids() {
        assert_eq!(
            parse_ecs_service_id("svc;<ecs_service>"),
            Some(("unknown", "svc"))
        );
        assert_eq!(
            parse_ecs_service_id("cluster;svc"),
            Some(("cluster", "svc"))
        );
        assert_eq!(overlay_id(OverlayPeer::Docker("h1")), "#docker_peer_h1");
        assert_eq!(
            parse_overlay_id("#docker_peer_h1"),
            OverlayPeer::Docker("h1")
        );
        assert_eq!(
            parse_overlay_id("7a:91:4f:1c:22:8e"),
            OverlayPeer::Weave("7a:91:4f:1c:22:8e")
        );
        assert_eq!(uncontained_id("h1"), "pseudo:uncontained:h1");
        assert_eq!(
            parse_pseudo_id("pseudo:unmanaged:h1").map(|p| p.collect::<Vec<_>>()),
            Some(vec!["unmanaged", "h1"])
        );
        assert_eq!(
            parse_group_topology("group:process:name"),
            Some(("process", "name"))
        );
        assert_eq!(parse_plugin_control_id("a-b~c~d"), Some(("a-b", "c~d")));
    }

    #[test]
    fn url_state_escaping_round_trips() {
        let id = "docker.io/alpine%2;<container_image>";
        let escaped = escape_for_url_state(id);
        assert_eq!(
            escaped,
            "docker.io<SLASH>alpine<PERCENT>2;<container_image>"
        );
        assert_eq!(unescape_url_state(&escaped), id);
    }
}
