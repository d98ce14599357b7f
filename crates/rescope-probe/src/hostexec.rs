//! The host terminal: `host_exec` opens a login shell for root on a real PTY and
//! relays it through a pipe; `host_resize_exec_tty` resizes it (protocol.md §5.5).
//!
//! When the probe itself runs in a container (its mount namespace is not the one of
//! PID 1), the shell is started in the host's namespaces with `nsenter`, so the
//! terminal is the host's, not the probe container's.

use std::path::Path;

use rescope_report::xfer::{ControlRequest, ControlResponse};
use tracing::warn;

use crate::control::{ControlOutcome, ControlRegistry};
use crate::pipe::{LocalEnd, Pipes};

pub const HOST_EXEC: &str = "host_exec";
pub const HOST_RESIZE: &str = "host_resize_exec_tty";

/// Registers the host terminal controls.
pub fn register(controls: &ControlRegistry, pipes: &Pipes, proc_root: &Path) {
    let shell = ShellCommand::for_host(proc_root);
    let exec_pipes = pipes.clone();
    controls.register(HOST_EXEC, move |request: ControlRequest| {
        let pipes = exec_pipes.clone();
        let shell = shell.clone();
        async move { ControlOutcome::from(open_terminal(&pipes, &shell, &request.app_id)) }
    });
    let resize_pipes = pipes.clone();
    controls.register(HOST_RESIZE, move |request: ControlRequest| {
        let pipes = resize_pipes.clone();
        async move { ControlOutcome::from(crate::pipe::resize_control(&pipes, &request)) }
    });
}

/// How the host shell is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellCommand {
    pub program: String,
    pub args: Vec<String>,
    pub home: String,
}

impl ShellCommand {
    /// Root's login shell (default `/bin/sh`). When the probe is not in the host's
    /// mount namespace, the shell is wrapped in `nsenter` into the namespaces of a
    /// host process (see [`host_namespace_pid`]) and taken from the host's
    /// `/etc/passwd`.
    pub fn for_host(proc_root: &Path) -> Self {
        match host_namespace_pid(proc_root) {
            Some(target) => {
                let passwd =
                    std::fs::read_to_string(proc_root.join(format!("{target}/root/etc/passwd")))
                        .or_else(|_| std::fs::read_to_string("/etc/passwd"))
                        .unwrap_or_default();
                let (shell, home) = root_shell(&passwd);
                let target = target.to_string();
                ShellCommand {
                    program: "nsenter".into(),
                    args: [
                        "-t", &target, "-m", "-u", "-i", "-n", "-p", "--", &shell, "-l",
                    ]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                    home,
                }
            }
            None => {
                let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
                let (shell, home) = root_shell(&passwd);
                ShellCommand {
                    program: shell,
                    args: vec!["-l".into()],
                    home,
                }
            }
        }
    }
}

/// A process in the host's namespaces, when the probe's mount namespace is not the
/// host's (it runs in a container with the host's PID namespace): PID 1 when its
/// namespace links can be read; otherwise (an init that hides them, or a security
/// profile that denies reading them) the nearest ancestor of the probe in another
/// mount namespace, which is the container runtime's shim. `None` when the probe
/// shares the host's mount namespace, or nothing better is found.
pub fn host_namespace_pid(proc_root: &Path) -> Option<u32> {
    let mount_ns = |pid: &str| std::fs::read_link(proc_root.join(pid).join("ns/mnt")).ok();
    let mine = mount_ns("self")?;
    if let Some(init) = mount_ns("1") {
        return (init != mine).then_some(1);
    }
    let mut pid = "self".to_string();
    // A bound on the walk, in case a made-up /proc has a loop.
    for _ in 0..64 {
        let stat = std::fs::read_to_string(proc_root.join(&pid).join("stat")).ok()?;
        let parent: u32 = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        if parent <= 1 {
            return None;
        }
        pid = parent.to_string();
        if mount_ns(&pid).is_some_and(|ns| ns != mine) {
            return Some(parent);
        }
    }
    None
}

/// Root's shell and home directory from the text of `/etc/passwd`.
pub fn root_shell(passwd: &str) -> (String, String) {
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 7 && f[2] == "0")
        .map(|f| {
            let shell = if f[6].is_empty() { "/bin/sh" } else { f[6] };
            let home = if f[5].is_empty() { "/" } else { f[5] };
            (shell.to_string(), home.to_string())
        })
        .unwrap_or_else(|| ("/bin/sh".into(), "/".into()))
}

fn open_terminal(pipes: &Pipes, shell: &ShellCommand, app_id: &str) -> ControlResponse {
    match spawn_on_pty(shell) {
        Ok(local) => match pipes.start(app_id, local) {
            Ok(pipe) => ControlResponse {
                pipe,
                raw_tty: true,
                resize_tty_control: HOST_RESIZE.into(),
                ..Default::default()
            },
            Err(e) => ControlResponse::error(e),
        },
        Err(e) => {
            warn!(error = %e, "cannot open a host terminal");
            ControlResponse::error(format!("cannot open a terminal: {e}"))
        }
    }
}

/// Starts the shell on a new PTY (80×24 until the terminal says otherwise).
pub fn spawn_on_pty(shell: &ShellCommand) -> Result<LocalEnd, String> {
    let (pty, pts) = pty_process::open().map_err(|e| format!("no PTY: {e}"))?;
    pty.resize(pty_process::Size::new(24, 80))
        .map_err(|e| format!("cannot size the PTY: {e}"))?;
    let home = if Path::new(&shell.home).is_dir() {
        shell.home.as_str()
    } else {
        "/"
    };
    let child = pty_process::Command::new(&shell.program)
        .args(&shell.args)
        .env("TERM", "xterm")
        .env("HOME", home)
        .current_dir(home)
        .kill_on_drop(true)
        .spawn(pts)
        .map_err(|e| format!("cannot start {}: {e}", shell.program))?;
    let (reader, writer) = pty.into_split();
    let writer = std::sync::Arc::new(std::sync::Mutex::new(writer));
    let resizer = writer.clone();
    Ok(LocalEnd {
        reader: Box::new(reader),
        writer: Box::new(SharedWriter(writer)),
        resize: Some(Box::new(move |rows, cols| {
            resizer
                .lock()
                .map_err(|_| "terminal lock poisoned".to_string())?
                .resize(pty_process::Size::new(rows, cols))
                .map_err(|e| format!("cannot resize the terminal: {e}"))
        })),
        child: Some(child),
    })
}

/// The PTY's write half, shared with the resizer (a resize only needs `&self`; the lock
/// is held for one poll at a time).
struct SharedWriter(std::sync::Arc<std::sync::Mutex<pty_process::OwnedWritePty>>);

impl SharedWriter {
    fn with<T>(
        &self,
        f: impl FnOnce(
            std::pin::Pin<&mut pty_process::OwnedWritePty>,
        ) -> std::task::Poll<std::io::Result<T>>,
    ) -> std::task::Poll<std::io::Result<T>> {
        match self.0.lock() {
            Ok(mut w) => f(std::pin::Pin::new(&mut *w)),
            Err(_) => std::task::Poll::Ready(Err(std::io::Error::other("terminal lock poisoned"))),
        }
    }
}

impl tokio::io::AsyncWrite for SharedWriter {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.with(|w| w.poll_write(cx, buf))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.with(|w| w.poll_flush(cx))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.with(|w| w.poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A made-up `/proc`: each entry is (pid or "self", mount namespace link or
    /// `None` for an unreadable one, parent pid).
    fn fake_proc(entries: &[(&str, Option<&str>, u32)]) -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("tempdir");
        for (pid, ns, parent) in entries {
            let dir = root.path().join(pid);
            std::fs::create_dir_all(dir.join("ns")).expect("mkdir");
            if let Some(ns) = ns {
                std::os::unix::fs::symlink(ns, dir.join("ns/mnt")).expect("symlink");
            }
            let stat = format!("{pid} (some (odd) name) S {parent} 1 1 0 -1");
            std::fs::write(dir.join("stat"), stat).expect("stat");
        }
        root
    }

    #[test]
    fn the_host_namespaces_come_from_pid_1_or_the_nearest_ancestor_outside_ours() {
        // On the host: PID 1 shares our mount namespace.
        let proc = fake_proc(&[("self", Some("mnt:[7]"), 40), ("1", Some("mnt:[7]"), 0)]);
        assert_eq!(host_namespace_pid(proc.path()), None);
        // In a container, PID 1 readable: it is the host.
        let proc = fake_proc(&[("self", Some("mnt:[9]"), 40), ("1", Some("mnt:[7]"), 0)]);
        assert_eq!(host_namespace_pid(proc.path()), Some(1));
        // PID 1 unreadable: walk up past our own namespace to the shim.
        let proc = fake_proc(&[
            ("self", Some("mnt:[9]"), 50),
            ("1", None, 0),
            ("50", Some("mnt:[9]"), 40),
            ("40", Some("mnt:[7]"), 1),
        ]);
        assert_eq!(host_namespace_pid(proc.path()), Some(40));
        // PID 1 unreadable and every ancestor shares our namespace: the host itself.
        let proc = fake_proc(&[
            ("self", Some("mnt:[7]"), 50),
            ("1", None, 0),
            ("50", Some("mnt:[7]"), 1),
        ]);
        assert_eq!(host_namespace_pid(proc.path()), None);
    }

    #[test]
    fn roots_shell_comes_from_passwd() {
        let passwd = "daemon:x:1:1::/usr/sbin:/usr/sbin/nologin\nroot:x:0:0:root:/root:/bin/bash\n";
        assert_eq!(root_shell(passwd), ("/bin/bash".into(), "/root".into()));
        assert_eq!(root_shell(""), ("/bin/sh".into(), "/".into()));
        assert_eq!(
            root_shell("root:x:0:0:root::\n"),
            ("/bin/sh".into(), "/".into())
        );
    }
}
