//! The corpus keeps the loader and the JSON Schema honest: every document
//! in `proto/testdata/` is loaded, and checked by an independent JSON Schema
//! validator against the generated schema.

mod common;

use std::collections::BTreeSet;

use common::{Case, Kind, corpus, schema_validator};
use pingora_config::{Report, load_str, v1};

fn load(case: &Case) -> Result<(), Report> {
    let origin = case.path.display().to_string();
    match case.kind {
        Kind::Config => load_str::<v1::Config>(&case.text, &origin).map(|_| ()),
        Kind::Bootstrap => load_str::<v1::Bootstrap>(&case.text, &origin).map(|_| ()),
    }
}

#[test]
fn the_corpus_is_large_enough_and_covers_both_documents() {
    let cases = corpus();
    assert!(cases.len() >= 40, "the corpus has {} documents, want at least 40", cases.len());
    for kind in [Kind::Config, Kind::Bootstrap] {
        for valid in [true, false] {
            assert!(
                cases.iter().any(|c| c.kind == kind && c.valid == valid),
                "no {} {kind:?} document",
                if valid { "valid" } else { "invalid" }
            );
        }
    }
    for case in cases.iter().filter(|c| !c.valid) {
        assert!(!case.errors.is_empty(), "{}: an invalid document must list its `# error:` lines", case.path.display());
    }
}

#[test]
fn the_loader_accepts_exactly_the_valid_documents_and_reports_the_expected_errors() {
    let mut failures = Vec::new();
    for case in corpus() {
        let name = case.path.display();
        match (case.valid, load(&case)) {
            (true, Ok(())) => {}
            (true, Err(report)) => failures.push(format!("{name}: valid document rejected:\n{report}")),
            (false, Ok(())) => failures.push(format!("{name}: invalid document accepted")),
            (false, Err(report)) => {
                let got: BTreeSet<(String, String)> = report
                    .violations
                    .iter()
                    .map(|v| {
                        (if v.path.is_empty() { "(document)".to_owned() } else { v.path.clone() }, v.rule.to_owned())
                    })
                    .collect();
                if got != case.errors {
                    failures.push(format!("{name}: expected {:?}\n  got {:?}\n{report}", case.errors, got));
                }
                if let Some(v) = report.violations.iter().find(|v| v.pos.is_none()) {
                    failures.push(format!("{name}: a violation from a file has no line/column: {v}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} corpus failures:\n\n{}", failures.len(), failures.join("\n\n"));
}

#[test]
fn an_independent_json_schema_validator_agrees_with_the_loader() {
    let config = schema_validator(Kind::Config);
    let bootstrap = schema_validator(Kind::Bootstrap);
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in corpus() {
        let name = case.path.display();
        let validator = if case.kind == Kind::Config { config } else { bootstrap };
        let tree = match pingora_config_rules::parse_yaml(&case.text) {
            Ok(t) => t,
            Err(_) => {
                // Not YAML at all: nothing to give a JSON Schema validator.
                if case.schema_cannot_express.is_none() {
                    failures.push(format!("{name}: a YAML syntax error must be marked `# schema: cannot-express`"));
                }
                continue;
            }
        };
        checked += 1;
        let instance = tree.to_json();
        let schema_ok = validator.is_valid(&instance);
        match (case.valid, case.schema_cannot_express.is_some(), schema_ok) {
            (true, _, true) | (false, false, false) | (false, true, true) => {}
            (true, _, false) => {
                let errs: Vec<String> = validator.iter_errors(&instance).take(5).map(|e| format!("  {} at {}", e, e.instance_path())).collect();
                failures.push(format!("{name}: the loader accepts it, the schema rejects it:\n{}", errs.join("\n")));
            }
            (false, false, true) => failures.push(format!("{name}: the loader rejects it, the schema accepts it (mark it `# schema: cannot-express <why>` only if JSON Schema truly cannot say it)")),
            (false, true, false) => {
                let errs: Vec<String> = validator.iter_errors(&instance).take(5).map(|e| format!("  {} at {}", e, e.instance_path())).collect();
                failures.push(format!("{name}: marked cannot-express, but the schema rejects it:\n{}", errs.join("\n")));
            }
        }
        if !case.valid
            && case.schema_cannot_express.is_some()
            && case.errors.iter().all(|(_, r)| common::schema_expresses(r))
        {
            failures
                .push(format!("{name}: marked cannot-express but every expected rule is one JSON Schema expresses"));
        }
    }
    assert!(checked > 0);
    assert!(failures.is_empty(), "{} disagreements:\n\n{}", failures.len(), failures.join("\n\n"));
}

#[test]
fn every_valid_document_passes_again_as_a_decoded_message() {
    // The gRPC and etcd paths validate decoded messages: the same rules must
    // hold after a round trip through the typed values.
    let mut failures = Vec::new();
    for case in corpus().into_iter().filter(|c| c.valid) {
        let origin = case.path.display().to_string();
        let result = match case.kind {
            Kind::Config => load_str::<v1::Config>(&case.text, &origin)
                .and_then(|(c, _)| pingora_config::validate_message(&c, "decoded")),
            Kind::Bootstrap => load_str::<v1::Bootstrap>(&case.text, &origin)
                .and_then(|(c, _)| pingora_config::validate_message(&c, "decoded")),
        };
        if let Err(report) = result {
            failures.push(format!("{origin}:\n{report}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
