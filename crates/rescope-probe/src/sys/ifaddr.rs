//! The host's IPv4 interface addresses from one rtnetlink address dump.
//!
//! glibc's `getifaddrs` also dumps every link with its statistics, which costs more
//! with each interface (a container's veth pair adds one on the host); the host
//! reporter asks for this once a tick and needs only the IPv4 addresses.

use std::net::Ipv4Addr;

use crate::sys::sockdiag::{DumpSocket, NetlinkError};

const NETLINK_ROUTE: isize = 0;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const AF_INET: u8 = 2;
/// `struct ifaddrmsg`.
const IFADDRMSG_LEN: usize = 8;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;

/// A route netlink socket that lists IPv4 addresses.
#[derive(Debug)]
pub struct Ipv4Addresses {
    socket: DumpSocket,
}

impl Ipv4Addresses {
    /// Opens the socket in the calling thread's network namespace.
    pub fn open() -> Result<Self, NetlinkError> {
        Ok(Ipv4Addresses {
            socket: DumpSocket::open(NETLINK_ROUTE, "rtnetlink")?,
        })
    }

    pub fn is_broken(&self) -> bool {
        self.socket.is_broken()
    }

    /// Every IPv4 address with its prefix length, as `getifaddrs` gives them: the
    /// local address (`IFA_LOCAL`, which differs from `IFA_ADDRESS` on
    /// point-to-point links), else the address.
    pub fn read(&mut self, out: &mut Vec<(Ipv4Addr, u8)>) -> Result<(), NetlinkError> {
        const LEN: usize = 16 + IFADDRMSG_LEN;
        let mut request = [0u8; LEN];
        request[..4].copy_from_slice(&(LEN as u32).to_ne_bytes());
        request[4..6].copy_from_slice(&RTM_GETADDR.to_ne_bytes());
        request[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        request[16] = AF_INET;
        self.socket.dump(&mut request, |kind, payload| {
            if kind == RTM_NEWADDR
                && let Some(found) = parse(payload)
            {
                out.push(found);
            }
            Ok(())
        })?;
        Ok(())
    }
}

/// One `RTM_NEWADDR` payload: `struct ifaddrmsg`, then attributes.
fn parse(payload: &[u8]) -> Option<(Ipv4Addr, u8)> {
    let header = payload.get(..IFADDRMSG_LEN)?;
    if header[0] != AF_INET {
        return None;
    }
    let prefix = header[1];
    let (mut local, mut address) = (None, None);
    let mut rest = &payload[IFADDRMSG_LEN..];
    while rest.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
        if len < 4 || len > rest.len() {
            break;
        }
        let value = &rest[4..len];
        if let Ok(octets) = <[u8; 4]>::try_from(value) {
            match kind {
                IFA_LOCAL => local = Some(Ipv4Addr::from(octets)),
                IFA_ADDRESS => address = Some(Ipv4Addr::from(octets)),
                _ => {}
            }
        }
        rest = rest.get(len.next_multiple_of(4)..).unwrap_or(&[]);
    }
    Some((local.or(address)?, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(value);
        while a.len() % 4 != 0 {
            a.push(0);
        }
        a
    }

    #[test]
    fn the_local_address_wins_over_the_peer() {
        let mut msg = vec![AF_INET, 32, 0, 0, 3, 0, 0, 0];
        msg.extend(attr(IFA_ADDRESS, &[10, 0, 0, 2]));
        msg.extend(attr(3, b"tun0\0"));
        msg.extend(attr(IFA_LOCAL, &[10, 0, 0, 1]));
        assert_eq!(parse(&msg), Some((Ipv4Addr::new(10, 0, 0, 1), 32)));
        let mut msg = vec![AF_INET, 8, 0, 0, 1, 0, 0, 0];
        msg.extend(attr(IFA_ADDRESS, &[127, 0, 0, 1]));
        assert_eq!(parse(&msg), Some((Ipv4Addr::LOCALHOST, 8)));
        assert_eq!(parse(&[10, 64, 0, 0, 1, 0, 0, 0]), None, "IPv6");
        assert_eq!(parse(&[AF_INET, 8]), None, "short");
    }
}
