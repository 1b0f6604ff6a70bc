//! How fast `Router::find` is, with 1 route and with 10,000.
//!
//! Builds a realistic config (exact and wildcard hosts; exact, prefix and
//! parameter URIs; some filters), then times `find` on requests that each hit
//! one route: against a router holding only that route, one holding it and 9
//! routes of the other kinds, and the full one. Routing does not scan routes,
//! so 10 and 10,000 routes should cost the same; the 1-route router skips the
//! lookups of the kinds of index it does not have.
//!
//! ```text
//! cargo run --release -p pingora-config-gateway --example bench_router [millions]
//! ```

use std::hint::black_box;
use std::net::IpAddr;
use std::time::Instant;

use gateway::router::{Request, RouteSpec, Router};
use http::{HeaderMap, Method};
use pingora_config::v1::string_match::Match;
use pingora_config::v1::{KeyValueMatch, StringMatch};

const ROUTES: usize = 10_000;

/// Route `i` of the config: five kinds, in turn.
fn route(i: usize) -> RouteSpec<'static> {
    let mut spec = RouteSpec { index: i, priority: (i % 3) as i32, ..RouteSpec::default() };
    match i % 5 {
        0 => {
            spec.hosts = vec![format!("svc{i}.example.com")].into();
            spec.uris = vec![format!("/api/v1/svc{i}/status"), format!("/api/v1/svc{i}/*")].into();
        }
        1 => {
            spec.hosts = vec![format!("*.tenant{i}.example.net")].into();
            spec.uris = vec![format!("/t{i}/*")].into();
        }
        2 => spec.uris = vec![format!("/users{i}/:id/orders/:order")].into(),
        3 => spec.uris = vec![format!("/docs/v{i}/*")].into(),
        _ => {
            spec.uris = vec![format!("/static/{i}/index.html")].into();
            spec.methods = vec![Method::GET, Method::HEAD];
            let value = Some(StringMatch { invert: false, r#match: Some(Match::Prefix("mobile".into())) });
            spec.headers = vec![KeyValueMatch { name: "x-client".into(), value }].into();
        }
    }
    spec
}

/// A request hitting one route, described by what it hits.
struct Case {
    name: &'static str,
    route: usize,
    host: &'static str,
    path: &'static str,
}

const CASES: [Case; 5] = [
    Case { name: "exact host, exact URI", route: 4000, host: "svc4000.example.com", path: "/api/v1/svc4000/status" },
    Case {
        name: "wildcard host, prefix",
        route: 4001,
        host: "App.tenant4001.example.net:443",
        path: "/t4001/js/app.js",
    },
    Case { name: "any host, parameter URI", route: 4002, host: "example.org", path: "/users4002/42/orders/7" },
    Case { name: "any host, prefix", route: 4003, host: "example.org", path: "/docs/v4003/guide/intro.html" },
    Case { name: "any host, exact + filters", route: 4004, host: "example.org", path: "/static/4004/index.html" },
];

/// Nanoseconds per `find`, the best of five runs of `n` finds.
fn time(router: &Router, request: &Request<'_>, expected: usize, n: u64) -> f64 {
    assert_eq!(router.find(request), Some(expected), "the request hits its route");
    (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..n {
                black_box(router.find(black_box(request)));
            }
            start.elapsed().as_nanos() as f64 / n as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let millions: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2);
    let n = millions * 1_000_000;
    let start = Instant::now();
    let all = Router::new((0..ROUTES).map(route).collect()).expect("the generated routes are valid");
    println!("built {ROUTES} routes in {:.1} ms", start.elapsed().as_secs_f64() * 1e3);
    let mut headers = HeaderMap::new();
    headers.insert("x-client", http::HeaderValue::from_static("mobile-ios/17"));
    headers.insert("user-agent", http::HeaderValue::from_static("bench/1.0"));
    let client_ip: Option<IpAddr> = Some([192, 0, 2, 1].into());

    println!("{millions}M finds per run, best of 5 runs; \"10 routes\": the route and 9 of the other kinds\n");
    println!("{:<28} {:>10} {:>10} {:>10} {:>9}", "request", "1 route", "10 routes", "10k routes", "10k / 1");
    for case in &CASES {
        let one = Router::new(vec![route(case.route)]).expect("the route is valid");
        let ten = Router::new((0..9).chain([case.route]).map(route).collect()).expect("the routes are valid");
        let request = Request {
            host: case.host,
            path: case.path,
            query: Some("page=2&sort=desc"),
            method: &Method::GET,
            headers: &headers,
            client_ip,
        };
        let [t1, t10, t10k] = [&one, &ten, &all].map(|router| time(router, &request, case.route, n));
        println!("{:<28} {:>7.1} ns {:>7.1} ns {:>7.1} ns {:>8.2}x", case.name, t1, t10, t10k, t10k / t1);
    }
}
