//! `make bench-config`: load and validate a generated 10,000-route config,
//! and print the time and the peak memory of the process.
//!
//! Targets on a 2-core machine: under 300 ms and under 100 MB.

use std::fmt::Write as _;
use std::time::Instant;

use pingora_config::{load_str, v1};

fn config(routes: usize) -> String {
    let mut y = String::from("upstreams:\n");
    for u in 0..100 {
        let _ = writeln!(
            y,
            "  - id: up-{u}\n    nodes:\n      - {{ host: 10.0.{}.{}, port: 8080, weight: 2 }}\n      - {{ host: backend-{u}.internal, port: 8080 }}\n    load_balancer: {{ algorithm: ROUND_ROBIN }}\n    health_check:\n      active: {{ type: HTTP, path: /healthz, interval: 5s, timeout: 1s }}",
            u / 250,
            u % 250 + 1
        );
    }
    y.push_str("routes:\n");
    for r in 0..routes {
        let _ = writeln!(
            y,
            "  - id: route-{r}\n    name: Route {r}\n    hosts: [\"svc{}.example.com\", \"*.svc{}.example.com\"]\n    uris: [\"/api/v1/items/{r}/*\", \"/api/v1/users/:id/items/{r}\"]\n    methods: [GET, POST]\n    labels: {{ team: t{}, tier: gold }}\n    upstream_id: up-{}\n    timeouts: {{ connect: 1s, read: 10s }}\n    plugins:\n      limit_count: {{ count: 1000, time_window: 60s, key: {{ client_ip: true }} }}\n      proxy_rewrite: {{ headers: {{ set: [{{ name: X-Route, value: \"{r}\" }}] }} }}",
            r % 50,
            r % 50,
            r % 10,
            r % 100
        );
    }
    y
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn main() {
    let routes = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let text = config(routes);
    // Build the schema model outside the measurement: it happens once per process.
    let _ = pingora_config::model();
    if std::env::var_os("MEMORY").is_some() {
        tree_memory(&text);
        return;
    }
    if std::env::var_os("PHASES").is_some() {
        phases(&text);
        raw_events(&text);
    }
    let base = peak_rss_mb();
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let (cfg, _) = match load_str::<v1::Config>(&text, "generated.yaml") {
            Ok(c) => c,
            Err(report) => {
                eprintln!("{report}");
                std::process::exit(1);
            }
        };
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(cfg.routes.len(), routes);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "bench-config: {routes} routes ({:.1} MB of YAML): load+validate median {:.0} ms (min {:.0} ms); peak RSS {:.0} MB (model and text {:.0} MB before loading)",
        text.len() as f64 / 1e6,
        times[times.len() / 2],
        times[0],
        peak_rss_mb(),
        base
    );
}

#[allow(dead_code)]
fn phases(text: &str) {
    let t = Instant::now();
    let tree = pingora_config_rules::parse_yaml(text).expect("parses");
    let a = t.elapsed();
    let t = Instant::now();
    let c = pingora_config_rules::check(pingora_config::model(), "pingora_config.v1.Config", &tree);
    let b = t.elapsed();
    let t = Instant::now();
    let j = tree.to_json();
    let cc = t.elapsed();
    let t = Instant::now();
    let cfg: v1::Config = serde_json::from_value(j).expect("decodes");
    let d = t.elapsed();
    eprintln!(
        "parse {a:?} check {b:?} ({} violations) to_json {cc:?} decode {d:?} routes {}",
        c.violations.len(),
        cfg.routes.len()
    );
}

#[allow(dead_code)]
fn raw_events(text: &str) {
    let t = Instant::now();
    let n = saphyr_parser::Parser::new_from_str(text).count();
    eprintln!("saphyr events only: {n} events in {:?}", t.elapsed());
}

#[allow(dead_code)]
fn tree_memory(text: &str) {
    let before = current_rss_mb();
    let tree = pingora_config_rules::parse_yaml(text).expect("parses");
    let after_tree = current_rss_mb();
    let cfg: v1::Config = serde::Deserialize::deserialize(&tree).expect("decodes");
    let after_cfg = current_rss_mb();
    drop(tree);
    eprintln!(
        "tree {:.0} MB, config {:.0} MB ({} routes)",
        after_tree - before,
        after_cfg - after_tree,
        cfg.routes.len()
    );
}

fn current_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}
