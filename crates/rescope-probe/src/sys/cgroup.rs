//! Control groups: where a process's CPU and memory accounting lives, for cgroup v1
//! and v2. Container metrics come from here rather than from Docker's stats API, which
//! keeps one streaming connection per container.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::proc::reread;

/// A process's accounting files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accounting {
    /// cgroup v2: one directory for every controller.
    Unified(PathBuf),
    /// cgroup v1: separate `cpuacct` and `memory` directories.
    Split {
        cpuacct: Option<PathBuf>,
        memory: Option<PathBuf>,
    },
}

/// CPU time used and memory in use (with its limit) for one cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub cpu_nanos: Option<u64>,
    pub memory_bytes: Option<u64>,
    /// `None` when unlimited.
    pub memory_limit: Option<u64>,
}

/// Finds the accounting directories of `pid` under `cgroup_root` (usually
/// `/sys/fs/cgroup`), reading `<proc_root>/<pid>/cgroup`.
pub fn accounting(proc_root: &Path, cgroup_root: &Path, pid: u32) -> Option<Accounting> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup")).ok()?;
    let mut cpuacct = None;
    let mut memory = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        if id == "0" && controllers.is_empty() {
            let dir = cgroup_root.join(rel);
            if dir.join("cpu.stat").exists() || dir.join("memory.current").exists() {
                return Some(Accounting::Unified(dir));
            }
            continue;
        }
        let names: Vec<&str> = controllers.split(',').collect();
        if names.contains(&"cpuacct") {
            cpuacct = [controllers, "cpuacct", "cpu,cpuacct"]
                .iter()
                .map(|mount| cgroup_root.join(mount).join(rel))
                .find(|d| d.join("cpuacct.usage").exists());
        }
        if names.contains(&"memory") {
            let d = cgroup_root.join("memory").join(rel);
            if d.join("memory.usage_in_bytes").exists() {
                memory = Some(d);
            }
        }
    }
    (cpuacct.is_some() || memory.is_some()).then_some(Accounting::Split { cpuacct, memory })
}

/// A cgroup's accounting files, kept open and re-read from offset 0 each time: no
/// path lookup, open or close per reading (fifty containers read every second made
/// those the larger part of the Docker collector's cost).
#[derive(Debug)]
pub struct UsageReader {
    /// `cpu.stat` (v2, microseconds on its `usage_usec` line) or `cpuacct.usage` (v1,
    /// nanoseconds).
    cpu: Option<File>,
    memory: Option<File>,
    limit: Option<File>,
    unified: bool,
}

impl UsageReader {
    /// Opens the files of `acct` that exist.
    pub fn open(acct: &Accounting) -> Self {
        let open = |dir: &Path, name: &str| File::open(dir.join(name)).ok();
        match acct {
            Accounting::Unified(dir) => UsageReader {
                cpu: open(dir, "cpu.stat"),
                memory: open(dir, "memory.current"),
                limit: open(dir, "memory.max"),
                unified: true,
            },
            Accounting::Split { cpuacct, memory } => UsageReader {
                cpu: cpuacct.as_deref().and_then(|d| open(d, "cpuacct.usage")),
                memory: memory
                    .as_deref()
                    .and_then(|d| open(d, "memory.usage_in_bytes")),
                limit: memory
                    .as_deref()
                    .and_then(|d| open(d, "memory.limit_in_bytes")),
                unified: false,
            },
        }
    }

    /// Reads the current usage (`buf` is scratch space). `None` when no file could be
    /// read: the cgroup is gone.
    pub fn read(&self, buf: &mut Vec<u8>) -> Option<Usage> {
        let mut any = false;
        let mut read = |f: &Option<File>, parse: &dyn Fn(&[u8]) -> Option<u64>| {
            let f = f.as_ref()?;
            reread(f, buf, 256).ok()?;
            any = true;
            parse(buf)
        };
        let cpu_nanos = if self.unified {
            read(&self.cpu, &|b| {
                std::str::from_utf8(b)
                    .ok()?
                    .lines()
                    .find_map(|l| l.strip_prefix("usage_usec "))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(|us| us * 1000)
            })
        } else {
            read(&self.cpu, &parse_u64)
        };
        let memory_bytes = read(&self.memory, &parse_u64);
        // v1 reports "unlimited" as a huge number rounded to the page size; v2 as "max".
        let memory_limit = read(&self.limit, &parse_u64).filter(|l| *l < (1u64 << 62));
        any.then_some(Usage {
            cpu_nanos,
            memory_bytes,
            memory_limit,
        })
    }
}

fn parse_u64(b: &[u8]) -> Option<u64> {
    std::str::from_utf8(b).ok()?.trim().parse().ok()
}

/// Reads the current usage (opening the files; see [`UsageReader`] to keep them open).
pub fn usage(acct: &Accounting) -> Usage {
    UsageReader::open(acct)
        .read(&mut Vec::new())
        .unwrap_or(Usage {
            cpu_nanos: None,
            memory_bytes: None,
            memory_limit: None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_layouts_are_found_in_a_fixture_tree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (proc_root, cg) = (dir.path().join("proc"), dir.path().join("cgroup"));
        let write = |p: PathBuf, s: &str| {
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, s).expect("write");
        };
        // v1 container
        write(
            proc_root.join("10/cgroup"),
            "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n",
        );
        write(
            cg.join("cpu,cpuacct/docker/abc/cpuacct.usage"),
            "5000000000\n",
        );
        write(
            cg.join("memory/docker/abc/memory.usage_in_bytes"),
            "1048576\n",
        );
        write(
            cg.join("memory/docker/abc/memory.limit_in_bytes"),
            "9223372036854771712\n",
        );
        let acct = accounting(&proc_root, &cg, 10).expect("found");
        assert_eq!(
            usage(&acct),
            Usage {
                cpu_nanos: Some(5_000_000_000),
                memory_bytes: Some(1_048_576),
                memory_limit: None
            }
        );
        // v2 container
        write(
            proc_root.join("11/cgroup"),
            "0::/system.slice/docker-def.scope\n",
        );
        write(
            cg.join("system.slice/docker-def.scope/cpu.stat"),
            "usage_usec 2500\nuser_usec 2000\n",
        );
        write(
            cg.join("system.slice/docker-def.scope/memory.current"),
            "4096\n",
        );
        write(cg.join("system.slice/docker-def.scope/memory.max"), "max\n");
        let acct = accounting(&proc_root, &cg, 11).expect("found");
        assert_eq!(
            usage(&acct),
            Usage {
                cpu_nanos: Some(2_500_000),
                memory_bytes: Some(4096),
                memory_limit: None
            }
        );
        assert_eq!(accounting(&proc_root, &cg, 12), None);

        // Kept open, the files are read again as they change, until they go.
        let reader = UsageReader::open(&acct);
        let mut buf = Vec::new();
        write(
            cg.join("system.slice/docker-def.scope/memory.current"),
            "8192\n",
        );
        write(
            cg.join("system.slice/docker-def.scope/cpu.stat"),
            "usage_usec 3000\n",
        );
        let now = reader.read(&mut buf).expect("readable");
        assert_eq!(
            (now.cpu_nanos, now.memory_bytes),
            (Some(3_000_000), Some(8192))
        );
        std::fs::remove_dir_all(cg.join("system.slice")).expect("rm");
        let reader = UsageReader::open(&acct);
        assert_eq!(reader.read(&mut buf), None, "a cgroup that is gone");
    }

    #[test]
    fn this_process_cgroup_is_read_through_open_files() {
        // The real cgroup file system: re-reading an open file gives fresh values.
        let pid = std::process::id();
        let Some(acct) = accounting(Path::new("/proc"), Path::new("/sys/fs/cgroup"), pid) else {
            return; // no cgroup accounting visible here
        };
        let reader = UsageReader::open(&acct);
        let mut buf = Vec::new();
        let first = reader.read(&mut buf).expect("readable");
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(50) {
            std::hint::black_box(spin.elapsed());
        }
        let second = reader.read(&mut buf).expect("readable");
        if let (Some(a), Some(b)) = (first.cpu_nanos, second.cpu_nanos) {
            assert!(b > a, "CPU time moved: {a} → {b}");
        }
    }
}
