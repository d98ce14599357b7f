//! Command-line definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::app_cmd::AppArgs;
use crate::probe_cmd::{ProbeArgs, ProbeOptions};

/// Rescope: a live map of every host, container, process and connection, compatible
/// with Weave Scope's probes, plugins and API.
#[derive(Debug, Parser)]
#[command(name = "rescope", version, about, long_about = None)]
pub struct Cli {
    /// Log level or filter (`info`, `debug`, `rescope_probe=debug`); default `info`,
    /// or `RUST_LOG`.
    #[arg(
        long = "log-level",
        visible_alias = "probe.log.level",
        visible_alias = "app.log.level",
        global = true,
        env = "RESCOPE_LOG_LEVEL"
    )]
    pub log_level: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the probe and the app in one process; the UI and API on
    /// http://localhost:4040.
    Launch(Box<LaunchArgs>),
    /// Run the app only: receive reports from probes, serve the UI and API.
    ///
    /// Scope's flag spellings are accepted as aliases, with two dashes or Go's one
    /// (`--app.http.address=:4040`, `-app.window=15s`).
    App(AppArgs),
    /// Inspect, check and convert report files (Scope's wire format: JSON or msgpack,
    /// optionally gzip-compressed; detected from the content).
    #[command(subcommand)]
    Report(ReportCommand),
    /// Run the probe only, publishing to one or more apps.
    ///
    /// Scope's flag spellings are accepted as aliases, with two dashes or Go's one
    /// (`--probe.spy.interval=2s`, `-probe.spy.interval=2s`), so existing manifests
    /// keep working. A boolean flag takes `=false` to turn it off.
    Probe(ProbeArgs),
    /// Load generators for measuring Rescope.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Simulated probes publishing realistic reports to an app over HTTP, with
    /// request latency and app memory measured.
    Fleet(crate::bench_cmd::FleetArgs),
    /// Write one simulated host's full report (gzip msgpack) to a file, e.g. to post a
    /// view of a chosen size to `rescope app` when measuring the UI.
    Report(crate::bench_cmd::ReportArgs),
}

#[derive(Debug, Args)]
pub struct LaunchArgs {
    #[command(flatten)]
    pub app: AppArgs,
    #[command(flatten)]
    pub probe: ProbeOptions,
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Print what a report holds: topologies, node counts, plugins, time span.
    Summary {
        /// Report file, or `-` for standard input.
        input: PathBuf,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Convert a report between JSON and msgpack.
    Convert(ConvertArgs),
    /// Check a report and say exactly what is wrong and where.
    ///
    /// Exits 0 when the report is valid, 1 when it has errors (or warnings with
    /// --deny-warnings), 2 when it cannot be read at all.
    Validate(ValidateArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Json,
    Msgpack,
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Report file, or `-` for standard input.
    pub input: PathBuf,
    /// Output format.
    #[arg(long, value_enum)]
    pub to: OutputFormat,
    /// gzip-compress the output (as probes send reports).
    #[arg(long)]
    pub gzip: bool,
    /// Indent JSON output.
    #[arg(long)]
    pub pretty: bool,
    /// Write to this file instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Report file, or `-` for standard input.
    pub input: PathBuf,
    /// Also apply the rules a probe applies to a plugin's `GET /report` answer
    /// (exactly one plugin spec, a label, the "reporter" interface, API version 1).
    #[arg(long)]
    pub plugin: bool,
    /// With --plugin: the plugin ID the probe derives from the socket file name
    /// (`iowait` for `iowait.sock`).
    #[arg(long, value_name = "ID")]
    pub plugin_id: Option<String>,
    /// Treat warnings as errors.
    #[arg(long)]
    pub deny_warnings: bool,
}

/// Go's flag package accepts `-probe.docker=true`; clap wants two dashes. Rewrites
/// single-dash Scope flags so existing manifests keep working.
pub fn normalize_go_flags(args: impl IntoIterator<Item = String>) -> Vec<String> {
    args.into_iter()
        .map(|a| {
            let go_style = a.starts_with('-')
                && !a.starts_with("--")
                && (a[1..].starts_with("probe.")
                    || a[1..].starts_with("app.")
                    || a[1..].starts_with("service-token"));
            if go_style { format!("-{a}") } else { a }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_style_flags_are_accepted() {
        let args = normalize_go_flags(
            [
                "rescope",
                "probe",
                "-probe.docker=false",
                "--probe.spy.interval=2s",
                "-probe.no-controls",
                "10.0.0.1:4040",
            ]
            .map(String::from),
        );
        let cli = Cli::try_parse_from(args).expect("parses");
        let Command::Probe(p) = cli.command else {
            panic!("probe")
        };
        let config = p.into_config().expect("valid");
        assert!(!config.docker);
        assert!(config.no_controls);
        assert_eq!(config.spy_interval, std::time::Duration::from_secs(2));
        assert_eq!(config.targets[0].base_url(), "http://10.0.0.1:4040");
    }

    /// The Scope spellings a probe manifest uses, each with a value that differs from
    /// the default, so a flag that is parsed but not wired to its setting shows.
    const SCOPE_PROBE_FLAGS: [&str; 14] = [
        "-probe.spy.interval=2s",
        "-probe.publish.interval=5s",
        "-probe.full-report-every=4",
        "-probe.plugins.root=/tmp/scope-plugins",
        "-probe.no-controls=true",
        "-probe.omit.cmd-args=true",
        "-probe.proc.root=/host/proc",
        "-probe.processes=false",
        "-probe.conntrack=false",
        "-probe.docker=false",
        "-probe.token=s3cret",
        "-probe.publish.stdout=true",
        "-probe.http.listen=127.0.0.1:4041",
        "-probe.log.level=debug",
    ];

    #[test]
    fn every_scope_probe_flag_sets_its_setting_and_is_named_in_help() {
        let args = ["rescope", "probe"]
            .into_iter()
            .chain(SCOPE_PROBE_FLAGS)
            .map(String::from);
        let cli = Cli::try_parse_from(normalize_go_flags(args)).expect("parses");
        assert_eq!(cli.log_level.as_deref(), Some("debug"));
        let Command::Probe(p) = cli.command else {
            panic!("probe")
        };
        let c = p.into_config().expect("valid");
        assert_eq!(c.spy_interval, std::time::Duration::from_secs(2));
        assert_eq!(c.publish_interval, std::time::Duration::from_secs(5));
        assert_eq!(c.full_report_every, 4);
        assert_eq!(
            c.plugins_root.as_deref(),
            Some(std::path::Path::new("/tmp/scope-plugins"))
        );
        assert!(c.no_controls && c.omit_cmd_args && c.publish_stdout);
        assert!(!c.processes && !c.conntrack && !c.docker);
        assert_eq!(c.proc_root, PathBuf::from("/host/proc"));
        assert_eq!(c.token.expose(), "s3cret");
        assert_eq!(
            c.http_listen.map(|a| a.to_string()).as_deref(),
            Some("127.0.0.1:4041")
        );

        let mut cmd = <Cli as clap::CommandFactory>::command();
        // Building propagates the global flags (the log level) into the subcommands,
        // as parsing does.
        cmd.build();
        let help = cmd
            .find_subcommand_mut("probe")
            .expect("probe subcommand")
            .render_long_help()
            .to_string();
        for flag in SCOPE_PROBE_FLAGS {
            let name = flag.split('=').next().expect("a name");
            assert!(
                help.contains(&format!("-{name}")),
                "{name} is not in --help"
            );
        }
    }

    #[test]
    fn launch_defaults_to_loopback() {
        let cli = Cli::try_parse_from(["rescope", "launch"]).expect("parses");
        let Command::Launch(l) = cli.command else {
            panic!("launch")
        };
        let app = l.app.into_config().expect("valid");
        assert!(app.listen.ip().is_loopback());
        assert_eq!(app.listen.port(), 4040);
        let cli =
            Cli::try_parse_from(["rescope", "launch", "--app.http.address=:4041"]).expect("parses");
        let Command::Launch(l) = cli.command else {
            panic!("launch")
        };
        assert_eq!(
            l.app.into_config().expect("valid").listen.to_string(),
            "0.0.0.0:4041"
        );
    }
}
