//! `GET /api/topology/{view}/ws`: a websocket that streams a view as diffs
//! (protocol.md §7.3). The first message resets the client's node set; later ones add,
//! update and remove nodes. A message goes out every period (`t`, default 1 s), and
//! sooner when new reports arrive, but never more than once per second. A client that
//! stops reading is dropped after a write timeout instead of holding memory.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use rescope_render::wire::NodeSummary;
use rescope_report::Str;
use serde::Serialize;

use crate::api::{ApiError, AppState};

const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
const MIN_GAP: Duration = Duration::from_secs(1);

/// One websocket message.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Diff {
    pub add: Option<Vec<NodeSummary>>,
    pub update: Option<Vec<NodeSummary>>,
    pub remove: Option<Vec<Str>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reset: bool,
}

/// The changes from `old` to `new`.
pub fn diff(
    old: &BTreeMap<Str, NodeSummary>,
    new: &BTreeMap<Str, NodeSummary>,
    reset: bool,
) -> Diff {
    let mut d = Diff {
        reset,
        ..Diff::default()
    };
    let (mut add, mut update, mut remove) = (Vec::new(), Vec::new(), Vec::new());
    for (id, n) in new {
        match old.get(id) {
            None => add.push(n.clone()),
            Some(o) if o != n => update.push(n.clone()),
            Some(_) => {}
        }
    }
    for id in old.keys() {
        if !new.contains_key(id) {
            remove.push(id.clone());
        }
    }
    d.add = (!add.is_empty()).then_some(add);
    d.update = (!update.is_empty()).then_some(update);
    d.remove = (!remove.is_empty()).then_some(remove);
    d
}

/// Parses a Go duration like `5s` or `500ms`.
fn period(query: &[(String, String)]) -> Result<Duration, String> {
    let Some((_, t)) = query.iter().find(|(k, _)| k == "t") else {
        return Ok(Duration::from_secs(1));
    };
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        return Err(format!("invalid duration {t:?}"));
    };
    let secs: f64 = num.parse().map_err(|_| format!("invalid duration {t:?}"))?;
    Duration::try_from_secs_f64(secs * scale)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("invalid duration {t:?}"))
}

pub async fn topology_ws(
    ws: WebSocketUpgrade,
    State(s): State<AppState>,
    Path(view): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    if rescope_render::catalog::view(&view).is_none() {
        return (StatusCode::NOT_FOUND, "404 page not found\n").into_response();
    }
    let every = match period(&query) {
        Ok(p) => p,
        Err(e) => return ApiError(StatusCode::BAD_REQUEST, e).into_response(),
    };
    ws.on_upgrade(move |socket| stream(socket, s, view, query, every))
}

async fn render(
    s: &AppState,
    view: &str,
    query: &[(String, String)],
) -> Option<Arc<BTreeMap<Str, NodeSummary>>> {
    s.renderer.summaries(view, query).await
}

async fn stream(
    socket: WebSocket,
    s: AppState,
    view: String,
    query: Vec<(String, String)>,
    every: Duration,
) {
    s.metrics.websocket_clients.fetch_add(1, Ordering::Relaxed);
    let (mut tx, mut rx) = socket.split();
    // Messages from the client are read and ignored; the read side tells us it left.
    let (closed_tx, mut closed) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = rx.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
        let _ = closed_tx.send(());
    });
    let mut changes = s.collector.subscribe();
    let mut previous: Arc<BTreeMap<Str, NodeSummary>> = Arc::default();
    let mut first = true;
    loop {
        let sent_at = tokio::time::Instant::now();
        let Some(current) = render(&s, &view, &query).await else {
            break;
        };
        let message = diff(&previous, &current, first);
        let Ok(text) = serde_json::to_string(&message) else {
            break;
        };
        match tokio::time::timeout(WRITE_TIMEOUT, tx.send(Message::Text(text.into()))).await {
            Ok(Ok(())) => {}
            _ => break, // gone, or not reading
        }
        previous = current;
        first = false;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            changed = changes.changed() => {
                if changed.is_err() {
                    break;
                }
                tokio::time::sleep_until(sent_at + MIN_GAP).await;
            }
            _ = &mut closed => break,
        }
    }
    // A client that stopped reading would hold the close (it flushes first) forever.
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, tx.close()).await;
    s.metrics.websocket_clients.fetch_sub(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_parse_like_go_durations() {
        let q = |t: &str| vec![("t".to_string(), t.to_string())];
        assert_eq!(period(&[]), Ok(Duration::from_secs(1)));
        assert_eq!(period(&q("5s")), Ok(Duration::from_secs(5)));
        assert_eq!(period(&q("500ms")), Ok(Duration::from_millis(500)));
        assert!(period(&q("soon")).is_err());
        assert!(period(&q("0s")).is_err());
    }
}
