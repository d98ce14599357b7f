//! The probe's control registry: one table from control ID to handler, used by every
//! integration that offers controls (the host terminal, Docker, plugins), and one entry
//! point, [`ControlRegistry::handle`], used by whatever carries requests from an app
//! (the control websocket of [`crate::publish`], or a direct call in `rescope launch`).
//!
//! A handler may return a *shortcut report* with its answer (a plugin reporting the
//! effect of its control at once). The registry forwards it to the shortcut sink, which
//! the publisher sends immediately instead of waiting for the next publish.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};

use rescope_report::Report;
use rescope_report::xfer::{ControlRequest, ControlResponse};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// What a control handler produced.
#[derive(Debug, Default)]
pub struct ControlOutcome {
    pub response: ControlResponse,
    /// A report to publish at once (marked `Shortcut`).
    pub shortcut: Option<Report>,
}

impl From<ControlResponse> for ControlOutcome {
    fn from(response: ControlResponse) -> Self {
        ControlOutcome {
            response,
            shortcut: None,
        }
    }
}

pub type ControlFuture = Pin<Box<dyn Future<Output = ControlOutcome> + Send>>;

/// Runs one control.
pub trait ControlHandler: Send + Sync {
    fn handle(&self, request: ControlRequest) -> ControlFuture;
}

impl<F, Fut> ControlHandler for F
where
    F: Fn(ControlRequest) -> Fut + Send + Sync,
    Fut: Future<Output = ControlOutcome> + Send + 'static,
{
    fn handle(&self, request: ControlRequest) -> ControlFuture {
        Box::pin(self(request))
    }
}

/// Every control this probe offers, by ID. Cheap to clone; clones share the table.
#[derive(Clone)]
pub struct ControlRegistry {
    handlers: Arc<RwLock<HashMap<String, Arc<dyn ControlHandler>>>>,
    enabled: bool,
    shortcuts: Arc<Mutex<Option<mpsc::Sender<Report>>>>,
}

impl fmt::Debug for ControlRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlRegistry")
            .field("enabled", &self.enabled)
            .field("controls", &self.ids())
            .finish()
    }
}

/// The answer to a control the registry does not know (Scope's wording).
pub fn not_recognised(control: &str) -> ControlResponse {
    ControlResponse::error(format!("Control \"{control}\" not recognised"))
}

impl ControlRegistry {
    /// A registry; a disabled one (`--probe.no-controls`) refuses every request.
    pub fn new(enabled: bool) -> Self {
        ControlRegistry {
            handlers: Arc::default(),
            enabled,
            shortcuts: Arc::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Adds or replaces the handler of a control.
    pub fn register(&self, id: impl Into<String>, handler: impl ControlHandler + 'static) {
        let id = id.into();
        debug!(control = %id, "control registered");
        if let Ok(mut handlers) = self.handlers.write() {
            handlers.insert(id, Arc::new(handler));
        }
    }

    /// Removes a control; later requests for it are "not recognised".
    pub fn unregister(&self, id: &str) {
        if let Ok(mut handlers) = self.handlers.write()
            && handlers.remove(id).is_some()
        {
            debug!(control = %id, "control removed");
        }
    }

    /// Whether a control is registered.
    pub fn contains(&self, id: &str) -> bool {
        self.handlers
            .read()
            .map(|h| h.contains_key(id))
            .unwrap_or(false)
    }

    /// The registered control IDs, sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .handlers
            .read()
            .map(|h| h.keys().cloned().collect())
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// Where shortcut reports go. Without a sink they are dropped.
    pub fn set_shortcut_sink(&self, sink: mpsc::Sender<Report>) {
        if let Ok(mut slot) = self.shortcuts.lock() {
            *slot = Some(sink);
        }
    }

    /// Publishes a shortcut report through the sink, if there is room.
    pub fn publish_shortcut(&self, mut report: Report) {
        report.shortcut = true;
        let sink = self.shortcuts.lock().ok().and_then(|s| s.clone());
        match sink {
            Some(sink) => {
                if sink.try_send(report).is_err() {
                    warn!("dropping a shortcut report: the publisher's queue is full");
                }
            }
            None => debug!("no publisher for shortcut reports; dropped"),
        }
    }

    /// Runs a control request and returns the answer for the app. Unknown controls
    /// and a disabled registry give an error answer, never a failure of the channel.
    pub async fn handle(&self, request: ControlRequest) -> ControlResponse {
        if !self.enabled {
            return ControlResponse::error(
                "controls are disabled on this probe (it runs with --probe.no-controls)",
            );
        }
        let handler = self
            .handlers
            .read()
            .ok()
            .and_then(|h| h.get(&request.control).cloned());
        let Some(handler) = handler else {
            return not_recognised(&request.control);
        };
        let control = request.control.clone();
        let outcome = handler.handle(request).await;
        if !outcome.response.error.is_empty() {
            debug!(%control, error = %outcome.response.error, "control failed");
        }
        if let Some(report) = outcome.shortcut {
            self.publish_shortcut(report);
        }
        outcome.response
    }
}

/// Reads a decimal control argument the way Scope's resize controls do:
/// `Missing argument: <name>` or `Bad parameter: <name>`.
pub fn numeric_arg(request: &ControlRequest, name: &str) -> Result<u16, String> {
    let raw = request
        .arg(name)
        .ok_or_else(|| format!("Missing argument: {name}"))?;
    raw.trim()
        .parse::<u16>()
        .map_err(|_| format!("Bad parameter: {name}"))
}

/// A required string control argument.
pub fn string_arg<'a>(request: &'a ControlRequest, name: &str) -> Result<&'a str, String> {
    request
        .arg(name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("Missing argument: {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(control: &str) -> ControlRequest {
        ControlRequest {
            control: control.into(),
            node_id: "h;<host>".into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn dispatches_by_id_and_says_when_a_control_is_unknown() {
        let registry = ControlRegistry::new(true);
        registry.register("echo_node", |r: ControlRequest| async move {
            ControlOutcome::from(ControlResponse {
                value: Some(serde_json::Value::String(r.node_id)),
                ..Default::default()
            })
        });
        let answer = registry.handle(request("echo_node")).await;
        assert_eq!(answer.value, Some(serde_json::json!("h;<host>")));
        assert_eq!(
            registry.handle(request("nope")).await.error,
            "Control \"nope\" not recognised"
        );
        registry.unregister("echo_node");
        assert!(!registry.handle(request("echo_node")).await.error.is_empty());
    }

    #[tokio::test]
    async fn a_disabled_registry_refuses_everything() {
        let registry = ControlRegistry::new(false);
        registry.register("x", |_| async { ControlOutcome::default() });
        let answer = registry.handle(request("x")).await;
        assert!(answer.error.contains("no-controls"), "{}", answer.error);
    }

    #[tokio::test]
    async fn shortcut_reports_reach_the_sink_marked_as_shortcuts() {
        let registry = ControlRegistry::new(true);
        let (tx, mut rx) = mpsc::channel(4);
        registry.set_shortcut_sink(tx);
        registry.register("s", |_| async {
            ControlOutcome {
                response: ControlResponse::default(),
                shortcut: Some(Report::empty()),
            }
        });
        assert_eq!(
            registry.handle(request("s")).await,
            ControlResponse::default()
        );
        let report = rx.try_recv().expect("a shortcut report");
        assert!(report.shortcut);
    }

    #[test]
    fn numeric_arguments_use_scopes_messages() {
        let mut r = request("host_resize_exec_tty");
        assert_eq!(
            numeric_arg(&r, "height").expect_err("missing"),
            "Missing argument: height"
        );
        r.control_args = Some([("height".to_string(), "x1".to_string())].into());
        assert_eq!(
            numeric_arg(&r, "height").expect_err("bad"),
            "Bad parameter: height"
        );
        r.control_args = Some([("height".to_string(), "40".to_string())].into());
        assert_eq!(numeric_arg(&r, "height").expect("ok"), 40);
    }
}
