//! Running code inside another network namespace.
//!
//! The network namespace is per-thread state: `setns(CLONE_NEWNET)` moves only the
//! calling thread. Doing that on a tokio worker (or any pooled thread) would leave
//! unrelated tasks talking to a container's network, so [`NetnsRunner`] keeps one
//! dedicated, long-lived OS thread that enters a namespace, runs a closure, and
//! returns home before taking the next job. Nothing else ever runs on that thread.
//!
//! The endpoint collector only needs this to *create* netlink sockets: a netlink
//! socket stays bound to the namespace it was created in, so after that one trip the
//! socket is used from any thread, and a spy tick never crosses namespaces or spawns
//! a thread.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use nix::errno::Errno;
use nix::sched::{CloneFlags, setns};

/// How long a caller waits for a job (opening sockets takes microseconds; this only
/// guards against a wedged worker).
const JOB_TIMEOUT: Duration = Duration::from_secs(10);

/// A network namespace to enter, named by a file that refers to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetnsTarget {
    /// `/proc/<pid>/ns/net`, or a bind mount such as `/run/netns/<name>`.
    pub path: PathBuf,
    /// The namespace inode the caller expects; checked after opening, since a pid can
    /// exit and be reused between the walk that found it and this call.
    pub expected_inode: Option<u64>,
}

impl NetnsTarget {
    /// The network namespace of `pid`, under the given procfs root.
    pub fn of_pid(proc_root: &Path, pid: u32, expected_inode: Option<u64>) -> Self {
        NetnsTarget {
            path: proc_root.join(pid.to_string()).join("ns").join("net"),
            expected_inode,
        }
    }
}

/// Why a closure could not run in the namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("opening network namespace {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "network namespace {path} is gone: it is now namespace {found}, not {expected} (the process exited)"
    )]
    Replaced {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("entering network namespace {path}: {errno} ({})", errno.desc())]
    Enter { path: PathBuf, errno: Errno },
    #[error("the code run in network namespace {path} panicked")]
    Panicked { path: PathBuf },
    #[error("the network namespace thread is unavailable: {reason}")]
    Worker { reason: String },
}

impl NetnsError {
    /// The namespace (or the process that named it) no longer exists: normal churn,
    /// not a fault.
    pub fn is_gone(&self) -> bool {
        match self {
            NetnsError::Open { source, .. } => {
                source.kind() == io::ErrorKind::NotFound
                    || source.raw_os_error() == Some(nix::libc::ESRCH)
            }
            NetnsError::Replaced { .. } => true,
            _ => false,
        }
    }

    /// Entering was refused (the probe lacks CAP_SYS_ADMIN, or ptrace access to the
    /// process).
    pub fn is_permission(&self) -> bool {
        match self {
            NetnsError::Open { source, .. } => source.kind() == io::ErrorKind::PermissionDenied,
            NetnsError::Enter { errno, .. } => matches!(errno, Errno::EPERM | Errno::EACCES),
            _ => false,
        }
    }
}

/// The inode of the calling thread's network namespace.
pub fn current_netns() -> io::Result<u64> {
    Ok(std::fs::metadata("/proc/thread-self/ns/net")?.ino())
}

type Job = Box<dyn FnOnce(&File) -> bool + Send>;

#[derive(Debug)]
struct Worker {
    jobs: mpsc::Sender<Job>,
    thread: JoinHandle<()>,
}

/// A dedicated thread that runs closures inside other network namespaces. The thread
/// is started on first use and restarted if it ever had to give up (it exits rather
/// than keep running in a namespace it could not leave).
#[derive(Debug, Default)]
pub struct NetnsRunner {
    worker: Option<Worker>,
}

impl NetnsRunner {
    pub fn new() -> Self {
        NetnsRunner::default()
    }

    /// Runs `f` on the namespace thread while it is inside `target`, and returns its
    /// result. Blocks the caller until done.
    pub fn run_in<T, F>(&mut self, target: &NetnsTarget, f: F) -> Result<T, NetnsError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (reply_tx, reply_rx) = mpsc::sync_channel::<Result<T, NetnsError>>(1);
        let target_for_job = target.clone();
        let job: Job = Box::new(move |home: &File| {
            let (result, stay) = run_job(home, &target_for_job, f);
            let _ = reply_tx.send(result);
            stay
        });
        let worker = self.worker()?;
        if let Err(mpsc::SendError(job)) = worker.jobs.send(job) {
            // The thread exited since the last call; start a new one and retry once.
            self.worker = None;
            let worker = self.worker()?;
            worker.jobs.send(job).map_err(|_| NetnsError::Worker {
                reason: "the thread exited at once".into(),
            })?;
        }
        match reply_rx.recv_timeout(JOB_TIMEOUT) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // Abandon the stuck thread; a new one serves later calls.
                self.worker = None;
                Err(NetnsError::Worker {
                    reason: format!("no answer within {JOB_TIMEOUT:?}"),
                })
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.worker = None;
                Err(NetnsError::Worker {
                    reason: "the thread exited during the job".into(),
                })
            }
        }
    }

    fn worker(&mut self) -> Result<&Worker, NetnsError> {
        if self.worker.as_ref().is_some_and(|w| w.thread.is_finished()) {
            self.worker = None;
        }
        if self.worker.is_none() {
            self.worker = Some(spawn_worker()?);
        }
        self.worker.as_ref().ok_or_else(|| NetnsError::Worker {
            reason: "not started".into(),
        })
    }
}

fn spawn_worker() -> Result<Worker, NetnsError> {
    let worker_error = |reason: String| NetnsError::Worker { reason };
    // The thread's home namespace is the one it starts in (the process's).
    let home = File::open("/proc/thread-self/ns/net")
        .map_err(|e| worker_error(format!("opening this thread's network namespace: {e}")))?;
    let (jobs, inbox) = mpsc::channel::<Job>();
    let thread = std::thread::Builder::new()
        .name("rescope-netns".into())
        .spawn(move || {
            for job in inbox {
                if !job(&home) {
                    tracing::error!(
                        "network namespace thread could not return to its own namespace; restarting it"
                    );
                    return;
                }
            }
        })
        .map_err(|e| worker_error(format!("spawning: {e}")))?;
    Ok(Worker { jobs, thread })
}

/// Enters, runs, returns. The flag is false when the thread could not get back home
/// and must stop serving jobs.
fn run_job<T>(
    home: &File,
    target: &NetnsTarget,
    f: impl FnOnce() -> T,
) -> (Result<T, NetnsError>, bool) {
    let path = target.path.clone();
    let file = match File::open(&target.path) {
        Ok(f) => f,
        Err(source) => return (Err(NetnsError::Open { path, source }), true),
    };
    if let Some(expected) = target.expected_inode {
        match file.metadata() {
            Ok(meta) if meta.ino() == expected => {}
            Ok(meta) => {
                return (
                    Err(NetnsError::Replaced {
                        path,
                        expected,
                        found: meta.ino(),
                    }),
                    true,
                );
            }
            Err(source) => return (Err(NetnsError::Open { path, source }), true),
        }
    }
    if let Err(errno) = setns(&file, CloneFlags::CLONE_NEWNET) {
        return (Err(NetnsError::Enter { path, errno }), true);
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .map_err(|_| NetnsError::Panicked { path: path.clone() });
    let home_again = setns(home, CloneFlags::CLONE_NEWNET).is_ok();
    (result, home_again)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_in_our_own_namespace_works_and_the_thread_is_reused() {
        let mine = current_netns().expect("own netns");
        let mut runner = NetnsRunner::new();
        let target = NetnsTarget::of_pid(Path::new("/proc"), std::process::id(), Some(mine));
        let (ns, thread) = runner
            .run_in(&target, || {
                (current_netns().ok(), std::thread::current().id())
            })
            .expect("runs");
        assert_eq!(ns, Some(mine));
        assert_ne!(
            thread,
            std::thread::current().id(),
            "on the dedicated thread"
        );
        let (_, again) = runner
            .run_in(&target, || ((), std::thread::current().id()))
            .expect("runs");
        assert_eq!(thread, again, "one long-lived thread");
    }

    #[test]
    fn failures_say_what_happened() {
        let mut runner = NetnsRunner::new();
        let gone = NetnsTarget::of_pid(Path::new("/proc"), u32::MAX - 1, None);
        let e = runner.run_in(&gone, || ()).expect_err("no such pid");
        assert!(e.is_gone(), "{e}");
        assert!(e.to_string().contains("/proc/4294967294/ns/net"), "{e}");

        let mine = current_netns().expect("own netns");
        let wrong = NetnsTarget::of_pid(Path::new("/proc"), std::process::id(), Some(mine + 1));
        let e = runner.run_in(&wrong, || ()).expect_err("inode mismatch");
        assert!(matches!(e, NetnsError::Replaced { .. }), "{e}");
        assert!(e.is_gone());

        let not_a_namespace = NetnsTarget {
            path: PathBuf::from("/proc/self/status"),
            expected_inode: None,
        };
        let e = runner
            .run_in(&not_a_namespace, || ())
            .expect_err("not a namespace file");
        assert!(
            matches!(
                e,
                NetnsError::Enter {
                    errno: Errno::EINVAL,
                    ..
                }
            ),
            "{e}"
        );

        let target = NetnsTarget::of_pid(Path::new("/proc"), std::process::id(), None);
        let e = runner
            .run_in::<(), _>(&target, || panic!("boom"))
            .expect_err("panics are reported");
        assert!(matches!(e, NetnsError::Panicked { .. }), "{e}");
        // The thread survived the panic and still serves jobs.
        assert_eq!(runner.run_in(&target, || 7).expect("runs"), 7);
    }
}
