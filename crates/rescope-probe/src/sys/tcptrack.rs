//! TCP state changes from eBPF: every socket that opened, changed state or closed, in
//! every network namespace, so the endpoint reporter can update its last sock_diag
//! dump instead of dumping every socket again (see `bpf/tcptrack.bpf.c`).
//!
//! The program on the `sock:inet_sock_set_state` tracepoint writes one
//! [`StateChange`] per change into a ring buffer, which [`TcpTracker::drain`] empties
//! once per tick (nothing polls it in between, so no change wakes the probe). A full
//! buffer drops changes and counts them; the caller learns it from `drain` and must
//! then dump everything again.
//!
//! Loading needs the kernel's BTF (the program's field offsets are relocated against
//! it), the BPF ring buffer (Linux 5.8) and root (or `CAP_BPF` with `CAP_PERFMON`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use aya::maps::{Array, MapData, RingBuf};
use aya::programs::TracePoint;
use aya::{Ebpf, EbpfLoader};

use crate::sys::sockdiag::{ExactSocket, TcpState};

/// The object built from `bpf/tcptrack.bpf.c` by `bpf/build.sh` (stripped of DWARF,
/// with BTF and CO-RE relocations kept).
pub static BPF_OBJECT: &[u8] = aya::include_bytes_aligned!("../../bpf/tcptrack.bpf.o");

const PROGRAM: &str = "tcptrack_set_state";
const EVENTS_MAP: &str = "events";
const LOST_MAP: &str = "lost";
const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";
/// Size of one event (`struct tcptrack_event` in `bpf/tcptrack.h`).
const EVENT_LEN: usize = 56;
/// The ring buffer of the object (`TCPTRACK_RING_BYTES`).
pub const DEFAULT_RING_BYTES: u32 = 1 << 20;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// Why the tracker could not be set up or read.
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    #[error("the kernel has no BTF type information ({KERNEL_BTF} is missing)")]
    NoKernelBtf,
    #[error("loading the BPF object: {message}{hint}")]
    Load { message: String, hint: &'static str },
    #[error("the BPF object has no {0}")]
    Missing(&'static str),
    #[error("loading the BPF program: {message}{hint}")]
    Program { message: String, hint: &'static str },
    #[error("attaching to tracepoint sock:inet_sock_set_state: {message}{hint}")]
    Attach { message: String, hint: &'static str },
    #[error("BPF map {map}: {message}")]
    Map { map: &'static str, message: String },
}

/// One TCP state change, as the kernel saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateChange {
    /// The socket's kernel address: the same for every change of one socket while it
    /// lives (and reused once it is freed).
    pub skaddr: u64,
    /// Inode of the socket's network namespace.
    pub netns: u64,
    pub old: TcpState,
    pub new: TcpState,
    /// The socket as sock_diag can be asked for it. The local port is 0 while a
    /// connecting socket has not been given one yet (its change to `SYN_SENT` comes
    /// before the port is chosen).
    pub socket: ExactSocket,
}

impl StateChange {
    /// Decodes a `struct tcptrack_event`; `None` for a short record or an address
    /// family other than IPv4 and IPv6.
    pub fn decode(raw: &[u8]) -> Option<Self> {
        if raw.len() < EVENT_LEN {
            return None;
        }
        let u16_at = |i: usize| u16::from_ne_bytes([raw[i], raw[i + 1]]);
        let u32_at = |i: usize| u32::from_ne_bytes([raw[i], raw[i + 1], raw[i + 2], raw[i + 3]]);
        let addr = |i: usize| -> [u8; 16] {
            let mut a = [0u8; 16];
            a.copy_from_slice(&raw[i..i + 16]);
            a
        };
        let mut skaddr = [0u8; 8];
        skaddr.copy_from_slice(&raw[..8]);
        let family = u16_at(18);
        let (saddr, daddr) = (Ipv6Addr::from(addr(24)), Ipv6Addr::from(addr(40)));
        // The tracepoint gives IPv4 sockets' addresses IPv4-mapped.
        let ip = |a: Ipv6Addr| -> IpAddr {
            if family == AF_INET {
                IpAddr::V4(a.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED))
            } else {
                IpAddr::V6(a)
            }
        };
        let family = match family {
            AF_INET => netlink_packet_sock_diag::AF_INET,
            AF_INET6 => netlink_packet_sock_diag::AF_INET6,
            _ => return None,
        };
        Some(StateChange {
            skaddr: u64::from_ne_bytes(skaddr),
            netns: u64::from(u32_at(8)),
            old: TcpState::from_kernel(raw[16]),
            new: TcpState::from_kernel(raw[17]),
            socket: ExactSocket {
                family,
                local_ip: ip(saddr),
                local_port: u16_at(20),
                remote_ip: ip(daddr),
                remote_port: u16_at(22),
                interface: u32_at(12),
            },
        })
    }
}

/// The loaded and attached program; dropping it detaches it.
pub struct TcpTracker {
    _ebpf: Ebpf,
    events: RingBuf<MapData>,
    lost: Array<MapData, u64>,
    lost_seen: u64,
    /// Records read per drain at most: a producer faster than the reader must not keep
    /// it in the loop (what is left is read at the next tick).
    max_per_drain: usize,
}

impl std::fmt::Debug for TcpTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpTracker")
            .field("lost_seen", &self.lost_seen)
            .finish_non_exhaustive()
    }
}

/// What one drain gave.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    /// Changes appended.
    pub changes: usize,
    /// Changes were dropped since the last drain (the buffer was full), or a record
    /// could not be decoded: what was read is incomplete.
    pub lost: bool,
}

impl TcpTracker {
    /// Loads the program with its default ring buffer and attaches it.
    pub fn load() -> Result<Self, TrackerError> {
        Self::load_with(BPF_OBJECT, None)
    }

    /// Like [`TcpTracker::load`] with `object` (normally [`BPF_OBJECT`]) and a ring
    /// buffer of `ring_bytes` (a power of two and a multiple of the page size; `None`
    /// keeps the object's); tests use a small one to make it overflow.
    pub fn load_with(object: &[u8], ring_bytes: Option<u32>) -> Result<Self, TrackerError> {
        if !Path::new(KERNEL_BTF).exists() {
            return Err(TrackerError::NoKernelBtf);
        }
        raise_memlock_limit();
        let mut loader = EbpfLoader::new();
        if let Some(bytes) = ring_bytes {
            loader.map_max_entries(EVENTS_MAP, bytes);
        }
        let mut ebpf = loader.load(object).map_err(|e| TrackerError::Load {
            message: error_chain(&e),
            hint: permission_hint(&e),
        })?;
        let program: &mut TracePoint = ebpf
            .program_mut(PROGRAM)
            .ok_or(TrackerError::Missing("program"))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| TrackerError::Program {
                message: error_chain(&e),
                hint: "",
            })?;
        program.load().map_err(|e| TrackerError::Program {
            message: error_chain(&e),
            hint: permission_hint(&e),
        })?;
        program
            .attach("sock", "inet_sock_set_state")
            .map_err(|e| TrackerError::Attach {
                message: error_chain(&e),
                hint: permission_hint(&e),
            })?;
        let map_error = |map: &'static str| {
            move |e: aya::maps::MapError| TrackerError::Map {
                map,
                message: error_chain(&e),
            }
        };
        let events = RingBuf::try_from(
            ebpf.take_map(EVENTS_MAP)
                .ok_or(TrackerError::Missing("events map"))?,
        )
        .map_err(map_error(EVENTS_MAP))?;
        let lost: Array<MapData, u64> = Array::try_from(
            ebpf.take_map(LOST_MAP)
                .ok_or(TrackerError::Missing("lost map"))?,
        )
        .map_err(map_error(LOST_MAP))?;
        let lost_seen = lost.get(&0, 0).map_err(map_error(LOST_MAP))?;
        let ring = ring_bytes.unwrap_or(DEFAULT_RING_BYTES) as usize;
        Ok(TcpTracker {
            _ebpf: ebpf,
            events,
            lost,
            lost_seen,
            max_per_drain: 2 * ring / (EVENT_LEN + 8) + 1,
        })
    }

    /// Appends the changes queued since the last drain to `out`, oldest first.
    pub fn drain(&mut self, out: &mut Vec<StateChange>) -> Result<Drained, TrackerError> {
        let mut drained = Drained::default();
        for _ in 0..self.max_per_drain {
            let Some(item) = self.events.next() else {
                break;
            };
            match StateChange::decode(&item) {
                Some(change) => {
                    out.push(change);
                    drained.changes += 1;
                }
                None => drained.lost = true,
            }
        }
        // Read after the buffer: a change dropped while it was read is either counted
        // now or at the next drain, and the dump the caller then makes comes after it.
        let lost = self.lost.get(&0, 0).map_err(|e| TrackerError::Map {
            map: LOST_MAP,
            message: error_chain(&e),
        })?;
        if lost != self.lost_seen {
            self.lost_seen = lost;
            drained.lost = true;
        }
        Ok(drained)
    }
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; lift it for this process.
fn raise_memlock_limit() {
    use nix::sys::resource::{Resource, setrlimit};
    let _ = setrlimit(
        Resource::RLIMIT_MEMLOCK,
        nix::libc::RLIM_INFINITY,
        nix::libc::RLIM_INFINITY,
    );
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

fn permission_hint(e: &dyn std::error::Error) -> &'static str {
    let text = error_chain(e);
    if text.contains("EPERM")
        || text.contains("permission")
        || text.contains("Operation not permitted")
    {
        "; tracking TCP changes needs root, or CAP_BPF and CAP_PERFMON"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(
        family: u16,
        old: u8,
        new: u8,
        saddr: [u8; 16],
        sport: u16,
        daddr: [u8; 16],
        dport: u16,
    ) -> Vec<u8> {
        let mut e = Vec::new();
        e.extend_from_slice(&0xffff_8880_1234_5678u64.to_ne_bytes());
        e.extend_from_slice(&4026531840u32.to_ne_bytes());
        e.extend_from_slice(&3i32.to_ne_bytes());
        e.extend_from_slice(&[old, new]);
        e.extend_from_slice(&family.to_ne_bytes());
        e.extend_from_slice(&sport.to_ne_bytes());
        e.extend_from_slice(&dport.to_ne_bytes());
        e.extend_from_slice(&saddr);
        e.extend_from_slice(&daddr);
        assert_eq!(e.len(), EVENT_LEN);
        e
    }

    #[test]
    fn events_decode_with_the_socket_s_own_family() {
        let mapped = |a: [u8; 4]| Ipv4Addr::from(a).to_ipv6_mapped().octets();
        let raw = event(
            AF_INET,
            2,
            1,
            mapped([127, 0, 0, 1]),
            40000,
            mapped([10, 0, 0, 2]),
            80,
        );
        let c = StateChange::decode(&raw).expect("decodes");
        assert_eq!(c.skaddr, 0xffff_8880_1234_5678);
        assert_eq!(c.netns, 4026531840);
        assert_eq!((c.old, c.new), (TcpState::SynSent, TcpState::Established));
        assert_eq!(c.socket.family, netlink_packet_sock_diag::AF_INET);
        assert_eq!(c.socket.local_ip, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(c.socket.remote_ip, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!((c.socket.local_port, c.socket.remote_port), (40000, 80));
        assert_eq!(c.socket.interface, 3);

        // An IPv6 socket keeps its (possibly mapped) IPv6 addresses for lookups.
        let raw = event(AF_INET6, 7, 10, mapped([127, 0, 0, 1]), 8080, [0; 16], 0);
        let c = StateChange::decode(&raw).expect("decodes");
        assert_eq!(c.socket.family, netlink_packet_sock_diag::AF_INET6);
        assert_eq!(
            c.socket.local_ip,
            IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped())
        );
        assert_eq!(c.new, TcpState::Listen);

        assert_eq!(StateChange::decode(&raw[..40]), None, "short");
        let other = event(1, 7, 10, [0; 16], 1, [0; 16], 0);
        assert_eq!(StateChange::decode(&other), None, "not inet");
    }
}
