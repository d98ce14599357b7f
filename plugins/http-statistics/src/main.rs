//! `rescope-http-statistics`: the http-statistics plugin as a program. See the README.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use rescope_http_statistics::Config;

/// Reports per-process HTTP request rates, response codes and latency to Rescope or
/// Weave Scope, measured with eBPF. Needs root (or CAP_BPF, CAP_PERFMON and
/// CAP_DAC_READ_SEARCH) and a kernel with BTF.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The probe's plugin directory; the socket is
    /// <root>/http-statistics/http-statistics.sock.
    #[arg(long, env = "RESCOPE_PLUGINS_ROOT", default_value = rescope_plugin::DEFAULT_PLUGINS_ROOT)]
    plugins_root: PathBuf,
    /// Listen on exactly this socket path instead.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// The host name the probe reports (its --hostname); default: this machine's.
    #[arg(long, env = "SCOPE_HOSTNAME")]
    hostname: Option<String>,
    /// Where procfs is mounted (used to notice processes that exited).
    #[arg(long, default_value = "/proc")]
    proc_root: PathBuf,
    /// How often to read the kernel's counters, in milliseconds; rates are per
    /// second over this interval.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..))]
    interval_ms: u64,
    /// Latency percentiles cover this many intervals.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    latency_window: u64,
    /// Processes tracked at once; the least recently active are evicted first
    /// (default 8192).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_processes: Option<u32>,
    /// Load this BPF object instead of the built-in one (e.g. one rebuilt with
    /// bpf/build.sh).
    #[arg(long)]
    bpf_object: Option<PathBuf>,
    /// Log filter (`info`, `debug`, …); default `info` or RUST_LOG.
    #[arg(long)]
    log_level: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    rescope_plugin::init_logging(args.log_level.as_deref());
    let config = Config {
        plugins_root: args.plugins_root,
        socket: args.socket,
        host_id: args
            .hostname
            .filter(|h| !h.is_empty())
            .unwrap_or_else(rescope_plugin::host_id),
        proc_root: args.proc_root,
        interval: Duration::from_millis(args.interval_ms),
        latency_window: usize::try_from(args.latency_window).unwrap_or(10),
        bpf_object: args.bpf_object,
        limits: rescope_http_statistics::probe::Limits {
            max_processes: args.max_processes,
        },
    };
    tracing::info!(host = %config.host_id, "starting the http-statistics plugin");
    let shutdown = rescope_plugin::shutdown_signal().context("listening for signals")?;
    rescope_http_statistics::run(config, shutdown)
        .await
        .context("the http-statistics plugin stopped")
}
