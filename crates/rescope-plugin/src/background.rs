//! Work a plugin repeats between reports.
//!
//! The probe waits at most half a second for `GET /report`, so anything slow (sampling
//! counters over an interval, asking the Docker engine, reading an eBPF map) belongs
//! in the background, with `report` reading what the last run left behind.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// The shortest interval [`every`] runs at.
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// Background work started by [`every`]. Dropping it stops the work; a run already
/// under way finishes first.
#[derive(Debug)]
#[must_use = "the work stops as soon as this is dropped"]
pub struct Repeating {
    task: JoinHandle<()>,
}

impl Repeating {
    /// Stops the work (the same as dropping it).
    pub fn stop(self) {}
}

impl Drop for Repeating {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs `work` on a blocking-capable thread every `interval`, the first time one
/// interval from now, until the returned [`Repeating`] is dropped. A zero interval
/// counts as one millisecond.
///
/// Runs never overlap: when one takes longer than `interval`, the next starts when it
/// ends. A run that panics is logged and the next one runs as usual. Call it from
/// inside a tokio runtime (in `main` under `#[tokio::main]`, for example).
///
/// ```no_run
/// # use std::sync::{Arc, Mutex};
/// # use std::time::Duration;
/// # #[tokio::main] async fn main() {
/// let last_load = Arc::new(Mutex::new(String::new()));
/// let cache = last_load.clone();
/// let sampling = rescope_plugin::every(Duration::from_secs(1), move || {
///     if let Ok(text) = std::fs::read_to_string("/proc/loadavg") {
///         *cache.lock().unwrap() = text;
///     }
/// });
/// // ... serve the plugin; its `report` reads `last_load` ...
/// sampling.stop();
/// # }
/// ```
pub fn every<F>(interval: Duration, work: F) -> Repeating
where
    F: Fn() + Send + Sync + 'static,
{
    let work = Arc::new(work);
    let interval = interval.max(MIN_INTERVAL);
    let task = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The first tick completes at once; the first run is one interval away.
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let run = work.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || run()).await
                && e.is_panic()
            {
                tracing::error!("background work panicked; it runs again at the next interval");
            }
        }
    });
    Repeating { task }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    /// Polls `done` every 5 ms until it holds, failing after a deadline far longer
    /// than any healthy run needs (this checks behaviour, not speed).
    async fn eventually(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "never happened: {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn repeats_until_dropped_then_releases_the_work() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = runs.clone();
        let repeating = every(Duration::from_millis(2), move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        eventually("three runs", || runs.load(Ordering::SeqCst) >= 3).await;
        repeating.stop();
        // The closure (and its clone of `runs`) is freed once the task is gone and
        // any run under way has ended; after that nothing can count any more.
        eventually("the work released", || Arc::strong_count(&runs) == 1).await;
        let after_stop = runs.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(runs.load(Ordering::SeqCst), after_stop);
    }

    #[tokio::test]
    async fn a_panicking_run_does_not_stop_the_next() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = runs.clone();
        let _repeating = every(Duration::ZERO, move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            assert!(n != 0, "the first run fails on purpose");
        });
        eventually("runs after the panic", || runs.load(Ordering::SeqCst) >= 3).await;
    }
}
