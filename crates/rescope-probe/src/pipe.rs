//! Pipes: byte streams between something on this host (a shell on a PTY, a `docker
//! exec`, a log stream) and a terminal in the browser, relayed by an app
//! (protocol.md §5.7).
//!
//! A control handler starts a pipe with [`Pipes::start`], which returns the pipe's ID
//! for the control's answer. The local end is relayed to the app through a
//! [`PipeTransport`]: [`WsPipeTransport`] dials the app's
//! `/api/pipe/<id>/probe` websocket; `rescope launch` plugs the app's pipe router in
//! directly. Local output goes out in chunks of at most 1024 bytes; whatever the app
//! sends is written to the local end verbatim. When the local process ends the pipe is
//! closed on the app's side; when the app closes the pipe the local process is killed.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::{debug, info, warn};

use crate::publish::{AppDirectory, AppEndpoint, Backoff};

/// Largest chunk of local output sent as one message.
pub const CHUNK: usize = 1024;
/// How long a pipe whose app cannot be reached is kept before it is given up.
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// The app's end of a pipe, as channels. Dropping `to_app` closes the pipe on the
/// app's side; `from_app` ends when the app closed the pipe.
#[derive(Debug)]
pub struct PipeEnds {
    pub to_app: mpsc::Sender<Vec<u8>>,
    pub from_app: mpsc::Receiver<Vec<u8>>,
}

/// Connects a new pipe to the app that asked for it.
pub trait PipeTransport: Send + Sync {
    /// Starts connecting pipe `pipe_id` to app `app_id` (the `AppID` of the control
    /// request). Returns at once; the connection is made in the background.
    fn connect(&self, app_id: &str, pipe_id: &str) -> Result<PipeEnds, String>;
}

/// Changes the terminal size: `(rows, columns)`.
pub type Resizer = Box<dyn Fn(u16, u16) -> Result<(), String> + Send + Sync>;

/// The local end of a pipe.
pub struct LocalEnd {
    pub reader: Box<dyn AsyncRead + Send + Unpin>,
    pub writer: Box<dyn AsyncWrite + Send + Unpin>,
    pub resize: Option<Resizer>,
    /// Killed when the pipe closes; the pipe closes when it exits.
    pub child: Option<tokio::process::Child>,
}

impl fmt::Debug for LocalEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalEnd")
            .field("resizable", &self.resize.is_some())
            .field("child", &self.child.as_ref().and_then(|c| c.id()))
            .finish()
    }
}

struct Live {
    resize: Option<Resizer>,
    close: watch::Sender<bool>,
}

/// The pipes open on this probe. Cheap to clone.
#[derive(Clone)]
pub struct Pipes {
    transport: Arc<dyn PipeTransport>,
    live: Arc<Mutex<HashMap<String, Live>>>,
}

impl fmt::Debug for Pipes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipes").field("open", &self.open()).finish()
    }
}

/// A new pipe ID: `pipe-` and a random non-negative 63-bit number, as Scope makes them.
pub fn new_pipe_id() -> String {
    format!("pipe-{}", rand::random::<u64>() >> 1)
}

impl Pipes {
    pub fn new(transport: Arc<dyn PipeTransport>) -> Self {
        Pipes {
            transport,
            live: Arc::default(),
        }
    }

    /// The IDs of the open pipes, sorted.
    pub fn open(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .live
            .lock()
            .map(|l| l.keys().cloned().collect())
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// Opens a pipe from `local` to app `app_id` and returns its ID.
    pub fn start(&self, app_id: &str, mut local: LocalEnd) -> Result<String, String> {
        let id = new_pipe_id();
        let ends = match self.transport.connect(app_id, &id) {
            Ok(ends) => ends,
            Err(e) => {
                if let Some(child) = local.child.as_mut() {
                    let _ = child.start_kill();
                }
                return Err(e);
            }
        };
        let (close, closed) = watch::channel(false);
        if let Ok(mut live) = self.live.lock() {
            live.insert(
                id.clone(),
                Live {
                    resize: local.resize.take(),
                    close,
                },
            );
        }
        info!(pipe = %id, app = %app_id, "pipe opened");
        tokio::spawn(relay(self.clone(), id.clone(), ends, local, closed));
        Ok(id)
    }

    /// Resizes the terminal of a pipe.
    pub fn resize(&self, id: &str, rows: u16, cols: u16) -> Result<(), String> {
        let live = self
            .live
            .lock()
            .map_err(|_| "pipe table poisoned".to_string())?;
        let pipe = live.get(id).ok_or_else(|| format!("pipe {id} not found"))?;
        match &pipe.resize {
            Some(resize) => resize(rows, cols),
            None => Err(format!("pipe {id} is not a terminal")),
        }
    }

    /// Closes a pipe from this side (its local process is killed).
    pub fn close(&self, id: &str) {
        if let Ok(live) = self.live.lock()
            && let Some(pipe) = live.get(id)
        {
            let _ = pipe.close.send(true);
        }
    }
}

/// The resize controls (`host_resize_exec_tty`, `docker_resize_exec_tty`): arguments
/// `pipeID`, `height` and `width`, with Scope's messages for missing or bad ones.
pub fn resize_control(
    pipes: &Pipes,
    request: &rescope_report::xfer::ControlRequest,
) -> rescope_report::xfer::ControlResponse {
    use crate::control::{numeric_arg, string_arg};
    use rescope_report::xfer::ControlResponse;
    let resized = (|| {
        let pipe = string_arg(request, "pipeID")?;
        let height = numeric_arg(request, "height")?;
        let width = numeric_arg(request, "width")?;
        pipes.resize(pipe, height, width)
    })();
    match resized {
        Ok(()) => ControlResponse::default(),
        Err(e) => ControlResponse::error(e),
    }
}

async fn relay(
    pipes: Pipes,
    id: String,
    ends: PipeEnds,
    local: LocalEnd,
    mut closed: watch::Receiver<bool>,
) {
    let PipeEnds {
        to_app,
        mut from_app,
    } = ends;
    let LocalEnd {
        mut reader,
        mut writer,
        mut child,
        ..
    } = local;
    let mut buf = vec![0u8; CHUNK];
    let mut exited = false;
    let why = loop {
        if exited {
            // The process is gone; send what is left in the terminal, then stop.
            match tokio::time::timeout(Duration::from_millis(200), reader.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {
                    let _ = to_app.send(buf[..n].to_vec()).await;
                    continue;
                }
                _ => break "the process exited",
            }
        }
        tokio::select! {
            read = reader.read(&mut buf) => match read {
                Ok(0) | Err(_) => break "the local end closed",
                Ok(n) => {
                    if to_app.send(buf[..n].to_vec()).await.is_err() {
                        break "the app end closed";
                    }
                }
            },
            incoming = from_app.recv() => match incoming {
                Some(bytes) => {
                    if writer.write_all(&bytes).await.is_err() || writer.flush().await.is_err() {
                        break "the local end stopped accepting input";
                    }
                }
                None => break "the app closed the pipe",
            },
            status = async {
                match child.as_mut() {
                    Some(c) => c.wait().await,
                    None => std::future::pending().await,
                }
            } => {
                debug!(pipe = %id, ?status, "pipe process exited");
                child = None;
                exited = true;
            }
            _ = closed.changed() => break "closed by the probe",
        }
    };
    if let Some(mut child) = child {
        let _ = child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
    }
    drop(to_app);
    if let Ok(mut live) = pipes.live.lock() {
        live.remove(&id);
    }
    info!(pipe = %id, reason = why, "pipe closed");
}

/// Relays pipes over websockets to the apps the publisher talks to.
#[derive(Debug, Clone)]
pub struct WsPipeTransport {
    apps: AppDirectory,
    http: reqwest::Client,
}

impl WsPipeTransport {
    pub fn new(apps: AppDirectory, tls: crate::tls::ClientTls) -> Self {
        WsPipeTransport {
            apps,
            http: tls
                .http_builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        }
    }
}

impl PipeTransport for WsPipeTransport {
    fn connect(&self, app_id: &str, pipe_id: &str) -> Result<PipeEnds, String> {
        let app = self
            .apps
            .get(app_id)
            .ok_or_else(|| format!("no connection to app {app_id:?} to open a pipe through"))?;
        let (to_app, to_app_rx) = mpsc::channel(64);
        let (from_app_tx, from_app) = mpsc::channel(64);
        tokio::spawn(ws_pipe(
            app,
            self.http.clone(),
            pipe_id.to_string(),
            to_app_rx,
            from_app_tx,
        ));
        Ok(PipeEnds { to_app, from_app })
    }
}

async fn ws_pipe(
    app: AppEndpoint,
    http: reqwest::Client,
    id: String,
    mut outgoing: mpsc::Receiver<Vec<u8>>,
    incoming: mpsc::Sender<Vec<u8>>,
) {
    let url = format!("{}/api/pipe/{id}/probe", app.ws_base());
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
    let mut failing_since: Option<tokio::time::Instant> = None;
    loop {
        let request = match app.ws_request(&url) {
            Ok(r) => r,
            Err(e) => {
                warn!(pipe = %id, error = %e, "cannot build the pipe request");
                return;
            }
        };
        let dialled = tokio::time::timeout(Duration::from_secs(5), app.connect_ws(request)).await;
        let socket = match dialled {
            Ok(Ok(socket)) => socket,
            Ok(Err(tungstenite::Error::Http(response)))
                if response.status() == reqwest::StatusCode::NOT_FOUND =>
            {
                debug!(pipe = %id, "the app has closed this pipe");
                return;
            }
            failed => {
                let error = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".to_string(),
                };
                let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() >= GIVE_UP_AFTER {
                    warn!(pipe = %id, %error, "giving up on a pipe whose app cannot be reached");
                    return;
                }
                debug!(pipe = %id, %error, "pipe connection failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next_delay()) => continue,
                    _ = outgoing.recv() => continue,
                }
            }
        };
        failing_since = None;
        backoff.reset();
        let (mut sink, mut stream) = socket.split();
        loop {
            tokio::select! {
                out = outgoing.recv() => match out {
                    Some(bytes) => {
                        if sink.send(Message::Binary(bytes.into())).await.is_err() {
                            break;
                        }
                    }
                    None => {
                        // The local end finished: close here and tell the app.
                        let _ = sink.close().await;
                        let delete = http
                            .delete(format!("{}/api/pipe/{id}", app.base_url))
                            .headers(app.headers.clone())
                            .send()
                            .await;
                        if let Err(e) = delete {
                            debug!(pipe = %id, error = %e, "could not tell the app the pipe closed");
                        }
                        return;
                    }
                },
                message = stream.next() => {
                    let bytes = match message {
                        Some(Ok(Message::Binary(b))) => b.to_vec(),
                        Some(Ok(Message::Text(t))) => t.as_bytes().to_vec(),
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                        Some(Ok(_)) => continue,
                    };
                    if incoming.send(bytes).await.is_err() {
                        // The local end is gone; `outgoing` ends next and closes.
                        continue;
                    }
                }
            }
        }
        // The connection dropped: reconnect; a closed pipe answers 404.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands the app's end of each pipe to the test.
    type AppSide = (String, mpsc::Receiver<Vec<u8>>, mpsc::Sender<Vec<u8>>);
    struct Loopback(Mutex<Vec<AppSide>>);

    impl PipeTransport for Loopback {
        fn connect(&self, _: &str, pipe_id: &str) -> Result<PipeEnds, String> {
            let (to_app, app_rx) = mpsc::channel(8);
            let (app_tx, from_app) = mpsc::channel(8);
            self.0
                .lock()
                .map_err(|_| "poisoned")?
                .push((pipe_id.to_string(), app_rx, app_tx));
            Ok(PipeEnds { to_app, from_app })
        }
    }

    #[test]
    fn pipe_ids_look_like_scopes() {
        let id = new_pipe_id();
        let n: i64 = id
            .strip_prefix("pipe-")
            .expect("prefix")
            .parse()
            .expect("a non-negative 63-bit number");
        assert!(n >= 0);
    }

    #[tokio::test]
    async fn bytes_flow_both_ways_and_the_app_closing_kills_the_process() {
        let transport = Arc::new(Loopback(Mutex::new(Vec::new())));
        let pipes = Pipes::new(transport.clone());
        let mut child = tokio::process::Command::new("cat")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("cat runs");
        let local = LocalEnd {
            reader: Box::new(child.stdout.take().expect("stdout")),
            writer: Box::new(child.stdin.take().expect("stdin")),
            resize: None,
            child: Some(child),
        };
        let id = pipes.start("app", local).expect("started");
        assert_eq!(pipes.open(), vec![id.clone()]);
        let (got_id, mut app_rx, app_tx) = transport.0.lock().expect("lock").pop().expect("one");
        assert_eq!(got_id, id);
        app_tx.send(b"hello\n".to_vec()).await.expect("send");
        let echoed = tokio::time::timeout(Duration::from_secs(5), app_rx.recv())
            .await
            .expect("in time")
            .expect("bytes");
        assert_eq!(echoed, b"hello\n");
        assert!(pipes.resize(&id, 10, 10).is_err(), "not a terminal");
        drop(app_tx);
        // The relay kills cat and closes its end towards the app.
        let end = tokio::time::timeout(Duration::from_secs(5), app_rx.recv())
            .await
            .expect("closes in time");
        assert!(end.is_none());
        assert!(pipes.open().is_empty());
    }
}
