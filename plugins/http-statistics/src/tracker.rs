//! Turns successive counter snapshots into what the report shows per process:
//! rates over the last interval, latency percentiles over a window of intervals,
//! and totals.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use crate::counters::{Histogram, ProcCounters, Snapshot};

/// What the report shows for one process.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessView {
    pub pid: u32,
    /// Requests read per second over the last interval.
    pub requests_per_second: f64,
    /// Status lines written per second over the last interval, by code; every code
    /// the process ever sent is listed (0 when it sent none this interval).
    pub responses_per_second: BTreeMap<u16, f64>,
    /// Latency percentiles over the latency window, in milliseconds; `None` when no
    /// request was answered in the window.
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    /// Requests read since the plugin started.
    pub requests_total: u64,
    /// Status lines written since the plugin started, by code.
    pub responses_total: BTreeMap<u16, u64>,
}

#[derive(Debug)]
struct ProcState {
    last: ProcCounters,
    last_statuses: BTreeMap<u16, u64>,
    recent_latency: VecDeque<Histogram>,
    view: ProcessView,
}

/// Keeps the previous snapshot and the recent latency histograms of each process.
#[derive(Debug)]
pub struct Tracker {
    latency_window: usize,
    processes: HashMap<u32, ProcState>,
}

impl Tracker {
    /// Percentiles are taken over the last `latency_window` intervals (at least 1).
    pub fn new(latency_window: usize) -> Self {
        Tracker {
            latency_window: latency_window.max(1),
            processes: HashMap::new(),
        }
    }

    /// Takes the counters read `elapsed` after the previous snapshot (or after the
    /// BPF program was loaded, for the first one, when every counter was 0).
    /// Processes missing from `snapshot` (exited, or evicted from the kernel's maps)
    /// are forgotten. A counter smaller than before means the kernel's entry was
    /// evicted and made again, so it counts from 0.
    pub fn update(&mut self, elapsed: Duration, snapshot: &Snapshot) {
        let secs = elapsed.as_secs_f64();
        let mut statuses: HashMap<u32, BTreeMap<u16, u64>> = HashMap::new();
        for (&(tgid, code), &count) in &snapshot.statuses {
            statuses.entry(tgid).or_default().insert(code, count);
        }
        // Every process with status counts has an entry in `processes`, unless that
        // entry was evicted; such leftovers are not shown, which keeps the report as
        // bounded as the kernel's process map.
        let mut pids: Vec<u32> = snapshot.processes.keys().copied().collect();
        pids.sort_unstable();

        self.processes
            .retain(|pid, _| pids.binary_search(pid).is_ok());
        for pid in pids {
            let Some(now) = snapshot.processes.get(&pid) else {
                continue;
            };
            let now_statuses = statuses.remove(&pid).unwrap_or_default();
            let window = self.latency_window;
            let state = self.processes.entry(pid).or_insert_with(|| ProcState {
                last: ProcCounters::default(),
                last_statuses: BTreeMap::new(),
                recent_latency: VecDeque::new(),
                view: ProcessView {
                    pid,
                    requests_per_second: 0.0,
                    responses_per_second: BTreeMap::new(),
                    latency_p50_ms: None,
                    latency_p99_ms: None,
                    requests_total: 0,
                    responses_total: BTreeMap::new(),
                },
            });
            let reset = now.requests < state.last.requests
                || now.responses < state.last.responses
                || now.latency_count < state.last.latency_count;
            if reset {
                state.last = ProcCounters::default();
                state.recent_latency.clear();
            }
            let rate = |delta: u64| if secs > 0.0 { delta as f64 / secs } else { 0.0 };

            let view = &mut state.view;
            view.requests_per_second = rate(now.requests - state.last.requests);
            view.responses_per_second = now_statuses
                .iter()
                .map(|(&code, &count)| {
                    let before = state.last_statuses.get(&code).copied().unwrap_or(0);
                    let delta = if count >= before {
                        count - before
                    } else {
                        count
                    };
                    (code, rate(delta))
                })
                .collect();

            state
                .recent_latency
                .push_back(now.latency.since(&state.last.latency));
            while state.recent_latency.len() > window {
                state.recent_latency.pop_front();
            }
            let mut recent = Histogram::default();
            for h in &state.recent_latency {
                recent.add(h);
            }
            let ms = |ns: f64| ns / 1e6;
            view.latency_p50_ms = recent.quantile(0.50).map(ms);
            view.latency_p99_ms = recent.quantile(0.99).map(ms);

            // Totals since start survive an eviction (`last` was zeroed above).
            view.requests_total += now.requests - state.last.requests;
            for (&code, &count) in &now_statuses {
                let before = state.last_statuses.get(&code).copied().unwrap_or(0);
                let delta = if count >= before {
                    count - before
                } else {
                    count
                };
                *view.responses_total.entry(code).or_default() += delta;
            }
            for code in view.responses_total.keys() {
                view.responses_per_second.entry(*code).or_insert(0.0);
            }

            state.last = now.clone();
            state.last_statuses = now_statuses;
        }
    }

    /// The processes seen in the last snapshot, by pid.
    pub fn views(&self) -> Vec<ProcessView> {
        let mut views: Vec<ProcessView> = self.processes.values().map(|s| s.view.clone()).collect();
        views.sort_by_key(|v| v.pid);
        views
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (pid, requests, status counts, latencies in ns) per process.
    type Entry<'a> = (u32, u64, &'a [(u16, u64)], &'a [u64]);

    fn snapshot(entries: &[Entry<'_>]) -> Snapshot {
        let mut s = Snapshot::default();
        for &(pid, requests, statuses, latencies_ns) in entries {
            let mut c = ProcCounters {
                requests,
                ..Default::default()
            };
            for &ns in latencies_ns {
                c.latency.record(ns);
                c.latency_count += 1;
            }
            for &(code, n) in statuses {
                if code >= 200 {
                    c.responses += n;
                }
                s.add_status([pid, u32::from(code)], n);
            }
            s.processes.insert(pid, c);
        }
        s
    }

    #[test]
    fn rates_come_from_the_difference_between_snapshots() {
        let mut t = Tracker::new(10);
        t.update(
            Duration::from_secs(1),
            &snapshot(&[(10, 5, &[(200, 4), (404, 1)], &[])]),
        );
        t.update(
            Duration::from_secs(2),
            &snapshot(&[(10, 25, &[(200, 20), (404, 5)], &[])]),
        );
        let v = &t.views()[0];
        assert_eq!(v.pid, 10);
        assert_eq!(v.requests_per_second, 10.0);
        assert_eq!(v.responses_per_second[&200], 8.0);
        assert_eq!(v.responses_per_second[&404], 2.0);
        assert_eq!(v.requests_total, 25);
        assert_eq!(v.responses_total[&404], 5);
    }

    #[test]
    fn an_idle_process_shows_zero_rates_and_keeps_its_totals() {
        let mut t = Tracker::new(2);
        let busy = snapshot(&[(7, 3, &[(200, 3)], &[2_000_000, 2_000_000, 2_000_000])]);
        t.update(Duration::from_secs(1), &busy);
        assert!(t.views()[0].latency_p50_ms.is_some());
        t.update(Duration::from_secs(1), &busy);
        t.update(Duration::from_secs(1), &busy);
        let v = &t.views()[0];
        assert_eq!(v.requests_per_second, 0.0);
        assert_eq!(v.responses_per_second[&200], 0.0);
        assert_eq!(v.requests_total, 3);
        assert_eq!(v.latency_p50_ms, None, "nothing answered in the window");
    }

    #[test]
    fn latency_percentiles_are_in_milliseconds() {
        let mut t = Tracker::new(10);
        let mut lat = vec![1_000_000u64; 99];
        lat.push(80_000_000);
        t.update(
            Duration::from_secs(1),
            &snapshot(&[(3, 100, &[(200, 100)], &lat)]),
        );
        let v = &t.views()[0];
        let p50 = v.latency_p50_ms.expect("p50");
        let p99 = v.latency_p99_ms.expect("p99");
        assert!((0.75..1.3).contains(&p50), "{p50}");
        assert!(p99 >= p50 && p99 < 2.0, "{p99}: 99 of 100 are 1 ms");
    }

    #[test]
    fn an_evicted_entry_counts_again_from_zero_and_totals_keep_growing() {
        let mut t = Tracker::new(10);
        t.update(
            Duration::from_secs(1),
            &snapshot(&[(5, 100, &[(200, 100)], &[])]),
        );
        // The kernel evicted the entries and made them again: 3 new requests.
        t.update(
            Duration::from_secs(1),
            &snapshot(&[(5, 3, &[(200, 3)], &[])]),
        );
        let v = &t.views()[0];
        assert_eq!(v.requests_per_second, 3.0);
        assert_eq!(v.responses_per_second[&200], 3.0);
        assert_eq!(v.requests_total, 103);
        assert_eq!(v.responses_total[&200], 103);
    }

    #[test]
    fn processes_missing_from_a_snapshot_are_dropped() {
        let mut t = Tracker::new(10);
        t.update(
            Duration::from_secs(1),
            &snapshot(&[(1, 1, &[], &[]), (2, 1, &[], &[])]),
        );
        t.update(Duration::from_secs(1), &snapshot(&[(2, 2, &[], &[])]));
        assert_eq!(t.views().iter().map(|v| v.pid).collect::<Vec<_>>(), [2]);
        t.update(Duration::from_secs(1), &Snapshot::default());
        assert!(t.views().is_empty());
    }

    #[test]
    fn a_zero_interval_gives_zero_rates_not_infinities() {
        let mut t = Tracker::new(10);
        t.update(Duration::ZERO, &snapshot(&[(1, 5, &[(200, 5)], &[])]));
        assert_eq!(t.views()[0].requests_per_second, 0.0);
    }
}
