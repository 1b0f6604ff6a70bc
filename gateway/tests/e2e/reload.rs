//! Hot reload of the config file: live within a second, no failed request,
//! and a rejected file never replaces the running config.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{Gateway, Upstream, client, get};

fn two_routes(body: &str, up: &Upstream) -> String {
    format!(
        "routes:\n  - id: hello\n    uris: [\"/hello\"]\n    plugins: {{ mock: {{ body: \"{body}\", content_type: text/plain }} }}\n  - id: api\n    uris: [\"/api/*\"]\n    upstream_id: origin\nupstreams:\n  - id: origin\n    nodes: [{{ host: 127.0.0.1, port: {} }}]\n",
        up.port()
    )
}

#[test]
fn an_edit_is_live_within_a_second() {
    let up = Upstream::start("origin");
    let gw = Gateway::start(&two_routes("v1", &up));
    let c = client();
    assert_eq!(get(&c, &gw.url("/hello"), &[]).body, "v1");
    let written = Instant::now();
    gw.write_config(&two_routes("v2", &up));
    gw.wait_for("v2 served", Duration::from_secs(1), || get(&c, &gw.url("/hello"), &[]).body == "v2");
    assert!(written.elapsed() < Duration::from_secs(1));
}

#[test]
fn an_invalid_edit_is_rejected_logged_with_its_line_and_the_old_config_keeps_serving() {
    let up = Upstream::start("origin");
    let gw = Gateway::start(&two_routes("v1", &up));
    gw.write_config("routes:\n  - id: hello\n    uris: [\"/hello\"]\n    upsteam_id: origin\n");
    gw.wait_for("the rejection logged", Duration::from_secs(2), || gw.log().contains("config change rejected"));
    let log = gw.log();
    assert!(
        log.contains("config.yaml:4:5: routes[0].upsteam_id: unknown field `upsteam_id`; did you mean `upstream_id`?"),
        "{log}"
    );
    let c = client();
    assert_eq!(get(&c, &gw.url("/hello"), &[]).body, "v1");
    assert_eq!(get(&c, &gw.url("/api/x"), &[]).body, "origin");
    // A later valid edit is applied.
    gw.write_config(&two_routes("v3", &up));
    gw.wait_for("v3 served", Duration::from_secs(2), || get(&c, &gw.url("/hello"), &[]).body == "v3");
}

#[test]
fn a_valid_file_that_cannot_be_served_is_rejected_too() {
    let up = Upstream::start("origin");
    let gw = Gateway::start(&two_routes("v1", &up));
    // PEM-shaped (the schema's rule) but not a certificate: only building
    // the snapshot finds out.
    gw.write_config(&format!(
        "{}ssls:\n  - id: broken\n    snis: [\"api.test\"]\n    cert: \"-----BEGIN CERTIFICATE-----\\nbm90IGEgY2VydA==\\n-----END CERTIFICATE-----\\n\"\n    key: \"-----BEGIN PRIVATE KEY-----\\nbm90IGEga2V5\\n-----END PRIVATE KEY-----\\n\"\n",
        two_routes("v2", &up)
    ));
    gw.wait_for("the rejection logged", Duration::from_secs(5), || gw.log().contains("config change rejected"));
    assert!(gw.log().contains("ssls[0] (broken): certificate"), "{}", gw.log());
    assert_eq!(get(&client(), &gw.url("/hello"), &[]).body, "v1");
}

#[test]
fn fifty_rewrites_under_load_fail_no_request() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let config = |i: usize| {
        let (first, second) = if i.is_multiple_of(2) { (&a, &b) } else { (&b, &a) };
        format!(
            "routes:\n  - id: r{i}\n    uris: [\"/*\"]\n    upstream_id: u\n  - id: mock\n    uris: [\"/m\"]\n    plugins: {{ mock: {{ body: \"{i}\" }} }}\nupstreams:\n  - id: u\n    nodes:\n      - {{ host: 127.0.0.1, port: {}, weight: {} }}\n      - {{ host: 127.0.0.1, port: {} }}\n",
            first.port(),
            1 + i % 3,
            second.port()
        )
    };
    let gw = Gateway::start(&config(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let url = gw.url("/load");
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed, url) = (stop.clone(), ok.clone(), failed.clone(), url.clone());
            std::thread::spawn(move || {
                let c = client();
                let deadline = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    match c.get(&url).send() {
                        Ok(r) if r.status().is_success() => ok.fetch_add(1, Ordering::SeqCst),
                        _ => failed.fetch_add(1, Ordering::SeqCst),
                    };
                }
            })
        })
        .collect();
    let c = client();
    for i in 1..=50 {
        gw.write_config(&config(i));
        gw.wait_for("the rewrite applied", Duration::from_secs(2), || {
            get(&c, &gw.url("/m"), &[]).body == i.to_string()
        });
    }
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().expect("join");
    }
    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    assert!(ok > 200, "only {ok} requests went through");
    assert_eq!(failed, 0, "{failed} of {} requests failed during 50 reloads", ok + failed);
}

/// Bytes the process has read so far (`rchar` of `/proc/PID/io`).
fn bytes_read(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).expect("/proc/PID/io");
    io.lines().find_map(|l| l.strip_prefix("rchar: ")).and_then(|v| v.trim().parse().ok()).expect("rchar")
}

#[test]
fn an_idle_gateway_does_not_keep_rereading_its_config() {
    // Reading the file raises open and access events on the watched
    // directory; a watcher that reloads on those reads the file forever.
    let up = Upstream::start("origin");
    let padding = format!("# {}\n", "x".repeat(200_000));
    let gw = Gateway::start(&format!("{padding}{}", two_routes("v1", &up)));
    std::thread::sleep(Duration::from_millis(300));
    let before = bytes_read(gw.pid());
    std::thread::sleep(Duration::from_secs(1));
    let read = bytes_read(gw.pid()) - before;
    assert!(read < 100_000, "an idle gateway read {read} bytes in a second (its config is 200 KB)");
    // A real change is still picked up.
    gw.write_config(&two_routes("v2", &up));
    let c = client();
    gw.wait_for("v2 served", Duration::from_secs(1), || get(&c, &gw.url("/hello"), &[]).body == "v2");
}
