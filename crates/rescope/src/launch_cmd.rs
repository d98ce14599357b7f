//! `rescope launch`: the probe and the app in one process. The probe's reports go
//! straight into the app's collector, without HTTP, every spy interval.

use std::sync::Arc;

use anyhow::{Context, Result};
use rescope_app::{AppConfig, Collector};
use rescope_probe::config::ProbeConfig;
use rescope_probe::selfmetrics::SelfMetrics;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

/// The probe inside this process, reached by direct calls instead of a websocket.
struct LocalProbe {
    docker: Option<rescope_probe::docker::DockerWatcher>,
    plugins: Option<rescope_probe::plugin::PluginRegistry>,
    collector: Arc<Collector>,
    probe_id: String,
    host_node_id: String,
}

type ControlFuture = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<rescope_report::xfer::ControlResponse, String>>
            + Send,
    >,
>;

impl rescope_app::controls::ProbeLink for LocalProbe {
    fn call(&self, request: rescope_report::xfer::ControlRequest) -> ControlFuture {
        let docker = self.docker.clone();
        let plugins = self.plugins.clone();
        let collector = self.collector.clone();
        let (probe_id, host_node_id) = (self.probe_id.clone(), self.host_node_id.clone());
        Box::pin(async move {
            use rescope_report::xfer::ControlResponse;
            Ok(match (&docker, &plugins, request.control.as_str()) {
                (_, Some(registry), c) if c.contains('~') => {
                    let (response, shortcut) = registry.control(&request).await;
                    if let Some(mut report) = shortcut {
                        // Published at once, tagged like any report of this probe.
                        let now = rescope_report::GoTime::now();
                        rescope_probe::tagger::tag_host(&mut report, &host_node_id, now);
                        rescope_probe::tagger::tag_topologies(&mut report);
                        collector.add(&probe_id, report);
                    }
                    response
                }
                (Some(d), _, c) if c.starts_with("docker_") => d.control(&request).await,
                (_, _, c) => ControlResponse::error(format!("Control \"{c}\" not recognised")),
            })
        })
    }
}

pub async fn run(
    app: AppConfig,
    probe: ProbeConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(app.listen)
        .await
        .with_context(|| format!("listening on {}", app.listen))?;
    let app = Arc::new(app);
    let collector = Collector::new(app.window);
    let metrics = Arc::new(SelfMetrics::new());
    let collectors = rescope_probe::probe_for(&probe, metrics.clone());
    let state = rescope_app::AppState::new(app.clone(), collector.clone());
    if !probe.no_controls {
        let link = LocalProbe {
            docker: collectors.docker.clone(),
            plugins: collectors.plugins.clone(),
            collector: collector.clone(),
            probe_id: probe.probe_id.clone(),
            host_node_id: probe.host_node_id(),
        };
        state.controls.register(&probe.probe_id, Arc::new(link));
    }
    collectors.spawn_background(probe.spy_interval, &shutdown);
    let mut spy = collectors.spy;
    let latest = spy.keep_latest();
    if let Some(addr) = probe.http_listen {
        let shutdown = shutdown.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) =
                rescope_probe::debug_server::serve(addr, metrics, latest, shutdown).await
            {
                warn!(%addr, error = %e, "cannot serve the probe's /metrics");
            }
        });
    }
    let (tx, mut rx) = mpsc::channel(16);
    tokio::spawn(spy.run(probe.spy_interval, tx, shutdown.clone()));
    let local = collector.clone();
    let probe_id = probe.probe_id.clone();
    tokio::spawn(async move {
        while let Some(report) = rx.recv().await {
            local.add(&probe_id, report);
        }
    });
    info!(
        url = %format!("http://{}", listener.local_addr()?),
        probe = %probe.probe_id,
        host = %probe.hostname,
        "Rescope is running"
    );
    rescope_app::serve_with(listener, state, shutdown).await?;
    Ok(())
}
