//! `rescope bench fleet`: a fleet of simulated probes publishing to a real app over
//! HTTP, to measure the app at fleet scale.
//!
//! Each simulated host (500 processes, 2,000 endpoints, about 10 containers) publishes
//! as Scope's probe does: every publish interval, a full report every third time and
//! deltas in between, gzip-compressed msgpack with the probe headers. Hosts are spread
//! over the interval. Meanwhile a client asks for views as the UI would. At the end the
//! command prints latency percentiles, the app's memory, and whether publishing kept up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use rescope_report::codec::{self, Encoding, Format};
use rescope_report::synthetic::{HostShape, HostSimulator};
use rescope_report::{GoTime, Report};

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
    tokio::time::sleep(start_offset).await;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < deadline {
        let scheduled = ticker.tick().await;
        let (body, full) = {
            let report = sim.next_report();
            let full = count.is_multiple_of(3) || last_full.is_none();
            let wire = match (&last_full, full) {
                (Some(base), false) => report.delta_from(base),
                _ => report.clone(),
            };
            if full {
                last_full = Some(report);
            }
            (
                codec::encode(
                    &wire,
                    Encoding {
                        format: Format::Msgpack,
                        gzip: true,
                    },
                ),
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
            let exe = std::env::current_exe().context("locating the rescope binary")?;
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
    for i in 0..args.probes {
        let offset = args.interval.mul_f64(i as f64 / args.probes as f64);
        tokio::spawn(probe(
            i,
            base.clone(),
            args.interval,
            offset,
            deadline,
            counters.clone(),
        ));
    }
    tokio::time::sleep(warmup).await;
    eprintln!("fleet: warmed up; measuring for {} s", args.seconds);
    let views = [
        ("processes", "/api/topology/processes"),
        ("hosts", "/api/topology/hosts"),
        ("topology list", "/api/topology"),
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); views.len()];
    let app_pid = app_process.as_ref().and_then(|c| c.id());
    let cpu_start = app_pid.and_then(cpu_seconds);
    let measuring = Instant::now();
    let mut rss_peak: f64 = 0.0;
    let mut nodes = 0;
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
                    nodes = serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v["nodes"].as_object().map(|n| n.len()))
                        .unwrap_or(0);
                }
            }
        }
        if let Some(rss) = app_process.as_ref().and_then(|c| c.id()).and_then(rss_mib) {
            rss_peak = rss_peak.max(rss);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
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
    if app_process.is_some() {
        println!("app peak RSS: {rss_peak:.0} MiB");
    }
    if let (Some(start), Some(end)) = (cpu_start, app_pid.and_then(cpu_seconds)) {
        println!(
            "app CPU while measuring: {:.2} cores on average (of {} available to everything on the machine)",
            (end - start) / measuring.elapsed().as_secs_f64(),
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
    }
    Ok(())
}
