//! Publishing to apps (protocol.md §5.3–5.5).
//!
//! The [`Publisher`] merges the spy's reports as they arrive and, every publish
//! interval, sends either a full report (every `full_report_every`-th publish) or the
//! delta against the last full one, gzip-compressed msgpack, encoded once for all apps.
//! Shortcut reports (a control's immediate effect) go out at once.
//!
//! Each app gets its own [`AppClient`] task: the `GET /api` handshake (which names the
//! app), `POST /api/report` with the probe's headers, a queue of two bodies (the
//! oldest is dropped, with a log line, when the app is slow), and retries with
//! backoff. An app that is down or slow never holds up collection or the other apps.
//! An app that missed a full report gets the next publish as a full report, so its
//! view never rests on a delta without its base.
//!
//! Unless controls are disabled, each app also gets the control websocket
//! (`/api/control/ws`), over which the probe answers Go `net/rpc` calls from the app.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use rescope_report::xfer::{
    CONTROL_METHOD, ControlRequest, PROBE_ID_HEADER, PROBE_VERSION_HEADER, RpcFrame,
    RpcResponseHeader,
};
use rescope_report::{GoTime, Report, codec};
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::{debug, info, warn};

use crate::Shutdown;
use crate::config::{AppTarget, ProbeConfig, Secret};
use crate::control::ControlRegistry;
use crate::selfmetrics::SelfMetrics;
use crate::tls::ClientTls;

/// Bodies queued per app before the oldest is dropped.
const QUEUE: usize = 2;
const HTTP_TIMEOUT: Duration = Duration::from_secs(12);
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Control channel keepalive (protocol.md §5.5).
const PING_PERIOD: Duration = Duration::from_millis(33_333);
const PONG_WAIT: Duration = Duration::from_secs(60);

/// Exponential backoff: `initial`, doubling up to `max`, until [`Backoff::reset`].
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            next: initial,
        }
    }

    /// Scope's publish backoff: 1 s doubling to 60 s.
    pub fn publish() -> Self {
        Backoff::new(Duration::from_secs(1), Duration::from_secs(60))
    }

    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// The headers a probe sends on every request to an app.
pub fn probe_headers(probe_id: &str, version: &str, token: &Secret) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let mut put = |name: HeaderName, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    put(AUTHORIZATION, format!("Scope-Probe token={}", token.0));
    put(HeaderName::from_static("x-scope-probe-id"), probe_id.into());
    put(
        HeaderName::from_static("x-scope-probe-version"),
        version.into(),
    );
    put(USER_AGENT, format!("Scope_Probe/{version}"));
    if let Some(v) = headers.get_mut(AUTHORIZATION) {
        v.set_sensitive(true);
    }
    debug_assert!(headers.contains_key(PROBE_ID_HEADER));
    debug_assert!(headers.contains_key(PROBE_VERSION_HEADER));
    headers
}

/// How to reach an app: its base URL and the probe's headers for it.
#[derive(Debug, Clone)]
pub struct AppEndpoint {
    /// The ID the app gave in its `/api` answer.
    pub id: String,
    /// `http(s)://host:port`.
    pub base_url: String,
    pub headers: HeaderMap,
    /// For `wss://` connections.
    pub tls: ClientTls,
}

impl AppEndpoint {
    /// The base URL with a websocket scheme.
    pub fn ws_base(&self) -> String {
        if let Some(rest) = self.base_url.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = self.base_url.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            self.base_url.clone()
        }
    }

    /// A websocket request for `url` carrying the probe's headers.
    pub fn ws_request(&self, url: &str) -> Result<tungstenite::handshake::client::Request, String> {
        let mut request = url
            .into_client_request()
            .map_err(|e| format!("bad websocket URL {url}: {e}"))?;
        for (name, value) in &self.headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        Ok(request)
    }

    /// Opens a websocket to `request` (`ws://` or `wss://`).
    pub async fn connect_ws(
        &self,
        request: tungstenite::handshake::client::Request,
    ) -> Result<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        tungstenite::Error,
    > {
        let (socket, _) = tokio_tungstenite::connect_async_tls_with_config(
            request,
            None,
            false,
            Some(self.tls.ws_connector()),
        )
        .await?;
        Ok(socket)
    }
}

/// The apps this probe has shaken hands with, by app ID; pipes use it to connect back
/// to the app that asked for them.
#[derive(Debug, Clone, Default)]
pub struct AppDirectory(Arc<RwLock<HashMap<String, AppEndpoint>>>);

impl AppDirectory {
    /// The app with this ID; an empty ID means the only app, if there is exactly one.
    pub fn get(&self, app_id: &str) -> Option<AppEndpoint> {
        let apps = self.0.read().ok()?;
        if app_id.is_empty() && apps.len() == 1 {
            return apps.values().next().cloned();
        }
        apps.get(app_id).cloned()
    }

    pub fn insert(&self, endpoint: AppEndpoint) {
        if let Ok(mut apps) = self.0.write() {
            apps.insert(endpoint.id.clone(), endpoint);
        }
    }

    /// The IDs of the known apps, sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .0
            .read()
            .map(|a| a.keys().cloned().collect())
            .unwrap_or_default();
        ids.sort();
        ids
    }
}

/// Sets every topology's controls to none, as a probe with `--probe.no-controls`
/// publishes (nodes keep their `active_controls`, which then name nothing).
pub fn strip_controls(report: &mut Report) {
    for (_, topology) in report.topologies_mut() {
        topology.controls.clear();
    }
}

/// One encoded report.
#[derive(Debug, Clone)]
struct Body {
    bytes: Arc<Vec<u8>>,
    full: bool,
    shortcut: bool,
}

/// What the publisher needs to know.
#[derive(Debug, Clone)]
pub struct PublishSettings {
    pub targets: Vec<AppTarget>,
    pub interval: Duration,
    pub full_report_every: u32,
    pub no_controls: bool,
    pub probe_id: String,
    pub version: String,
    pub token: Secret,
    /// How to reach `https://` apps.
    pub tls: ClientTls,
}

impl PublishSettings {
    pub fn from_config(config: &ProbeConfig, tls: ClientTls) -> Self {
        PublishSettings {
            targets: config.targets.clone(),
            interval: config.publish_interval,
            full_report_every: config.full_report_every.max(1),
            no_controls: config.no_controls,
            probe_id: config.probe_id.clone(),
            version: config.version.clone(),
            token: config.token.clone(),
            tls,
        }
    }
}

/// The publish loop and one client per app.
#[derive(Debug)]
pub struct Publisher {
    settings: PublishSettings,
    clients: Vec<Arc<AppClient>>,
    metrics: Arc<SelfMetrics>,
    pending: crate::pending::Pending,
    last_full: Option<Report>,
    publish_count: u64,
    last_attempt: Option<GoTime>,
    /// The plugin list of the last spy report, to publish a change without waiting.
    plugins_seen: Option<rescope_report::PluginSpecs>,
    /// The next publish is a full report: an app takes a probe's plugin list from its
    /// newest full report, so a removed plugin goes only with one.
    full_next: bool,
    /// Spy reports a wake-up asked for, published at once.
    woken: Option<crate::spy::WokenReports>,
}

impl Publisher {
    /// A publisher for every target of `settings`. Apps that answer the handshake go
    /// into `apps`; their control channels are served by `controls`.
    pub fn new(
        settings: PublishSettings,
        apps: AppDirectory,
        controls: ControlRegistry,
        metrics: Arc<SelfMetrics>,
    ) -> Self {
        let http = settings
            .tls
            .http_builder()
            .timeout(HTTP_TIMEOUT)
            .connect_timeout(DIAL_TIMEOUT)
            .build()
            .unwrap_or_default();
        let claimed = Arc::new(Mutex::new(HashMap::new()));
        let clients = settings
            .targets
            .iter()
            .map(|target| {
                let token = target
                    .token_override
                    .clone()
                    .unwrap_or_else(|| settings.token.clone());
                Arc::new(AppClient {
                    target: target.to_string(),
                    base_url: target.base_url(),
                    headers: probe_headers(&settings.probe_id, &settings.version, &token),
                    http: http.clone(),
                    tls: settings.tls.clone(),
                    queue: Mutex::new(VecDeque::new()),
                    ready: Notify::new(),
                    needs_full: AtomicBool::new(true),
                    apps: apps.clone(),
                    controls: (!settings.no_controls).then(|| controls.clone()),
                    claimed: claimed.clone(),
                    metrics: metrics.clone(),
                })
            })
            .collect();
        Publisher {
            settings,
            clients,
            metrics,
            pending: crate::pending::Pending::default(),
            last_full: None,
            publish_count: 0,
            last_attempt: None,
            plugins_seen: None,
            full_next: false,
            woken: None,
        }
    }

    /// Publishes at once the spy reports `woken` marks (ticks a container's start or
    /// stop, or a plugin's change, asked for), instead of at the next interval: a
    /// `docker run` then shows in the app within a fraction of a second even when the
    /// probe runs apart from the app.
    pub fn publish_woken_at_once(&mut self, woken: crate::spy::WokenReports) {
        self.woken = Some(woken);
    }

    /// Runs until shutdown: takes spy reports from `reports` and shortcut reports from
    /// `shortcuts`, and publishes them.
    pub async fn run(
        mut self,
        mut reports: mpsc::Receiver<crate::kept::SpyReport>,
        mut shortcuts: mpsc::Receiver<Report>,
        mut shutdown: Shutdown,
    ) {
        for client in &self.clients {
            tokio::spawn(client.clone().run(shutdown.clone()));
        }
        let mut ticker = tokio::time::interval(self.settings.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first publish follows the first spy report, so a new probe shows at once.
        let mut first = true;
        loop {
            tokio::select! {
                report = reports.recv() => {
                    let Some(spy) = report else { return };
                    let report = &spy.report;
                    let woken = self.woken.as_ref().is_some_and(|w| w.take_reached(report.ts));
                    // A plugin that came, went or changed status is published at once.
                    let plugins_changed = self
                        .plugins_seen
                        .as_ref()
                        .is_some_and(|seen| *seen != report.plugins);
                    if plugins_changed || self.plugins_seen.is_none() {
                        self.plugins_seen = Some(report.plugins.clone());
                    }
                    self.pending.add(spy);
                    if first || plugins_changed || woken {
                        first = false;
                        self.full_next |= plugins_changed;
                        self.publish().await;
                        ticker.reset();
                    }
                }
                shortcut = shortcuts.recv() => {
                    let Some(mut merged) = shortcut else { continue };
                    while let Ok(more) = shortcuts.try_recv() {
                        merged.merge_owned(more);
                    }
                    self.publish_shortcut(merged).await;
                }
                _ = ticker.tick() => self.publish().await,
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        return;
                    }
                }
            }
        }
    }

    /// One regular publish: a full report or a delta.
    async fn publish(&mut self) {
        let Some(mut report) = self.pending.take() else {
            return;
        };
        if self.settings.no_controls {
            strip_controls(&mut report);
        }
        let now = GoTime::now();
        let window = self
            .last_attempt
            .map(|t| now.nanos_since(t).clamp(0, i64::MAX as i128) as i64)
            .unwrap_or(self.settings.interval.as_nanos() as i64);
        self.last_attempt = Some(now);
        report.window = window;
        let full = self.last_full.is_none()
            || std::mem::take(&mut self.full_next)
            || self
                .publish_count
                .is_multiple_of(u64::from(self.settings.full_report_every));
        let report = Arc::new(report);
        let delta = if full {
            None
        } else {
            self.last_full.as_ref().map(|base| {
                let mut d = report.delta_from(base);
                d.window = window;
                d
            })
        };
        let wants_full = !full && self.clients.iter().any(|c| c.wants_full());
        let encoded = {
            let report = report.clone();
            tokio::task::spawn_blocking(move || {
                let started = std::time::Instant::now();
                let main = match &delta {
                    Some(d) => encode(d),
                    None => encode(&report),
                };
                let full = (delta.is_some() && wants_full).then(|| encode(&report));
                (main, full, started.elapsed())
            })
            .await
        };
        let Ok((main, extra_full, took)) = encoded else {
            warn!("encoding a report failed");
            return;
        };
        self.metrics
            .report_size(if full { "full" } else { "delta" }, main.len());
        debug!(
            full,
            bytes = main.len(),
            ms = took.as_secs_f64() * 1000.0,
            "report encoded"
        );
        let main = Body {
            bytes: Arc::new(main),
            full,
            shortcut: false,
        };
        let extra_full = extra_full.map(|bytes| Body {
            bytes: Arc::new(bytes),
            full: true,
            shortcut: false,
        });
        for client in &self.clients {
            match (&extra_full, client.wants_full()) {
                (Some(f), true) => client.offer(f.clone()),
                _ => client.offer(main.clone()),
            }
        }
        if full {
            self.last_full = Some(Arc::unwrap_or_clone(report));
        }
        self.publish_count += 1;
    }

    async fn publish_shortcut(&mut self, mut report: Report) {
        report.shortcut = true;
        report.window = 0;
        if self.settings.no_controls {
            strip_controls(&mut report);
        }
        let Ok(bytes) = tokio::task::spawn_blocking(move || encode(&report)).await else {
            return;
        };
        self.metrics.report_size("shortcut", bytes.len());
        let body = Body {
            bytes: Arc::new(bytes),
            full: false,
            shortcut: true,
        };
        for client in &self.clients {
            client.offer(body.clone());
        }
    }
}

fn encode(report: &Report) -> Vec<u8> {
    codec::gzip(&codec::to_msgpack(report))
}

/// One app: handshake, report uploads, the control channel.
#[derive(Debug)]
struct AppClient {
    /// As given on the command line, for logs.
    target: String,
    base_url: String,
    headers: HeaderMap,
    http: reqwest::Client,
    tls: ClientTls,
    queue: Mutex<VecDeque<Body>>,
    ready: Notify,
    /// The app has not received the latest full report.
    needs_full: AtomicBool,
    apps: AppDirectory,
    controls: Option<ControlRegistry>,
    /// App ID → target that serves it, so two addresses of one app share a client.
    claimed: Arc<Mutex<HashMap<String, String>>>,
    metrics: Arc<SelfMetrics>,
}

impl AppClient {
    fn wants_full(&self) -> bool {
        self.needs_full.load(Ordering::Relaxed)
    }

    /// Queues a body. A full queue drops its oldest body for a regular report, and
    /// drops a shortcut report instead.
    fn offer(&self, body: Body) {
        let Ok(mut queue) = self.queue.lock() else {
            return;
        };
        if queue.len() >= QUEUE {
            if body.shortcut {
                self.metrics.dropped(&self.target);
                warn!(app = %self.target, "app is not keeping up; dropping a shortcut report");
                return;
            }
            if let Some(old) = queue.pop_front() {
                self.metrics.dropped(&self.target);
                if old.full {
                    self.needs_full.store(true, Ordering::Relaxed);
                }
                warn!(
                    app = %self.target,
                    "app is not keeping up; dropped the oldest unsent report"
                );
            }
        }
        queue.push_back(body);
        drop(queue);
        self.ready.notify_one();
    }

    fn next_body(&self) -> Option<Body> {
        self.queue.lock().ok()?.pop_front()
    }

    /// `GET /api`: the app's ID.
    async fn handshake(&self) -> Result<String, String> {
        let response = self
            .http
            .get(format!("{}/api", self.base_url))
            .headers(self.headers.clone())
            .send()
            .await
            .map_err(|e| error_text(&e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| error_text(&e))?;
        if !status.is_success() {
            return Err(format!(
                "GET /api answered {status}: {}",
                String::from_utf8_lossy(&body).trim()
            ));
        }
        let details: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| format!("GET /api did not answer JSON: {e}"))?;
        Ok(details
            .get("id")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string())
    }

    async fn post(&self, body: &Body) -> Result<(), (String, bool)> {
        let response = self
            .http
            .post(format!("{}/api/report", self.base_url))
            .headers(self.headers.clone())
            .header("Content-Type", "application/msgpack")
            .header("Content-Encoding", "gzip")
            .body(body.bytes.as_ref().clone())
            .send()
            .await
            .map_err(|e| (error_text(&e), e.is_timeout()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        Err((format!("{status}: {}", text.trim()), false))
    }

    async fn run(self: Arc<Self>, mut shutdown: Shutdown) {
        let mut backoff = Backoff::publish();
        let mut last_error: Option<String> = None;
        let mut app_id: Option<String> = None;
        loop {
            if *shutdown.borrow() {
                return;
            }
            if app_id.is_none() {
                match self.handshake().await {
                    Ok(id) => {
                        let mine = self.claim(&id);
                        if mine {
                            info!(app = %self.target, app_id = %id, "connected to app");
                            self.apps.insert(AppEndpoint {
                                id: id.clone(),
                                base_url: self.base_url.clone(),
                                headers: self.headers.clone(),
                                tls: self.tls.clone(),
                            });
                            if let Some(controls) = &self.controls {
                                tokio::spawn(control_channel(
                                    self.clone(),
                                    controls.clone(),
                                    id.clone(),
                                    shutdown.clone(),
                                ));
                            }
                            last_error = None;
                            backoff.reset();
                            app_id = Some(id);
                        } else {
                            info!(app = %self.target, app_id = %id, "this address reaches an app already published to; not publishing twice");
                            if pause(&mut shutdown, Duration::from_secs(60)).await {
                                return;
                            }
                        }
                        continue;
                    }
                    Err(e) => {
                        if last_error.as_deref() != Some(e.as_str()) {
                            warn!(app = %self.target, error = %e, "cannot reach app; retrying with backoff");
                            last_error = Some(e);
                        }
                        self.metrics.publish_failed(&self.target);
                        if pause(&mut shutdown, backoff.next_delay()).await {
                            return;
                        }
                        continue;
                    }
                }
            }
            let Some(body) = self.next_body() else {
                tokio::select! {
                    _ = self.ready.notified() => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            };
            match self.post(&body).await {
                Ok(()) => {
                    self.metrics.published(&self.target);
                    if body.full {
                        self.needs_full.store(false, Ordering::Relaxed);
                    }
                    if last_error.take().is_some() {
                        info!(app = %self.target, "publishing to app again");
                    }
                    backoff.reset();
                }
                Err((e, timed_out)) => {
                    self.metrics.publish_failed(&self.target);
                    if body.full {
                        self.needs_full.store(true, Ordering::Relaxed);
                    }
                    if last_error.as_deref() != Some(e.as_str()) {
                        warn!(app = %self.target, error = %e, "publishing a report failed; retrying with backoff");
                        last_error = Some(e);
                    }
                    if !timed_out && pause(&mut shutdown, backoff.next_delay()).await {
                        return;
                    }
                }
            }
        }
    }

    /// Claims an app ID for this client; false if another address already serves it.
    fn claim(&self, id: &str) -> bool {
        let Ok(mut claimed) = self.claimed.lock() else {
            return true;
        };
        let owner = claimed
            .entry(id.to_string())
            .or_insert_with(|| self.target.clone());
        *owner == self.target
    }
}

/// Sleeps for `d`; true if the probe is shutting down.
async fn pause(shutdown: &mut Shutdown, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}

/// An HTTP error with its causes (reqwest's own text is terse).
fn error_text(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Keeps the control websocket to one app open and answers its calls.
async fn control_channel(
    client: Arc<AppClient>,
    controls: ControlRegistry,
    app_id: String,
    mut shutdown: Shutdown,
) {
    let endpoint = AppEndpoint {
        id: app_id.clone(),
        base_url: client.base_url.clone(),
        headers: client.headers.clone(),
        tls: client.tls.clone(),
    };
    let url = format!("{}/api/control/ws", endpoint.ws_base());
    let mut backoff = Backoff::publish();
    let mut last_error: Option<String> = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let request = match endpoint.ws_request(&url) {
            Ok(r) => r,
            Err(e) => {
                warn!(app = %client.target, error = %e, "no control channel");
                return;
            }
        };
        let dialled = tokio::time::timeout(DIAL_TIMEOUT * 2, endpoint.connect_ws(request)).await;
        match dialled {
            Ok(Ok(socket)) => {
                info!(app = %client.target, "control channel open");
                last_error = None;
                backoff.reset();
                serve_calls(socket, &controls, &app_id, &mut shutdown).await;
                if *shutdown.borrow() {
                    return;
                }
                info!(app = %client.target, "control channel closed; reconnecting");
            }
            failed => {
                let e = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".into(),
                };
                if last_error.as_deref() != Some(e.as_str()) {
                    warn!(app = %client.target, error = %e, "cannot open the control channel; retrying with backoff");
                    last_error = Some(e);
                }
            }
        }
        if pause(&mut shutdown, backoff.next_delay()).await {
            return;
        }
    }
}

/// Serves Go `net/rpc` calls over one control websocket until it closes: each call is
/// a header frame and a value frame; each answer likewise. Calls run concurrently.
async fn serve_calls<S>(
    socket: tokio_tungstenite::WebSocketStream<S>,
    controls: &ControlRegistry,
    app_id: &str,
    shutdown: &mut Shutdown,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = socket.split();
    let (answers_tx, mut answers) = mpsc::channel::<(RpcResponseHeader, serde_json::Value)>(64);
    let mut calling: Option<(u64, String)> = None;
    let mut ping = tokio::time::interval(PING_PERIOD);
    ping.tick().await;
    let mut last_heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(Ok(message)) = message else { return };
                last_heard = tokio::time::Instant::now();
                let text = match message {
                    Message::Text(t) => t,
                    Message::Close(_) => return,
                    _ => continue,
                };
                let Ok(frame) = serde_json::from_str::<RpcFrame>(&text) else {
                    warn!("unreadable control frame from the app; ignored");
                    continue;
                };
                if let Some(header) = frame.request {
                    calling = Some((header.seq, header.service_method));
                    continue;
                }
                let Some((seq, method)) = calling.take() else { continue };
                let answers = answers_tx.clone();
                if method != CONTROL_METHOD {
                    let header = RpcResponseHeader { service_method: method.clone(), seq, error: format!("rpc: can't find service {method}") };
                    let _ = answers.send((header, serde_json::Value::Null)).await;
                    continue;
                }
                let request: Result<ControlRequest, _> = serde_json::from_value(frame.value.unwrap_or_default());
                let controls = controls.clone();
                let app_id = app_id.to_string();
                tokio::spawn(async move {
                    let (value, error) = match request {
                        Ok(mut request) => {
                            request.app_id = app_id;
                            let response = controls.handle(request).await;
                            (serde_json::to_value(&response).unwrap_or_default(), String::new())
                        }
                        Err(e) => (serde_json::Value::Null, format!("reading body {e}")),
                    };
                    let header = RpcResponseHeader { service_method: method, seq, error };
                    let _ = answers.send((header, value)).await;
                });
            }
            answer = answers.recv() => {
                let Some((header, value)) = answer else { return };
                let head = RpcFrame { response: Some(header), ..Default::default() };
                let body = RpcFrame { value: Some(value), ..Default::default() };
                let (Ok(h), Ok(b)) = (serde_json::to_string(&head), serde_json::to_string(&body)) else { continue };
                if sink.send(Message::Text(h.into())).await.is_err() || sink.send(Message::Text(b.into())).await.is_err() {
                    return;
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > PONG_WAIT {
                    warn!("the app stopped answering on the control channel");
                    return;
                }
                if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
            }
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    let _ = sink.close().await;
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_ceiling_and_resets() {
        let mut b = Backoff::publish();
        let delays: Vec<u64> = (0..8).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 32, 60, 60]);
        b.reset();
        assert_eq!(b.next_delay().as_secs(), 1);
    }

    #[test]
    fn headers_carry_the_token_even_when_empty() {
        let h = probe_headers("p1", "0.1.0", &Secret(String::new()));
        assert_eq!(h[AUTHORIZATION], "Scope-Probe token=");
        assert_eq!(h[PROBE_ID_HEADER], "p1");
        assert_eq!(h[PROBE_VERSION_HEADER], "0.1.0");
        assert_eq!(h[USER_AGENT], "Scope_Probe/0.1.0");
        assert!(h[AUTHORIZATION].is_sensitive());
    }

    fn client() -> AppClient {
        AppClient {
            target: "t".into(),
            base_url: "http://127.0.0.1:1".into(),
            headers: HeaderMap::new(),
            http: reqwest::Client::new(),
            tls: ClientTls::system(),
            queue: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            needs_full: AtomicBool::new(false),
            apps: AppDirectory::default(),
            controls: None,
            claimed: Arc::default(),
            metrics: Arc::new(SelfMetrics::new()),
        }
    }

    fn body(tag: u8, full: bool, shortcut: bool) -> Body {
        Body {
            bytes: Arc::new(vec![tag]),
            full,
            shortcut,
        }
    }

    #[test]
    fn a_slow_app_keeps_the_newest_two_reports_and_then_wants_a_full_one() {
        let c = client();
        c.offer(body(1, true, false));
        c.offer(body(2, false, false));
        c.offer(body(3, false, false));
        // A shortcut is dropped when the queue is full.
        c.offer(body(4, false, true));
        let queued: Vec<u8> = std::iter::from_fn(|| c.next_body())
            .map(|b| b.bytes[0])
            .collect();
        assert_eq!(queued, vec![2, 3]);
        assert!(c.wants_full(), "the dropped body was a full report");
    }

    #[test]
    fn stripping_controls_clears_every_topology() {
        let mut r = Report::empty();
        r.topology_mut(rescope_report::TopologyKind::Host)
            .controls
            .insert("host_exec".into(), Default::default());
        strip_controls(&mut r);
        assert!(r.topologies().all(|(_, t)| t.controls.is_empty()));
    }

    #[test]
    fn the_only_app_answers_for_an_empty_app_id() {
        let d = AppDirectory::default();
        assert!(d.get("").is_none());
        d.insert(AppEndpoint {
            id: "a1".into(),
            base_url: "http://x".into(),
            headers: HeaderMap::new(),
            tls: ClientTls::system(),
        });
        assert_eq!(d.get("").map(|e| e.id), Some("a1".into()));
        assert_eq!(d.get("a1").map(|e| e.ws_base()), Some("ws://x".into()));
        assert!(d.get("other").is_none());
    }
}
