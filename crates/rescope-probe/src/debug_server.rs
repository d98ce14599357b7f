//! `--probe.http.listen`: the probe's own HTTP endpoint. `/metrics` serves the
//! self-metrics in Prometheus text format, `/debug/report` a recent spy report as
//! JSON (what the probe saw at most a few seconds ago, before any delta is computed;
//! see [`crate::spy::DEBUG_COPY_EVERY`]).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rescope_report::{Report, codec};

use crate::Shutdown;
use crate::selfmetrics::SelfMetrics;

#[derive(Clone)]
struct Shared {
    metrics: Arc<SelfMetrics>,
    latest: Arc<Mutex<Option<Arc<Report>>>>,
}

async fn metrics_text(State(s): State<Shared>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

async fn debug_report(State(s): State<Shared>) -> Response {
    let latest = s.latest.lock().ok().and_then(|l| l.clone());
    match latest {
        Some(report) => {
            let body = tokio::task::spawn_blocking(move || codec::to_json_pretty(&report))
                .await
                .unwrap_or_default();
            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        None => (StatusCode::SERVICE_UNAVAILABLE, "no report collected yet\n").into_response(),
    }
}

/// The router, for tests.
pub fn router(metrics: Arc<SelfMetrics>, latest: Arc<Mutex<Option<Arc<Report>>>>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/debug/report", get(debug_report))
        .with_state(Shared { metrics, latest })
}

/// Binds `addr` and serves until shutdown.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<SelfMetrics>,
    latest: Arc<Mutex<Option<Arc<Report>>>>,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics and /debug/report");
    serve_on(listener, metrics, latest, shutdown).await
}

/// Serves on a bound listener until shutdown.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    metrics: Arc<SelfMetrics>,
    latest: Arc<Mutex<Option<Arc<Report>>>>,
    mut shutdown: Shutdown,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics, latest))
        .with_graceful_shutdown(async move {
            while !*shutdown.borrow() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        })
        .await
}
