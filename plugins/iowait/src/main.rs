//! `rescope-iowait`: the iowait plugin as a program. See the README.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use rescope_iowait::{Config, Mode};

/// Reports the host's CPU IO wait (or idle) percentage to Rescope or Weave Scope.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The probe's plugin directory; the socket is <root>/iowait/iowait.sock.
    #[arg(long, env = "RESCOPE_PLUGINS_ROOT", default_value = rescope_plugin::DEFAULT_PLUGINS_ROOT)]
    plugins_root: PathBuf,
    /// Listen on exactly this socket path instead.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// The host name the probe reports (its --hostname); default: this machine's.
    #[arg(long, env = "SCOPE_HOSTNAME")]
    hostname: Option<String>,
    /// Where procfs is mounted.
    #[arg(long, default_value = "/proc")]
    proc_root: PathBuf,
    /// How often to read /proc/stat, in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..))]
    interval_ms: u64,
    /// The percentage reported at start; the plugin's controls switch it.
    #[arg(long, value_enum, default_value = "iowait")]
    metric: Mode,
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
        mode: args.metric,
    };
    tracing::info!(host = %config.host_id, "starting the iowait plugin");
    let shutdown = rescope_plugin::shutdown_signal().context("listening for signals")?;
    rescope_iowait::run(config, shutdown)
        .await
        .context("the iowait plugin stopped")
}
