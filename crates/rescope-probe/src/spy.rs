//! The spy loop: once per spy interval, walk `/proc`, run every reporter concurrently
//! on blocking threads, merge their reports, tag the result and hand it to the
//! publisher.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rescope_report::{GoTime, Report, Str};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::Shutdown;
use crate::kept::{KeptNodes, NodeChanges, SpyReport, then_all};
use crate::reporter::{Reporter, Tick};
use crate::selfmetrics::SelfMetrics;
use crate::tagger;
use crate::walker::{ProcSnapshot, ProcessWalker};

type SharedReporter = Arc<Mutex<Box<dyn Reporter>>>;

/// The copy of the spy report kept for `/debug/report` is refreshed every this many
/// ticks: copying a report of thousands of nodes every second cost more than all of
/// the process reporter, for a page read by hand now and then.
pub const DEBUG_COPY_EVERY: u64 = 5;

/// The shortest time between the start of a tick and that of one a wake-up signal
/// (plugin or container change) asks for.
pub const MIN_WAKE_GAP: std::time::Duration = std::time::Duration::from_millis(200);

/// The newest spy report a wake-up signal (a container started or stopped, a plugin
/// came or went) asked for, by its timestamp, until the publisher takes it: the
/// publisher sends such a report at once instead of at its next interval.
#[derive(Debug, Clone, Default)]
pub struct WokenReports(Arc<Mutex<Option<GoTime>>>);

impl WokenReports {
    fn mark(&self, ts: GoTime) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(ts);
        }
    }

    /// Whether a report stamped `ts` is, or comes after, one a wake-up asked for;
    /// if so, forgets that wake-up.
    pub fn take_reached(&self, ts: GoTime) -> bool {
        let Ok(mut slot) = self.0.lock() else {
            return false;
        };
        match *slot {
            Some(woken) if woken <= ts => {
                *slot = None;
                true
            }
            _ => false,
        }
    }
}

/// Runs the reporters and keeps a recent spy report for `/debug/report`.
pub struct Spy {
    host_node_id: String,
    walker: Option<Arc<Mutex<ProcessWalker>>>,
    reporters: Vec<SharedReporter>,
    metrics: Arc<SelfMetrics>,
    latest: Arc<Mutex<Option<Arc<Report>>>>,
    keep_latest: bool,
    /// The spy's own copy of the kept topology, for whole reports (`/debug/report`,
    /// [`Spy::tick`]); brought up to date only when one is wanted.
    kept: Mutex<KeptNodes>,
    ticks: AtomicU64,
    /// The last error of each reporter, so a failure is logged once, not every tick.
    last_errors: Mutex<HashMap<&'static str, String>>,
    /// Signals that make the spy tick at once (a plugin came or went).
    wake: Vec<Arc<tokio::sync::Notify>>,
    woken: WokenReports,
}

impl std::fmt::Debug for Spy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spy")
            .field("reporters", &self.reporters.len())
            .finish()
    }
}

impl Spy {
    pub fn new(
        host_node_id: String,
        walker: Option<Arc<Mutex<ProcessWalker>>>,
        metrics: Arc<SelfMetrics>,
    ) -> Self {
        Spy {
            host_node_id,
            walker,
            reporters: Vec::new(),
            metrics,
            latest: Arc::default(),
            keep_latest: false,
            kept: Mutex::default(),
            ticks: AtomicU64::new(0),
            last_errors: Mutex::default(),
            wake: Vec::new(),
            woken: WokenReports::default(),
        }
    }

    /// Ticks at once, besides every interval, when `notify` is signalled.
    pub fn wake_on(&mut self, notify: Arc<tokio::sync::Notify>) {
        self.wake.push(notify);
    }

    /// Where the spy says which of its reports a wake-up signal asked for.
    pub fn woken_reports(&self) -> WokenReports {
        self.woken.clone()
    }

    pub fn add_reporter(&mut self, reporter: Box<dyn Reporter>) {
        self.reporters.push(Arc::new(Mutex::new(reporter)));
    }

    /// Keep a copy of a recent spy report (at most [`DEBUG_COPY_EVERY`] ticks old) in
    /// the returned slot.
    pub fn keep_latest(&mut self) -> Arc<Mutex<Option<Arc<Report>>>> {
        self.keep_latest = true;
        self.latest.clone()
    }

    /// One spy tick: a whole report.
    pub async fn tick(&self) -> Report {
        self.tick_inner(true).await.report
    }

    /// One spy tick: the report, without the unchanged nodes of a kept topology.
    pub async fn tick_changes(&self) -> SpyReport {
        self.tick_inner(false).await
    }

    async fn tick_inner(&self, whole: bool) -> SpyReport {
        let started = Instant::now();
        let now = GoTime::now();
        let procs = match &self.walker {
            Some(walker) => {
                let walker = walker.clone();
                let walked = tokio::task::spawn_blocking(move || match walker.lock() {
                    Ok(mut w) => w.walk(now),
                    Err(_) => Err(std::io::Error::other("process walker poisoned")),
                })
                .await;
                match walked {
                    Ok(Ok(snapshot)) => {
                        self.clear_error("walker");
                        snapshot
                    }
                    Ok(Err(e)) => {
                        self.note_error("walker", &e.to_string());
                        ProcSnapshot::default()
                    }
                    Err(e) => {
                        self.note_error("walker", &e.to_string());
                        ProcSnapshot::default()
                    }
                }
            }
            None => ProcSnapshot::default(),
        };
        let tick = Tick {
            now,
            procs: Arc::new(procs),
        };
        let runs = self.reporters.iter().map(|reporter| {
            let reporter = reporter.clone();
            let tick = tick.clone();
            tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let Ok(mut r) = reporter.lock() else {
                    return (
                        "poisoned",
                        Err("reporter panicked earlier".to_string()),
                        0.0,
                    );
                };
                let name = r.name();
                let out = r.report_changes(&tick).map_err(|e| e.to_string());
                (name, out, started.elapsed().as_secs_f64())
            })
        });
        let results = futures_util::future::join_all(runs).await;
        let mut report = Report::empty();
        report.ts = now;
        let mut kept: Vec<NodeChanges> = Vec::new();
        for result in results {
            match result {
                Ok((name, Ok((partial, changes)), secs)) => {
                    self.metrics.reporter_ran(name, secs, true);
                    self.clear_error(name);
                    report.merge_owned(partial);
                    kept.extend(changes);
                }
                Ok((name, Err(e), secs)) => {
                    self.metrics.reporter_ran(name, secs, false);
                    self.note_error(name, &e);
                }
                Err(e) => self.note_error("reporter", &format!("reporter task failed: {e}")),
            }
        }
        report.ts = now;
        tagger::tag_host(&mut report, &self.host_node_id, now);
        tagger::tag_topologies(&mut report);
        for changes in &mut kept {
            let kind = changes.kind;
            let name = Str::new(kind.name());
            let nodes = changes.nodes.values_mut().flatten();
            tagger::tag_host_nodes(kind, nodes, &self.host_node_id, now);
            for node in changes.nodes.values_mut().flatten() {
                if node.topology.is_empty() {
                    node.topology = name.clone();
                }
            }
        }
        for (kind, t) in report.topologies() {
            // A kept topology's nodes in the report (a process's container, from the
            // Docker reporter) are among its `total`.
            let n = match kept.iter().find(|c| c.kind == kind) {
                Some(c) => c.total.max(t.nodes.len()),
                None => t.nodes.len(),
            };
            if n > 0 {
                self.metrics.report_nodes(kind.name(), n);
            }
        }
        self.metrics.spy_ran(started.elapsed().as_secs_f64());
        let tick_no = self.ticks.fetch_add(1, Ordering::Relaxed);
        if (whole || self.keep_latest)
            && let Ok(mut mine) = self.kept.lock()
        {
            // Each whole report is one tick's: a window of one.
            mine.end_window();
            let kept_now = !kept.is_empty();
            if whole {
                for changes in std::mem::take(&mut kept) {
                    mine.apply(changes, now, drop);
                }
            } else {
                for changes in &kept {
                    mine.apply(changes.clone(), now, drop);
                }
            }
            if whole && kept_now {
                mine.merge_into(&mut report);
            }
            if self.keep_latest
                && let Ok(mut slot) = self.latest.lock()
                && (slot.is_none() || tick_no.is_multiple_of(DEBUG_COPY_EVERY))
            {
                let mut copy = report.clone();
                if !whole && kept_now {
                    mine.merge_into(&mut copy);
                }
                *slot = Some(Arc::new(copy));
            }
        }
        SpyReport { report, kept }
    }

    fn note_error(&self, who: &'static str, error: &str) {
        let Ok(mut last) = self.last_errors.lock() else {
            return;
        };
        if last.get(who).map(String::as_str) != Some(error) {
            warn!(
                reporter = who,
                error, "reporter failed; its data is missing from reports until it recovers"
            );
            last.insert(who, error.to_string());
        }
    }

    fn clear_error(&self, who: &'static str) {
        let Ok(mut last) = self.last_errors.lock() else {
            return;
        };
        if last.remove(who).is_some() {
            info!(reporter = who, "reporter recovered");
        }
    }

    /// Ticks every `interval` until shutdown, sending each (whole) report to `tx`. If
    /// the receiver falls behind, reports are dropped (and counted) rather than
    /// stalling collection.
    pub async fn run(
        self,
        interval: std::time::Duration,
        tx: mpsc::Sender<Report>,
        shutdown: Shutdown,
    ) {
        let send = move |spy: SpyReport| match tx.try_send(spy.report) {
            Ok(()) => Sent::Yes,
            Err(mpsc::error::TrySendError::Full(_)) => Sent::Full(Vec::new()),
            Err(mpsc::error::TrySendError::Closed(_)) => Sent::Closed,
        };
        self.run_loop(interval, true, send, shutdown).await
    }

    /// Like [`Spy::run`], but sends what changed in a kept topology instead of all its
    /// nodes (see [`crate::kept`]). Changes in a report the receiver could not take go
    /// with the next one.
    pub async fn run_changes(
        self,
        interval: std::time::Duration,
        tx: mpsc::Sender<SpyReport>,
        shutdown: Shutdown,
    ) {
        let send = move |spy: SpyReport| match tx.try_send(spy) {
            Ok(()) => Sent::Yes,
            Err(mpsc::error::TrySendError::Full(spy)) => Sent::Full(spy.kept),
            Err(mpsc::error::TrySendError::Closed(_)) => Sent::Closed,
        };
        self.run_loop(interval, false, send, shutdown).await
    }

    async fn run_loop(
        self,
        interval: std::time::Duration,
        whole: bool,
        mut send: impl FnMut(SpyReport) -> Sent,
        mut shutdown: Shutdown,
    ) {
        let mut carried: Vec<NodeChanges> = Vec::new();
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut dropped = 0u64;
        let wake = self.wake.clone();
        let mut last_tick: Option<tokio::time::Instant> = None;
        loop {
            let woken = tokio::select! {
                _ = ticker.tick() => false,
                _ = any_notified(&wake) => {
                    // A burst of changes (fifty containers started at once) makes
                    // at most one extra tick per MIN_WAKE_GAP.
                    if let Some(last) = last_tick {
                        tokio::select! {
                            _ = tokio::time::sleep_until(last + MIN_WAKE_GAP) => {}
                            _ = shutdown.changed() => return,
                        }
                    }
                    true
                }
                _ = shutdown.changed() => return,
            };
            if *shutdown.borrow() {
                return;
            }
            last_tick = Some(tokio::time::Instant::now());
            let mut report = self.tick_inner(whole).await;
            if woken {
                self.woken.mark(report.report.ts);
            }
            if !carried.is_empty() {
                report.kept = then_all(std::mem::take(&mut carried), report.kept);
            }
            match send(report) {
                Sent::Yes => dropped = 0,
                Sent::Full(kept) => {
                    carried = kept;
                    dropped += 1;
                    self.metrics.dropped("spy-queue");
                    if dropped == 1 {
                        warn!("publisher is not keeping up; dropping spy reports until it does");
                    }
                }
                Sent::Closed => return,
            }
        }
    }
}

/// What became of a report handed to the receiver.
enum Sent {
    Yes,
    /// The receiver's queue was full: the report was dropped, these changes with it.
    Full(Vec<NodeChanges>),
    Closed,
}

/// Resolves when any of `wake` is signalled; never when there is none.
async fn any_notified(wake: &[Arc<tokio::sync::Notify>]) {
    if wake.is_empty() {
        return std::future::pending().await;
    }
    futures_util::future::select_all(wake.iter().map(|n| Box::pin(n.notified()))).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProbeConfig;
    use crate::reporter::ReporterError;
    use rescope_report::TopologyKind;

    struct Failing;
    impl Reporter for Failing {
        fn name(&self) -> &'static str {
            "failing"
        }
        fn report(&mut self, _: &Tick) -> Result<Report, ReporterError> {
            Err(ReporterError::Other("broken on purpose".into()))
        }
    }

    #[tokio::test]
    async fn a_tick_merges_reporters_tags_nodes_and_survives_a_failing_reporter() {
        let config = ProbeConfig::new("spyhost");
        let walker = Arc::new(Mutex::new(ProcessWalker::new("/proc", false)));
        let metrics = Arc::new(SelfMetrics::new());
        let mut spy = Spy::new(config.host_node_id(), Some(walker), metrics.clone());
        spy.add_reporter(Box::new(crate::host::HostReporter::new(&config)));
        spy.add_reporter(Box::new(crate::process::ProcessReporter::new(&config)));
        spy.add_reporter(Box::new(Failing));
        let latest = spy.keep_latest();
        let report = spy.tick().await;
        assert!(!report.ts.is_zero());
        assert_eq!(report[TopologyKind::Host].nodes.len(), 1);
        let me = format!("spyhost;{}", std::process::id());
        let node = &report[TopologyKind::Process].nodes[me.as_str()];
        assert_eq!(node.topology.as_str(), "process");
        assert_eq!(
            node.latest_value("host_node_id").map(|v| v.as_str()),
            Some("spyhost;<host>")
        );
        assert!(latest.lock().expect("lock").is_some());
        let text = metrics.encode();
        assert!(
            text.contains("reporter_errors_total{reporter=\"failing\"} 1"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_wake_up_ticks_at_once_but_not_more_often_than_the_gap() {
        let metrics = Arc::new(SelfMetrics::new());
        let mut spy = Spy::new("h;<host>".into(), None, metrics);
        let wake = Arc::new(tokio::sync::Notify::new());
        spy.wake_on(wake.clone());
        let (tx, mut rx) = mpsc::channel(16);
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        tokio::spawn(spy.run(std::time::Duration::from_secs(60), tx, shutdown));
        rx.recv().await.expect("the first tick");
        let first = Instant::now();
        wake.notify_one();
        rx.recv().await.expect("a tick on wake-up");
        let second = Instant::now();
        assert!(second - first >= MIN_WAKE_GAP - std::time::Duration::from_millis(5));
        assert!(second - first < std::time::Duration::from_secs(5));
        // A burst of signals: ticks at most once per gap.
        let burst = Instant::now();
        let mut ticks = 0;
        while burst.elapsed() < std::time::Duration::from_secs(1) {
            wake.notify_one();
            if tokio::time::timeout(std::time::Duration::from_millis(10), rx.recv())
                .await
                .is_ok()
            {
                ticks += 1;
            }
        }
        let most = (1000 / MIN_WAKE_GAP.as_millis() + 1) as usize;
        assert!((1..=most).contains(&ticks), "{ticks} ticks in a second");
        let _ = stop.send(true);
    }
}
