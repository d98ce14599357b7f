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
pub mod docker;
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

/// The spy loop with every collector the configuration enables, and the background
/// tasks some collectors need.
#[derive(Debug)]
pub struct Probe {
    pub spy: spy::Spy,
    pub plugins: Option<plugin::PluginRegistry>,
    pub docker: Option<docker::DockerWatcher>,
}

impl Probe {
    /// Starts the background tasks (plugin polling, the Docker watcher).
    pub fn spawn_background(&self, interval: std::time::Duration, shutdown: &Shutdown) {
        if let Some(registry) = &self.plugins {
            tokio::spawn(registry.clone().run(interval, shutdown.clone()));
        }
        if let Some(watcher) = &self.docker {
            tokio::spawn(watcher.clone().run(shutdown.clone()));
        }
    }
}

/// Builds the probe's collectors from its configuration.
pub fn probe_for(config: &config::ProbeConfig, metrics: Arc<selfmetrics::SelfMetrics>) -> Probe {
    let walker = config.processes.then(|| {
        Arc::new(Mutex::new(walker::ProcessWalker::new(
            &config.proc_root,
            config.omit_cmd_args,
        )))
    });
    let mut spy = spy::Spy::new(config.host_node_id(), walker.clone(), metrics);
    spy.add_reporter(Box::new(host::HostReporter::new(config)));
    if config.processes {
        spy.add_reporter(Box::new(process::ProcessReporter::new(config)));
    }
    spy.add_reporter(Box::new(endpoint::EndpointReporter::new(config, walker)));
    let plugins = config.plugins_root.as_ref().map(|root| {
        let mut settings = plugin::PluginSettings::new(root, config.probe_id.clone());
        settings.allow_any_owner = config.plugins_allow_any_owner;
        let registry = plugin::PluginRegistry::new(settings);
        spy.add_reporter(Box::new(plugin::PluginReporter(registry.clone())));
        registry
    });
    let docker = config.docker.then(|| {
        let watcher = docker::DockerWatcher::new(config.docker_socket.clone());
        spy.add_reporter(Box::new(docker::DockerReporter::new(
            config,
            watcher.clone(),
        )));
        watcher
    });
    Probe {
        spy,
        plugins,
        docker,
    }
}
