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
pub mod docker_exec;
pub mod endpoint;
mod endpoint_graph;
pub mod health;
pub mod host;
pub mod hostexec;
pub mod kept;
mod pending;
pub mod pipe;
pub mod plugin;
pub mod process;
pub mod publish;
pub mod reporter;
pub mod selfmetrics;
pub mod socket_table;
pub mod spy;
pub mod sys;
pub mod tagger;
pub mod tls;
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

/// Builds the probe's collectors from its configuration, and registers their controls
/// (host terminal, Docker, plugins) in `controls`; terminals open through `pipes`.
pub fn probe_for(
    config: &config::ProbeConfig,
    metrics: Arc<selfmetrics::SelfMetrics>,
    controls: &control::ControlRegistry,
    pipes: &pipe::Pipes,
) -> Probe {
    let uid = nix::unistd::geteuid();
    if !uid.is_root() {
        tracing::warn!(
            uid = uid.as_raw(),
            "the probe is not running as root: other users' processes show no connections \
             or open files, and containers' connections are missing"
        );
        health::problem(
            "Privileges",
            format!(
                "the probe runs as uid {uid}, not root: other users' processes show no \
                 connections or open files, and containers' connections are missing"
            ),
        );
    }
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
    let endpoints = endpoint::EndpointReporter::new(config, walker);
    let local_networks = endpoints.local_networks_handle();
    spy.add_reporter(Box::new(endpoints));
    if controls.enabled() {
        hostexec::register(controls, pipes, &config.proc_root);
    }
    let plugins = config.plugins_root.as_ref().map(|root| {
        let mut settings = plugin::PluginSettings::new(root, config.probe_id.clone());
        settings.allow_any_owner = config.plugins_allow_any_owner;
        let registry = plugin::PluginRegistry::new(settings);
        if controls.enabled() {
            registry.use_controls(controls.clone());
        }
        spy.add_reporter(Box::new(plugin::PluginReporter(registry.clone())));
        spy.wake_on(registry.change_notify());
        registry
    });
    let docker = config.docker.then(|| {
        let watcher = docker::DockerWatcher::new(config.docker_socket.clone());
        if controls.enabled() {
            watcher.register_controls(controls);
            docker_exec::register(controls, pipes, &watcher);
        }
        let mut reporter = docker::DockerReporter::new(config, watcher.clone());
        reporter.share_local_networks(local_networks);
        spy.add_reporter(Box::new(reporter));
        spy.wake_on(watcher.lifecycle_notify());
        watcher
    });
    Probe {
        spy,
        plugins,
        docker,
    }
}

/// Runs a standalone probe until shutdown: collects every spy interval and publishes
/// to the configured apps (or prints JSON reports with `publish_stdout`), serving
/// `/metrics` and `/debug/report` when `http_listen` is set.
pub async fn run(config: config::ProbeConfig, shutdown: Shutdown) -> std::io::Result<()> {
    sys::malloc::limit_arenas();
    let metrics = Arc::new(selfmetrics::SelfMetrics::new());
    let tls = config
        .client_tls()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let apps = publish::AppDirectory::default();
    let pipes = pipe::Pipes::new(Arc::new(pipe::WsPipeTransport::new(
        apps.clone(),
        tls.clone(),
    )));
    let controls = control::ControlRegistry::new(!config.no_controls && !config.publish_stdout);
    let probe = probe_for(&config, metrics.clone(), &controls, &pipes);
    probe.spawn_background(config.spy_interval, &shutdown);
    let mut spy = probe.spy;
    if let Some(addr) = config.http_listen {
        let latest = spy.keep_latest();
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!(%addr, "serving the probe's /metrics and /debug/report");
        tokio::spawn(debug_server::serve_on(
            listener,
            metrics.clone(),
            latest,
            shutdown.clone(),
        ));
    }
    let woken = spy.woken_reports();
    if config.publish_stdout {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(spy.run(config.spy_interval, tx, shutdown.clone()));
        print_reports(config.publish_interval, rx, shutdown).await
    } else {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(spy.run_changes(config.spy_interval, tx, shutdown.clone()));
        let (shortcut_tx, shortcut_rx) = tokio::sync::mpsc::channel(1024);
        controls.set_shortcut_sink(shortcut_tx);
        tracing::info!(
            apps = ?config.targets,
            probe = %config.probe_id,
            host = %config.hostname,
            controls = controls.enabled(),
            "probe started"
        );
        let mut publisher = publish::Publisher::new(
            publish::PublishSettings::from_config(&config, tls),
            apps,
            controls,
            metrics,
        );
        publisher.publish_woken_at_once(woken);
        publisher.run(rx, shortcut_rx, shutdown).await;
        Ok(())
    }
}

/// `--publish-stdout`: every publish interval, the reports collected since are merged
/// and printed as indented JSON, one report per line group.
async fn print_reports(
    interval: std::time::Duration,
    mut rx: tokio::sync::mpsc::Receiver<rescope_report::Report>,
    mut shutdown: Shutdown,
) -> std::io::Result<()> {
    use std::io::Write;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut merged: Option<rescope_report::Report> = None;
    loop {
        tokio::select! {
            report = rx.recv() => match report {
                Some(r) => match merged.as_mut() {
                    Some(m) => m.merge_owned(r),
                    None => merged = Some(r),
                },
                None => return Ok(()),
            },
            _ = ticker.tick() => {
                if let Some(report) = merged.take() {
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "{}", rescope_report::codec::to_json_pretty(&report))?;
                    out.flush()?;
                }
            }
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    return Ok(());
                }
            }
        }
    }
}
