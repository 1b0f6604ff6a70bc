//! The `validate` command's output, shared by `gateway validate` and
//! `pcfg validate` so that both print the same bytes.

use std::path::{Path, PathBuf};

use crate::{Report, load_file, v1};

/// What a file is checked as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocumentKind {
    /// The resources (routes, upstreams, ...).
    Config,
    /// The gateway's bootstrap settings.
    Bootstrap,
}

/// Checks every file: `FILE: ok (summary)` on standard output, or every
/// error then `FILE: N errors` on standard error. True when all are valid.
pub fn validate_files(kind: DocumentKind, files: &[PathBuf]) -> bool {
    let mut ok = true;
    for file in files {
        let outcome = match kind {
            DocumentKind::Config => load_file::<v1::Config>(file).map(|c| summary(&c)),
            DocumentKind::Bootstrap => {
                load_file::<v1::Bootstrap>(file).map(|b| format!("{} listener(s)", b.listeners.len()))
            }
        };
        match outcome {
            Ok(what) => println!("{}: ok ({what})", file.display()),
            Err(report) => {
                ok = false;
                print_report(&report, file);
            }
        }
    }
    ok
}

/// A rejected file: every violation, then `FILE: N errors`.
pub fn print_report(report: &Report, file: &Path) {
    eprintln!("{report}");
    let n = report.violations.len();
    eprintln!("{}: {n} error{}", file.display(), if n == 1 { "" } else { "s" });
}

/// What a config holds, for example `2 routes, 1 upstream`.
pub fn summary(c: &v1::Config) -> String {
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
