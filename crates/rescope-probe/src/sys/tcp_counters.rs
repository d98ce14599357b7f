//! A cheap test of whether a network namespace's TCP sockets may have changed, so the
//! endpoint collector can skip a sock_diag dump when they cannot have.
//!
//! A dump walks the kernel's whole TCP hash table (shared by every namespace), which
//! costs milliseconds on a host with thousands of sockets, while three small procfs
//! files of the namespace say whether anything happened since the last dump:
//!
//! - `net/snmp`, `Tcp:` line: `ActiveOpens` and `PassiveOpens` count every connection
//!   ever started or accepted, `AttemptFails` and `EstabResets` every one that failed
//!   or was reset, and `CurrEstab` moves whenever a connection leaves or enters
//!   `ESTABLISHED`/`CLOSE_WAIT` (including when its owner closes it);
//! - `net/sockstat` and `net/sockstat6`: `inuse` of `TCP:` and `TCP6:` moves whenever
//!   a socket is added to or removed from the hash tables (listeners included, and a
//!   connection entering `TIME_WAIT`).
//!
//! All of them are per namespace. Equal readings before two dumps mean the set of
//! sockets is very likely the same; the one change they can miss is a listener closed
//! and another opened in the same interval, so callers still dump now and then.
//!
//! The files are opened once, from inside the namespace (`/proc/thread-self/net/…`
//! names the calling thread's namespace), and re-read from offset 0 each tick; an open
//! file stays bound to its namespace.

use std::fs::File;
use std::io;
use std::path::Path;

/// The counters that change when a namespace's TCP sockets do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpFingerprint {
    pub active_opens: u64,
    pub passive_opens: u64,
    pub attempt_fails: u64,
    pub estab_resets: u64,
    pub curr_estab: u64,
    /// Hashed TCP sockets (IPv4 and IPv6 protocols).
    pub in_use: u64,
}

/// The open counter files of one namespace.
#[derive(Debug)]
pub struct TcpCounters {
    snmp: File,
    sockstat: File,
    sockstat6: Option<File>,
}

impl TcpCounters {
    /// Opens the counters of the calling thread's network namespace, under the procfs
    /// mounted at `proc_root`. `sockstat6` is missing when IPv6 is disabled.
    pub fn open_current(proc_root: &Path) -> io::Result<Self> {
        let net = proc_root.join("thread-self").join("net");
        Ok(TcpCounters {
            snmp: File::open(net.join("snmp"))?,
            sockstat: File::open(net.join("sockstat"))?,
            sockstat6: File::open(net.join("sockstat6")).ok(),
        })
    }

    /// Reads the counters now. `buf` is scratch space.
    pub fn read(&self, buf: &mut Vec<u8>) -> io::Result<TcpFingerprint> {
        let unparsable = |what| io::Error::new(io::ErrorKind::InvalidData, what);
        read_at_start(&self.snmp, buf)?;
        let mut fp = parse_snmp_tcp(buf).ok_or_else(|| unparsable("unparsable net/snmp"))?;
        read_at_start(&self.sockstat, buf)?;
        fp.in_use = parse_in_use(buf, b"TCP:").ok_or_else(|| unparsable("unparsable sockstat"))?;
        if let Some(file) = &self.sockstat6 {
            read_at_start(file, buf)?;
            fp.in_use += parse_in_use(buf, b"TCP6:").unwrap_or(0);
        }
        Ok(fp)
    }
}

/// Reads a whole procfs file from offset 0 into `buf`.
fn read_at_start(file: &File, buf: &mut Vec<u8>) -> io::Result<()> {
    super::proc::reread(file, buf, 4096)
}

fn words(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
}

fn number(word: &[u8]) -> Option<u64> {
    std::str::from_utf8(word).ok()?.parse().ok()
}

/// The `Tcp:` counters of `net/snmp`: a line of names followed by a line of values.
pub fn parse_snmp_tcp(buf: &[u8]) -> Option<TcpFingerprint> {
    let mut lines = buf
        .split(|b| *b == b'\n')
        .filter(|l| l.starts_with(b"Tcp:"));
    let names = lines.next()?;
    let values = lines.next()?;
    let mut fp = TcpFingerprint::default();
    let mut found = 0;
    for (name, value) in words(names).zip(words(values)).skip(1) {
        let slot = match name {
            b"ActiveOpens" => &mut fp.active_opens,
            b"PassiveOpens" => &mut fp.passive_opens,
            b"AttemptFails" => &mut fp.attempt_fails,
            b"EstabResets" => &mut fp.estab_resets,
            b"CurrEstab" => &mut fp.curr_estab,
            _ => continue,
        };
        *slot = number(value)?;
        found += 1;
    }
    (found == 5).then_some(fp)
}

/// `inuse` on the line starting with `prefix` (`TCP:` or `TCP6:`) of a sockstat file.
pub fn parse_in_use(buf: &[u8], prefix: &[u8]) -> Option<u64> {
    let line = buf.split(|b| *b == b'\n').find(|l| l.starts_with(prefix))?;
    let mut it = words(line).skip(1);
    while let Some(name) = it.next() {
        let value = it.next()?;
        if name == b"inuse" {
            return number(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNMP: &[u8] = b"Ip: Forwarding DefaultTTL\nIp: 1 64\n\
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors\n\
Tcp: 1 200 120000 -1 54 2 1 8 3 12683 8175 0 0 70 0\n\
Udp: InDatagrams NoPorts\nUdp: 5 6\n";

    #[test]
    fn snmp_and_sockstat_counters_parse() {
        let fp = parse_snmp_tcp(SNMP).expect("parses");
        assert_eq!(
            (
                fp.active_opens,
                fp.passive_opens,
                fp.attempt_fails,
                fp.estab_resets,
                fp.curr_estab
            ),
            (54, 2, 1, 8, 3)
        );
        assert_eq!(parse_snmp_tcp(b"Tcp: ActiveOpens\n"), None);
        let sockstat =
            b"sockets: used 44\nTCP: inuse 3 orphan 0 tw 0 alloc 3 mem 33\nUDP: inuse 0 mem 0\n";
        assert_eq!(parse_in_use(sockstat, b"TCP:"), Some(3));
        assert_eq!(
            parse_in_use(b"TCP6: inuse 7\nUDP6: inuse 1\n", b"TCP6:"),
            Some(7)
        );
        assert_eq!(parse_in_use(sockstat, b"TCP6:"), None);
    }

    #[test]
    fn a_new_connection_changes_this_namespace_s_fingerprint() {
        let counters = TcpCounters::open_current(Path::new("/proc")).expect("open");
        let mut buf = Vec::new();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let before = counters.read(&mut buf).expect("read");
        assert!(before.in_use >= 1, "at least our listener: {before:?}");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        let after = counters.read(&mut buf).expect("read");
        // Other tests may open and close sockets meanwhile; these counters only grow.
        assert!(after.active_opens > before.active_opens);
        assert!(after.passive_opens > before.passive_opens);
        drop((client, server));
    }
}
