//! Command-line definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Rescope: a live map of every host, container, process and connection, compatible
/// with Weave Scope's probes, plugins and API.
#[derive(Debug, Parser)]
#[command(name = "rescope", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect, check and convert report files (Scope's wire format: JSON or msgpack,
    /// optionally gzip-compressed; detected from the content).
    #[command(subcommand)]
    Report(ReportCommand),
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
