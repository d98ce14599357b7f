//! `GET /api/topology/{view}/ws`: a websocket that streams a view as diffs
//! (protocol.md §7.3). The first message resets the client's node set; later ones add,
//! update and remove nodes. A message goes out every period (`t`, default 1 s), and
//! sooner when a pass of the rendering thread changed the views, but never more than
//! twice a second. A client that stops reading is dropped after a write timeout
//! instead of holding memory.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use rescope_report::Str;

use crate::api::{ApiError, AppState};
use crate::renderer::{Entry, Summaries};

const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
const MIN_GAP: Duration = Duration::from_millis(500);

/// The message that takes a client from `old` to `new`, as Scope's app writes it:
/// `{"add":[…],"update":[…],"remove":[…]}` with `null` for an empty list, and
/// `"reset":true` on the first message. Summaries are copied from the listing's JSON.
pub fn diff(old: &Summaries, new: &Summaries, reset: bool) -> String {
    let (mut add, mut update, mut remove): (Vec<&Entry>, Vec<&Entry>, Vec<&Str>) =
        (Vec::new(), Vec::new(), Vec::new());
    let (mut a, mut b) = (old.iter().peekable(), new.iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (Some((ka, ea)), Some((kb, eb))) => match ka.cmp(kb) {
                std::cmp::Ordering::Less => {
                    remove.push(ka);
                    a.next();
                }
                std::cmp::Ordering::Greater => {
                    add.push(eb);
                    b.next();
                }
                std::cmp::Ordering::Equal => {
                    if !ea.same(eb) {
                        update.push(eb);
                    }
                    a.next();
                    b.next();
                }
            },
            (Some((ka, _)), None) => {
                remove.push(ka);
                a.next();
            }
            (None, Some((_, eb))) => {
                add.push(eb);
                b.next();
            }
            (None, None) => break,
        }
    }
    let size: usize = add
        .iter()
        .chain(update.iter())
        .map(|e| e.value().len() + 1)
        .sum();
    let mut out: Vec<u8> = Vec::with_capacity(size + 64);
    let list = |out: &mut Vec<u8>, entries: &[&Entry]| {
        if entries.is_empty() {
            out.extend_from_slice(b"null");
            return;
        }
        out.push(b'[');
        for (i, e) in entries.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&e.value());
        }
        out.push(b']');
    };
    out.extend_from_slice(b"{\"add\":");
    list(&mut out, &add);
    out.extend_from_slice(b",\"update\":");
    list(&mut out, &update);
    out.extend_from_slice(b",\"remove\":");
    if remove.is_empty() {
        out.extend_from_slice(b"null");
    } else {
        let ids = serde_json::to_vec(&remove).unwrap_or_else(|_| b"null".to_vec());
        out.extend_from_slice(&ids);
    }
    if reset {
        out.extend_from_slice(b",\"reset\":true");
    }
    out.push(b'}');
    // Built from JSON strings and valid UTF-8 summaries.
    String::from_utf8(out).unwrap_or_default()
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
    let mut changes = s.renderer.subscribe();
    let mut previous: Arc<Summaries> = Arc::default();
    let mut first = true;
    let mut ticked = true;
    loop {
        let sent_at = tokio::time::Instant::now();
        let Some((generation, current)) = s.renderer.summaries(&view, &query, first).await else {
            break;
        };
        let text = diff(&previous, &current, first);
        // Every period brings a message, as with Scope; a pass that did not change this
        // view does not.
        let empty = !first && Arc::ptr_eq(&previous, &current) || text == EMPTY;
        if ticked || !empty {
            match tokio::time::timeout(WRITE_TIMEOUT, tx.send(Message::Text(text.into()))).await {
                Ok(Ok(())) => {}
                _ => break, // gone, or not reading
            }
        }
        previous = current;
        first = false;
        tokio::select! {
            _ = tokio::time::sleep(every) => ticked = true,
            changed = async { changes.wait_for(|g| *g > generation).await.is_ok() } => {
                if !changed {
                    break;
                }
                ticked = false;
                tokio::time::sleep_until(sent_at + MIN_GAP).await;
            }
            _ = &mut closed => break,
        }
    }
    // A client that stopped reading would hold the close (it flushes first) forever.
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, tx.close()).await;
    s.metrics.websocket_clients.fetch_sub(1, Ordering::Relaxed);
}

/// A message without changes.
const EMPTY: &str = r#"{"add":null,"update":null,"remove":null}"#;

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
