//! Pipes: byte streams between a browser terminal and something on a probe (a shell,
//! `docker exec`, a log stream), relayed by the app (protocol.md §7.5).
//!
//! `GET /api/pipe/{id}` is the browser's end, `GET /api/pipe/{id}/probe` the probe's;
//! whichever connects first creates the pipe. Bytes from one end go to the other: text
//! or binary frames from the browser become bytes for the probe, and the probe's
//! output reaches the browser as binary frames. `DELETE /api/pipe/{id}` closes it and
//! leaves a tombstone, so a late connection gets 404 (that is how a probe learns the
//! browser has gone). `GET /api/pipe/{id}/check` answers 204 while a pipe is open or
//! unknown and 404 once closed. Pipes with an end unused for a minute are closed;
//! tombstones are forgotten after ten.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use crate::api::AppState;

const IDLE_END: Duration = Duration::from_secs(60);
const TOMBSTONE: Duration = Duration::from_secs(600);
/// Bounded buffering per direction: a stalled reader slows the writer, it does not
/// grow memory.
const BUFFER: usize = 256;
/// How long one message may wait for a peer that does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long closing may wait to flush what is left.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// One end's incoming bytes, shared by successive connections of that end.
type SharedReceiver = Arc<tokio::sync::Mutex<mpsc::Receiver<Bytes>>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Ui,
    Probe,
}

#[derive(Debug)]
struct Half {
    /// Bytes for this end; the receiver is held by this end's connection.
    tx: mpsc::Sender<Bytes>,
    rx: SharedReceiver,
    connections: usize,
    last_used: Instant,
}

impl Half {
    fn new() -> Self {
        let (tx, rx) = mpsc::channel(BUFFER);
        Half {
            tx,
            rx: Arc::new(tokio::sync::Mutex::new(rx)),
            connections: 0,
            last_used: Instant::now(),
        }
    }
}

#[derive(Debug)]
enum Pipe {
    Open { ui: Half, probe: Half },
    Closed { at: Instant },
}

/// Every pipe the app relays.
#[derive(Debug, Default, Clone)]
pub struct PipeRouter {
    pipes: Arc<Mutex<HashMap<String, Pipe>>>,
}

impl PipeRouter {
    /// Joins an end; `None` if the pipe is closed. Returns the sender towards the
    /// other end and the receiver of this end.
    fn join(&self, id: &str, end: End) -> Option<(mpsc::Sender<Bytes>, SharedReceiver)> {
        let mut pipes = self.pipes.lock().ok()?;
        let pipe = pipes.entry(id.to_string()).or_insert_with(|| Pipe::Open {
            ui: Half::new(),
            probe: Half::new(),
        });
        match pipe {
            Pipe::Closed { .. } => None,
            Pipe::Open { ui, probe } => {
                let (mine, theirs) = match end {
                    End::Ui => (ui, probe),
                    End::Probe => (probe, ui),
                };
                mine.connections += 1;
                mine.last_used = Instant::now();
                Some((theirs.tx.clone(), mine.rx.clone()))
            }
        }
    }

    fn leave(&self, id: &str, end: End) {
        if let Ok(mut pipes) = self.pipes.lock()
            && let Some(Pipe::Open { ui, probe }) = pipes.get_mut(id)
        {
            let mine = if end == End::Ui { ui } else { probe };
            mine.connections = mine.connections.saturating_sub(1);
            mine.last_used = Instant::now();
        }
    }

    /// Closes a pipe (its connections end) and keeps a tombstone.
    pub fn close(&self, id: &str) {
        if let Ok(mut pipes) = self.pipes.lock() {
            pipes.insert(id.to_string(), Pipe::Closed { at: Instant::now() });
        }
    }

    /// Whether the pipe is closed (unknown pipes are not).
    pub fn is_closed(&self, id: &str) -> bool {
        self.pipes
            .lock()
            .map(|p| matches!(p.get(id), Some(Pipe::Closed { .. })))
            .unwrap_or(false)
    }

    /// Closes pipes with an end unused for a minute; forgets old tombstones.
    pub fn collect_garbage(&self) {
        let Ok(mut pipes) = self.pipes.lock() else {
            return;
        };
        let now = Instant::now();
        for pipe in pipes.values_mut() {
            if let Pipe::Open { ui, probe } = pipe {
                let idle =
                    |h: &Half| h.connections == 0 && now.duration_since(h.last_used) >= IDLE_END;
                if idle(ui) || idle(probe) {
                    *pipe = Pipe::Closed { at: now };
                }
            }
        }
        pipes.retain(
            |_, p| !matches!(p, Pipe::Closed { at } if now.duration_since(*at) >= TOMBSTONE),
        );
    }

    /// Runs garbage collection every 30 s until shutdown.
    pub async fn run_gc(self, mut shutdown: crate::Shutdown) {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = tick.tick() => self.collect_garbage(),
                _ = shutdown.changed() => return,
            }
        }
    }
}

impl PipeRouter {
    /// Joins a pipe's probe end from inside this process (`rescope launch`, where the
    /// probe needs no websocket). `to_ui` carries the local output to the browser;
    /// `from_ui` yields what the browser sends and ends when the pipe is closed.
    /// Dropping `to_ui` closes the pipe, as the probe's `DELETE` would.
    pub fn attach_probe(&self, id: &str) -> Option<LocalProbeEnd> {
        let (to_other, mine) = self.join(id, End::Probe)?;
        let (to_ui, mut outgoing) = mpsc::channel::<Bytes>(BUFFER);
        let (incoming, from_ui) = mpsc::channel::<Bytes>(BUFFER);
        let router = self.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            let mut rx = mine.lock().await;
            loop {
                tokio::select! {
                    out = outgoing.recv() => match out {
                        Some(bytes) => {
                            if to_other.send(bytes).await.is_err() {
                                break;
                            }
                        }
                        None => {
                            router.close(&id);
                            break;
                        }
                    },
                    inc = rx.recv() => match inc {
                        Some(bytes) => {
                            if incoming.send(bytes).await.is_err() {
                                router.close(&id);
                                break;
                            }
                        }
                        None => break,
                    },
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {
                        if router.is_closed(&id) {
                            break;
                        }
                    }
                }
            }
            drop(rx);
            router.leave(&id, End::Probe);
        });
        Some(LocalProbeEnd { to_ui, from_ui })
    }
}

/// The probe end of a pipe joined from inside the app's process.
#[derive(Debug)]
pub struct LocalProbeEnd {
    pub to_ui: mpsc::Sender<Bytes>,
    pub from_ui: mpsc::Receiver<Bytes>,
}

async fn relay(socket: WebSocket, router: PipeRouter, id: String, end: End) {
    let Some((to_other, mine)) = router.join(&id, end) else {
        return;
    };
    let (mut ws_tx, mut ws_rx) = socket.split();
    let mut rx = mine.lock().await;
    loop {
        tokio::select! {
            outgoing = rx.recv() => match outgoing {
                Some(bytes) => {
                    // Waiting is back-pressure on the other end; a peer that stopped
                    // reading altogether ends the pipe.
                    let sent = tokio::time::timeout(WRITE_TIMEOUT, ws_tx.send(Message::Binary(bytes))).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        break;
                    }
                }
                None => break,
            },
            incoming = ws_rx.next() => {
                let bytes = match incoming {
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Text(t))) => Bytes::copy_from_slice(t.as_bytes()),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                if to_other.send(bytes).await.is_err() {
                    break;
                }
            }
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                if router.is_closed(&id) {
                    break;
                }
            }
        }
    }
    drop(rx);
    // The close flushes first, which a peer that stopped reading would hold forever.
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws_tx.close()).await;
    router.leave(&id, end);
}

fn upgrade(ws: WebSocketUpgrade, s: AppState, id: String, end: End) -> Response {
    if s.pipes.is_closed(&id) {
        return (StatusCode::NOT_FOUND, "404 page not found\n").into_response();
    }
    ws.on_upgrade(move |socket| relay(socket, s.pipes, id, end))
}

pub async fn ui_end(
    ws: WebSocketUpgrade,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Response {
    upgrade(ws, s, id, End::Ui)
}

pub async fn probe_end(
    ws: WebSocketUpgrade,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Response {
    upgrade(ws, s, id, End::Probe)
}

pub async fn delete(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    s.pipes.close(&id);
    StatusCode::OK.into_response()
}

pub async fn check(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    if s.pipes.is_closed(&id) {
        (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}
