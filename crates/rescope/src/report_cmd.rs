//! `rescope report …`: reads files, calls `rescope-report`, prints results.

use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use rescope_report::codec::{self, DecodeLimits, Encoding, Format};
use rescope_report::summary::Summary;
use rescope_report::validate::{self, PluginCheck, Severity, ValidateOptions};

use crate::cli::{ConvertArgs, OutputFormat, ReportCommand, ValidateArgs};

pub fn run(cmd: ReportCommand) -> Result<ExitCode> {
    match cmd {
        ReportCommand::Summary { input, json } => summary(&input, json),
        ReportCommand::Convert(args) => convert(&args),
        ReportCommand::Validate(args) => validate_cmd(&args),
    }
}

fn read_input(path: &Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading standard input")?;
    } else {
        bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    }
    Ok(bytes)
}

fn name(path: &Path) -> String {
    if path.as_os_str() == "-" {
        "standard input".to_string()
    } else {
        path.display().to_string()
    }
}

fn decode(path: &Path) -> Result<(rescope_report::Report, Encoding)> {
    let bytes = read_input(path)?;
    codec::decode_with(&bytes, DecodeLimits::default())
        .with_context(|| format!("{} is not a valid report", name(path)))
}

fn summary(input: &Path, json: bool) -> Result<ExitCode> {
    let (report, encoding) = decode(input)?;
    let summary = Summary::of(&report);
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &summary)?;
        writeln!(out)?;
    } else {
        writeln!(out, "{} ({encoding}):", name(input))?;
        write!(out, "{summary}")?;
    }
    Ok(ExitCode::SUCCESS)
}

fn convert(args: &ConvertArgs) -> Result<ExitCode> {
    let (report, _) = decode(&args.input)?;
    let format = match args.to {
        OutputFormat::Json => Format::Json,
        OutputFormat::Msgpack => Format::Msgpack,
    };
    let mut bytes = if format == Format::Json && args.pretty {
        let mut s = codec::to_json_pretty(&report);
        s.push('\n');
        s.into_bytes()
    } else {
        codec::encode(
            &report,
            Encoding {
                format,
                gzip: false,
            },
        )
    };
    if args.gzip {
        bytes = codec::gzip(&bytes);
    }
    match &args.output {
        Some(path) => {
            std::fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?
        }
        None => {
            let stdout = std::io::stdout();
            if (format == Format::Msgpack || args.gzip) && stdout.is_terminal() {
                bail!(
                    "refusing to write binary output to a terminal: use --output FILE or a redirect"
                );
            }
            stdout.lock().write_all(&bytes)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn validate_cmd(args: &ValidateArgs) -> Result<ExitCode> {
    let bytes = read_input(&args.input)?;
    let who = name(&args.input);
    let report = match codec::decode_with(&bytes, DecodeLimits::default()) {
        Ok((report, _)) => report,
        Err(e) => {
            println!("{who}: error: {e}");
            println!("{who}: 1 error, 0 warnings");
            return Ok(ExitCode::from(1));
        }
    };
    let plugin = if args.plugin || args.plugin_id.is_some() {
        let specs = codec::plugin_specs_as_sent(&bytes, DecodeLimits::default())?;
        Some(PluginCheck {
            specs,
            expected_id: args.plugin_id.clone(),
        })
    } else {
        None
    };
    let problems = validate::validate(&report, &ValidateOptions { plugin });
    for p in &problems {
        println!("{who}: {p}");
    }
    let errors = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    let warnings = problems.len() - errors;
    println!(
        "{who}: {errors} error{}, {warnings} warning{}",
        if errors == 1 { "" } else { "s" },
        if warnings == 1 { "" } else { "s" }
    );
    let failed = errors > 0 || (args.deny_warnings && warnings > 0);
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
