//! `rescope bench fleet`: a fleet of simulated probes publishing to a real app over
//! HTTP, to measure the app at fleet scale.
//!
//! Each simulated host (500 processes, 2,000 endpoints, about 10 containers) publishes
//! as Scope's probe does: every publish interval, a full report every third time and
//! deltas in between, gzip-compressed msgpack with the probe headers. Hosts are spread
//! over the interval. Meanwhile a client asks for views as the UI would, and two
//! websocket clients follow the processes and hosts views. At the end the command prints
//! latency percentiles, how long a published change took to reach the websockets, the
//! app's memory and CPU, the simulator's own CPU, and whether publishing kept up.
//!
//! Change latency: every report a probe publishes changes the metric values of its host
//! node and of its process 1 (as the views list them). The simulator notes those
//! values and when it started publishing; a websocket message carrying them ends the
//! wait. Reports are compressed at gzip's fastest level, which costs the simulator a
//! third of the default level's CPU and the app nothing more.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use rescope_report::codec::{self, Encoding, Format};
use rescope_report::synthetic::{HostShape, HostSimulator};
use rescope_report::{GoTime, Report, TopologyKind};
use serde::Deserialize;

#[derive(Debug, Clone, Args)]
pub struct FleetArgs {
    /// Number of simulated probes.
    #[arg(long, default_value_t = 100)]
    pub probes: usize,
    /// How long to run, in seconds (after a warm-up of one window).
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// The app to publish to; without it, `rescope app` is started on a free port.
    #[arg(long)]
    pub app: Option<String>,
    /// The `rescope` binary to start the app from (another build, to compare apps
    /// under the same simulator); without it, this binary.
    #[arg(long, conflicts_with = "app")]
    pub app_exe: Option<std::path::PathBuf>,
    /// Publish interval of every probe (Go duration).
    #[arg(long, default_value = "3s", value_parser = rescope_probe::config::parse_go_duration)]
    pub interval: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Processes on the simulated host (the size of the processes view).
    #[arg(long, default_value_t = 500)]
    pub processes: usize,
    /// TCP end points, which become the connections between processes.
    #[arg(long, default_value_t = 2_000)]
    pub endpoints: usize,
    /// Containers on the host.
    #[arg(long, default_value_t = 10)]
    pub containers: usize,
    /// Host name of the simulated host.
    #[arg(long, default_value = "sim-1")]
    pub hostname: String,
    /// Seed: the same seed gives the same report (apart from timestamps).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where to write the report (`-` for standard output).
    #[arg(long, short)]
    pub out: std::path::PathBuf,
}

/// `rescope bench report`: one simulated host's full report, stamped now.
pub fn write_report(args: ReportArgs) -> Result<()> {
    let mut shape = HostShape::fleet_member(1);
    shape.hostname = args.hostname;
    shape.processes = args.processes;
    shape.endpoints = args.endpoints;
    shape.containers = args.containers;
    let report = HostSimulator::new(shape, args.seed, GoTime::now()).report();
    let bytes = codec::encode(
        &report,
        Encoding {
            format: Format::Msgpack,
            gzip: true,
        },
    );
    if args.out.as_os_str() == "-" {
        use std::io::Write;
        std::io::stdout().write_all(&bytes)?;
    } else {
        std::fs::write(&args.out, &bytes)
            .with_context(|| format!("writing {}", args.out.display()))?;
    }
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // Linux reports clock ticks of 1/100 s on every platform Rescope runs on.
    Some((utime + stime) / 100.0)
}

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// Metric values of a node as a listing shows them (last sample, truncated to two
/// decimals), by metric ID: what identifies one report's state of that node.
type Marker = Vec<(String, f64)>;

fn truncate2(v: f64) -> f64 {
    (v * 100.0).trunc() / 100.0
}

fn marker(node: &rescope_report::Node) -> Marker {
    node.metrics
        .iter()
        .filter_map(|(id, m)| Some((id.to_string(), truncate2(m.last()?.value))))
        .collect()
}

/// Follows one view's websocket: which published states are still to arrive, and how
/// long the ones that arrived took.
#[derive(Default)]
struct Tracker {
    /// Set once the websocket has its first message; changes published before then
    /// are not waited for.
    since: Mutex<Option<Instant>>,
    /// Node ID → (publish started, marker), oldest first.
    pending: Mutex<HashMap<String, VecDeque<(Instant, Marker)>>>,
    /// (when it arrived, latency in ms)
    arrived: Mutex<Vec<(Instant, f64)>>,
    /// Websocket messages received and their total size.
    messages: AtomicU64,
    bytes: AtomicU64,
}

impl Tracker {
    fn expect(&self, node: String, started: Instant, marker: Marker) {
        if marker.is_empty()
            || self
                .since
                .lock()
                .map_or(true, |s| s.is_none_or(|s| started < s))
        {
            return;
        }
        if let Ok(mut p) = self.pending.lock() {
            p.entry(node).or_default().push_back((started, marker));
        }
    }

    /// A node as a websocket message carried it: the newest pending state it matches
    /// has arrived, and so have the older ones it supersedes.
    fn seen(&self, node: &str, marker: &Marker, now: Instant) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        let Some(queue) = pending.get_mut(node) else {
            return;
        };
        let Some(last) = queue.iter().rposition(|(_, m)| m == marker) else {
            return;
        };
        let Ok(mut arrived) = self.arrived.lock() else {
            return;
        };
        for (started, _) in queue.drain(..=last) {
            arrived.push((now, now.duration_since(started).as_secs_f64() * 1000.0));
        }
    }

    /// Published states that never arrived (older than `grace`).
    fn missing(&self, grace: Duration) -> usize {
        self.pending.lock().map_or(0, |p| {
            p.values()
                .flatten()
                .filter(|(started, _)| started.elapsed() > grace)
                .count()
        })
    }
}

#[derive(Deserialize)]
struct WsMetric {
    id: String,
    value: f64,
}

#[derive(Deserialize)]
struct WsNode {
    id: String,
    #[serde(default)]
    metrics: Vec<WsMetric>,
}

#[derive(Deserialize)]
struct WsDiff {
    #[serde(default)]
    add: Option<Vec<WsNode>>,
    #[serde(default)]
    update: Option<Vec<WsNode>>,
}

/// Reads a view's websocket until `deadline`, telling the tracker what arrived.
async fn follow(base: String, view: &'static str, tracker: Arc<Tracker>, deadline: Instant) {
    use futures_util::StreamExt;
    let url = format!("{}/api/topology/{view}/ws", base.replacen("http", "ws", 1));
    // A fleet's processes view is tens of megabytes of JSON in one message, as a
    // browser takes it; tungstenite's defaults stop at 16 MiB frames.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None);
    let Ok((mut socket, _)) =
        tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), false).await
    else {
        eprintln!("fleet: cannot open {url}");
        return;
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(Ok(msg))) = tokio::time::timeout(left, socket.next()).await else {
            break;
        };
        let now = Instant::now();
        let tokio_tungstenite::tungstenite::Message::Text(text) = msg else {
            continue;
        };
        tracker.messages.fetch_add(1, Ordering::Relaxed);
        tracker
            .bytes
            .fetch_add(text.len() as u64, Ordering::Relaxed);
        if let Ok(mut since) = tracker.since.lock() {
            since.get_or_insert(now);
        }
        let Ok(diff) = serde_json::from_str::<WsDiff>(text.as_str()) else {
            continue;
        };
        for node in diff.add.iter().chain(diff.update.iter()).flatten() {
            let mut m: Marker = node
                .metrics
                .iter()
                .map(|m| (m.id.clone(), m.value))
                .collect();
            m.sort_by(|a, b| a.0.cmp(&b.0));
            tracker.seen(&node.id, &m, now);
        }
    }
}

struct Counters {
    published: AtomicU64,
    failed: AtomicU64,
    late: AtomicU64,
}

/// One simulated probe: publishes until `deadline`, keeping Scope's schedule.
async fn probe(
    i: usize,
    base: String,
    interval: Duration,
    start_offset: Duration,
    deadline: Instant,
    counters: Arc<Counters>,
    trackers: [Arc<Tracker>; 2],
) {
    let client = reqwest::Client::new();
    let now = GoTime::now();
    let mut sim = HostSimulator::new(
        HostShape::fleet_member(i),
        rescope_report::synthetic::fleet_seed(7, i),
        now,
    );
    let probe_id = format!("{:x}", 0x5eed_0000_u64 + i as u64);
    let mut last_full: Option<Report> = None;
    let mut count = 0u64;
    let mut last_markers: [Option<Marker>; 2] = [None, None];
    tokio::time::sleep(start_offset).await;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < deadline {
        let scheduled = ticker.tick().await;
        let started = Instant::now();
        let (body, full) = {
            let report = sim.next_report();
            let [processes, hosts] = &trackers;
            for (tracker, kind) in [
                (hosts, TopologyKind::Host),
                (processes, TopologyKind::Process),
            ] {
                let node = match kind {
                    TopologyKind::Host => report[kind].nodes.iter().next(),
                    _ => {
                        let id = format!("{};1", sim.shape().hostname);
                        report[kind].nodes.get_key_value(id.as_str())
                    }
                };
                // A publish that leaves the node's values as they were cannot be seen
                // arriving; only changes are waited for.
                if let Some((id, node)) = node {
                    let m = marker(node);
                    let slot = usize::from(kind == TopologyKind::Process);
                    if last_markers[slot].as_ref() != Some(&m) {
                        last_markers[slot] = Some(m.clone());
                        tracker.expect(id.to_string(), started, m);
                    }
                }
            }
            let full = count.is_multiple_of(3) || last_full.is_none();
            let wire = match (&last_full, full) {
                (Some(base), false) => report.delta_from(base),
                _ => report.clone(),
            };
            if full {
                last_full = Some(report);
            }
            (
                codec::gzip_fast(&codec::encode(
                    &wire,
                    Encoding {
                        format: Format::Msgpack,
                        gzip: false,
                    },
                )),
                full,
            )
        };
        let sent = client
            .post(format!("{base}/api/report"))
            .header("Content-Type", "application/msgpack")
            .header("Content-Encoding", "gzip")
            .header("X-Scope-Probe-ID", &probe_id)
            .header("Authorization", "Scope-Probe token=")
            .body(body)
            .timeout(Duration::from_secs(12))
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                counters.published.fetch_add(1, Ordering::Relaxed);
                count += 1;
            }
            _ => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                if full {
                    last_full = None;
                }
            }
        }
        if scheduled.elapsed() > interval {
            counters.late.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One look at the app's `/api/health`: seconds into the measurement, queued reports,
/// how long the oldest had waited (ms), the last pass (ms) and how long its oldest
/// report had waited (ms).
type HealthSample = (f64, f64, f64, f64, f64);

pub async fn fleet(args: FleetArgs) -> Result<()> {
    if args.probes == 0 {
        bail!("--probes must be at least 1");
    }
    let mut app_process = None;
    let base = match &args.app {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let exe = match &args.app_exe {
                Some(exe) => exe.clone(),
                None => std::env::current_exe().context("locating the rescope binary")?,
            };
            let child = tokio::process::Command::new(exe)
                .args(["app", "--listen", &format!("127.0.0.1:{port}")])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .context("starting rescope app")?;
            app_process = Some(child);
            format!("http://127.0.0.1:{port}")
        }
    };
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client.get(format!("{base}/api")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let warmup = Duration::from_secs(15);
    let deadline = Instant::now() + warmup + Duration::from_secs(args.seconds);
    let counters = Arc::new(Counters {
        published: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        late: AtomicU64::new(0),
    });
    eprintln!(
        "fleet: {} probes publishing to {base} every {:?}",
        args.probes, args.interval
    );
    let trackers: [Arc<Tracker>; 2] = Default::default();
    for i in 0..args.probes {
        let offset = args.interval.mul_f64(i as f64 / args.probes as f64);
        tokio::spawn(probe(
            i,
            base.clone(),
            args.interval,
            offset,
            deadline,
            counters.clone(),
            trackers.clone(),
        ));
    }
    tokio::time::sleep(warmup).await;
    eprintln!("fleet: warmed up; measuring for {} s", args.seconds);
    let followers: Vec<_> = ["processes", "hosts"]
        .into_iter()
        .zip(trackers.iter())
        .map(|(view, t)| tokio::spawn(follow(base.clone(), view, t.clone(), deadline)))
        .collect();
    let views = [
        ("processes", "/api/topology/processes"),
        ("hosts", "/api/topology/hosts"),
        ("topology list", "/api/topology"),
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); views.len()];
    let app_pid = app_process.as_ref().and_then(|c| c.id());
    let cpu_start = app_pid.and_then(cpu_seconds);
    let own_cpu_start = cpu_seconds(std::process::id());
    let measuring = Instant::now();
    let mut rss_peak: f64 = 0.0;
    let mut rss_last: f64 = 0.0;
    let mut health: Vec<HealthSample> = Vec::new();
    // The newest processes body; its nodes are counted once, after measuring (parsing
    // tens of megabytes of JSON every round took CPU the app needs).
    let mut processes_body = Default::default();
    let mut superseded = 0.0;
    while Instant::now() < deadline {
        for (k, (_, path)) in views.iter().enumerate() {
            let started = Instant::now();
            let r = client
                .get(format!("{base}{path}"))
                .timeout(Duration::from_secs(30))
                .send()
                .await;
            if let Ok(r) = r {
                let body = r.bytes().await.unwrap_or_default();
                times[k].push(started.elapsed().as_secs_f64() * 1000.0);
                if k == 0 {
                    processes_body = body;
                }
            }
        }
        // The app's backlog: reports queued and not applied yet, and its last pass.
        if let Ok(r) = client
            .get(format!("{base}/api/health"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            && let Ok(body) = r.bytes().await
            && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
        {
            let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
            superseded = f("superseded_reports");
            health.push((
                measuring.elapsed().as_secs_f64(),
                f("queued_reports"),
                f("queued_ms"),
                f("pass_ms"),
                f("pass_lag_ms"),
            ));
        }
        if let Some(rss) = app_process.as_ref().and_then(|c| c.id()).and_then(rss_mib) {
            rss_peak = rss_peak.max(rss);
            rss_last = rss;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let measured = measuring.elapsed().as_secs_f64();
    let own_cpu_end = cpu_seconds(std::process::id());
    let nodes = serde_json::from_slice::<serde_json::Value>(&processes_body)
        .ok()
        .and_then(|v| v["nodes"].as_object().map(|n| n.len()))
        .unwrap_or(0);
    let app_cpu_end = app_pid.and_then(cpu_seconds);
    for f in followers {
        let _ = f.await;
    }
    println!(
        "{:<16}{:>6}{:>12}{:>10}{:>10}",
        "request", "n", "median ms", "p95 ms", "max ms"
    );
    for (k, (name, _)) in views.iter().enumerate() {
        let mut t = times[k].clone();
        t.sort_by(f64::total_cmp);
        println!(
            "{:<16}{:>6}{:>12.1}{:>10.1}{:>10.1}",
            name,
            t.len(),
            percentile(&t, 0.5),
            percentile(&t, 0.95),
            t.last().copied().unwrap_or(0.0)
        );
    }
    let expected = (args.probes as f64 * (warmup.as_secs_f64() + args.seconds as f64)
        / args.interval.as_secs_f64()) as u64;
    println!(
        "published {} reports ({} expected), {} failed, {} late; processes view: {nodes} nodes",
        counters.published.load(Ordering::Relaxed),
        expected,
        counters.failed.load(Ordering::Relaxed),
        counters.late.load(Ordering::Relaxed)
    );
    println!(
        "{:<16}{:>6}{:>12}{:>10}{:>10}{:>9}{:>10}{:>12}",
        "change → ws", "n", "median ms", "p95 ms", "max ms", "missing", "messages", "MB received"
    );
    for (view, t) in ["processes", "hosts"].iter().zip(trackers.iter()) {
        let arrived = t.arrived.lock().map(|a| a.clone()).unwrap_or_default();
        let mut lat: Vec<f64> = arrived.iter().map(|(_, l)| *l).collect();
        lat.sort_by(f64::total_cmp);
        println!(
            "{:<16}{:>6}{:>12.0}{:>10.0}{:>10.0}{:>9}{:>10}{:>12.1}",
            view,
            lat.len(),
            percentile(&lat, 0.5),
            percentile(&lat, 0.95),
            lat.last().copied().unwrap_or(0.0),
            t.missing(Duration::from_secs(5)),
            t.messages.load(Ordering::Relaxed),
            t.bytes.load(Ordering::Relaxed) as f64 / 1e6
        );
        // Median per minute: a growing backlog shows as a rising trend.
        let mut minutes: Vec<Vec<f64>> = Vec::new();
        for (at, l) in &arrived {
            let m = at.saturating_duration_since(measuring).as_secs() as usize / 60;
            if minutes.len() <= m {
                minutes.resize(m + 1, Vec::new());
            }
            minutes[m].push(*l);
        }
        if minutes.len() > 1 {
            let medians: Vec<String> = minutes
                .iter_mut()
                .map(|m| {
                    m.sort_by(f64::total_cmp);
                    format!("{:.0}", percentile(m, 0.5))
                })
                .collect();
            println!("  {view} median per minute (ms): {}", medians.join(", "));
        }
    }
    if !health.is_empty() {
        let stat = |f: &dyn Fn(&HealthSample) -> f64, part: &[HealthSample]| {
            let mut v: Vec<f64> = part.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            (percentile(&v, 0.5), v.last().copied().unwrap_or(0.0))
        };
        let half = health.len() / 2;
        for (label, part) in [
            ("first half", &health[..half]),
            ("second half", &health[half..]),
        ] {
            let (q, qmax) = stat(&|h| h.1, part);
            let (age, agemax) = stat(&|h| h.2, part);
            let (pass, passmax) = stat(&|h| h.3, part);
            let (lag, lagmax) = stat(&|h| h.4, part);
            println!(
                "backlog, {label}: queued reports median {q:.0} (max {qmax:.0}), oldest waiting {age:.0} ms (max {agemax:.0}); pass {pass:.0} ms (max {passmax:.0}), its oldest report had waited {lag:.0} ms (max {lagmax:.0})"
            );
        }
    }
    if !health.is_empty() {
        println!(
            "reports the app dropped unapplied (a newer full report of the probe came first): {superseded:.0}"
        );
    }
    if app_process.is_some() {
        println!("app peak RSS: {rss_peak:.0} MiB (at the end: {rss_last:.0} MiB)");
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if let (Some(start), Some(end)) = (cpu_start, app_cpu_end) {
        println!(
            "app CPU while measuring: {:.2} cores on average (of {cores} available to everything on the machine)",
            (end - start) / measured,
        );
    }
    if let (Some(start), Some(end)) = (own_cpu_start, own_cpu_end) {
        println!(
            "simulator and clients (this process) CPU while measuring: {:.2} cores on average",
            (end - start) / measured,
        );
    }
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!(
            "load average at the end: {}",
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    Ok(())
}
