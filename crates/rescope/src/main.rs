//! The `rescope` command: parses arguments and hands over to the libraries.

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod report_cmd;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Report(cmd) => report_cmd::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rescope: {e:#}");
            ExitCode::from(2)
        }
    }
}
