//! One rendering thread for the whole app.
//!
//! Every request that needs a render (a view, details, the topology list, a websocket
//! tick) is queued to this thread instead of rendering on a blocking thread of its
//! own. Jobs for the same snapshot share one [`RenderContext`], so the processes view a
//! hosts request builds on is rendered once, not once per request; requests for a body
//! another job already rendered are answered from the cache; and renders never compete
//! with each other for the machine's cores. The context is dropped when the queue runs
//! empty or the snapshot changes, so rendered views do not outlive their use.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;
use rescope_render::wire::NodeSummary;
use rescope_render::{RenderContext, detail, list};
use rescope_report::Str;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::api::ApiError;
use crate::collector::{Collector, Snapshot};
use crate::metrics::AppMetrics;

/// Node summaries of a view, by node ID.
pub type Summaries = BTreeMap<Str, NodeSummary>;

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
    /// body.
    Bodies(Vec<Work>, oneshot::Sender<Rendered>),
    /// The summaries of a view (for websockets).
    Summaries(
        String,
        Vec<(String, String)>,
        oneshot::Sender<Option<Arc<Summaries>>>,
    ),
}

/// Rendered results of one snapshot generation.
#[derive(Debug, Default)]
struct RenderCache {
    generation: u64,
    bodies: HashMap<String, Bytes>,
    summaries: HashMap<String, Arc<Summaries>>,
    /// The newest body of each request, with when its snapshot was built; kept across
    /// generations.
    newest: HashMap<String, (Bytes, Instant)>,
}

/// At most this many bodies and summaries are kept per generation.
const MAX_CACHED: usize = 256;

impl RenderCache {
    fn at(&mut self, generation: u64) -> &mut Self {
        if self.generation != generation {
            self.generation = generation;
            self.bodies.clear();
            self.summaries.clear();
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
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Bodies(w, _) => f.debug_tuple("Bodies").field(w).finish(),
            Job::Summaries(v, q, _) => f.debug_tuple("Summaries").field(v).field(q).finish(),
        }
    }
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
struct NodesBody<'a> {
    nodes: &'a Summaries,
}

#[derive(Serialize)]
struct NodeBody {
    node: rescope_render::wire::NodeDetails,
}

impl Renderer {
    /// Starts the rendering thread; it ends when the last handle is dropped.
    pub fn start(collector: Arc<Collector>, metrics: Arc<AppMetrics>) -> Self {
        let (jobs, rx) = mpsc::channel();
        let cache: Arc<Mutex<RenderCache>> = Arc::default();
        let busy: Arc<AtomicBool> = Arc::default();
        let worker = Worker {
            collector,
            metrics,
            cache: cache.clone(),
            busy: busy.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name("rescope-render".to_string())
            .spawn(move || worker.run(rx));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the rendering thread");
        }
        Renderer { jobs, cache, busy }
    }

    /// Whether a render pass is under way.
    pub fn busy(&self) -> bool {
        self.busy.load(Ordering::Relaxed)
    }

    /// The newest body rendered for `key`, if its snapshot is at most `max_age` old.
    pub fn recent(&self, key: &str, max_age: Duration) -> Option<Bytes> {
        let cache = self.cache.lock().ok()?;
        let (body, built) = cache.newest.get(key)?;
        (built.elapsed() <= max_age).then(|| body.clone())
    }

    /// A body already rendered for this generation.
    pub fn cached(&self, generation: u64, key: &str) -> Option<Bytes> {
        let cache = self.cache.lock().ok()?;
        (cache.generation == generation)
            .then(|| cache.bodies.get(key).cloned())
            .flatten()
    }

    /// Renders `work` (or finds it in the cache) and answers with the first item's
    /// body. The other items are rendered in the same pass (ahead of time).
    pub async fn bodies(&self, work: Vec<Work>) -> Result<Rendered, ApiError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Job::Bodies(work, tx))
            .map_err(|_| internal("the rendering thread has stopped"))?;
        rx.await.map_err(|_| internal("rendering failed"))
    }

    /// The summaries of a view as the query's options select them.
    pub async fn summaries(
        &self,
        view: &str,
        query: &[(String, String)],
    ) -> Option<Arc<Summaries>> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Job::Summaries(view.to_string(), query.to_vec(), tx))
            .ok()?;
        rx.await.ok().flatten()
    }
}

struct Worker {
    collector: Arc<Collector>,
    metrics: Arc<AppMetrics>,
    cache: Arc<Mutex<RenderCache>>,
    busy: Arc<AtomicBool>,
}

impl Worker {
    fn run(self, rx: Receiver<Job>) {
        let mut next: Option<Job> = None;
        loop {
            let job = match next.take() {
                Some(job) => job,
                None => match rx.recv() {
                    Ok(job) => job,
                    Err(_) => return,
                },
            };
            self.busy.store(true, Ordering::Relaxed);
            // Everything queued is served from one snapshot: with reports arriving
            // all the time, taking a new snapshot per job would render the fleet
            // again for each of them and let the queue grow.
            let mut batch = vec![job];
            let mut disconnected = false;
            loop {
                match rx.try_recv() {
                    Ok(more) => batch.push(more),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        disconnected = true;
                        break;
                    }
                }
            }
            let snapshot = self.collector.snapshot();
            let started = Instant::now();
            let ctx = RenderContext::new(&snapshot.prepared, snapshot.taken);
            for job in batch {
                self.serve(&snapshot, &ctx, job);
            }
            loop {
                match rx.try_recv() {
                    Ok(more) if self.collector.snapshot().generation == snapshot.generation => {
                        self.serve(&snapshot, &ctx, more);
                    }
                    Ok(more) => {
                        next = Some(more);
                        break;
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        disconnected = true;
                        break;
                    }
                }
            }
            self.busy.store(false, Ordering::Relaxed);
            self.metrics
                .rendered(started.elapsed().as_micros().min(u64::MAX as u128) as u64);
            if disconnected && next.is_none() {
                return;
            }
        }
    }

    fn serve(&self, snapshot: &Snapshot, ctx: &RenderContext<'_>, job: Job) {
        let generation = snapshot.generation;
        match job {
            Job::Bodies(work, reply) => {
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
                            let out = self.render(generation, ctx, w);
                            if let Some(Ok(body)) = &out
                                && let Ok(mut c) = self.cache.lock()
                            {
                                let c = c.at(generation);
                                if c.bodies.len() < MAX_CACHED {
                                    c.bodies.insert(key.clone(), body.clone());
                                }
                                if c.newest.len() < MAX_CACHED || c.newest.contains_key(&key) {
                                    c.newest.insert(key, (body.clone(), snapshot.built()));
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
            Job::Summaries(view, query, reply) => {
                let _ = reply.send(self.summaries(generation, ctx, &view, &query));
            }
        }
    }

    fn summaries(
        &self,
        generation: u64,
        ctx: &RenderContext<'_>,
        view: &str,
        query: &[(String, String)],
    ) -> Option<Arc<Summaries>> {
        let key = cache_key("summaries", view, query);
        if let Some(s) = self
            .cache
            .lock()
            .ok()
            .and_then(|mut c| c.at(generation).summaries.get(&key).cloned())
        {
            return Some(s);
        }
        let selected = rescope_render::select(ctx, view, query)?;
        let s = Arc::new(rescope_render::selected_summaries(&selected, ctx.report));
        if let Ok(mut c) = self.cache.lock() {
            let c = c.at(generation);
            if c.summaries.len() < MAX_CACHED {
                c.summaries.insert(key, s.clone());
            }
        }
        Some(s)
    }

    fn render(&self, generation: u64, ctx: &RenderContext<'_>, work: &Work) -> Rendered {
        match work {
            Work::List(q) => Some(to_json(&list::topology_list(ctx, q))),
            Work::View(view, q) => {
                let summaries = self.summaries(generation, ctx, view, q)?;
                Some(to_json(&NodesBody { nodes: &summaries }))
            }
            Work::Node(view, node, q) => {
                let details = detail::details(ctx, view, node, q)?;
                Some(to_json(&NodeBody { node: details }))
            }
        }
    }
}
