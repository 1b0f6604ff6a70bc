//! The parts every end-to-end test uses: the real gateway binary on free
//! loopback ports, small real upstream servers, and a client.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1, never handed out twice by this process.
///
/// Not the kernel's `bind(0)`: that draws from the ephemeral range (32768
/// and up) that every outgoing connection also draws from, and two tests
/// running in parallel could each be given a port the other's server then
/// takes (seen once: a TLS test's handshake answered by another test's
/// plain HTTP listener). Ports come instead from 20000-31999, in turn from
/// an offset of this process, skipping any already bound.
pub fn free_port() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let offset = (std::process::id() as usize).wrapping_mul(131) % 12_000;
    for _ in 0..12_000 {
        let port = 20_000 + (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % 12_000;
        if TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
    }
    panic!("no free port in 20000-31999")
}

/// What a test upstream answers. Paths:
/// - `/healthz`: 200, or 503 after `set_healthy(false)`;
/// - `/slow/<ms>`: answers after sleeping that long;
/// - `/status/<code>`: answers with that status;
/// - anything else: 200 with body `<name>` and headers `x-upstream: <name>`,
///   `x-seen-host: <Host>`, `x-seen-xff: <X-Forwarded-For>`, `x-seen-path: <path>`.
pub struct Upstream {
    pub name: String,
    pub addr: SocketAddr,
    healthy: Arc<AtomicBool>,
    stopped: Arc<AtomicBool>,
    /// Requests served, not counting health checks.
    served: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    /// TCP connections accepted, health checks included.
    accepted: Arc<AtomicUsize>,
}

impl Upstream {
    pub fn start(name: &str) -> Upstream {
        Self::start_on(name, TcpListener::bind("127.0.0.1:0").expect("bind an upstream"))
    }

    /// Starts on a given port (to bring a stopped node back).
    pub fn start_at(name: &str, port: u16) -> Upstream {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match TcpListener::bind(("127.0.0.1", port)) {
                Ok(l) => return Self::start_on(name, l),
                Err(e) if Instant::now() > deadline => panic!("rebind {port}: {e}"),
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    fn start_on(name: &str, listener: TcpListener) -> Upstream {
        let addr = listener.local_addr().expect("addr");
        let up = Upstream {
            name: name.to_owned(),
            addr,
            healthy: Arc::new(AtomicBool::new(true)),
            stopped: Arc::new(AtomicBool::new(false)),
            served: Arc::new(AtomicUsize::new(0)),
            in_flight: Arc::new(AtomicUsize::new(0)),
            conns: Arc::new(Mutex::new(Vec::new())),
            accepted: Arc::new(AtomicUsize::new(0)),
        };
        let (name, healthy, stopped, served, in_flight, conns, accepted) = (
            up.name.clone(),
            up.healthy.clone(),
            up.stopped.clone(),
            up.served.clone(),
            up.in_flight.clone(),
            up.conns.clone(),
            up.accepted.clone(),
        );
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                accepted.fetch_add(1, Ordering::SeqCst);
                if let Ok(c) = stream.try_clone() {
                    conns.lock().expect("lock").push(c);
                }
                let (name, healthy, served, in_flight, stopped) =
                    (name.clone(), healthy.clone(), served.clone(), in_flight.clone(), stopped.clone());
                thread::spawn(move || serve(stream, &name, &healthy, &served, &in_flight, &stopped));
            }
        });
        up
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::SeqCst);
    }

    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far (how well the gateway reuses them).
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Stops accepting and closes every open connection (the node is down).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        for c in self.conns.lock().expect("lock").drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(
    stream: TcpStream,
    name: &str,
    healthy: &AtomicBool,
    served: &AtomicUsize,
    in_flight: &AtomicUsize,
    stopped: &AtomicBool,
) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("/").to_owned());
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if stopped.load(Ordering::SeqCst) {
            return;
        }
        let path_only = path.split('?').next().unwrap_or("/");
        let (status, text) = if path_only == "/healthz" {
            if healthy.load(Ordering::SeqCst) { (200, "ok".to_owned()) } else { (503, "unhealthy".to_owned()) }
        } else {
            served.fetch_add(1, Ordering::SeqCst);
            in_flight.fetch_add(1, Ordering::SeqCst);
            let out = if let Some(ms) = path_only.strip_prefix("/slow/") {
                thread::sleep(Duration::from_millis(ms.parse().unwrap_or(0)));
                (200, name.to_owned())
            } else if let Some(code) = path_only.strip_prefix("/status/") {
                (code.parse().unwrap_or(500), name.to_owned())
            } else if path_only == "/headers" {
                // Every request header, one `name: value` per line, sorted.
                let mut lines: Vec<String> = headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                lines.sort();
                (200, lines.join("\n"))
            } else if path_only == "/body" {
                (200, String::from_utf8_lossy(&body).into_owned())
            } else {
                (200, name.to_owned())
            };
            in_flight.fetch_sub(1, Ordering::SeqCst);
            out
        };
        let get = |k: &str| headers.get(k).cloned().unwrap_or_default();
        let resp = format!(
            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\ncontent-type: text/plain\r\nx-upstream: {name}\r\nx-seen-host: {}\r\nx-seen-xff: {}\r\nx-seen-path: {path}\r\nx-seen-method: {method}\r\n\r\n{text}",
            text.len(),
            get("host"),
            get("x-forwarded-for"),
        );
        if writer.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// A running gateway process with its own temp dir and ports.
pub struct Gateway {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// The admin listener's port (management API, metrics).
    pub admin_port: u16,
    pub config: PathBuf,
    log: PathBuf,
}

pub struct Options {
    /// Extra bootstrap YAML appended as is (after `listeners`, `store`).
    pub bootstrap_extra: String,
    /// Extra listeners, YAML list items (`- { name: tls, address: ... }`).
    pub extra_listeners: String,
    /// Wait until this path answers (any status) before returning.
    pub ready_path: String,
    /// The HTTP listener's port (default: a free one).
    pub port: Option<u16>,
    /// Accept h2c (HTTP/2 with prior knowledge) on the HTTP listener.
    pub h2c: bool,
    /// More YAML of the bootstrap's `admin` block, indented by 2 (for
    /// example `"  api_keys: [...]\n"`); its address is always a free port.
    pub admin_extra: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            bootstrap_extra: String::new(),
            extra_listeners: String::new(),
            ready_path: "/__ready".into(),
            port: None,
            h2c: false,
            admin_extra: String::new(),
        }
    }
}

impl Gateway {
    pub fn start(config: &str) -> Gateway {
        Self::start_with(config, Options::default())
    }

    pub fn start_with(config: &str, options: Options) -> Gateway {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = options.port.unwrap_or_else(free_port);
        let admin_port = free_port();
        let config_path = dir.path().join("config.yaml");
        std::fs::write(&config_path, config).expect("write config");
        let bootstrap = format!(
            "threads: 2\nlisteners:\n  - {{ name: http, address: \"127.0.0.1:{port}\", http2: {} }}\n{}store:\n  file: {{ path: {}, watch_debounce: 0.05s }}\nshutdown: {{ graceful_timeout: 5s }}\nadmin:\n  address: \"127.0.0.1:{admin_port}\"\n{}{}",
            options.h2c,
            options.extra_listeners,
            config_path.display(),
            options.admin_extra,
            options.bootstrap_extra
        );
        std::fs::write(dir.path().join("gateway.yaml"), bootstrap).expect("write bootstrap");
        let log = dir.path().join("gateway.log");
        let child = spawn(dir.path(), &log, false);
        let gw = Gateway { child: Some(child), dir, port, admin_port, config: config_path, log };
        gw.wait_ready(&options.ready_path);
        gw
    }

    /// Starts a gateway on a bootstrap of the caller's, `bootstrap(port,
    /// admin_port, dir)`, whose HTTP listener must be on `port` and admin
    /// listener on `admin_port`; `dir/config.yaml` exists (empty).
    pub fn start_bootstrap(bootstrap: impl FnOnce(u16, u16, &Path) -> String) -> Gateway {
        let dir = tempfile::tempdir().expect("temp dir");
        let (port, admin_port) = (free_port(), free_port());
        let config_path = dir.path().join("config.yaml");
        std::fs::write(&config_path, "").expect("write config");
        let text = bootstrap(port, admin_port, dir.path());
        std::fs::write(dir.path().join("gateway.yaml"), text).expect("write bootstrap");
        let log = dir.path().join("gateway.log");
        let child = spawn(dir.path(), &log, false);
        let gw = Gateway { child: Some(child), dir, port, admin_port, config: config_path, log };
        gw.wait_ready("/__ready");
        gw.wait_admin();
        gw
    }

    /// Starts a second gateway process with `run --upgrade` on this one's
    /// bootstrap, pid file and upgrade socket, and returns once it waits on
    /// the upgrade socket for the listeners: send this one SIGQUIT within 5
    /// seconds (Pingora's wait). The new process reads its files from this
    /// one's directory, so keep `self` alive as long as the new one runs.
    pub fn start_upgrade(&self) -> Gateway {
        let sock = self.dir.path().join("upgrade.sock");
        let _ = std::fs::remove_file(&sock);
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("gateway.log");
        let child = spawn(self.dir.path(), &log, true);
        let gw = Gateway {
            child: Some(child),
            dir,
            port: self.port,
            admin_port: self.admin_port,
            config: self.config.clone(),
            log,
        };
        gw.wait_for("the new process to open the upgrade socket", Duration::from_secs(20), || sock.exists());
        gw
    }

    fn wait_ready(&self, path: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if http_get_raw(self.port, path, "localhost").is_some() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("the gateway did not start:\n{}", self.log());
    }

    /// The admin listener's base URL (`http://127.0.0.1:<admin port>`).
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    /// Waits until the admin listener accepts connections.
    pub fn wait_admin(&self) {
        let port = self.admin_port;
        self.wait_for("the admin listener", Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the process and starts a new one on the same directory, files
    /// and ports.
    pub fn restart(&mut self) {
        self.kill();
        self.child = Some(spawn(self.dir.path(), &self.log, false));
        self.wait_ready("/__ready");
    }

    /// Replaces the config file atomically (as a deployment tool would).
    pub fn write_config(&self, config: &str) {
        let tmp = self.dir.path().join("config.yaml.tmp");
        std::fs::write(&tmp, config).expect("write");
        std::fs::rename(&tmp, &self.config).expect("rename");
    }

    /// Waits until `check` holds, or panics with the gateway's log.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if check() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("timed out waiting for {what}:\n{}", self.log());
    }

    /// Sends a signal to the gateway process.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status().expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit and returns its status code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return status.code().or(Some(-1));
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

/// The gateway binary the tests run: cargo's build of this test's profile,
/// or `E2E_GATEWAY_BIN` (the suite against another build, such as the
/// profile-guided production binary of `make production`).
pub fn gateway_bin() -> PathBuf {
    std::env::var_os("E2E_GATEWAY_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_gateway")), PathBuf::from)
}

/// Runs the gateway binary on `dir`'s bootstrap, pid file and upgrade socket.
fn spawn(dir: &Path, log: &Path, upgrade: bool) -> Child {
    let log_file = std::fs::File::create(log).expect("log file");
    let mut cmd = Command::new(gateway_bin());
    cmd.arg("run")
        .arg("--bootstrap")
        .arg(dir.join("gateway.yaml"))
        .arg("--pid-file")
        .arg(dir.join("gateway.pid"))
        .arg("--upgrade-sock")
        .arg(dir.join("upgrade.sock"));
    if upgrade {
        cmd.arg("--upgrade");
    }
    cmd.env("RUST_LOG", "info")
        .stdout(Stdio::from(log_file.try_clone().expect("clone")))
        .stderr(Stdio::from(log_file))
        .spawn()
        .expect("the gateway starts")
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One raw HTTP/1.1 GET (no client pooling): status and body, or `None` when
/// nothing answers.
pub fn http_get_raw(port: u16, path: &str, host: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Some((status, body))
}

/// A config with one route, `/*`, to `up`.
pub fn everything_to(up: &Upstream) -> String {
    format!(
        "routes:\n  - {{ id: r, uris: [\"/*\"], upstream_id: u }}\nupstreams:\n  - {{ id: u, nodes: [{{ host: 127.0.0.1, port: {} }}] }}\n",
        up.port()
    )
}

/// A pooled HTTP client (HTTP/1.1 keep-alive).
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().expect("client")
}

/// The response of a request with a Host header.
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    pub fn header(&self, name: &str) -> String {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
    }
}

pub fn send(c: &reqwest::blocking::Client, method: &str, url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = c.request(reqwest::Method::from_bytes(method.as_bytes()).expect("method"), url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    Reply { status, headers, body: resp.text().unwrap_or_default() }
}

pub fn get(c: &reqwest::blocking::Client, url: &str, headers: &[(&str, &str)]) -> Reply {
    send(c, "GET", url, headers)
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

/// A test certificate authority and the leaf certificates it signs.
pub struct Pki {
    /// The CA certificate, PEM: what clients trust.
    pub ca: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    pub fn new() -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "e2e test CA");
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
        let key = rcgen::KeyPair::generate().expect("CA key");
        let ca = params.self_signed(&key).expect("CA certificate").pem();
        Pki { ca, issuer: rcgen::Issuer::new(params, key) }
    }

    /// A server certificate for `names` whose subject common name is `cn`
    /// (so a client can tell which one it was served): (cert PEM, key PEM).
    pub fn leaf(&self, cn: &str, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(names).expect("leaf params");
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf certificate");
        (cert.pem(), key.serialize_pem())
    }
}

/// `text` as a YAML literal block (`|` then the lines) whose lines are
/// indented by `indent` spaces.
pub fn yaml_block(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let lines: Vec<String> = text.lines().map(|l| format!("{pad}{l}\n")).collect();
    format!("|\n{}", lines.concat())
}

/// A TLS listener for `Options.extra_listeners`, serving `default` (cert,
/// key) when no `ssls` entry matches; `extra` is more YAML of the `tls`
/// block, indented by 6 (for example `"      min_version: TLS1_3\n"`).
pub fn tls_listener(name: &str, port: u16, default: &(String, String), extra: &str) -> String {
    format!(
        "  - name: {name}\n    address: \"127.0.0.1:{port}\"\n    tls:\n      default_certificate:\n        cert: {}        key: {}{extra}",
        yaml_block(&default.0, 10),
        yaml_block(&default.1, 10)
    )
}

/// Waits until something accepts TCP connections on `port`.
pub fn wait_listening(gw: &Gateway, port: u16) {
    gw.wait_for(&format!("port {port} to accept"), Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}
