//! Plugins: HTTP servers on Unix sockets under the plugins root that the probe asks
//! for partial reports (protocol.md §6, the seed documents).
//!
//! Behaviour follows Scope's registry (plugin IDs from socket names, `GET /report` with
//! the handshake query, a 500 ms deadline, a 50 MB cap, exactly one spec with the same
//! ID, Scope's status texts) with these differences:
//! - the root is created if missing and watched with inotify: a new plugin is polled
//!   as soon as its socket appears and a removed one is dropped at once, and the spy
//!   and the publisher report the change without waiting for their intervals; a
//!   rescan every spy interval is the safety net;
//! - plugins are polled concurrently in the background; the spy loop only takes the
//!   latest answers, so a slow or hung plugin delays nothing;
//! - sockets owned by someone other than root or the probe's user, or inside a
//!   world-writable directory, are refused (and listed with the reason) unless allowed;
//! - a status change is logged once, not every tick.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rescope_report::codec::{self, DecodeLimits};
use rescope_report::plugin::PLUGIN_API_VERSION;
use rescope_report::{PluginSpec, Report, Str};
use tracing::{info, warn};

use crate::Shutdown;
use crate::reporter::{Reporter, ReporterError, Tick};
use crate::sys::unixhttp::{self, PluginRequest};

/// How long a plugin may take to answer.
pub const PLUGIN_TIMEOUT: Duration = Duration::from_millis(500);
/// The largest answer accepted from a plugin.
pub const MAX_PLUGIN_RESPONSE: usize = 50 * 1024 * 1024;

/// Whether `id` is a valid plugin ID: letters and digits in runs separated by single
/// dashes.
pub fn valid_plugin_id(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('-')
        && !id.ends_with('-')
        && !id.contains("--")
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The plugin ID of a socket: its file name without the last extension.
pub fn plugin_id(socket: &Path) -> Option<String> {
    let name = socket.file_name()?.to_str()?;
    let id = match name.rsplit_once('.') {
        Some((stem, _)) => stem,
        None => name,
    };
    valid_plugin_id(id).then(|| id.to_string())
}

/// How the registry behaves.
#[derive(Debug, Clone)]
pub struct PluginSettings {
    pub root: PathBuf,
    pub probe_id: String,
    /// The API version plugins must declare (`"1"`).
    pub api_version: String,
    /// Accept sockets of any owner and in world-writable directories.
    pub allow_any_owner: bool,
    pub timeout: Duration,
    pub max_response: usize,
}

impl PluginSettings {
    pub fn new(root: impl Into<PathBuf>, probe_id: impl Into<String>) -> Self {
        PluginSettings {
            root: root.into(),
            probe_id: probe_id.into(),
            api_version: PLUGIN_API_VERSION.to_string(),
            allow_any_owner: false,
            timeout: PLUGIN_TIMEOUT,
            max_response: MAX_PLUGIN_RESPONSE,
        }
    }
}

#[derive(Debug)]
struct Plugin {
    id: String,
    spec: PluginSpec,
    /// The plugin's data from its last good answer, with its spec in `Plugins`.
    report: Option<Report>,
    /// Why the socket is not polled (ownership checks).
    refused: Option<String>,
    /// Counts the controls run on the plugin. A poll that was under way when a
    /// control ran may carry the plugin's state from before it, so its answer is
    /// dropped rather than let it undo the control's shortcut report.
    controls_run: u64,
}

#[derive(Debug, Default)]
struct Registry {
    plugins: BTreeMap<PathBuf, Plugin>,
    root_error: Option<String>,
}

/// The control registry plugin controls go into, and the IDs registered there.
type ControlSync = (crate::control::ControlRegistry, BTreeSet<String>);

/// Finds plugins, polls them and keeps their latest answers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PluginRegistry {
    settings: Arc<PluginSettings>,
    state: Arc<Mutex<Registry>>,
    /// Where plugin controls are registered, and the IDs registered there so far.
    controls: Arc<Mutex<Option<ControlSync>>>,
    /// Signalled when the plugin list or a plugin's status changes.
    changes: Arc<tokio::sync::Notify>,
}

/// How long a new socket is given to start listening before it is polled: plugins
/// bind and then listen, and a poll in between would show a spurious error.
const SETTLE: Duration = Duration::from_millis(50);
/// The least time between two scans caused by directory events, so a directory that
/// churns cannot keep the probe busy.
const MIN_EVENT_SCAN_GAP: Duration = Duration::from_millis(200);

/// The outcome of one `/report` call, as the probe judges it (§6.3).
fn judge(
    previous: &PluginSpec,
    socket_id: &str,
    settings: &PluginSettings,
    answer: Result<Vec<u8>, String>,
) -> (PluginSpec, Result<Report, String>) {
    let keep = |e: String| (previous.clone(), Err(e));
    let body = match answer {
        Ok(b) => b,
        Err(e) => return keep(e),
    };
    let limits = DecodeLimits {
        max_decompressed: settings.max_response,
    };
    let mut report = match codec::decode_with(&body, limits) {
        Ok((r, _)) => r,
        Err(e) => return keep(format!("decoding error: {e}")),
    };
    let specs = codec::plugin_specs_as_sent(&body, limits).unwrap_or_default();
    if specs.len() != 1 {
        return keep(format!(
            "report must contain exactly one plugin (found {})",
            specs.len()
        ));
    }
    let mut spec = specs[0].clone();
    if spec.id != socket_id {
        return keep(format!(
            "plugin must not change its id (is {:?}, should be {socket_id:?})",
            spec.id.as_str()
        ));
    }
    spec.status = Str::empty();
    let problem = if spec.api_version != settings.api_version.as_str() {
        Some(format!(
            "incorrect API version: expected {:?}, got {:?}",
            settings.api_version,
            spec.api_version.as_str()
        ))
    } else if spec.label.is_empty() {
        Some("spec must contain a label".to_string())
    } else if !spec.implements("reporter") {
        Some("spec must implement the \"reporter\" interface".to_string())
    } else {
        None
    };
    if let Some(p) = problem {
        return (spec, Err(p));
    }
    if spec.implements("controller") {
        rewrite_controls(&mut report, socket_id, rescope_report::GoTime::now());
    }
    // Nodes a plugin adds without an `id` get their key, so renderers can use them.
    for (_, t) in report.topologies_mut() {
        for (key, node) in t.nodes.iter_mut() {
            if node.id.is_empty() {
                node.id = key.clone();
            }
        }
    }
    (spec, Ok(report))
}

/// Rewrites a controller plugin's controls as the probe exposes them (§6.4): every
/// topology control `C` becomes `<plugin>~C`, node `active_controls` entries naming a
/// control of the same topology are renamed (others kept, order kept), and every
/// node's `active_controls` is stamped with `now`, so the plugin's view of its
/// controls wins the merge.
pub fn rewrite_controls(report: &mut Report, plugin_id: &str, now: rescope_report::GoTime) {
    for (_, t) in report.topologies_mut() {
        let defined: std::collections::BTreeSet<Str> = t.controls.keys().cloned().collect();
        let controls = std::mem::take(&mut t.controls);
        for (cid, mut c) in controls {
            let new = Str::from(rescope_report::id::plugin_control_id(plugin_id, &cid));
            c.id = new.clone();
            t.controls.insert(new, c);
        }
        for (key, node) in t.nodes.iter_mut() {
            node.id = key.clone();
            let value = node
                .latest_value(rescope_report::node::ACTIVE_CONTROLS)
                .map(|v| v.as_str())
                .unwrap_or("")
                .split(';')
                .filter(|c| !c.is_empty())
                .map(|c| {
                    if defined.contains(c) {
                        rescope_report::id::plugin_control_id(plugin_id, c)
                    } else {
                        c.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(";");
            node.set_latest(rescope_report::node::ACTIVE_CONTROLS, now, value);
        }
    }
}

/// Why a socket must not be trusted, if it must not.
fn distrust(root: &Path, socket: &Path, meta: &std::fs::Metadata) -> Option<String> {
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != me {
        return Some(format!(
            "socket is owned by uid {}, not root or the probe's user (uid {me})",
            meta.uid()
        ));
    }
    let mut dir = socket.parent();
    while let Some(d) = dir {
        if let Ok(m) = std::fs::metadata(d) {
            let mode = m.permissions().mode();
            if mode & 0o002 != 0 && mode & 0o1000 == 0 {
                return Some(format!("{} is writable by everyone", d.display()));
            }
        }
        if d == root {
            break;
        }
        dir = d.parent();
    }
    None
}

/// How deep below the plugins root sockets are looked for.
const MAX_SCAN_DEPTH: usize = 16;

/// The next directory event, or never when there is no watcher.
async fn next_event(events: &mut Option<tokio::sync::mpsc::Receiver<()>>) -> Option<()> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn find_sockets(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) {
    if depth > MAX_SCAN_DEPTH {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        // stat follows symlinks, as Scope's scan does.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            find_sockets(&path, out, depth + 1);
        } else if meta.file_type().is_socket() {
            out.push(path);
        }
    }
}

impl PluginRegistry {
    pub fn new(settings: PluginSettings) -> Self {
        PluginRegistry {
            settings: Arc::new(settings),
            state: Arc::default(),
            controls: Arc::default(),
            changes: Arc::default(),
        }
    }

    /// Notified (one stored permit) whenever a plugin appears, vanishes or changes
    /// status, so the spy can report the change without waiting for its next tick.
    pub fn change_notify(&self) -> Arc<tokio::sync::Notify> {
        self.changes.clone()
    }

    /// Registers every control the plugins define (`<plugin>~<control>`) in
    /// `controls`, and keeps the registrations in step with the plugins: a control
    /// disappears with its plugin or when the plugin stops defining it.
    pub fn use_controls(&self, controls: crate::control::ControlRegistry) {
        if let Ok(mut slot) = self.controls.lock() {
            *slot = Some((controls, BTreeSet::new()));
        }
        self.sync_controls();
    }

    /// The rewritten IDs of every control defined by a plugin that answered correctly.
    fn defined_controls(&self) -> BTreeSet<String> {
        let Ok(state) = self.state.lock() else {
            return BTreeSet::new();
        };
        state
            .plugins
            .values()
            .filter(|p| p.spec.implements("controller"))
            .filter_map(|p| p.report.as_ref())
            .flat_map(|r| {
                r.topologies()
                    .flat_map(|(_, t)| t.controls.keys().map(|k| k.to_string()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn sync_controls(&self) {
        let defined = self.defined_controls();
        let Ok(mut slot) = self.controls.lock() else {
            return;
        };
        let Some((controls, registered)) = slot.as_mut() else {
            return;
        };
        for gone in registered.difference(&defined) {
            controls.unregister(gone);
        }
        for new in defined.difference(registered) {
            let registry = self.clone();
            controls.register(
                new.clone(),
                move |request: rescope_report::xfer::ControlRequest| {
                    let registry = registry.clone();
                    async move {
                        let (response, shortcut) = registry.control(&request).await;
                        crate::control::ControlOutcome { response, shortcut }
                    }
                },
            );
        }
        *registered = defined;
    }

    /// Looks for sockets under the root (creating it if missing); adds new plugins and
    /// forgets vanished ones.
    pub fn scan(&self) {
        let root = &self.settings.root;
        let root_error = match std::fs::create_dir_all(root) {
            Ok(()) => None,
            Err(e) => Some(format!(
                "cannot create the plugins directory {}: {e}",
                root.display()
            )),
        };
        let mut sockets = Vec::new();
        find_sockets(root, &mut sockets, 0);
        sockets.sort();
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if state.root_error != root_error {
            if let Some(e) = &root_error {
                warn!(error = %e, "plugins are disabled until the directory can be created");
                crate::health::problem(
                    "Plugins",
                    format!(
                        "the plugins directory cannot be created ({e}); no plugin is read until it can"
                    ),
                );
            } else {
                crate::health::resolved("Plugins");
            }
            state.root_error = root_error;
        }
        let before: Vec<PathBuf> = state.plugins.keys().cloned().collect();
        state.plugins.retain(|path, p| {
            let keep = sockets.contains(path);
            if !keep {
                info!(plugin = %p.id, socket = %path.display(), "plugin removed");
            }
            keep
        });
        for socket in sockets {
            let Some(id) = plugin_id(&socket) else {
                if !before.contains(&socket) {
                    warn!(socket = %socket.display(), "ignoring socket: its name is not a valid plugin ID (letters, digits, single dashes)");
                }
                continue;
            };
            let refused = if self.settings.allow_any_owner {
                None
            } else {
                std::fs::metadata(&socket)
                    .ok()
                    .and_then(|m| distrust(root, &socket, &m))
            };
            let entry = state.plugins.entry(socket.clone()).or_insert_with(|| {
                info!(plugin = %id, socket = %socket.display(), "plugin found");
                Plugin {
                    id: id.clone(),
                    spec: PluginSpec {
                        id: Str::new(&id),
                        label: Str::new(&id),
                        ..Default::default()
                    },
                    report: None,
                    controls_run: 0,
                    refused: None,
                }
            });
            if entry.refused != refused {
                if let Some(why) = &refused {
                    warn!(plugin = %id, reason = %why, "plugin refused (--plugins-allow-any-owner accepts it)");
                    entry.spec.status = Str::from(format!("error: refused: {why}"));
                    entry.report = None;
                }
                entry.refused = refused;
            }
        }
    }

    /// Asks every trusted plugin for its report, all at once, and records the answers.
    pub async fn poll(&self) {
        let targets: Vec<(PathBuf, String, PluginSpec, u64)> = match self.state.lock() {
            Ok(state) => state
                .plugins
                .iter()
                .filter(|(_, p)| p.refused.is_none())
                .map(|(path, p)| (path.clone(), p.id.clone(), p.spec.clone(), p.controls_run))
                .collect(),
            Err(_) => return,
        };
        let settings = self.settings.clone();
        let query = format!(
            "/report?api_version={}&probe_id={}",
            settings.api_version, settings.probe_id
        );
        let calls = targets
            .into_iter()
            .map(|(path, id, previous, controls_run)| {
                let settings = settings.clone();
                let query = query.clone();
                async move {
                    let answer = unixhttp::request(
                        &path,
                        PluginRequest {
                            method: hyper::Method::GET,
                            path_and_query: &query,
                            json_body: None,
                        },
                        settings.timeout,
                        settings.max_response,
                    )
                    .await
                    .map(|b| b.to_vec())
                    .map_err(|e| e.to_string());
                    let judged = tokio::task::spawn_blocking(move || {
                        judge(&previous, &id, &settings, answer)
                    })
                    .await;
                    (path, controls_run, judged)
                }
            });
        let results = futures_util::future::join_all(calls).await;
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        for (path, controls_run, judged) in results {
            let Ok((spec, outcome)) = judged else {
                continue;
            };
            let Some(plugin) = state.plugins.get_mut(&path) else {
                continue;
            };
            if plugin.controls_run != controls_run {
                continue;
            }
            let status = match &outcome {
                Ok(_) => "ok".to_string(),
                Err(e) => format!("error: {e}"),
            };
            if plugin.spec.status.as_str() != status {
                match &outcome {
                    Ok(_) => info!(plugin = %plugin.id, "plugin ok"),
                    Err(e) => {
                        warn!(plugin = %plugin.id, error = %e, "plugin report rejected; its data is left out until it answers correctly")
                    }
                }
            }
            plugin.spec = PluginSpec {
                status: Str::from(status),
                ..spec
            };
            plugin.report = outcome.ok();
        }
        drop(state);
        self.sync_controls();
    }

    /// Scans and polls every `interval`, and at once when the plugins directory
    /// changes (inotify), until shutdown.
    pub async fn run(self, interval: Duration, mut shutdown: Shutdown) {
        let scanner = self.clone();
        let _ = tokio::task::spawn_blocking(move || scanner.scan()).await;
        let mut events = match crate::sys::dirwatch::watch(&self.settings.root, MAX_SCAN_DEPTH) {
            Ok(rx) => Some(rx),
            Err(e) => {
                warn!(error = %e, "cannot watch the plugins directory; new plugins are found by the rescan every {interval:?}");
                None
            }
        };
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_event_scan = tokio::time::Instant::now() - MIN_EVENT_SCAN_GAP;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                Some(()) = next_event(&mut events) => {
                    let earliest = last_event_scan + MIN_EVENT_SCAN_GAP;
                    tokio::time::sleep_until(earliest.max(tokio::time::Instant::now() + SETTLE)).await;
                    last_event_scan = tokio::time::Instant::now();
                }
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            let before = self.specs();
            let scanner = self.clone();
            let _ = tokio::task::spawn_blocking(move || scanner.scan()).await;
            self.poll().await;
            if self.specs() != before {
                self.changes.notify_one();
            }
        }
    }

    /// Runs a plugin control (`<plugin>~<control>`): forwards it to the plugin's
    /// `POST /control` with the plugin's own control ID. Returns the answer and, when
    /// the plugin sent one, its shortcut report (rewritten, marked `Shortcut`), to be
    /// published at once.
    pub async fn control(
        &self,
        request: &rescope_report::xfer::ControlRequest,
    ) -> (rescope_report::xfer::ControlResponse, Option<Report>) {
        use rescope_report::xfer::ControlResponse;
        let Some((plugin_id, control)) =
            rescope_report::id::parse_plugin_control_id(&request.control)
        else {
            return (
                ControlResponse::error(format!("Control \"{}\" not recognised", request.control)),
                None,
            );
        };
        let target = self.state.lock().ok().and_then(|state| {
            state
                .plugins
                .iter()
                .find(|(_, p)| p.id == plugin_id)
                .map(|(path, p)| {
                    // Only controls the plugin defined in its last report are relayed.
                    let defined = p.report.as_ref().is_some_and(|r| {
                        r.topologies()
                            .any(|(_, t)| t.controls.contains_key(request.control.as_str()))
                    });
                    (path.clone(), p.spec.clone(), defined)
                })
        });
        let Some((path, spec, defined)) = target else {
            return (
                ControlResponse::error(format!("plugin {plugin_id} not found")),
                None,
            );
        };
        if !spec.implements("controller") {
            return (
                ControlResponse::error(format!(
                    "the {} plugin does not implement the controller interface",
                    spec.label
                )),
                None,
            );
        }
        if !defined {
            return (
                ControlResponse::error(format!("Control \"{}\" not recognised", request.control)),
                None,
            );
        }
        let mut forwarded = request.clone();
        forwarded.control = control.to_string();
        let body = serde_json::to_vec(&forwarded).unwrap_or_default();
        let query = format!(
            "/control?api_version={}&probe_id={}",
            self.settings.api_version, self.settings.probe_id
        );
        let answer = unixhttp::request(
            &path,
            PluginRequest {
                method: hyper::Method::POST,
                path_and_query: &query,
                json_body: Some(body),
            },
            self.settings.timeout,
            self.settings.max_response,
        )
        .await;
        let outcome: Result<(ControlResponse, Option<Report>), String> =
            answer.map_err(|e| e.to_string()).and_then(|bytes| {
                let mut value: serde_json::Value =
                    serde_json::from_slice(&bytes).map_err(|e| format!("decoding error: {e}"))?;
                let shortcut = value
                    .as_object_mut()
                    .and_then(|o| o.remove("shortcutReport"))
                    .filter(|v| !v.is_null());
                let response: ControlResponse =
                    serde_json::from_value(value).map_err(|e| format!("decoding error: {e}"))?;
                let shortcut = match shortcut {
                    Some(v) => {
                        let raw = serde_json::to_vec(&v).unwrap_or_default();
                        let mut r = codec::decode_plain(&raw, codec::Format::Json)
                            .map_err(|e| format!("decoding error: {e}"))?;
                        rewrite_controls(&mut r, plugin_id, rescope_report::GoTime::now());
                        r.shortcut = true;
                        Some(r)
                    }
                    None => None,
                };
                Ok((response, shortcut))
            });
        let status = match &outcome {
            Ok(_) => "ok".to_string(),
            Err(e) => format!("error: {e}"),
        };
        if let Ok(mut state) = self.state.lock()
            && let Some(p) = state.plugins.get_mut(&path)
        {
            p.spec.status = Str::from(status);
            p.controls_run += 1;
            // The plugin's state after the control, for every spy report from now
            // until its next poll.
            if let (Ok((_, Some(shortcut))), Some(report)) = (&outcome, p.report.as_mut()) {
                report.merge_shortcut_from(shortcut);
            }
        }
        match outcome {
            Ok(r) => r,
            Err(e) => (ControlResponse::error(e), None),
        }
    }

    /// Every plugin's spec with its status, by ID.
    pub fn specs(&self) -> Vec<PluginSpec> {
        let Ok(state) = self.state.lock() else {
            return Vec::new();
        };
        let mut specs: Vec<PluginSpec> = state.plugins.values().map(|p| p.spec.clone()).collect();
        specs.sort_by(|a, b| a.id.cmp(&b.id));
        specs
    }

    /// The merged data of every plugin that answered correctly, plus every plugin's
    /// spec (with its status) in `Plugins`.
    pub fn report(&self) -> Report {
        let mut out = Report::empty();
        let Ok(state) = self.state.lock() else {
            return out;
        };
        for plugin in state.plugins.values() {
            if let Some(r) = &plugin.report {
                let mut data = r.clone();
                data.plugins.clear();
                out.merge_owned(data);
            }
            out.plugins
                .insert(plugin.spec.id.clone(), plugin.spec.clone());
        }
        out
    }
}

/// The registry as a spy reporter: returns the latest answers, never waits on plugins.
#[derive(Debug)]
pub struct PluginReporter(pub PluginRegistry);

impl Reporter for PluginReporter {
    fn name(&self) -> &'static str {
        "plugins"
    }
    fn report(&mut self, _tick: &Tick) -> Result<Report, ReporterError> {
        Ok(self.0.report())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_ids_follow_scopes_rule() {
        for ok in ["testPlugin", "P-L-U-G-I-N", "another-testPlugin", "iowait"] {
            assert!(valid_plugin_id(ok), "{ok}");
        }
        for bad in [
            "testPlugin!",
            "test~plugin",
            "testPlugin-",
            "-testPlugin",
            "a--b",
            "",
        ] {
            assert!(!valid_plugin_id(bad), "{bad}");
        }
        assert_eq!(
            plugin_id(Path::new("/plugins/iowait/iowait.sock")).as_deref(),
            Some("iowait")
        );
        assert_eq!(
            plugin_id(Path::new("/plugins/a.b.sock")),
            None,
            "only the last extension goes; 'a.b' is invalid"
        );
        assert_eq!(
            plugin_id(Path::new("/plugins/demo")).as_deref(),
            Some("demo")
        );
    }
}
