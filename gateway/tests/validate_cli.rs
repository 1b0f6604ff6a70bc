//! `gateway validate`: what a user sees for a good and a bad config file.

use std::path::Path;
use std::process::Command;

fn gateway(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway")).args(args).output().expect("the gateway binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.display().to_string()
}

#[test]
fn a_valid_config_prints_ok_and_exits_0() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/full.yaml");
    let (code, stdout, _) = gateway(&["validate", &example.display().to_string()]);
    assert_eq!(code, 0);
    assert!(stdout.contains(": ok (2 routes, 1 upstream, 1 consumer)"), "{stdout}");
}

#[test]
fn an_invalid_config_prints_every_error_with_file_line_column_path_and_rule_and_exits_1() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = write(
        dir.path(),
        "config.yaml",
        "routes:\n  - id: api\n    uris: [\"/api/*\"]\n    upsteam_id: web\n  - id: web\n    uris: [\"/web\"]\n    upstream_id: nope\n",
    );
    let (code, stdout, stderr) = gateway(&["validate", &file]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!(
            "{file}:4:5: routes[0].upsteam_id: unknown field `upsteam_id`; did you mean `upstream_id`? [unknown_field]"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{file}:7:18: routes[1].upstream_id: upstream `nope` does not exist in `upstreams` [ref]"
        )),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("{file}: 3 errors")), "{stderr}");
}

#[test]
fn secrets_are_never_echoed_in_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = write(
        dir.path(),
        "config.yaml",
        "consumers:\n  - username: bob\n    credentials:\n      key_auth: { key: hunter2 }\n",
    );
    let (code, _, stderr) = gateway(&["validate", &file]);
    assert_eq!(code, 1);
    assert!(stderr.contains("consumers[0].credentials.key_auth.key"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn a_bootstrap_file_is_checked_with_its_own_schema() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = write(
        dir.path(),
        "gateway.yaml",
        "listeners:\n  - { name: http, address: \"0.0.0.0:99999\" }\nstore: { file: { path: config.yaml } }\n",
    );
    let (code, _, stderr) = gateway(&["validate", "--kind", "bootstrap", &file]);
    assert_eq!(code, 1);
    assert!(stderr.contains("listeners[0].address"), "{stderr}");
}

#[test]
fn a_missing_file_is_an_error_that_names_it() {
    let (code, _, stderr) = gateway(&["validate", "/nonexistent/config.yaml"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("/nonexistent/config.yaml: (document): cannot read the file"), "{stderr}");
}
