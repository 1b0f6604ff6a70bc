//! Config files checked on this machine, before anything is sent: the
//! gateway's own loader and rules (`pingora_config::load_file`).

use std::path::{Path, PathBuf};

use pingora_config::{Report, v1};
use serde::Deserialize;

/// The marker the gateway writes in place of a secret (`ExportConfig`).
const REDACTED: &str = "<redacted>";

/// What `validate` checks files as.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum DocKind {
    /// The resources file (routes, upstreams, ...).
    Config,
    /// The gateway's bootstrap settings.
    Bootstrap,
}

/// `gateway validate`, to the byte (the same code prints both). True when
/// every file is valid.
pub fn validate(kind: DocKind, files: &[PathBuf]) -> bool {
    let kind = match kind {
        DocKind::Config => pingora_config::check::DocumentKind::Config,
        DocKind::Bootstrap => pingora_config::check::DocumentKind::Bootstrap,
    };
    pingora_config::check::validate_files(kind, files)
}

pub use pingora_config::check::print_report;

/// Loads a config to apply. As with `gateway validate`, except that a secret
/// written `<redacted>` (as `pcfg export` writes them) is not held against
/// its own rules: the gateway keeps the stored value in its place, and
/// refuses the write if it has none.
pub fn load_for_apply(path: &Path) -> Result<v1::Config, Report> {
    let report = match pingora_config::load_file::<v1::Config>(path) {
        Ok(c) => return Ok(c),
        Err(report) => report,
    };
    let src = std::fs::read_to_string(path).map_err(|_| report.clone())?;
    let Ok(tree) = pingora_config_rules::parse_yaml(&src) else { return Err(report) };
    let mut placeholders = Vec::new();
    redacted_paths(&tree.to_json(), String::new(), &mut placeholders);
    if report.violations.iter().all(|v| placeholders.contains(&v.path))
        && let Ok(c) = v1::Config::deserialize(&tree)
    {
        return Ok(c);
    }
    let violations = report.violations.into_iter().filter(|v| !placeholders.contains(&v.path)).collect();
    Err(Report { origin: report.origin, violations })
}

/// The paths (as the rules write them, `ssls[0].key`) of every string that
/// is the redaction marker.
fn redacted_paths(v: &serde_json::Value, path: String, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) if s == REDACTED => out.push(path),
        serde_json::Value::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                redacted_paths(item, format!("{path}[{i}]"), out);
            }
        }
        serde_json::Value::Object(m) => {
            for (k, item) in m {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                redacted_paths(item, p, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redacted_secret_is_accepted_for_apply_but_other_errors_are_not() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("c.yaml");
        let consumer =
            "consumers:\n  - username: app\n    credentials: { jwt_auth: { key: app, secret: \"<redacted>\" } }\n";
        std::fs::write(&path, consumer).expect("write");
        // `<redacted>` is shorter than a JWT secret may be: the loader alone refuses it.
        assert!(pingora_config::load_file::<v1::Config>(&path).is_err());
        let c = load_for_apply(&path).expect("a redacted secret is a placeholder");
        assert_eq!(c.consumers.len(), 1);

        std::fs::write(&path, format!("{consumer}routes:\n  - {{ id: r, uris: [\"/\"], upstream_id: nope }}\n"))
            .expect("write");
        let report = load_for_apply(&path).expect_err("a missing upstream is an error");
        assert_eq!(report.violations.iter().map(|v| v.path.as_str()).collect::<Vec<_>>(), ["routes[0].upstream_id"]);
    }
}
