//! NETLINK_SOCK_DIAG: the kernel's table of TCP sockets (IPv4 and IPv6), asked for
//! directly instead of parsing `/proc/net/tcp{,6}`.
//!
//! A dump answers with one `inet_diag_msg` per socket: addresses, ports, state, the
//! owner's uid and the socket's inode (which `/proc/<pid>/fd` links name, so the
//! walker can say which process holds it). Only the fixed header of each message is
//! decoded, with no allocation per socket; the request asks for no extensions.
//!
//! A netlink socket belongs to the network namespace of the thread that created it,
//! forever: a [`SockDiag`] created inside a container's namespace keeps dumping that
//! namespace from any thread.
//!
//! [`DumpSocket`] (send one dump request, read the multipart answer into a reused
//! buffer, handle `NLMSG_ERROR`, `NLMSG_DONE`, truncation and stale messages) is
//! shared with the conntrack dump.

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use netlink_packet_core::{
    DoneBuffer, ErrorBuffer, NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NLMSG_DONE,
    NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN, NetlinkBuffer, NetlinkHeader, NetlinkMessage,
    NetlinkSerializable, Parseable,
};
use netlink_packet_sock_diag::inet::{
    ExtensionFlags, InetRequest, InetResponseHeader, SocketId, StateFlags,
};
use netlink_packet_sock_diag::{
    AF_INET, AF_INET6, IPPROTO_TCP, SOCK_DIAG_BY_FAMILY, SockDiagMessage,
};
use netlink_sys::Socket;
use netlink_sys::protocols::NETLINK_SOCK_DIAG;
use nix::errno::Errno;

/// Length of a netlink message header.
const NLMSG_HEADER_LEN: usize = 16;
/// Length of the fixed part of an `inet_diag_msg`.
const INET_DIAG_MSG_LEN: usize = 72;
/// Dump datagrams are at most 32 KiB (the kernel caps its dump buffers there); twice
/// that leaves room and is still small.
const INITIAL_RECV_BUFFER: usize = 64 * 1024;
/// A kernel that stops answering mid-dump must not hang the probe.
const RECV_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound on datagrams read while discarding the rest of a failed dump.
const MAX_DRAIN_DATAGRAMS: usize = 1 << 20;

/// A TCP state as the kernel numbers them (`include/net/tcp_states.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    NewSynRecv,
    Other(u8),
}

impl TcpState {
    pub fn from_kernel(state: u8) -> Self {
        match state {
            1 => TcpState::Established,
            2 => TcpState::SynSent,
            3 => TcpState::SynRecv,
            4 => TcpState::FinWait1,
            5 => TcpState::FinWait2,
            6 => TcpState::TimeWait,
            7 => TcpState::Close,
            8 => TcpState::CloseWait,
            9 => TcpState::LastAck,
            10 => TcpState::Listen,
            11 => TcpState::Closing,
            12 => TcpState::NewSynRecv,
            other => TcpState::Other(other),
        }
    }

    /// Whether the socket is one end of a connection (not listening, not a closed
    /// leftover).
    pub fn is_connection(self) -> bool {
        matches!(
            self,
            TcpState::Established
                | TcpState::SynSent
                | TcpState::SynRecv
                | TcpState::FinWait1
                | TcpState::FinWait2
                | TcpState::CloseWait
                | TcpState::LastAck
                | TcpState::Closing
        )
    }
}

/// Which states a dump asks for.
pub fn states_mask(states: &[TcpState]) -> u32 {
    let mut mask = 0u32;
    for s in states {
        let bit = match *s {
            TcpState::Established => 1,
            TcpState::SynSent => 2,
            TcpState::SynRecv => 3,
            TcpState::FinWait1 => 4,
            TcpState::FinWait2 => 5,
            TcpState::TimeWait => 6,
            TcpState::Close => 7,
            TcpState::CloseWait => 8,
            TcpState::LastAck => 9,
            TcpState::Listen => 10,
            TcpState::Closing => 11,
            TcpState::NewSynRecv => 12,
            TcpState::Other(n) => u32::from(n),
        };
        if bit < 32 {
            mask |= 1 << bit;
        }
    }
    mask
}

/// The states the endpoint reporter needs: connections, and listeners to tell
/// servers from clients. `TIME_WAIT` and `CLOSE` sockets have no owner left.
pub const CONNECTION_AND_LISTEN_STATES: &[TcpState] = &[
    TcpState::Established,
    TcpState::SynSent,
    TcpState::SynRecv,
    TcpState::FinWait1,
    TcpState::FinWait2,
    TcpState::CloseWait,
    TcpState::LastAck,
    TcpState::Closing,
    TcpState::Listen,
];

/// One TCP socket. Addresses are canonical: an IPv4-mapped IPv6 address (a dual-stack
/// socket talking IPv4) is reported as the IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSocket {
    pub local_ip: IpAddr,
    pub local_port: u16,
    pub remote_ip: IpAddr,
    pub remote_port: u16,
    pub state: TcpState,
    /// 0 for sockets no file refers to any more (orphans, `TIME_WAIT`).
    pub inode: u64,
    pub uid: u32,
}

/// What went wrong talking netlink.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("opening a {what} netlink socket: {source}")]
    Open {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("sending a {what} dump request: {source}")]
    Send {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("receiving a {what} dump: {source}")]
    Recv {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{what} dump: the kernel answered {errno} ({})", errno.desc())]
    Kernel { what: &'static str, errno: Errno },
    #[error(
        "{what} dump: a {len}-byte datagram did not fit the {capacity}-byte buffer (grown for the next dump)"
    )]
    Truncated {
        what: &'static str,
        len: usize,
        capacity: usize,
    },
    #[error("{what} dump: the kernel dropped messages (overrun)")]
    Overrun { what: &'static str },
    #[error("{what} dump: malformed message: {reason}")]
    Malformed { what: &'static str, reason: String },
}

impl NetlinkError {
    /// The errno behind the failure, when there is one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            NetlinkError::Kernel { errno, .. } => Some(*errno),
            NetlinkError::Open { source, .. }
            | NetlinkError::Send { source, .. }
            | NetlinkError::Recv { source, .. } => source.raw_os_error().map(Errno::from_raw),
            _ => None,
        }
    }
}

/// How a dump ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DumpSummary {
    /// Messages handed to the caller.
    pub messages: usize,
    /// The kernel flagged the dump as inconsistent (the table changed during it).
    pub interrupted: bool,
}

/// A netlink socket for dump requests, with a receive buffer reused across dumps.
#[derive(Debug)]
pub struct DumpSocket {
    socket: Socket,
    what: &'static str,
    buf: Vec<u8>,
    seq: u32,
    /// A previous dump failed and its remaining messages could not be discarded.
    broken: bool,
}

impl DumpSocket {
    /// Opens a netlink socket of `protocol` in the calling thread's network namespace.
    pub fn open(protocol: isize, what: &'static str) -> Result<Self, NetlinkError> {
        let open = |source| NetlinkError::Open { what, source };
        let mut socket = Socket::new(protocol).map_err(open)?;
        socket.bind_auto().map_err(open)?;
        socket
            .connect(&netlink_sys::SocketAddr::new(0, 0))
            .map_err(open)?;
        let timeout = nix::sys::time::TimeVal::new(RECV_TIMEOUT.as_secs() as i64, 0);
        nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::ReceiveTimeout, &timeout)
            .map_err(|e| open(io::Error::from(e)))?;
        Ok(DumpSocket {
            socket,
            what,
            buf: vec![0; INITIAL_RECV_BUFFER],
            seq: 0,
            broken: false,
        })
    }

    /// Whether the socket is unusable (a failed dump could not be drained); the owner
    /// should open a new one.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Sends `request` (a complete netlink message; its sequence number is replaced)
    /// and calls `each(message_type, payload)` for every answer until `NLMSG_DONE`.
    /// On an error from `each` or the kernel, the rest of the dump is read and
    /// discarded so the socket can be used again.
    pub fn dump(
        &mut self,
        request: &mut [u8],
        each: impl FnMut(u16, &[u8]) -> Result<(), NetlinkError>,
    ) -> Result<DumpSummary, NetlinkError> {
        self.exchange(request, false, each)
    }

    /// Like [`DumpSocket::dump`] for a request that is not a dump: `request` must ask
    /// for an acknowledgement (`NLM_F_ACK`), which ends the answer.
    pub fn request(
        &mut self,
        request: &mut [u8],
        each: impl FnMut(u16, &[u8]) -> Result<(), NetlinkError>,
    ) -> Result<DumpSummary, NetlinkError> {
        self.exchange(request, true, each)
    }

    fn exchange(
        &mut self,
        request: &mut [u8],
        ack_ends: bool,
        mut each: impl FnMut(u16, &[u8]) -> Result<(), NetlinkError>,
    ) -> Result<DumpSummary, NetlinkError> {
        let what = self.what;
        if request.len() < NLMSG_HEADER_LEN {
            return Err(NetlinkError::Malformed {
                what,
                reason: "request shorter than a netlink header".into(),
            });
        }
        self.seq = self.seq.wrapping_add(1);
        NetlinkBuffer::new(&mut *request).set_sequence_number(self.seq);
        self.send(request)?;
        let mut summary = DumpSummary::default();
        loop {
            let n = match self.recv() {
                Ok(n) => n,
                Err(e) => {
                    // A truncated datagram leaves the rest of the dump queued: discard it.
                    if matches!(e, NetlinkError::Truncated { .. }) {
                        self.drain(ack_ends);
                    } else {
                        self.broken = true;
                    }
                    return Err(e);
                }
            };
            match walk_datagram(
                &self.buf[..n],
                self.seq,
                what,
                ack_ends,
                &mut summary,
                &mut each,
            ) {
                Ok(false) => continue,
                Ok(true) => return Ok(summary),
                Err((e, finished)) => {
                    if !finished {
                        self.drain(ack_ends);
                    }
                    return Err(e);
                }
            }
        }
    }

    fn send(&mut self, request: &[u8]) -> Result<(), NetlinkError> {
        loop {
            match self.socket.send(request, 0) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(NetlinkError::Send {
                        what: self.what,
                        source,
                    });
                }
            }
        }
    }

    /// Receives one datagram into the buffer; its true length, or `Truncated` (and a
    /// bigger buffer for next time) when it did not fit.
    fn recv(&mut self) -> Result<usize, NetlinkError> {
        loop {
            let capacity = self.buf.len();
            let mut slice = &mut self.buf[..];
            match self.socket.recv(&mut slice, nix::libc::MSG_TRUNC) {
                Ok(n) if n > capacity => {
                    self.buf.resize(n.next_power_of_two(), 0);
                    return Err(NetlinkError::Truncated {
                        what: self.what,
                        len: n,
                        capacity,
                    });
                }
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(NetlinkError::Recv {
                        what: self.what,
                        source,
                    });
                }
            }
        }
    }

    /// Reads and drops the rest of the current dump. The kernel refuses a new dump on
    /// a socket whose previous one is unfinished, so a socket that cannot be drained
    /// is marked broken.
    fn drain(&mut self, ack_ends: bool) {
        for _ in 0..MAX_DRAIN_DATAGRAMS {
            let n = match self.recv() {
                Ok(n) => n,
                Err(NetlinkError::Truncated { .. }) => continue,
                Err(_) => {
                    self.broken = true;
                    return;
                }
            };
            let mut ignore = DumpSummary::default();
            match walk_datagram(
                &self.buf[..n],
                self.seq,
                self.what,
                ack_ends,
                &mut ignore,
                &mut |_, _| Ok(()),
            ) {
                Ok(false) => continue,
                Ok(true) | Err((_, true)) => return,
                Err((_, false)) => {
                    self.broken = true;
                    return;
                }
            }
        }
        self.broken = true;
    }
}

/// Walks the messages of one datagram. `Ok(true)` when the dump is complete. On error,
/// the flag says whether the kernel has finished the dump (an error message ends it).
fn walk_datagram(
    mut data: &[u8],
    seq: u32,
    what: &'static str,
    ack_ends: bool,
    summary: &mut DumpSummary,
    each: &mut impl FnMut(u16, &[u8]) -> Result<(), NetlinkError>,
) -> Result<bool, (NetlinkError, bool)> {
    while !data.is_empty() {
        let msg = NetlinkBuffer::new_checked(data).map_err(|e| {
            (
                NetlinkError::Malformed {
                    what,
                    reason: e.to_string(),
                },
                false,
            )
        })?;
        let len = msg.length() as usize;
        if msg.sequence_number() == seq {
            if msg.flags() & NLM_F_DUMP_INTR != 0 {
                summary.interrupted = true;
            }
            let payload = msg.payload();
            match msg.message_type() {
                NLMSG_NOOP => {}
                NLMSG_DONE => {
                    // The kernel may report a dump error in the DONE message itself.
                    let code = DoneBuffer::new_checked(payload).map_or(0, |d| d.code());
                    if code < 0 {
                        return Err((
                            NetlinkError::Kernel {
                                what,
                                errno: Errno::from_raw(-code),
                            },
                            true,
                        ));
                    }
                    return Ok(true);
                }
                NLMSG_ERROR => {
                    let code = ErrorBuffer::new_checked(payload)
                        .map_err(|e| {
                            (
                                NetlinkError::Malformed {
                                    what,
                                    reason: e.to_string(),
                                },
                                true,
                            )
                        })?
                        .code();
                    // A zero code is an acknowledgement, not an error. It ends a plain
                    // request; a dump ends with DONE, so keep reading.
                    if let Some(code) = code {
                        return Err((
                            NetlinkError::Kernel {
                                what,
                                errno: Errno::from_raw(-code.get()),
                            },
                            true,
                        ));
                    }
                    if ack_ends {
                        return Ok(true);
                    }
                }
                NLMSG_OVERRUN => return Err((NetlinkError::Overrun { what }, false)),
                kind => {
                    summary.messages += 1;
                    each(kind, payload).map_err(|e| (e, false))?;
                }
            }
        }
        // Messages of another sequence number belong to an abandoned earlier dump.
        let step = (len + 3) & !3;
        if step >= data.len() {
            break;
        }
        data = &data[step..];
    }
    Ok(false)
}

/// Serialises a netlink request.
pub(crate) fn encode_request<I: NetlinkSerializable>(flags: u16, payload: I) -> Vec<u8>
where
    netlink_packet_core::NetlinkPayload<I>: From<I>,
{
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    let mut packet = NetlinkMessage::new(header, payload.into());
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    buf
}

/// `TCPDIAG_GETSOCK`: the original inet_diag request, which dumps both address
/// families in one pass.
const TCPDIAG_GETSOCK: u16 = 18;
/// Length of the original `struct inet_diag_req`.
const INET_DIAG_REQ_V1_LEN: usize = 60;

/// Dumps the TCP sockets of one network namespace (the one current when it was
/// opened). Reuse one per namespace: the socket and the receive buffer are kept.
///
/// IPv4 and IPv6 TCP sockets live in the same kernel hash tables, and a dump walks
/// every bucket of them, so the cost is mostly per dump rather than per socket. The
/// original `TCPDIAG_GETSOCK` request dumps both families in one walk; the per-family
/// `SOCK_DIAG_BY_FAMILY` requests (two walks) are the fallback for a kernel that
/// refuses it.
#[derive(Debug)]
pub struct SockDiag {
    socket: DumpSocket,
    request_both: Vec<u8>,
    request_v4: Vec<u8>,
    request_v6: Vec<u8>,
    per_family: bool,
    /// The last exact request, reused.
    request_one: Vec<u8>,
}

/// One socket asked for by its exact addresses (see [`SockDiag::lookup`]): the
/// address family it was created with and its addresses as the kernel holds them (an
/// IPv6 socket talking IPv4 has IPv4-mapped addresses and family `AF_INET6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExactSocket {
    pub family: u8,
    pub local_ip: IpAddr,
    pub local_port: u16,
    pub remote_ip: IpAddr,
    pub remote_port: u16,
    /// The interface the socket is bound to, 0 for none.
    pub interface: u32,
}

impl SockDiag {
    /// Opens a sock_diag socket in the calling thread's network namespace, asking for
    /// sockets in `states`.
    pub fn open(states: &[TcpState]) -> Result<Self, NetlinkError> {
        let mask = states_mask(states);
        let request = |family: u8| {
            let socket_id = if family == AF_INET {
                SocketId::new_v4()
            } else {
                SocketId::new_v6()
            };
            encode_request(
                NLM_F_REQUEST | NLM_F_DUMP,
                SockDiagMessage::InetRequest(InetRequest {
                    family,
                    protocol: IPPROTO_TCP,
                    extensions: ExtensionFlags::empty(),
                    states: StateFlags::from_bits_retain(mask),
                    socket_id,
                }),
            )
        };
        Ok(SockDiag {
            socket: DumpSocket::open(NETLINK_SOCK_DIAG, "sock_diag")?,
            request_both: both_families_request(mask),
            request_v4: request(AF_INET),
            request_v6: request(AF_INET6),
            per_family: false,
            request_one: Vec::new(),
        })
    }

    pub fn is_broken(&self) -> bool {
        self.socket.is_broken()
    }

    /// Whether the kernel refused the one-pass request and two dumps are used.
    pub fn per_family(&self) -> bool {
        self.per_family
    }

    /// Appends every TCP socket (IPv4 and IPv6) to `out`.
    pub fn dump_tcp(&mut self, out: &mut Vec<TcpSocket>) -> Result<DumpSummary, NetlinkError> {
        if !self.per_family {
            let start = out.len();
            match self.socket.dump(&mut self.request_both, |kind, payload| {
                push_inet_message(kind, payload, out)
            }) {
                Ok(summary) => return Ok(summary),
                Err(NetlinkError::Kernel {
                    errno: Errno::EINVAL | Errno::ENOENT | Errno::EOPNOTSUPP,
                    ..
                }) => {
                    out.truncate(start);
                    self.per_family = true;
                }
                Err(e) => return Err(e),
            }
        }
        let v4 = self.socket.dump(&mut self.request_v4, |kind, payload| {
            push_inet_message(kind, payload, out)
        })?;
        let v6 = self.socket.dump(&mut self.request_v6, |kind, payload| {
            push_inet_message(kind, payload, out)
        })?;
        Ok(DumpSummary {
            messages: v4.messages + v6.messages,
            interrupted: v4.interrupted || v6.interrupted,
        })
    }
}

impl SockDiag {
    /// Asks the kernel for one socket by its exact addresses, whatever its state: what
    /// a dump would say of it (inode, owner's uid, state), or `None` when there is no
    /// such socket. A listener is asked for with an unspecified remote address and
    /// port 0; several listeners sharing a port (`SO_REUSEPORT`) answer as one.
    pub fn lookup(&mut self, which: &ExactSocket) -> Result<Option<TcpSocket>, NetlinkError> {
        exact_request(&mut self.request_one, which);
        let mut found = Vec::with_capacity(1);
        match self.socket.request(&mut self.request_one, |kind, payload| {
            push_inet_message(kind, payload, &mut found)
        }) {
            Ok(_) => Ok(found.pop()),
            Err(NetlinkError::Kernel {
                errno: Errno::ENOENT,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Writes a `SOCK_DIAG_BY_FAMILY` request for one socket into `buf`: netlink header,
/// then `struct inet_diag_req_v2` (family, protocol, extensions, padding, states,
/// and the socket ID: ports and addresses in network byte order, the interface, and
/// the "any cookie" value).
fn exact_request(buf: &mut Vec<u8>, which: &ExactSocket) {
    const INET_DIAG_REQ_V2_LEN: usize = 56;
    let len = NLMSG_HEADER_LEN + INET_DIAG_REQ_V2_LEN;
    let addr = |ip: IpAddr| -> [u8; 16] {
        let mut a = [0u8; 16];
        match ip {
            IpAddr::V4(v4) if which.family == AF_INET => a[..4].copy_from_slice(&v4.octets()),
            IpAddr::V4(v4) => a = v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => a = v6.octets(),
        }
        a
    };
    buf.clear();
    buf.extend_from_slice(&(len as u32).to_ne_bytes());
    buf.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    buf.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes()); // sequence, set per request
    buf.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel fills it in
    buf.extend_from_slice(&[which.family, IPPROTO_TCP, 0, 0]);
    buf.extend_from_slice(&u32::MAX.to_ne_bytes()); // any state
    buf.extend_from_slice(&which.local_port.to_be_bytes());
    buf.extend_from_slice(&which.remote_port.to_be_bytes());
    buf.extend_from_slice(&addr(which.local_ip));
    buf.extend_from_slice(&addr(which.remote_ip));
    buf.extend_from_slice(&which.interface.to_ne_bytes());
    buf.extend_from_slice(&[0xff; 8]); // INET_DIAG_NOCOOKIE
}

/// A `TCPDIAG_GETSOCK` dump request: netlink header, then `struct inet_diag_req`
/// (family, address lengths, extensions, a zero socket ID, states, tables), all in
/// host byte order. The kernel treats it as a request for every family.
fn both_families_request(states: u32) -> Vec<u8> {
    let len = NLMSG_HEADER_LEN + INET_DIAG_REQ_V1_LEN;
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&TCPDIAG_GETSOCK.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // sequence, set per dump
    m.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel fills it in
    m.extend_from_slice(&[AF_INET, 0, 0, 0]); // family (ignored), lengths, extensions
    m.resize(m.len() + 48, 0); // socket ID: any
    m.extend_from_slice(&states.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // tables (unused)
    m
}

fn push_inet_message(
    kind: u16,
    payload: &[u8],
    out: &mut Vec<TcpSocket>,
) -> Result<(), NetlinkError> {
    if kind != SOCK_DIAG_BY_FAMILY && kind != TCPDIAG_GETSOCK {
        return Ok(()); // not ours to interpret; a dump only sends these
    }
    if let Some(socket) = parse_inet_diag_msg(payload)? {
        out.push(socket);
    }
    Ok(())
}

/// Decodes the fixed header of an `inet_diag_msg` (attributes after it are ignored).
/// `None` for families other than IPv4 and IPv6.
pub fn parse_inet_diag_msg(payload: &[u8]) -> Result<Option<TcpSocket>, NetlinkError> {
    let malformed = |reason: String| NetlinkError::Malformed {
        what: "sock_diag",
        reason,
    };
    if payload.len() < INET_DIAG_MSG_LEN {
        return Err(malformed(format!(
            "inet_diag_msg of {} bytes, expected at least {INET_DIAG_MSG_LEN}",
            payload.len()
        )));
    }
    let family = payload[0];
    if family != AF_INET && family != AF_INET6 {
        return Ok(None);
    }
    let header = InetResponseHeader::parse(&payload[..INET_DIAG_MSG_LEN])
        .map_err(|e| malformed(e.to_string()))?;
    let id = &header.socket_id;
    Ok(Some(TcpSocket {
        local_ip: id.source_address.to_canonical(),
        local_port: id.source_port,
        remote_ip: id.destination_address.to_canonical(),
        remote_port: id.destination_port,
        state: TcpState::from_kernel(header.state),
        inode: u64::from(header.inode),
        uid: header.uid,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// An `inet_diag_msg` as the kernel lays it out (ports and addresses in network
    /// byte order, the rest in host order).
    fn diag_msg(
        family: u8,
        state: u8,
        src: IpAddr,
        sport: u16,
        dst: IpAddr,
        dport: u16,
    ) -> Vec<u8> {
        let mut m = vec![family, state, 0, 0];
        m.extend_from_slice(&sport.to_be_bytes());
        m.extend_from_slice(&dport.to_be_bytes());
        for ip in [src, dst] {
            let mut a = [0u8; 16];
            match ip {
                IpAddr::V4(v4) => a[..4].copy_from_slice(&v4.octets()),
                IpAddr::V6(v6) => a.copy_from_slice(&v6.octets()),
            }
            m.extend_from_slice(&a);
        }
        m.extend_from_slice(&0u32.to_ne_bytes()); // interface
        m.extend_from_slice(&[0xff; 8]); // cookie
        for v in [0u32, 0, 0, 1000, 424242] {
            m.extend_from_slice(&v.to_ne_bytes()); // expires, rqueue, wqueue, uid, inode
        }
        m
    }

    fn nl_message(kind: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let len = NLMSG_HEADER_LEN + payload.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&flags.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(payload);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    #[test]
    fn inet_diag_messages_decode_with_canonical_addresses() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let m = diag_msg(AF_INET, 1, lo, 40000, lo, 8080);
        let s = parse_inet_diag_msg(&m).expect("valid").expect("inet");
        assert_eq!((s.local_ip, s.local_port), (lo, 40000));
        assert_eq!((s.remote_ip, s.remote_port), (lo, 8080));
        assert_eq!(s.state, TcpState::Established);
        assert_eq!((s.uid, s.inode), (1000, 424242));

        let mapped = IpAddr::V6(Ipv4Addr::new(10, 1, 2, 3).to_ipv6_mapped());
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let m = diag_msg(AF_INET6, 10, mapped, 80, v6, 0);
        let s = parse_inet_diag_msg(&m).expect("valid").expect("inet");
        assert_eq!(s.local_ip, IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)));
        assert_eq!(s.remote_ip, v6);
        assert_eq!(s.state, TcpState::Listen);

        assert!(parse_inet_diag_msg(&m[..40]).is_err(), "short message");
        let mut unix = m.clone();
        unix[0] = 1;
        assert_eq!(parse_inet_diag_msg(&unix).expect("skipped"), None);
    }

    #[test]
    fn datagrams_are_walked_until_done_and_errors_stop_the_dump() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let payload = diag_msg(AF_INET, 1, lo, 1, lo, 2);
        let mut datagram = nl_message(SOCK_DIAG_BY_FAMILY, 2, 7, &payload);
        datagram.extend(nl_message(SOCK_DIAG_BY_FAMILY, 2, 6, &payload)); // stale
        datagram.extend(nl_message(
            SOCK_DIAG_BY_FAMILY,
            2 | NLM_F_DUMP_INTR,
            7,
            &payload,
        ));
        let mut out = Vec::new();
        let mut summary = DumpSummary::default();
        let done = walk_datagram(&datagram, 7, "test", false, &mut summary, &mut |k, p| {
            push_inet_message(k, p, &mut out)
        })
        .map_err(|(e, _)| e)
        .expect("walks");
        assert!(!done, "no DONE yet");
        assert_eq!(out.len(), 2, "the stale message is skipped");
        assert!(summary.interrupted);

        let done_msg = nl_message(NLMSG_DONE, 2, 7, &0i32.to_ne_bytes());
        let finished = walk_datagram(
            &done_msg,
            7,
            "test",
            false,
            &mut summary,
            &mut |_, _| Ok(()),
        )
        .map_err(|(e, _)| e)
        .expect("walks");
        assert!(finished);

        let mut err = (-nix::libc::EPERM).to_ne_bytes().to_vec();
        err.extend_from_slice(&[0; 16]); // the offending request's header
        let err_msg = nl_message(NLMSG_ERROR, 0, 7, &err);
        let (e, finished) =
            walk_datagram(&err_msg, 7, "test", false, &mut summary, &mut |_, _| Ok(()))
                .expect_err("kernel error");
        assert!(finished);
        assert_eq!(e.errno(), Some(Errno::EPERM));
        assert!(e.to_string().contains("EPERM"), "{e}");

        let mut ack = 0i32.to_ne_bytes().to_vec();
        ack.extend_from_slice(&[0; 16]);
        let ack_msg = nl_message(NLMSG_ERROR, 0, 7, &ack);
        let ends = |ack_ends| {
            walk_datagram(
                &ack_msg,
                7,
                "test",
                ack_ends,
                &mut DumpSummary::default(),
                &mut |_, _| Ok(()),
            )
            .map_err(|(e, _)| e)
            .expect("an acknowledgement is not an error")
        };
        assert!(ends(true), "an acknowledgement ends a plain request");
        assert!(!ends(false), "but not a dump");

        let bad_done = nl_message(NLMSG_DONE, 2, 7, &(-nix::libc::ENOMEM).to_ne_bytes());
        let (e, _) = walk_datagram(
            &bad_done,
            7,
            "test",
            false,
            &mut summary,
            &mut |_, _| Ok(()),
        )
        .expect_err("error in DONE");
        assert_eq!(e.errno(), Some(Errno::ENOMEM));

        let truncated = &datagram[..20];
        assert!(matches!(
            walk_datagram(
                truncated,
                7,
                "test",
                false,
                &mut summary,
                &mut |_, _| Ok(())
            ),
            Err((NetlinkError::Malformed { .. }, false))
        ));
    }

    #[test]
    fn state_masks_select_kernel_bits() {
        assert_eq!(states_mask(&[TcpState::Established]), 1 << 1);
        assert_eq!(
            states_mask(&[TcpState::Listen, TcpState::Established]),
            (1 << 10) | (1 << 1)
        );
        assert!(TcpState::CloseWait.is_connection());
        assert!(!TcpState::Listen.is_connection());
        assert!(!TcpState::TimeWait.is_connection());
    }

    #[test]
    fn a_real_dump_sees_a_loopback_connection_of_this_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let client_port = client.local_addr().expect("addr").port();
        let v6_listener = std::net::TcpListener::bind("[::1]:0").ok();
        let mut diag = SockDiag::open(CONNECTION_AND_LISTEN_STATES).expect("sock_diag");
        let mut out = Vec::new();
        // Twice in one pass, then twice per family: the socket and buffer are reused.
        for round in 0..4 {
            diag.per_family = round >= 2;
            out.clear();
            diag.dump_tcp(&mut out).expect("dump");
            assert_eq!(
                diag.per_family(),
                round >= 2,
                "this kernel takes the one-pass dump"
            );
            let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
            assert!(
                out.iter()
                    .any(|s| s.state == TcpState::Listen && s.local_port == port)
            );
            let c = out
                .iter()
                .find(|s| s.local_port == client_port && s.remote_port == port)
                .expect("client socket");
            assert_eq!((c.local_ip, c.remote_ip), (lo, lo));
            assert_eq!(c.state, TcpState::Established);
            assert_ne!(c.inode, 0);
            assert_eq!(c.uid, nix::unistd::getuid().as_raw());
            assert!(
                out.iter()
                    .any(|s| s.local_port == port && s.remote_port == client_port),
                "the accepted end is there too"
            );
            if let Some(l) = &v6_listener {
                let port = l.local_addr().expect("addr").port();
                assert!(
                    out.iter()
                        .any(|s| s.local_port == port && s.local_ip.is_ipv6()),
                    "IPv6 sockets are in the same dump"
                );
            }
        }
    }

    #[test]
    fn a_lookup_finds_one_socket_by_its_exact_addresses() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let client_port = client.local_addr().expect("addr").port();
        let mut diag = SockDiag::open(CONNECTION_AND_LISTEN_STATES).expect("sock_diag");
        let exact = |local_ip, local_port, remote_ip, remote_port| ExactSocket {
            family: AF_INET,
            local_ip,
            local_port,
            remote_ip,
            remote_port,
            interface: 0,
        };

        let c = diag
            .lookup(&exact(lo, client_port, lo, port))
            .expect("lookup")
            .expect("the client socket");
        assert_eq!((c.local_port, c.remote_port), (client_port, port));
        assert_eq!(c.state, TcpState::Established);
        assert_ne!(c.inode, 0);
        assert_eq!(c.uid, nix::unistd::getuid().as_raw());

        // Not accepted yet: the server's end has no file, so no inode.
        let s = diag
            .lookup(&exact(lo, port, lo, client_port))
            .expect("lookup")
            .expect("the server's end");
        assert_eq!((s.state, s.inode), (TcpState::Established, 0));
        let (_accepted, _) = listener.accept().expect("accept");
        let s = diag
            .lookup(&exact(lo, port, lo, client_port))
            .expect("lookup")
            .expect("the server's end");
        assert_ne!(s.inode, 0, "accepted: now it has one");

        let l = diag
            .lookup(&exact(lo, port, any, 0))
            .expect("lookup")
            .expect("the listener");
        assert_eq!(
            (l.state, l.local_port, l.remote_port),
            (TcpState::Listen, port, 0)
        );

        drop(client);
        let gone = diag
            .lookup(&exact(lo, client_port, lo, port))
            .expect("lookup");
        assert!(
            gone.is_none_or(|g| !g.state.is_connection() || g.inode == 0),
            "closed: {gone:?}"
        );
        assert_eq!(
            diag.lookup(&exact(lo, 1, lo, 2)).expect("lookup"),
            None,
            "no such socket"
        );
        // The socket is still usable for dumps after requests.
        let mut out = Vec::new();
        diag.dump_tcp(&mut out).expect("dump");
        assert!(
            out.iter()
                .any(|s| s.local_port == port && s.state == TcpState::Listen)
        );

        if let Ok(v6) = std::net::TcpListener::bind("[::1]:0") {
            let p6 = v6.local_addr().expect("addr").port();
            let found = diag
                .lookup(&ExactSocket {
                    family: AF_INET6,
                    local_ip: IpAddr::V6(Ipv6Addr::LOCALHOST),
                    local_port: p6,
                    remote_ip: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                    remote_port: 0,
                    interface: 0,
                })
                .expect("lookup");
            assert_eq!(found.map(|f| f.state), Some(TcpState::Listen));
        }
    }
}
