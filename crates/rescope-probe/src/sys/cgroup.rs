//! Control groups: where a process's CPU and memory accounting lives, for cgroup v1
//! and v2. Container metrics come from here rather than from Docker's stats API, which
//! keeps one streaming connection per container.

use std::path::{Path, PathBuf};

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

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Reads the current usage.
pub fn usage(acct: &Accounting) -> Usage {
    match acct {
        Accounting::Unified(dir) => {
            let cpu = std::fs::read_to_string(dir.join("cpu.stat"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("usage_usec "))
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|us| us * 1000)
                });
            Usage {
                cpu_nanos: cpu,
                memory_bytes: read_u64(&dir.join("memory.current")),
                memory_limit: read_u64(&dir.join("memory.max")),
            }
        }
        Accounting::Split { cpuacct, memory } => {
            // v1 reports "unlimited" as a huge number rounded to the page size.
            let limit = memory
                .as_ref()
                .and_then(|d| read_u64(&d.join("memory.limit_in_bytes")))
                .filter(|l| *l < (1u64 << 62));
            Usage {
                cpu_nanos: cpuacct
                    .as_ref()
                    .and_then(|d| read_u64(&d.join("cpuacct.usage"))),
                memory_bytes: memory
                    .as_ref()
                    .and_then(|d| read_u64(&d.join("memory.usage_in_bytes"))),
                memory_limit: limit,
            }
        }
    }
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
    }
}
