//! Write Rescope probe plugins in Rust.
//!
//! A plugin is an HTTP server on a Unix socket under the plugins directory
//! (`/var/run/scope/plugins` by default). The probe finds the socket, asks it for a
//! partial report every second (`GET /report`) and merges that report into its own;
//! a plugin that offers controls also gets `POST /control` when someone runs one. The
//! protocol is Weave Scope's, so a plugin built with this crate works with Scope too.
//!
//! This crate does the plumbing, so a plugin is only what it measures:
//!
//! - [`PluginServer`] makes the plugin's own directory (mode 0700) and socket,
//!   replaces a stale socket left by a crashed run, refuses to start twice, serves
//!   HTTP/1.1 on the socket, and removes the socket on SIGINT, SIGTERM or drop;
//! - [`ReportBuilder`] builds the report with the node IDs the probe uses
//!   ([`ReportBuilder::host`], [`ReportBuilder::process`], [`ReportBuilder::container`]),
//!   metrics, metadata, table rows and the controls a node offers;
//! - [`MetricTemplate`], [`MetadataTemplate`], [`TableTemplate`] and [`Control`] say
//!   how the UI shows them;
//! - [`ControlReply`] answers a control with a value, an error, or a shortcut report
//!   that shows the change at once;
//! - [`every`] repeats slow work (sampling, asking the Docker engine) in the
//!   background, so `report` only reads what it left behind;
//! - [`client::PluginClient`] talks to a plugin the way the probe does, for tests.
//!
//! # A reporter and controller plugin
//!
//! ```no_run
//! use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
//! use rescope_plugin::{Control, ControlReply, ControlRequest, MetricTemplate, Plugin,
//!     PluginError, PluginServer, ReportBuilder, Spec, TopologyKind};
//!
//! struct Uptime { host: String, in_hours: AtomicBool }
//!
//! impl Plugin for Uptime {
//!     fn report(&self, r: &mut ReportBuilder) -> Result<(), PluginError> {
//!         let text = std::fs::read_to_string("/proc/uptime")?;
//!         let secs: f64 = text.split_whitespace().next().unwrap_or("").parse()?;
//!         let hours = self.in_hours.load(Relaxed);
//!         r.topology(TopologyKind::Host)
//!             .metric_template(MetricTemplate::new("uptime", "Uptime").priority(20.0))
//!             .control(Control::new("toggle-unit", "Hours or seconds", "fa fa-clock"));
//!         r.host(&self.host)
//!             .metric("uptime", if hours { secs / 3600.0 } else { secs }, 0.0)
//!             .active_controls(["toggle-unit"]);
//!         Ok(())
//!     }
//!
//!     fn control(&self, _request: &ControlRequest) -> Result<ControlReply, PluginError> {
//!         self.in_hours.fetch_xor(true, Relaxed);
//!         Ok(ControlReply::ok().with_fresh_report())
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), rescope_plugin::ServeError> {
//!     let spec = Spec::new("uptime", "Uptime").description("How long the host has run").controller();
//!     let plugin = Uptime { host: rescope_plugin::host_id(), in_hours: AtomicBool::new(false) };
//!     PluginServer::new(spec, plugin).serve().await // until SIGINT or SIGTERM
//! }
//! ```
//!
//! `examples/uptime.rs` is the same plugin as a runnable program:
//! `cargo run -p rescope-plugin --example uptime -- /tmp/plugins`.
//!
//! # Testing a plugin
//!
//! [`client::PluginClient`] asks the socket as the probe does and applies the probe's
//! rules to the answer:
//!
//! ```
//! use rescope_plugin::client::PluginClient;
//! use rescope_plugin::{MetricTemplate, Plugin, PluginError, PluginServer, ReportBuilder, Spec, TopologyKind};
//!
//! struct Answer;
//!
//! impl Plugin for Answer {
//!     fn report(&self, r: &mut ReportBuilder) -> Result<(), PluginError> {
//!         r.topology(TopologyKind::Host).metric_template(MetricTemplate::new("answer", "Answer"));
//!         r.host("web-1").metric("answer", 42.0, 100.0);
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let root = tempfile::tempdir().expect("a temporary plugins root");
//! let bound = PluginServer::new(Spec::new("answer", "The answer"), Answer)
//!     .plugins_root(root.path())
//!     .bind()
//!     .expect("socket created");
//! let client = PluginClient::new(bound.socket_path());
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(bound.serve_until(async { let _ = stopped.await; }));
//!
//! let answer = client.report().await.expect("an answer");
//! assert!(answer.problems.is_empty(), "{:?}", answer.problems);
//! let node = &answer.report[TopologyKind::Host].nodes["web-1;<host>"];
//! assert_eq!(node.metrics.get("answer").and_then(|m| m.last()).map(|s| s.value), Some(42.0));
//!
//! stop.send(()).expect("server running");
//! server.await.expect("joined").expect("clean stop");
//! assert!(!root.path().join("answer/answer.sock").exists(), "socket removed");
//! # }
//! ```
//!
//! Check what it answers as the probe would:
//!
//! ```sh
//! curl -s --unix-socket /tmp/plugins/uptime/uptime.sock http://plugin/report \
//!   | rescope report validate --plugin-id uptime -
//! ```

mod background;
pub mod client;
mod control;
mod report;
mod server;
mod socket;
mod spec;
mod template;

pub use background::{Repeating, every};
pub use control::ControlReply;
pub use report::{NodeBuilder, ReportBuilder, TopologyBuilder};
pub use server::{BoundPlugin, Plugin, PluginError, PluginServer, ServeError, shutdown_signal};
pub use socket::{PluginSocket, SocketError};
pub use spec::{InvalidSpec, Spec, valid_plugin_id};
pub use template::{
    Control, DataType, MetadataTemplate, MetricFormat, MetricTemplate, TableTemplate,
};

/// The report model this crate builds on, for what the builders do not cover.
pub use rescope_report as model;
pub use rescope_report::TopologyKind;
pub use rescope_report::xfer::ControlRequest;

/// Where the probe looks for plugin sockets unless told otherwise.
pub const DEFAULT_PLUGINS_ROOT: &str = "/var/run/scope/plugins";

/// The environment variable naming the plugins directory, shared with `rescope launch`
/// (`--plugins-root`).
pub const PLUGINS_ROOT_ENV: &str = "RESCOPE_PLUGINS_ROOT";

/// The host ID the probe uses for this machine, and so the one a plugin must use in
/// host and process node IDs: `$SCOPE_HOSTNAME` when set (as `rescope launch
/// --hostname` and Scope's probe read it), otherwise the machine's host name.
pub fn host_id() -> String {
    if let Ok(name) = std::env::var("SCOPE_HOSTNAME")
        && !name.is_empty()
    {
        return name;
    }
    match nix::unistd::gethostname() {
        Ok(name) => name.to_string_lossy().into_owned(),
        Err(_) => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "localhost".to_string()),
    }
}

/// Installs a log subscriber for a plugin program: text on a terminal, JSON lines
/// otherwise (as `rescope` logs). The filter is `level` (`info`, `debug`,
/// `rescope_plugin=debug`, …), else `RUST_LOG`, else `info`. Call it once, early.
pub fn init_logging(level: Option<&str>) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(l) => EnvFilter::new(l),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if std::io::stderr().is_terminal() {
        builder.try_init()
    } else {
        builder.json().flatten_event(true).try_init()
    };
}

/// The plugins directory: `$RESCOPE_PLUGINS_ROOT` when set, else
/// [`DEFAULT_PLUGINS_ROOT`].
pub fn default_plugins_root() -> std::path::PathBuf {
    match std::env::var_os(PLUGINS_ROOT_ENV) {
        Some(root) if !root.is_empty() => root.into(),
        _ => DEFAULT_PLUGINS_ROOT.into(),
    }
}
