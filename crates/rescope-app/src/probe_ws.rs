//! `GET /api/control/ws`: the websocket a probe opens so the app can call its controls
//! (protocol.md §5.5). The probe is the RPC server: the app sends Go `net/rpc` calls
//! as two JSON text frames (a `Request` header, then the `Value`), the probe answers
//! with a `Response` header and a `Value`; `Seq` matches answers to calls, so several
//! calls can be in flight at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use rescope_report::xfer::{
    CONTROL_METHOD, ControlRequest, ControlResponse, PROBE_ID_HEADER, RpcFrame, RpcRequestHeader,
};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info};

use crate::api::{ApiError, AppState};
use crate::controls::ProbeLink;

/// Keepalive: a ping this often; a silent peer is dropped after [`PONG_WAIT`].
const PING_PERIOD: Duration = Duration::from_millis(33_333);
const PONG_WAIT: Duration = Duration::from_secs(60);

type Reply = oneshot::Sender<Result<ControlResponse, String>>;

struct WsLink {
    calls: mpsc::Sender<(ControlRequest, Reply)>,
}

impl ProbeLink for WsLink {
    fn call(
        &self,
        request: ControlRequest,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<ControlResponse, String>> + Send>>
    {
        let calls = self.calls.clone();
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            calls
                .send((request, tx))
                .await
                .map_err(|_| "probe disconnected".to_string())?;
            rx.await
                .map_err(|_| "probe disconnected before answering".to_string())?
        })
    }
}

pub async fn control_ws(
    ws: WebSocketUpgrade,
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Response {
    let Some(probe_id) = headers
        .get(PROBE_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
    else {
        return ApiError(StatusCode::BAD_REQUEST, PROBE_ID_HEADER.to_string()).into_response();
    };
    ws.on_upgrade(move |socket| serve(socket, s, probe_id))
}

async fn serve(socket: WebSocket, s: AppState, probe_id: String) {
    let (calls_tx, mut calls) = mpsc::channel::<(ControlRequest, Reply)>(64);
    let token = s
        .controls
        .register(&probe_id, Arc::new(WsLink { calls: calls_tx }));
    info!(probe = %probe_id, "probe connected its control channel");
    let (mut tx, mut rx) = socket.split();
    let mut pending: HashMap<u64, Reply> = HashMap::new();
    let mut seq: u64 = 0;
    // The header of the answer whose value frame comes next.
    let mut answering: Option<(u64, String)> = None;
    let mut ping = tokio::time::interval(PING_PERIOD);
    ping.tick().await;
    let mut last_heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            call = calls.recv() => {
                let Some((request, reply)) = call else { break };
                let header = RpcFrame { request: Some(RpcRequestHeader { service_method: CONTROL_METHOD.into(), seq }), ..Default::default() };
                let value = RpcFrame { value: serde_json::to_value(&request).ok(), ..Default::default() };
                let (Ok(h), Ok(v)) = (serde_json::to_string(&header), serde_json::to_string(&value)) else { continue };
                if tx.send(Message::Text(h.into())).await.is_err() || tx.send(Message::Text(v.into())).await.is_err() {
                    let _ = reply.send(Err("probe disconnected".into()));
                    break;
                }
                pending.insert(seq, reply);
                seq += 1;
            }
            message = rx.next() => {
                let Some(Ok(message)) = message else { break };
                last_heard = tokio::time::Instant::now();
                let text = match message {
                    Message::Text(t) => t,
                    Message::Close(_) => break,
                    _ => continue,
                };
                let Ok(frame) = serde_json::from_str::<RpcFrame>(&text) else {
                    debug!(probe = %probe_id, "ignoring an unreadable control frame");
                    continue;
                };
                if let Some(header) = frame.response {
                    answering = Some((header.seq, header.error));
                    continue;
                }
                if let Some((answer_seq, error)) = answering.take() {
                    let Some(reply) = pending.remove(&answer_seq) else { continue };
                    let result = if !error.is_empty() {
                        Err(error)
                    } else {
                        serde_json::from_value::<ControlResponse>(frame.value.unwrap_or_default())
                            .map_err(|e| format!("probe sent an unreadable answer: {e}"))
                    };
                    let _ = reply.send(result);
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > PONG_WAIT || tx.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break;
                }
            }
        }
    }
    s.controls.unregister(&probe_id, token);
    for (_, reply) in pending {
        let _ = reply.send(Err("probe disconnected before answering".into()));
    }
    info!(probe = %probe_id, "probe closed its control channel");
}
