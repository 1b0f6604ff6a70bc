//! The real `pcfg` binary against a real gateway process with its admin
//! listener (the `gateway` binary of this workspace, started on free
//! loopback ports with a generated bootstrap, as gateway/tests/e2e does).
//!
//! The gateway binary is looked up next to `pcfg` (same target dir), or at
//! `PCFG_TEST_GATEWAY`; when absent it is built with `cargo build -p
//! pingora-config-gateway --bin gateway` first.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const EDITOR_KEY: &str = "editor-key-0123456789abcdef";
const VIEWER_KEY: &str = "viewer-key-0123456789abcdef";

const BASE: &str = "\
routes:
  - { id: api, uris: [\"/api/*\"], upstream_id: orders, labels: { team: payments } }
  - { id: hello, uris: [\"/hello\"], plugins: { mock: { status: 200, body: \"hi\" } } }
upstreams:
  - { id: orders, nodes: [{ host: 127.0.0.1, port: 1 }] }
consumers:
  - username: app
    credentials: { jwt_auth: { key: app, secret: \"0123456789abcdef0123\" } }
";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn gateway_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("PCFG_TEST_GATEWAY") {
        return p.into();
    }
    let pcfg = Path::new(env!("CARGO_BIN_EXE_pcfg"));
    let gateway = pcfg.with_file_name("gateway");
    if !gateway.exists() {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "-p", "pingora-config-gateway", "--bin", "gateway"])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the gateway failed");
    }
    gateway
}

/// A gateway process with the admin listener and two API keys.
struct Gateway {
    child: Option<Child>,
    dir: tempfile::TempDir,
    admin: u16,
}

impl Gateway {
    fn start(config: &str) -> Gateway {
        Self::start_with(config, "")
    }

    /// With more YAML in the bootstrap's `admin` block (indented by 2).
    fn start_with(config: &str, admin_extra: &str) -> Gateway {
        let dir = tempfile::tempdir().expect("temp dir");
        let (port, admin) = (free_port(), free_port());
        let config_path = dir.path().join("config.yaml");
        std::fs::write(&config_path, config).expect("write config");
        let bootstrap = format!(
            "threads: 1\nlisteners:\n  - {{ name: http, address: \"127.0.0.1:{port}\" }}\nstore:\n  file: {{ path: {}, watch_debounce: 0.05s }}\nshutdown: {{ graceful_timeout: 1s }}\nadmin:\n  address: \"127.0.0.1:{admin}\"\n  api_keys:\n    - {{ name: ci, key: {EDITOR_KEY}, role: EDITOR }}\n    - {{ name: dash, key: {VIEWER_KEY}, role: VIEWER }}\n{admin_extra}",
            config_path.display()
        );
        std::fs::write(dir.path().join("gateway.yaml"), bootstrap).expect("write bootstrap");
        let mut gw = Gateway { child: None, dir, admin };
        gw.spawn();
        gw
    }

    fn spawn(&mut self) {
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(d.join("gateway.log")).expect("log");
        let child = Command::new(gateway_binary())
            .arg("run")
            .arg("--bootstrap")
            .arg(d.join("gateway.yaml"))
            .arg("--pid-file")
            .arg(d.join("gateway.pid"))
            .arg("--upgrade-sock")
            .arg(d.join("upgrade.sock"))
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("the gateway starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.admin)).is_err() {
            assert!(Instant::now() < deadline, "no admin listener:\n{}", self.log());
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.admin)
    }

    /// `pcfg` with this gateway's address and the editor key in the
    /// environment, a HOME without a pcfg config file, and no colour.
    fn pcfg(&self, args: &[&str]) -> Command {
        let mut cmd = pcfg_offline(args);
        cmd.env("PCFG_ADDR", self.addr()).env("PCFG_API_KEY", EDITOR_KEY);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        run(self.pcfg(args))
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.display().to_string()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

fn pcfg_offline(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pcfg"));
    cmd.args(args)
        .env_remove("PCFG_ADDR")
        .env_remove("PCFG_API_KEY")
        .env("HOME", std::env::temp_dir().join("pcfg-test-home-without-config"))
        .env_remove("XDG_CONFIG_HOME")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

#[derive(Debug)]
struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(mut cmd: Command) -> Output {
    let out = cmd.output().expect("pcfg runs");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn list_and_get_print_a_table_yaml_or_json_in_the_config_file_shape() {
    let gw = Gateway::start(BASE);
    let out = gw.run(&["list", "routes"]);
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("ID ") && lines[0].ends_with("REVISION"), "{}", out.stdout);
    assert!(lines[1].starts_with("api ") && lines[1].contains("upstream/orders"), "{}", out.stdout);
    assert!(lines[2].starts_with("hello ") && lines[2].contains("mock"), "{}", out.stdout);

    let out = gw.run(&["list", "routes", "--label", "team=payments", "-o", "yaml"]);
    assert_eq!(
        out.stdout,
        "routes:\n  - id: api\n    labels:\n      team: payments\n    uris:\n      - /api/*\n    upstream_id: orders\n"
    );

    let out = gw.run(&["get", "upstream", "orders", "-o", "json"]);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(json, serde_json::json!({ "id": "orders", "nodes": [{ "host": "127.0.0.1", "port": 1 }] }));

    // Secrets come back as the server sends them: redacted.
    let out = gw.run(&["get", "consumer", "app", "-o", "yaml"]);
    assert!(out.stdout.contains("secret: \"<redacted>\""), "{}", out.stdout);

    // Paging is transparent.
    let out = gw.run(&["list", "routes", "--page-size", "1", "-o", "json"]);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(json["routes"].as_array().map(Vec::len), Some(2));

    let out = gw.run(&["get", "route", "nope"]);
    assert_eq!((out.code, out.stderr.trim()), (3, "pcfg: not found: there is no route `nope`"));
}

#[test]
fn apply_shows_the_diff_on_a_dry_run_then_applies_it_with_yes() {
    let gw = Gateway::start(BASE);
    let new = BASE
        .replace("port: 1 }", "port: 2, weight: 5 }")
        .replace("upstreams:", "  - { id: extra, uris: [\"/extra\"], upstream_id: orders }\nupstreams:");
    let file = gw.file("new.yaml", &new);

    let out = gw.run(&["apply", "-f", &file, "--dry-run"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        "+ route extra\n~ upstream orders\n    nodes[0].port: 1 -> 2\n    nodes[0].weight: (unset) -> 5\n\n1 to add, 1 to change, 0 to remove.\nDry run: nothing applied (revision 1).\n"
    );
    assert_eq!(gw.run(&["get", "route", "extra"]).code, 3, "a dry run writes nothing");

    // Without a terminal, applying needs --yes.
    let out = gw.run(&["apply", "-f", &file]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("--yes"), "{}", out.stderr);

    let out = gw.run(&["apply", "-f", &file, "--yes"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.ends_with("Applied: revision 2.\n"), "{}", out.stdout);
    assert_eq!(gw.run(&["get", "route", "extra"]).code, 0);

    // Colour only when asked (the output is not a terminal here).
    let out = gw.run(&["apply", "-f", &gw.file("base.yaml", BASE), "--dry-run", "--color", "always"]);
    assert!(out.stdout.starts_with("\x1b[31m- route extra\x1b[0m"), "{:?}", out.stdout);
}

#[test]
fn a_file_that_breaks_a_rule_is_refused_before_anything_is_sent_with_the_gateways_errors() {
    let gw = Gateway::start(BASE);
    let file = gw.file("bad.yaml", "routes:\n  - { id: r, uris: [\"/r\"], upstream_id: order }\n");
    let out = gw.run(&["apply", "-f", &file, "--yes"]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        format!(
            "{file}:2:41: routes[0].upstream_id: upstream `order` does not exist in `upstreams` [ref]\n{file}: 1 error\n"
        )
    );
}

#[test]
fn export_applied_back_is_a_no_op_secrets_included() {
    let gw = Gateway::start(BASE);
    let out = gw.run(&["export"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.starts_with("# pcfg export of "), "{}", out.stdout);
    assert!(out.stdout.contains("\"<redacted>\""), "the JWT secret is redacted: {}", out.stdout);
    let file = gw.file("export.yaml", &out.stdout);
    let out = gw.run(&["apply", "-f", &file, "--dry-run"]);
    assert_eq!((out.code, out.stdout.lines().next()), (0, Some("No changes.")), "{out:?}");
    // Applying it for real writes nothing either.
    let out = gw.run(&["apply", "-f", &file, "--yes"]);
    assert_eq!(out.code, 0, "{out:?}");
    let status = gw.run(&["status", "-o", "json"]);
    let json: serde_json::Value = serde_json::from_str(&status.stdout).expect("json");
    assert_eq!(json["applied_revision"], serde_json::json!("1"), "{}", status.stdout);

    let json = gw.run(&["export", "-o", "json"]);
    let file = gw.file("export.json", &json.stdout);
    let out = gw.run(&["apply", "-f", &file, "--dry-run"]);
    assert_eq!((out.code, out.stdout.lines().next()), (0, Some("No changes.")), "{out:?}");
}

#[test]
fn deleting_a_referenced_upstream_is_refused_and_names_the_referrer() {
    let gw = Gateway::start(BASE);
    let out = gw.run(&["delete", "upstream", "orders"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.starts_with("pcfg: refused: "), "{}", out.stderr);
    assert!(out.stderr.contains("route `api` (routes[0].upstream_id)"), "{}", out.stderr);

    let out = gw.run(&["delete", "route", "api"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "route api deleted (revision 2)\n"), "{out:?}");
    assert_eq!(gw.run(&["delete", "upstream", "orders"]).code, 0);
}

#[test]
fn a_stale_revision_is_a_conflict_with_exit_code_2() {
    let gw = Gateway::start(BASE);
    let file = gw.file("new.yaml", &BASE.replace("port: 1 }", "port: 2 }"));
    assert_eq!(gw.run(&["apply", "-f", &file, "--yes"]).code, 0);

    // The route is at revision 1, the store at 2: either write from
    // revision 1 is stale.
    let out = gw.run(&["delete", "upstream", "orders", "--revision", "1"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.starts_with("pcfg: conflict: "), "{}", out.stderr);
    let out = gw.run(&["apply", "-f", &gw.file("base.yaml", BASE), "--revision", "1", "--yes"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("changed since revision 1"), "{}", out.stderr);
}

#[test]
fn a_missing_or_unknown_key_exits_4_and_a_viewer_key_cannot_write() {
    let gw = Gateway::start(BASE);
    let out = run({
        let mut c = gw.pcfg(&["list", "routes"]);
        c.env_remove("PCFG_API_KEY");
        c
    });
    assert_eq!(out.code, 4, "{out:?}");
    assert!(out.stderr.starts_with("pcfg: authentication failed"), "{}", out.stderr);
    assert_eq!(gw.run(&["list", "routes", "--api-key", "not-a-key-0123456789"]).code, 4);

    let file = gw.file("new.yaml", &BASE.replace("port: 1 }", "port: 2 }"));
    let viewer = |args: &[&str]| gw.run(&[args, &["--api-key", VIEWER_KEY]].concat());
    assert_eq!(viewer(&["apply", "-f", &file, "--dry-run"]).code, 0, "a viewer may look at the diff");
    let out = viewer(&["apply", "-f", &file, "--yes"]);
    assert_eq!(out.code, 4, "{out:?}");
    assert!(out.stderr.starts_with("pcfg: permission denied"), "{}", out.stderr);
}

#[test]
fn an_unreachable_gateway_exits_5() {
    let out = run({
        let mut c = pcfg_offline(&["status", "--connect-timeout", "2s"]);
        c.env("PCFG_ADDR", format!("127.0.0.1:{}", free_port()));
        c
    });
    assert_eq!(out.code, 5, "{out:?}");
    assert!(out.stderr.starts_with("pcfg: cannot connect to 127.0.0.1:"), "{}", out.stderr);
}

/// A `pcfg watch` process, killed when dropped (a failed test included).
struct Watcher(Child);

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lines of a running `pcfg watch`, read on a thread.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

fn next_line(rx: &mpsc::Receiver<String>, what: &str) -> String {
    rx.recv_timeout(Duration::from_secs(15)).unwrap_or_else(|_| panic!("no event line for {what}"))
}

#[test]
fn watch_prints_a_change_made_by_another_client_and_resumes_after_the_gateway_restarts() {
    let mut gw = Gateway::start(BASE);
    let mut watch = Watcher(
        gw.pcfg(&["watch", "--events", "resource"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("watch"),
    );
    let rx = lines_of(&mut watch.0);
    // Let the watch subscribe before the change.
    thread::sleep(Duration::from_millis(700));

    let file = gw.file("new.yaml", &BASE.replace("port: 1 }", "port: 2 }"));
    assert_eq!(gw.run(&["apply", "-f", &file, "--yes"]).code, 0);
    let line = next_line(&rx, "the apply");
    assert!(line.contains(" rev=2 "), "{line}");
    assert!(line.ends_with("upstream orders updated"), "{line}");

    // `-o json`: one proto-JSON event per line, replayed from a revision.
    let mut replay = Watcher(
        gw.pcfg(&["watch", "--from-revision", "2", "-o", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("pcfg watch starts"),
    );
    let json_lines = lines_of(&mut replay.0);
    let first: serde_json::Value = serde_json::from_str(&next_line(&json_lines, "the replay")).expect("a JSON line");
    assert_eq!((&first["revision"], &first["resource"]["id"]), (&serde_json::json!("2"), &serde_json::json!("orders")));
    drop(replay);

    // The gateway restarts; the watch reconnects by itself and prints the
    // next change.
    gw.kill();
    gw.spawn();
    assert_eq!(gw.run(&["delete", "route", "hello"]).code, 0);
    let line = next_line(&rx, "the deletion after the restart");
    assert!(line.contains(" rev=3 ") && line.ends_with("route hello deleted"), "{line}");
}

#[test]
fn validate_prints_exactly_what_gateway_validate_prints_offline() {
    let dir = tempfile::tempdir().expect("tmp");
    let good = dir.path().join("good.yaml");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&good, BASE).expect("write");
    std::fs::write(
        &bad,
        "routes:\n  - id: a\n    uris: [\"/a\"]\n    upsteam_id: u\n    timeouts: { connect: 500ms }\nupstreams:\n  - { id: u, nodes: [{ host: h, port: 0 }] }\n",
    )
    .expect("write");
    for args in [vec![good.clone()], vec![bad.clone()], vec![good.clone(), bad.clone()]] {
        let args: Vec<&str> = args.iter().filter_map(|p| p.to_str()).collect();
        let pcfg = run(pcfg_offline(&[&["validate"], args.as_slice()].concat()));
        let gateway = run({
            let mut c = Command::new(gateway_binary());
            c.arg("validate").args(&args);
            c
        });
        assert_eq!((pcfg.code, &pcfg.stdout, &pcfg.stderr), (gateway.code, &gateway.stdout, &gateway.stderr));
    }
    let out = run(pcfg_offline(&["validate", bad.to_str().unwrap_or_default()]));
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("did you mean `upstream_id`?"), "{}", out.stderr);
    assert!(out.stderr.ends_with(": 4 errors\n"), "{}", out.stderr);
}

#[test]
fn usage_errors_exit_1_help_exits_0_and_completions_are_generated() {
    let out = run(pcfg_offline(&["get", "rooute", "x"]));
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("unknown kind `rooute`"), "{}", out.stderr);
    let help = run(pcfg_offline(&["--help"]));
    assert_eq!(help.code, 0);
    assert!(help.stdout.contains("Exit codes:") && help.stdout.contains("PCFG_API_KEY"), "{}", help.stdout);
    let bash = run(pcfg_offline(&["completions", "bash"]));
    assert_eq!(bash.code, 0);
    assert!(bash.stdout.contains("_pcfg()"), "{}", bash.stdout);
}

/// `pcfg` on a pseudo-terminal (util-linux `script`, which sends pcfg's
/// standard error to the same terminal), answering `answer` at the prompt
/// after running `meanwhile`.
fn on_a_terminal(gw: &Gateway, args: &str, answer: &str, meanwhile: &dyn Fn()) -> Option<Output> {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` to give pcfg a terminal");
        return None;
    }
    let line = format!("{} {args}", env!("CARGO_BIN_EXE_pcfg"));
    // The environment `pcfg` gets in the other tests, colour allowed.
    let env = gw.pcfg(&[]);
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"]);
    for (k, v) in env.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.env_remove("NO_COLOR").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("script runs");
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        // Give pcfg the time to print the diff and ask.
        thread::sleep(Duration::from_millis(1500));
        meanwhile();
        let _ = stdin.write_all(answer.as_bytes());
    }
    let out = child.wait_with_output().expect("script ends");
    Some(Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

#[test]
fn on_a_terminal_apply_asks_first_and_colours_the_diff() {
    let gw = Gateway::start(BASE);
    let file = gw.file("new.yaml", &BASE.replace("port: 1 }", "port: 2 }"));
    let Some(out) = on_a_terminal(&gw, &format!("apply -f {file}"), "n\n", &|| ()) else { return };
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("\x1b[33m~ upstream orders\x1b[0m"), "{:?}", out.stdout);
    assert!(out.stdout.contains("Apply these changes to 127.0.0.1:"), "{:?}", out.stdout);
    assert!(out.stdout.contains("Not applied."), "{:?}", out.stdout);
    assert_eq!(gw.run(&["apply", "-f", &file, "--dry-run"]).stdout.lines().next(), Some("~ upstream orders"));

    let Some(out) = on_a_terminal(&gw, &format!("apply -f {file}"), "y\n", &|| ()) else { return };
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("Applied: revision 2."), "{:?}", out.stdout);
}

/// A test CA and a certificate it signed for `names`: (CA PEM, cert PEM,
/// key PEM).
fn pki(names: &[&str]) -> (String, String, String) {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "pcfg test CA");
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let ca_pem = ca.self_signed(&ca_key).expect("CA").pem();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut leaf = rcgen::CertificateParams::new(names).expect("leaf params");
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate().expect("leaf key");
    let cert = leaf.signed_by(&key, &issuer).expect("leaf").pem();
    (ca_pem, cert, key.serialize_pem())
}

/// `text` as a YAML literal block whose lines are indented by `indent`.
fn block(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    format!("|\n{}", text.lines().map(|l| format!("{pad}{l}\n")).collect::<String>())
}

#[test]
fn over_tls_pcfg_checks_the_admin_certificate_against_the_given_ca() {
    let (ca, cert, key) = pki(&["localhost"]);
    let extra = format!("  tls:\n    certificate:\n      cert: {}      key: {}", block(&cert, 8), block(&key, 8));
    let gw = Gateway::start_with(BASE, &extra);
    let ca_file = gw.file("ca.pem", &ca);
    let port = gw.admin;

    let https = format!("https://localhost:{port}");
    let out = gw.run(&["list", "upstreams", "--addr", &https, "--ca-cert", &ca_file]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("orders"), "{}", out.stdout);

    // host:port with a CA means TLS; the name checked can differ from the address.
    let addr = format!("127.0.0.1:{port}");
    let args = ["status", "--addr", &addr, "--ca-cert", &ca_file, "--tls-server-name", "localhost"];
    assert_eq!(gw.run(&args).code, 0);

    // A certificate the client does not trust: no connection (exit 5).
    let out = gw.run(&["list", "routes", "--addr", &https]);
    assert_eq!(out.code, 5, "{out:?}");
    assert!(out.stderr.starts_with("pcfg: cannot connect to https://localhost:"), "{}", out.stderr);
}

#[test]
fn export_applied_back_keeps_a_redacted_certificate_key_that_the_loader_alone_would_refuse() {
    let (_, cert, key) = pki(&["a.example.com"]);
    let config = format!(
        "{BASE}ssls:\n  - id: a\n    snis: [a.example.com]\n    cert: {}    key: {}",
        block(&cert, 6),
        block(&key, 6)
    );
    let gw = Gateway::start(&config);
    let out = gw.run(&["export"]);
    assert!(out.stdout.contains("    key: \"<redacted>\"\n"), "{}", out.stdout);
    assert!(out.stdout.contains("    cert: |\n      -----BEGIN CERTIFICATE-----\n"), "{}", out.stdout);
    let file = gw.file("export.yaml", &out.stdout);
    // `<redacted>` is not PEM: `validate` says so, as the gateway would.
    assert_eq!(run(pcfg_offline(&["validate", &file])).code, 1);
    let out = gw.run(&["apply", "-f", &file, "--dry-run"]);
    assert_eq!((out.code, out.stdout.lines().next()), (0, Some("No changes.")), "{out:?}");
}

#[test]
fn a_change_made_while_apply_waits_for_confirmation_makes_it_fail_cleanly_with_exit_code_2() {
    let gw = Gateway::start(BASE);
    let file = gw.file("new.yaml", &BASE.replace("port: 1 }", "port: 2 }"));
    let other_client = || assert_eq!(gw.run(&["delete", "route", "hello"]).code, 0);
    let Some(out) = on_a_terminal(&gw, &format!("apply -f {file}"), "y\n", &other_client) else { return };
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stdout.contains("pcfg: conflict: the config changed since revision 1 (now 2)"), "{:?}", out.stdout);
    assert!(out.stdout.contains("the diff above is out of date"), "{:?}", out.stdout);
    // Nothing of the reviewed diff was written over the other change.
    let out = gw.run(&["get", "upstream", "orders", "-o", "json"]);
    assert!(out.stdout.contains("\"port\": 1"), "{}", out.stdout);
}
