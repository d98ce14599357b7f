//! The Rescope probe: runs on every host, collects hosts, processes, connections,
//! containers and plugin data into reports, and publishes them to one or more apps.
//!
//! Collectors read the kernel only through [`sys`]. The spy loop runs the reporters
//! once per spy interval, merges and tags their reports; the publisher merges what
//! accumulated every publish interval and sends full reports and deltas, gzip-msgpack,
//! exactly as Weave Scope's probe does.

pub mod config;
pub mod control;
pub mod debug_server;
pub mod endpoint;
pub mod host;
pub mod hostexec;
pub mod pipe;
pub mod plugin;
pub mod process;
pub mod publish;
pub mod reporter;
pub mod selfmetrics;
pub mod spy;
pub mod sys;
pub mod tagger;
pub mod walker;

/// Signals shutdown: the probe stops when the value becomes `true` or the sender is
/// dropped.
pub type Shutdown = tokio::sync::watch::Receiver<bool>;

use std::sync::{Arc, Mutex};

/// The spy loop with every collector the configuration enables, and the plugin
/// registry when plugins are on (the caller runs it: [`plugin::PluginRegistry::run`]).
pub fn spy_for(
    config: &config::ProbeConfig,
    metrics: Arc<selfmetrics::SelfMetrics>,
) -> (spy::Spy, Option<plugin::PluginRegistry>) {
    let walker = config.processes.then(|| {
        Arc::new(Mutex::new(walker::ProcessWalker::new(
            &config.proc_root,
            config.omit_cmd_args,
        )))
    });
    let mut spy = spy::Spy::new(config.host_node_id(), walker, metrics);
    spy.add_reporter(Box::new(host::HostReporter::new(config)));
    if config.processes {
        spy.add_reporter(Box::new(process::ProcessReporter::new(config)));
    }
    let plugins = config.plugins_root.as_ref().map(|root| {
        let mut settings = plugin::PluginSettings::new(root, config.probe_id.clone());
        settings.allow_any_owner = config.plugins_allow_any_owner;
        let registry = plugin::PluginRegistry::new(settings);
        spy.add_reporter(Box::new(plugin::PluginReporter(registry.clone())));
        registry
    });
    (spy, plugins)
}
