//! Helpers shared by the tests that run the real `rescope` binary: child processes
//! that are killed when the test ends, free loopback ports, JSON over HTTP through
//! `curl`, and the Docker engine with the busybox test image.
//!
//! Each test file is its own crate and uses only part of this module.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command};

/// A child process killed and reaped when dropped, so a failing test leaves nothing
/// running.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nothing listens on at the moment of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// GETs `url` with `curl` and parses the body as JSON; `None` for any failure
/// (connection refused, HTTP error, timeout after 5 s, not JSON), which is what a
/// test polling a starting server wants.
pub fn get(url: &str) -> Option<serde_json::Value> {
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "5", url])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

/// The image the Docker tests run: a static busybox and nothing else.
pub const IMAGE: &str = "rescope-test/busybox:latest";

/// Runs `docker ARGS`; its trimmed standard output, or what went wrong.
pub fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Why Docker tests cannot run here, if they cannot: no engine answering.
pub fn docker_missing() -> Option<String> {
    docker(&["info", "--format", "{{.ServerVersion}}"]).err()
}

/// Makes [`IMAGE`] from the host's static busybox if it is missing. Commands run as
/// `busybox <applet>` too, so an image made elsewhere with fewer links still works.
pub fn ensure_image() -> Result<(), String> {
    if docker(&["image", "inspect", IMAGE]).is_ok() {
        return Ok(());
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or("no static busybox on this machine (apt-get install busybox-static)")?;
    let script = format!(
        "set -e; d=$(mktemp -d); mkdir -p $d/bin; cp {busybox} $d/bin/busybox; \
         for a in sh sleep httpd nc echo cat; do ln -s busybox $d/bin/$a; done; \
         tar -C $d -c . | docker import - {IMAGE} >/dev/null; rm -rf $d"
    );
    let ok = Command::new("sh")
        .args(["-c", &script])
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(())
        .ok_or_else(|| "docker import failed".to_string())
}

/// A pipe's websocket as the browser holds it (`/api/pipe/{id}`), plain or TLS.
pub trait PipeSocket:
    futures_util::Stream<
        Item = Result<
            tokio_tungstenite::tungstenite::Message,
            tokio_tungstenite::tungstenite::Error,
        >,
    > + Unpin
{
}

impl<S> PipeSocket for S where
    S: futures_util::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin
{
}

/// Appends the pipe's output to `seen` until it contains `want`. Panics, showing what
/// was seen, if the pipe ends first or 15 s pass.
pub async fn read_pipe_until(ws: &mut impl PipeSocket, seen: &mut String, want: &str) {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !seen.contains(want) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => seen.push_str(&String::from_utf8_lossy(&b)),
            Ok(Some(Ok(_))) => {}
            other => panic!("the pipe ended before {want:?} appeared ({other:?}); saw {seen:?}"),
        }
    }
}

/// Waits for the app to close the pipe's websocket, skipping any output. Panics if
/// it is still open after 15 s.
pub async fn expect_pipe_closed(ws: &mut impl PipeSocket) {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Close(_))) | None | Some(Err(_))) => return,
            Ok(Some(Ok(_))) => {}
            Err(_) => panic!("the browser end of the pipe stayed open"),
        }
    }
}
