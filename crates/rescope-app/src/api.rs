//! Scope's HTTP API (protocol.md §7.2): the same paths and JSON shapes, so Scope's UI
//! and scripts written against Scope keep working.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rescope_report::codec::{self, DecodeError, Format};
use rescope_report::xfer::PROBE_ID_HEADER;
use serde::Serialize;
use tracing::{debug, warn};

use crate::auth;
use crate::collector::Collector;
use crate::config::AppConfig;
use crate::renderer::{Renderer, Work};
use crate::ws;

/// Shared by every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    pub config: Arc<AppConfig>,
    pub collector: Arc<Collector>,
    pub controls: crate::controls::ControlRouter,
    pub pipes: crate::pipes::PipeRouter,
    /// Requests made recently, rendered ahead of time when reports arrive.
    watched: Arc<Mutex<HashMap<String, (Work, std::time::Instant)>>>,
    pub metrics: Arc<crate::metrics::AppMetrics>,
    pub renderer: Renderer,
}

impl AppState {
    pub fn new(config: Arc<AppConfig>, collector: Arc<Collector>) -> Self {
        let metrics: Arc<crate::metrics::AppMetrics> = Arc::default();
        AppState {
            renderer: Renderer::start(collector.clone(), metrics.clone()),
            config,
            collector,
            metrics,
            controls: Default::default(),
            pipes: Default::default(),
            watched: Arc::default(),
        }
    }
}

/// An API error: Scope sends the message as a JSON string.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_string(&self.1).unwrap_or_default();
        (self.0, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

fn json_body(bytes: Bytes) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        bytes,
    )
        .into_response()
}

fn to_json<T: Serialize>(value: &T) -> Result<Bytes, ApiError> {
    serde_json::to_vec(value).map(Bytes::from).map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding response: {e}"),
        )
    })
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
}

/// The router with every API route.
pub fn router(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    crate::ui::warm_in_background();
    Router::new()
        .route("/api", get(api_info))
        .route("/api/topology", get(topology_list))
        .route("/api/topology/{view}", get(topology))
        .route("/api/topology/{view}/ws", get(ws::topology_ws))
        .route("/api/topology/{view}/{*node}", get(node_details))
        .route("/api/report", get(get_report).post(post_report))
        .route("/api/probes", get(probes))
        .route("/api/health", get(health))
        .route("/metrics", get(metrics_text))
        .route("/api/control/ws", get(crate::probe_ws::control_ws))
        .route(
            "/api/pipe/{id}",
            get(crate::pipes::ui_end)
                .delete(crate::pipes::delete)
                .post(crate::pipes::delete),
        )
        .route("/api/pipe/{id}/probe", get(crate::pipes::probe_end))
        .route("/api/pipe/{id}/check", get(crate::pipes::check))
        .route("/api/control/{probe}/{node}/{control}", post(control))
        .fallback(crate::ui::serve)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require,
        ))
        .with_state(state)
}

#[derive(Serialize)]
struct Capabilities {
    historic_reports: bool,
}

#[derive(Serialize)]
struct ApiInfo<'a> {
    id: &'a str,
    version: &'a str,
    hostname: &'a str,
    plugins: Vec<PluginJson>,
    capabilities: Capabilities,
}

#[derive(Serialize)]
struct PluginJson {
    id: String,
    label: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    description: String,
    interfaces: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    status: String,
}

async fn api_info(State(s): State<AppState>) -> Result<Response, ApiError> {
    s.renderer.settle().await;
    let status = s.renderer.status();
    let plugins = status
        .plugins
        .values()
        .map(|p| PluginJson {
            id: p.id.to_string(),
            label: p.label.to_string(),
            description: p.description.to_string(),
            interfaces: p.interfaces.iter().map(|i| i.to_string()).collect(),
            api_version: p.api_version.to_string(),
            status: p.status.to_string(),
        })
        .collect();
    let info = ApiInfo {
        id: &s.config.app_id,
        version: &s.config.version,
        hostname: &s.config.hostname,
        plugins,
        capabilities: Capabilities {
            historic_reports: false,
        },
    };
    Ok(json_body(to_json(&info)?))
}

/// How long a request keeps being rendered ahead of time after it was last made.
const WATCH_FOR: std::time::Duration = std::time::Duration::from_secs(120);
/// At most this many requests are rendered ahead of time.
const MAX_WATCHED: usize = 32;

/// Renders on the rendering thread (see [`crate::renderer`]), which caches the body
/// per snapshot generation, and remembers the request so new reports render it ahead
/// of time.
async fn rendered(s: &AppState, work: Work) -> Result<Option<Bytes>, ApiError> {
    let key = work.key();
    if let Ok(mut watched) = s.watched.lock()
        && (watched.len() < MAX_WATCHED || watched.contains_key(&key))
    {
        watched.insert(key.clone(), (work.clone(), std::time::Instant::now()));
    }
    // Rendered from every report received so far.
    if let Some(body) = s.renderer.current(&key) {
        return Ok(Some(body));
    }
    // While reports wait to be applied or a pass runs, the newest finished render is
    // served rather than waiting: with many probes reports arrive all the time, and
    // waiting would make the answer no fresher by the time it arrives. A render is
    // started if none is under way (renders also follow passes, see `warm`). A render
    // older than the collector's window (a wedged renderer) is never served.
    if let Some(body) = s.renderer.recent(&key, s.collector.window()) {
        if !s.renderer.busy() {
            let renderer = s.renderer.clone();
            tokio::spawn(async move {
                let _ = renderer.bodies(vec![work], false).await;
            });
        }
        return Ok(Some(body));
    }
    s.renderer.bodies(vec![work], true).await?.transpose()
}

/// Whenever a pass changed the views, renders the requests clients made recently, so
/// their next request is answered from the cache.
pub async fn warm(s: AppState, mut shutdown: crate::Shutdown) {
    let mut changes = s.renderer.subscribe();
    loop {
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
        let work: Vec<Work> = match s.watched.lock() {
            Ok(mut watched) => {
                watched.retain(|_, (_, at)| at.elapsed() < WATCH_FOR);
                let mut work: Vec<(String, Work)> = watched
                    .iter()
                    .map(|(k, (w, _))| (k.clone(), w.clone()))
                    .collect();
                work.sort_by(|a, b| a.0.cmp(&b.0));
                work.into_iter().map(|(_, w)| w).collect()
            }
            Err(_) => continue,
        };
        if work.is_empty() {
            continue;
        }
        // Waits until the pass is done, so passes never pile up.
        let _ = s.renderer.bodies(work, false).await;
    }
}

async fn topology_list(
    State(s): State<AppState>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let body = rendered(&s, Work::List(query)).await?;
    Ok(body.map_or_else(not_found, json_body))
}

async fn topology(
    State(s): State<AppState>,
    Path(view): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let body = rendered(&s, Work::View(view, query)).await?;
    Ok(body.map_or_else(not_found, json_body))
}

async fn node_details(
    State(s): State<AppState>,
    Path((view, node)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let body = rendered(&s, Work::Node(view, node, query)).await?;
    let body = match body {
        Some(body) if s.config.read_only => Some(without_controls(&body)?),
        other => other,
    };
    Ok(body.map_or_else(not_found, json_body))
}

/// Node details with no control buttons, for a read-only app: the node's own
/// controls and those of its children's rows go.
fn without_controls(body: &[u8]) -> Result<Bytes, ApiError> {
    fn strip(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(controls) = map.get_mut("controls") {
                    *controls = serde_json::Value::Array(Vec::new());
                }
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let internal =
        |e: serde_json::Error| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let mut details: serde_json::Value = serde_json::from_slice(body).map_err(internal)?;
    strip(&mut details);
    serde_json::to_vec(&details)
        .map(Bytes::from)
        .map_err(internal)
}

async fn get_report(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let report = s.renderer.report().await?;
    let msgpack = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.starts_with("application/msgpack"));
    let body = tokio::task::spawn_blocking(move || {
        if msgpack {
            codec::to_msgpack(&report)
        } else {
            codec::to_json(&report).into_bytes()
        }
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let content_type = if msgpack {
        "application/msgpack"
    } else {
        "application/json"
    };
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

/// `POST /api/report`: a probe publishes. gzip is undone with a size cap (a gzip bomb
/// gets 413), the format comes from the content type, and malformed reports get a 400
/// that says what is wrong and where.
async fn post_report(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let content_type = text(header::CONTENT_TYPE);
    let format = if content_type.starts_with("application/msgpack") {
        Format::Msgpack
    } else if content_type.starts_with("application/json") {
        Format::Json
    } else {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("Unsupported Content-Type: {content_type}"),
        ));
    };
    let gzip = text(header::CONTENT_ENCODING).contains("gzip");
    let probe_id = headers
        .get(PROBE_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .unwrap_or("unidentified")
        .to_string();
    let limit = s.config.max_report_bytes;
    let sent_bytes = body.len();
    let decoded = tokio::task::spawn_blocking(move || {
        let plain;
        let bytes: &[u8] = if gzip {
            plain = codec::gunzip(&body, limit)?;
            &plain
        } else {
            if body.len() > limit {
                return Err(DecodeError::TooLarge { limit });
            }
            &body
        };
        codec::decode_plain(bytes, format)
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let report = match decoded {
        Ok(r) => r,
        Err(e @ DecodeError::TooLarge { .. }) => {
            s.metrics
                .reports_rejected
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            warn!(probe = %probe_id, error = %e, "rejected report");
            return Err(ApiError(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()));
        }
        Err(e) => {
            s.metrics
                .reports_rejected
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            warn!(probe = %probe_id, error = %e, "rejected report");
            return Err(ApiError(StatusCode::BAD_REQUEST, e.to_string()));
        }
    };
    let future = report.ts.nanos_since(rescope_report::GoTime::now());
    if future > 60_000_000_000 {
        warn!(probe = %probe_id, seconds = future / 1_000_000_000, "report is stamped in the future; is the probe's clock right?");
    }
    let kind = s.collector.add(&probe_id, report);
    s.metrics.received(kind, sent_bytes);
    debug!(probe = %probe_id, ?kind, "report received");
    Ok(StatusCode::OK.into_response())
}

#[derive(Serialize)]
struct ProbeJson {
    id: String,
    hostname: String,
    version: String,
    #[serde(rename = "lastSeen")]
    last_seen: String,
}

async fn probes(
    State(s): State<AppState>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    if query.iter().any(|(k, _)| k == "sparse") {
        return Ok(json_body(to_json(&s.collector.has_reports())?));
    }
    let list: Vec<ProbeJson> = s
        .collector
        .probes()
        .into_iter()
        .map(|p| ProbeJson {
            id: p.id,
            hostname: p.hostname,
            version: p.version,
            last_seen: p.last_seen.to_rfc3339(),
        })
        .collect();
    Ok(json_body(to_json(&list)?))
}

async fn metrics_text(State(s): State<AppState>) -> Response {
    let probes = s.collector.probes().len();
    let text = s.renderer.metrics(probes).await.unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// `POST /api/control/{probeID}/{nodeID}/{control}`: relays a control to its probe.
async fn control(
    State(s): State<AppState>,
    Path((probe, node, control)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if s.config.read_only {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            format!(
                "{control} is refused: this app is read-only (--read-only turns every control off)"
            ),
        ));
    }
    if crate::controls::runs_commands(&control)
        && s.config.exposed_without_auth()
        && !s.config.allow_remote_exec
    {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            format!(
                "{control} is refused: this app is reachable from other machines without authentication. \
                 Restart it with --basic-auth (and a password file), or listen on 127.0.0.1, \
                 or allow it anyway with --allow-remote-exec"
            ),
        ));
    }
    let control_args = if body.is_empty() {
        None
    } else {
        Some(
            serde_json::from_slice::<std::collections::BTreeMap<String, String>>(&body).map_err(
                |e| {
                    ApiError(
                        StatusCode::BAD_REQUEST,
                        format!("control arguments must be a JSON object of strings: {e}"),
                    )
                },
            )?,
        )
    };
    let request = rescope_report::xfer::ControlRequest {
        app_id: String::new(),
        node_id: node,
        control,
        control_args,
    };
    match s.controls.call(&probe, request).await {
        Err(e) => Err(ApiError(StatusCode::BAD_REQUEST, e)),
        Ok(r) if !r.error.is_empty() => Err(ApiError(StatusCode::BAD_REQUEST, r.error)),
        Ok(r) => Ok(json_body(to_json(&r)?)),
    }
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    probes: usize,
    nodes: usize,
    /// Reports received and not applied yet, and how long the oldest has waited.
    queued_reports: usize,
    queued_ms: f64,
    /// Queued reports dropped since the start because a newer full report of the
    /// same probe arrived first (the app was behind).
    superseded_reports: u64,
    /// The last pass of the rendering thread: how long it took, how many reports it
    /// applied and how long the oldest of them had waited.
    pass_ms: f64,
    pass_reports: usize,
    pass_lag_ms: f64,
}

/// Cheap: answered from what the rendering thread last published.
async fn health(State(s): State<AppState>) -> Result<Response, ApiError> {
    let status = s.renderer.status();
    let (queued, oldest) = s.collector.backlog();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    let h = Health {
        status: "ok",
        probes: s.collector.probes().len(),
        nodes: status.nodes,
        queued_reports: queued,
        superseded_reports: s.collector.superseded(),
        queued_ms: ms(oldest),
        pass_ms: ms(status.pass_time),
        pass_reports: status.pass_reports,
        pass_lag_ms: ms(status.pass_lag),
    };
    Ok(json_body(to_json(&h)?))
}
