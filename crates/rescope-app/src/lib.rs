//! The Rescope app: receives reports from probes, keeps each probe's current state,
//! renders the views, and serves Scope's HTTP API (and Rescope's UI) over HTTP and
//! websockets.

pub mod api;
pub mod auth;
pub mod collector;
pub mod config;
pub mod controls;
pub mod metrics;
pub mod pipes;
pub mod probe_ws;
pub mod renderer;
pub mod store;
pub mod tls;
pub mod ui;
pub mod ws;

use std::sync::Arc;

use tracing::{info, warn};

pub use api::AppState;
pub use collector::Collector;
pub use config::AppConfig;

/// Stops the app when the value becomes `true` or the sender is dropped.
pub type Shutdown = tokio::sync::watch::Receiver<bool>;

/// Serves the API on an already bound listener until shutdown.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    config: Arc<AppConfig>,
    collector: Arc<Collector>,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    serve_with(listener, AppState::new(config, collector), shutdown).await
}

/// Like [`serve_on`], with a prepared state (e.g. with a local probe's control link).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: AppState,
    mut shutdown: Shutdown,
) -> std::io::Result<()> {
    let config = state.config.clone();
    if config.exposed_without_auth() {
        warn!(
            listen = %config.listen,
            "the app is reachable from other machines without authentication: anyone who can reach it sees this \
             host's processes and connections; commands (shells, exec) are refused unless --allow-remote-exec is given; \
             set --basic-auth to require credentials"
        );
    }
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    info!(address = %listener.local_addr()?, scheme, "serving the Rescope app");
    tokio::spawn(state.pipes.clone().run_gc(shutdown.clone()));
    tokio::spawn(api::warm(state.clone(), shutdown.clone()));
    let app = api::router(state);
    if let Some(tls) = config.tls.clone() {
        return tls::serve(listener, app, tls, shutdown).await;
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            while !*shutdown.borrow() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        })
        .await
}
