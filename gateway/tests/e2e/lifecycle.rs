//! Starting on the shipped config, HTTP/2 cleartext, and shutdown.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::{Gateway, Options, Upstream, client, everything_to, free_port, get, http_get_raw};

#[test]
fn the_default_config_of_make_run_answers_and_proxies_through_a_real_hop() {
    let port = free_port();
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/config.yaml")).expect("example");
    let gw = Gateway::start_with(
        &text.replace("port: 9080", &format!("port: {port}")),
        Options { port: Some(port), ..Options::default() },
    );
    let c = client();
    let r = get(&c, &gw.url("/hello"), &[]);
    assert_eq!((r.status, r.body.as_str()), (200, "hello from pingora-config\n"));
    let r = get(&c, &gw.url("/api/orders?id=7"), &[]);
    assert_eq!(r.status, 200);
    let echoed: serde_json::Value = serde_json::from_str(&r.body).expect("the echo is JSON");
    assert_eq!(echoed["uri"], "/api/orders");
    assert_eq!(echoed["query"], "id=7");
    assert_eq!(echoed["headers"]["host"], "echo.local");
    assert_eq!(echoed["headers"]["x-forwarded-for"], "127.0.0.1");
}

#[test]
fn http2_cleartext_with_prior_knowledge_is_served_when_the_listener_enables_it() {
    let up = Upstream::start("origin");
    let gw = Gateway::start_with(&everything_to(&up), Options { h2c: true, ..Options::default() });
    let c = reqwest::blocking::Client::builder().http2_prior_knowledge().build().expect("client");
    let r = c.get(gw.url("/x")).send().expect("h2c request");
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.text().expect("body"), "origin");
}

#[test]
fn sigterm_drains_requests_in_flight_then_exits() {
    let up = Upstream::start("origin");
    let mut gw = Gateway::start(&everything_to(&up));
    let url = gw.url("/slow/1500");
    let in_flight = std::thread::spawn(move || get(&client(), &url, &[]));
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    gw.signal("TERM");
    let reply = in_flight.join().expect("join");
    assert_eq!(reply.status, 200, "the request in flight was cut");
    assert_eq!(reply.body, "origin");
    let code = gw.wait_exit(Duration::from_secs(10));
    assert!(code.is_some(), "the gateway did not exit after SIGTERM");
    assert!(sent.elapsed() >= Duration::from_millis(1000));
    assert!(http_get_raw(gw.port, "/", "x").is_none(), "still accepting after exit");
}

#[test]
fn connections_waiting_for_their_next_request_at_sigterm_are_still_answered() {
    // When shutdown starts, Pingora alone drops at once every connection
    // that is waiting for a request: a client whose request was on the wire
    // (a connection accepted a moment before, or a pooled one reused just
    // then) would see it cut. The gateway gives them a moment to arrive.
    let up = Upstream::start("origin");
    let mut gw = Gateway::start(&everything_to(&up));
    let open = || {
        let s = TcpStream::connect(("127.0.0.1", gw.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        s
    };
    let request = |s: &mut TcpStream, path: &str| write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    // One connection accepted but with no request yet, one that has served
    // a request and waits, kept alive, for the next.
    let mut fresh = open();
    let mut pooled = open();
    request(&mut pooled, "/first").expect("write");
    let mut first = [0u8; 1024];
    let n = pooled.read(&mut first).expect("first response");
    assert!(
        String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&first[..n])
    );
    std::thread::sleep(Duration::from_millis(200));

    gw.signal("TERM");
    // Shutdown has begun once the listener stops accepting.
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", gw.port)).is_ok() {
        assert!(Instant::now() < deadline, "still accepting 5 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(5));
    }
    for (name, s) in [("fresh", &mut fresh), ("pooled", &mut pooled)] {
        let mut reply = String::new();
        let read = request(s, "/late").and_then(|()| s.read_to_string(&mut reply));
        assert!(
            reply.starts_with("HTTP/1.1 200") && reply.to_ascii_lowercase().contains("connection: close"),
            "{name} connection: {read:?} {reply:?}\n{}",
            gw.log()
        );
        assert!(reply.ends_with("origin"), "{name}: {reply:?}");
    }
    assert!(gw.wait_exit(Duration::from_secs(10)).is_some(), "the gateway did not exit after SIGTERM");
}
