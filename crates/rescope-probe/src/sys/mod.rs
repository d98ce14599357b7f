//! The kernel seam: every read of procfs, netlink and namespaces goes through here.

pub mod cgroup;
pub mod conntrack;
pub mod dirwatch;
pub mod ifaddr;
pub mod malloc;
pub mod netns;
pub mod proc;
pub mod sockdiag;
pub mod tcp_counters;
pub mod tcptrack;
pub mod unixhttp;
