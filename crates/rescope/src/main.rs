//! The `rescope` command: parses arguments and hands over to the libraries.

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use tokio::sync::watch;

mod app_cmd;
mod bench_cmd;
mod cli;
mod launch_cmd;
mod logging;
mod probe_cmd;
mod report_cmd;

fn main() -> ExitCode {
    let cli = cli::Cli::parse_from(cli::normalize_go_flags(std::env::args()));
    let result = match cli.command {
        cli::Command::Report(cmd) => report_cmd::run(cmd),
        daemon => {
            logging::init(cli.log_level.as_deref());
            run_daemon(daemon).map(|()| ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rescope: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Completes when SIGINT or SIGTERM arrives.
async fn signalled() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

fn run_daemon(command: cli::Command) -> Result<()> {
    // Before any thread allocates: the app's rendering threads and tokio's workers
    // would otherwise each keep an arena's worth of freed memory.
    rescope_probe::sys::malloc::limit_arenas();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let (stop, shutdown) = watch::channel(false);
        tokio::spawn(async move {
            signalled().await;
            tracing::info!("shutting down");
            let _ = stop.send(true);
        });
        match command {
            cli::Command::Launch(args) => {
                let args = *args;
                let app = args.app.into_config()?;
                let mut probe = args.probe.into_config(Vec::new())?;
                probe.no_controls |= app.read_only;
                launch_cmd::run(app, probe, shutdown).await
            }
            cli::Command::App(args) => {
                let config = std::sync::Arc::new(args.into_config()?);
                let listener = tokio::net::TcpListener::bind(config.listen).await?;
                let collector = rescope_app::Collector::new(config.window);
                rescope_app::serve_on(listener, config, collector, shutdown).await?;
                Ok(())
            }
            cli::Command::Probe(args) => {
                let config = args.into_config()?;
                rescope_probe::run(config, shutdown).await?;
                Ok(())
            }
            cli::Command::Bench(cli::BenchCommand::Fleet(args)) => bench_cmd::fleet(args).await,
            cli::Command::Bench(cli::BenchCommand::Report(args)) => bench_cmd::write_report(args),
            cli::Command::Report(_) => Ok(()),
        }
    })
}
