//! The kernel side: loads the BPF object, attaches its programs to the syscall exit
//! tracepoints, and reads and prunes its counter maps. Everything that touches BPF
//! goes through here.

use std::collections::HashMap as StdHashMap;
use std::path::Path;

use aya::maps::{HashMap, MapData};
use aya::programs::TracePoint;
use aya::{Ebpf, EbpfLoader};
use tracing::{debug, info};

use crate::counters::{ProcCounters, RawProcStats, Snapshot};

/// The object built from `bpf/http_stats.bpf.c` by `bpf/build.sh` (stripped of
/// DWARF, with BTF and CO-RE relocations kept).
pub static BPF_OBJECT: &[u8] = aya::include_bytes_aligned!("../bpf/http_stats.bpf.o");

/// The programs of the object and the tracepoints they attach to: the exits of
/// the receiving syscalls (requests) and of the sending ones (responses).
pub const PROGRAMS: [(&str, &str); 8] = [
    ("http_exit_read", "sys_exit_read"),
    ("http_exit_recvfrom", "sys_exit_recvfrom"),
    ("http_exit_readv", "sys_exit_readv"),
    ("http_exit_recvmsg", "sys_exit_recvmsg"),
    ("http_exit_write", "sys_exit_write"),
    ("http_exit_sendto", "sys_exit_sendto"),
    ("http_exit_writev", "sys_exit_writev"),
    ("http_exit_sendmsg", "sys_exit_sendmsg"),
];

const PROC_STATS_MAP: &str = "proc_stats";
const STATUS_MAP: &str = "status_counts";
const PENDING_MAP: &str = "pending";
/// Guards a map walk against keys deleted under it (the kernel then restarts the
/// walk from the first key): at most this many keys per walk.
const MAX_KEYS_PER_WALK: usize = 4 * 16384;

const TRACEFS: &str = "/sys/kernel/tracing";
const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

const PERMISSION_HINT: &str = "; the plugin needs root, or CAP_BPF, CAP_PERFMON and \
                               CAP_DAC_READ_SEARCH (to read tracepoint IDs in tracefs)";

/// Why the BPF side could not be set up or read.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "the kernel has no BTF type information ({KERNEL_BTF} is missing); \
         the plugin needs a kernel built with CONFIG_DEBUG_INFO_BTF=y"
    )]
    NoKernelBtf,
    #[error("tracefs is not mounted and mounting it at {TRACEFS} failed: {message}{hint}")]
    Tracefs { message: String, hint: &'static str },
    #[error("loading the BPF object: {message}{hint}")]
    Load { message: String, hint: &'static str },
    #[error("the BPF object has no program {0}")]
    MissingProgram(&'static str),
    #[error("loading BPF program {program}: {message}{hint}")]
    Program {
        program: &'static str,
        message: String,
        hint: &'static str,
    },
    #[error("attaching {program} to tracepoint syscalls:{tracepoint}: {message}{hint}")]
    Attach {
        program: &'static str,
        tracepoint: &'static str,
        message: String,
        hint: &'static str,
    },
    #[error("BPF map {map}: {message}")]
    Map { map: &'static str, message: String },
}

/// Map sizes; `None` keeps the object's (`bpf/http_stats.h`).
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// Processes tracked at once (the least recently active are evicted first).
    /// The status-code map and the map of requests waiting for their response
    /// get twice as many entries each.
    pub max_processes: Option<u32>,
}

/// The loaded and attached program; dropping it detaches everything.
#[derive(Debug)]
pub struct HttpProbe {
    ebpf: Ebpf,
}

impl HttpProbe {
    /// Loads `object` (normally [`BPF_OBJECT`]), ignoring the HTTP of process
    /// `self_tgid` (the plugin's own socket), and attaches all [`PROGRAMS`].
    pub fn load(object: &[u8], self_tgid: u32) -> Result<Self, ProbeError> {
        Self::load_with(object, self_tgid, &Limits::default())
    }

    /// Like [`HttpProbe::load`], with other map sizes.
    pub fn load_with(object: &[u8], self_tgid: u32, limits: &Limits) -> Result<Self, ProbeError> {
        if !Path::new(KERNEL_BTF).exists() {
            return Err(ProbeError::NoKernelBtf);
        }
        raise_memlock_limit();
        ensure_tracefs()?;
        let mut loader = EbpfLoader::new();
        loader.override_global("self_tgid", &self_tgid, true);
        if let Some(n) = limits.max_processes {
            let n = n.max(1);
            loader
                .map_max_entries(PROC_STATS_MAP, n)
                .map_max_entries(STATUS_MAP, n.saturating_mul(2))
                .map_max_entries(PENDING_MAP, n.saturating_mul(2));
        }
        let mut ebpf = loader.load(object).map_err(|e| ProbeError::Load {
            message: error_chain(&e),
            hint: permission_hint(&e),
        })?;
        for (program, tracepoint) in PROGRAMS {
            let prog: &mut TracePoint = ebpf
                .program_mut(program)
                .ok_or(ProbeError::MissingProgram(program))?
                .try_into()
                .map_err(|e: aya::programs::ProgramError| ProbeError::Program {
                    program,
                    message: error_chain(&e),
                    hint: "",
                })?;
            prog.load().map_err(|e| program_load_error(program, &e))?;
            prog.attach("syscalls", tracepoint)
                .map_err(|e| ProbeError::Attach {
                    program,
                    tracepoint,
                    message: error_chain(&e),
                    hint: permission_hint(&e),
                })?;
            debug!(program, tracepoint, "attached");
        }
        // Check the maps' layouts against ours now rather than at the first read.
        let probe = HttpProbe { ebpf };
        probe.snapshot()?;
        Ok(probe)
    }

    /// Reads every process's counters.
    pub fn snapshot(&self) -> Result<Snapshot, ProbeError> {
        let mut snapshot = Snapshot::default();
        let procs: HashMap<&MapData, u32, RawProcStats> =
            HashMap::try_from(self.map(PROC_STATS_MAP)?).map_err(map_error(PROC_STATS_MAP))?;
        for entry in procs.iter().take(MAX_KEYS_PER_WALK) {
            let (tgid, raw) = entry.map_err(map_error(PROC_STATS_MAP))?;
            snapshot.processes.insert(tgid, ProcCounters::decode(&raw));
        }
        let statuses: HashMap<&MapData, [u32; 2], u64> =
            HashMap::try_from(self.map(STATUS_MAP)?).map_err(map_error(STATUS_MAP))?;
        for entry in statuses.iter().take(MAX_KEYS_PER_WALK) {
            let (key, count) = entry.map_err(map_error(STATUS_MAP))?;
            snapshot.add_status(key, count);
        }
        Ok(snapshot)
    }

    /// Deletes the counters of processes that exited, so their slots are free and a
    /// reused pid starts from 0.
    pub fn forget(&mut self, tgids: &[u32], snapshot: &Snapshot) -> Result<(), ProbeError> {
        if tgids.is_empty() {
            return Ok(());
        }
        let mut procs: HashMap<&mut MapData, u32, RawProcStats> =
            HashMap::try_from(self.map_mut(PROC_STATS_MAP)?).map_err(map_error(PROC_STATS_MAP))?;
        for tgid in tgids {
            ignore_missing(procs.remove(tgid)).map_err(map_error(PROC_STATS_MAP))?;
        }
        let mut statuses: HashMap<&mut MapData, [u32; 2], u64> =
            HashMap::try_from(self.map_mut(STATUS_MAP)?).map_err(map_error(STATUS_MAP))?;
        let mut by_tgid: StdHashMap<u32, Vec<u16>> = StdHashMap::new();
        for &(tgid, code) in snapshot.statuses.keys() {
            by_tgid.entry(tgid).or_default().push(code);
        }
        for tgid in tgids {
            for code in by_tgid.get(tgid).into_iter().flatten() {
                ignore_missing(statuses.remove(&[*tgid, u32::from(*code)]))
                    .map_err(map_error(STATUS_MAP))?;
            }
        }
        Ok(())
    }

    fn map(&self, name: &'static str) -> Result<&aya::maps::Map, ProbeError> {
        self.ebpf.map(name).ok_or_else(|| ProbeError::Map {
            map: name,
            message: "not in the BPF object".into(),
        })
    }

    fn map_mut(&mut self, name: &'static str) -> Result<&mut aya::maps::Map, ProbeError> {
        self.ebpf.map_mut(name).ok_or_else(|| ProbeError::Map {
            map: name,
            message: "not in the BPF object".into(),
        })
    }
}

fn ignore_missing(result: Result<(), aya::maps::MapError>) -> Result<(), aya::maps::MapError> {
    match result {
        Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        Err(aya::maps::MapError::SyscallError(e))
            if e.io_error.raw_os_error() == Some(nix::libc::ENOENT) =>
        {
            Ok(())
        }
        other => other,
    }
}

fn map_error(map: &'static str) -> impl Fn(aya::maps::MapError) -> ProbeError {
    move |e| ProbeError::Map {
        map,
        message: error_chain(&e),
    }
}

/// Attaching needs tracefs (aya reads tracepoint IDs from it). Mounts it where the
/// kernel expects it when neither usual place has it.
fn ensure_tracefs() -> Result<(), ProbeError> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    if tracefs_mounted(&mounts) {
        return Ok(());
    }
    nix::mount::mount(
        Some("tracefs"),
        TRACEFS,
        Some("tracefs"),
        nix::mount::MsFlags::MS_NOSUID
            | nix::mount::MsFlags::MS_NODEV
            | nix::mount::MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| ProbeError::Tracefs {
        message: e.desc().to_string(),
        hint: if matches!(e, nix::errno::Errno::EPERM | nix::errno::Errno::EACCES) {
            PERMISSION_HINT
        } else {
            ""
        },
    })?;
    info!(path = TRACEFS, "mounted tracefs");
    Ok(())
}

/// Whether `mounts` (the text of /proc/self/mounts) has tracefs where aya looks.
fn tracefs_mounted(mounts: &str) -> bool {
    mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let (_, at, kind) = (fields.next(), fields.next(), fields.next());
        kind == Some("tracefs")
            && matches!(
                at,
                Some("/sys/kernel/tracing" | "/sys/kernel/debug/tracing")
            )
    })
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; lift it (best effort).
fn raise_memlock_limit() {
    use nix::sys::resource::{RLIM_INFINITY, Resource, setrlimit};
    if let Err(e) = setrlimit(Resource::RLIMIT_MEMLOCK, RLIM_INFINITY, RLIM_INFINITY) {
        debug!(error = %e, "cannot raise RLIMIT_MEMLOCK");
    }
}

/// The verifier's log is long; its last lines say why it refused the program.
const VERIFIER_LOG_LINES: usize = 40;

fn program_load_error(program: &'static str, e: &aya::programs::ProgramError) -> ProbeError {
    if let aya::programs::ProgramError::LoadError {
        io_error,
        verifier_log,
    } = e
    {
        let log = verifier_log.to_string();
        let lines: Vec<&str> = log.lines().collect();
        if !lines.is_empty() {
            let tail = lines[lines.len().saturating_sub(VERIFIER_LOG_LINES)..].join("\n");
            return ProbeError::Program {
                program,
                message: format!(
                    "the verifier refused it ({io_error}); the end of its log:\n{tail}"
                ),
                hint: "",
            };
        }
    }
    ProbeError::Program {
        program,
        message: error_chain(e),
        hint: permission_hint(e),
    }
}

/// An error and its sources, `: `-separated (aya's top-level messages are terse).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// A hint when the error is a refused permission somewhere down the chain.
fn permission_hint(e: &(dyn std::error::Error + 'static)) -> &'static str {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && (io.kind() == std::io::ErrorKind::PermissionDenied
                || matches!(
                    io.raw_os_error(),
                    Some(nix::libc::EPERM | nix::libc::EACCES)
                ))
        {
            return PERMISSION_HINT;
        }
        source = s.source();
    }
    let text = e.to_string();
    if text.contains("Operation not permitted") || text.contains("Permission denied") {
        return PERMISSION_HINT;
    }
    ""
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracefs_is_found_in_either_usual_place_only() {
        let debian = "sysfs /sys sysfs rw 0 0\n\
                      tracefs /sys/kernel/tracing tracefs rw,nosuid 0 0\n";
        assert!(tracefs_mounted(debian));
        assert!(tracefs_mounted(
            "tracefs /sys/kernel/debug/tracing tracefs rw 0 0\n"
        ));
        assert!(!tracefs_mounted("tracefs /mnt/elsewhere tracefs rw 0 0\n"));
        assert!(!tracefs_mounted(
            "debugfs /sys/kernel/debug debugfs rw 0 0\n"
        ));
    }

    #[test]
    fn refused_permissions_get_a_hint_and_other_errors_do_not() {
        let denied = std::io::Error::from_raw_os_error(nix::libc::EPERM);
        assert_eq!(permission_hint(&denied), PERMISSION_HINT);
        let other = std::io::Error::from_raw_os_error(nix::libc::EINVAL);
        assert_eq!(permission_hint(&other), "");
    }
}
