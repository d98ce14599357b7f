//! Netfilter connection tracking over netlink (NETLINK_NETFILTER, ctnetlink).
//!
//! Conntrack knows every flow the kernel's NAT and stateful filtering see, in both
//! directions: the *original* tuple (as the client sent it) and the *reply* tuple (as
//! the server answers). When they differ, the flow was rewritten: DNAT (a published
//! port forwarded to a container) or SNAT (masquerading out of a bridge). It also
//! keeps a closed flow for a while (`TIME_WAIT`), so connections that lived less than
//! a spy tick are still seen, and its direction tells client from server.
//!
//! Conntrack is optional: the kernel may lack `nf_conntrack_netlink`, and dumping needs
//! CAP_NET_ADMIN. [`Availability`] turns failures into one warning (saying what is
//! lost) and a retry every few minutes, instead of an error every tick.
//!
//! Like sock_diag sockets, a ctnetlink socket belongs to the network namespace it was
//! created in, and each namespace has its own table.
//!
//! Dumping is expensive even for a tiny table: the kernel walks its whole conntrack
//! hash, shared by all namespaces (about 16 ms for 262,144 buckets, measured). So
//! [`ConntrackTracker`] dumps rarely and follows the table through conntrack's event
//! multicast groups in between: it resynchronises with a dump at the start (events
//! are not sent for flows created before anyone listened), after the kernel dropped
//! events, every [`RESYNC_EVERY`] while the namespace's `nf_conntrack_events` sysctl
//! is off (no events come at all), and otherwise every [`RESYNC_WITH_EVENTS`]; it
//! skips the dump when the namespace's table is empty (one cheap statistics
//! request).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN,
    NetlinkBuffer, NlasIterator,
};
use netlink_packet_netfilter::conntrack::ConntrackMessage;
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
use netlink_sys::Socket;
use netlink_sys::protocols::NETLINK_NETFILTER;
use nix::errno::Errno;

use crate::sys::sockdiag::{DumpSocket, DumpSummary, NetlinkError, encode_request};

/// ctnetlink's netfilter subsystem number.
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const IPCTNL_MSG_CT_GET_STATS: u8 = 5;
const CTA_STATS_GLOBAL_ENTRIES: u16 = 1;
/// Multicast groups of conntrack events.
const NFNLGRP_CONNTRACK_NEW: u32 = 1;
const NFNLGRP_CONNTRACK_UPDATE: u32 = 2;
const NFNLGRP_CONNTRACK_DESTROY: u32 = 3;
/// Socket receive buffer for events (Scope's default conntrack buffer size).
const EVENT_BUFFER_BYTES: usize = 4 << 20;
/// Ended flows kept between two polls, at most.
const MAX_ENDED: usize = 1 << 16;
/// `struct nfgenmsg` precedes the attributes.
const NFGENMSG_LEN: usize = 4;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_STATUS: u16 = 3;
const CTA_PROTOINFO: u16 = 4;
const CTA_ID: u16 = 12;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_PROTOINFO_TCP: u16 = 1;
const CTA_PROTOINFO_TCP_STATE: u16 = 1;

const IPPROTO_TCP: u8 = 6;
/// `IPS_SEEN_REPLY`: packets went both ways (not a failed or filtered attempt).
pub const IPS_SEEN_REPLY: u32 = 1 << 1;
pub const IPS_SRC_NAT: u32 = 1 << 4;
pub const IPS_DST_NAT: u32 = 1 << 5;

/// How long to wait before trying again after conntrack was found unavailable.
pub const RETRY_UNAVAILABLE: Duration = Duration::from_secs(300);
/// How often [`ConntrackTracker`] replaces its event-built view with a full dump
/// when events may not come (the sysctl that sends them is off, or unreadable).
pub const RESYNC_EVERY: Duration = Duration::from_secs(30);
/// How often it does while events come: lost events already force a dump, so this
/// one is only a safety net (a dump of a busy host's table costs a tenth of the
/// probe's CPU when made every 30 s).
pub const RESYNC_WITH_EVENTS: Duration = Duration::from_secs(300);
/// The namespace's switch for conntrack events (`0`: none are sent).
const EVENTS_SYSCTL: &str = "/proc/sys/net/netfilter/nf_conntrack_events";

/// Conntrack's TCP states (`enum tcp_conntrack`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CtTcpState {
    None,
    SynSent,
    SynRecv,
    Established,
    FinWait,
    CloseWait,
    LastAck,
    TimeWait,
    Close,
    SynSent2,
    Other(u8),
}

impl CtTcpState {
    pub fn from_kernel(state: u8) -> Self {
        match state {
            0 => CtTcpState::None,
            1 => CtTcpState::SynSent,
            2 => CtTcpState::SynRecv,
            3 => CtTcpState::Established,
            4 => CtTcpState::FinWait,
            5 => CtTcpState::CloseWait,
            6 => CtTcpState::LastAck,
            7 => CtTcpState::TimeWait,
            8 => CtTcpState::Close,
            9 => CtTcpState::SynSent2,
            n => CtTcpState::Other(n),
        }
    }
}

/// One direction of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tuple {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub protocol: u8,
}

/// One conntrack entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    /// Conntrack's ID for the entry (stable while it lives).
    pub id: u32,
    pub original: Tuple,
    pub reply: Tuple,
    /// `IPS_*` bits.
    pub status: u32,
    pub tcp_state: Option<CtTcpState>,
}

impl Flow {
    pub fn is_tcp(&self) -> bool {
        self.original.protocol == IPPROTO_TCP
    }

    /// Packets went both ways: a real connection rather than an unanswered attempt.
    pub fn seen_reply(&self) -> bool {
        self.status & IPS_SEEN_REPLY != 0
    }

    /// The connection is over; conntrack keeps it for a while.
    pub fn is_closed(&self) -> bool {
        matches!(
            self.tcp_state,
            Some(CtTcpState::TimeWait | CtTcpState::Close)
        )
    }

    /// (client, server) in the addresses the two ends' sockets use: the client's
    /// address before any source rewrite, the server's after any destination rewrite
    /// (Scope's rule).
    pub fn client_server(&self) -> (SocketAddr, SocketAddr) {
        if self.original.dst == self.reply.src {
            (self.original.src, self.original.dst)
        } else {
            (self.reply.dst, self.reply.src)
        }
    }

    /// Source NAT: (the client's real address, the address it was rewritten to).
    pub fn snat(&self) -> Option<(SocketAddr, SocketAddr)> {
        (self.original.src != self.reply.dst).then_some((self.original.src, self.reply.dst))
    }

    /// Destination NAT: (the server's real address, the address clients used).
    pub fn dnat(&self) -> Option<(SocketAddr, SocketAddr)> {
        (self.reply.src != self.original.dst).then_some((self.reply.src, self.original.dst))
    }
}

/// Why conntrack could not be read.
pub type ConntrackError = NetlinkError;

/// What a conntrack failure most likely means, for the one warning.
pub fn explain(error: &ConntrackError) -> &'static str {
    match error.errno() {
        Some(Errno::EPERM | Errno::EACCES) => {
            "permission denied: reading conntrack needs CAP_NET_ADMIN (run the probe as root)"
        }
        Some(Errno::EPROTONOSUPPORT | Errno::EAFNOSUPPORT) => {
            "this kernel has no nfnetlink (CONFIG_NETFILTER_NETLINK)"
        }
        Some(Errno::EINVAL | Errno::ENOENT | Errno::EOPNOTSUPP) => {
            "the nf_conntrack_netlink module is not loaded (modprobe nf_conntrack_netlink)"
        }
        _ => "conntrack could not be read",
    }
}

/// Dumps one namespace's conntrack table (the namespace current when it was opened),
/// reusing its socket and buffer.
#[derive(Debug)]
pub struct Conntrack {
    socket: DumpSocket,
    request: Vec<u8>,
    stats_request: Vec<u8>,
}

impl Conntrack {
    pub fn open() -> Result<Self, ConntrackError> {
        // Unspecified family: IPv4 and IPv6 entries in one dump.
        let header = || NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, 0);
        let request = encode_request(
            NLM_F_REQUEST | NLM_F_DUMP,
            NetfilterMessage::new(header(), ConntrackMessage::Get(vec![])),
        );
        let stats_request = encode_request(
            NLM_F_REQUEST | NLM_F_ACK,
            NetfilterMessage::new(
                header(),
                ConntrackMessage::Other {
                    message_type: IPCTNL_MSG_CT_GET_STATS,
                    attributes: vec![],
                },
            ),
        );
        Ok(Conntrack {
            socket: DumpSocket::open(NETLINK_NETFILTER, "conntrack")?,
            request,
            stats_request,
        })
    }

    pub fn is_broken(&self) -> bool {
        self.socket.is_broken()
    }

    /// How many entries (of every protocol) the namespace's table holds. Cheap: the
    /// kernel keeps a counter.
    pub fn count(&mut self) -> Result<u32, ConntrackError> {
        let mut entries = None;
        self.socket.request(&mut self.stats_request, |_, payload| {
            for nla in NlasIterator::new(payload.get(NFGENMSG_LEN..).unwrap_or_default()) {
                let nla = nla.map_err(malformed)?;
                if nla.kind() == CTA_STATS_GLOBAL_ENTRIES {
                    entries = be32(nla.value());
                }
            }
            Ok(())
        })?;
        entries.ok_or_else(|| malformed("statistics without an entry count"))
    }

    /// Appends every TCP flow of the table to `out`.
    pub fn dump_tcp(&mut self, out: &mut Vec<Flow>) -> Result<DumpSummary, ConntrackError> {
        self.socket.dump(&mut self.request, |kind, payload| {
            let subsystem = kind >> 8;
            let message = kind & 0xff;
            if subsystem != NFNL_SUBSYS_CTNETLINK
                || !(message == IPCTNL_MSG_CT_NEW || message == IPCTNL_MSG_CT_GET)
            {
                return Ok(());
            }
            if let Some(flow) = parse_flow(payload)?
                && flow.is_tcp()
            {
                out.push(flow);
            }
            Ok(())
        })
    }
}

/// A subscription to conntrack's event groups (new, updated and destroyed flows).
#[derive(Debug)]
struct Events {
    socket: Socket,
    buf: Vec<u8>,
}

impl Events {
    fn open() -> Result<Self, ConntrackError> {
        let open = |source| NetlinkError::Open {
            what: "conntrack events",
            source,
        };
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(open)?;
        socket.bind_auto().map_err(open)?;
        for group in [
            NFNLGRP_CONNTRACK_NEW,
            NFNLGRP_CONNTRACK_UPDATE,
            NFNLGRP_CONNTRACK_DESTROY,
        ] {
            socket.add_membership(group).map_err(open)?;
        }
        // Past the system's limit if we may (CAP_NET_ADMIN); events pile up for a
        // whole spy tick between reads.
        let forced = nix::sys::socket::setsockopt(
            &socket,
            nix::sys::socket::sockopt::RcvBufForce,
            &EVENT_BUFFER_BYTES,
        );
        if forced.is_err() {
            let _ = socket.set_rx_buf_sz(EVENT_BUFFER_BYTES);
        }
        Ok(Events {
            socket,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Reads every queued event without blocking, calling `each(message, flow)` for
    /// TCP flows. `Ok(false)` when events were lost (the queue overflowed, or a
    /// datagram did not fit), so the view must be rebuilt from a dump.
    fn drain(&mut self, mut each: impl FnMut(u16, Flow)) -> Result<bool, ConntrackError> {
        let mut complete = true;
        loop {
            let capacity = self.buf.len();
            let mut slice = &mut self.buf[..];
            let flags = nix::libc::MSG_DONTWAIT | nix::libc::MSG_TRUNC;
            let n = match self.socket.recv(&mut slice, flags) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(complete),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOBUFS) => {
                    complete = false;
                    continue;
                }
                Err(source) => {
                    return Err(NetlinkError::Recv {
                        what: "conntrack events",
                        source,
                    });
                }
            };
            if n > capacity {
                self.buf.resize(n.next_power_of_two(), 0);
                complete = false;
                continue;
            }
            let mut data = &self.buf[..n];
            while !data.is_empty() {
                let Ok(msg) = NetlinkBuffer::new_checked(data) else {
                    complete = false;
                    break;
                };
                let kind = msg.message_type();
                if !matches!(kind, NLMSG_NOOP | NLMSG_DONE | NLMSG_ERROR | NLMSG_OVERRUN)
                    && kind >> 8 == NFNL_SUBSYS_CTNETLINK
                {
                    match parse_flow(msg.payload()) {
                        Ok(Some(flow)) if flow.is_tcp() => each(kind & 0xff, flow),
                        Ok(_) => {}
                        Err(_) => complete = false,
                    }
                }
                let step = (msg.length() as usize + 3) & !3;
                if step >= data.len() {
                    break;
                }
                data = &data[step..];
            }
        }
    }
}

/// A namespace's TCP flows, kept current from conntrack events with occasional dumps.
/// Without events (the subscription failed) it dumps on every poll.
#[derive(Debug)]
pub struct ConntrackTracker {
    table: Conntrack,
    events: Option<Events>,
    /// Live flows by original tuple (conntrack's identity of a flow).
    live: HashMap<Tuple, Flow>,
    /// Flows that ended since the last poll.
    ended: Vec<Flow>,
    resync_every: Duration,
    resync_with_events: Duration,
    next_resync: Option<Instant>,
    last_resync: Option<Instant>,
    /// The namespace's `nf_conntrack_events` sysctl, opened in it.
    events_switch: Option<std::fs::File>,
    dumped: Vec<Flow>,
    dumps: u64,
}

impl ConntrackTracker {
    /// Opens the table and the event subscription in the calling thread's network
    /// namespace. The first poll dumps the table; later ones every `resync_every`
    /// while events are switched off, every [`RESYNC_WITH_EVENTS`] (or
    /// `resync_every` if longer) while they are on.
    pub fn open(resync_every: Duration) -> Result<Self, ConntrackError> {
        let table = Conntrack::open()?;
        let events = match Events::open() {
            Ok(e) => Some(e),
            // Without the right to listen, dumping is refused too: report it.
            Err(e) if matches!(e.errno(), Some(Errno::EPERM | Errno::EACCES)) => return Err(e),
            Err(e) => {
                tracing::debug!(error = %e, "no conntrack events; dumping the table every tick");
                None
            }
        };
        Ok(ConntrackTracker {
            table,
            events,
            live: HashMap::new(),
            ended: Vec::new(),
            resync_every,
            resync_with_events: RESYNC_WITH_EVENTS.max(resync_every),
            next_resync: None,
            last_resync: None,
            events_switch: std::fs::File::open(EVENTS_SYSCTL).ok(),
            dumped: Vec::new(),
            dumps: 0,
        })
    }

    /// Sets how often the view is dumped again while events are on.
    pub fn set_resync_with_events(&mut self, every: Duration) {
        self.resync_with_events = every;
    }

    /// Whether the namespace sends conntrack events (read each time: an
    /// administrator may switch them off). Unknown counts as off.
    fn events_switched_on(&self) -> bool {
        use std::os::unix::fs::FileExt;
        let Some(file) = &self.events_switch else {
            return false;
        };
        let mut value = [0u8; 8];
        match file.read_at(&mut value, 0) {
            Ok(n) => {
                let text = std::str::from_utf8(&value[..n]).unwrap_or("").trim();
                !text.is_empty() && text != "0"
            }
            Err(_) => false,
        }
    }

    pub fn uses_events(&self) -> bool {
        self.events.is_some()
    }

    /// How many times the table was dumped (the expensive operation).
    pub fn dumps(&self) -> u64 {
        self.dumps
    }

    pub fn is_broken(&self) -> bool {
        self.table.is_broken()
    }

    /// Brings the view up to date, then appends the live TCP flows and the ones that
    /// ended since the last poll (each ended flow is returned once).
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Flow>) -> Result<(), ConntrackError> {
        let mut lost_events = false;
        let ConntrackTracker {
            events,
            live,
            ended,
            ..
        } = self;
        if let Some(events) = events {
            lost_events = !events.drain(|kind, flow| apply_event(live, ended, kind, flow))?;
        }
        let due = self.next_resync.is_none_or(|at| now >= at);
        let trusted = due
            && self
                .last_resync
                .is_some_and(|at| now < at + self.resync_with_events)
            && self.events_switched_on();
        if self.events.is_none() || lost_events || (due && !trusted) {
            self.resync()?;
            self.last_resync = Some(now);
            self.next_resync = Some(now + self.resync_every);
        } else if due {
            self.next_resync = Some(now + self.resync_every);
        }
        out.extend(self.live.values().copied());
        out.append(&mut self.ended);
        Ok(())
    }

    /// Replaces the view with a dump (none needed for an empty table). Flows that
    /// vanished without an event count as ended.
    fn resync(&mut self) -> Result<(), ConntrackError> {
        self.dumped.clear();
        if self.table.count()? > 0 {
            self.dumps += 1;
            self.table.dump_tcp(&mut self.dumped)?;
        }
        let mut previous = std::mem::take(&mut self.live);
        self.live.reserve(self.dumped.len());
        for flow in self.dumped.drain(..) {
            let merged = match previous.remove(&flow.original) {
                Some(old) => merge(old, flow),
                None => flow,
            };
            self.live.insert(flow.original, merged);
        }
        for (_, gone) in previous.drain() {
            push_ended(&mut self.ended, gone);
        }
        Ok(())
    }
}

/// Events carry only what changed: keep what an update does not say.
fn merge(old: Flow, new: Flow) -> Flow {
    Flow {
        id: if new.id != 0 { new.id } else { old.id },
        original: new.original,
        reply: new.reply,
        status: if new.status != 0 {
            new.status
        } else {
            old.status
        },
        tcp_state: new.tcp_state.or(old.tcp_state),
    }
}

fn push_ended(ended: &mut Vec<Flow>, flow: Flow) {
    if ended.len() < MAX_ENDED {
        ended.push(flow);
    }
}

fn apply_event(live: &mut HashMap<Tuple, Flow>, ended: &mut Vec<Flow>, message: u16, flow: Flow) {
    match message {
        IPCTNL_MSG_CT_NEW => {
            live.entry(flow.original)
                .and_modify(|old| *old = merge(*old, flow))
                .or_insert(flow);
        }
        IPCTNL_MSG_CT_DELETE => {
            let last = match live.remove(&flow.original) {
                Some(old) => merge(old, flow),
                None => flow,
            };
            push_ended(ended, last);
        }
        _ => {}
    }
}

fn malformed(reason: impl ToString) -> ConntrackError {
    NetlinkError::Malformed {
        what: "conntrack",
        reason: reason.to_string(),
    }
}

fn be16(value: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(value.get(..2)?.try_into().ok()?))
}

fn be32(value: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(value.get(..4)?.try_into().ok()?))
}

/// Decodes one ctnetlink message (after the netlink header). `None` for entries
/// without both tuples (nothing to report).
pub fn parse_flow(payload: &[u8]) -> Result<Option<Flow>, ConntrackError> {
    let attrs = payload
        .get(NFGENMSG_LEN..)
        .ok_or_else(|| malformed("message shorter than nfgenmsg"))?;
    let (mut original, mut reply) = (None, None);
    let mut flow = Flow {
        id: 0,
        original: empty_tuple(),
        reply: empty_tuple(),
        status: 0,
        tcp_state: None,
    };
    for nla in NlasIterator::new(attrs) {
        let nla = nla.map_err(malformed)?;
        let value = nla.value();
        match nla.kind() {
            CTA_TUPLE_ORIG => original = parse_tuple(value)?,
            CTA_TUPLE_REPLY => reply = parse_tuple(value)?,
            CTA_STATUS => flow.status = be32(value).ok_or_else(|| malformed("short CTA_STATUS"))?,
            CTA_ID => flow.id = be32(value).ok_or_else(|| malformed("short CTA_ID"))?,
            CTA_PROTOINFO => flow.tcp_state = parse_tcp_state(value)?,
            _ => {}
        }
    }
    match (original, reply) {
        (Some(o), Some(r)) => {
            flow.original = o;
            flow.reply = r;
            Ok(Some(flow))
        }
        _ => Ok(None),
    }
}

fn empty_tuple() -> Tuple {
    let unspecified = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
    Tuple {
        src: unspecified,
        dst: unspecified,
        protocol: 0,
    }
}

fn parse_tuple(buf: &[u8]) -> Result<Option<Tuple>, ConntrackError> {
    let (mut src, mut dst) = (None, None);
    let (mut sport, mut dport, mut protocol) = (0u16, 0u16, 0u8);
    for nla in NlasIterator::new(buf) {
        let nla = nla.map_err(malformed)?;
        match nla.kind() {
            CTA_TUPLE_IP => {
                for ip in NlasIterator::new(nla.value()) {
                    let ip = ip.map_err(malformed)?;
                    let v = ip.value();
                    let parsed = match ip.kind() {
                        CTA_IP_V4_SRC | CTA_IP_V4_DST => <[u8; 4]>::try_from(v)
                            .ok()
                            .map(|o| IpAddr::V4(Ipv4Addr::from(o))),
                        CTA_IP_V6_SRC | CTA_IP_V6_DST => <[u8; 16]>::try_from(v)
                            .ok()
                            .map(|o| IpAddr::V6(Ipv6Addr::from(o))),
                        _ => continue,
                    };
                    let parsed = parsed.ok_or_else(|| malformed("address of the wrong length"))?;
                    match ip.kind() {
                        CTA_IP_V4_SRC | CTA_IP_V6_SRC => src = Some(parsed),
                        _ => dst = Some(parsed),
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for p in NlasIterator::new(nla.value()) {
                    let p = p.map_err(malformed)?;
                    let v = p.value();
                    match p.kind() {
                        CTA_PROTO_NUM => {
                            protocol = *v.first().ok_or_else(|| malformed("empty CTA_PROTO_NUM"))?
                        }
                        CTA_PROTO_SRC_PORT => {
                            sport = be16(v).ok_or_else(|| malformed("short source port"))?
                        }
                        CTA_PROTO_DST_PORT => {
                            dport = be16(v).ok_or_else(|| malformed("short destination port"))?
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(match (src, dst) {
        (Some(s), Some(d)) => Some(Tuple {
            src: SocketAddr::new(s, sport),
            dst: SocketAddr::new(d, dport),
            protocol,
        }),
        _ => None,
    })
}

fn parse_tcp_state(buf: &[u8]) -> Result<Option<CtTcpState>, ConntrackError> {
    for nla in NlasIterator::new(buf) {
        let nla = nla.map_err(malformed)?;
        if nla.kind() != CTA_PROTOINFO_TCP {
            continue;
        }
        for inner in NlasIterator::new(nla.value()) {
            let inner = inner.map_err(malformed)?;
            if inner.kind() == CTA_PROTOINFO_TCP_STATE {
                return Ok(inner.value().first().map(|s| CtTcpState::from_kernel(*s)));
            }
        }
    }
    Ok(None)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Untried,
    Working,
    Unavailable { retry_at: Instant },
}

/// Whether conntrack works on this host, with the logging policy: one warning when
/// it stops working (or never worked), saying what is lost; a quiet retry every
/// [`RETRY_UNAVAILABLE`]; one info line when it comes back.
#[derive(Debug, Clone)]
pub struct Availability {
    retry_every: Duration,
    state: State,
    warnings: u64,
}

impl Default for Availability {
    fn default() -> Self {
        Availability::new(RETRY_UNAVAILABLE)
    }
}

impl Availability {
    pub fn new(retry_every: Duration) -> Self {
        Availability {
            retry_every,
            state: State::Untried,
            warnings: 0,
        }
    }

    /// Whether to try conntrack now.
    pub fn may_try(&self, now: Instant) -> bool {
        match self.state {
            State::Unavailable { retry_at } => now >= retry_at,
            _ => true,
        }
    }

    pub fn is_unavailable(&self) -> bool {
        matches!(self.state, State::Unavailable { .. })
    }

    /// How many warnings were logged so far.
    pub fn warnings(&self) -> u64 {
        self.warnings
    }

    pub fn succeeded(&mut self) {
        if self.is_unavailable() {
            tracing::info!("conntrack is readable again: NAT and short-lived connections are back");
            crate::health::resolved("conntrack");
        }
        self.state = State::Working;
    }

    pub fn failed(&mut self, error: &ConntrackError, now: Instant) {
        if self.is_unavailable() {
            tracing::debug!(error = %error, "conntrack still unavailable");
        } else {
            self.warnings += 1;
            tracing::warn!(
                error = %error,
                cause = explain(error),
                retry_in_secs = self.retry_every.as_secs(),
                "conntrack unavailable: connections through NAT (published container ports, \
                 masquerading) and connections shorter than a spy tick will be missing; \
                 long-lived connections are still reported from sock_diag"
            );
            crate::health::problem(
                "conntrack",
                format!(
                    "unavailable ({error}; {}): connections through NAT (published \
                     container ports) and connections shorter than a second are missing",
                    explain(error)
                ),
            );
        }
        self.state = State::Unavailable {
            retry_at: now + self.retry_every,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out
    }

    fn nested(kind: u16, parts: &[Vec<u8>]) -> Vec<u8> {
        nla(kind | 0x8000, &parts.concat())
    }

    fn tuple(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
        [
            nested(
                CTA_TUPLE_IP,
                &[nla(CTA_IP_V4_SRC, &src), nla(CTA_IP_V4_DST, &dst)],
            ),
            nested(
                CTA_TUPLE_PROTO,
                &[
                    nla(CTA_PROTO_NUM, &[IPPROTO_TCP]),
                    nla(CTA_PROTO_SRC_PORT, &sport.to_be_bytes()),
                    nla(CTA_PROTO_DST_PORT, &dport.to_be_bytes()),
                ],
            ),
        ]
        .concat()
    }

    /// A DNAT'd flow: 10.0.0.9:40000 → 10.0.0.5:8080, forwarded to 172.17.0.2:80.
    fn dnat_message() -> Vec<u8> {
        let mut m = vec![2, 0, 0, 0]; // nfgenmsg: AF_INET
        m.extend(nested(
            CTA_TUPLE_ORIG,
            &[tuple([10, 0, 0, 9], 40000, [10, 0, 0, 5], 8080)],
        ));
        m.extend(nested(
            CTA_TUPLE_REPLY,
            &[tuple([172, 17, 0, 2], 80, [10, 0, 0, 9], 40000)],
        ));
        m.extend(nla(
            CTA_STATUS,
            &(IPS_SEEN_REPLY | IPS_DST_NAT).to_be_bytes(),
        ));
        m.extend(nested(
            CTA_PROTOINFO,
            &[nested(
                CTA_PROTOINFO_TCP,
                &[nla(CTA_PROTOINFO_TCP_STATE, &[3])],
            )],
        ));
        m.extend(nla(CTA_ID, &77u32.to_be_bytes()));
        m.extend(nla(99, b"unknown attributes are skipped"));
        m
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    #[test]
    fn a_dnat_flow_decodes_with_both_tuples() {
        let flow = parse_flow(&dnat_message())
            .expect("valid")
            .expect("complete");
        assert_eq!(flow.id, 77);
        assert!(flow.is_tcp() && flow.seen_reply() && !flow.is_closed());
        assert_eq!(flow.tcp_state, Some(CtTcpState::Established));
        assert_eq!(flow.original.src, addr("10.0.0.9:40000"));
        assert_eq!(flow.original.dst, addr("10.0.0.5:8080"));
        assert_eq!(flow.reply.src, addr("172.17.0.2:80"));
        assert_eq!(
            flow.client_server(),
            (addr("10.0.0.9:40000"), addr("172.17.0.2:80"))
        );
        assert_eq!(
            flow.dnat(),
            Some((addr("172.17.0.2:80"), addr("10.0.0.5:8080")))
        );
        assert_eq!(flow.snat(), None);
    }

    #[test]
    fn snat_and_plain_flows() {
        let mut m = vec![2, 0, 0, 0];
        m.extend(nested(
            CTA_TUPLE_ORIG,
            &[tuple([172, 17, 0, 2], 5000, [8, 8, 8, 8], 443)],
        ));
        m.extend(nested(
            CTA_TUPLE_REPLY,
            &[tuple([8, 8, 8, 8], 443, [10, 0, 0, 5], 6000)],
        ));
        let flow = parse_flow(&m).expect("valid").expect("complete");
        assert_eq!(
            flow.client_server(),
            (addr("172.17.0.2:5000"), addr("8.8.8.8:443"))
        );
        assert_eq!(
            flow.snat(),
            Some((addr("172.17.0.2:5000"), addr("10.0.0.5:6000")))
        );
        assert_eq!(flow.dnat(), None);
        assert!(!flow.seen_reply());
        assert_eq!(flow.tcp_state, None);

        let mut only_orig = vec![2, 0, 0, 0];
        only_orig.extend(nested(
            CTA_TUPLE_ORIG,
            &[tuple([1, 1, 1, 1], 1, [2, 2, 2, 2], 2)],
        ));
        assert_eq!(parse_flow(&only_orig).expect("valid"), None);
    }

    #[test]
    fn malformed_messages_are_errors() {
        assert!(parse_flow(&[2, 0]).is_err());
        let mut m = dnat_message();
        m.truncate(30); // cuts an attribute in half
        assert!(parse_flow(&m).is_err());
        let mut bad_ip = vec![2, 0, 0, 0];
        bad_ip.extend(nested(
            CTA_TUPLE_ORIG,
            &[nested(CTA_TUPLE_IP, &[nla(CTA_IP_V4_SRC, &[1, 2, 3])])],
        ));
        assert!(parse_flow(&bad_ip).is_err());
    }

    #[test]
    fn events_update_the_view_and_ended_flows_are_kept_once() {
        let mut live = HashMap::new();
        let mut ended = Vec::new();
        let first = parse_flow(&dnat_message())
            .expect("valid")
            .expect("complete");
        // NEW as conntrack sends it at the first packet: no reply seen, no state yet.
        let syn = Flow {
            status: 0,
            tcp_state: Some(CtTcpState::SynSent),
            ..first
        };
        apply_event(&mut live, &mut ended, IPCTNL_MSG_CT_NEW, syn);
        assert!(!live[&first.original].seen_reply());
        // An update without protocol info keeps the state it had.
        let update = Flow {
            tcp_state: None,
            ..first
        };
        apply_event(&mut live, &mut ended, IPCTNL_MSG_CT_NEW, update);
        let now = live[&first.original];
        assert!(now.seen_reply());
        assert_eq!(now.tcp_state, Some(CtTcpState::SynSent));
        // DESTROY carries no status: the last known one is kept for the ended flow.
        let destroy = Flow {
            status: 0,
            tcp_state: None,
            ..first
        };
        apply_event(&mut live, &mut ended, IPCTNL_MSG_CT_DELETE, destroy);
        assert!(live.is_empty());
        assert_eq!(ended.len(), 1);
        assert!(ended[0].seen_reply());
    }

    #[test]
    fn the_statistics_request_and_a_real_count_work() {
        let mut ct = match Conntrack::open() {
            Ok(ct) => ct,
            Err(e) => {
                println!("SKIPPED: no conntrack netlink here: {e}");
                return;
            }
        };
        match ct.count() {
            Ok(n) => println!("conntrack entries: {n}"),
            Err(e) if e.errno() == Some(Errno::EPERM) => {
                println!("SKIPPED: conntrack needs CAP_NET_ADMIN: {e}")
            }
            Err(e) => panic!("statistics request failed: {e}"),
        }
    }

    #[test]
    fn unavailability_warns_once_and_retries_later() {
        let mut a = Availability::new(Duration::from_secs(300));
        let t0 = Instant::now();
        assert!(a.may_try(t0));
        let denied = NetlinkError::Kernel {
            what: "conntrack",
            errno: Errno::EPERM,
        };
        assert!(explain(&denied).contains("CAP_NET_ADMIN"));
        a.failed(&denied, t0);
        assert!(a.is_unavailable());
        assert!(!a.may_try(t0 + Duration::from_secs(1)));
        assert!(a.may_try(t0 + Duration::from_secs(300)));
        a.failed(&denied, t0 + Duration::from_secs(300));
        assert_eq!(a.warnings(), 1, "a retry that fails again stays quiet");
        a.succeeded();
        assert!(!a.is_unavailable());
        a.failed(&denied, t0 + Duration::from_secs(900));
        assert_eq!(a.warnings(), 2, "a new outage is worth a new warning");
    }
}
