//! The shared corpus (`proto/testdata/`) and the generated JSON Schemas.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Which document a corpus file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Config,
    Bootstrap,
}

impl Kind {
    pub fn dir(self) -> &'static str {
        match self {
            Kind::Config => "config",
            Kind::Bootstrap => "bootstrap",
        }
    }
}

/// One corpus document and what its header says about it.
#[derive(Debug)]
pub struct Case {
    pub path: PathBuf,
    pub kind: Kind,
    pub valid: bool,
    pub text: String,
    /// Expected (path, rule) pairs, `(document)` for the empty path.
    pub errors: BTreeSet<(String, String)>,
    /// Why JSON Schema cannot see the violation, when it cannot.
    pub schema_cannot_express: Option<String>,
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the crate sits in the repository").to_path_buf()
}

pub fn corpus() -> Vec<Case> {
    let mut cases = Vec::new();
    for kind in [Kind::Config, Kind::Bootstrap] {
        for valid in [true, false] {
            let dir = repo_root().join("proto/testdata").join(kind.dir()).join(if valid { "valid" } else { "invalid" });
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            let mut paths: Vec<PathBuf> =
                entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "yaml")).collect();
            paths.sort();
            for path in paths {
                let text = std::fs::read_to_string(&path).expect("corpus files are readable");
                let mut errors = BTreeSet::new();
                let mut schema_cannot_express = None;
                for line in text.lines().take_while(|l| l.starts_with('#')) {
                    if let Some(rest) = line.strip_prefix("# error: ") {
                        let (p, rule) = rest
                            .trim()
                            .rsplit_once(' ')
                            .unwrap_or_else(|| panic!("{}: bad error line `{line}`", path.display()));
                        errors.insert((p.trim().to_owned(), rule.to_owned()));
                    } else if let Some(rest) = line.strip_prefix("# schema: cannot-express") {
                        schema_cannot_express = Some(rest.trim().to_owned());
                    }
                }
                cases.push(Case { path, kind, valid, text, errors, schema_cannot_express });
            }
        }
    }
    cases
}

/// The generated JSON Schema of a document kind, compiled by an independent
/// validator (the `jsonschema` crate, draft 2020-12, formats checked).
pub fn schema_validator(kind: Kind) -> &'static jsonschema::Validator {
    static CONFIG: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    static BOOTSTRAP: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    let cell = match kind {
        Kind::Config => &CONFIG,
        Kind::Bootstrap => &BOOTSTRAP,
    };
    cell.get_or_init(|| compile_schema(kind))
}

fn compile_schema(kind: Kind) -> jsonschema::Validator {
    let path = repo_root().join("schema").join(format!("{}.schema.json", kind.dir()));
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("schema exists")).expect("schema is JSON");
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the generated schema compiles")
}

/// The rules JSON Schema can express; violations of the others are only
/// found by the loader.
pub fn schema_expresses(rule: &str) -> bool {
    !matches!(
        rule,
        "ref"
            | "unique_by"
            | "compare"
            | "duration_gte"
            | "duration_lte"
            | "duration_range"
            | "syntax"
            | "decode"
            | "io"
    )
}
