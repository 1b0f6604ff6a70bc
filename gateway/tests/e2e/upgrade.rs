//! Graceful upgrade (Pingora's): a new process started with `--upgrade`
//! takes the listening sockets over from the running one, which is sent
//! SIGQUIT, keeps serving for a few seconds, then drains and exits. Clients
//! must not notice.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{Gateway, Upstream, client, everything_to, get, http_get_raw};

/// Requests sent while the load runs, and the failures seen (with the time
/// since the load started).
struct Tally {
    started: Instant,
    ok: AtomicUsize,
    failures: std::sync::Mutex<Vec<String>>,
}

impl Tally {
    fn new() -> Tally {
        Tally { started: Instant::now(), ok: AtomicUsize::new(0), failures: std::sync::Mutex::new(Vec::new()) }
    }

    /// Milliseconds since the load started.
    fn at(&self) -> u128 {
        self.started.elapsed().as_millis()
    }
}

/// Sends requests on 4 threads, each pausing 1 ms between two (to leave the
/// 2-core machine to the tests running beside), until `stop` or 60 s: two
/// threads reuse their connections (a pooled client, as browsers and SDKs
/// do), two open a new connection per request.
fn load(port: u16, stop: &Arc<AtomicBool>, tally: &Arc<Tally>) -> Vec<thread::JoinHandle<()>> {
    (0..4)
        .map(|i| {
            let (stop, tally) = (stop.clone(), tally.clone());
            thread::spawn(move || {
                let c = client();
                let url = format!("http://127.0.0.1:{port}/load");
                let deadline = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    let outcome = if i % 2 == 0 {
                        match c.get(&url).send() {
                            Ok(r) if r.status() == 200 => Ok(()),
                            Ok(r) => Err(format!("pooled: status {}", r.status())),
                            Err(e) => Err(format!("pooled: {e:?}")),
                        }
                    } else {
                        match http_get_raw(port, "/load", "localhost") {
                            Some((200, _)) => Ok(()),
                            other => Err(format!("new connection: {other:?}")),
                        }
                    };
                    match outcome {
                        Ok(()) => tally.ok.fetch_add(1, Ordering::SeqCst),
                        Err(e) => {
                            let at = tally.at();
                            tally.failures.lock().expect("lock").push(format!("at {at} ms: {e}"));
                            0
                        }
                    };
                    thread::sleep(Duration::from_millis(1));
                }
            })
        })
        .collect()
}

#[test]
fn a_graceful_upgrade_hands_the_listeners_over_without_failing_a_request() {
    let up = Upstream::start("origin");
    let mut old = Gateway::start(&everything_to(&up));
    let (stop, tally) = (Arc::new(AtomicBool::new(false)), Arc::new(Tally::new()));
    let workers = load(old.port, &stop, &tally);
    thread::sleep(Duration::from_millis(300));

    let mut new = old.start_upgrade();
    old.signal("QUIT");
    let quit_at = tally.at();
    // Pingora keeps the old process accepting for 5 s, then it drains.
    let code = old.wait_exit(Duration::from_secs(20));
    let exit_at = tally.at();
    let ok_when_old_exited = tally.ok.load(Ordering::SeqCst);
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().expect("join");
    }

    assert_eq!(code, Some(0), "the old process did not exit:\n{}", old.log());
    assert!(old.log().contains("listener sockets sent"), "{}", old.log());
    let failures = tally.failures.lock().expect("lock").clone();
    let ok = tally.ok.load(Ordering::SeqCst);
    assert!(ok > 100, "only {ok} requests went through");
    assert!(ok > ok_when_old_exited, "no request succeeded after the old process exited");
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during the upgrade (SIGQUIT at {quit_at} ms, old exited by {exit_at} ms), first: {:?}\nold:\n{}\nnew:\n{}",
        failures.len(),
        ok + failures.len(),
        &failures[..failures.len().min(5)],
        old.log(),
        new.log()
    );
    // The new process serves on the same port, and keeps running.
    assert_eq!(get(&client(), &new.url("/after"), &[]).body, "origin");
    assert_eq!(new.wait_exit(Duration::from_millis(200)), None, "the new process exited:\n{}", new.log());
}

/// A client that keeps one HTTP/1.1 connection and reuses it for as long as
/// the server allows, as connection pools do.
struct KeepAlive {
    conn: BufReader<TcpStream>,
}

impl KeepAlive {
    fn open(port: u16) -> KeepAlive {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        KeepAlive { conn: BufReader::new(s) }
    }

    /// GETs `path`: the status and the response's `Connection` header.
    fn get(&mut self, path: &str) -> Result<(u16, String), String> {
        let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        self.conn.get_mut().write_all(req.as_bytes()).map_err(|e| format!("write: {e}"))?;
        let mut line = String::new();
        match self.conn.read_line(&mut line) {
            Ok(0) => return Err("the server closed the connection instead of answering".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
        let status =
            line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or(format!("status line {line:?}"))?;
        let (mut connection, mut len) = (String::new(), 0);
        loop {
            let mut h = String::new();
            self.conn.read_line(&mut h).map_err(|e| format!("read: {e}"))?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "connection" => connection = v.trim().to_ascii_lowercase(),
                    "content-length" => len = v.trim().parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; len];
        self.conn.read_exact(&mut body).map_err(|e| format!("read body: {e}"))?;
        Ok((status, connection))
    }
}

#[test]
fn during_an_upgrade_the_old_process_tells_keep_alive_clients_to_reconnect() {
    // A client whose pooled connection is cut between two requests sees an
    // error when its next request was already on the wire (the failures
    // the load test above can catch): the old process must instead answer
    // with `Connection: close` while it hands over, so that clients move
    // to new connections before it stops.
    let up = Upstream::start("origin");
    let old = Gateway::start(&everything_to(&up));
    // Only the old process listens yet: this connection is its.
    let mut client = KeepAlive::open(old.port);
    assert_eq!(client.get("/before"), Ok((200, "keep-alive".to_owned())));
    let _new = old.start_upgrade();
    old.signal("QUIT");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut kept_alive = 0;
    let outcome = loop {
        thread::sleep(Duration::from_millis(50));
        match client.get("/during") {
            Ok((200, c)) if c == "close" => break Ok(()),
            Ok((200, _)) if Instant::now() < deadline => kept_alive += 1,
            other => break Err(other),
        }
    };
    assert_eq!(
        outcome,
        Ok(()),
        "after {kept_alive} responses with keep-alive during the handover, the connection failed:\n{}",
        old.log()
    );
}
