//! Container terminals and logs over pipes (protocol.md §5.5, §5.7):
//! `docker_exec_container` (a shell inside the container, on a TTY, resizable with
//! `docker_resize_exec_tty`), `docker_attach_container` (the container's own stdio;
//! a raw TTY only when the container has one) and `docker_get_logs` (the container's
//! recent log lines, then new ones as they come; not a TTY).
//!
//! Closing the pipe drops the connection to the engine: an exec'd shell gets a hang-up,
//! an attach detaches, a log stream stops.

use std::pin::Pin;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::query_parameters::{
    AttachContainerOptions, InspectContainerOptions, LogsOptions, ResizeExecOptions,
};
use futures_util::{Stream, StreamExt};
use rescope_report::xfer::{ControlRequest, ControlResponse};
use rescope_report::{TopologyKind, id};
use tokio::io::AsyncWriteExt;
use tracing::debug;

use crate::control::{ControlOutcome, ControlRegistry};
use crate::docker::DockerWatcher;
use crate::pipe::{LocalEnd, Pipes};

pub const EXEC: &str = "docker_exec_container";
pub const ATTACH: &str = "docker_attach_container";
pub const LOGS: &str = "docker_get_logs";
pub const RESIZE: &str = "docker_resize_exec_tty";

/// Lines of history a log pipe starts with.
const LOG_TAIL: &str = "500";

/// The shell an exec starts: root's login shell when the image has one that can run,
/// else `/bin/sh`, with `TERM=xterm`.
const SHELL: &str = "s=$(sed -n 's/^root:[^:]*:[^:]*:[^:]*:[^:]*:[^:]*://p' /etc/passwd 2>/dev/null); \
                     [ -x \"$s\" ] || s=/bin/sh; TERM=xterm exec \"$s\"";

/// Registers the terminal and log controls.
pub fn register(controls: &ControlRegistry, pipes: &Pipes, watcher: &DockerWatcher) {
    for (id, kind) in [
        (EXEC, Kind::Exec),
        (ATTACH, Kind::Attach),
        (LOGS, Kind::Logs),
    ] {
        let (pipes, watcher) = (pipes.clone(), watcher.clone());
        controls.register(id, move |request: ControlRequest| {
            let (pipes, watcher) = (pipes.clone(), watcher.clone());
            async move { ControlOutcome::from(open(kind, &pipes, &watcher, &request).await) }
        });
    }
    let pipes = pipes.clone();
    controls.register(RESIZE, move |request: ControlRequest| {
        let pipes = pipes.clone();
        async move { ControlOutcome::from(crate::pipe::resize_control(&pipes, &request)) }
    });
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Exec,
    Attach,
    Logs,
}

type Output = Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;

/// Turns the engine's output stream into a reader for the pipe.
fn reader_of(mut output: Output) -> tokio::io::DuplexStream {
    let (mut tx, rx) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        while let Some(chunk) = output.next().await {
            let Ok(chunk) = chunk else { break };
            if tx.write_all(&chunk.into_bytes()).await.is_err() {
                break;
            }
        }
    });
    rx
}

async fn open(
    kind: Kind,
    pipes: &Pipes,
    watcher: &DockerWatcher,
    request: &ControlRequest,
) -> ControlResponse {
    let Some(cid) = id::parse_single_id(TopologyKind::Container, &request.node_id) else {
        return ControlResponse::error(format!("{:?} is not a container node", request.node_id));
    };
    let docker = match watcher.client() {
        Ok(d) => d,
        Err(e) => return ControlResponse::error(format!("cannot reach Docker: {e}")),
    };
    let opened = match kind {
        Kind::Exec => exec(&docker, cid).await,
        Kind::Attach => attach(&docker, cid).await,
        Kind::Logs => logs(&docker, cid),
    };
    let (local, raw_tty) = match opened {
        Ok(o) => o,
        Err(e) => return ControlResponse::error(e),
    };
    match pipes.start(&request.app_id, local) {
        Ok(pipe) => ControlResponse {
            pipe,
            raw_tty,
            resize_tty_control: if kind == Kind::Exec {
                RESIZE.into()
            } else {
                String::new()
            },
            ..Default::default()
        },
        Err(e) => ControlResponse::error(e),
    }
}

async fn exec(docker: &Docker, cid: &str) -> Result<(LocalEnd, bool), String> {
    let created = docker
        .create_exec(
            cid,
            CreateExecOptions {
                attach_stdin: Some(true),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                tty: Some(true),
                env: Some(vec!["TERM=xterm"]),
                cmd: Some(vec!["/bin/sh", "-c", SHELL]),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("cannot exec in the container: {e}"))?;
    let started = docker
        .start_exec(
            &created.id,
            Some(StartExecOptions {
                detach: false,
                tty: true,
                output_capacity: None,
            }),
        )
        .await
        .map_err(|e| format!("cannot start the shell: {e}"))?;
    let StartExecResults::Attached { output, input } = started else {
        return Err("the engine started the shell detached".into());
    };
    let (resizer, exec_id) = (docker.clone(), created.id.clone());
    Ok((
        LocalEnd {
            reader: Box::new(reader_of(output)),
            writer: Box::new(input),
            resize: Some(Box::new(move |rows, cols| {
                let (docker, exec_id) = (resizer.clone(), exec_id.clone());
                tokio::spawn(async move {
                    let resized = docker
                        .resize_exec(
                            &exec_id,
                            ResizeExecOptions {
                                h: i32::from(rows),
                                w: i32::from(cols),
                            },
                        )
                        .await;
                    if let Err(e) = resized {
                        debug!(error = %e, "resizing an exec terminal failed");
                    }
                });
                Ok(())
            })),
            child: None,
        },
        true,
    ))
}

async fn attach(docker: &Docker, cid: &str) -> Result<(LocalEnd, bool), String> {
    let inspect = docker
        .inspect_container(cid, None::<InspectContainerOptions>)
        .await
        .map_err(|e| format!("cannot inspect the container: {e}"))?;
    let tty = inspect.config.as_ref().and_then(|c| c.tty).unwrap_or(false);
    let attached = docker
        .attach_container(
            cid,
            Some(AttachContainerOptions {
                stream: true,
                stdin: true,
                stdout: true,
                stderr: true,
                logs: false,
                detach_keys: None,
            }),
        )
        .await
        .map_err(|e| format!("cannot attach to the container: {e}"))?;
    Ok((
        LocalEnd {
            reader: Box::new(reader_of(attached.output)),
            writer: Box::new(attached.input),
            resize: None,
            child: None,
        },
        tty,
    ))
}

fn logs(docker: &Docker, cid: &str) -> Result<(LocalEnd, bool), String> {
    let stream = docker.logs(
        cid,
        Some(LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            tail: LOG_TAIL.into(),
            ..Default::default()
        }),
    );
    Ok((
        LocalEnd {
            reader: Box::new(reader_of(Box::pin(stream))),
            writer: Box::new(tokio::io::sink()),
            resize: None,
            child: None,
        },
        false,
    ))
}
