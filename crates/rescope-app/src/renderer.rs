//! The rendering thread: applies reports and renders views for the whole app.
//!
//! One thread owns the merged report ([`Store`]) and the views, which it keeps up to
//! date incrementally ([`LiveViews`]): a pass applies every report queued in the
//! collector since the last pass, and the views rebuild only the nodes those reports
//! changed. Passes follow reports as they arrive, at most one every [`PASS_GAP`], so
//! a change is in the views well within a second however many probes report.
//!
//! Everything that needs the merged report or a view (a listing, node details, the
//! topology list, a websocket tick, `/api/report`, `/metrics`) is queued to this thread
//! and served after the pass that was due. A listing (the summaries a view request or
//! a websocket sends for one view and query) is kept between passes and updated from
//! the nodes that changed since it was last used; each node's summary is kept as JSON,
//! so a body is assembled by copying, and a websocket diff compares shared buffers.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;
use rescope_render::live::{Changes, LiveViews, ReportChanges};
use rescope_render::summary;
use rescope_render::{catalog, detail, list, render_unfiltered};
use rescope_report::{GoTime, PluginSpecs, Report, Str, TopologyKind};
use serde::Serialize;
use tokio::sync::{oneshot, watch};

use crate::api::ApiError;
use crate::collector::Collector;
use crate::metrics::AppMetrics;
use crate::store::Store;

/// Passes are at least this far apart: reports arriving meanwhile are applied together.
pub const PASS_GAP: Duration = Duration::from_millis(200);

/// One node's summary as JSON, ready to be copied into a body: the `"id":{…}` pair of
/// a listing, whose value (from `value`) is what websocket diffs carry. It knows where
/// its metric rows are, so that new metric values cost only those rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pair: Bytes,
    value: usize,
    /// Where the metrics field is (or would be): `pair[metrics.0..metrics.1]` is
    /// `,"metrics":[…]`, or empty without metric rows.
    metrics: (usize, usize),
}

/// The fields of a summary that come after its metrics, serialised as the summary
/// serialises them.
#[derive(Serialize)]
struct Tail<'a> {
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    tables: &'a [rescope_render::wire::Table],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    adjacency: &'a [Str],
}

/// `,"metrics":[…]` for non-empty `rows`, nothing for none (as the summary skips it).
fn write_metrics(
    buf: &mut Vec<u8>,
    rows: &[rescope_render::wire::MetricRow],
) -> Result<(), ApiError> {
    if !rows.is_empty() {
        buf.extend_from_slice(b",\"metrics\":");
        serde_json::to_writer(&mut *buf, rows).map_err(internal)?;
    }
    Ok(())
}

impl Entry {
    /// The entry of summary `summary` of node `id`: the same bytes as serialising it
    /// whole, written in three parts (fields before the metrics, the metrics, and the
    /// fields after them).
    pub fn new(id: &str, mut summary: rescope_render::wire::NodeSummary) -> Result<Self, ApiError> {
        let mut buf = serde_json::to_vec(id).map_err(internal)?;
        buf.push(b':');
        let value = buf.len();
        let metrics = std::mem::take(&mut summary.metrics);
        let tables = std::mem::take(&mut summary.tables);
        let adjacency = std::mem::take(&mut summary.adjacency);
        serde_json::to_writer(&mut buf, &summary).map_err(internal)?;
        // The head always has fields (`id`, `label`, …): drop its closing brace.
        buf.pop();
        let start = buf.len();
        write_metrics(&mut buf, &metrics)?;
        let end = buf.len();
        let tail = serde_json::to_vec(&Tail {
            tables: &tables,
            adjacency: &adjacency,
        })
        .map_err(internal)?;
        if tail.len() > 2 {
            buf.push(b',');
            buf.extend_from_slice(&tail[1..]);
        } else {
            buf.push(b'}');
        }
        Ok(Entry {
            pair: Bytes::from(buf),
            value,
            metrics: (start, end),
        })
    }

    /// This entry with other metric rows (for a node whose metrics alone changed).
    pub fn with_metrics(&self, rows: &[rescope_render::wire::MetricRow]) -> Result<Self, ApiError> {
        let (start, end) = self.metrics;
        let mut buf = Vec::with_capacity(self.pair.len() + 64);
        buf.extend_from_slice(&self.pair[..start]);
        write_metrics(&mut buf, rows)?;
        let new_end = buf.len();
        buf.extend_from_slice(&self.pair[end..]);
        Ok(Entry {
            pair: Bytes::from(buf),
            value: self.value,
            metrics: (start, new_end),
        })
    }

    /// The summary as a JSON object.
    pub fn value(&self) -> Bytes {
        self.pair.slice(self.value..)
    }

    /// Whether two entries are the same summary (usually the very same buffer).
    pub fn same(&self, other: &Entry) -> bool {
        (self.pair.as_ptr() == other.pair.as_ptr() && self.pair.len() == other.pair.len())
            || self.pair == other.pair
    }
}

/// Node summaries of a view as a listing sends them, by node ID.
pub type Summaries = BTreeMap<Str, Entry>;

/// A rendering request: what a listing, view or details request asks for.
#[derive(Debug, Clone)]
pub enum Work {
    List(Vec<(String, String)>),
    View(String, Vec<(String, String)>),
    Node(String, String, Vec<(String, String)>),
}

fn cache_key(kind: &str, view: &str, query: &[(String, String)]) -> String {
    let mut key = format!("{kind}:{view}?");
    for (k, v) in query {
        key.push_str(k);
        key.push('=');
        key.push_str(v);
        key.push('&');
    }
    key
}

impl Work {
    pub fn key(&self) -> String {
        match self {
            Work::List(q) => cache_key("list", "", q),
            Work::View(v, q) => cache_key("view", v, q),
            Work::Node(v, n, q) => cache_key("node", &format!("{v}/{n}"), q),
        }
    }
}

/// What a job produced: a JSON body, `None` for an unknown view or node.
pub type Rendered = Option<Result<Bytes, ApiError>>;

enum Job {
    /// Renders every work item (cached ones are skipped) and answers with the first's
    /// body; `true`: from every report received so far (else from what the views hold,
    /// without waiting for a pass that is due).
    Bodies(Vec<Work>, oneshot::Sender<Rendered>, bool),
    /// The summaries of a view (for websockets), with the generation they are of;
    /// `true`: from every report received so far.
    Summaries(
        String,
        Vec<(String, String)>,
        oneshot::Sender<Option<(u64, Arc<Summaries>)>>,
        bool,
    ),
    /// The merged report with part-merged nodes, upgraded (`/api/report`).
    Report(oneshot::Sender<Report>),
    /// The `/metrics` exposition.
    Metrics(usize, oneshot::Sender<String>),
    /// Reports arrived.
    Wake,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Bodies(w, _, fresh) => f.debug_tuple("Bodies").field(w).field(fresh).finish(),
            Job::Summaries(v, q, _, fresh) => f
                .debug_tuple("Summaries")
                .field(v)
                .field(q)
                .field(fresh)
                .finish(),
            Job::Report(_) => f.write_str("Report"),
            Job::Metrics(..) => f.write_str("Metrics"),
            Job::Wake => f.write_str("Wake"),
        }
    }
}

/// What the rendering thread last published about the merged report.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// Changes with every pass that changed anything.
    pub generation: u64,
    pub nodes: usize,
    pub probes: usize,
    pub plugins: PluginSpecs,
    /// How long the last pass took, and how many reports it applied.
    pub pass_time: Duration,
    pub pass_reports: usize,
    /// How long the oldest report the last pass applied had waited.
    pub pass_lag: Duration,
    pub passes: u64,
}

/// Rendered bodies of one generation.
#[derive(Debug, Default)]
struct RenderCache {
    generation: u64,
    bodies: HashMap<String, Bytes>,
    /// The newest body of each request, with when it was rendered; kept across
    /// generations.
    newest: HashMap<String, (Bytes, Instant)>,
}

/// At most this many bodies are kept per generation.
const MAX_CACHED: usize = 256;

impl RenderCache {
    fn at(&mut self, generation: u64) -> &mut Self {
        if self.generation != generation {
            self.generation = generation;
            self.bodies.clear();
        }
        self
    }
}

/// The handle requests use; cheap to clone.
#[derive(Debug, Clone)]
pub struct Renderer {
    jobs: Sender<Job>,
    cache: Arc<Mutex<RenderCache>>,
    busy: Arc<AtomicBool>,
    woken: Arc<AtomicBool>,
    status: Arc<Mutex<Status>>,
    generations: watch::Receiver<u64>,
    collector: Arc<Collector>,
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn to_json<T: Serialize>(value: &T) -> Result<Bytes, ApiError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| internal(format!("encoding response: {e}")))
}

#[derive(Serialize)]
struct NodeBody {
    node: rescope_render::wire::NodeDetails,
}

impl Renderer {
    /// Starts the rendering thread; it ends when the last handle is dropped.
    pub fn start(collector: Arc<Collector>, metrics: Arc<AppMetrics>) -> Self {
        let (jobs, rx) = mpsc::channel();
        let (generation_tx, generations) = watch::channel(0);
        let worker = Worker::new(collector.clone(), metrics, generation_tx);
        let (cache, busy, woken, status) = (
            worker.cache.clone(),
            worker.busy.clone(),
            worker.woken.clone(),
            worker.status.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name("rescope-render".to_string())
            .spawn(move || worker.run(rx));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the rendering thread");
        }
        let renderer = Renderer {
            jobs,
            cache,
            busy,
            woken,
            status,
            generations,
            collector: collector.clone(),
        };
        let doorbell = renderer.clone();
        collector.on_report(move || doorbell.wake());
        renderer
    }

    /// Tells the rendering thread reports arrived (once until it looks).
    pub fn wake(&self) {
        if !self.woken.swap(true, Ordering::AcqRel) {
            let _ = self.jobs.send(Job::Wake);
        }
    }

    /// Whether a pass or a render is under way.
    pub fn busy(&self) -> bool {
        self.busy.load(Ordering::Relaxed)
    }

    /// What the rendering thread last published.
    pub fn status(&self) -> Status {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Notified with the new generation after every pass that changed the views.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        let mut rx = self.generations.clone();
        rx.borrow_and_update();
        rx
    }

    /// The newest body rendered for `key`, if it is at most `max_age` old.
    pub fn recent(&self, key: &str, max_age: Duration) -> Option<Bytes> {
        let cache = self.cache.lock().ok()?;
        let (body, built) = cache.newest.get(key)?;
        (built.elapsed() <= max_age).then(|| body.clone())
    }

    /// A body already rendered from every report received so far.
    pub fn current(&self, key: &str) -> Option<Bytes> {
        if self.collector.pending() {
            return None;
        }
        let generation = self.status.lock().ok()?.generation;
        let cache = self.cache.lock().ok()?;
        (cache.generation == generation)
            .then(|| cache.bodies.get(key).cloned())
            .flatten()
    }

    /// Renders `work` (or finds it in the cache) and answers with the first item's
    /// body. The other items are rendered in the same pass (ahead of time). `fresh`:
    /// from every report received so far; otherwise a pass that is due may come after.
    pub async fn bodies(&self, work: Vec<Work>, fresh: bool) -> Result<Rendered, ApiError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Job::Bodies(work, tx, fresh))
            .map_err(|_| internal("the rendering thread has stopped"))?;
        rx.await.map_err(|_| internal("rendering failed"))
    }

    /// The summaries of a view as the query's options select them, and the generation
    /// they are of.
    pub async fn summaries(
        &self,
        view: &str,
        query: &[(String, String)],
        fresh: bool,
    ) -> Option<(u64, Arc<Summaries>)> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Job::Summaries(view.to_string(), query.to_vec(), tx, fresh))
            .ok()?;
        rx.await.ok().flatten()
    }

    /// The merged report with part-merged nodes, upgraded, as `/api/report` shows it.
    pub async fn report(&self) -> Result<Report, ApiError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Job::Report(tx))
            .map_err(|_| internal("the rendering thread has stopped"))?;
        rx.await.map_err(|_| internal("rendering failed"))
    }

    /// Waits until every report received so far is applied.
    pub async fn settle(&self) {
        if self.collector.pending() {
            let _ = self.bodies(Vec::new(), true).await;
        }
    }

    /// The `/metrics` exposition.
    pub async fn metrics(&self, probes: usize) -> Result<String, ApiError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Job::Metrics(probes, tx))
            .map_err(|_| internal("the rendering thread has stopped"))?;
        rx.await.map_err(|_| internal("rendering failed"))
    }
}

/// A view's summaries for one query, kept between passes.
#[derive(Debug)]
struct Listing {
    /// The pass it is current with.
    pass: u64,
    entries: Arc<Summaries>,
    /// What the options removed, and whether they pruned edges.
    removed: HashSet<Str>,
    prune: bool,
    body: Option<(u64, Bytes)>,
    used: Instant,
}

/// What one pass changed, for listings that were last used before it.
#[derive(Debug)]
struct Logged {
    pass: u64,
    views: HashMap<&'static str, Changes>,
    /// Nodes whose label as a parent changed; `None` when presentation changed (every
    /// summary may change).
    parents: Option<HashSet<Str>>,
}

/// How many passes are remembered for listings; one used less often is summarised
/// again from scratch.
const LOG_PASSES: usize = 64;
/// Listings unused for this long are dropped.
const LISTING_TTL: Duration = Duration::from_secs(120);
const MAX_LISTINGS: usize = 64;

/// Topologies whose nodes are listed as parents of others (`summary::parents`).
const PARENT_KINDS: [TopologyKind; 12] = [
    TopologyKind::Container,
    TopologyKind::ContainerImage,
    TopologyKind::Pod,
    TopologyKind::Deployment,
    TopologyKind::DaemonSet,
    TopologyKind::StatefulSet,
    TopologyKind::CronJob,
    TopologyKind::Service,
    TopologyKind::EcsTask,
    TopologyKind::EcsService,
    TopologyKind::SwarmService,
    TopologyKind::Host,
];

struct Worker {
    store: Store,
    live: LiveViews,
    collector: Arc<Collector>,
    metrics: Arc<AppMetrics>,
    cache: Arc<Mutex<RenderCache>>,
    busy: Arc<AtomicBool>,
    woken: Arc<AtomicBool>,
    status: Arc<Mutex<Status>>,
    generations: watch::Sender<u64>,
    /// Counts passes that changed anything.
    generation: u64,
    /// Counts every pass.
    pass: u64,
    log: VecDeque<Logged>,
    /// The newest pass dropped from the log.
    forgotten: u64,
    /// The label each parent node shows under.
    labels: HashMap<(usize, Str), Str>,
    listings: HashMap<String, Listing>,
}

impl Worker {
    /// A worker with nothing applied yet, announcing generations on `generations`.
    fn new(
        collector: Arc<Collector>,
        metrics: Arc<AppMetrics>,
        generations: watch::Sender<u64>,
    ) -> Self {
        Worker {
            store: Store::new(collector.window()),
            live: LiveViews::new(GoTime::now()),
            collector,
            metrics,
            cache: Arc::default(),
            busy: Arc::default(),
            woken: Arc::default(),
            status: Arc::default(),
            generations,
            generation: 0,
            pass: 0,
            log: VecDeque::new(),
            forgotten: 0,
            labels: HashMap::new(),
            listings: HashMap::new(),
        }
    }

    fn run(mut self, rx: Receiver<Job>) {
        let mut last_pass: Option<Instant> = None;
        loop {
            let mut jobs = match rx.recv() {
                Ok(job) => vec![job],
                Err(_) => return,
            };
            let mut disconnected = false;
            loop {
                match rx.try_recv() {
                    Ok(more) => jobs.push(more),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        disconnected = true;
                        break;
                    }
                }
            }
            self.woken.store(false, Ordering::Release);
            // What may be served from the views as they are (websocket ticks, renders
            // ahead of time) goes first: a due pass would only delay it.
            if self.collector.pending() {
                let (now, later): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|j| {
                    matches!(
                        j,
                        Job::Summaries(_, _, _, false) | Job::Bodies(_, _, false) | Job::Wake
                    )
                });
                jobs = later;
                self.busy.store(true, Ordering::Relaxed);
                for job in now {
                    self.serve(job);
                }
            }
            if self.collector.pending() {
                // Passes are paced: what arrives meanwhile joins this one.
                let due = last_pass.map_or(Instant::now(), |t| t + PASS_GAP);
                while let Some(left) = due.checked_duration_since(Instant::now()) {
                    match rx.recv_timeout(left) {
                        Ok(more) => jobs.push(more),
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => {
                            disconnected = true;
                            break;
                        }
                    }
                }
                self.woken.store(false, Ordering::Release);
                self.busy.store(true, Ordering::Relaxed);
                last_pass = Some(Instant::now());
                self.pass();
            }
            self.busy.store(true, Ordering::Relaxed);
            let started = Instant::now();
            let mut served = false;
            for job in jobs {
                served |= !matches!(job, Job::Wake);
                self.serve(job);
            }
            if served {
                self.metrics
                    .rendered(started.elapsed().as_micros().min(u64::MAX as u128) as u64);
            }
            self.busy.store(false, Ordering::Relaxed);
            if disconnected {
                return;
            }
        }
    }

    /// Applies what the collector queued and brings the views up to date.
    fn pass(&mut self) {
        let started = Instant::now();
        let batch = self.collector.drain();
        let reports = batch.reports.len();
        let lag = batch
            .reports
            .first()
            .map_or(Duration::ZERO, |q| q.arrived.elapsed());
        for key in &batch.expired {
            self.store.remove(key);
        }
        for q in batch.reports {
            self.store.apply(&q.key, q.kind, q.report);
        }
        let changes = self.store.take_changes();
        self.pass += 1;
        if !changes.is_empty() {
            let parents = self.parent_labels(&changes);
            let views = self.live.update(self.store.report(), &changes);
            self.log.push_back(Logged {
                pass: self.pass,
                views: views.into_iter().filter(|(_, c)| !c.is_empty()).collect(),
                parents,
            });
            while self.log.len() > LOG_PASSES {
                if let Some(l) = self.log.pop_front() {
                    self.forgotten = l.pass;
                }
            }
            self.generation += 1;
            self.generations.send_replace(self.generation);
        }
        let report = self.store.report();
        if let Ok(mut s) = self.status.lock() {
            s.generation = self.generation;
            s.nodes = self.store.node_count();
            s.probes = self.store.probe_count();
            s.plugins = report.plugins.clone();
            s.pass_time = started.elapsed();
            s.pass_reports = reports;
            s.pass_lag = lag;
            s.passes = self.pass;
        }
        self.listings.retain(|_, l| l.used.elapsed() < LISTING_TTL);
    }

    /// Parent nodes whose label changed (`None`: every summary may have changed).
    fn parent_labels(&mut self, changes: &ReportChanges) -> Option<HashSet<Str>> {
        let report = self.store.report();
        let everything = changes.all || changes.presentation;
        if everything {
            self.labels.clear();
        }
        let mut changed = HashSet::new();
        for kind in PARENT_KINDS {
            let ids: Vec<Str> = if everything {
                report[kind].nodes.keys().cloned().collect()
            } else {
                changes.nodes[kind.index()].iter().cloned().collect()
            };
            for id in ids {
                let label = summary::parent_label(kind.name(), &id, report);
                let key = (kind.index(), id.clone());
                if !report[kind].nodes.contains_key(&id) {
                    // Gone: a stub's label, worked out again when asked.
                    if self.labels.remove(&key).is_some() {
                        changed.insert(id);
                    }
                    continue;
                }
                if self.labels.get(&key) != Some(&label) {
                    changed.insert(id.clone());
                    self.labels.insert(key, label);
                }
            }
        }
        (!everything).then_some(changed)
    }

    /// The changes to `view` since pass `since`, and the parents whose labels changed;
    /// `None` when they are not all remembered.
    fn changes_since(&self, view: &str, since: u64) -> Option<(Changes, HashSet<Str>)> {
        if since == 0 || since < self.forgotten {
            return None;
        }
        let mut changes = Changes::default();
        let mut parents = HashSet::new();
        for l in self.log.iter().filter(|l| l.pass > since) {
            if let Some(c) = l.views.get(view) {
                changes.merge(c);
            }
            parents.extend(l.parents.as_ref()?.iter().cloned());
        }
        (!changes.all).then_some((changes, parents))
    }

    /// Brings the listing of `view` for `query` up to date.
    fn listing(&mut self, view: &str, query: &[(String, String)]) -> Option<&mut Listing> {
        let spec = catalog::view(view)?;
        let key = cache_key("listing", view, query);
        let live = self.live.view(view).is_some();
        if live && self.listings.get(&key).is_some_and(|l| l.pass == self.pass) {
            // Current: nothing to select or summarise again.
            let listing = self.listings.get_mut(&key)?;
            listing.used = Instant::now();
            return Some(listing);
        }
        let known = if live {
            self.listings
                .get(&key)
                .and_then(|l| self.changes_since(view, l.pass))
        } else {
            None
        };
        if !self.listings.contains_key(&key)
            && self.listings.len() >= MAX_LISTINGS
            && let Some(oldest) = self
                .listings
                .iter()
                .min_by_key(|(_, l)| l.used)
                .map(|(k, _)| k.clone())
        {
            self.listings.remove(&oldest);
        }
        let report = self.store.report();
        let ctx = self.live.context(report);
        let base = render_unfiltered(&ctx, view)?;
        let groups = spec.options.unwrap_or_default();
        let selection = catalog::Selection::of(&base.nodes, &groups, query);
        let labels = &self.labels;
        let label = |topology: &str, id: &Str| {
            let kind = TopologyKind::from_name(topology)?;
            labels.get(&(kind.index(), id.clone())).cloned()
        };
        let listing = self.listings.entry(key).or_insert_with(|| Listing {
            pass: 0,
            entries: Arc::default(),
            removed: HashSet::new(),
            prune: false,
            body: None,
            used: Instant::now(),
        });
        listing.used = Instant::now();
        let known = known.filter(|_| selection.prune == listing.prune);
        let selected = rescope_render::Selected {
            base: base.clone(),
            selection,
        };
        let entries = {
            // Nodes whose edges the options may now cut differently.
            let flipped: HashSet<&Str> = match &known {
                Some((changes, _)) if selected.selection.prune => selected
                    .selection
                    .removed
                    .symmetric_difference(&listing.removed)
                    .chain(changes.structure.iter())
                    .collect(),
                _ => HashSet::new(),
            };
            let fresh = |id: &Str, node: &rescope_report::Node| {
                let mut s = summary::summarize_with(node, report, false, &label)?;
                s.adjacency = selected.adjacency(id, node).cloned().collect();
                Entry::new(id, s).ok()
            };
            let metrics_only = |changes: &Changes, id: &Str| {
                changes.measured.contains(id) && !changes.structure.contains(id)
            };
            match &known {
                // Only the nodes named may have changed, and nothing else of the
                // selection: patch those, keep the rest as they are.
                Some((changes, parents))
                    if !changes.all
                        && parents.is_empty()
                        && flipped.is_empty()
                        && selected.selection.removed == listing.removed =>
                {
                    let mut entries = Arc::unwrap_or_clone(std::mem::take(&mut listing.entries));
                    for id in changes.ids() {
                        let node = selected
                            .base
                            .nodes
                            .get(id)
                            .filter(|_| selected.selection.keeps(id));
                        let Some(node) = node else {
                            entries.remove(id);
                            continue;
                        };
                        let patched = entries
                            .get(id)
                            .filter(|_| metrics_only(changes, id))
                            .and_then(|e| {
                                e.with_metrics(&summary::listing_metrics(node, report)).ok()
                            });
                        match patched.or_else(|| fresh(id, node)) {
                            Some(e) => {
                                entries.insert(id.clone(), e);
                            }
                            None => {
                                entries.remove(id);
                            }
                        }
                    }
                    return Some(Self::current(listing, entries, selected, self.pass));
                }
                _ => {}
            }
            let old = &listing.entries;
            let mut entries = Summaries::new();
            for (id, node) in selected.nodes() {
                // The entry as it was, and whether only its metric rows are stale.
                let reuse = known.as_ref().and_then(|(changes, parents)| {
                    let stale = changes.all
                        || changes.structure.contains(id)
                        || (!parents.is_empty()
                            && node
                                .parents
                                .iter()
                                .any(|(_, ids)| ids.iter().any(|p| parents.contains(p))))
                        || (!flipped.is_empty()
                            && node.adjacency.iter().any(|t| flipped.contains(t)));
                    let content = changes.content.contains(id);
                    if stale || (content && !changes.measured.contains(id)) {
                        None
                    } else {
                        old.get(id).map(|e| (e, content))
                    }
                });
                let entry = match reuse {
                    Some((e, false)) => Some(e.clone()),
                    Some((e, true)) => e.with_metrics(&summary::listing_metrics(node, report)).ok(),
                    None => fresh(id, node),
                };
                if let Some(e) = entry {
                    entries.insert(id.clone(), e);
                }
            }
            entries
        };
        Some(Self::current(listing, entries, selected, self.pass))
    }

    /// `listing` with `entries`, made for `selected` in pass `pass`.
    fn current(
        listing: &mut Listing,
        entries: Summaries,
        selected: rescope_render::Selected,
        pass: u64,
    ) -> &mut Listing {
        listing.entries = Arc::new(entries);
        listing.removed = selected.selection.removed;
        listing.prune = selected.selection.prune;
        listing.pass = pass;
        listing.body = None;
        listing
    }

    fn serve(&mut self, job: Job) {
        let generation = self.generation;
        match job {
            Job::Wake => {}
            Job::Bodies(work, reply, _) => {
                let mut first = None;
                for (i, w) in work.iter().enumerate() {
                    let key = w.key();
                    let cached = self
                        .cache
                        .lock()
                        .ok()
                        .and_then(|mut c| c.at(generation).bodies.get(&key).cloned());
                    let out = match cached {
                        Some(body) => Some(Ok(body)),
                        None => {
                            let out = self.render(w);
                            if let Some(Ok(body)) = &out
                                && let Ok(mut c) = self.cache.lock()
                            {
                                let c = c.at(generation);
                                if c.bodies.len() < MAX_CACHED {
                                    c.bodies.insert(key.clone(), body.clone());
                                }
                                if c.newest.len() < MAX_CACHED || c.newest.contains_key(&key) {
                                    c.newest.insert(key, (body.clone(), Instant::now()));
                                }
                            }
                            out
                        }
                    };
                    if i == 0 {
                        first = Some(out);
                    }
                }
                let _ = reply.send(first.flatten());
            }
            Job::Summaries(view, query, reply, _) => {
                let s = self.listing(&view, &query).map(|l| l.entries.clone());
                let _ = reply.send(s.map(|s| (generation, s)));
            }
            Job::Report(reply) => {
                let _ = reply.send(self.store.full_report());
            }
            Job::Metrics(probes, reply) => {
                let text = crate::metrics::exposition(&self.metrics, self.store.report(), probes);
                let _ = reply.send(text);
            }
        }
    }

    fn render(&mut self, work: &Work) -> Rendered {
        match work {
            Work::List(q) => {
                let ctx = self.live.context(self.store.report());
                Some(to_json(&list::topology_list(&ctx, q)))
            }
            Work::View(view, q) => {
                let pass = self.pass;
                let listing = self.listing(view, q)?;
                if let Some((p, body)) = &listing.body
                    && *p == pass
                {
                    return Some(Ok(body.clone()));
                }
                let size: usize = listing.entries.values().map(|e| e.pair.len() + 1).sum();
                let mut body = Vec::with_capacity(size + 16);
                body.extend_from_slice(b"{\"nodes\":{");
                for (i, e) in listing.entries.values().enumerate() {
                    if i > 0 {
                        body.push(b',');
                    }
                    body.extend_from_slice(&e.pair);
                }
                body.extend_from_slice(b"}}");
                let body = Bytes::from(body);
                listing.body = Some((pass, body.clone()));
                Some(Ok(body))
            }
            Work::Node(view, node, q) => {
                let ctx = self.live.context(self.store.report());
                let details = detail::details(&ctx, view, node, q)?;
                Some(to_json(&NodeBody { node: details }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rescope_render::wire::{MetricRow, NodeSummary, Table};
    use rescope_report::Str;
    use rescope_report::synthetic::{HostShape, HostSimulator, fleet_seed};

    use super::*;

    #[test]
    fn listings_kept_between_passes_equal_listings_made_from_scratch() {
        let collector = Collector::new(Duration::from_secs(15));
        let (generations, _watch) = watch::channel(0);
        let mut worker = Worker::new(collector.clone(), Arc::default(), generations);
        let now = GoTime::now();
        let hosts = 4;
        let mut sims: Vec<HostSimulator> = (0..hosts)
            .map(|i| HostSimulator::new(HostShape::small_member(i), fleet_seed(11, i), now))
            .collect();
        let mut last_full: Vec<Option<Report>> = vec![None; hosts];
        let views = ["processes", "processes-by-name", "containers", "hosts"];
        let mut checked = 0;
        for round in 0..12 {
            // Some hosts publish (a full report every third time, deltas between).
            for (i, sim) in sims.iter_mut().enumerate() {
                if (round + i) % 3 == 2 {
                    continue;
                }
                let report = sim.next_report();
                let wire = match &last_full[i] {
                    Some(base) if round % 3 != 0 => report.delta_from(base),
                    _ => {
                        last_full[i] = Some(report.clone());
                        report
                    }
                };
                collector.add(&format!("probe-{i}"), wire);
            }
            worker.pass();
            // Listings asked for every pass, and every other pass (changes of two
            // passes together).
            for (v, view) in views.iter().enumerate() {
                if v % 2 == 1 && round % 2 == 1 {
                    continue;
                }
                let kept = worker.listing(view, &[]).expect("listing").entries.clone();
                let key = cache_key("listing", view, &[]);
                let saved = worker.listings.remove(&key).expect("kept listing");
                let scratch = worker.listing(view, &[]).expect("listing").entries.clone();
                assert!(!scratch.is_empty(), "round {round}: {view}: empty listing");
                for (id, e) in scratch.iter() {
                    assert_eq!(
                        kept.get(id).map(|k| k.value()),
                        Some(e.value()),
                        "round {round}: {view}: {id}"
                    );
                }
                assert_eq!(kept.len(), scratch.len(), "round {round}: {view}");
                worker.listings.insert(key, saved);
                checked += 1;
            }
        }
        assert!(checked > 30);
    }

    fn metric(id: &str, value: f64) -> MetricRow {
        MetricRow {
            id: Str::new(id),
            label: Str::new("CPU"),
            format: Str::new("percent"),
            group: Str::empty(),
            value,
            value_empty: false,
            priority: 1.0,
            samples: None,
            min: 0.0,
            max: 100.0,
            url: Str::empty(),
        }
    }

    fn summary(metrics: Vec<MetricRow>, tables: bool, adjacency: bool) -> NodeSummary {
        NodeSummary {
            id: Str::new("host-1;42"),
            label: Str::new("nginx"),
            label_minor: Str::new("host-1 (42)"),
            rank: Str::empty(),
            shape: Str::new("square"),
            tag: Str::empty(),
            stack: false,
            pseudo: false,
            metadata: Vec::new(),
            parents: Vec::new(),
            metrics,
            tables: if tables {
                vec![Table {
                    id: Str::new("docker_label_"),
                    label: Str::new("Labels"),
                    table_type: Str::new("property-list"),
                    columns: None,
                    rows: Vec::new(),
                    truncation_count: 0,
                }]
            } else {
                Vec::new()
            },
            adjacency: if adjacency {
                vec![Str::new("host-2;7")]
            } else {
                Vec::new()
            },
        }
    }

    #[test]
    fn entries_are_the_whole_summary_and_take_new_metric_rows_in_place() {
        let rows = [
            vec![],
            vec![metric("process_cpu_usage_percent", 1.5)],
            vec![metric("a", 2.0), metric("b", 0.25)],
        ];
        for tables in [false, true] {
            for adjacency in [false, true] {
                for before in &rows {
                    let s = summary(before.clone(), tables, adjacency);
                    let whole = serde_json::to_vec(&s).expect("serialises");
                    let e = Entry::new("host-1;42", s).expect("entry");
                    assert_eq!(e.value().as_ref(), whole.as_slice());
                    for after in &rows {
                        let fresh =
                            Entry::new("host-1;42", summary(after.clone(), tables, adjacency))
                                .expect("entry");
                        let patched = e.with_metrics(after).expect("patched");
                        assert_eq!(patched, fresh, "{before:?} -> {after:?}");
                    }
                }
            }
        }
    }
}
