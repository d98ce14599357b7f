//! `rescope launch`: the probe and the app in one process. The probe's reports go
//! straight into the app's collector, without HTTP, every spy interval.

use std::sync::Arc;

use anyhow::{Context, Result};
use rescope_app::{AppConfig, Collector};
use rescope_probe::config::ProbeConfig;
use rescope_probe::control::ControlRegistry;
use rescope_probe::pipe::{PipeEnds, PipeTransport, Pipes};
use rescope_probe::selfmetrics::SelfMetrics;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

/// The probe inside this process, reached by direct calls instead of a websocket.
struct LocalProbe {
    controls: ControlRegistry,
    app_id: String,
}

type ControlFuture = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<rescope_report::xfer::ControlResponse, String>>
            + Send,
    >,
>;

impl rescope_app::controls::ProbeLink for LocalProbe {
    fn call(&self, mut request: rescope_report::xfer::ControlRequest) -> ControlFuture {
        let controls = self.controls.clone();
        request.app_id = self.app_id.clone();
        Box::pin(async move { Ok(controls.handle(request).await) })
    }
}

/// Pipes of the in-process probe join the app's pipe router directly.
struct LocalPipes(rescope_app::pipes::PipeRouter);

impl PipeTransport for LocalPipes {
    fn connect(&self, _app_id: &str, pipe_id: &str) -> Result<PipeEnds, String> {
        let end = self
            .0
            .attach_probe(pipe_id)
            .ok_or_else(|| format!("pipe {pipe_id} is already closed"))?;
        let (to_app, mut outgoing) = mpsc::channel::<Vec<u8>>(64);
        let (incoming, from_app) = mpsc::channel::<Vec<u8>>(64);
        let rescope_app::pipes::LocalProbeEnd { to_ui, mut from_ui } = end;
        tokio::spawn(async move {
            while let Some(bytes) = outgoing.recv().await {
                if to_ui.send(bytes.into()).await.is_err() {
                    break;
                }
            }
        });
        tokio::spawn(async move {
            while let Some(bytes) = from_ui.recv().await {
                if incoming.send(bytes.to_vec()).await.is_err() {
                    break;
                }
            }
        });
        Ok(PipeEnds { to_app, from_app })
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
    let state = rescope_app::AppState::new(app.clone(), collector.clone());
    let controls = ControlRegistry::new(!probe.no_controls);
    let pipes = Pipes::new(Arc::new(LocalPipes(state.pipes.clone())));
    let collectors = rescope_probe::probe_for(&probe, metrics.clone(), &controls, &pipes);
    if controls.enabled() {
        let (shortcut_tx, mut shortcuts) = mpsc::channel::<rescope_report::Report>(1024);
        controls.set_shortcut_sink(shortcut_tx);
        let collector = collector.clone();
        let (probe_id, host_node_id) = (probe.probe_id.clone(), probe.host_node_id());
        tokio::spawn(async move {
            while let Some(mut report) = shortcuts.recv().await {
                // Published at once, tagged like any report of this probe.
                let now = rescope_report::GoTime::now();
                rescope_probe::tagger::tag_host(&mut report, &host_node_id, now);
                rescope_probe::tagger::tag_topologies(&mut report);
                collector.add(&probe_id, report);
            }
        });
        let link = LocalProbe {
            controls: controls.clone(),
            app_id: app.app_id.clone(),
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
    let no_controls = probe.no_controls;
    tokio::spawn(async move {
        while let Some(mut report) = rx.recv().await {
            if no_controls {
                rescope_probe::publish::strip_controls(&mut report);
            }
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
