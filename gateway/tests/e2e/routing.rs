//! Routing: every matcher and the precedence rules, as a client sees them.

use crate::harness::{Gateway, Upstream, client, get, send};

/// A route answered by the mock plugin with its own id.
fn mock_route(id: &str, extra: &str) -> String {
    format!(
        "  - id: {id}\n{extra}    plugins: {{ mock: {{ status: 200, body: \"{id}\", content_type: text/plain }} }}\n"
    )
}

fn config(routes: &[String]) -> String {
    format!("routes:\n{}", routes.concat())
}

#[test]
fn nothing_matching_gets_404_with_a_clear_body() {
    let gw = Gateway::start(&config(&[mock_route("a", "    uris: [\"/a\"]\n")]));
    let r = get(&client(), &gw.url("/nope"), &[]);
    assert_eq!(r.status, 404);
    assert_eq!(r.body, "{\"error\":\"no route matches this request\"}\n");
    assert_eq!(r.header("content-type"), "application/json");
}

#[test]
fn exact_beats_parameter_beats_prefix_and_longer_prefix_beats_shorter() {
    let gw = Gateway::start(&config(&[
        mock_route("all", "    uris: [\"/*\"]\n"),
        mock_route("api", "    uris: [\"/api/*\"]\n"),
        mock_route("api-v1", "    uris: [\"/api/v1/*\"]\n"),
        mock_route("user", "    uris: [\"/api/v1/users/:id\"]\n"),
        mock_route("me", "    uris: [\"/api/v1/users/me\"]\n"),
    ]));
    let c = client();
    let body = |p: &str| get(&c, &gw.url(p), &[]).body;
    assert_eq!(body("/api/v1/users/me"), "me");
    assert_eq!(body("/api/v1/users/42"), "user");
    assert_eq!(body("/api/v1/users/42/orders"), "api-v1");
    assert_eq!(body("/api/v2"), "api");
    assert_eq!(body("/"), "all");
    assert_eq!(body("/elsewhere?x=1"), "all");
}

#[test]
fn exact_host_beats_wildcard_beats_hostless() {
    let gw = Gateway::start(&config(&[
        mock_route("any", "    uris: [\"/*\"]\n"),
        mock_route("wild", "    hosts: [\"*.example.com\"]\n    uris: [\"/*\"]\n"),
        mock_route("deeper", "    hosts: [\"*.api.example.com\"]\n    uris: [\"/*\"]\n"),
        mock_route("exact", "    hosts: [\"www.example.com\"]\n    uris: [\"/*\"]\n"),
    ]));
    let c = client();
    let body = |host: &str| get(&c, &gw.url("/x"), &[("host", host)]).body;
    assert_eq!(body("www.example.com"), "exact");
    assert_eq!(body("WWW.Example.com:8080"), "exact");
    assert_eq!(body("shop.example.com"), "wild");
    assert_eq!(body("v1.api.example.com"), "deeper");
    assert_eq!(body("example.com"), "any");
    assert_eq!(body("other.org"), "any");
}

#[test]
fn a_host_match_beats_a_better_uri_match_without_host() {
    let gw = Gateway::start(&config(&[
        mock_route("exact-uri", "    uris: [\"/a/b\"]\n"),
        mock_route("host-prefix", "    hosts: [\"h.test\"]\n    uris: [\"/*\"]\n"),
    ]));
    assert_eq!(get(&client(), &gw.url("/a/b"), &[("host", "h.test")]).body, "host-prefix");
    assert_eq!(get(&client(), &gw.url("/a/b"), &[("host", "other.test")]).body, "exact-uri");
}

#[test]
fn priority_breaks_ties_then_config_order() {
    let gw = Gateway::start(&config(&[
        mock_route("first", "    uris: [\"/t\"]\n"),
        mock_route("high", "    uris: [\"/t\"]\n    priority: 10\n"),
        mock_route("second", "    uris: [\"/u\"]\n"),
        mock_route("third", "    uris: [\"/u\"]\n"),
    ]));
    assert_eq!(get(&client(), &gw.url("/t"), &[]).body, "high");
    assert_eq!(get(&client(), &gw.url("/u"), &[]).body, "second");
}

#[test]
fn methods_headers_query_cookies_and_remote_addresses_filter_routes() {
    let gw = Gateway::start(&config(&[
        mock_route("fallback", "    uris: [\"/f\"]\n    priority: -1\n"),
        mock_route("post", "    uris: [\"/f\"]\n    methods: [POST, PUT]\n"),
        mock_route("beta", "    uris: [\"/f\"]\n    headers: [{ name: X-Beta, value: { exact: \"1\" } }]\n"),
        mock_route(
            "mobile",
            "    uris: [\"/f\"]\n    headers: [{ name: user-agent, value: { regex: \"(?i)mobile\" } }]\n",
        ),
        mock_route("query", "    uris: [\"/f\"]\n    query: [{ name: v, value: { prefix: \"2\" } }]\n"),
        mock_route("cookie", "    uris: [\"/f\"]\n    cookies: [{ name: tier, value: { exact: gold } }]\n"),
        mock_route("not-debug", "    uris: [\"/g\"]\n    headers: [{ name: x-debug, value: { present: true }, }]\n"),
        mock_route("nobody", "    uris: [\"/f\"]\n    remote_addrs: [\"10.0.0.0/8\"]\n    priority: 100\n"),
        mock_route("loopback", "    uris: [\"/l\"]\n    remote_addrs: [\"127.0.0.0/8\", \"::1\"]\n"),
    ]));
    let c = client();
    let r = |m: &str, p: &str, h: &[(&str, &str)]| send(&c, m, &gw.url(p), h).body;
    assert_eq!(r("GET", "/f", &[]), "fallback");
    assert_eq!(r("POST", "/f", &[]), "post");
    assert_eq!(r("DELETE", "/f", &[]), "fallback");
    assert_eq!(r("GET", "/f", &[("x-beta", "1")]), "beta");
    assert_eq!(r("GET", "/f", &[("x-beta", "2")]), "fallback");
    assert_eq!(r("GET", "/f", &[("user-agent", "Some Mobile Browser")]), "mobile");
    assert_eq!(r("GET", "/f?a=b&v=2.1", &[]), "query");
    assert_eq!(r("GET", "/f?v=1", &[]), "fallback");
    assert_eq!(r("GET", "/f", &[("cookie", "a=b; tier=gold")]), "cookie");
    assert_eq!(r("GET", "/f", &[("cookie", "tier=silver")]), "fallback");
    assert_eq!(send(&c, "GET", &gw.url("/g"), &[("x-debug", "")]).body, "not-debug");
    assert_eq!(send(&c, "GET", &gw.url("/g"), &[]).status, 404);
    assert_eq!(r("GET", "/l", &[]), "loopback");
}

#[test]
fn a_disabled_route_matches_nothing() {
    let gw = Gateway::start(&config(&[
        mock_route("off", "    uris: [\"/off\"]\n    enabled: false\n"),
        mock_route("on", "    uris: [\"/on\"]\n"),
    ]));
    assert_eq!(get(&client(), &gw.url("/off"), &[]).status, 404);
    assert_eq!(get(&client(), &gw.url("/on"), &[]).body, "on");
}

#[test]
fn a_route_inherits_hosts_and_upstream_from_its_service() {
    let a = Upstream::start("svc-node");
    let b = Upstream::start("direct-node");
    let gw = Gateway::start(&format!(
        "services:\n  - id: shop\n    hosts: [\"shop.test\"]\n    upstream_id: shop-up\nroutes:\n  - id: via-service\n    uris: [\"/*\"]\n    service_id: shop\n  - id: direct\n    uris: [\"/*\"]\n    upstream: {{ nodes: [{{ host: 127.0.0.1, port: {} }}] }}\nupstreams:\n  - id: shop-up\n    nodes: [{{ host: 127.0.0.1, port: {} }}]\n",
        b.port(),
        a.port()
    ));
    let c = client();
    assert_eq!(get(&c, &gw.url("/buy"), &[("host", "shop.test")]).body, "svc-node");
    assert_eq!(get(&c, &gw.url("/buy"), &[("host", "other.test")]).body, "direct-node");
}

#[test]
fn requests_reach_the_upstream_with_path_query_method_and_forwarding_headers() {
    let up = Upstream::start("origin");
    let gw = Gateway::start(&format!(
        "routes:\n  - id: r\n    uris: [\"/*\"]\n    upstream_id: u\nupstreams:\n  - id: u\n    nodes: [{{ host: 127.0.0.1, port: {} }}]\n",
        up.port()
    ));
    let r = send(&client(), "PUT", &gw.url("/items/7?x=1"), &[("host", "api.test")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-seen-path"), "/items/7?x=1");
    assert_eq!(r.header("x-seen-method"), "PUT");
    assert_eq!(r.header("x-seen-host"), "api.test");
    assert_eq!(r.header("x-seen-xff"), "127.0.0.1");
}

#[test]
fn host_passing_modes_set_the_host_the_node_sees() {
    let up = Upstream::start("origin");
    let gw = Gateway::start(&format!(
        "routes:\n  - {{ id: pass, uris: [\"/pass\"], upstream_id: pass }}\n  - {{ id: node, uris: [\"/node\"], upstream_id: node }}\n  - {{ id: rewrite, uris: [\"/rewrite\"], upstream_id: rewrite }}\nupstreams:\n  - {{ id: pass, nodes: [{{ host: 127.0.0.1, port: {p} }}], pass_host: PASS }}\n  - {{ id: node, nodes: [{{ host: 127.0.0.1, port: {p} }}], pass_host: NODE }}\n  - {{ id: rewrite, nodes: [{{ host: 127.0.0.1, port: {p} }}], pass_host: REWRITE, upstream_host: internal.test }}\n",
        p = up.port()
    ));
    let c = client();
    let seen = |p: &str| get(&c, &gw.url(p), &[("host", "public.test")]).header("x-seen-host");
    assert_eq!(seen("/pass"), "public.test");
    assert_eq!(seen("/node"), format!("127.0.0.1:{}", up.port()));
    assert_eq!(seen("/rewrite"), "internal.test");
}
