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
    /// Root's login shell from `/etc/passwd` (default `/bin/sh`), wrapped in `nsenter`
    /// when the probe is not in the host's mount namespace.
    pub fn for_host(proc_root: &Path) -> Self {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let (shell, home) = root_shell(&passwd);
        let containerised = match (
            std::fs::read_link(proc_root.join("self/ns/mnt")),
            std::fs::read_link(proc_root.join("1/ns/mnt")),
        ) {
            (Ok(mine), Ok(init)) => mine != init,
            _ => false,
        };
        if containerised {
            ShellCommand {
                program: "nsenter".into(),
                args: ["-t1", "-m", "-u", "-i", "-n", "-p", "--", &shell, "-l"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                home,
            }
        } else {
            ShellCommand {
                program: shell,
                args: vec!["-l".into()],
                home,
            }
        }
    }
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
