//! The etcd store with real etcd servers (installed by `scripts/etcd.sh` when
//! missing) and several gateway processes sharing one etcd: writes through
//! one node served by the others, optimistic concurrency across nodes,
//! invalid documents put directly into etcd, an etcd outage under traffic,
//! the disk cache, the node registry and its events; and the push sinks.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

use pingora_config::v1;
use pingora_config::v1::config_service_client::ConfigServiceClient;
use pingora_config::v1::event_service_client::EventServiceClient;
use pingora_config::v1::resource_service_client::ResourceServiceClient;
use pingora_config::v1::status_service_client::StatusServiceClient;
use serde_json::json;
use tonic::Code;
use tonic::transport::Channel;

use crate::harness::{Gateway, Options, Upstream, free_port, http_get_raw};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Installs etcd once per test run (`scripts/etcd.sh install`).
fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let status = Command::new(repo().join("scripts/etcd.sh")).arg("install").status().expect("scripts/etcd.sh");
        assert!(status.success(), "scripts/etcd.sh install failed");
    });
}

/// A one-member etcd on free loopback ports with its data in a temp dir.
pub struct Etcd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub port: u16,
    peer: u16,
}

impl Etcd {
    pub fn start() -> Etcd {
        install();
        let mut e =
            Etcd { child: None, dir: tempfile::tempdir().expect("temp dir"), port: free_port(), peer: free_port() };
        e.resume();
        e
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on the same data and ports; waits until healthy.
    pub fn resume(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("etcd.log")).expect("log");
        let child = Command::new(repo().join("scripts/etcd.sh"))
            .args(["run", &self.dir.path().join("data").display().to_string()])
            .args([self.port.to_string(), self.peer.to_string()])
            .stdout(Stdio::from(log.try_clone().expect("clone")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("etcd starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let c = reqwest::blocking::Client::builder().timeout(Duration::from_secs(1)).build().expect("client");
        while Instant::now() < deadline {
            let health = c.get(format!("{}/health", self.endpoint())).send().and_then(|r| r.text());
            if health.is_ok_and(|t| t.contains("true")) {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("etcd did not start: {}", std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default());
    }

    /// Kills it (SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn put(&self, key: &str, value: &str) {
        let (endpoint, key, value) = (self.endpoint(), key.to_owned(), value.to_owned());
        rt().block_on(async move {
            let mut c = etcd_client::Client::connect([endpoint], None).await.expect("connect to etcd");
            c.put(key, value, None).await.expect("put");
        });
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// A gateway node on `etcd` under `prefix`, with short timeouts.
fn node(etcd: &Etcd, prefix: &str, id: &str, extra: &str) -> Gateway {
    let endpoint = etcd.endpoint();
    Gateway::start_bootstrap(|port, admin_port, dir| {
        format!(
            "node_id: {id}\nthreads: 1\nlisteners:\n  - {{ name: http, address: \"127.0.0.1:{port}\" }}\nadmin:\n  address: \"127.0.0.1:{admin_port}\"\nshutdown: {{ graceful_timeout: 1s }}\nstore:\n  etcd:\n    endpoints: [\"{endpoint}\"]\n    prefix: {prefix}\n    cache_dir: {}\n    node_ttl: 2s\n    dial_timeout: 0.5s\n    request_timeout: 2s\n{extra}",
            dir.join("cache").display()
        )
    })
}

async fn channel(gw: &Gateway) -> Channel {
    Channel::from_shared(gw.admin_url()).expect("url").connect().await.expect("connect to the admin listener")
}

fn from_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("a valid resource")
}

fn upstream(id: &str, port: u16) -> v1::Upstream {
    from_json(json!({ "id": id, "nodes": [{ "host": "127.0.0.1", "port": port }] }))
}

fn route(id: &str, uri: &str, upstream_id: &str) -> v1::Route {
    from_json(json!({ "id": id, "uris": [uri], "upstream_id": upstream_id }))
}

fn serves(gw: &Gateway, path: &str) -> Option<String> {
    http_get_raw(gw.port, path, "localhost").filter(|r| r.0 == 200).map(|r| r.1)
}

fn wait_serving(gw: &Gateway, path: &str, body: &str, timeout: Duration) {
    gw.wait_for(&format!("{path} to be served by port {}", gw.port), timeout, || {
        serves(gw, path).as_deref() == Some(body)
    });
}

async fn status(gw: &Gateway) -> v1::NodeStatus {
    let mut st = StatusServiceClient::new(channel(gw).await);
    st.get_status(v1::GetStatusRequest {}).await.expect("status").into_inner()
}

fn wait_status(gw: &Gateway, what: &str, timeout: Duration, check: impl Fn(&v1::NodeStatus) -> bool) {
    let rt = rt();
    gw.wait_for(what, timeout, || check(&rt.block_on(status(gw))));
}

#[test]
fn three_nodes_share_one_etcd_writes_watch_concurrency_registry_and_invalid_documents() {
    let etcd = Etcd::start();
    let up = Upstream::start("origin");
    let a = node(&etcd, "/t1", "node-a", "");
    let b = node(&etcd, "/t1", "node-b", "");
    let mut c = node(&etcd, "/t1", "node-c", "");
    let rt = rt();
    rt.block_on(async {
        // Watch on B, from now on.
        let mut ev = EventServiceClient::new(channel(&b).await);
        let mut stream = ev.watch(v1::WatchRequest::default()).await.expect("watch").into_inner();
        let seen: Arc<Mutex<Vec<v1::Event>>> = Arc::default();
        let s = seen.clone();
        tokio::spawn(async move {
            while let Ok(Some(e)) = stream.message().await {
                s.lock().expect("lock").push(e);
            }
        });

        // A write through A is served by B and C.
        let mut ra = ResourceServiceClient::new(channel(&a).await);
        ra.create_upstream(v1::CreateUpstreamRequest { upstream: Some(upstream("u", up.port())) })
            .await
            .expect("create upstream through A");
        let created = ra
            .create_route(v1::CreateRouteRequest { route: Some(route("r", "/hello", "u")) })
            .await
            .expect("create route through A")
            .into_inner();
        let rev1 = created.meta.expect("meta").revision;
        // Through A itself at once (the write returns once applied).
        assert_eq!(serves(&a, "/hello").as_deref(), Some("origin"));
        for gw in [&b, &c] {
            wait_serving(gw, "/hello", "origin", Duration::from_secs(5));
        }

        // Watch on B saw A's write, reported by B.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let found = seen.lock().expect("lock").iter().any(|e| {
                matches!(&e.payload, Some(v1::event::Payload::Resource(r)) if r.id == "r") && e.revision == rev1
            });
            if found {
                break;
            }
            assert!(Instant::now() < deadline, "B's watch did not see the write made through A");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // A stale revision through B after a write through A: ABORTED.
        let mut rb = ResourceServiceClient::new(channel(&b).await);
        let updated = ra
            .update_route(v1::UpdateRouteRequest { route: Some(route("r", "/hello2", "u")), expected_revision: rev1 })
            .await
            .expect("update through A")
            .into_inner();
        assert!(updated.meta.expect("meta").revision > rev1);
        let stale =
            rb.update_route(v1::UpdateRouteRequest { route: Some(route("r", "/stale", "u")), expected_revision: rev1 });
        assert_eq!(stale.await.expect_err("stale").code(), Code::Aborted);
        for gw in [&a, &b, &c] {
            wait_serving(gw, "/hello2", "origin", Duration::from_secs(5));
        }

        // ListNodes: the three nodes, converged on the same config.
        let mut st = StatusServiceClient::new(channel(&c).await);
        let hash = status(&a).await.config_hash;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let nodes = st.list_nodes(v1::ListNodesRequest {}).await.expect("list nodes").into_inner().nodes;
            let ids: Vec<&str> = nodes.iter().map(|n| n.node_id.as_str()).collect();
            if ids == ["node-a", "node-b", "node-c"] && nodes.iter().all(|n| n.config_hash == hash) {
                break;
            }
            assert!(Instant::now() < deadline, "ListNodes: {nodes:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });

    // Documents put directly into etcd that fail validation are ignored,
    // visible in status and metrics; a valid one is applied.
    etcd.put("/t1/routes/bad", r#"{"id":"bad","uris":["/bad"],"upstream_id":"missing"}"#);
    etcd.put("/t1/routes/garbage", "{not json");
    etcd.put("/t1/routes/good", r#"{"id":"good","uris":["/good"],"upstream_id":"u"}"#);
    for gw in [&a, &b, &c] {
        wait_serving(gw, "/good", "origin", Duration::from_secs(5));
        assert_eq!(http_get_raw(gw.port, "/bad", "localhost").map(|r| r.0), Some(404));
        wait_status(gw, "the rejected documents in status", Duration::from_secs(5), |s| {
            s.last_error.contains("routes/garbage") && s.last_error.contains("routes/good").eq(&false)
        });
        let metrics = crate::harness::get(&crate::harness::client(), &format!("{}/metrics", gw.admin_url()), &[]).body;
        assert!(metrics.contains("pingora_config_etcd_rejected_total"), "{metrics}");
    }
    let st = rt.block_on(status(&b));
    assert!(st.store.as_ref().is_some_and(|s| s.connected && s.kind == v1::store_status::Kind::Etcd as i32));

    // A node that stops renewing its lease is reported LEFT; restarted, JOINED.
    rt.block_on(async {
        let mut ev = EventServiceClient::new(channel(&a).await);
        let kinds = vec![v1::event::Kind::Node as i32];
        let mut stream = ev.watch(v1::WatchRequest { kinds, ..Default::default() }).await.expect("watch").into_inner();
        // The next event about node-c (a busy machine may delay another
        // node's lease renewal: those events are not the point here).
        async fn next_about_c(stream: &mut tonic::Streaming<v1::Event>) -> i32 {
            loop {
                let e = tokio::time::timeout(Duration::from_secs(10), stream.message()).await;
                let e = e.expect("a node event in time").expect("stream").expect("event");
                match e.payload {
                    Some(v1::event::Payload::Node(n)) if n.node_id == "node-c" => return n.r#type,
                    Some(v1::event::Payload::Node(_)) => {}
                    other => panic!("{other:?}"),
                }
            }
        }
        c.kill();
        assert_eq!(next_about_c(&mut stream).await, v1::node_event::Type::Left as i32);
        c.restart();
        assert_eq!(next_about_c(&mut stream).await, v1::node_event::Type::Joined as i32);
    });
}

#[test]
fn an_etcd_outage_keeps_traffic_flowing_fails_writes_clearly_and_nodes_converge_after() {
    let mut etcd = Etcd::start();
    let up = Upstream::start("origin");
    let a = node(&etcd, "/t2", "node-a", "");
    let b = node(&etcd, "/t2", "node-b", "");
    let mut d = node(&etcd, "/t2", "node-d", "");
    let rt = rt();
    rt.block_on(async {
        let mut ra = ResourceServiceClient::new(channel(&a).await);
        ra.create_upstream(v1::CreateUpstreamRequest { upstream: Some(upstream("u", up.port())) }).await.expect("u");
        ra.create_route(v1::CreateRouteRequest { route: Some(route("r", "/hello", "u")) }).await.expect("r");
    });
    for gw in [&a, &b, &d] {
        wait_serving(gw, "/hello", "origin", Duration::from_secs(5));
    }
    // D has cached the config (written 200 ms after a change, at most a
    // second after the cache write before); it stops before the outage.
    let cache = d.dir.path().join("cache");
    d.wait_for("D's disk cache to hold route r", Duration::from_secs(5), || {
        let files = std::fs::read_dir(&cache).into_iter().flatten().flatten();
        files.filter_map(|f| std::fs::read_to_string(f.path()).ok()).any(|text| text.contains("/hello"))
    });
    d.kill();

    // Traffic on A and B for the whole outage.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let loops: Vec<_> = [a.port, b.port]
        .into_iter()
        .map(|port| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match http_get_raw(port, "/hello", "localhost") {
                        Some((200, _)) => ok.fetch_add(1, Ordering::SeqCst),
                        _ => failed.fetch_add(1, Ordering::SeqCst),
                    };
                    thread::sleep(Duration::from_millis(5));
                }
            })
        })
        .collect();

    etcd.stop();
    let outage = Instant::now();
    for gw in [&a, &b] {
        wait_status(gw, "connected = false", Duration::from_secs(5), |s| {
            s.store.as_ref().is_some_and(|s| !s.connected && !s.last_error.is_empty())
        });
    }
    // Writes fail clearly.
    let err = rt.block_on(async {
        let mut ra = ResourceServiceClient::new(channel(&a).await);
        ra.create_route(v1::CreateRouteRequest { route: Some(route("during", "/during", "u")) }).await
    });
    let err = err.expect_err("a write with etcd down");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("etcd"), "{}", err.message());

    // A node started while etcd is down serves from its disk cache.
    d.restart();
    assert_eq!(serves(&d, "/hello").as_deref(), Some("origin"), "{}", d.log());
    let st = rt.block_on(status(&d));
    assert!(st.store.as_ref().is_some_and(|s| !s.connected), "{st:?}");

    let remaining = Duration::from_secs(10).saturating_sub(outage.elapsed());
    thread::sleep(remaining);
    etcd.resume();
    for gw in [&a, &b, &d] {
        wait_status(gw, "connected again", Duration::from_secs(15), |s| s.store.as_ref().is_some_and(|s| s.connected));
    }
    rt.block_on(async {
        let mut rb = ResourceServiceClient::new(channel(&b).await);
        rb.create_route(v1::CreateRouteRequest { route: Some(route("after", "/after", "u")) })
            .await
            .expect("a write once etcd is back");
    });
    for gw in [&a, &b, &d] {
        wait_serving(gw, "/after", "origin", Duration::from_secs(10));
    }
    stop.store(true, Ordering::SeqCst);
    loops.into_iter().for_each(|l| l.join().expect("loop"));
    assert_eq!(failed.load(Ordering::SeqCst), 0, "{} ok", ok.load(Ordering::SeqCst));
    assert!(ok.load(Ordering::SeqCst) > 100);
}

/// A webhook receiver that answers 503 to its first `fail` requests, then
/// 200; records the event ids of every request.
struct Webhook {
    port: u16,
    ids: Arc<Mutex<Vec<String>>>,
    requests: Arc<AtomicUsize>,
}

impl Webhook {
    fn start(fail: usize) -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let ids: Arc<Mutex<Vec<String>>> = Arc::default();
        let requests = Arc::new(AtomicUsize::new(0));
        let (i, n) = (ids.clone(), requests.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (i, n) = (i.clone(), n.clone());
                thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                    let mut w = stream;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let mut len = 0;
                        loop {
                            let mut h = String::new();
                            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                                return;
                            }
                            let h = h.trim_end().to_ascii_lowercase();
                            if h.is_empty() {
                                break;
                            }
                            if let Some(v) = h.strip_prefix("content-length:") {
                                len = v.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut body = vec![0; len];
                        if reader.read_exact(&mut body).is_err() {
                            return;
                        }
                        let nth = n.fetch_add(1, Ordering::SeqCst);
                        let status = if nth < fail { "503 Unavailable" } else { "200 OK" };
                        if nth >= fail {
                            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                            assert_eq!(v["sink"], "hook");
                            i.lock().expect("lock").push(v["event"]["id"].as_str().unwrap_or_default().to_owned());
                        }
                        let _ = write!(w, "HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                    }
                });
            }
        });
        Webhook { port, ids, requests }
    }
}

#[derive(Default, Clone)]
struct Receiver {
    ids: Arc<Mutex<Vec<String>>>,
}

#[tonic::async_trait]
impl v1::event_sink_service_server::EventSinkService for Receiver {
    async fn deliver(
        &self,
        req: tonic::Request<v1::DeliverEventRequest>,
    ) -> Result<tonic::Response<pbjson_types::Empty>, tonic::Status> {
        let q = req.into_inner();
        assert_eq!(q.sink, "grpc");
        self.ids.lock().expect("lock").push(q.event.map(|e| e.id).unwrap_or_default());
        Ok(tonic::Response::new(pbjson_types::Empty {}))
    }
}

#[test]
fn webhook_and_grpc_sinks_deliver_every_event_at_least_once_through_failures() {
    let hook = Webhook::start(3);
    let receiver = Receiver::default();
    let grpc_port = free_port();
    let r = receiver.clone();
    thread::spawn(move || {
        rt().block_on(async move {
            tonic::transport::Server::builder()
                .add_service(v1::event_sink_service_server::EventSinkServiceServer::new(r))
                .serve(([127, 0, 0, 1], grpc_port).into())
                .await
                .expect("the gRPC receiver");
        })
    });
    let up = Upstream::start("origin");
    let sinks = format!(
        "event_sinks:\n  - {{ name: hook, kinds: [RESOURCE], webhook: {{ url: \"http://127.0.0.1:{}/events\", timeout: 1s }}, max_retries: 10, initial_backoff: 0.05s, max_backoff: 0.2s, queue_size: 100 }}\n  - {{ name: grpc, grpc: {{ url: \"http://127.0.0.1:{grpc_port}\" }}, initial_backoff: 0.05s, max_backoff: 0.2s, max_retries: 20 }}\n",
        hook.port
    );
    let config = format!("upstreams:\n  - {{ id: u, nodes: [{{ host: 127.0.0.1, port: {} }}] }}\n", up.port());
    let gw = Gateway::start_with(&config, Options { bootstrap_extra: sinks, ..Default::default() });
    gw.wait_admin();
    let rt = rt();
    let mut expected = Vec::new();
    rt.block_on(async {
        let mut res = ResourceServiceClient::new(channel(&gw).await);
        for i in 0..5 {
            let e = res
                .create_route(v1::CreateRouteRequest { route: Some(route(&format!("r{i}"), &format!("/r{i}"), "u")) })
                .await
                .expect("create")
                .into_inner();
            expected.push(format!("{}/route/r{i}", e.meta.expect("meta").revision));
        }
    });
    gw.wait_for("the webhook to receive every event", Duration::from_secs(10), || {
        let ids = hook.ids.lock().expect("lock");
        expected.iter().all(|e| ids.contains(e))
    });
    assert!(hook.requests.load(Ordering::SeqCst) >= 8);
    gw.wait_for("the gRPC sink to receive every event", Duration::from_secs(10), || {
        let ids = receiver.ids.lock().expect("lock");
        expected.iter().all(|e| ids.contains(e))
    });
    // The receiver records an event before the gateway reads its answer.
    wait_status(&gw, "the sinks' status", Duration::from_secs(5), |st| {
        let hook = st.sinks.iter().find(|s| s.name == "hook");
        let grpc = st.sinks.iter().find(|s| s.name == "grpc");
        hook.is_some_and(|h| (h.delivered, h.failed_attempts, h.dropped, h.queued) == (5, 3, 0, 0))
            && hook.is_some_and(|h| h.last_error.is_empty())
            && grpc.is_some_and(|g| g.delivered == 5)
    });
    let metrics = crate::harness::get(&crate::harness::client(), &format!("{}/metrics", gw.admin_url()), &[]).body;
    assert!(metrics.contains("pingora_config_sink_deliveries_total{outcome=\"retried\",sink=\"hook\"} 3"), "{metrics}");
}

/// A TCP proxy to etcd that can cut a node off (every connection closed,
/// new ones dropped) and let it back.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl Proxy {
    fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let cut = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<std::net::TcpStream>>> = Arc::default();
        let (c, k) = (cut.clone(), conns.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(client) = stream else { continue };
                if c.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", target)) else { continue };
                let mut held = k.lock().expect("lock");
                for s in [&client, &server] {
                    if let Ok(s) = s.try_clone() {
                        held.push(s);
                    }
                }
                let pipe = |mut from: std::net::TcpStream, mut to: std::net::TcpStream| {
                    thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                };
                if let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) {
                    pipe(client, s2);
                    pipe(server, c2);
                }
            }
        });
        Proxy { port, cut, conns }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in self.conns.lock().expect("lock").drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

#[test]
fn a_node_cut_off_while_etcd_compacts_lists_again_and_catches_up() {
    let etcd = Etcd::start();
    let up = Upstream::start("origin");
    let proxy = Proxy::start(etcd.port);
    let a = node(&etcd, "/t3", "node-a", "");
    let via_proxy = Etcd { child: None, dir: tempfile::tempdir().expect("dir"), port: proxy.port, peer: 0 };
    let d = node(&via_proxy, "/t3", "node-d", "");
    let rt = rt();
    let mut ra = rt.block_on(async { ResourceServiceClient::new(channel(&a).await) });
    rt.block_on(async {
        ra.create_upstream(v1::CreateUpstreamRequest { upstream: Some(upstream("u", up.port())) }).await.expect("u");
        ra.create_route(v1::CreateRouteRequest { route: Some(route("r1", "/one", "u")) }).await.expect("r1");
    });
    wait_serving(&d, "/one", "origin", Duration::from_secs(5));

    proxy.cut();
    let revision = rt.block_on(async {
        ra.create_route(v1::CreateRouteRequest { route: Some(route("r2", "/two", "u")) }).await.expect("r2");
        let r1 = ra.get_route(v1::GetRouteRequest { id: "r1".into() }).await.expect("r1").into_inner();
        let d = v1::DeleteRouteRequest { id: "r1".into(), expected_revision: r1.meta.expect("meta").revision };
        ra.delete_route(d).await.expect("delete r1").into_inner().revision
    });
    let endpoint = etcd.endpoint();
    rt.block_on(async move {
        let mut c = etcd_client::Client::connect([endpoint], None).await.expect("connect to etcd");
        c.compact(revision, None).await.expect("compact");
    });
    assert_eq!(serves(&d, "/one").as_deref(), Some("origin"), "cut off, D keeps its config");
    proxy.restore();
    wait_serving(&d, "/two", "origin", Duration::from_secs(15));
    d.wait_for("/one to be gone from D", Duration::from_secs(5), || {
        http_get_raw(d.port, "/one", "localhost").map(|r| r.0) == Some(404)
    });
    assert!(d.log().contains("compacted"), "{}", d.log());
    let (sa, sd) = rt.block_on(async { (status(&a).await, status(&d).await) });
    assert_eq!(sa.config_hash, sd.config_hash);
}

/// Concurrent writes through one node (committed in batches, one etcd
/// transaction and revision each): every valid one lands with its own
/// revision and event, an invalid and a stale one fail alone, and the
/// other node converges on the same config.
#[test]
fn concurrent_writes_through_one_node_share_transactions_get_an_event_each_and_bad_ones_fail_alone() {
    let etcd = Etcd::start();
    let up = Upstream::start("origin");
    let a = node(&etcd, "/t5", "node-a", "");
    let b = node(&etcd, "/t5", "node-b", "");
    let rt = rt();
    rt.block_on(async {
        let mut ra = ResourceServiceClient::new(channel(&a).await);
        ra.create_upstream(v1::CreateUpstreamRequest { upstream: Some(upstream("u", up.port())) })
            .await
            .expect("create upstream");
        let mut revisions = Vec::new();
        for i in 0..20 {
            let r = route(&format!("r{i}"), &format!("/r{i}-0"), "u");
            let e = ra.create_route(v1::CreateRouteRequest { route: Some(r) }).await.expect("create").into_inner();
            revisions.push(e.meta.expect("meta").revision);
        }
        let start = revisions[19] + 1;
        let mut tasks = Vec::new();
        for (i, rev) in revisions.iter().copied().enumerate() {
            let mut c = ra.clone();
            tasks.push(tokio::spawn(async move {
                let r = route(&format!("r{i}"), &format!("/r{i}-1"), "u");
                c.update_route(v1::UpdateRouteRequest { route: Some(r), expected_revision: rev }).await
            }));
            if i == 7 {
                let mut c = ra.clone();
                tasks.push(tokio::spawn(async move {
                    let r = route("r-bad", "/bad", "missing");
                    c.create_route(v1::CreateRouteRequest { route: Some(r) }).await
                }));
            }
            if i == 12 {
                // Stale: r3 was read at its creation revision, then updated above.
                let mut c = ra.clone();
                let rev3 = revisions[3];
                tasks.push(tokio::spawn(async move {
                    let r = route("r3", "/stale", "u");
                    c.update_route(v1::UpdateRouteRequest { route: Some(r), expected_revision: rev3 }).await
                }));
            }
        }
        let mut ok = Vec::new();
        let mut codes = Vec::new();
        for t in tasks {
            match t.await.expect("task") {
                Ok(e) => {
                    let e = e.into_inner();
                    ok.push((e.meta.expect("meta").revision, e.route.expect("route").id));
                }
                Err(s) => codes.push(s.code()),
            }
        }
        codes.sort_by_key(|c| *c as i32);
        assert_eq!(codes, [Code::FailedPrecondition, Code::Aborted]);
        assert_eq!(ok.len(), 20);
        // The writes queued while one committed went in one transaction
        // each batch: they share its revision.
        let mut revs: Vec<i64> = ok.iter().map(|(r, _)| *r).collect();
        revs.sort();
        revs.dedup();
        assert!(revs.len() < ok.len(), "a revision per write, no batch shared one: {ok:?}");

        // B replays one event per write, at the write's revision.
        let mut ev = EventServiceClient::new(channel(&b).await);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut stream = ev
                .watch(v1::WatchRequest { start_revision: start, ..Default::default() })
                .await
                .expect("watch")
                .into_inner();
            let mut got = Vec::new();
            while let Ok(Ok(Some(e))) = tokio::time::timeout(Duration::from_millis(300), stream.message()).await {
                if let Some(v1::event::Payload::Resource(r)) = e.payload {
                    got.push((e.revision, r.id));
                }
            }
            got.sort();
            let mut want = ok.clone();
            want.sort();
            if got == want {
                break;
            }
            assert!(Instant::now() < deadline, "B's events {got:?}, writes {want:?}");
        }
        assert_eq!(status(&a).await.config_hash, status(&b).await.config_hash);
    });
    for gw in [&a, &b] {
        wait_serving(gw, "/r19-1", "origin", Duration::from_secs(5));
        assert_eq!(http_get_raw(gw.port, "/r3-1", "localhost").map(|r| r.0), Some(200));
    }
}

/// Writes queued together share a transaction only up to what etcd takes
/// in one request (`--max-request-bytes`, 1.5 MiB by default): six
/// 400 KB routes written at once all land, in more than one transaction.
/// One write bigger than that gets FAILED_PRECONDITION naming the limit.
#[test]
fn big_writes_queued_together_are_split_to_fit_etcd_and_one_too_big_is_refused_as_such() {
    let etcd = Etcd::start();
    let a = node(&etcd, "/t8", "node-a", "");
    let b = node(&etcd, "/t8", "node-b", "");
    let body = "x".repeat(400 * 1024);
    let rt = rt();
    rt.block_on(async {
        let ra = ResourceServiceClient::new(channel(&a).await);
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let mut c = ra.clone();
                let route: v1::Route = from_json(json!({
                    "id": format!("big{i}"), "uris": [format!("/big{i}")],
                    "plugins": { "mock": { "status": 200, "content_type": "text/plain", "body": body } },
                }));
                tokio::spawn(async move { c.create_route(v1::CreateRouteRequest { route: Some(route) }).await })
            })
            .collect();
        let mut revisions = Vec::new();
        for t in tasks {
            let e = t.await.expect("task").expect("a big write queued with others").into_inner();
            revisions.push(e.meta.expect("meta").revision);
        }
        revisions.sort();
        revisions.dedup();
        assert!(revisions.len() >= 2, "2.4 MB of values in one transaction: {revisions:?}");

        // One write bigger than etcd takes: refused as such, not as a
        // store outage to retry, and nothing of it stored.
        let mut config = ConfigServiceClient::new(channel(&a).await);
        let export = config.export_config(v1::ExportConfigRequest::default()).await.expect("export").into_inner();
        let mut c = export.config.expect("config");
        let huge = "y".repeat(800 * 1024);
        for i in 0..2 {
            c.routes.push(from_json(json!({
                "id": format!("huge{i}"), "uris": [format!("/huge{i}")],
                "plugins": { "mock": { "status": 200, "body": huge } },
            })));
        }
        let req = v1::ApplyConfigRequest { config: Some(c), expected_revision: export.revision, dry_run: false };
        let err = config.apply_config(req).await.expect_err("1.6 MiB in one write");
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        assert!(err.message().contains("--max-request-bytes"), "{}", err.message());
        let mut ra = ra.clone();
        let gone = ra.get_route(v1::GetRouteRequest { id: "huge0".into() }).await.expect_err("not stored");
        assert_eq!(gone.code(), Code::NotFound);
    });
    for gw in [&a, &b] {
        for i in 0..6 {
            wait_serving(gw, &format!("/big{i}"), &body, Duration::from_secs(10));
        }
    }
}
