//! What one pass of the app's rendering thread costs at fleet scale, on one thread and
//! without HTTP: a third of the hosts publish (one second of a fleet publishing every
//! 3 s), their reports are applied to the store, the views are brought up to date,
//! and the processes and hosts summaries of the changed nodes are made again.
//!
//! `cargo run --release -p rescope-app --example fleet_pass -- 100 10`
//! (hosts, passes). `FLEET_HOSTS=n` makes n hosts publish per pass instead of a third,
//! `FLEET_REPORTS=k` k reports each (as queue up when the app is behind: they go
//! through the collector, so a full report drops the host's reports queued before it).
//! `DIFF=1` also says how the merged report's end points changed in each pass. Times are thread CPU time, so a busy machine does not inflate them:
//! the views' time is the sum of their steps' times on the threads that ran them (the
//! wall time of the update is printed too), the rest is this thread's.

use std::time::Duration;

use std::collections::HashMap;

use rescope_app::collector::{Collector, ReportKind, classify};
use rescope_app::renderer::Entry;
use rescope_app::store::Store;
use rescope_render::live::LiveViews;
use rescope_render::summary;
use rescope_report::synthetic::{HostShape, HostSimulator, fleet_seed};
use rescope_report::{GoTime, Report, Str};

/// CPU time of this thread so far.
fn cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    Duration::from_nanos(
        s.split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let hosts = args.first().copied().unwrap_or(20);
    let passes = args.get(1).copied().unwrap_or(6);
    let now = GoTime::now();
    let mut sims: Vec<HostSimulator> = (0..hosts)
        .map(|i| HostSimulator::new(HostShape::fleet_member(i), fleet_seed(7, i), now))
        .collect();
    let mut last_full: Vec<Option<Report>> = vec![None; hosts];
    let mut count = vec![0u64; hosts];
    let mut store = Store::new(Duration::from_secs(15));
    let mut live = LiveViews::new(now);
    live.set_clock(cpu);
    let env = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
    };
    let batch = env("FLEET_HOSTS").unwrap_or(hosts.div_ceil(3)).min(hosts);
    let per_host = env("FLEET_REPORTS").unwrap_or(1).max(1);
    let collector = Collector::new(Duration::from_secs(3600));
    let mut publish = |i: usize| {
        let report = sims[i].next_report();
        let full = count[i].is_multiple_of(3) || last_full[i].is_none();
        let wire = match (&last_full[i], full) {
            (Some(base), false) => report.delta_from(base),
            _ => report.clone(),
        };
        if full {
            last_full[i] = Some(report);
        }
        count[i] += 1;
        debug_assert!(classify(&wire) != ReportKind::Shortcut);
        collector.add(&format!("probe-{i}"), wire);
    };
    // Applies what the collector queued, as the rendering thread does; returns how many.
    let apply = |store: &mut Store| {
        let queued = collector.drain();
        let n = queued.reports.len();
        for q in queued.reports {
            store.apply(&q.key, q.kind, q.report);
        }
        n
    };
    let t = cpu();
    for i in 0..hosts {
        publish(i);
    }
    apply(&mut store);
    let changes = store.take_changes();
    live.update(store.report(), &changes);
    let first = cpu() - t;
    // The listings' entries, kept from pass to pass as the app keeps them.
    let t = cpu();
    let mut entries: HashMap<(&str, Str), Entry> = HashMap::new();
    for view in ["processes", "hosts"] {
        let Some(r) = live.view(view) else { continue };
        for (id, n) in &r.nodes {
            if let Some(s) = summary::summarize(n, store.report(), false)
                && let Ok(e) = Entry::new(id, s)
            {
                entries.insert((view, id.clone()), e);
            }
        }
    }
    println!(
        "{hosts} hosts: {} nodes; first render {:.0} ms, its summaries {:.0} ms; RSS {:.0} MiB",
        store.node_count(),
        ms(first),
        ms(cpu() - t),
        rss_mib()
    );
    println!("{batch} hosts publish per pass, {per_host} reports each");
    let mut totals = Vec::new();
    for pass in 0..passes {
        for _ in 0..per_host {
            for k in 0..batch {
                publish((pass * batch + k) % hosts);
            }
        }
        let before = std::env::var("DIFF").is_ok().then(|| {
            store.report()[rescope_report::TopologyKind::Endpoint]
                .nodes
                .clone()
        });
        let t = cpu();
        let applied = apply(&mut store);
        if let Some(before) = before {
            let after = &store.report()[rescope_report::TopologyKind::Endpoint].nodes;
            let added = after.keys().filter(|k| !before.contains_key(*k)).count();
            let removed = before.keys().filter(|k| !after.contains_key(*k)).count();
            let mut fields = std::collections::BTreeMap::<String, usize>::new();
            for (k, a) in after {
                let Some(b) = before.get(k) else { continue };
                let mut f = Vec::new();
                if a.sets != b.sets {
                    f.push("sets");
                }
                if a.adjacency != b.adjacency {
                    f.push("adjacency");
                }
                if a.parents != b.parents {
                    f.push("parents");
                }
                if a.latest.len() != b.latest.len()
                    || a.latest
                        .iter()
                        .zip(b.latest.iter())
                        .any(|((ka, va), (kb, vb))| ka != kb || va.value != vb.value)
                {
                    f.push("latest values");
                } else if a.latest != b.latest {
                    f.push("latest times");
                }
                if a.metrics != b.metrics {
                    f.push("metrics");
                }
                if !f.is_empty() {
                    *fields.entry(f.join("+")).or_default() += 1;
                }
            }
            println!(
                "end points: {} before, {} after, {added} added, {removed} removed, changed: {fields:?}",
                before.len(),
                after.len()
            );
        }
        let apply = cpu() - t;
        let t = cpu();
        let changes = store.take_changes();
        let take = cpu() - t;
        let changed: usize = changes.nodes.iter().map(|s| s.len()).sum();
        let stamped: usize = changes.stamped.iter().map(|s| s.len()).sum();
        let mut changes = changes;
        if std::env::var("DROP_MEASURED").is_ok() {
            for i in 0..changes.nodes.len() {
                let m = std::mem::take(&mut changes.measured[i]);
                changes.nodes[i].retain(|id| !m.contains(id));
            }
        }
        let wall = std::time::Instant::now();
        let views = live.update(store.report(), &changes);
        let wall = wall.elapsed();
        // Both threads' CPU time: the steps are timed on the thread that runs them.
        let update: Duration = live.timings().iter().map(|(_, d)| *d).sum();
        let measured: usize = changes.measured.iter().map(|s| s.len()).sum();
        let by_kind: Vec<String> = rescope_report::TopologyKind::ALL
            .iter()
            .filter(|k| !changes.nodes[k.index()].is_empty())
            .map(|k| {
                let i = k.index();
                format!(
                    "{} {}/{}/{}",
                    k.name(),
                    changes.nodes[i].len(),
                    changes.measured[i].len(),
                    changes.stamped[i].len()
                )
            })
            .collect();
        let t = cpu();
        let report = store.report();
        let mut bytes = 0;
        let mut summarised = 0;
        let mut patched = 0;
        for view in ["processes", "hosts"] {
            let (Some(c), Some(r)) = (views.get(view), live.view(view)) else {
                continue;
            };
            for id in c.ids() {
                let key = (view, id.clone());
                let Some(n) = r.nodes.get(id) else {
                    entries.remove(&key);
                    continue;
                };
                // As the app's listings do: a node whose metrics alone changed gets new
                // metric rows in its entry, the others a new summary.
                let old = entries
                    .get(&key)
                    .filter(|_| c.measured.contains(id) && !c.structure.contains(id));
                let entry = match old {
                    Some(e) => {
                        patched += 1;
                        e.with_metrics(&summary::listing_metrics(n, report)).ok()
                    }
                    None => {
                        summary::summarize(n, report, false).and_then(|s| Entry::new(id, s).ok())
                    }
                };
                if let Some(e) = entry {
                    bytes += e.value().len();
                    summarised += 1;
                    entries.insert(key, e);
                }
            }
        }
        let summaries = cpu() - t;
        let total = apply + take + update + summaries;
        totals.push(ms(total));
        let steps: Vec<String> = live
            .timings()
            .iter()
            .map(|(name, d)| format!("{name} {:.0}", ms(*d)))
            .collect();
        println!(
            "pass {pass}: total {:.0} ms CPU; all {} presentation {} dns {}; {applied} reports applied {:.0} ms, merge fields {:.0} ms ({changed} nodes changed: {measured} in metrics only, {stamped} in times only; changed/measured/stamped by topology: {}); views {:.0} ms CPU ({:.0} ms wall) [{}]; {summarised} summaries ({patched} patched) {:.0} ms ({} kB); RSS {:.0} MiB",
            ms(total),
            changes.all,
            changes.presentation,
            changes.dns.len(),
            ms(apply),
            ms(take),
            by_kind.join(", "),
            ms(update),
            ms(wall),
            steps.join(", "),
            ms(summaries),
            bytes / 1024,
            rss_mib()
        );
    }
    totals.sort_by(f64::total_cmp);
    if let Some(median) = totals.get(totals.len() / 2) {
        println!(
            "median pass {median:.0} ms CPU over {} passes",
            totals.len()
        );
    }
}
