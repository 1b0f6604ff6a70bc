//! The pingora-config gateway binary.
//!
//! `gateway validate FILE...` checks config (or bootstrap) files with the
//! same rules the running gateway applies, prints every error with its
//! file, line, column and YAML path, and exits 0 when all are valid, 1
//! otherwise.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use pingora_config::v1;

#[derive(Parser)]
#[command(name = "gateway", version, about = "The pingora-config API gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check config files; print "ok" or every error, exit 0 or 1.
    Validate {
        /// Which document the files are.
        #[arg(long, value_enum, default_value_t = Kind::Config)]
        kind: Kind,
        /// The files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    /// The resources file (routes, upstreams, ...).
    Config,
    /// The gateway's bootstrap settings.
    Bootstrap,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Validate { kind, files } => validate(kind, &files),
    }
}

fn validate(kind: Kind, files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for file in files {
        let outcome = match kind {
            Kind::Config => pingora_config::load_file::<v1::Config>(file).map(|c| summary(&c)),
            Kind::Bootstrap => {
                pingora_config::load_file::<v1::Bootstrap>(file).map(|b| format!("{} listener(s)", b.listeners.len()))
            }
        };
        match outcome {
            Ok(what) => println!("{}: ok ({what})", file.display()),
            Err(report) => {
                failed = true;
                eprintln!("{report}");
                let n = report.violations.len();
                eprintln!("{}: {n} error{}", file.display(), if n == 1 { "" } else { "s" });
            }
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

fn summary(c: &v1::Config) -> String {
    let counts = [
        (c.routes.len(), "route"),
        (c.services.len(), "service"),
        (c.upstreams.len(), "upstream"),
        (c.consumers.len(), "consumer"),
        (c.ssls.len(), "ssl"),
        (c.global_rules.len(), "global rule"),
        (c.plugin_configs.len(), "plugin config"),
    ];
    counts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}{}", if *n == 1 { "" } else { "s" }))
        .collect::<Vec<_>>()
        .join(", ")
}
