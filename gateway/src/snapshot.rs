//! The live config, compiled: one immutable snapshot that every request
//! loads once, rebuilt off the request path on every change and swapped in
//! atomically (see [`crate::Live`]).
//!
//! Building a snapshot resolves everything a request would otherwise look
//! up: the route's service, its upstream, the effective timeouts (route,
//! then service, then upstream, then the gateway default), and the plugin
//! chain. Upstreams whose config did not change are carried over from the
//! previous snapshot, so their health state and counters survive a reload.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use pingora_config::v1;

use crate::shared::SharedConfig;

use crate::plugins::{self, BuildCx, Consumers, PluginChain, RouteInfo, ScopePlugins};
use crate::router::{RouteSpec, Router};
use crate::tls::Certificates;
use crate::upstream::{Upstream, duration};

/// Timeouts towards a node, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub send: Duration,
    pub read: Duration,
}

impl Timeouts {
    /// The gateway default when nothing else is configured.
    pub const DEFAULT: Timeouts =
        Timeouts { connect: Duration::from_secs(6), send: Duration::from_secs(6), read: Duration::from_secs(6) };

    /// `over` wins for each value it sets.
    fn overlay(self, over: Option<&v1::Timeouts>) -> Timeouts {
        let Some(t) = over else { return self };
        Timeouts {
            connect: t.connect.as_ref().map(duration).unwrap_or(self.connect),
            send: t.send.as_ref().map(duration).unwrap_or(self.send),
            read: t.read.as_ref().map(duration).unwrap_or(self.read),
        }
    }
}

/// A route, compiled.
pub struct Route {
    pub id: Arc<str>,
    /// Where matched requests go; `None` when a plugin answers them.
    pub upstream: Option<Arc<Upstream>>,
    pub timeouts: Timeouts,
    pub plugins: PluginChain,
    /// Ids and names for plugins, metrics and logs.
    pub info: Arc<RouteInfo>,
}

/// Everything a request needs, immutable.
pub struct Snapshot {
    pub router: Router,
    /// Routes in config order (disabled ones are not routed to).
    pub routes: Vec<Route>,
    /// Upstreams by id (`Config.upstreams`) and by owner for inline ones
    /// (`route:<id>`, `service:<id>`), kept to carry them over on reload.
    pub upstreams: HashMap<String, Arc<Upstream>>,
    pub certificates: Certificates,
    /// The global rules' plugins, run for every request.
    pub global: PluginChain,
    /// Consumers indexed by credential.
    pub consumers: Arc<Consumers>,
    /// The validated config this snapshot was built from.
    pub config: Arc<SharedConfig>,
}

/// Why a valid config still cannot be served (a node that does not
/// resolve, a plugin this build does not run yet).
#[derive(Debug)]
pub struct BuildError(pub Vec<String>);

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for BuildError {}

impl Snapshot {
    /// Compiles a validated config, which the snapshot keeps (shared with
    /// the store that holds it). `previous` lends its unchanged upstreams.
    /// Blocking (DNS): call it off the request path.
    pub fn build(
        config: Arc<SharedConfig>,
        defaults: Timeouts,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, BuildError> {
        let mut errors = Vec::new();
        let mut upstreams: HashMap<String, Arc<Upstream>> = HashMap::new();
        let prev = previous.map(|p| &p.upstreams);
        for u in &config.upstreams {
            upstream_for(&mut upstreams, prev, u.id.clone(), u, &mut errors);
        }
        let services: HashMap<&str, &v1::Service> = config.services.iter().map(|s| (s.id.as_str(), &**s)).collect();

        // Consumers first (auth plugins look them up); a consumer's own
        // plugins never authenticate, so they see an empty index.
        let no_consumers = Arc::new(Consumers::default());
        let consumers = {
            let mut cx = BuildCx {
                scope: String::new(),
                consumers: &no_consumers,
                upstreams: &mut upstreams,
                previous_upstreams: prev,
            };
            Arc::new(Consumers::build(&config.consumers, &mut cx, &mut errors))
        };
        let mut cx = BuildCx {
            scope: String::new(),
            consumers: &consumers,
            upstreams: &mut upstreams,
            previous_upstreams: prev,
        };
        let scope = |cx: &mut BuildCx<'_>, name: String, p: Option<&v1::Plugins>, errors: &mut Vec<String>| {
            let p = p?;
            cx.scope = name;
            match plugins::build_scope(p, cx) {
                Ok(s) => Some(s),
                Err(es) => {
                    errors.extend(es.into_iter().map(|e| format!("{}: {e}", cx.scope)));
                    None
                }
            }
        };
        let mut global_entries = Vec::new();
        for (i, g) in config.global_rules.iter().enumerate() {
            if let Some(s) = scope(&mut cx, format!("global_rules[{i}] ({})", g.id), g.plugins.as_ref(), &mut errors) {
                global_entries.extend(s.into_iter().filter_map(|(_, e)| e));
            }
        }
        let global = PluginChain::from_entries(global_entries, Vec::new());
        let mut service_scopes: HashMap<&str, ScopePlugins> = HashMap::new();
        for (i, sv) in config.services.iter().enumerate() {
            if let Some(s) = scope(&mut cx, format!("services[{i}] ({})", sv.id), sv.plugins.as_ref(), &mut errors) {
                service_scopes.insert(sv.id.as_str(), s);
            }
        }
        let mut pc_scopes: HashMap<&str, ScopePlugins> = HashMap::new();
        for (i, pc) in config.plugin_configs.iter().enumerate() {
            if let Some(s) =
                scope(&mut cx, format!("plugin_configs[{i}] ({})", pc.id), pc.plugins.as_ref(), &mut errors)
            {
                pc_scopes.insert(pc.id.as_str(), s);
            }
        }
        let mut route_scopes: Vec<Option<ScopePlugins>> = Vec::with_capacity(config.routes.len());
        for (i, r) in config.routes.iter().enumerate() {
            // Most routes have no plugins: name the scope only when it has.
            let s = match r.plugins {
                Some(_) => scope(&mut cx, format!("routes[{i}] ({})", r.id), r.plugins.as_ref(), &mut errors),
                None => None,
            };
            route_scopes.push(s);
        }
        drop(cx);

        // The strings every route's info holds, allocated once: the empty
        // one, and each service's id and name.
        let empty: Arc<str> = Arc::from("");
        let shared = |s: &str| if s.is_empty() { empty.clone() } else { Arc::from(s) };
        let service_names: HashMap<&str, (Arc<str>, Arc<str>)> =
            config.services.iter().map(|s| (s.id.as_str(), (shared(&s.id), shared(&s.name)))).collect();

        let mut routes = Vec::with_capacity(config.routes.len());
        let mut specs = Vec::with_capacity(config.routes.len());
        for (index, r) in config.routes.iter().enumerate() {
            let service = match &r.target {
                Some(v1::route::Target::ServiceId(id)) => services.get(id.as_str()).copied(),
                _ => None,
            };
            let upstream = match (&r.target, service.and_then(|s| s.target.as_ref())) {
                (Some(v1::route::Target::Upstream(u)), _) => {
                    upstream_for(&mut upstreams, prev, format!("route:{}", r.id), u, &mut errors)
                }
                (Some(v1::route::Target::UpstreamId(id)), _) => upstreams.get(id).cloned(),
                (_, Some(v1::service::Target::Upstream(u))) => upstream_for(
                    &mut upstreams,
                    prev,
                    format!("service:{}", service.map(|s| s.id.as_str()).unwrap_or_default()),
                    u,
                    &mut errors,
                ),
                (_, Some(v1::service::Target::UpstreamId(id))) => upstreams.get(id).cloned(),
                _ => None,
            };
            let timeouts = defaults
                .overlay(upstream.as_ref().and_then(|u| u.config.timeouts.as_ref()))
                .overlay(service.and_then(|s| s.timeouts.as_ref()))
                .overlay(r.timeouts.as_ref());
            let layers = plugins::Layers {
                service: service.and_then(|s| service_scopes.get(s.id.as_str())),
                plugin_config: pc_scopes.get(r.plugin_config_id.as_str()),
                route: route_scopes[index].as_ref(),
            };
            let chain = PluginChain::for_route(&layers);
            if upstream.is_none() && !chain.responds() {
                errors.push(format!("routes[{index}] ({}): no upstream and no plugin that answers", r.id));
            }
            let (service_id, service_name) = service
                .and_then(|s| service_names.get(s.id.as_str()).cloned())
                .unwrap_or_else(|| (empty.clone(), empty.clone()));
            let id = shared(&r.id);
            let info = Arc::new(RouteInfo { id: id.clone(), name: shared(&r.name), service_id, service_name });
            routes.push(Route { id, upstream, timeouts, plugins: chain, info });
            if r.enabled == Some(false) {
                continue;
            }
            let hosts = match (r.hosts.is_empty(), service) {
                (true, Some(s)) => &s.hosts,
                _ => &r.hosts,
            };
            specs.push(RouteSpec {
                index,
                hosts: hosts.into(),
                uris: r.uris.as_slice().into(),
                methods: r.methods().filter_map(method).collect(),
                headers: r.headers.as_slice().into(),
                query: r.query.as_slice().into(),
                cookies: r.cookies.as_slice().into(),
                remote_addrs: r.remote_addrs.iter().filter_map(|a| parse_net(a)).collect(),
                priority: r.priority,
            });
        }
        let certificates = match Certificates::build(&config.ssls, previous.map(|p| &p.certificates)) {
            Ok(c) => c,
            Err(e) => {
                errors.push(e);
                Certificates::default()
            }
        };
        let router = match Router::new(specs) {
            Ok(r) => r,
            Err(e) => {
                errors.push(format!("routes[{}]: {}", e.route, e.message));
                return Err(BuildError(errors));
            }
        };
        if !errors.is_empty() {
            return Err(BuildError(errors));
        }
        Ok(Snapshot { router, routes, upstreams, certificates, global, consumers, config })
    }
}

/// The upstream for `key`: already built in this snapshot, carried over from
/// the previous one when its config is unchanged, or built now.
pub(crate) fn upstream_for(
    upstreams: &mut HashMap<String, Arc<Upstream>>,
    previous: Option<&HashMap<String, Arc<Upstream>>>,
    key: String,
    cfg: &v1::Upstream,
    errors: &mut Vec<String>,
) -> Option<Arc<Upstream>> {
    if let Some(u) = upstreams.get(&key) {
        return Some(u.clone());
    }
    let reused = previous.and_then(|p| p.get(&key)).filter(|u| u.config == *cfg).cloned();
    let built = match reused {
        Some(u) => u,
        None => match Upstream::build(cfg) {
            Ok(u) => Arc::new(u),
            Err(e) => {
                errors.push(format!("{key}: {e}"));
                return None;
            }
        },
    };
    upstreams.insert(key, built.clone());
    Some(built)
}

fn method(m: v1::route::Method) -> Option<http::Method> {
    use v1::route::Method as M;
    Some(match m {
        M::Unspecified => return None,
        M::Get => http::Method::GET,
        M::Head => http::Method::HEAD,
        M::Post => http::Method::POST,
        M::Put => http::Method::PUT,
        M::Delete => http::Method::DELETE,
        M::Connect => http::Method::CONNECT,
        M::Options => http::Method::OPTIONS,
        M::Trace => http::Method::TRACE,
        M::Patch => http::Method::PATCH,
    })
}

/// A CIDR block, or a bare address as a /32 or /128.
pub fn parse_net(s: &str) -> Option<ipnet::IpNet> {
    s.parse::<ipnet::IpNet>().ok().or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::Request;

    fn build(yaml: &str) -> Snapshot {
        let config = match pingora_config::load_str::<v1::Config>(yaml, "test") {
            Ok((c, _)) => c,
            Err(e) => panic!("{e}"),
        };
        match Snapshot::build(Arc::new(config.into()), Timeouts::DEFAULT, None) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    fn find(s: &Snapshot, host: &str, path: &str) -> Option<String> {
        let headers = http::HeaderMap::new();
        let req = Request { host, path, query: None, method: &http::Method::GET, headers: &headers, client_ip: None };
        s.router.find(&req).map(|i| s.routes[i].id.to_string())
    }

    #[test]
    fn routes_carry_their_own_and_their_services_names_and_hosts() {
        let s = build(
            r#"
upstreams:
  - { id: u, nodes: [{ host: 127.0.0.1, port: 1 }] }
services:
  - { id: shop, name: Shop, hosts: [shop.test], upstream_id: u }
routes:
  - { id: cart, name: Cart, uris: [/cart], service_id: shop }
  - { id: bare, uris: [/bare], upstream_id: u }
  - { id: own-hosts, uris: [/own], hosts: [own.test], service_id: shop }
"#,
        );
        let info: Vec<_> = s
            .routes
            .iter()
            .map(|r| {
                assert_eq!(r.id, r.info.id, "a route's id is its info's");
                (&*r.info.id, &*r.info.name, &*r.info.service_id, &*r.info.service_name)
            })
            .collect();
        assert_eq!(info, [("cart", "Cart", "shop", "Shop"), ("bare", "", "", ""), ("own-hosts", "", "shop", "Shop")]);
        // A route without hosts of its own takes its service's.
        assert_eq!(find(&s, "shop.test", "/cart").as_deref(), Some("cart"));
        assert_eq!(find(&s, "other.test", "/cart"), None);
        assert_eq!(find(&s, "other.test", "/bare").as_deref(), Some("bare"));
        assert_eq!(find(&s, "own.test", "/own").as_deref(), Some("own-hosts"));
        assert_eq!(find(&s, "shop.test", "/own"), None);
    }
}
