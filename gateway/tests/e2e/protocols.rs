//! What the gateway speaks to its upstreams: WebSocket upgrades passed
//! through, HTTPS and gRPC (h2c) upstreams, and the keepalive pool.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tungstenite::Message;

use crate::harness::{
    Gateway, Options, Pki, Upstream, client, free_port, get, tls_listener, wait_listening, yaml_block,
};

/// A route for `uri` to one node, with more upstream YAML (`extra`,
/// indented by 4). The harness's readiness probe matches no route, so the
/// node sees only the test's requests.
fn proxy_config(uri: &str, port: u16, extra: &str) -> String {
    format!(
        "routes:\n  - {{ id: r, uris: [\"{uri}\"], upstream_id: u }}\nupstreams:\n  - id: u\n    retries: 0\n    nodes: [{{ host: 127.0.0.1, port: {port} }}]\n{extra}"
    )
}

/// A gateway used as an upstream: it echoes each request back as JSON (the
/// mock plugin), on its HTTP listener (HTTP/1.1 and h2c) and on a TLS
/// listener (the returned port) serving `cert`.
fn echo_gateway(cert: &(String, String)) -> (Gateway, u16) {
    let tls_port = free_port();
    let gw = Gateway::start_with(
        "routes:\n  - { id: echo, uris: [\"/*\"], plugins: { mock: { echo: true } } }\n",
        Options { extra_listeners: tls_listener("https", tls_port, cert, ""), h2c: true, ..Options::default() },
    );
    wait_listening(&gw, tls_port);
    (gw, tls_port)
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// A WebSocket server for one client: it records the request path, greets
/// the client, then answers each text message with `echo: <text>` and each
/// binary message with the same bytes, until the client closes. The thread
/// returns the path and the messages received.
// The handshake callback's error type is tungstenite's, not ours.
#[allow(clippy::result_large_err)]
fn websocket_upstream() -> (u16, thread::JoinHandle<(String, Vec<Message>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    let handle = thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(15);
        let stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                Err(e) => panic!("no WebSocket client came: {e}"),
            }
        };
        stream.set_nonblocking(false).expect("blocking");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let mut path = String::new();
        let mut ws = tungstenite::accept_hdr(stream, |req: &tungstenite::handshake::server::Request, resp| {
            path = req.uri().to_string();
            Ok(resp)
        })
        .expect("WebSocket handshake at the upstream");
        ws.send(Message::text("hello from upstream")).expect("greet");
        let mut received = Vec::new();
        loop {
            match ws.read() {
                Ok(Message::Text(t)) => {
                    received.push(Message::Text(t.clone()));
                    ws.send(Message::text(format!("echo: {t}"))).expect("echo text");
                }
                Ok(Message::Binary(b)) => {
                    received.push(Message::Binary(b.clone()));
                    ws.send(Message::Binary(b)).expect("echo binary");
                }
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
        (path, received)
    });
    (port, handle)
}

#[test]
fn a_websocket_upgrade_passes_through_and_messages_flow_both_ways() {
    let (ws_port, upstream) = websocket_upstream();
    let gw = Gateway::start(&proxy_config("/chat", ws_port, ""));
    let tcp = TcpStream::connect(("127.0.0.1", gw.port)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let (mut ws, resp) =
        tungstenite::client(format!("ws://127.0.0.1:{}/chat?room=1", gw.port), tcp).expect("WebSocket handshake");
    assert_eq!(resp.status(), 101);
    assert_eq!(ws.read().expect("greeting"), Message::text("hello from upstream"));
    ws.send(Message::text("ping 1")).expect("send");
    assert_eq!(ws.read().expect("echo"), Message::text("echo: ping 1"));
    let bytes = vec![0u8, 1, 2, 254, 255];
    ws.send(Message::binary(bytes.clone())).expect("send binary");
    assert_eq!(ws.read().expect("binary echo"), Message::binary(bytes.clone()));
    ws.close(None).expect("close");
    // Read until the close handshake completes.
    while ws.read().is_ok() {}
    let (path, received) = upstream.join().expect("the upstream thread");
    assert_eq!(path, "/chat?room=1");
    assert_eq!(received, vec![Message::text("ping 1"), Message::binary(bytes)]);
}

#[test]
fn an_https_upstream_is_spoken_to_over_tls() {
    let pki = Pki::new();
    let (_upstream, tls_port) = echo_gateway(&pki.leaf("upstream cert", &["upstream.test"]));
    let gw = Gateway::start(&format!(
        "routes:\n  - {{ id: tls, uris: [\"/tls/*\"], upstream_id: tls }}\n  - {{ id: plain, uris: [\"/plain/*\"], upstream_id: plain }}\nupstreams:\n  - {{ id: tls, scheme: HTTPS, tls: {{ verify: false }}, retries: 0, nodes: [{{ host: 127.0.0.1, port: {tls_port} }}] }}\n  - {{ id: plain, scheme: HTTP, retries: 0, nodes: [{{ host: 127.0.0.1, port: {tls_port} }}] }}\n"
    ));
    let c = client();
    let r = get(&c, &gw.url("/tls/items?id=7"), &[("host", "api.test")]);
    assert_eq!(r.status, 200, "{}", r.body);
    let echoed = json(&r.body);
    assert_eq!(echoed["uri"], "/tls/items");
    assert_eq!(echoed["query"], "id=7");
    // The node's port speaks only TLS: the same node in plain HTTP fails.
    assert_eq!(get(&c, &gw.url("/plain/items"), &[("host", "api.test")]).status, 502);
}

#[test]
fn an_https_upstream_whose_certificate_is_not_trusted_gets_502() {
    let pki = Pki::new();
    let (_upstream, tls_port) = echo_gateway(&pki.leaf("upstream cert", &["upstream.test"]));
    // `verify` defaults to true, and nothing trusts the test CA.
    let gw = Gateway::start(&proxy_config("/api/*", tls_port, "    scheme: HTTPS\n    tls: { sni: upstream.test }\n"));
    assert_eq!(get(&client(), &gw.url("/api/x"), &[]).status, 502);
}

#[test]
fn an_https_upstream_is_verified_against_the_ca_of_its_tls_settings() {
    let pki = Pki::new();
    let (_upstream, tls_port) = echo_gateway(&pki.leaf("upstream cert", &["upstream.test"]));
    let gw = Gateway::start(&proxy_config(
        "/api/*",
        tls_port,
        &format!("    scheme: HTTPS\n    tls:\n      sni: upstream.test\n      ca: {}", yaml_block(&pki.ca, 8)),
    ));
    let r = get(&client(), &gw.url("/api/x"), &[]);
    assert_eq!(r.status, 200, "{}\n{}", r.body, gw.log());
    assert_eq!(json(&r.body)["uri"], "/api/x");
}

/// A TCP relay to `target` that records the first 24 bytes each connection
/// sends: enough to recognise the HTTP/2 connection preface.
struct Tap {
    port: u16,
    prefaces: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Tap {
    fn start(target: u16) -> Tap {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let prefaces = Arc::new(Mutex::new(Vec::new()));
        let seen = prefaces.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { continue };
                let Ok(mut server) = TcpStream::connect(("127.0.0.1", target)) else { continue };
                let _ = client.set_read_timeout(Some(Duration::from_secs(5)));
                let mut first = vec![0u8; 24];
                let n = read_up_to(&mut client, &mut first);
                first.truncate(n);
                seen.lock().expect("lock").push(first.clone());
                let _ = client.set_read_timeout(None);
                if server.write_all(&first).is_err() {
                    continue;
                }
                let (Ok(mut c2), Ok(mut s2)) = (client.try_clone(), server.try_clone()) else { continue };
                thread::spawn(move || {
                    let _ = std::io::copy(&mut client, &mut server);
                    let _ = server.shutdown(std::net::Shutdown::Write);
                });
                thread::spawn(move || {
                    let _ = std::io::copy(&mut s2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Tap { port, prefaces }
    }
}

/// Reads until `buf` is full, the peer stops sending, or the read times out.
fn read_up_to(s: &mut TcpStream, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match s.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n
}

#[test]
fn a_grpc_upstream_is_spoken_to_in_http2_cleartext() {
    let pki = Pki::new();
    let (upstream, _) = echo_gateway(&pki.leaf("upstream cert", &["upstream.test"]));
    let tap = Tap::start(upstream.port);
    // gRPC clients speak h2c: the listener opts in.
    let gw = Gateway::start_with(
        &proxy_config("/echo.Echo/*", tap.port, "    scheme: GRPC\n"),
        Options { h2c: true, ..Options::default() },
    );
    let c = reqwest::blocking::Client::builder()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let r = c
        .post(gw.url("/echo.Echo/Say"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(vec![0u8, 0, 0, 0, 0])
        .send()
        .expect("gRPC-style request");
    assert_eq!(r.status(), 200);
    let echoed = json(&r.text().expect("body"));
    assert_eq!(echoed["method"], "POST");
    assert_eq!(echoed["uri"], "/echo.Echo/Say");
    assert_eq!(echoed["headers"]["content-type"], "application/grpc");
    let prefaces = tap.prefaces.lock().expect("lock").clone();
    assert!(!prefaces.is_empty(), "the gateway never connected to the upstream");
    for p in &prefaces {
        assert_eq!(String::from_utf8_lossy(p), "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "not an HTTP/2 connection");
    }
}

#[test]
fn sequential_requests_reuse_upstream_connections_from_the_keepalive_pool() {
    let up = Upstream::start("origin");
    let gw = Gateway::start(&proxy_config("/api/*", up.port(), ""));
    let c = client();
    for _ in 0..20 {
        assert_eq!(get(&c, &gw.url("/api/x"), &[]).body, "origin");
    }
    assert!(up.connections() <= 3, "20 sequential requests opened {} upstream connections", up.connections());
}

#[test]
fn a_keepalive_pool_of_size_0_opens_a_connection_per_request() {
    let up = Upstream::start("origin");
    let gw = Gateway::start(&proxy_config("/api/*", up.port(), "    keepalive_pool: { size: 0 }\n"));
    let c = client();
    for _ in 0..20 {
        assert_eq!(get(&c, &gw.url("/api/x"), &[]).body, "origin");
    }
    assert_eq!(up.connections(), 20, "connections were reused although the pool size is 0");
}
