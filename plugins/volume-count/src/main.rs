//! `rescope-volume-count`: the volume-count plugin as a program. See the README.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use rescope_volume_count::Config;

/// Shows how many volumes each Docker container has mounted, in Rescope or Weave Scope.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The probe's plugin directory; the socket is <root>/volume-count/volume-count.sock.
    #[arg(long, env = "RESCOPE_PLUGINS_ROOT", default_value = rescope_plugin::DEFAULT_PLUGINS_ROOT)]
    plugins_root: PathBuf,
    /// Listen on exactly this socket path instead.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// The Docker engine (`unix:///path` or a path).
    #[arg(
        long,
        env = "DOCKER_HOST",
        default_value = "unix:///var/run/docker.sock"
    )]
    docker_host: String,
    /// How often to read the container list, in milliseconds.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(10..))]
    interval_ms: u64,
    /// Log filter (`info`, `debug`, …); default `info` or RUST_LOG.
    #[arg(long)]
    log_level: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    rescope_plugin::init_logging(args.log_level.as_deref());
    let docker_socket =
        rescope_volume_count::docker_socket(&args.docker_host).map_err(anyhow::Error::msg)?;
    let config = Config {
        plugins_root: args.plugins_root,
        socket: args.socket,
        docker_socket,
        interval: Duration::from_millis(args.interval_ms),
    };
    tracing::info!(docker = %config.docker_socket.display(), "starting the volume-count plugin");
    let shutdown = rescope_plugin::shutdown_signal().context("listening for signals")?;
    rescope_volume_count::run(config, shutdown)
        .await
        .context("the volume-count plugin stopped")
}
