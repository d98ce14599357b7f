//! The Endpoint topology: every TCP connection of the host and of its containers'
//! network namespaces, as pairs of end points joined by an edge from client to
//! server (protocol.md §4.1, §5.2.1).
//!
//! Each spy tick:
//!
//! 1. The TCP sockets of every network namespace are dumped with sock_diag (the host's,
//!    and one dump per other namespace the process walker found). A namespace is
//!    entered once, on a dedicated thread, to create its netlink sockets; they stay
//!    bound to it, so later dumps run from this thread. A dump walks the kernel's
//!    whole TCP table, so a namespace is not dumped again when nothing changed: when
//!    the eBPF change tracker runs ([`crate::socket_table`]), the last dump is updated
//!    from the namespace's TCP state changes (one exact sock_diag request per new or
//!    changed socket); otherwise a namespace whose TCP counters did not move since its
//!    last dump ([`TcpCounters`]) keeps it. Either way it is dumped again every
//!    `REDUMP_TICKS` ticks, and when the tracker lost changes; with the tracker, not
//!    when no change touched the namespace since its last dump and none of its
//!    sockets waits to be accepted (an idle container is dumped once).
//! 2. If conntrack is on and readable, each namespace's conntrack flows are read too
//!    (followed through events, with a full dump now and then): they give the
//!    direction of flows conntrack saw, connections that already closed, and NAT
//!    rewrites. A closed flow is reported once; those already closed in the first
//!    dump of the probe's first tick closed before it started and are not reported.
//! 3. Sockets are attributed to processes through the walker's socket-inode map; the
//!    ones it does not know yet go to [`ProcessWalker::resolve_sockets`] in one call,
//!    and inodes nobody owns (kernel sockets) are not searched again for a while.
//! 4. Each connection becomes a link `from → to`: conntrack's direction if the flow is
//!    there, else the side listening on its port is the server, else the lower port
//!    is. `from` gets the edge; a side whose process is known gets `pid` and
//!    `host_node_id`. Remote ends get neither (the app draws them as the Internet).
//! 5. For every NAT'd flow whose real end point is in the report, a copy is added
//!    under the rewritten address with `copy_of` naming the original.
//!
//! The graph is kept between ticks ([`crate::endpoint_graph`]): this tick's links are
//! compared with the last tick's, and only the end points a changed link touches are
//! built again as report nodes. When a tick's sockets, flows and owners are exactly
//! the last tick's, the links are not even collected. The nodes are kept too, and
//! each tick's report is a copy of them with fresh timestamps. The hot path works on fixed-size keys; node ID
//! strings are built once per end point and kept while it lives.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use rescope_report::node::HOST_NODE_ID;
use rescope_report::{Node, Report, Str, TopologyKind, id};
use tracing::{debug, warn};

use crate::config::ProbeConfig;
use crate::endpoint_graph::{EndpointGraph, KeyHasher, Link, NatCopy};
use crate::kept::NodeChanges;
use crate::reporter::{Reporter, ReporterError, Tick};
use crate::socket_table::{ChangeFeed, SocketTable, TrackingStats, Update};
use crate::sys::conntrack::{Availability, ConntrackTracker, Flow, RESYNC_EVERY};
use crate::sys::netns::{self, NetnsError, NetnsRunner, NetnsTarget};
use crate::sys::sockdiag::{
    CONNECTION_AND_LISTEN_STATES, NetlinkError, SockDiag, TcpSocket, TcpState,
};
use crate::sys::tcp_counters::{TcpCounters, TcpFingerprint};
use crate::walker::ProcessWalker;

/// `latest` key holding the pid of the process owning an end point.
pub const PID: &str = "pid";
/// `latest` key on a NAT copy naming the end point it copies.
pub const COPY_OF: &str = "copy_of";

/// Socket inodes no process was found for are searched again, all together, on
/// ticks that are a multiple of this. A search that misses reads the file
/// descriptors of every process, so misses retried one by one (kernel sockets, sockets
/// of processes out of sight) made such a search happen on most ticks of a busy host.
const UNRESOLVED_RETRY_TICKS: u64 = 30;
/// Ticks before opening a namespace's sockets is tried again after a failure.
const OPEN_RETRY_TICKS: u64 = 30;
/// Ticks before a non-host namespace's conntrack is tried again after a failure.
const CONNTRACK_RETRY_TICKS: u64 = 300;
/// Ticks after which a namespace is dumped again even though its TCP counters did not
/// move (they can miss a listener replaced by another within one tick).
const REDUMP_TICKS: u64 = 10;

/// An IP network in CIDR notation (`10.32.0.0/12`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The network containing `addr` with `prefix` bits; `None` if the prefix is too
    /// long for the address family.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let network = match addr {
            IpAddr::V4(v4) if prefix <= 32 => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) if prefix <= 128 => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
            _ => return None,
        };
        Some(Cidr { network, prefix })
    }

    pub fn network(&self) -> IpAddr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        Cidr::new(ip, self.prefix).is_some_and(|c| c.network == self.network)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// A string that is not a CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid network {0:?}: expected an address and a prefix length, like 10.0.0.0/8")]
pub struct CidrError(pub String);

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || CidrError(s.to_string());
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        Cidr::new(addr, prefix).ok_or_else(bad)
    }
}

/// The local networks, shared between the endpoint reporter and whoever learns them.
#[derive(Debug, Clone, Default)]
pub struct LocalNetworks(Arc<RwLock<(u64, Vec<Cidr>)>>);

impl LocalNetworks {
    pub fn set(&self, networks: Vec<Cidr>) {
        if let Ok(mut slot) = self.0.write() {
            slot.0 += 1;
            slot.1 = networks;
        }
    }

    pub fn get(&self) -> Vec<Cidr> {
        self.0.read().map(|slot| slot.1.clone()).unwrap_or_default()
    }

    fn newer_than(&self, version: u64) -> Option<(u64, Vec<Cidr>)> {
        let slot = self.0.read().ok()?;
        (slot.0 != version).then(|| (slot.0, slot.1.clone()))
    }
}

/// The scope part of an end point ID, as a small value (see [`id::address_scope`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum ScopeKey {
    /// Globally unique addresses: empty scope.
    Global,
    /// Local bridge networks, and loopback in the host namespace: the host ID.
    Host,
    /// Loopback inside another network namespace: the host ID and its inode.
    Netns(u64),
}

/// An end point before it becomes an ID string: small, and cheap to hash and compare
/// (the per-tick maps are keyed by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct EndpointKey {
    /// The address's 128 bits (an IPv4 address in the low 32).
    addr: u128,
    port: u16,
    v4: bool,
    scope: ScopeKey,
}

impl EndpointKey {
    pub(crate) fn new(scope: ScopeKey, ip: IpAddr, port: u16) -> Self {
        let (addr, v4) = match ip {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), true),
            IpAddr::V6(v6) => (u128::from(v6), false),
        };
        EndpointKey {
            addr,
            port,
            v4,
            scope,
        }
    }

    fn ip(&self) -> IpAddr {
        if self.v4 {
            IpAddr::V4((self.addr as u32).into())
        } else {
            IpAddr::V6(self.addr.into())
        }
    }
}

impl Hash for EndpointKey {
    /// Two words instead of the field-by-field derive: the maps keyed by end points
    /// are the hot path of a tick.
    fn hash<H: Hasher>(&self, state: &mut H) {
        let (tag, netns) = match self.scope {
            ScopeKey::Global => (0u64, 0),
            ScopeKey::Host => (1, 0),
            ScopeKey::Netns(n) => (2, n),
        };
        state.write_u128(self.addr);
        state.write_u64(u64::from(self.port) | u64::from(self.v4) << 16 | tag << 17);
        if netns != 0 {
            state.write_u64(netns);
        }
    }
}

/// One namespace to scan this tick.
#[derive(Debug, Clone, Copy)]
struct NsPlan {
    /// Namespace inode (0 when unknown).
    netns: u64,
    /// A process inside it, to enter it by; `None` to use the current namespace.
    pid: Option<u32>,
    host: bool,
}

impl NsPlan {
    /// The namespace part of loopback scopes: none for the host's own namespace.
    fn scope_netns(&self) -> Option<u64> {
        (!self.host && self.netns != 0).then_some(self.netns)
    }
}

/// What is kept per network namespace between ticks.
#[derive(Debug, Default)]
struct Namespace {
    diag: Option<SockDiag>,
    diag_retry_tick: u64,
    /// The namespace's TCP counters, read before each dump to tell whether it is
    /// needed (`None` when they could not be opened: then every tick dumps).
    counters: Option<TcpCounters>,
    /// The counters read just before the last complete dump.
    dumped_at: Option<TcpFingerprint>,
    dumped_tick: u64,
    /// Complete dumps of the namespace's sockets.
    dumps: u64,
    /// The sockets: the last dump's, updated from the TCP change tracker when it runs.
    sockets: SocketTable,
    conntrack: Option<ConntrackTracker>,
    conntrack_retry_tick: u64,
    /// Closed conntrack flows already reported (each is reported once).
    reported_closed: HashSet<u64>,
    /// The conntrack tracker was opened on the reporter's first tick and has not been
    /// polled yet: the flows already closed in its first dump closed before the probe
    /// started (up to two minutes before, conntrack's `TIME_WAIT`), and are counted as
    /// reported instead of being reported as connections of this moment.
    closed_before_start: bool,
    last_error: Option<String>,
}

/// Per-tick working state, kept to reuse its allocations.
#[derive(Debug, Default)]
struct Scratch {
    sockets: Vec<TcpSocket>,
    socket_ranges: Vec<Range<usize>>,
    flows: Vec<Flow>,
    flow_ranges: Vec<Range<usize>>,
    extra_owners: HashMap<u64, u32>,
    wanted: Vec<(u64, u32)>,
    listen_exact: HashMap<EndpointKey, u64, KeyHasher>,
    listen_any: HashMap<(u32, u16), u64>,
    local_ips: HashMap<IpAddr, u32>,
    conntrack_client: HashMap<(EndpointKey, EndpointKey), EndpointKey, KeyHasher>,
    closed_now: HashSet<u64>,
    /// This tick's links, in socket then flow order, and where each namespace's
    /// sockets' and flows' links are (keyed `netns << 1`, `netns << 1 | 1`).
    links: Vec<Link>,
    link_segments: Vec<(u64, Range<usize>)>,
    /// End points whose node is built again this tick.
    changed: Vec<EndpointKey>,
    /// The owner of each socket of `sockets`, in order.
    owners: Vec<Option<u32>>,
    adjacency: Vec<Str>,
    counter_buf: Vec<u8>,
}

/// The inputs the graph was last brought up to date with: when a tick's are the
/// same, so is the graph, and its links are not looked at.
#[derive(Debug, Default)]
struct LastBuild {
    valid: bool,
    /// Namespaces and their socket and flow counts, in plan order.
    plans: Vec<(u64, bool, usize, usize)>,
    sockets: Vec<TcpSocket>,
    owners: Vec<Option<u32>>,
    flows: Vec<Flow>,
    networks_version: u64,
    /// The build reported closed flows for the first time (the next one would not).
    reported_closed: bool,
}

/// Reports the Endpoint topology.
#[derive(Debug)]
pub struct EndpointReporter {
    /// The host ID (the host name), the scope of host-local addresses.
    host_id: String,
    host_node_id: Str,
    topology: Str,
    proc_root: PathBuf,
    processes: bool,
    conntrack_enabled: bool,
    walker: Option<Arc<Mutex<ProcessWalker>>>,
    local_networks: Vec<Cidr>,
    shared_networks: LocalNetworks,
    shared_version: u64,
    runner: NetnsRunner,
    /// Entering a namespace was refused once already (warned about).
    netns_refused: bool,
    own_netns: Option<u64>,
    namespaces: HashMap<u64, Namespace>,
    conntrack_health: Availability,
    /// End point → ID, for the end points in the graph.
    ids: HashMap<EndpointKey, Str, KeyHasher>,
    /// pid → (decimal text, last tick used).
    pid_text: HashMap<u32, (Str, u64)>,
    /// Socket inodes no owner was found for (searched again every
    /// `UNRESOLVED_RETRY_TICKS` ticks).
    unresolved: HashSet<u64>,
    tick: u64,
    scratch: Scratch,
    /// Bumped whenever the local networks change (scopes of end points change).
    networks_version: u64,
    /// The graph, kept between ticks.
    graph: EndpointGraph,
    /// The local networks' version the graph's keys were made with.
    graph_networks: u64,
    /// The graph's nodes as last reported.
    nodes: BTreeMap<Str, Node>,
    /// What changed in `nodes` since the last [`Reporter::report_changes`]; `None`
    /// when its receiver needs the whole topology next (first call, a call of
    /// `report` in between, the graph started again).
    unsent: Option<NodeChanges>,
    /// This tick reports changes (rather than every node).
    send_changes: bool,
    last: LastBuild,
    /// Namespace dumps skipped because the namespace's counters had not moved.
    dumps_skipped: u64,
    /// Ticks whose graph was the last tick's.
    graphs_reused: u64,
    /// TCP state changes from eBPF, when they can be followed.
    tcp_changes: ChangeFeed,
}

impl EndpointReporter {
    /// A reporter for `config`'s host. `walker` is the spy loop's process walker (used
    /// to find the owners of new sockets); without it, or with processes off, only
    /// conntrack's flows are reported, without pids, as Scope does.
    pub fn new(config: &ProbeConfig, walker: Option<Arc<Mutex<ProcessWalker>>>) -> Self {
        let processes = config.processes && walker.is_some();
        EndpointReporter {
            host_id: config.hostname.clone(),
            host_node_id: Str::from(config.host_node_id()),
            topology: Str::new(TopologyKind::Endpoint.name()),
            proc_root: config.proc_root.clone(),
            processes,
            conntrack_enabled: config.conntrack,
            walker,
            local_networks: Vec::new(),
            shared_networks: LocalNetworks::default(),
            shared_version: 0,
            runner: NetnsRunner::new(),
            netns_refused: false,
            own_netns: netns::current_netns().ok(),
            namespaces: HashMap::new(),
            conntrack_health: Availability::default(),
            ids: HashMap::default(),
            pid_text: HashMap::new(),
            unresolved: HashSet::new(),
            tick: 0,
            scratch: Scratch::default(),
            networks_version: 0,
            graph: EndpointGraph::default(),
            graph_networks: 0,
            nodes: BTreeMap::new(),
            unsent: None,
            send_changes: false,
            last: LastBuild::default(),
            dumps_skipped: 0,
            graphs_reused: 0,
            tcp_changes: ChangeFeed::new(processes && config.track_tcp_changes),
        }
    }

    /// Turns following TCP state changes with eBPF on or off (on by default, see
    /// [`ProbeConfig::track_tcp_changes`]), with a ring buffer of `ring_bytes` (`None`:
    /// the default size). Takes effect at the next tick.
    pub fn track_tcp_changes(&mut self, enabled: bool, ring_bytes: Option<u32>) {
        self.tcp_changes
            .configure(enabled && self.processes, ring_bytes);
    }

    /// How namespaces were kept up to date from TCP state changes; `None` when the
    /// change tracker is not running (then every change means a dump).
    pub fn tcp_tracking(&self) -> Option<TrackingStats> {
        self.tcp_changes
            .is_running()
            .then_some(self.tcp_changes.stats)
    }

    /// The host's local networks (bridge subnets): their addresses are scoped by the
    /// host ID, since they are only unique on this host.
    pub fn set_local_networks(&mut self, networks: Vec<Cidr>) {
        if networks != self.local_networks {
            self.local_networks = networks;
            self.ids.clear();
            self.networks_version += 1;
        }
    }

    pub fn local_networks(&self) -> &[Cidr] {
        &self.local_networks
    }

    /// A handle through which another collector (Docker, once it knows the bridge
    /// subnets) sets the local networks after this reporter was handed to the spy
    /// loop. Read at the start of each tick.
    pub fn local_networks_handle(&self) -> LocalNetworks {
        self.shared_networks.clone()
    }

    /// Whether conntrack was found unreadable (and is waiting to be retried).
    pub fn conntrack_unavailable(&self) -> bool {
        self.conntrack_health.is_unavailable()
    }

    /// How many times the "conntrack unavailable" warning was logged.
    pub fn conntrack_warnings(&self) -> u64 {
        self.conntrack_health.warnings()
    }

    /// How many namespace dumps were skipped because the namespace's TCP counters
    /// showed no change.
    pub fn dumps_skipped(&self) -> u64 {
        self.dumps_skipped
    }

    /// How many times network namespace `netns`'s sockets were dumped whole since
    /// the reporter first read it (`None` for a namespace it does not hold).
    pub fn namespace_dumps(&self, netns: u64) -> Option<u64> {
        self.namespaces.get(&netns).map(|ns| ns.dumps)
    }

    /// How many ticks sent the previous tick's graph again (no end point's node
    /// changed).
    pub fn graphs_reused(&self) -> u64 {
        self.graphs_reused
    }

    fn in_local_network(&self, ip: IpAddr) -> bool {
        self.local_networks.iter().any(|n| n.contains(ip))
    }

    fn key(&self, scope_netns: Option<u64>, ip: IpAddr, port: u16) -> EndpointKey {
        let scope = if self.in_local_network(ip) {
            ScopeKey::Host
        } else if ip.is_loopback() {
            scope_netns.map_or(ScopeKey::Host, ScopeKey::Netns)
        } else {
            ScopeKey::Global
        };
        EndpointKey::new(scope, ip, port)
    }

    fn key_of(&self, scope_netns: Option<u64>, addr: SocketAddr) -> EndpointKey {
        self.key(scope_netns, addr.ip().to_canonical(), addr.port())
    }

    /// The namespaces to scan this tick: the host's first, then the others. The host's
    /// is pid 1's; when that is unreadable (pid 1 may be protected from us), the
    /// probe's own.
    fn plan(&self, tick: &Tick) -> Vec<NsPlan> {
        let procs = &tick.procs;
        let host = procs.host_netns.or(self.own_netns);
        match host.filter(|_| self.processes) {
            Some(host) => {
                let host_pid = (Some(host) != self.own_netns)
                    .then(|| procs.namespaces.get(&host).copied().unwrap_or(1));
                let mut plan = vec![NsPlan {
                    netns: host,
                    pid: host_pid,
                    host: true,
                }];
                plan.extend(procs.namespaces.iter().filter(|(ns, _)| **ns != host).map(
                    |(ns, pid)| NsPlan {
                        netns: *ns,
                        pid: (Some(*ns) != self.own_netns).then_some(*pid),
                        host: false,
                    },
                ));
                plan
            }
            None => vec![NsPlan {
                netns: self.own_netns.unwrap_or(0),
                pid: None,
                host: true,
            }],
        }
    }

    /// Runs `f` inside the plan's namespace (directly when it is the current one).
    fn in_namespace<T: Send + 'static>(
        &mut self,
        plan: &NsPlan,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, NetnsError> {
        match plan.pid {
            None => Ok(f()),
            Some(pid) => self.runner.run_in(
                &NetnsTarget::of_pid(&self.proc_root, pid, Some(plan.netns).filter(|n| *n != 0)),
                f,
            ),
        }
    }

    /// Dumps one namespace's sockets (and conntrack table) into the scratch vectors.
    fn collect(&mut self, plan: &NsPlan, try_conntrack: bool, now: Instant) {
        let mut ns = self.namespaces.remove(&plan.netns).unwrap_or_default();
        let want_diag = self.processes && ns.diag.is_none() && ns.diag_retry_tick <= self.tick;
        let want_ct = try_conntrack
            && ns.conntrack.is_none()
            && (plan.host || ns.conntrack_retry_tick <= self.tick);
        if want_diag || want_ct {
            let proc_root = self.proc_root.clone();
            let opened = self.in_namespace(plan, move || {
                (
                    want_diag.then(|| {
                        SockDiag::open(CONNECTION_AND_LISTEN_STATES)
                            .map(|d| (d, TcpCounters::open_current(&proc_root).ok()))
                    }),
                    want_ct.then(|| ConntrackTracker::open(RESYNC_EVERY)),
                )
            });
            match opened {
                Ok((diag, ct)) => {
                    match diag {
                        Some(Ok((d, counters))) => {
                            ns.diag = Some(d);
                            ns.counters = counters;
                            ns.dumped_at = None;
                        }
                        Some(Err(e)) => {
                            ns.diag_retry_tick = self.tick + OPEN_RETRY_TICKS;
                            self.note_error(plan, &mut ns, &e.to_string());
                        }
                        None => {}
                    }
                    match ct {
                        Some(Ok(c)) => {
                            ns.conntrack = Some(c);
                            ns.closed_before_start = self.tick == 1;
                        }
                        Some(Err(e)) => self.conntrack_failed(plan, &mut ns, &e, now),
                        None => {}
                    }
                }
                Err(e) => {
                    ns.diag_retry_tick = self.tick + OPEN_RETRY_TICKS;
                    ns.conntrack_retry_tick = self.tick + OPEN_RETRY_TICKS;
                    if e.is_gone() {
                        debug!(netns = plan.netns, error = %e, "network namespace vanished");
                    } else if e.is_permission() && !self.netns_refused {
                        self.netns_refused = true;
                        warn!(
                            error = %e,
                            "cannot enter network namespaces (the probe needs CAP_SYS_ADMIN and \
                             access to other processes): connections inside containers are missing"
                        );
                        crate::health::problem(
                            "Container networks",
                            format!(
                                "cannot enter other network namespaces ({e}); connections \
                                 inside containers are missing (run the probe as root, or \
                                 give it CAP_SYS_ADMIN and CAP_SYS_PTRACE)"
                            ),
                        );
                    } else {
                        self.note_error(plan, &mut ns, &e.to_string());
                    }
                }
            }
        }

        let start = self.scratch.sockets.len();
        if self.processes
            && let Some(diag) = ns.diag.as_mut()
        {
            let tracking = self.tcp_changes.is_running();
            let (unchanged, counters) = if tracking {
                // Followed through the kernel's state changes: the counters are not
                // needed (and a dump happens first if tracking stops).
                ns.dumped_at = None;
                let up_to_date = ns.sockets.is_synced()
                    && match self.tcp_changes.changes(plan.netns) {
                        None => false,
                        // The periodic dump catches what the changes could not say;
                        // a namespace none touched since its last dump has nothing
                        // to catch (with 20 idle containers, 2 dumps a tick saved,
                        // each a walk of the kernel's whole TCP table).
                        Some(changes)
                            if self.tick >= ns.dumped_tick + REDUMP_TICKS
                                && !(changes.is_empty() && ns.sockets.is_quiet()) =>
                        {
                            false
                        }
                        Some(changes) => {
                            match ns.sockets.apply(changes, self.tick, |s| diag.lookup(s)) {
                                Ok(Update::Unchanged) => true,
                                Ok(Update::Updated { lookups }) => {
                                    self.tcp_changes.stats.updates += 1;
                                    self.tcp_changes.stats.lookups += lookups as u64;
                                    true
                                }
                                Ok(Update::NeedsDump(why)) => {
                                    debug!(netns = plan.netns, why, "dumping TCP sockets");
                                    false
                                }
                                Err(e) => {
                                    debug!(netns = plan.netns, error = %e, "TCP socket lookup failed; dumping");
                                    false
                                }
                            }
                        }
                    };
                (up_to_date, None)
            } else {
                // Counters first: anything that changes after this reading shows at the
                // next tick, whether or not this dump saw it.
                let counters = ns
                    .counters
                    .as_ref()
                    .and_then(|c| c.read(&mut self.scratch.counter_buf).ok());
                let unchanged = counters.is_some()
                    && counters == ns.dumped_at
                    && self.tick < ns.dumped_tick + REDUMP_TICKS;
                (unchanged, counters)
            };
            if unchanged {
                self.dumps_skipped += 1;
            } else if diag.is_broken() {
                // A failed lookup could not be drained: open a new socket next tick.
                ns.sockets.clear();
                ns.diag = None;
            } else {
                ns.dumped_at = None;
                let mut summary = Default::default();
                let dumped: Result<(), NetlinkError> =
                    ns.sockets.replace_with_dump(tracking, |out| {
                        summary = diag.dump_tcp(out)?;
                        Ok(())
                    });
                match dumped {
                    Ok(()) => {
                        ns.last_error = None;
                        ns.dumped_tick = self.tick;
                        ns.dumps += 1;
                        if tracking {
                            self.tcp_changes.stats.dumps += 1;
                        }
                        // A dump the kernel flagged as inconsistent is not trusted twice.
                        ns.dumped_at = counters.filter(|_| !summary.interrupted);
                    }
                    Err(e) => {
                        if diag.is_broken() {
                            ns.diag = None;
                        }
                        self.note_error(plan, &mut ns, &e.to_string());
                    }
                }
            }
            self.scratch.sockets.extend_from_slice(ns.sockets.sockets());
        }
        self.scratch
            .socket_ranges
            .push(start..self.scratch.sockets.len());

        let start = self.scratch.flows.len();
        if try_conntrack && let Some(ct) = ns.conntrack.as_mut() {
            match ct.poll(now, &mut self.scratch.flows) {
                Ok(_) => {
                    if std::mem::take(&mut ns.closed_before_start) {
                        ns.reported_closed.extend(
                            self.scratch.flows[start..]
                                .iter()
                                .filter(|f| f.seen_reply() && f.is_closed())
                                .map(closed_flow_key),
                        );
                    }
                    if plan.host {
                        self.conntrack_health.succeeded();
                    }
                }
                Err(e) => {
                    self.scratch.flows.truncate(start);
                    if ct.is_broken() {
                        ns.conntrack = None;
                    }
                    self.conntrack_failed(plan, &mut ns, &e, now);
                }
            }
        }
        self.scratch
            .flow_ranges
            .push(start..self.scratch.flows.len());
        self.namespaces.insert(plan.netns, ns);
    }

    fn conntrack_failed(
        &mut self,
        plan: &NsPlan,
        ns: &mut Namespace,
        e: &NetlinkError,
        now: Instant,
    ) {
        if plan.host {
            self.conntrack_health.failed(e, now);
        } else {
            ns.conntrack_retry_tick = self.tick + CONNTRACK_RETRY_TICKS;
            debug!(netns = plan.netns, error = %e, "conntrack unreadable in this network namespace");
        }
    }

    /// Logs a namespace's error when it changes (the host's as a warning, the
    /// others', which come and go with containers, at debug level).
    fn note_error(&self, plan: &NsPlan, ns: &mut Namespace, error: &str) {
        if ns.last_error.as_deref() == Some(error) {
            return;
        }
        if plan.host {
            warn!(
                error,
                "reading the host's TCP sockets failed; connections are missing"
            );
        } else {
            debug!(
                netns = plan.netns,
                error, "reading a network namespace's TCP sockets failed"
            );
        }
        ns.last_error = Some(error.to_string());
    }

    /// Finds owners for connection sockets the walker's snapshot does not know, with
    /// one `resolve_sockets` call.
    fn resolve_owners(&mut self, tick: &Tick) {
        let s = &mut self.scratch;
        s.extra_owners.clear();
        s.wanted.clear();
        if !self.processes {
            return;
        }
        let owners = &tick.procs.socket_owners;
        if self.tick.is_multiple_of(UNRESOLVED_RETRY_TICKS) {
            self.unresolved.clear();
        }
        for sock in &s.sockets {
            if sock.inode == 0
                || owners.contains_key(&sock.inode)
                || self.unresolved.contains(&sock.inode)
            {
                continue;
            }
            s.wanted.push((sock.inode, sock.uid));
        }
        if s.wanted.is_empty() {
            return;
        }
        s.wanted.sort_unstable();
        s.wanted.dedup();
        let found = match self.walker.as_ref().map(|w| w.lock()) {
            Some(Ok(mut walker)) => walker.resolve_sockets(&s.wanted),
            _ => HashMap::new(),
        };
        for (inode, _) in &s.wanted {
            match found.get(inode) {
                Some(pid) => {
                    s.extra_owners.insert(*inode, *pid);
                }
                None => {
                    self.unresolved.insert(*inode);
                }
            }
        }
    }

    fn owner(&self, tick: &Tick, inode: u64) -> Option<u32> {
        if inode == 0 {
            return None;
        }
        tick.procs
            .socket_owners
            .get(&inode)
            .or_else(|| self.scratch.extra_owners.get(&inode))
            .copied()
    }

    /// Listening sockets, local addresses and conntrack's directions, for telling
    /// clients from servers.
    fn index_namespaces(&mut self, plans: &[NsPlan]) {
        let mut s = std::mem::take(&mut self.scratch);
        s.listen_exact.clear();
        s.listen_any.clear();
        s.local_ips.clear();
        s.conntrack_client.clear();
        for (i, plan) in plans.iter().enumerate() {
            let scope = plan.scope_netns();
            for sock in &s.sockets[s.socket_ranges[i].clone()] {
                if sock.state == TcpState::Listen {
                    if sock.local_ip.is_unspecified() {
                        s.listen_any.insert((i as u32, sock.local_port), sock.inode);
                    } else {
                        let key = self.key(scope, sock.local_ip, sock.local_port);
                        s.listen_exact.insert(key, sock.inode);
                    }
                }
                if !sock.local_ip.is_loopback() && !sock.local_ip.is_unspecified() {
                    s.local_ips.entry(sock.local_ip).or_insert(i as u32);
                }
            }
            // Closed flows have no sockets left to direct.
            for flow in s.flows[s.flow_ranges[i].clone()]
                .iter()
                .filter(|f| !f.is_closed())
            {
                let (client, server) = flow.client_server();
                let (c, sv) = (self.key_of(scope, client), self.key_of(scope, server));
                s.conntrack_client.insert(unordered(c, sv), c);
            }
        }
        self.scratch = s;
    }

    /// Whether `key` (an address seen from namespace `ns`) is a listening socket.
    fn listening(&self, ns: u32, key: EndpointKey) -> Option<u64> {
        let s = &self.scratch;
        if let Some(inode) = s.listen_exact.get(&key) {
            return Some(*inode);
        }
        let ip = key.ip();
        let owner_ns = if ip.is_loopback() || ip.is_unspecified() {
            Some(ns)
        } else {
            s.local_ips.get(&ip).copied()
        };
        owner_ns.and_then(|n| s.listen_any.get(&(n, key.port)).copied())
    }

    /// This tick's links: one per connection socket, then one per flow conntrack saw
    /// answered (a closed flow only the first time it is seen). Returns whether closed
    /// flows were reported for the first time (the next tick with the same inputs
    /// leaves them out).
    fn collect_links(&mut self, tick: &Tick, plans: &[NsPlan]) -> bool {
        let mut newly_closed = false;
        let mut links = std::mem::take(&mut self.scratch.links);
        let mut segments = std::mem::take(&mut self.scratch.link_segments);
        links.clear();
        segments.clear();
        for (i, plan) in plans.iter().enumerate() {
            let scope = plan.scope_netns();
            let ns = i as u32;
            let start = links.len();
            for sock in &self.scratch.sockets[self.scratch.socket_ranges[i].clone()] {
                if !sock.state.is_connection() {
                    continue;
                }
                let local = self.key(scope, sock.local_ip, sock.local_port);
                let remote = self.key(scope, sock.remote_ip, sock.remote_port);
                if local == remote {
                    continue;
                }
                let local_listener = self.listening(ns, local);
                let outgoing = match self.scratch.conntrack_client.get(&unordered(local, remote)) {
                    Some(client) => *client == local,
                    None if local_listener.is_some() => false,
                    None if self.listening(ns, remote).is_some() => true,
                    // Scope's heuristic: the lower port is the server.
                    None => sock.local_port >= sock.remote_port,
                };
                // A connection still waiting in the accept queue has no file yet: it
                // belongs to whoever holds the listening socket.
                let owner = self.owner(tick, sock.inode).or_else(|| {
                    (sock.inode == 0 && !outgoing)
                        .then(|| local_listener.and_then(|l| self.owner(tick, l)))
                        .flatten()
                });
                links.push(if outgoing {
                    Link {
                        from: local,
                        to: remote,
                        from_pid: owner,
                        to_pid: None,
                    }
                } else {
                    Link {
                        from: remote,
                        to: local,
                        from_pid: None,
                        to_pid: owner,
                    }
                });
            }
            segments.push((plan.netns << 1, start..links.len()));
        }

        // Flows conntrack saw: connections that closed before this tick, and traffic
        // the kernel forwards (containers behind NAT). Closed ones are reported once.
        for (i, plan) in plans.iter().enumerate() {
            let scope = plan.scope_netns();
            let Some(ns_state) = self.namespaces.get_mut(&plan.netns) else {
                continue;
            };
            let mut reported = std::mem::take(&mut ns_state.reported_closed);
            self.scratch.closed_now.clear();
            let start = links.len();
            for j in self.scratch.flow_ranges[i].clone() {
                let flow = self.scratch.flows[j];
                if !flow.seen_reply() {
                    continue; // unanswered attempts are not connections
                }
                if flow.is_closed() {
                    let key = closed_flow_key(&flow);
                    self.scratch.closed_now.insert(key);
                    if !reported.insert(key) {
                        continue;
                    }
                    newly_closed = true;
                }
                let (client, server) = flow.client_server();
                let (c, s) = (self.key_of(scope, client), self.key_of(scope, server));
                if c != s {
                    links.push(Link {
                        from: c,
                        to: s,
                        from_pid: None,
                        to_pid: None,
                    });
                }
            }
            segments.push((plan.netns << 1 | 1, start..links.len()));
            let closed_now = &self.scratch.closed_now;
            reported.retain(|id| closed_now.contains(id));
            if let Some(ns_state) = self.namespaces.get_mut(&plan.netns) {
                ns_state.reported_closed = reported;
            }
        }
        self.scratch.links = links;
        self.scratch.link_segments = segments;
        newly_closed
    }

    /// NAT: each real end point in the graph, copied under the address the other side
    /// used.
    fn nat_copies(&self, plans: &[NsPlan]) -> Vec<NatCopy> {
        let mut copies = Vec::new();
        for (i, plan) in plans.iter().enumerate() {
            let scope = plan.scope_netns();
            for flow in &self.scratch.flows[self.scratch.flow_ranges[i].clone()] {
                for (real, rewritten) in [flow.snat(), flow.dnat()].into_iter().flatten() {
                    let real = self.key_of(scope, real);
                    if self.graph.contains(&real) {
                        copies.push(NatCopy {
                            rewritten: self.key_of(scope, rewritten),
                            real,
                        });
                    }
                }
            }
        }
        copies
    }

    /// The owner of every socket of this tick, in order (what the graph depends on
    /// besides the sockets and flows themselves).
    fn find_owners(&mut self, tick: &Tick) {
        let mut owners = std::mem::take(&mut self.scratch.owners);
        owners.clear();
        owners.extend(
            self.scratch
                .sockets
                .iter()
                .map(|sock| self.owner(tick, sock.inode)),
        );
        self.scratch.owners = owners;
    }

    /// Whether this tick's inputs are those the last graph was built from.
    fn same_inputs(&self, plans: &[NsPlan]) -> bool {
        let (l, s) = (&self.last, &self.scratch);
        l.valid
            && !l.reported_closed
            && l.networks_version == self.networks_version
            && l.plans.len() == plans.len()
            && plans
                .iter()
                .zip(&l.plans)
                .enumerate()
                .all(|(i, (p, last))| {
                    *last
                        == (
                            p.netns,
                            p.host,
                            s.socket_ranges[i].len(),
                            s.flow_ranges[i].len(),
                        )
                })
            && l.sockets == s.sockets
            && l.owners == s.owners
            && l.flows == s.flows
    }

    fn remember_inputs(&mut self, plans: &[NsPlan], reported_closed: bool) {
        let (l, s) = (&mut self.last, &self.scratch);
        l.valid = true;
        l.reported_closed = reported_closed;
        l.networks_version = self.networks_version;
        l.plans.clear();
        l.plans.extend(plans.iter().enumerate().map(|(i, p)| {
            (
                p.netns,
                p.host,
                s.socket_ranges[i].len(),
                s.flow_ranges[i].len(),
            )
        }));
        l.sockets.clone_from(&s.sockets);
        l.owners.clone_from(&s.owners);
        l.flows.clone_from(&s.flows);
    }

    fn endpoint_id(&mut self, key: EndpointKey) -> Str {
        if let Some(id) = self.ids.get(&key) {
            return id.clone();
        }
        let netns = match key.scope {
            ScopeKey::Netns(n) => Some(n),
            _ => None,
        };
        let ip = key.ip();
        let scope = id::address_scope(&self.host_id, ip, self.in_local_network(ip), netns);
        let text = Str::from(id::endpoint_id(&scope, &id::canonical_ip(ip), key.port));
        self.ids.insert(key, text.clone());
        text
    }

    fn pid_text(&mut self, pid: u32) -> Str {
        let tick = self.tick;
        let (text, used) = self
            .pid_text
            .entry(pid)
            .or_insert_with(|| (Str::from(pid.to_string()), tick));
        *used = tick;
        text.clone()
    }

    /// Builds the nodes of the end points that changed again, and returns the report
    /// of every node, stamped `now`.
    fn emit(&mut self, tick: &Tick) -> Report {
        let now = tick.now;
        let mut changed = std::mem::take(&mut self.scratch.changed);
        self.graph.take_changed(&mut changed);
        if changed.is_empty() {
            self.graphs_reused += 1;
        }
        let mut adjacency = std::mem::take(&mut self.scratch.adjacency);
        for key in &changed {
            let Some(view) = self.graph.view(key) else {
                if let Some(id) = self.ids.remove(key) {
                    self.nodes.remove(&id);
                    if let Some(unsent) = self.unsent.as_mut() {
                        unsent.nodes.insert(id, None);
                    }
                }
                continue;
            };
            let id = self.endpoint_id(*key);
            let mut node = Node::new(id.clone());
            node.topology = self.topology.clone();
            adjacency.clear();
            for to in &view.adjacency {
                let to = self.endpoint_id(*to);
                adjacency.push(to);
            }
            adjacency.sort_unstable();
            for to in adjacency.drain(..) {
                node.add_adjacent(to);
            }
            if let Some(pid) = view.pid {
                let text = self.pid_text(pid);
                node.set_latest(PID, now, text);
                node.set_latest(HOST_NODE_ID, now, self.host_node_id.clone());
            }
            if let Some(real) = view.copy_of {
                let real = self.endpoint_id(real);
                node.set_latest(COPY_OF, now, real);
            }
            if let Some(unsent) = self.unsent.as_mut() {
                unsent.nodes.insert(id.clone(), Some(node.clone()));
            }
            self.nodes.insert(id, node);
        }
        self.scratch.adjacency = adjacency;
        self.scratch.changed = changed;
        let tick_no = self.tick;
        if tick_no.is_multiple_of(60) {
            self.pid_text.retain(|_, (_, used)| *used + 60 > tick_no);
        }
        let mut report = Report::empty();
        if self.send_changes {
            // The receiver stamps the kept nodes itself.
            return report;
        }
        for node in self.nodes.values_mut() {
            for (_, entry) in node.latest.iter_mut() {
                entry.timestamp = now;
            }
        }
        self.unsent = None;
        report.topology_mut(TopologyKind::Endpoint).nodes = self.nodes.clone();
        report
    }
}

impl EndpointReporter {
    /// The report of this tick's sockets and flows: the graph brought up to date with
    /// this tick's links (see [`crate::endpoint_graph`]).
    fn graph(&mut self, tick: &Tick, plans: &[NsPlan]) -> Report {
        if self.graph_networks != self.networks_version {
            // The end points' keys depend on the local networks: start again.
            self.graph.reset();
            self.nodes.clear();
            self.unsent = None;
            self.ids.clear();
            self.last.valid = false;
            self.graph_networks = self.networks_version;
        }
        self.find_owners(tick);
        if !self.same_inputs(plans) {
            self.index_namespaces(plans);
            let reported_closed = self.collect_links(tick, plans);
            self.graph
                .apply_links(&self.scratch.links, &self.scratch.link_segments);
            let copies = self.nat_copies(plans);
            self.graph.set_copies(copies);
            self.remember_inputs(plans, reported_closed);
        }
        self.emit(tick)
    }
}

/// Identifies a closed conntrack flow across ticks: conntrack's ID plus the client's
/// port and the server's, packed in one word.
fn closed_flow_key(flow: &Flow) -> u64 {
    u64::from(flow.id) << 32
        | u64::from(flow.original.src.port()) << 16
        | u64::from(flow.original.dst.port())
}

fn unordered(a: EndpointKey, b: EndpointKey) -> (EndpointKey, EndpointKey) {
    if a <= b { (a, b) } else { (b, a) }
}

impl Reporter for EndpointReporter {
    fn name(&self) -> &'static str {
        "endpoint"
    }

    fn report(&mut self, tick: &Tick) -> Result<Report, ReporterError> {
        self.send_changes = false;
        Ok(self.tick_report(tick))
    }

    fn report_changes(
        &mut self,
        tick: &Tick,
    ) -> Result<(Report, Option<NodeChanges>), ReporterError> {
        self.send_changes = true;
        let report = self.tick_report(tick);
        Ok((report, Some(self.take_changes())))
    }
}

impl EndpointReporter {
    /// What changed in the nodes since the last call (all of them if the receiver
    /// needs the whole topology).
    fn take_changes(&mut self) -> NodeChanges {
        let total = self.nodes.len();
        match self
            .unsent
            .replace(NodeChanges::none(TopologyKind::Endpoint, total))
        {
            Some(mut changes) => {
                changes.total = total;
                changes
            }
            None => NodeChanges::whole(TopologyKind::Endpoint, self.nodes.values().cloned()),
        }
    }

    fn tick_report(&mut self, tick: &Tick) -> Report {
        self.tick += 1;
        let now = Instant::now();
        if let Some((version, networks)) = self.shared_networks.newer_than(self.shared_version) {
            self.shared_version = version;
            self.set_local_networks(networks);
        }
        let plans = self.plan(tick);
        // Before any namespace is read: what changes after this shows next tick.
        self.tcp_changes.drain();
        let s = &mut self.scratch;
        s.sockets.clear();
        s.socket_ranges.clear();
        s.flows.clear();
        s.flow_ranges.clear();
        for plan in &plans {
            // Asked again for each namespace: the host's (first) may have just failed.
            let try_conntrack = self.conntrack_enabled && self.conntrack_health.may_try(now);
            self.collect(plan, try_conntrack, now);
        }
        // Forget namespaces that are gone: their sockets keep them alive otherwise.
        let live: HashSet<u64> = plans.iter().map(|p| p.netns).collect();
        self.namespaces.retain(|ns, _| live.contains(ns));

        self.resolve_owners(tick);
        self.graph(tick, &plans)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_contain() {
        let net: Cidr = "172.17.0.0/16".parse().expect("valid");
        assert!(net.contains("172.17.3.4".parse().expect("ip")));
        assert!(!net.contains("172.18.0.1".parse().expect("ip")));
        let mapped: IpAddr = "::ffff:172.17.0.9".parse().expect("ip");
        assert!(net.contains(mapped), "IPv4-mapped addresses count as IPv4");
        assert_eq!(
            "10.1.2.3/8".parse::<Cidr>().expect("valid").to_string(),
            "10.0.0.0/8"
        );
        let v6: Cidr = "fd00::/8".parse().expect("valid");
        assert!(v6.contains("fd12::1".parse().expect("ip")));
        assert!(!v6.contains("10.0.0.1".parse().expect("ip")));
        assert!(
            "0.0.0.0/0"
                .parse::<Cidr>()
                .expect("valid")
                .contains("8.8.8.8".parse().expect("ip"))
        );
        for bad in ["10.0.0.0", "10.0.0.0/33", "nope/8", "::/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    fn reporter() -> EndpointReporter {
        let mut config = ProbeConfig::new("h1");
        config.conntrack = false;
        EndpointReporter::new(&config, None)
    }

    #[test]
    fn scopes_follow_the_protocol() {
        let mut r = reporter();
        r.set_local_networks(vec!["172.17.0.0/16".parse().expect("valid")]);
        let lo: IpAddr = "127.0.0.1".parse().expect("ip");
        let bridge: IpAddr = "172.17.0.2".parse().expect("ip");
        let public: IpAddr = "10.0.0.5".parse().expect("ip");
        let v6lo: IpAddr = "::1".parse().expect("ip");
        let cases = [
            (r.key(None, lo, 80), "h1;127.0.0.1;80"),
            (
                r.key(Some(4026532481), lo, 80),
                "h1-4026532481;127.0.0.1;80",
            ),
            (r.key(Some(4026532481), bridge, 80), "h1;172.17.0.2;80"),
            (r.key(Some(7), public, 443), ";10.0.0.5;443"),
            (r.key(None, v6lo, 8080), "h1;::1;8080"),
        ];
        for (key, want) in cases {
            assert_eq!(r.endpoint_id(key).as_str(), want);
        }
    }

    use crate::sys::conntrack::{CtTcpState, IPS_SEEN_REPLY, Tuple};
    use crate::walker::ProcSnapshot;

    fn sock(local: &str, remote: &str, state: TcpState, inode: u64) -> TcpSocket {
        let (l, r): (SocketAddr, SocketAddr) = (
            local.parse().expect("local"),
            remote.parse().expect("remote"),
        );
        TcpSocket {
            local_ip: l.ip(),
            local_port: l.port(),
            remote_ip: r.ip(),
            remote_port: r.port(),
            state,
            inode,
            uid: 0,
        }
    }

    fn flow(orig: (&str, &str), reply: (&str, &str), state: CtTcpState) -> Flow {
        let tuple = |(src, dst): (&str, &str)| Tuple {
            src: src.parse().expect("src"),
            dst: dst.parse().expect("dst"),
            protocol: 6,
        };
        Flow {
            id: 1,
            original: tuple(orig),
            reply: tuple(reply),
            status: IPS_SEEN_REPLY,
            tcp_state: Some(state),
        }
    }

    /// One tick over given sockets and flows of the host namespace, without the kernel.
    fn run(
        r: &mut EndpointReporter,
        sockets: &[TcpSocket],
        flows: &[Flow],
        owners: &[(u64, u32)],
    ) -> Report {
        r.tick += 1;
        let plans = [NsPlan {
            netns: 1,
            pid: None,
            host: true,
        }];
        r.namespaces.entry(1).or_default();
        r.scratch.sockets = sockets.to_vec();
        r.scratch.socket_ranges = std::iter::once(0..sockets.len()).collect();
        r.scratch.flows = flows.to_vec();
        r.scratch.flow_ranges = std::iter::once(0..flows.len()).collect();
        let tick = Tick {
            now: rescope_report::GoTime::now(),
            procs: Arc::new(ProcSnapshot {
                socket_owners: owners.iter().copied().collect(),
                ..ProcSnapshot::default()
            }),
        };
        r.graph(&tick, &plans)
    }

    fn edges(report: &Report) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (id, node) in &report[TopologyKind::Endpoint].nodes {
            for to in node.adjacency.iter() {
                out.push((id.to_string(), to.to_string()));
            }
        }
        out
    }

    fn latest(report: &Report, id: &str, key: &str) -> Option<String> {
        report[TopologyKind::Endpoint].nodes[id]
            .latest_value(key)
            .map(|v| v.to_string())
    }

    fn pair(a: &str, b: &str) -> (String, String) {
        (a.to_string(), b.to_string())
    }

    #[test]
    fn without_other_clues_the_lower_port_is_the_server() {
        let mut r = reporter();
        let s = [sock(
            "10.0.0.5:43210",
            "93.184.216.34:443",
            TcpState::Established,
            7,
        )];
        let report = run(&mut r, &s, &[], &[(7, 42)]);
        assert_eq!(
            edges(&report),
            [pair(";10.0.0.5;43210", ";93.184.216.34;443")]
        );
        assert_eq!(
            latest(&report, ";10.0.0.5;43210", PID).as_deref(),
            Some("42")
        );
        assert_eq!(
            latest(&report, ";10.0.0.5;43210", HOST_NODE_ID).as_deref(),
            Some("h1;<host>")
        );
        assert_eq!(latest(&report, ";93.184.216.34;443", PID), None);
        assert_eq!(
            latest(&report, ";93.184.216.34;443", HOST_NODE_ID),
            None,
            "remote ends have no host, so the app can show the Internet"
        );
        let node = &report[TopologyKind::Endpoint].nodes[";93.184.216.34;443"];
        assert_eq!(node.topology.as_str(), "endpoint");
    }

    #[test]
    fn a_listening_port_makes_its_side_the_server_whatever_the_numbers() {
        let mut r = reporter();
        let s = [
            sock("0.0.0.0:50000", "0.0.0.0:0", TcpState::Listen, 1),
            sock("10.0.0.5:50000", "10.0.0.9:80", TcpState::Established, 2),
        ];
        let report = run(&mut r, &s, &[], &[(2, 42)]);
        assert_eq!(edges(&report), [pair(";10.0.0.9;80", ";10.0.0.5;50000")]);
        assert_eq!(
            latest(&report, ";10.0.0.5;50000", PID).as_deref(),
            Some("42")
        );
    }

    #[test]
    fn conntrack_direction_wins_over_ports() {
        let mut r = reporter();
        let s = [sock(
            "10.0.0.5:80",
            "10.0.0.9:40000",
            TcpState::Established,
            2,
        )];
        let f = [flow(
            ("10.0.0.5:80", "10.0.0.9:40000"),
            ("10.0.0.9:40000", "10.0.0.5:80"),
            CtTcpState::Established,
        )];
        let report = run(&mut r, &s, &f, &[(2, 42)]);
        assert_eq!(edges(&report), [pair(";10.0.0.5;80", ";10.0.0.9;40000")]);
    }

    #[test]
    fn dnat_adds_a_copy_of_the_real_server_under_the_published_address() {
        let mut r = reporter();
        r.set_local_networks(vec!["172.17.0.0/16".parse().expect("cidr")]);
        // A container's server, reached through the host's published port 8080.
        let s = [
            sock("0.0.0.0:80", "0.0.0.0:0", TcpState::Listen, 1),
            sock("172.17.0.2:80", "1.2.3.4:5555", TcpState::Established, 2),
        ];
        let f = [flow(
            ("1.2.3.4:5555", "10.0.0.5:8080"),
            ("172.17.0.2:80", "1.2.3.4:5555"),
            CtTcpState::Established,
        )];
        let report = run(&mut r, &s, &f, &[(2, 42)]);
        let real = "h1;172.17.0.2;80";
        let copy = ";10.0.0.5;8080";
        assert_eq!(latest(&report, copy, COPY_OF).as_deref(), Some(real));
        assert_eq!(latest(&report, copy, PID).as_deref(), Some("42"));
        assert_eq!(latest(&report, real, COPY_OF), None);
        assert_eq!(edges(&report), [pair(";1.2.3.4;5555", real)]);
    }

    #[test]
    fn snat_copies_keep_the_edge_to_the_remote_server() {
        let mut r = reporter();
        let s = [sock(
            "172.17.0.2:40000",
            "8.8.8.8:443",
            TcpState::Established,
            2,
        )];
        let f = [flow(
            ("172.17.0.2:40000", "8.8.8.8:443"),
            ("8.8.8.8:443", "10.0.0.5:61000"),
            CtTcpState::Established,
        )];
        let report = run(&mut r, &s, &f, &[(2, 42)]);
        let mut e = edges(&report);
        e.sort();
        assert_eq!(
            e,
            [
                pair(";10.0.0.5;61000", ";8.8.8.8;443"),
                pair(";172.17.0.2;40000", ";8.8.8.8;443"),
            ]
        );
        assert_eq!(
            latest(&report, ";10.0.0.5;61000", COPY_OF).as_deref(),
            Some(";172.17.0.2;40000")
        );
    }

    #[test]
    fn closed_flows_are_reported_once_and_unanswered_ones_never() {
        let mut r = reporter();
        let closed = flow(
            ("10.0.0.5:40000", "10.0.0.9:80"),
            ("10.0.0.9:80", "10.0.0.5:40000"),
            CtTcpState::TimeWait,
        );
        let mut unanswered = flow(
            ("10.0.0.5:40001", "10.0.0.9:81"),
            ("10.0.0.9:81", "10.0.0.5:40001"),
            CtTcpState::SynSent,
        );
        unanswered.status = 0;
        let report = run(&mut r, &[], &[closed, unanswered], &[]);
        assert_eq!(edges(&report), [pair(";10.0.0.5;40000", ";10.0.0.9;80")]);
        let report = run(&mut r, &[], &[closed, unanswered], &[]);
        assert!(edges(&report).is_empty(), "already reported");
        // Once conntrack forgets it, the same tuple may be reported again later.
        run(&mut r, &[], &[], &[]);
        let report = run(&mut r, &[], &[closed], &[]);
        assert_eq!(edges(&report).len(), 1);
    }

    #[test]
    fn local_networks_set_through_the_handle_apply_at_the_next_tick() {
        let mut r = reporter();
        let handle = r.local_networks_handle();
        handle.set(vec!["172.17.0.0/16".parse().expect("cidr")]);
        let s = [sock(
            "172.17.0.2:40000",
            "172.17.0.3:80",
            TcpState::Established,
            2,
        )];
        r.report(&Tick {
            now: rescope_report::GoTime::now(),
            procs: Arc::new(ProcSnapshot::default()),
        })
        .expect("report");
        assert_eq!(r.local_networks(), handle.get().as_slice());
        let report = run(&mut r, &s, &[], &[]);
        assert_eq!(
            edges(&report),
            [pair("h1;172.17.0.2;40000", "h1;172.17.0.3;80")]
        );
    }

    #[test]
    fn an_unchanged_tick_sends_the_same_graph_with_new_timestamps() {
        let mut r = reporter();
        let s = [
            sock("0.0.0.0:80", "0.0.0.0:0", TcpState::Listen, 1),
            sock("10.0.0.5:80", "10.0.0.9:40000", TcpState::Established, 2),
        ];
        let first = run(&mut r, &s, &[], &[(1, 42), (2, 42)]);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = run(&mut r, &s, &[], &[(1, 42), (2, 42)]);
        std::thread::sleep(std::time::Duration::from_millis(2));
        // The third time from the copy kept of the second.
        let third = run(&mut r, &s, &[], &[(1, 42), (2, 42)]);
        assert_eq!(r.graphs_reused(), 2);
        assert_eq!(first[TopologyKind::Endpoint].nodes.len(), 2);
        assert_eq!(edges(&first), edges(&second));
        assert_eq!(edges(&first), edges(&third));
        let stamp = |report: &Report| {
            report[TopologyKind::Endpoint].nodes[";10.0.0.5;80"]
                .latest
                .get(PID)
                .expect("pid")
                .timestamp
        };
        assert!(stamp(&second) > stamp(&first), "fresh timestamps");
        assert!(stamp(&third) > stamp(&second), "fresh timestamps");
        assert_eq!(
            latest(&third, ";10.0.0.5;80", HOST_NODE_ID).as_deref(),
            Some("h1;<host>")
        );
        let restamped = |mut report: Report| {
            for node in report
                .topology_mut(TopologyKind::Endpoint)
                .nodes
                .values_mut()
            {
                for (_, entry) in node.latest.iter_mut() {
                    entry.timestamp = rescope_report::GoTime::default();
                }
            }
            report
        };
        assert_eq!(restamped(third.clone()), restamped(second.clone()));

        // Another owner, another socket, another network: built again.
        let changed = run(&mut r, &s, &[], &[(1, 42), (2, 43)]);
        assert_eq!(latest(&changed, ";10.0.0.5;80", PID).as_deref(), Some("43"));
        let more = [
            s[0],
            s[1],
            sock("10.0.0.5:80", "10.0.0.7:40001", TcpState::Established, 3),
        ];
        let fourth = run(&mut r, &more, &[], &[(1, 42), (2, 43)]);
        assert_eq!(edges(&fourth).len(), 2);
        r.set_local_networks(vec!["10.0.0.0/8".parse().expect("cidr")]);
        let fifth = run(&mut r, &more, &[], &[(1, 42), (2, 43)]);
        assert!(
            fifth[TopologyKind::Endpoint]
                .nodes
                .contains_key("h1;10.0.0.5;80")
        );
        assert_eq!(r.graphs_reused(), 2);
    }

    fn restamped(mut report: Report) -> Report {
        for node in report
            .topology_mut(TopologyKind::Endpoint)
            .nodes
            .values_mut()
        {
            for (_, entry) in node.latest.iter_mut() {
                entry.timestamp = rescope_report::GoTime::default();
            }
        }
        report
    }

    #[test]
    fn the_graph_kept_between_ticks_reports_what_a_full_rebuild_does() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        let ip = |rng: &mut StdRng| {
            *[
                "127.0.0.1",
                "10.0.0.5",
                "172.17.0.2",
                "172.17.0.3",
                "93.184.216.34",
            ]
            .get(rng.random_range(0..5))
            .expect("in range")
        };
        for seed in 0..60 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut kept = reporter();
            kept.set_local_networks(vec!["172.17.0.0/16".parse().expect("cidr")]);
            // The same, sending changes to a receiver that keeps the nodes.
            let mut changing = reporter();
            changing.set_local_networks(vec!["172.17.0.0/16".parse().expect("cidr")]);
            let mut receiver = crate::kept::KeptNodes::default();
            let mut sockets: Vec<TcpSocket> = Vec::new();
            let mut flows: Vec<Flow> = Vec::new();
            let mut owners: Vec<(u64, u32)> = Vec::new();
            let mut next_inode = 1;
            for tick in 0..30 {
                // Sockets open and close; listeners come and go; owners are found or
                // change; conntrack flows (some NAT'd) appear and vanish.
                for _ in 0..rng.random_range(0..6) {
                    if !sockets.is_empty() && rng.random_bool(0.4) {
                        let i = rng.random_range(0..sockets.len());
                        sockets.swap_remove(i);
                    }
                    let (local_ip, remote_ip) = (ip(&mut rng), ip(&mut rng));
                    let (lport, rport) = (
                        *[80u16, 443, 5432, 40000, 40001, 50000]
                            .get(rng.random_range(0..6))
                            .expect("in range"),
                        *[80u16, 443, 40002, 40003]
                            .get(rng.random_range(0..4))
                            .expect("in range"),
                    );
                    let inode = if rng.random_bool(0.15) { 0 } else { next_inode };
                    next_inode += 1;
                    let socket = if rng.random_bool(0.2) {
                        sock(
                            &format!(
                                "{}:{lport}",
                                if rng.random_bool(0.5) {
                                    "0.0.0.0"
                                } else {
                                    local_ip
                                }
                            ),
                            "0.0.0.0:0",
                            TcpState::Listen,
                            inode,
                        )
                    } else {
                        sock(
                            &format!("{local_ip}:{lport}"),
                            &format!("{remote_ip}:{rport}"),
                            TcpState::Established,
                            inode,
                        )
                    };
                    sockets.push(socket);
                    if inode != 0 && rng.random_bool(0.7) {
                        owners.push((inode, rng.random_range(100..104)));
                    }
                }
                if !owners.is_empty() && rng.random_bool(0.3) {
                    let i = rng.random_range(0..owners.len());
                    owners[i].1 = rng.random_range(100..104);
                }
                if rng.random_bool(0.3) {
                    let (c, s) = (ip(&mut rng), ip(&mut rng));
                    let nat = ip(&mut rng);
                    flows.push(flow(
                        (&format!("{c}:40001"), &format!("{s}:80")),
                        (&format!("{nat}:80"), &format!("{c}:40001")),
                        CtTcpState::Established,
                    ));
                }
                if !flows.is_empty() && rng.random_bool(0.2) {
                    flows.remove(0);
                }
                if rng.random_bool(0.1) {
                    sockets.reverse(); // a dump in another order
                }
                let got = run(&mut kept, &sockets, &flows, &owners);
                // Now and then a whole report in between: the next changes are whole.
                changing.send_changes = rng.random_bool(0.9);
                let mut changed = run(&mut changing, &sockets, &flows, &owners);
                if changing.send_changes {
                    let changes = changing.take_changes();
                    assert_eq!(changes.total, got[TopologyKind::Endpoint].nodes.len());
                    receiver.apply(changes, rescope_report::GoTime::now(), drop);
                    receiver.merge_into(&mut changed);
                }
                assert_eq!(
                    restamped(changed),
                    restamped(got.clone()),
                    "changes, seed {seed}, tick {tick}"
                );
                let mut fresh = reporter();
                fresh.set_local_networks(vec!["172.17.0.0/16".parse().expect("cidr")]);
                let want = run(&mut fresh, &sockets, &flows, &owners);
                assert_eq!(restamped(got), restamped(want), "seed {seed}, tick {tick}");
            }
        }
    }

    #[test]
    fn connection_keys_are_unordered() {
        let r = reporter();
        let a = r.key(None, "10.0.0.1".parse().expect("ip"), 1);
        let b = r.key(None, "10.0.0.2".parse().expect("ip"), 2);
        assert_eq!(unordered(a, b), unordered(b, a));
    }
}
