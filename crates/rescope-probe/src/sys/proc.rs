//! procfs: processes, their file descriptors and namespaces, and host-wide counters.
//!
//! Everything is read relative to an injectable root (`/proc` on a real host, a
//! directory tree written by a test otherwise). The hot path reads many small files
//! every second, so reads go into a caller-owned buffer instead of allocating, and
//! parsing works on bytes.
//!
//! A process can exit between any two reads; callers treat `NotFound` (and `ESRCH`,
//! which some procfs files return for a dying process) as "gone", not as an error.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// What a process's `stat` file says that the probe uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stat {
    pub pid: u32,
    /// The kernel's short name (`comm`), up to 15 bytes.
    pub comm: String,
    /// One of `R S D Z T t X I …`.
    pub state: u8,
    pub ppid: u32,
    /// User plus system time, in clock ticks.
    pub cpu_ticks: u64,
    pub threads: u32,
    /// Start time after boot, in clock ticks. With the pid, identifies a process
    /// across pid reuse.
    pub start_ticks: u64,
    /// Resident set size in pages.
    pub rss_pages: u64,
    /// Kernel thread flag (`PF_KTHREAD`) from the `flags` field.
    pub kernel_thread: bool,
}

/// Host-wide CPU counters from the first line of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl CpuTimes {
    pub fn total(&self) -> u64 {
        self.user
            + self.nice
            + self.system
            + self.idle
            + self.iowait
            + self.irq
            + self.softirq
            + self.steal
    }
    pub fn idle_all(&self) -> u64 {
        self.idle + self.iowait
    }
}

/// `MemTotal` and `MemAvailable` from `/proc/meminfo`, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemInfo {
    pub total: u64,
    pub available: u64,
}

const PF_KTHREAD: u64 = 0x0020_0000;

/// Reads procfs below `root`.
#[derive(Debug, Clone)]
pub struct ProcFs {
    root: PathBuf,
}

/// Whether an IO error means the process (or file) is gone rather than broken.
pub fn is_gone(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::NotFound) || e.raw_os_error() == Some(nix::libc::ESRCH)
}

impl ProcFs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ProcFs { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn pid_path(&self, pid: u32, file: &str) -> PathBuf {
        let mut p = self.root.join(pid.to_string());
        if !file.is_empty() {
            p.push(file);
        }
        p
    }

    /// Reads a whole file into `buf` (cleared first).
    pub fn read_into(path: &Path, buf: &mut Vec<u8>) -> io::Result<()> {
        buf.clear();
        File::open(path)?.read_to_end(buf)?;
        Ok(())
    }

    /// All numeric entries of the root: the pids of every process.
    pub fn pids(&self) -> io::Result<Vec<u32>> {
        let mut pids = Vec::with_capacity(512);
        for entry in std::fs::read_dir(&self.root)? {
            let Ok(entry) = entry else { continue };
            if let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            {
                pids.push(pid);
            }
        }
        pids.sort_unstable();
        Ok(pids)
    }

    /// Opens the proc root to be listed again and again with [`ProcFs::list_pids`].
    pub fn open_root(&self) -> io::Result<nix::dir::Dir> {
        use nix::fcntl::OFlag;
        nix::dir::Dir::open(
            &self.root,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(io::Error::from)
    }

    /// The pids in the proc root opened with [`ProcFs::open_root`], sorted, into
    /// `out`: as [`ProcFs::pids`], without opening the directory (and allocating its
    /// 32 KiB buffer) or copying each name on every call. The directory is rewound
    /// after each listing, so the next one sees the processes of that moment.
    pub fn list_pids(root: &mut nix::dir::Dir, out: &mut Vec<u32>) -> io::Result<()> {
        out.clear();
        for entry in root.iter() {
            let entry = entry.map_err(io::Error::from)?;
            if let Some(pid) = entry
                .file_name()
                .to_str()
                .ok()
                .and_then(|s| s.parse::<u32>().ok())
            {
                out.push(pid);
            }
        }
        out.sort_unstable();
        Ok(())
    }

    /// Parses `/proc/<pid>/stat`.
    /// Opens `/proc/<pid>/stat` to be read again each tick with [`ProcFs::reread_stat`],
    /// which saves an open and a close (and a path lookup) per process per tick.
    pub fn open_stat(&self, pid: u32) -> io::Result<File> {
        File::open(self.pid_path(pid, "stat"))
    }

    /// Reads an open stat file from its start. Fails once the process has exited.
    pub fn reread_stat(file: &File, buf: &mut Vec<u8>) -> io::Result<Stat> {
        reread(file, buf, 1024)?;
        parse_stat(buf).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unparsable stat"))
    }

    /// Opens `/proc/<pid>/schedstat`, to be read again with [`ProcFs::reread_schedstat`].
    pub fn open_schedstat(&self, pid: u32) -> io::Result<File> {
        File::open(self.pid_path(pid, "schedstat"))
    }

    /// The run time of a process's main thread in nanoseconds (the first field of
    /// `schedstat`), from an open file. 0 when the kernel keeps no such statistics.
    /// Fails once the process has exited.
    pub fn reread_schedstat(file: &File, buf: &mut Vec<u8>) -> io::Result<u64> {
        reread(file, buf, 128)?;
        parse_schedstat(buf)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unparsable schedstat"))
    }

    pub fn stat(&self, pid: u32, buf: &mut Vec<u8>) -> io::Result<Stat> {
        Self::read_into(&self.pid_path(pid, "stat"), buf)?;
        parse_stat(buf).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unparsable stat for pid {pid}"),
            )
        })
    }

    /// The command line as arguments (`/proc/<pid>/cmdline`, NUL-separated). Empty for
    /// kernel threads and zombies.
    pub fn cmdline(&self, pid: u32, buf: &mut Vec<u8>) -> io::Result<Vec<String>> {
        Self::read_into(&self.pid_path(pid, "cmdline"), buf)?;
        let mut args: Vec<String> = buf
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        while args.last().is_some_and(|a| a.is_empty()) {
            args.pop();
        }
        Ok(args)
    }

    /// The soft limit on open files (`Max open files` in `/proc/<pid>/limits`).
    pub fn open_files_limit(&self, pid: u32, buf: &mut Vec<u8>) -> io::Result<Option<u64>> {
        Self::read_into(&self.pid_path(pid, "limits"), buf)?;
        Ok(parse_open_files_limit(buf))
    }

    /// The file descriptor numbers open in a process.
    pub fn fds(&self, pid: u32, out: &mut Vec<u32>) -> io::Result<()> {
        out.clear();
        for entry in std::fs::read_dir(self.pid_path(pid, "fd"))? {
            let Ok(entry) = entry else { continue };
            if let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            {
                out.push(fd);
            }
        }
        out.sort_unstable();
        Ok(())
    }

    /// The socket inode behind a file descriptor, if it is a socket.
    pub fn fd_socket_inode(&self, pid: u32, fd: u32) -> io::Result<Option<u64>> {
        let target = std::fs::read_link(self.pid_path(pid, &format!("fd/{fd}")))?;
        Ok(parse_socket_link(target.as_os_str().as_encoded_bytes()))
    }

    /// The inode of the network namespace a process is in.
    pub fn net_namespace(&self, pid: u32) -> io::Result<Option<u64>> {
        let target = std::fs::read_link(self.pid_path(pid, "ns/net"))?;
        Ok(parse_ns_link(target.as_os_str().as_encoded_bytes()))
    }

    /// The cgroup paths of a process (`/proc/<pid>/cgroup`, v1 and v2).
    pub fn cgroups(&self, pid: u32, buf: &mut Vec<u8>) -> io::Result<Vec<String>> {
        Self::read_into(&self.pid_path(pid, "cgroup"), buf)?;
        Ok(String::from_utf8_lossy(buf)
            .lines()
            .filter_map(|l| l.splitn(3, ':').nth(2).map(str::to_string))
            .collect())
    }

    /// Host CPU counters.
    pub fn cpu_times(&self, buf: &mut Vec<u8>) -> io::Result<CpuTimes> {
        Self::read_into(&self.root.join("stat"), buf)?;
        parse_cpu_times(buf)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unparsable /proc/stat"))
    }

    /// Host memory.
    pub fn meminfo(&self, buf: &mut Vec<u8>) -> io::Result<MemInfo> {
        Self::read_into(&self.root.join("meminfo"), buf)?;
        parse_meminfo(buf)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unparsable /proc/meminfo"))
    }

    /// The 1, 5 and 15 minute load averages.
    pub fn loadavg(&self, buf: &mut Vec<u8>) -> io::Result<[f64; 3]> {
        Self::read_into(&self.root.join("loadavg"), buf)?;
        let s = String::from_utf8_lossy(buf);
        let mut it = s.split_ascii_whitespace().map(|v| v.parse::<f64>());
        match (it.next(), it.next(), it.next()) {
            (Some(Ok(a)), Some(Ok(b)), Some(Ok(c))) => Ok([a, b, c]),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "unparsable /proc/loadavg",
            )),
        }
    }

    /// Seconds since boot.
    pub fn uptime_secs(&self, buf: &mut Vec<u8>) -> io::Result<f64> {
        Self::read_into(&self.root.join("uptime"), buf)?;
        String::from_utf8_lossy(buf)
            .split_ascii_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unparsable /proc/uptime"))
    }
}

/// Reads an open procfs file from offset 0 into `buf` (no open, no close).
pub(crate) fn reread(file: &File, buf: &mut Vec<u8>, initial: usize) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    buf.clear();
    buf.resize(initial, 0);
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
        let n = file.read_at(&mut buf[len..], len as u64)?;
        if n == 0 {
            break;
        }
        len += n;
    }
    buf.truncate(len);
    Ok(())
}

/// `schedstat`: run time (ns), wait time (ns), time slices; the first is returned.
pub fn parse_schedstat(buf: &[u8]) -> Option<u64> {
    let first = buf.split(|b| b.is_ascii_whitespace()).next()?;
    std::str::from_utf8(first).ok()?.parse().ok()
}

fn field(fields: &[&[u8]], i: usize) -> Option<u64> {
    std::str::from_utf8(fields.get(i)?).ok()?.parse().ok()
}

/// Parses a `stat` line. The command name sits in parentheses and may itself contain
/// spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_stat(buf: &[u8]) -> Option<Stat> {
    let open = buf.iter().position(|b| *b == b'(')?;
    let close = buf.iter().rposition(|b| *b == b')')?;
    let pid = std::str::from_utf8(buf.get(..open)?)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let comm = String::from_utf8_lossy(buf.get(open + 1..close)?).into_owned();
    // Fields 3 to 24 are all that is used: kept on the stack (this runs for every
    // process every tick).
    let mut rest: [&[u8]; 22] = [&[]; 22];
    let mut n = 0;
    for f in buf
        .get(close + 1..)?
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty())
        .take(rest.len())
    {
        rest[n] = f;
        n += 1;
    }
    let rest = &rest[..n];
    // rest[0] is field 3 (state); field n is rest[n - 3].
    let state = *rest.first()?.first()?;
    let flags = field(rest, 9 - 3)?;
    Some(Stat {
        pid,
        comm,
        state,
        ppid: u32::try_from(field(rest, 4 - 3)?).ok()?,
        cpu_ticks: field(rest, 14 - 3)? + field(rest, 15 - 3)?,
        threads: u32::try_from(field(rest, 20 - 3)?).unwrap_or(u32::MAX),
        start_ticks: field(rest, 22 - 3)?,
        rss_pages: std::str::from_utf8(rest.get(24 - 3)?)
            .ok()?
            .parse::<i64>()
            .ok()?
            .max(0) as u64,
        kernel_thread: flags & PF_KTHREAD != 0,
    })
}

/// `socket:[12345]` → 12345.
pub fn parse_socket_link(target: &[u8]) -> Option<u64> {
    let inner = target.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(inner).ok()?.parse().ok()
}

/// `net:[4026531840]` → 4026531840.
pub fn parse_ns_link(target: &[u8]) -> Option<u64> {
    let start = target.iter().position(|b| *b == b'[')? + 1;
    let inner = target.get(start..target.len().checked_sub(1)?)?;
    std::str::from_utf8(inner).ok()?.parse().ok()
}

fn parse_open_files_limit(buf: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(buf);
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_ascii_whitespace()
        .next()?;
    if soft == "unlimited" {
        Some(u64::MAX)
    } else {
        soft.parse().ok()
    }
}

fn parse_cpu_times(buf: &[u8]) -> Option<CpuTimes> {
    let line = buf.split(|b| *b == b'\n').next()?;
    let mut it = std::str::from_utf8(line).ok()?.split_ascii_whitespace();
    if it.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = it.map(|x| x.parse().unwrap_or(0)).collect();
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    Some(CpuTimes {
        user: get(0),
        nice: get(1),
        system: get(2),
        idle: get(3),
        iowait: get(4),
        irq: get(5),
        softirq: get(6),
        steal: get(7),
    })
}

fn parse_meminfo(buf: &[u8]) -> Option<MemInfo> {
    let text = String::from_utf8_lossy(buf);
    let kb = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        line[name.len()..]
            .trim_start_matches(':')
            .split_ascii_whitespace()
            .next()?
            .parse::<u64>()
            .ok()
    };
    let total = kb("MemTotal")?;
    let available = kb("MemAvailable").or_else(|| {
        Some(kb("MemFree")? + kb("Buffers").unwrap_or(0) + kb("Cached").unwrap_or(0))
    })?;
    Some(MemInfo {
        total: total * 1024,
        available: available * 1024,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &[u8] = b"4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 1234 0 0 0 150 50 0 0 20 0 7 0 98765 123456789 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let s = parse_stat(STAT).expect("parses");
        assert_eq!(s.pid, 4242);
        assert_eq!(s.comm, "my (odd) prog");
        assert_eq!(s.state, b'S');
        assert_eq!(s.ppid, 1);
        assert_eq!(s.cpu_ticks, 200);
        assert_eq!(s.threads, 7);
        assert_eq!(s.start_ticks, 98765);
        assert_eq!(s.rss_pages, 2048);
        assert!(!s.kernel_thread);
        let kthread = b"2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 2 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 0 0 0 0 0 0 0 0 0 0\n";
        assert!(parse_stat(kthread).expect("parses").kernel_thread);
        assert_eq!(parse_stat(b"garbage"), None);
        assert_eq!(parse_stat(b"12 (x) S"), None);
    }

    #[test]
    fn links_and_limits_parse() {
        assert_eq!(parse_socket_link(b"socket:[98765]"), Some(98765));
        assert_eq!(parse_socket_link(b"/dev/null"), None);
        assert_eq!(parse_socket_link(b"pipe:[5]"), None);
        assert_eq!(parse_ns_link(b"net:[4026531840]"), Some(4026531840));
        assert_eq!(parse_schedstat(b"123456789 5000 42\n"), Some(123456789));
        assert_eq!(parse_schedstat(b"0 0 0\n"), Some(0));
        assert_eq!(parse_schedstat(b""), None);
        let limits = b"Limit                     Soft Limit           Hard Limit           Units     \nMax open files            1024                 1048576              files     \n";
        assert_eq!(parse_open_files_limit(limits), Some(1024));
    }

    #[test]
    fn host_counters_parse() {
        let stat = b"cpu  100 2 30 400 5 6 7 8 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        let c = parse_cpu_times(stat).expect("parses");
        assert_eq!((c.user, c.idle, c.steal, c.total()), (100, 400, 8, 558));
        let mem = b"MemTotal:       16384 kB\nMemFree:         1024 kB\nMemAvailable:    8192 kB\n";
        assert_eq!(
            parse_meminfo(mem),
            Some(MemInfo {
                total: 16384 * 1024,
                available: 8192 * 1024
            })
        );
    }

    #[test]
    fn reads_the_real_procfs_for_this_process() {
        let fs = ProcFs::new("/proc");
        let me = std::process::id();
        let mut buf = Vec::new();
        let stat = fs.stat(me, &mut buf).expect("own stat");
        assert_eq!(stat.pid, me);
        assert!(stat.threads >= 1);
        assert!(fs.pids().expect("pids").contains(&me));
        // Listed again through one open directory: a process started in between shows.
        let mut root = fs.open_root().expect("open /proc");
        let mut pids = Vec::new();
        ProcFs::list_pids(&mut root, &mut pids).expect("list");
        assert!(pids.contains(&me));
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("spawn");
        ProcFs::list_pids(&mut root, &mut pids).expect("list again");
        assert!(
            pids.contains(&child.id()),
            "a new process shows at the next listing"
        );
        assert_eq!(pids, fs.pids().expect("pids"));
        let _ = child.kill();
        let _ = child.wait();
        let args = fs.cmdline(me, &mut buf).expect("own cmdline");
        assert!(!args.is_empty());
        let mut fds = Vec::new();
        fs.fds(me, &mut fds).expect("own fds");
        assert!(fds.contains(&0) || fds.contains(&1) || fds.contains(&2));
        assert!(fs.net_namespace(me).expect("ns").is_some());
        assert!(fs.cpu_times(&mut buf).expect("cpu").total() > 0);
        assert!(fs.meminfo(&mut buf).expect("mem").total > 0);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let _ = &listener;
        fs.fds(me, &mut fds).expect("fds");
        let sockets = fds
            .iter()
            .filter_map(|fd| fs.fd_socket_inode(me, *fd).ok().flatten())
            .count();
        assert!(sockets >= 1, "the listener shows up as a socket fd");
        let gone = fs.stat(u32::MAX - 1, &mut buf).expect_err("no such pid");
        assert!(is_gone(&gone));
    }
}
