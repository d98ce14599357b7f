//! One pass over `/proc` per spy tick, shared by the process and endpoint reporters.
//!
//! Scope's probe spent most of its time re-reading every process's file descriptors
//! each second. The walker keeps what it learned per process (keyed by pid and start
//! time, so a reused pid is a new process) and only re-reads what can have changed:
//!
//! - `stat` every tick (CPU, memory, threads), except for single-threaded processes
//!   that have not run since it was last read (see below);
//! - command line, open-files limit, uid and network namespace once per process;
//! - the fd directory of each process every [`FD_LIST_PERIOD`] ticks, staggered by
//!   pid, and at once for new processes; only fd numbers not seen before are
//!   `readlink`ed to find new sockets. A single-threaded process that has not run
//!   since its last listing cannot have opened or closed anything, so it is listed
//!   again only after [`FD_RELINK_PERIOD`] ticks;
//! - on demand, [`ProcessWalker::resolve_sockets`] looks for the owners of sockets the
//!   kernel reported but the walker has not attributed yet, searching only processes
//!   of the socket's user.
//!
//! Whether a process ran comes from `/proc/<pid>/schedstat`, whose first field is the
//! main thread's run time in nanoseconds: far cheaper for the kernel to produce than
//! `stat`, and exact. It speaks for the whole process only when the process has one
//! thread, so multi-threaded processes are read in full every tick. An idle process's
//! CPU use is exactly 0; its thread count, state and parent cannot change without it
//! running, except that its parent may exit (then it is read again at once) and its
//! memory may be reclaimed (so `stat` is read at least every [`STAT_REFRESH_TICKS`]).
//!
//! Most processes of a busy host sleep for minutes, and reading every one's
//! `schedstat` every tick was the largest part of the walk. A single-threaded process
//! found idle [`IDLE_CHECKS_BEFORE_STAGGER`] times in a row is checked only every
//! [`SCHEDSTAT_PERIOD`] ticks, staggered by pid. The trade-off: when such a process
//! wakes up, it shows 0 % CPU for up to `SCHEDSTAT_PERIOD - 1` ticks, then the CPU it
//! used since its last check, averaged over the time since that check (so a short
//! burst shows smaller and longer than it was, never lost); from then on it is read
//! every tick until it has been idle a while again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::PathBuf;
use std::time::Instant;

use rescope_report::{GoTime, Str};

use crate::sys::proc::{ProcFs, Stat, is_gone};

/// How often (in ticks) each process's fd directory is listed.
pub const FD_LIST_PERIOD: u64 = 5;
/// How often (in ticks) every fd of a process is `readlink`ed again, catching fd
/// numbers reused for a different socket. A socket the walker does not know is
/// searched for when the endpoint reporter asks ([`ProcessWalker::resolve_sockets`],
/// which reads every fd again of the processes that ran), so this is a safety net:
/// for a process holding 20,000 sockets, once a minute was 5–10 % of the probe's
/// CPU.
pub const FD_RELINK_PERIOD: u64 = 300;
/// The longest a single-threaded idle process goes without its `stat` being read.
pub const STAT_REFRESH_TICKS: u64 = 10;
/// A single-threaded process found idle this many times in a row has its run time
/// checked only every [`SCHEDSTAT_PERIOD`] ticks, staggered by pid.
pub const IDLE_CHECKS_BEFORE_STAGGER: u32 = 5;
/// How often (in ticks) a long-idle process's run time is checked.
pub const SCHEDSTAT_PERIOD: u64 = 3;

/// What the probe knows about one process at one tick.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessInfo {
    pub pid: u32,
    pub ppid: u32,
    /// argv\[0\] (or `[comm]` for processes without a command line, as Scope shows
    /// kernel threads and zombies).
    pub name: Str,
    /// The command line joined with spaces; argv\[0\] only when arguments are omitted.
    pub cmdline: Str,
    pub threads: u32,
    /// CPU use since the previous tick, in percent of one core; `None` the first time
    /// a process is seen.
    pub cpu_percent: Option<f64>,
    pub rss_bytes: u64,
    /// Open file descriptors when the fd directory was last listed.
    pub open_files: usize,
    pub open_files_limit: Option<u64>,
    pub uid: Option<u32>,
    /// Inode of the process's network namespace.
    pub netns: Option<u64>,
    pub kernel_thread: bool,
    pub state: u8,
}

/// The processes of one tick and the sockets they own.
#[derive(Debug, Clone, Default)]
pub struct ProcSnapshot {
    pub taken: GoTime,
    pub processes: BTreeMap<u32, ProcessInfo>,
    /// Socket inode → owning pid.
    pub socket_owners: HashMap<u64, u32>,
    /// Network namespace inode → one pid inside it (to enter the namespace).
    pub namespaces: BTreeMap<u64, u32>,
    /// The namespace of pid 1 (the host's).
    pub host_netns: Option<u64>,
}

#[derive(Debug)]
struct Known {
    start_ticks: u64,
    info: ProcessInfo,
    cpu_ticks: u64,
    /// fd number → socket inode (0 for fds that are not sockets).
    fds: HashMap<u32, u64>,
    last_relink: u64,
    /// `/proc/<pid>/stat`, kept open while file descriptors allow.
    stat_file: Option<std::fs::File>,
    /// `/proc/<pid>/schedstat`, kept open with the stat file.
    schedstat_file: Option<std::fs::File>,
    /// The main thread's run time (ns) when `stat` was last read; 0 when unknown.
    runtime_at_stat: u64,
    stat_tick: u64,
    /// The start of the walk that last read `stat` or found the process idle: its CPU
    /// use is known up to then.
    seen_at: Option<Instant>,
    /// How many run-time checks in a row found the process idle.
    idle_checks: u32,
    /// The main thread's run time when the fds were last listed; 0 when unknown.
    runtime_at_fds: u64,
    fds_tick: u64,
    /// The main thread's run time when every fd was last `readlink`ed; 0 when unknown.
    runtime_at_relink: u64,
}

impl Known {
    fn open_files(&self) -> usize {
        usize::from(self.stat_file.is_some()) + usize::from(self.schedstat_file.is_some())
    }

    /// Whether the fds are worth listing at this process's turn: not for kernel
    /// threads, nor for a single-threaded process that has not run since the last
    /// listing (unless that was [`FD_RELINK_PERIOD`] ticks ago: a process sharing its
    /// fd table with another can see it change without running).
    fn fds_due(&self, tick: u64, runtime: Option<u64>) -> bool {
        let idle = runtime.is_some_and(|ns| ns == self.runtime_at_fds)
            && tick.saturating_sub(self.fds_tick) < FD_RELINK_PERIOD;
        !self.info.kernel_thread && !idle
    }

    /// Whether the process may have changed its fd table since every fd was last
    /// `readlink`ed: as [`Known::fds_due`], against the last full relink.
    fn relink_due(&self, tick: u64, runtime: Option<u64>) -> bool {
        let idle = runtime.is_some_and(|ns| ns == self.runtime_at_relink)
            && tick.saturating_sub(self.last_relink) < FD_RELINK_PERIOD;
        !self.info.kernel_thread && !idle
    }
}

/// How many stat files the walker may keep open: a quarter of the soft limit on open
/// files, after raising it towards the hard limit (at most 65,536).
fn stat_file_budget() -> usize {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 0;
    };
    let wanted = hard.min(65_536);
    let soft = if wanted > soft && setrlimit(Resource::RLIMIT_NOFILE, wanted, hard).is_ok() {
        wanted
    } else {
        soft
    };
    usize::try_from(soft / 4).unwrap_or(0)
}

/// Walks `/proc`, remembering what it learned between ticks.
#[derive(Debug)]
pub struct ProcessWalker {
    fs: ProcFs,
    omit_cmd_args: bool,
    known: HashMap<u32, Known>,
    tick: u64,
    last_walk: Option<Instant>,
    clk_tck: f64,
    page_size: u64,
    buf: Vec<u8>,
    fd_buf: Vec<u32>,
    host_netns: Option<u64>,
    /// How many `/proc/<pid>/stat` and `schedstat` files may stay open between ticks.
    max_open_stats: usize,
    /// `stat` reads saved because the process had not run.
    stats_skipped: u64,
    /// `schedstat` reads saved because the process had long been idle.
    schedstats_skipped: u64,
    /// The proc root, kept open and listed again each tick.
    root_dir: Option<nix::dir::Dir>,
    pids: Vec<u32>,
}

fn clk_tck() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|v| *v > 0)
        .map_or(100.0, |v| v as f64)
}

fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .filter(|v| *v > 0)
        .map_or(4096, |v| v as u64)
}

impl ProcessWalker {
    pub fn new(proc_root: impl Into<PathBuf>, omit_cmd_args: bool) -> Self {
        ProcessWalker {
            fs: ProcFs::new(proc_root),
            omit_cmd_args,
            known: HashMap::new(),
            tick: 0,
            last_walk: None,
            clk_tck: clk_tck(),
            page_size: page_size(),
            buf: Vec::with_capacity(4096),
            fd_buf: Vec::with_capacity(256),
            host_netns: None,
            max_open_stats: stat_file_budget(),
            stats_skipped: 0,
            schedstats_skipped: 0,
            root_dir: None,
            pids: Vec::with_capacity(512),
        }
    }

    /// The pids in the proc root, listed through the directory kept open (opened again
    /// when that fails).
    fn list_pids(&mut self) -> io::Result<Vec<u32>> {
        let mut pids = std::mem::take(&mut self.pids);
        if let Some(dir) = self.root_dir.as_mut()
            && ProcFs::list_pids(dir, &mut pids).is_ok()
        {
            return Ok(pids);
        }
        let mut dir = self.fs.open_root()?;
        ProcFs::list_pids(&mut dir, &mut pids)?;
        self.root_dir = Some(dir);
        Ok(pids)
    }

    /// How many `stat` reads were saved because a process had not run since the last.
    pub fn stats_skipped(&self) -> u64 {
        self.stats_skipped
    }

    /// How many `schedstat` reads were saved because a process had long been idle.
    pub fn schedstats_skipped(&self) -> u64 {
        self.schedstats_skipped
    }

    pub fn procfs(&self) -> &ProcFs {
        &self.fs
    }

    /// Walks every process. Fails only when the proc root itself cannot be read.
    pub fn walk(&mut self, now: GoTime) -> io::Result<ProcSnapshot> {
        let pids = self.list_pids()?;
        let walk_start = Instant::now();
        let elapsed = self.last_walk.map(|t| (walk_start - t).as_secs_f64());
        self.last_walk = Some(walk_start);
        self.tick += 1;
        if self.host_netns.is_none() {
            self.host_netns = self.fs.net_namespace(1).ok().flatten();
        }
        let alive: HashSet<u32> = pids.iter().copied().collect();
        self.known.retain(|pid, _| alive.contains(pid));
        let mut open_stats: usize = self.known.values().map(Known::open_files).sum();
        let tick = self.tick;
        for &pid in &pids {
            let list_fds = (u64::from(pid) + tick).is_multiple_of(FD_LIST_PERIOD);
            // A single-threaded process that has not run since its stat was read.
            let mut runtime = None;
            if let Some(k) = self.known.get_mut(&pid) {
                let parent_alive = k.info.ppid == 0 || alive.contains(&k.info.ppid);
                let stat_fresh = tick - k.stat_tick < STAT_REFRESH_TICKS;
                // Idle for a while: its run time is checked only at its turn. Until
                // then it counts as idle still (CPU 0); a wake-up shows at the next
                // check, with the CPU used since the last one.
                if k.idle_checks >= IDLE_CHECKS_BEFORE_STAGGER
                    && !(u64::from(pid) + tick).is_multiple_of(SCHEDSTAT_PERIOD)
                    && k.info.threads == 1
                    && k.runtime_at_stat > 0
                    && stat_fresh
                    && parent_alive
                {
                    self.stats_skipped += 1;
                    self.schedstats_skipped += 1;
                    k.info.cpu_percent = elapsed.filter(|e| *e > 0.0).map(|_| 0.0);
                    let runtime = Some(k.runtime_at_stat);
                    if list_fds && k.fds_due(tick, runtime) {
                        Self::list_fds(&self.fs, tick, pid, k, &mut self.fd_buf, runtime);
                    }
                    continue;
                }
                runtime = k
                    .schedstat_file
                    .as_ref()
                    .filter(|_| k.info.threads == 1)
                    .and_then(|f| ProcFs::reread_schedstat(f, &mut self.buf).ok())
                    .filter(|ns| *ns > 0); // 0: the kernel keeps no schedstats
                if runtime == Some(k.runtime_at_stat) && stat_fresh && parent_alive {
                    self.stats_skipped += 1;
                    k.idle_checks = k.idle_checks.saturating_add(1);
                    k.seen_at = Some(walk_start);
                    k.info.cpu_percent = elapsed.filter(|e| *e > 0.0).map(|_| 0.0);
                    if list_fds && k.fds_due(tick, runtime) {
                        Self::list_fds(&self.fs, tick, pid, k, &mut self.fd_buf, runtime);
                    }
                    continue;
                }
            }
            let reread = self
                .known
                .get(&pid)
                .and_then(|k| k.stat_file.as_ref())
                .map(|f| ProcFs::reread_stat(f, &mut self.buf));
            let stat = match reread {
                Some(Ok(stat)) => Ok(stat),
                // Exited, or the pid was reused: look again by path.
                _ => self.fs.stat(pid, &mut self.buf),
            };
            let stat = match stat {
                Ok(s) => s,
                Err(e) if is_gone(&e) => {
                    self.known.remove(&pid);
                    continue;
                }
                Err(_) => continue, // unreadable (permissions, races): skip this tick
            };
            let fresh = self
                .known
                .get(&pid)
                .is_none_or(|k| k.start_ticks != stat.start_ticks);
            if fresh {
                if let Some(mut k) = self.first_sight(&stat) {
                    if open_stats + 2 <= self.max_open_stats {
                        k.stat_file = self.fs.open_stat(pid).ok();
                        k.schedstat_file = self.fs.open_schedstat(pid).ok();
                        open_stats += k.open_files();
                    }
                    self.known.insert(pid, k);
                }
                continue;
            }
            let (clk, page) = (self.clk_tck, self.page_size);
            let Some(k) = self.known.get_mut(&pid) else {
                continue;
            };
            if runtime != Some(k.runtime_at_stat) {
                k.idle_checks = 0;
            }
            k.runtime_at_stat = runtime.unwrap_or(0);
            k.stat_tick = tick;
            let delta = stat.cpu_ticks.saturating_sub(k.cpu_ticks);
            k.cpu_ticks = stat.cpu_ticks;
            // Over the time since its CPU use was last known (the last walk, unless
            // its run time was not checked at every walk).
            let since = k.seen_at.map(|t| (walk_start - t).as_secs_f64());
            k.seen_at = Some(walk_start);
            k.info.cpu_percent = since
                .or(elapsed)
                .filter(|e| *e > 0.0)
                .map(|e| delta as f64 / clk / e * 100.0);
            k.info.ppid = stat.ppid;
            k.info.threads = stat.threads;
            k.info.rss_bytes = stat.rss_pages * page;
            k.info.state = stat.state;
            if list_fds && k.fds_due(tick, runtime) {
                Self::list_fds(&self.fs, tick, pid, k, &mut self.fd_buf, runtime);
            }
        }
        self.pids = pids;
        Ok(self.snapshot(now))
    }

    /// The periodic fd listing: new fds are `readlink`ed, and every fd once in
    /// [`FD_RELINK_PERIOD`] ticks. `runtime` is the run time read before listing.
    fn list_fds(
        fs: &ProcFs,
        tick: u64,
        pid: u32,
        k: &mut Known,
        fd_buf: &mut Vec<u32>,
        runtime: Option<u64>,
    ) {
        let relink = tick.saturating_sub(k.last_relink) >= FD_RELINK_PERIOD;
        if relink {
            k.last_relink = tick;
            k.runtime_at_relink = runtime.unwrap_or(0);
        }
        Self::refresh_fds(fs, pid, k, fd_buf, relink);
        k.runtime_at_fds = runtime.unwrap_or(0);
        k.fds_tick = tick;
    }

    fn first_sight(&mut self, stat: &Stat) -> Option<Known> {
        let pid = stat.pid;
        let args = match self.fs.cmdline(pid, &mut self.buf) {
            Ok(a) => a,
            Err(e) if is_gone(&e) => return None,
            Err(_) => Vec::new(),
        };
        let (name, cmdline) = if args.is_empty() {
            let bracketed = format!("[{}]", stat.comm);
            (bracketed.clone(), bracketed)
        } else if self.omit_cmd_args {
            (args[0].clone(), args[0].clone())
        } else {
            (args[0].clone(), args.join(" "))
        };
        let open_files_limit = self.fs.open_files_limit(pid, &mut self.buf).ok().flatten();
        let uid = read_uid(&self.fs, pid, &mut self.buf);
        let netns = self.fs.net_namespace(pid).ok().flatten();
        let mut known = Known {
            start_ticks: stat.start_ticks,
            cpu_ticks: stat.cpu_ticks,
            fds: HashMap::new(),
            last_relink: self.tick,
            stat_file: None,
            schedstat_file: None,
            runtime_at_stat: 0,
            stat_tick: self.tick,
            seen_at: self.last_walk,
            idle_checks: 0,
            runtime_at_fds: 0,
            fds_tick: self.tick,
            runtime_at_relink: 0,
            info: ProcessInfo {
                pid,
                ppid: stat.ppid,
                name: Str::from(name),
                cmdline: Str::from(cmdline),
                threads: stat.threads,
                cpu_percent: None,
                rss_bytes: stat.rss_pages * self.page_size,
                open_files: 0,
                open_files_limit,
                uid,
                netns,
                kernel_thread: stat.kernel_thread,
                state: stat.state,
            },
        };
        if !stat.kernel_thread {
            Self::refresh_fds(&self.fs, pid, &mut known, &mut self.fd_buf, true);
        }
        Some(known)
    }

    /// Lists a process's fds; `readlink`s the new ones (or all with `relink`).
    fn refresh_fds(fs: &ProcFs, pid: u32, k: &mut Known, fd_buf: &mut Vec<u32>, relink: bool) {
        if fs.fds(pid, fd_buf).is_err() {
            return; // gone, or not ours to read
        }
        k.info.open_files = fd_buf.len();
        let mut next = HashMap::with_capacity(fd_buf.len());
        for fd in fd_buf.iter().copied() {
            let known_inode = if relink {
                None
            } else {
                k.fds.get(&fd).copied()
            };
            let inode = match known_inode {
                Some(i) => i,
                None => fs.fd_socket_inode(pid, fd).ok().flatten().unwrap_or(0),
            };
            next.insert(fd, inode);
        }
        k.fds = next;
    }

    fn snapshot(&self, now: GoTime) -> ProcSnapshot {
        let mut snap = ProcSnapshot {
            taken: now,
            host_netns: self.host_netns,
            ..ProcSnapshot::default()
        };
        for (pid, k) in &self.known {
            snap.processes.insert(*pid, k.info.clone());
            for inode in k.fds.values().copied().filter(|i| *i != 0) {
                snap.socket_owners.entry(inode).or_insert(*pid);
            }
            if let Some(ns) = k.info.netns {
                snap.namespaces.entry(ns).or_insert(*pid);
            }
        }
        snap
    }

    /// Finds the owners of sockets the walker has not attributed yet. `wanted` holds
    /// (inode, uid of the socket) pairs; only processes of that uid are searched, first
    /// for fds not seen before, then, if needed, by re-reading all their fds. A
    /// single-threaded process that has not run since its fds were last listed (or
    /// all `readlink`ed) cannot have opened a socket since, so it is not searched again
    /// (see [`Known::fds_due`], [`Known::relink_due`]): on a
    /// host where a few idle processes hold thousands of sockets, listing and
    /// `readlink`ing them for every socket that closed before it could be attributed
    /// was a quarter of the probe's CPU. Returns the owners found; the next snapshot
    /// also includes them.
    pub fn resolve_sockets(&mut self, wanted: &[(u64, u32)]) -> HashMap<u64, u32> {
        let mut found = HashMap::new();
        if wanted.is_empty() {
            return found;
        }
        let tick = self.tick;
        let uids: HashSet<u32> = wanted.iter().map(|(_, uid)| *uid).collect();
        let mut missing: HashSet<u64> = wanted.iter().map(|(i, _)| *i).collect();
        let mut candidates: Vec<(u32, Option<u64>)> = Vec::new();
        // A running task's run time in `schedstat` moves only at a scheduler tick or a
        // context switch, so this process, reading its own while it runs, can see the
        // same run time before and after opening a socket: never taken as idle.
        let me = std::process::id();
        for (pid, k) in &self.known {
            if k.info.kernel_thread || k.info.uid.is_some_and(|u| !uids.contains(&u)) {
                continue;
            }
            let runtime = k
                .schedstat_file
                .as_ref()
                .filter(|_| k.info.threads == 1 && *pid != me)
                .and_then(|f| ProcFs::reread_schedstat(f, &mut self.buf).ok())
                .filter(|ns| *ns > 0);
            if k.relink_due(tick, runtime) {
                candidates.push((*pid, runtime));
            }
        }
        candidates.sort_unstable();
        for relink in [false, true] {
            for (pid, runtime) in &candidates {
                if missing.is_empty() {
                    return found;
                }
                let Some(k) = self.known.get_mut(pid) else {
                    continue;
                };
                if !relink && !k.fds_due(tick, *runtime) {
                    continue; // listed since it last ran: only a relink can tell more
                }
                Self::refresh_fds(&self.fs, *pid, k, &mut self.fd_buf, relink);
                if relink {
                    k.last_relink = tick;
                    k.runtime_at_relink = runtime.unwrap_or(0);
                }
                k.runtime_at_fds = runtime.unwrap_or(0);
                k.fds_tick = tick;
                for inode in k.fds.values() {
                    if missing.remove(inode) {
                        found.insert(*inode, *pid);
                    }
                }
            }
        }
        found
    }
}

fn read_uid(fs: &ProcFs, pid: u32, buf: &mut Vec<u8>) -> Option<u32> {
    let path = fs.root().join(pid.to_string()).join("status");
    ProcFs::read_into(&path, buf).ok()?;
    let text = std::str::from_utf8(buf).ok()?;
    let line = text.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_ascii_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes files of a made-up `/proc` under `root`, making their directories.
    fn file_writer(root: &std::path::Path) -> impl Fn(&str, &str) + '_ {
        move |rel, content| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, content).expect("write");
        }
    }

    #[test]
    fn sees_this_process_and_a_socket_it_opens() {
        let mut w = ProcessWalker::new("/proc", false);
        let me = std::process::id();
        let snap = w.walk(GoTime::now()).expect("walk");
        let info = &snap.processes[&me];
        assert_eq!(info.pid, me);
        assert!(info.cpu_percent.is_none(), "no rate on first sight");
        assert!(info.open_files >= 3);
        assert!(info.netns.is_some());

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let inode = socket_inode_of(&listener);
        // A socket opened after the walker last listed our fds is found on demand.
        let uid = nix::unistd::getuid().as_raw();
        let found = w.resolve_sockets(&[(inode, uid)]);
        assert_eq!(found.get(&inode), Some(&me));
        let snap = w.walk(GoTime::now()).expect("walk");
        assert_eq!(snap.socket_owners.get(&inode), Some(&me));
        assert!(snap.processes[&me].cpu_percent.is_some());
    }

    fn socket_inode_of(listener: &std::net::TcpListener) -> u64 {
        use std::os::fd::AsRawFd;
        let link =
            std::fs::read_link(format!("/proc/self/fd/{}", listener.as_raw_fd())).expect("fd link");
        crate::sys::proc::parse_socket_link(link.as_os_str().as_encoded_bytes()).expect("socket")
    }

    #[test]
    fn a_fixture_tree_with_vanishing_and_odd_processes_is_walked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let write = file_writer(root);
        write(
            "10/stat",
            "10 (web server) S 1 10 10 0 -1 4194560 0 0 0 0 300 100 0 0 20 0 4 0 500 0 256 0\n",
        );
        write("10/cmdline", "/usr/bin/web\0--port\08080\0");
        write("10/status", "Name:\tweb\nUid:\t1000\t1000\t1000\t1000\n");
        std::fs::create_dir_all(root.join("10/fd")).expect("fd dir");
        write(
            "11/stat",
            "11 (zombie) Z 10 10 10 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 600 0 0 0\n",
        );
        write("11/cmdline", "");
        // A pid directory without a stat file: the process vanished mid-scan.
        std::fs::create_dir_all(root.join("12")).expect("mkdir");
        write("notapid/stat", "junk");

        let mut w = ProcessWalker::new(root, true);
        let snap = w.walk(GoTime::now()).expect("walk");
        assert_eq!(snap.processes.keys().copied().collect::<Vec<_>>(), [10, 11]);
        let web = &snap.processes[&10];
        assert_eq!(web.name.as_str(), "/usr/bin/web");
        assert_eq!(web.cmdline.as_str(), "/usr/bin/web", "arguments omitted");
        assert_eq!(web.threads, 4);
        assert_eq!(web.uid, Some(1000));
        assert_eq!(snap.processes[&11].name.as_str(), "[zombie]");

        // CPU between two walks: 1 second of CPU over the elapsed wall time.
        write(
            "10/stat",
            "10 (web server) S 1 10 10 0 -1 4194560 0 0 0 0 350 150 0 0 20 0 4 0 500 0 256 0\n",
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
        let snap = w.walk(GoTime::now()).expect("walk");
        let cpu = snap.processes[&10].cpu_percent.expect("rate");
        assert!(
            cpu > 100.0,
            "100 ticks in ~50 ms is well over one core: {cpu}"
        );

        // pid 10 restarts (new start time): a new process, no rate yet.
        write(
            "10/stat",
            "10 (web server) S 1 10 10 0 -1 4194560 0 0 0 0 1 0 0 0 20 0 1 0 9999 0 256 0\n",
        );
        let snap = w.walk(GoTime::now()).expect("walk");
        assert_eq!(snap.processes[&10].cpu_percent, None);

        std::fs::remove_dir_all(root.join("11")).expect("rm");
        let snap = w.walk(GoTime::now()).expect("walk");
        assert!(!snap.processes.contains_key(&11));
    }

    #[test]
    fn an_idle_single_threaded_process_is_read_again_only_when_it_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let write = file_writer(root);
        let stat = |ppid: u32, utime: u32| {
            format!(
                "20 (idle) S {ppid} 20 20 0 -1 4194560 0 0 0 0 {utime} 0 0 0 20 0 1 0 700 0 50 0\n"
            )
        };
        write(
            "1/stat",
            "1 (init) S 0 1 1 0 -1 4194560 0 0 0 0 1 1 0 0 20 0 3 0 100 0 90 0\n",
        );
        write("20/stat", &stat(1, 100));
        write("20/schedstat", "1000000000 0 5\n");
        write("20/cmdline", "idle\0");
        std::fs::create_dir_all(root.join("20/fd")).expect("fd dir");

        let mut w = ProcessWalker::new(root, false);
        w.walk(GoTime::now()).expect("first sight");
        w.walk(GoTime::now()).expect("stat read, run time noted");
        assert_eq!(w.stats_skipped(), 0);

        // The stat file says it ran, but its run time did not move: not read.
        write("20/stat", &stat(1, 150));
        std::thread::sleep(std::time::Duration::from_millis(20));
        let snap = w.walk(GoTime::now()).expect("walk");
        assert_eq!(w.stats_skipped(), 1);
        assert_eq!(snap.processes[&20].cpu_percent, Some(0.0));

        // It ran: read, and all the CPU since the last read shows.
        write("20/schedstat", "1500000000 0 9\n");
        std::thread::sleep(std::time::Duration::from_millis(20));
        let snap = w.walk(GoTime::now()).expect("walk");
        assert_eq!(w.stats_skipped(), 1);
        let cpu = snap.processes[&20].cpu_percent.expect("rate");
        assert!(cpu > 100.0, "50 ticks in ~20 ms: {cpu}");

        // Idle again, but its parent exited: read at once for the new parent.
        std::fs::remove_dir_all(root.join("1")).expect("rm");
        write(
            "7/stat",
            "7 (reaper) S 0 7 7 0 -1 4194560 0 0 0 0 1 1 0 0 20 0 3 0 600 0 90 0\n",
        );
        write("20/stat", &stat(7, 150));
        let snap = w.walk(GoTime::now()).expect("walk");
        assert_eq!(snap.processes[&20].ppid, 7);

        // Idle for longer than the refresh period: read anyway (memory may change).
        let before = w.stats_skipped();
        for _ in 0..STAT_REFRESH_TICKS {
            w.walk(GoTime::now()).expect("walk");
        }
        assert_eq!(w.stats_skipped() - before, STAT_REFRESH_TICKS - 1);
    }

    #[test]
    fn sockets_are_searched_again_only_in_processes_that_ran_since_their_fds_were_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let write = file_writer(root);
        let link = |fd: u32, inode: u64| {
            let p = root.join(format!("30/fd/{fd}"));
            let _ = std::fs::remove_file(&p);
            std::os::unix::fs::symlink(format!("socket:[{inode}]"), p).expect("symlink");
        };
        write(
            "30/stat",
            "30 (holder) S 1 30 30 0 -1 4194560 0 0 0 0 100 0 0 0 20 0 1 0 700 0 50 0\n",
        );
        write("30/schedstat", "1000000000 0 5\n");
        write("30/cmdline", "holder\0");
        write("30/status", "Name:\tholder\nUid:\t1000\t1000\t1000\t1000\n");
        std::fs::create_dir_all(root.join("30/fd")).expect("fd dir");
        link(3, 100);
        let mut w = ProcessWalker::new(root, false);
        let snap = w.walk(GoTime::now()).expect("first sight");
        assert_eq!(snap.socket_owners.get(&100), Some(&30));

        // Its run time is not known from the first listing: searched, and found.
        link(4, 200);
        assert_eq!(w.resolve_sockets(&[(200, 1000)]).get(&200), Some(&30));
        // A socket that is nowhere: every fd is read again, at the run time now known.
        assert!(w.resolve_sockets(&[(999, 1000)]).is_empty());

        // It has not run since: no new socket can be there, so it is not searched.
        link(5, 300);
        assert!(w.resolve_sockets(&[(300, 1000)]).is_empty());

        // It ran, and reused fd 4 for another socket: found by reading every fd again.
        link(4, 400);
        write("30/schedstat", "1500000000 0 9\n");
        let found = w.resolve_sockets(&[(300, 1000), (400, 1000)]);
        assert_eq!(found.get(&300), Some(&30));
        assert_eq!(found.get(&400), Some(&30));

        // It ran and reused fd 4 again, and the periodic listing (which reads only new fd
        // numbers) came before the search: still searched, since not every fd was read
        // after it ran.
        link(4, 500);
        write("30/schedstat", "2000000000 0 12\n");
        for _ in 0..FD_LIST_PERIOD {
            w.walk(GoTime::now()).expect("walk");
        }
        assert_eq!(w.resolve_sockets(&[(500, 1000)]).get(&500), Some(&30));

        // A socket of another user is not searched for in this process.
        link(6, 600);
        write("30/schedstat", "2500000000 0 15\n");
        assert!(w.resolve_sockets(&[(600, 0)]).is_empty());
    }

    #[test]
    fn a_long_idle_process_is_checked_at_its_turn_and_its_cpu_shows_then() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let write = file_writer(root);
        let stat = |utime: u32| {
            format!(
                "21 (sleepy) S 1 21 21 0 -1 4194560 0 0 0 0 {utime} 0 0 0 20 0 1 0 700 0 50 0\n"
            )
        };
        write(
            "1/stat",
            "1 (init) S 0 1 1 0 -1 4194560 0 0 0 0 1 1 0 0 20 0 3 0 100 0 90 0\n",
        );
        write("21/stat", &stat(100));
        write("21/schedstat", "1000000000 0 5\n");
        write("21/cmdline", "sleepy\0");
        std::fs::create_dir_all(root.join("21/fd")).expect("fd dir");
        let mut w = ProcessWalker::new(root, false);
        w.walk(GoTime::now()).expect("first sight");
        w.walk(GoTime::now()).expect("stat read, run time noted");
        for _ in 0..IDLE_CHECKS_BEFORE_STAGGER {
            w.walk(GoTime::now()).expect("idle");
        }
        assert_eq!(
            w.schedstats_skipped(),
            0,
            "checked every tick until idle a while"
        );

        // Long idle: checked once in SCHEDSTAT_PERIOD ticks.
        let before = w.schedstats_skipped();
        for _ in 0..SCHEDSTAT_PERIOD {
            let snap = w.walk(GoTime::now()).expect("walk");
            assert_eq!(snap.processes[&21].cpu_percent, Some(0.0));
        }
        assert_eq!(w.schedstats_skipped() - before, SCHEDSTAT_PERIOD - 1);

        // Walk up to a tick where its run time is checked.
        let checked_at = loop {
            let at = std::time::Instant::now();
            let skipped = w.schedstats_skipped();
            w.walk(GoTime::now()).expect("walk");
            if w.schedstats_skipped() == skipped {
                break at;
            }
        };
        // It wakes and uses 0.5 s of CPU: unseen until its next check...
        write("21/schedstat", "1500000000 0 9\n");
        write("21/stat", &stat(150));
        let gap = std::time::Duration::from_millis(30);
        for _ in 1..SCHEDSTAT_PERIOD {
            std::thread::sleep(gap);
            let snap = w.walk(GoTime::now()).expect("walk");
            assert_eq!(snap.processes[&21].cpu_percent, Some(0.0));
        }
        // ... then shown as that CPU over the time since the last check, not as if
        // it had all been used in the last tick.
        std::thread::sleep(gap);
        let snap = w.walk(GoTime::now()).expect("walk");
        let window = checked_at.elapsed().as_secs_f64();
        let cpu = snap.processes[&21].cpu_percent.expect("rate");
        let used = 50.0 / clk_tck();
        let over_window = used / window * 100.0;
        let over_periods = used / (gap.as_secs_f64() * SCHEDSTAT_PERIOD as f64) * 100.0;
        assert!(
            cpu >= over_window && cpu <= over_periods * 1.001,
            "{over_window} <= {cpu} <= {over_periods}"
        );
        // Awake: checked every tick again.
        let before = w.schedstats_skipped();
        for _ in 0..SCHEDSTAT_PERIOD {
            w.walk(GoTime::now()).expect("walk");
        }
        assert_eq!(w.schedstats_skipped(), before);
    }
}
