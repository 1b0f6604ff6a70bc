//! Plugins through the real gateway: each plugin's behaviour as a client,
//! an upstream or a log receiver sees it, and the pipeline's precedence.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{Gateway, Upstream, client, get, send};

/// A config with one upstream `u` on `up` and the given routes (YAML list
/// items) plus extra top-level YAML.
fn config(up: &Upstream, routes: &str, extra: &str) -> String {
    format!("upstreams:\n  - id: u\n    nodes: [{{ host: 127.0.0.1, port: {} }}]\nroutes:\n{routes}{extra}", up.port())
}

/// The upstream's `/headers` answer as a map.
fn seen_headers(body: &str) -> HashMap<String, String> {
    body.lines().filter_map(|l| l.split_once(": ")).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

/// One request a [`Recorder`] received.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

type Answer = dyn Fn(&Recorded, usize) -> (u16, Vec<(String, String)>, String) + Send + Sync;

/// A small HTTP server that records what it receives (an auth service, a
/// log endpoint) and answers by a function of the request and its index.
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Recorded>>>,
}

impl Recorder {
    fn start(
        answer: impl Fn(&Recorded, usize) -> (u16, Vec<(String, String)>, String) + Send + Sync + 'static,
    ) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let answer: Arc<Answer> = Arc::new(answer);
        let count = Arc::new(AtomicUsize::new(0));
        let s = seen.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (s, answer, count) = (s.clone(), answer.clone(), count.clone());
                thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                    let mut writer = stream;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let mut parts = line.split_whitespace();
                        let method = parts.next().unwrap_or("").to_owned();
                        let path = parts.next().unwrap_or("/").to_owned();
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
                        let r = Recorded { method, path, headers, body };
                        let n = count.fetch_add(1, Ordering::SeqCst);
                        let (status, extra, text) = answer(&r, n);
                        s.lock().expect("lock").push(r);
                        let mut resp = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", text.len());
                        for (k, v) in extra {
                            resp.push_str(&format!("{k}: {v}\r\n"));
                        }
                        resp.push_str("\r\n");
                        resp.push_str(&text);
                        if writer.write_all(resp.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Recorder { addr, seen }
    }

    fn seen(&self) -> Vec<Recorded> {
        self.seen.lock().expect("lock").clone()
    }

    fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.seen();
            if s.len() >= n || Instant::now() > deadline {
                return s;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

const CONSUMERS: &str = "consumers:
  - username: alice
    credentials:
      key_auth: { key: alice-key-123 }
      basic_auth: { username: alice, password: wonderland }
      jwt_auth: { key: alice, secret: alice-jwt-secret-0123456789 }
  - username: bob
    credentials:
      key_auth: { key: bob-key-4567 }
    plugins:
      limit_count: { count: 2, time_window: 60s, key: { consumer: true } }
";

#[test]
fn key_auth_identifies_the_consumer_and_hides_the_key() {
    let up = Upstream::start("u");
    let gw = Gateway::start(&config(
        &up,
        "  - { id: r, uris: [\"/*\"], upstream_id: u, plugins: { key_auth: {} } }\n",
        CONSUMERS,
    ));
    let c = client();
    let missing = get(&c, &gw.url("/headers"), &[]);
    assert_eq!(missing.status, 401);
    assert!(missing.body.contains("Missing API key"), "{}", missing.body);
    let wrong = get(&c, &gw.url("/headers"), &[("apikey", "nope-nope-nope")]);
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("Invalid API key"), "{}", wrong.body);
    assert_eq!(up.served(), 0, "rejected requests never reach the upstream");

    let ok = get(&c, &gw.url("/headers"), &[("apikey", "alice-key-123")]);
    assert_eq!(ok.status, 200, "{}", ok.body);
    let seen = seen_headers(&ok.body);
    assert_eq!(seen.get("x-consumer-username").map(String::as_str), Some("alice"));
    assert!(!seen.contains_key("apikey"), "the key is hidden from the upstream: {seen:?}");

    // From the query string too, and removed from it.
    let q = get(&c, &gw.url("/headers?apikey=alice-key-123&x=1"), &[]);
    assert_eq!(q.status, 200);
    assert_eq!(q.header("x-seen-path"), "/headers?x=1");

    // A client cannot claim a consumer by sending the header itself.
    let forged = get(&c, &gw.url("/headers"), &[("apikey", "bob-key-4567"), ("x-consumer-username", "alice")]);
    assert_eq!(seen_headers(&forged.body).get("x-consumer-username").map(String::as_str), Some("bob"));
}

#[test]
fn a_consumers_own_plugins_apply_once_it_is_identified() {
    let up = Upstream::start("u");
    let gw = Gateway::start(&config(
        &up,
        "  - id: r\n    uris: [\"/*\"]\n    upstream_id: u\n    plugins:\n      key_auth: {}\n      limit_count: { count: 100, time_window: 60s, key: { consumer: true } }\n",
        CONSUMERS,
    ));
    let c = client();
    // bob's own limit (2 per minute) replaces the route's (100).
    let bob: Vec<u16> = (0..3).map(|_| get(&c, &gw.url("/"), &[("apikey", "bob-key-4567")]).status).collect();
    assert_eq!(bob, vec![200, 200, 429]);
    let last = get(&c, &gw.url("/"), &[("apikey", "bob-key-4567")]);
    assert_eq!(last.header("x-ratelimit-limit"), "2");
    assert_eq!(last.header("x-ratelimit-remaining"), "0");
    // alice runs under the route's limit.
    for _ in 0..5 {
        let r = get(&c, &gw.url("/"), &[("apikey", "alice-key-123")]);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-ratelimit-limit"), "100");
    }
}

#[test]
fn basic_auth_challenges_and_accepts() {
    let up = Upstream::start("u");
    let gw = Gateway::start(&config(
        &up,
        "  - { id: r, uris: [\"/*\"], upstream_id: u, plugins: { basic_auth: { realm: shop } } }\n",
        CONSUMERS,
    ));
    let c = client();
    let missing = get(&c, &gw.url("/"), &[]);
    assert_eq!(missing.status, 401);
    assert_eq!(missing.header("www-authenticate"), "Basic realm=\"shop\"");
    // alice:wrong, alice:wonderland
    let wrong = get(&c, &gw.url("/"), &[("authorization", "Basic YWxpY2U6d3Jvbmc=")]);
    assert_eq!(wrong.status, 401);
    let ok = get(&c, &gw.url("/headers"), &[("authorization", "Basic YWxpY2U6d29uZGVybGFuZA==")]);
    assert_eq!(ok.status, 200);
    let seen = seen_headers(&ok.body);
    assert_eq!(seen.get("x-consumer-username").map(String::as_str), Some("alice"));
    assert!(!seen.contains_key("authorization"));
}

fn jwt(claims: serde_json::Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64
}

#[test]
fn jwt_auth_checks_signature_expiry_and_leeway() {
    let up = Upstream::start("u");
    let gw = Gateway::start(&config(
        &up,
        "  - { id: r, uris: [\"/*\"], upstream_id: u, plugins: { jwt_auth: { leeway: 30s } } }\n",
        CONSUMERS,
    ));
    let c = client();
    let secret = "alice-jwt-secret-0123456789";
    let bearer = |t: &str| format!("Bearer {t}");
    let good = jwt(serde_json::json!({"key": "alice", "exp": now() + 60}), secret);
    let r = get(&c, &gw.url("/headers"), &[("authorization", &bearer(&good))]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(seen_headers(&r.body).get("x-consumer-username").map(String::as_str), Some("alice"));

    let expired = jwt(serde_json::json!({"key": "alice", "exp": now() - 120}), secret);
    let r = get(&c, &gw.url("/"), &[("authorization", &bearer(&expired))]);
    assert_eq!(r.status, 401);
    assert!(r.body.contains("expired"), "{}", r.body);

    // Within the leeway: accepted.
    let just = jwt(serde_json::json!({"key": "alice", "exp": now() - 10}), secret);
    assert_eq!(get(&c, &gw.url("/"), &[("authorization", &bearer(&just))]).status, 200);

    let forged = jwt(serde_json::json!({"key": "alice", "exp": now() + 60}), "not-the-secret-at-all!!");
    let r = get(&c, &gw.url("/"), &[("authorization", &bearer(&forged))]);
    assert_eq!(r.status, 401);
    assert!(r.body.contains("signature"), "{}", r.body);

    // From the cookie too.
    let r = get(&c, &gw.url("/"), &[("cookie", &format!("a=1; jwt={good}"))]);
    assert_eq!(r.status, 200);
    assert_eq!(get(&c, &gw.url("/"), &[]).status, 401);
}

#[test]
fn jwt_auth_verifies_es256_with_the_consumers_public_key() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let public = key.public_key_pem();
    let private = key.serialize_pem();
    let up = Upstream::start("u");
    let consumers = format!(
        "consumers:\n  - username: svc\n    credentials:\n      jwt_auth:\n        key: svc\n        algorithm: ES256\n        public_key: {}",
        crate::harness::yaml_block(&public, 10)
    );
    let gw = Gateway::start(&config(
        &up,
        "  - { id: r, uris: [\"/*\"], upstream_id: u, plugins: { jwt_auth: { required_claims: [exp] } } }\n",
        &consumers,
    ));
    let sign = |claims: serde_json::Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
            &claims,
            &jsonwebtoken::EncodingKey::from_ec_pem(private.as_bytes()).expect("ec key"),
        )
        .expect("sign")
    };
    let c = client();
    let ok = sign(serde_json::json!({"key": "svc", "exp": now() + 60}));
    assert_eq!(get(&c, &gw.url("/"), &[("authorization", &format!("Bearer {ok}"))]).status, 200);
    let no_exp = sign(serde_json::json!({"key": "svc"}));
    let r = get(&c, &gw.url("/"), &[("authorization", &format!("Bearer {no_exp}"))]);
    assert_eq!(r.status, 401, "exp is required");
}

#[test]
fn ip_restriction_denies_and_trusts_only_listed_proxies() {
    let up = Upstream::start("u");
    let gw = Gateway::start(&config(
        &up,
        "  - { id: deny, uris: [\"/deny\"], upstream_id: u, plugins: { ip_restriction: { deny: [127.0.0.0/8], status: 451, message: go away } } }
  - { id: allow, uris: [\"/allow\"], upstream_id: u, plugins: { ip_restriction: { allow: [10.1.0.0/16], trusted_proxies: [127.0.0.1] } } }
  - { id: untrusted, uris: [\"/untrusted\"], upstream_id: u, plugins: { ip_restriction: { allow: [10.1.0.0/16] } } }
",
        "",
    ));
    let c = client();
    let r = get(&c, &gw.url("/deny"), &[]);
    assert_eq!((r.status, r.body.as_str()), (451, "{\"error_msg\":\"go away\"}"));
    // The peer (127.0.0.1) is a trusted proxy: the client is the rightmost
    // untrusted address of X-Forwarded-For.
    assert_eq!(get(&c, &gw.url("/allow"), &[("x-forwarded-for", "10.1.2.3")]).status, 200);
    assert_eq!(get(&c, &gw.url("/allow"), &[("x-forwarded-for", "10.1.2.3, 192.0.2.9")]).status, 403);
    assert_eq!(get(&c, &gw.url("/allow"), &[]).status, 403);
    // Without trusted proxies the header is ignored.
    assert_eq!(get(&c, &gw.url("/untrusted"), &[("x-forwarded-for", "10.1.2.3")]).status, 403);
}

#[test]
fn cors_answers_preflights_and_decorates_allowed_origins_only() {
    let up = Upstream::start("u");
    let gw = Gateway::start(&config(
        &up,
        "  - id: r
    uris: [\"/*\"]
    upstream_id: u
    plugins:
      key_auth: {}
      cors: { allow_origins: [\"https://app.example.com\"], allow_methods: [GET, POST], allow_headers: [\"*\"], expose_headers: [X-Request-Id], max_age: 600s, allow_credentials: false }
",
        CONSUMERS,
    ));
    let c = client();
    // A preflight carries no credentials: answered before key_auth.
    let pre = send(
        &c,
        "OPTIONS",
        &gw.url("/x"),
        &[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "x-custom, content-type"),
        ],
    );
    assert_eq!(pre.status, 204);
    assert_eq!(pre.header("access-control-allow-origin"), "https://app.example.com");
    assert_eq!(pre.header("access-control-allow-methods"), "GET, POST");
    assert_eq!(pre.header("access-control-allow-headers"), "x-custom, content-type");
    assert_eq!(pre.header("access-control-max-age"), "600");
    assert_eq!(up.served(), 0);

    let simple = get(&c, &gw.url("/x"), &[("origin", "https://app.example.com"), ("apikey", "alice-key-123")]);
    assert_eq!(simple.status, 200);
    assert_eq!(simple.header("access-control-allow-origin"), "https://app.example.com");
    assert_eq!(simple.header("access-control-expose-headers"), "X-Request-Id");
    // The CORS headers are on rejections too, so the page can read them.
    let rejected = get(&c, &gw.url("/x"), &[("origin", "https://app.example.com")]);
    assert_eq!(rejected.status, 401);
    assert_eq!(rejected.header("access-control-allow-origin"), "https://app.example.com");

    let other = get(&c, &gw.url("/x"), &[("origin", "https://evil.example"), ("apikey", "alice-key-123")]);
    assert_eq!(other.status, 200);
    assert_eq!(other.header("access-control-allow-origin"), "");
}

#[test]
fn a_plugin_config_the_schema_cannot_reject_is_rejected_at_load_and_the_old_config_stays() {
    let up = Upstream::start("u");
    let good = config(&up, "  - { id: r, uris: [\"/*\"], upstream_id: u, plugins: { cors: {} } }\n", "");
    let gw = Gateway::start(&good);
    let c = client();
    assert_eq!(get(&c, &gw.url("/"), &[("origin", "https://a.example")]).header("access-control-allow-origin"), "*");
    // Credentials with a wildcard origin: browsers refuse it.
    gw.write_config(&config(
        &up,
        "  - { id: r, uris: [\"/*\"], upstream_id: u, plugins: { mock: { body: new } } }\n  - { id: bad, uris: [\"/bad\"], upstream_id: u, plugins: { cors: { allow_credentials: true } } }\n",
        "",
    ));
    gw.wait_for("the rejection in the log", Duration::from_secs(5), || {
        gw.log().contains("routes[1] (bad): plugins.cors: allow_credentials")
    });
    let r = get(&c, &gw.url("/"), &[]);
    assert_eq!(r.body, "u", "the running config stays");
}

#[test]
fn limits_count_requests_rates_and_concurrency() {
    let up = Upstream::start("u");
    let gw = Gateway::start(&config(
        &up,
        "  - { id: count, uris: [\"/count\"], upstream_id: u, plugins: { limit_count: { count: 3, time_window: 60s, rejected_msg: slow down } } }
  - { id: rate, uris: [\"/rate\"], upstream_id: u, plugins: { limit_req: { rate: 1, burst: 0, rejected_code: 503 } } }
  - { id: conn, uris: [\"/slow/*\"], upstream_id: u, plugins: { limit_conn: { conn: 1, burst: 0 } } }
  - { id: byheader, uris: [\"/byheader\"], upstream_id: u, plugins: { limit_count: { count: 1, time_window: 60s, key: { header: X-User } } } }
",
        "",
    ));
    let c = client();
    let statuses: Vec<u16> = (0..4).map(|_| get(&c, &gw.url("/count"), &[]).status).collect();
    assert_eq!(statuses, vec![200, 200, 200, 429]);
    let r = get(&c, &gw.url("/count"), &[]);
    assert_eq!(r.body, "{\"error_msg\":\"slow down\"}");
    assert_eq!(r.header("x-ratelimit-remaining"), "0");
    let reset: u64 = r.header("x-ratelimit-reset").parse().expect("reset seconds");
    assert!((1..=60).contains(&reset), "{reset}");

    assert_eq!(get(&c, &gw.url("/rate"), &[]).status, 200);
    assert_eq!(get(&c, &gw.url("/rate"), &[]).status, 503, "one per second, no burst");

    assert_eq!(get(&c, &gw.url("/byheader"), &[("x-user", "a")]).status, 200);
    assert_eq!(get(&c, &gw.url("/byheader"), &[("x-user", "b")]).status, 200);
    assert_eq!(get(&c, &gw.url("/byheader"), &[("x-user", "a")]).status, 429);

    let url = gw.url("/slow/600");
    let slow = thread::spawn(move || get(&client(), &url, &[]).status);
    thread::sleep(Duration::from_millis(200));
    assert_eq!(get(&c, &gw.url("/slow/1"), &[]).status, 429, "the one slot is taken");
    assert_eq!(slow.join().expect("join"), 200);
    assert_eq!(get(&c, &gw.url("/slow/1"), &[]).status, 200, "the slot is released");
}

#[test]
fn limit_req_delays_a_burst_to_the_rate() {
    let up = Upstream::start("u");
    let gw = Gateway::start(&config(
        &up,
        "  - { id: rate, uris: [\"/*\"], upstream_id: u, plugins: { limit_req: { rate: 5, burst: 2 } } }\n",
        "",
    ));
    let c = client();
    let start = Instant::now();
    for _ in 0..3 {
        assert_eq!(get(&c, &gw.url("/"), &[]).status, 200);
    }
    // The 2nd and 3rd wait 0.2 s each to match 5/s.
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(350), "{took:?}");
}

#[test]
fn proxy_rewrite_changes_only_what_the_upstream_sees() {
    let up = Upstream::start("u");
    let gw = Gateway::start(&config(
        &up,
        "  - id: r
    uris: [\"/api/*\"]
    upstream_id: u
    plugins:
      request_id: {}
      proxy_rewrite:
        regex_uri: { regex: \"^/api/(.*)$\", replacement: \"/$1\" }
        method: POST
        host: internal.example
        headers:
          remove: [X-Drop]
          set: [{ name: X-Route, value: \"$route_id from $remote_addr\" }]
          add: [{ name: X-Req, value: \"$request_id\" }]
",
        "",
    ));
    let r = get(&client(), &gw.url("/api/headers?q=1"), &[("x-drop", "1")]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-seen-path"), "/headers?q=1");
    assert_eq!(r.header("x-seen-method"), "POST");
    assert_eq!(r.header("x-seen-host"), "internal.example");
    let seen = seen_headers(&r.body);
    assert!(!seen.contains_key("x-drop"));
    assert_eq!(seen.get("x-route").map(String::as_str), Some("r from 127.0.0.1"));
    assert_eq!(seen.get("x-req"), Some(&r.header("x-request-id")));
}

#[test]
fn response_rewrite_applies_to_upstream_and_gateway_answers() {
    let up = Upstream::start("u");
    let gw = Gateway::start(&config(
        &up,
        "  - { id: up, uris: [\"/up\"], upstream_id: u, plugins: { response_rewrite: { status_code: 202, headers: { set: [{ name: X-Rewritten, value: yes }], remove: [X-Upstream] }, body: replaced } } }
  - { id: mock, uris: [\"/mock\"], plugins: { mock: { status: 200, body: original }, response_rewrite: { status_code: 418 } } }
",
        "",
    ));
    let c = client();
    let r = get(&c, &gw.url("/up"), &[]);
    assert_eq!((r.status, r.body.as_str()), (202, "replaced"));
    assert_eq!(r.header("x-rewritten"), "yes");
    assert_eq!(r.header("x-upstream"), "");
    let m = get(&c, &gw.url("/mock"), &[]);
    assert_eq!((m.status, m.body.as_str()), (418, "original"));
}

#[test]
fn redirect_to_https_and_to_a_computed_location() {
    let up = Upstream::start("u");
    let gw = Gateway::start(&config(
        &up,
        "  - { id: https, uris: [\"/secure/*\"], upstream_id: u, plugins: { redirect: { http_to_https: true } } }
  - { id: moved, uris: [\"/old/*\"], upstream_id: u, plugins: { redirect: { regex_uri: { regex: \"^/old/(.*)$\", replacement: \"/new/$1\" }, ret_code: 308, append_query_string: true } } }
  - { id: fixed, uris: [\"/go\"], plugins: { redirect: { uri: \"https://example.com$uri\" } } }
",
        "",
    ));
    let c = reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let r = get(&c, &gw.url("/secure/page?a=1"), &[("host", "shop.example")]);
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), "https://shop.example/secure/page?a=1");
    let r = get(&c, &gw.url("/old/thing?x=2"), &[]);
    assert_eq!((r.status, r.header("location")), (308, "/new/thing?x=2".to_owned()));
    let r = get(&c, &gw.url("/go"), &[]);
    assert_eq!((r.status, r.header("location")), (302, "https://example.com/go".to_owned()));
}

#[test]
fn request_id_is_generated_kept_or_replaced_and_reaches_both_sides() {
    let up = Upstream::start("u");
    let gw = Gateway::start(&config(
        &up,
        "  - { id: r, uris: [\"/*\"], upstream_id: u, plugins: { request_id: {} } }
  - { id: n, uris: [\"/nano\"], upstream_id: u, plugins: { request_id: { algorithm: NANOID, header_name: X-Trace } } }
",
        "",
    ));
    let c = client();
    let r = get(&c, &gw.url("/headers"), &[]);
    let id = r.header("x-request-id");
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(seen_headers(&r.body).get("x-request-id"), Some(&id));
    assert_ne!(get(&c, &gw.url("/headers"), &[]).header("x-request-id"), id, "unique");
    assert_eq!(get(&c, &gw.url("/"), &[("x-request-id", "abc-123")]).header("x-request-id"), "abc-123");
    let bad = get(&c, &gw.url("/"), &[("x-request-id", "has spaces\tand tabs")]).header("x-request-id");
    assert_eq!(bad.len(), 36, "a malformed id is replaced: {bad}");
    assert_eq!(get(&c, &gw.url("/nano"), &[]).header("x-trace").len(), 21);
}

#[test]
fn compression_by_accept_encoding_type_and_size() {
    let big = "{\"k\":\"".to_owned() + &"v".repeat(2000) + "\"}";
    let up = Upstream::start("u");
    let gw = Gateway::start(&config(
        &up,
        &format!(
            "  - {{ id: json, uris: [\"/json\"], plugins: {{ compression: {{ algorithms: [GZIP] }}, mock: {{ body: '{big}' }} }} }}
  - {{ id: small, uris: [\"/small\"], plugins: {{ compression: {{}}, mock: {{ body: '{{}}' }} }} }}
  - {{ id: png, uris: [\"/png\"], plugins: {{ compression: {{}}, mock: {{ body: '{big}', content_type: image/png }} }} }}
"
        ),
        "",
    ));
    let c = reqwest::blocking::Client::builder().build().expect("client");
    let raw = |path: &str, enc: &str| {
        let r = c.get(gw.url(path)).header("accept-encoding", enc).send().expect("send");
        let ce = r.headers().get("content-encoding").map(|v| v.to_str().unwrap_or("").to_owned()).unwrap_or_default();
        let vary = r.headers().get("vary").map(|v| v.to_str().unwrap_or("").to_owned()).unwrap_or_default();
        (ce, vary, r.bytes().expect("body").to_vec())
    };
    let (ce, vary, body) = raw("/json", "gzip, br");
    assert_eq!(ce, "gzip");
    assert!(vary.to_ascii_lowercase().contains("accept-encoding"), "{vary}");
    let mut out = String::new();
    flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut out).expect("gunzip");
    assert_eq!(out, big);
    assert!(body.len() < big.len() / 4);
    assert_eq!(raw("/json", "identity").0, "");
    assert_eq!(raw("/small", "gzip").0, "", "below min_length");
    assert_eq!(raw("/png", "gzip").0, "", "not a listed type");
}

#[test]
fn fault_injection_aborts_and_delays() {
    let up = Upstream::start("u");
    let gw = Gateway::start(&config(
        &up,
        "  - { id: abort, uris: [\"/abort\"], upstream_id: u, plugins: { fault_injection: { abort: { http_status: 503, body: injected } } } }
  - { id: delay, uris: [\"/delay\"], upstream_id: u, plugins: { fault_injection: { delay: { duration: 0.3s } } } }
  - { id: never, uris: [\"/never\"], upstream_id: u, plugins: { fault_injection: { abort: { http_status: 500, percentage: 0 } } } }
",
        "",
    ));
    let c = client();
    let r = get(&c, &gw.url("/abort"), &[]);
    assert_eq!((r.status, r.body.as_str()), (503, "injected"));
    let start = Instant::now();
    assert_eq!(get(&c, &gw.url("/delay"), &[]).status, 200);
    assert!(start.elapsed() >= Duration::from_millis(300));
    for _ in 0..20 {
        assert_eq!(get(&c, &gw.url("/never"), &[]).status, 200);
    }
    assert_eq!(up.served(), 21, "aborted requests never reach the upstream");
}

#[test]
fn traffic_split_sends_matching_requests_by_weight() {
    let (stable, canary) = (Upstream::start("stable"), Upstream::start("canary"));
    let gw = Gateway::start(&format!(
        "upstreams:
  - id: stable
    nodes: [{{ host: 127.0.0.1, port: {} }}]
routes:
  - id: r
    uris: [\"/*\"]
    upstream_id: stable
    plugins:
      traffic_split:
        rules:
          - headers: [{{ name: X-Beta, value: {{ exact: \"1\" }} }}]
            weighted_upstreams:
              - {{ upstream: {{ nodes: [{{ host: 127.0.0.1, port: {} }}] }}, weight: 1 }}
          - weighted_upstreams:
              - {{ default: true, weight: 3 }}
              - {{ upstream: {{ nodes: [{{ host: 127.0.0.1, port: {} }}] }}, weight: 1 }}
",
        stable.port(),
        canary.port(),
        canary.port()
    ));
    let c = client();
    for _ in 0..10 {
        assert_eq!(get(&c, &gw.url("/"), &[("x-beta", "1")]).body, "canary");
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..400 {
        *counts.entry(get(&c, &gw.url("/"), &[]).body).or_default() += 1;
    }
    let to_canary = counts.get("canary").copied().unwrap_or(0);
    assert!((60..=140).contains(&to_canary), "about a quarter: {counts:?}");
}

#[test]
fn file_logger_writes_json_lines_without_secrets_and_follows_rotation() {
    let up = Upstream::start("u");
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("access.log");
    let gw = Gateway::start(&config(
        &up,
        &format!(
            "  - {{ id: r, uris: [\"/*\"], upstream_id: u, plugins: {{ request_id: {{}}, key_auth: {{}}, file_logger: {{ path: {}, flush_interval: 0.05s }} }} }}\n",
            path.display()
        ),
        CONSUMERS,
    ));
    let c = client();
    let ok = get(&c, &gw.url("/a?x=1"), &[("apikey", "alice-key-123")]);
    assert_eq!(ok.status, 200);
    assert_eq!(get(&c, &gw.url("/b"), &[("apikey", "wrong-key-000")]).status, 401);
    let read = |p: &std::path::Path, n: usize| {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            if text.lines().count() >= n || Instant::now() > deadline {
                return text;
            }
            thread::sleep(Duration::from_millis(20));
        }
    };
    // The harness's readiness probe is the first line.
    let text = read(&path, 3);
    assert!(!text.contains("alice-key-123") && !text.contains("wrong-key-000"), "no secret in logs: {text}");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json line"))
        .filter(|l| l["request"]["uri"] != "/__ready")
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["route_id"], "r");
    assert_eq!(lines[0]["consumer"], "alice");
    assert_eq!(lines[0]["response"]["status"], 200);
    assert_eq!(lines[0]["request"]["uri"], "/a?x=1");
    assert_eq!(lines[0]["request_id"], ok.header("x-request-id"));
    assert_eq!(lines[0]["upstream"], format!("127.0.0.1:{}", up.port()));
    assert!(lines[0]["latency_ms"].as_f64().is_some());
    // A rejected request is logged too (logging runs after a short circuit).
    assert_eq!(lines[1]["response"]["status"], 401);

    // Rotation: the file is moved away; the next entries go to a new file.
    std::fs::rename(&path, dir.path().join("access.log.1")).expect("rotate");
    assert_eq!(get(&c, &gw.url("/c"), &[("apikey", "alice-key-123")]).status, 200);
    let fresh = read(&path, 1);
    assert!(fresh.contains("\"/c\""), "{fresh}");
}

#[test]
fn http_logger_posts_batches_and_retries_a_flaky_receiver() {
    let up = Upstream::start("u");
    // The first POST fails; the retry is accepted.
    let receiver = Recorder::start(|_, n| if n == 0 { (500, vec![], "no".into()) } else { (200, vec![], "ok".into()) });
    let gw = Gateway::start(&config(
        &up,
        &format!(
            "  - {{ id: r, uris: [\"/*\"], upstream_id: u, plugins: {{ http_logger: {{ url: \"http://{}/ingest\", authorization: Bearer t0ken, batch_max_size: 3, inactive_timeout: 0.2s, buffer_duration: 1s, retries: 2, retry_delay: 0.05s }} }} }}\n",
            receiver.addr
        ),
        "",
    ));
    let c = client();
    // With the harness's readiness probe, these make a full batch of 3.
    for p in ["/1", "/2"] {
        assert_eq!(get(&c, &gw.url(p), &[]).status, 200);
    }
    let seen = receiver.wait_for(2, Duration::from_secs(5));
    assert_eq!(seen.len(), 2, "one failed POST, one retry: {seen:?}");
    assert_eq!(seen[0].body, seen[1].body, "the retry sends the same batch");
    let batch: Vec<serde_json::Value> = serde_json::from_slice(&seen[1].body).expect("a JSON array");
    let uris: Vec<&str> = batch.iter().filter_map(|e| e["request"]["uri"].as_str()).collect();
    assert_eq!(uris, vec!["/__ready", "/1", "/2"]);
    assert_eq!(seen[1].method, "POST");
    assert_eq!(seen[1].path, "/ingest");
    assert_eq!(seen[1].headers.get("authorization").map(String::as_str), Some("Bearer t0ken"));
    // A lone entry goes out after inactive_timeout.
    assert_eq!(get(&c, &gw.url("/3"), &[]).status, 200);
    let seen = receiver.wait_for(3, Duration::from_secs(5));
    assert_eq!(seen.len(), 3);
    let batch: Vec<serde_json::Value> = serde_json::from_slice(&seen[2].body).expect("a JSON array");
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0]["request"]["uri"], "/3");
}

#[test]
fn forward_auth_delegates_the_decision() {
    let up = Upstream::start("u");
    let auth = Recorder::start(|r, _| match r.headers.get("authorization").map(String::as_str) {
        Some("Bearer good") => (200, vec![("X-User-Id".into(), "42".into())], String::new()),
        _ => (401, vec![("WWW-Authenticate".into(), "Bearer".into())], "denied".into()),
    });
    let gw = Gateway::start(&config(
        &up,
        &format!(
            "  - {{ id: r, uris: [\"/*\"], upstream_id: u, plugins: {{ forward_auth: {{ uri: \"http://{}/check\", request_headers: [Authorization], upstream_headers: [X-User-Id], client_headers: [WWW-Authenticate] }} }} }}
  - {{ id: post, uris: [\"/body\"], upstream_id: u, plugins: {{ forward_auth: {{ uri: \"http://{}/check\", request_method: POST, request_headers: [Authorization] }} }} }}
  - {{ id: down, uris: [\"/down\"], upstream_id: u, plugins: {{ forward_auth: {{ uri: \"http://127.0.0.1:1/check\", status_on_error: 503 }} }} }}
  - {{ id: degrade, uris: [\"/degrade\"], upstream_id: u, plugins: {{ forward_auth: {{ uri: \"http://127.0.0.1:1/check\", allow_degradation: true }} }} }}
",
            auth.addr, auth.addr
        ),
        "",
    ));
    let c = client();
    // With POST the auth service gets the body, and so does the upstream.
    let posted = c.post(gw.url("/body")).header("authorization", "Bearer good").body("order=7").send().expect("post");
    assert_eq!(posted.status().as_u16(), 200);
    assert_eq!(posted.text().expect("body"), "order=7");
    assert!(auth.seen().iter().any(|r| r.method == "POST" && r.body == b"order=7"), "{:?}", auth.seen());
    let ok = get(&c, &gw.url("/headers?q=1"), &[("authorization", "Bearer good"), ("x-user-id", "forged")]);
    assert_eq!(ok.status, 200);
    assert_eq!(seen_headers(&ok.body).get("x-user-id").map(String::as_str), Some("42"));
    let seen = auth.seen();
    let sub =
        seen.iter().find(|r| r.headers.get("x-forwarded-uri").is_some_and(|u| u.starts_with("/headers"))).expect("sub");
    assert_eq!(sub.path, "/check");
    assert_eq!(sub.headers.get("x-forwarded-uri").map(String::as_str), Some("/headers?q=1"));
    assert_eq!(sub.headers.get("x-forwarded-method").map(String::as_str), Some("GET"));

    let denied = get(&c, &gw.url("/x"), &[("authorization", "Bearer bad")]);
    assert_eq!((denied.status, denied.body.as_str()), (401, "denied"));
    assert_eq!(denied.header("www-authenticate"), "Bearer");
    assert_eq!(get(&c, &gw.url("/down"), &[]).status, 503);
    assert_eq!(get(&c, &gw.url("/degrade"), &[]).status, 200);
}

#[test]
fn global_rules_run_first_for_every_request_and_a_route_can_opt_out() {
    let up = Upstream::start("u");
    let gw = Gateway::start(&config(
        &up,
        "  - { id: r, uris: [\"/r\"], upstream_id: u }
  - { id: quiet, uris: [\"/quiet\"], upstream_id: u, plugins: { request_id: { disable: true } } }
",
        "global_rules:\n  - id: g\n    plugins:\n      request_id: {}\n      limit_count: { count: 1000, time_window: 60s }\n",
    ));
    let c = client();
    let r = get(&c, &gw.url("/r"), &[]);
    assert_eq!(r.header("x-request-id").len(), 36);
    assert_eq!(r.header("x-ratelimit-limit"), "1000");
    let q = get(&c, &gw.url("/quiet"), &[]);
    assert_eq!(q.header("x-request-id"), "", "the route disables the global request_id");
    assert_eq!(q.header("x-ratelimit-limit"), "1000", "but not the global limit");
    // No route matched: the global rules still run.
    let nf = get(&c, &gw.url("/nothing"), &[]);
    assert_eq!(nf.status, 404);
    assert_eq!(nf.header("x-request-id").len(), 36);
}

#[test]
fn route_beats_plugin_config_beats_service_and_a_service_limit_is_shared() {
    let up = Upstream::start("u");
    let gw = Gateway::start(&config(
        &up,
        "  - { id: a, uris: [\"/a\"], service_id: s }
  - { id: b, uris: [\"/b\"], service_id: s }
  - { id: c, uris: [\"/c\"], service_id: s, plugin_config_id: pc }
  - { id: d, uris: [\"/d\"], service_id: s, plugin_config_id: pc, plugins: { response_rewrite: { headers: { set: [{ name: X-Layer, value: route }] } } } }
",
        "services:
  - id: s
    upstream_id: u
    plugins:
      limit_count: { count: 3, time_window: 60s, key: { shared: true } }
      response_rewrite: { headers: { set: [{ name: X-Layer, value: service }] } }
plugin_configs:
  - id: pc
    plugins:
      response_rewrite: { headers: { set: [{ name: X-Layer, value: plugin_config }] } }
",
    ));
    let c = client();
    assert_eq!(get(&c, &gw.url("/a"), &[]).header("x-layer"), "service");
    assert_eq!(get(&c, &gw.url("/c"), &[]).header("x-layer"), "plugin_config");
    assert_eq!(get(&c, &gw.url("/d"), &[]).header("x-layer"), "route");
    // The service's limit (3) was shared by /a, /c and /d: /b is refused.
    assert_eq!(get(&c, &gw.url("/b"), &[]).status, 429);
}

#[test]
fn limit_counters_survive_an_unrelated_reload() {
    let up = Upstream::start("u");
    let routes =
        "  - { id: r, uris: [\"/r\"], upstream_id: u, plugins: { limit_count: { count: 2, time_window: 60s } } }\n";
    let gw = Gateway::start(&config(&up, routes, ""));
    let c = client();
    assert_eq!(get(&c, &gw.url("/r"), &[]).status, 200);
    assert_eq!(get(&c, &gw.url("/r"), &[]).status, 200);
    gw.write_config(&config(
        &up,
        &format!("{routes}  - {{ id: new, uris: [\"/new\"], plugins: {{ mock: {{ body: new }} }} }}\n"),
        "",
    ));
    gw.wait_for("the reload", Duration::from_secs(5), || get(&c, &gw.url("/new"), &[]).body == "new");
    assert_eq!(get(&c, &gw.url("/r"), &[]).status, 429, "the window was not reset by the reload");
}

#[test]
fn prometheus_counts_by_route_upstream_consumer_and_status_on_the_admin_listener() {
    let up = Upstream::start("u");
    let gw = Gateway::start(&config(
        &up,
        "  - { id: r, name: orders, uris: [\"/*\"], upstream_id: u, plugins: { key_auth: {}, prometheus: { prefer_name: true } } }\n",
        CONSUMERS,
    ));
    gw.wait_admin();
    let c = client();
    for _ in 0..3 {
        assert_eq!(get(&c, &gw.url("/x"), &[("apikey", "alice-key-123")]).status, 200);
    }
    assert_eq!(get(&c, &gw.url("/status/503"), &[("apikey", "alice-key-123")]).status, 503);
    assert_eq!(get(&c, &gw.url("/x"), &[]).status, 401);
    let m = get(&c, &format!("{}/metrics", gw.admin_url()), &[]);
    assert_eq!(m.status, 200);
    let line = |labels: &str| {
        m.body
            .lines()
            .find(|l| l.starts_with("pingora_config_http_requests_total{") && l.contains(labels))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    assert_eq!(
        line("consumer=\"alice\",route=\"orders\",service=\"\",status=\"200\",upstream=\"u\""),
        Some(3),
        "{}",
        m.body
    );
    assert_eq!(line("status=\"503\""), Some(1));
    // A rejected request never chose an upstream (the harness's readiness
    // probe was rejected too).
    assert_eq!(line("consumer=\"\",route=\"orders\",service=\"\",status=\"401\",upstream=\"\""), Some(2));
    assert!(m.body.contains("pingora_config_http_request_duration_seconds_bucket{route=\"orders\""));
    assert!(
        m.body
            .contains("pingora_config_upstream_duration_seconds_count{route=\"orders\",service=\"\",upstream=\"u\"} 4")
    );
    assert!(m.body.contains("pingora_config_bandwidth_bytes_total{route=\"orders\",service=\"\",type=\"egress\"}"));
}

/// A real gRPC server (the standard health service, h2c) on a free port,
/// on its own runtime thread.
fn grpc_health_upstream() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let (_reporter, service) = tonic_health::server::health_reporter();
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let _ = tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming).await;
        });
    });
    port
}

#[test]
fn grpc_web_bridges_a_browser_call_to_a_grpc_upstream() {
    let port = grpc_health_upstream();
    let gw = Gateway::start(&format!(
        "routes:\n  - id: grpc\n    uris: [\"/grpc.health.v1.Health/*\"]\n    upstream: {{ scheme: GRPC, nodes: [{{ host: 127.0.0.1, port: {port} }}] }}\n    plugins: {{ grpc_web: {{ cors_allow_origins: [\"https://app.example\"] }} }}\n"
    ));
    let c = client();
    // The browser's preflight.
    let pre = send(
        &c,
        "OPTIONS",
        &gw.url("/grpc.health.v1.Health/Check"),
        &[("origin", "https://app.example"), ("access-control-request-method", "POST")],
    );
    assert_eq!(pre.status, 204);
    assert_eq!(pre.header("access-control-allow-origin"), "https://app.example");

    // Check(HealthCheckRequest{}) as one grpc-web frame: flag 0, length 0.
    let resp = c
        .post(gw.url("/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("origin", "https://app.example")
        .body(vec![0u8, 0, 0, 0, 0])
        .send()
        .expect("grpc-web call");
    assert_eq!(resp.status().as_u16(), 200);
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert!(ct.starts_with("application/grpc-web"), "{ct}");
    assert!(
        resp.headers()
            .get("access-control-expose-headers")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .contains("grpc-status")
    );
    let body = resp.bytes().expect("body").to_vec();
    // A data frame with HealthCheckResponse{status: SERVING} (08 01), then
    // the trailers frame (flag 0x80) carrying grpc-status 0.
    assert_eq!(&body[..7], &[0, 0, 0, 0, 2, 0x08, 0x01], "{body:?}");
    assert_eq!(body[7], 0x80, "{body:?}");
    let trailers = String::from_utf8_lossy(&body[12..]).to_ascii_lowercase();
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
}

/// The whole response to a plain HTTP/1.1 GET, head and body, as sent.
fn raw_response(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn header_names_go_on_the_wire_with_the_case_written_in_the_config() {
    let gw = Gateway::start(
        "routes:\n  - id: m\n    uris: [\"/m\"]\n    plugins:\n      mock: { body: hi, headers: [{ name: X-Mock-Case, value: yes }] }\n      request_id: {}\n      response_rewrite: { headers: { set: [{ name: X-Rewritten-By, value: gw }] } }\n",
    );
    let head = raw_response(gw.port, "/m");
    let head = head.split("\r\n\r\n").next().unwrap_or_default();
    for name in ["X-Mock-Case: yes", "X-Rewritten-By: gw", "X-Request-Id: "] {
        assert!(head.contains(name), "{name:?} not in:\n{head}");
    }
}
