//! Serving the plugin protocol on the socket: `GET /report` and `POST /control`.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rescope_report::xfer::{ControlRequest, ControlResponse};
use rescope_report::{PluginSpec, codec};
use serde::Deserialize;
use tracing::{info, warn};

use crate::control::{ControlReply, Shortcut, encode_reply};
use crate::report::ReportBuilder;
use crate::socket::{PluginSocket, SocketError};
use crate::spec::{InvalidSpec, Spec};

/// Any error a plugin's handler returns; `?` converts most errors into it.
pub type PluginError = Box<dyn std::error::Error + Send + Sync>;

/// What a plugin does. The server calls these on a blocking-capable thread, so they
/// may read files; the probe waits at most 500 ms for an answer, so slow sources
/// (remote APIs, container engines) are best read in the background and cached.
pub trait Plugin: Send + Sync + 'static {
    /// Fills in the plugin's report. An error answers the probe with HTTP 500, so the
    /// plugin shows with an error status and its data is left out until it recovers.
    fn report(&self, report: &mut ReportBuilder) -> Result<(), PluginError>;

    /// Runs a control (only called for [controller](Spec::controller) plugins).
    /// `request.control` is the control's ID as the plugin defined it and
    /// `request.node_id` the node it was run on. An error is shown to the user.
    fn control(&self, request: &ControlRequest) -> Result<ControlReply, PluginError> {
        Err(format!("control {:?} is not implemented", request.control).into())
    }
}

impl<P: Plugin> Plugin for Arc<P> {
    fn report(&self, report: &mut ReportBuilder) -> Result<(), PluginError> {
        (**self).report(report)
    }
    fn control(&self, request: &ControlRequest) -> Result<ControlReply, PluginError> {
        (**self).control(request)
    }
}

/// Why serving stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Spec(#[from] InvalidSpec),
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error("cannot listen for signals: {0}")]
    Signals(#[source] std::io::Error),
    #[error("serving {path}: {source}")]
    Serve {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone)]
enum Location {
    Root(PathBuf),
    Path(PathBuf),
}

/// Serves a [`Plugin`] on its socket.
#[derive(Debug)]
pub struct PluginServer<P> {
    spec: Spec,
    plugin: P,
    location: Location,
}

impl<P: Plugin> PluginServer<P> {
    /// A server for `plugin` with socket `<root>/<id>/<id>.sock`, where the root is
    /// `$RESCOPE_PLUGINS_ROOT` or `/var/run/scope/plugins`.
    pub fn new(spec: Spec, plugin: P) -> Self {
        PluginServer {
            spec,
            plugin,
            location: Location::Root(crate::default_plugins_root()),
        }
    }

    /// Puts the socket under another plugins root (`<root>/<id>/<id>.sock`).
    pub fn plugins_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.location = Location::Root(root.into());
        self
    }

    /// Puts the socket exactly at `path`. Its file name decides the plugin ID the
    /// probe expects, so it should be `<id>.sock`.
    pub fn socket_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.location = Location::Path(path.into());
        self
    }

    /// Creates the socket (see [`PluginSocket`]); serving starts with
    /// [`BoundPlugin::serve`] or [`BoundPlugin::serve_until`]. Binding first lets a
    /// caller report the socket path, or fail early, before it starts serving.
    pub fn bind(self) -> Result<BoundPlugin<P>, ServeError> {
        self.spec.validate()?;
        let socket = match &self.location {
            Location::Root(root) => PluginSocket::bind_in_root(root, self.spec.id())?,
            Location::Path(path) => {
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                let derived = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
                if derived != self.spec.id() {
                    warn!(
                        socket = %path.display(),
                        plugin = self.spec.id(),
                        "the probe derives the plugin ID {derived:?} from this socket name and will reject answers for {:?}; name it {:?}.sock",
                        self.spec.id(),
                        self.spec.id()
                    );
                }
                PluginSocket::bind_path(path)?
            }
        };
        Ok(BoundPlugin {
            spec: self.spec,
            plugin: self.plugin,
            socket,
        })
    }

    /// Binds and serves until SIGINT or SIGTERM, then removes the socket.
    pub async fn serve(self) -> Result<(), ServeError> {
        self.bind()?.serve().await
    }

    /// Binds and serves until `shutdown` completes, then removes the socket.
    pub async fn serve_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        self.bind()?.serve_until(shutdown).await
    }
}

/// A plugin whose socket exists; dropping it removes the socket.
#[derive(Debug)]
pub struct BoundPlugin<P> {
    spec: Spec,
    plugin: P,
    socket: PluginSocket,
}

impl<P: Plugin> BoundPlugin<P> {
    pub fn socket_path(&self) -> &std::path::Path {
        self.socket.path()
    }

    /// Serves until SIGINT or SIGTERM, then removes the socket.
    pub async fn serve(self) -> Result<(), ServeError> {
        let shutdown = shutdown_signal().map_err(ServeError::Signals)?;
        self.serve_until(shutdown).await
    }

    /// Serves until `shutdown` completes, then removes the socket. Requests in flight
    /// get a second to finish.
    pub async fn serve_until(
        mut self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let path = self.socket.path().to_path_buf();
        let serve_error = |source| ServeError::Serve {
            path: path.clone(),
            source,
        };
        let listener = self
            .socket
            .take_listener()
            .ok_or_else(|| serve_error(std::io::Error::other("listener already taken")))?;
        listener.set_nonblocking(true).map_err(serve_error)?;
        let listener = tokio::net::UnixListener::from_std(listener).map_err(serve_error)?;
        let shared = Arc::new(Shared {
            wire_spec: self.spec.to_wire(),
            spec: self.spec,
            plugin: self.plugin,
            last_error: Mutex::new(None),
        });
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = axum::serve(listener, router(shared)).with_graceful_shutdown(async {
            let _ = stop_rx.await;
        });
        let mut server = std::pin::pin!(server.into_future());
        tokio::select! {
            result = &mut server => {
                self.socket.remove();
                return result.map_err(serve_error);
            }
            () = shutdown => {}
        }
        // Remove the socket first, so the probe stops polling at once.
        self.socket.remove();
        let _ = stop_tx.send(());
        match tokio::time::timeout(Duration::from_secs(1), server).await {
            Ok(result) => result.map_err(serve_error),
            Err(_) => Ok(()),
        }
    }
}

/// Completes on SIGINT or SIGTERM. The handlers are installed at once, so a signal
/// that arrives before the future is awaited is not lost. Call it inside a tokio
/// runtime.
pub fn shutdown_signal() -> Result<impl Future<Output = ()> + Send + 'static, std::io::Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        info!(signal = name, "stopping");
    })
}

struct Shared<P> {
    spec: Spec,
    wire_spec: PluginSpec,
    plugin: P,
    /// The last report error, so a persisting failure is logged once.
    last_error: Mutex<Option<String>>,
}

impl<P: Plugin> Shared<P> {
    /// The plugin's report as JSON, with its spec in `Plugins`.
    fn encode(&self, builder: ReportBuilder) -> String {
        let mut report = builder.into_report();
        report.plugins.clear();
        report
            .plugins
            .insert(self.wire_spec.id.clone(), self.wire_spec.clone());
        codec::to_json(&report)
    }

    fn make_report(&self, probe_id: Option<String>) -> Result<String, String> {
        let mut builder = ReportBuilder::for_probe(probe_id);
        let outcome = self
            .plugin
            .report(&mut builder)
            .map(|()| self.encode(builder))
            .map_err(|e| e.to_string());
        self.note(&outcome);
        outcome
    }

    fn note(&self, outcome: &Result<String, String>) {
        let Ok(mut last) = self.last_error.lock() else {
            return;
        };
        match (outcome, last.as_ref()) {
            (Err(e), previous) if previous != Some(e) => {
                warn!(plugin = self.spec.id(), error = %e, "report failed; answering 500 until it works");
                *last = Some(e.clone());
            }
            (Ok(_), Some(_)) => {
                info!(plugin = self.spec.id(), "report works again");
                *last = None;
            }
            _ => {}
        }
    }

    fn run_control(&self, request: ControlRequest) -> String {
        if !self.spec.is_controller() {
            let response = ControlResponse::error(format!(
                "the {} plugin offers no controls",
                self.spec.label()
            ));
            return encode_reply(&response, None);
        }
        let reply = match self.plugin.control(&request) {
            Ok(reply) => reply,
            Err(e) => ControlReply::error(e.to_string()),
        };
        if !reply.response.error.is_empty() {
            info!(control = %request.control, node = %request.node_id, error = %reply.response.error, "control failed");
        }
        let shortcut = match reply.shortcut {
            Shortcut::None => None,
            Shortcut::Report(builder) => Some(self.encode(*builder)),
            Shortcut::Fresh => match self.make_report(None) {
                Ok(json) => Some(json),
                Err(e) => {
                    warn!(error = %e, "no shortcut report: the report failed after the control");
                    None
                }
            },
        };
        encode_reply(&reply.response, shortcut.as_deref())
    }
}

#[derive(Debug, Deserialize)]
struct Handshake {
    api_version: Option<String>,
    probe_id: Option<String>,
}

fn router<P: Plugin>(shared: Arc<Shared<P>>) -> Router {
    Router::new()
        .route("/report", get(report::<P>))
        .route("/control", post(control::<P>))
        .with_state(shared)
}

fn json(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn report<P: Plugin>(
    State(shared): State<Arc<Shared<P>>>,
    Query(handshake): Query<Handshake>,
) -> Response {
    if let Some(v) = &handshake.api_version
        && v != rescope_report::plugin::PLUGIN_API_VERSION
    {
        warn!(api_version = %v, "the probe speaks another plugin API version");
    }
    let outcome = tokio::task::spawn_blocking(move || shared.make_report(handshake.probe_id)).await;
    match outcome {
        Ok(Ok(body)) => json(body),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
        Err(_) => {
            warn!("the report handler panicked");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the report handler panicked",
            )
                .into_response()
        }
    }
}

async fn control<P: Plugin>(State(shared): State<Arc<Shared<P>>>, body: Bytes) -> Response {
    let request: ControlRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let response = ControlResponse::error(format!("invalid control request: {e}"));
            return (StatusCode::BAD_REQUEST, json(encode_reply(&response, None))).into_response();
        }
    };
    match tokio::task::spawn_blocking(move || shared.run_control(request)).await {
        Ok(body) => json(body),
        Err(_) => {
            warn!("the control handler panicked");
            json(encode_reply(
                &ControlResponse::error("the control handler panicked"),
                None,
            ))
        }
    }
}
