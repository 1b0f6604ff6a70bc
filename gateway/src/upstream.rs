//! Upstreams at run time: the nodes of one upstream, how a node is chosen
//! for a request, and what is known of each node's health.
//!
//! Selection uses `pingora-load-balancing` (weighted round robin, weighted
//! random, ketama consistent hashing). It has no least-connections
//! algorithm, so that one counts the requests in flight per node here.
//! Nodes are grouped by `priority`: the lowest group with a usable node
//! serves. A node is usable when the active checks (if any) say it is
//! healthy, passive checks have not ejected it, and this request has not
//! tried it yet.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pingora_config::v1;
use pingora_config::v1::load_balancer::Algorithm;
use pingora_load_balancing::health_check::{HttpHealthCheck, TcpHealthCheck};
use pingora_load_balancing::selection::{BackendIter, BackendSelection, Consistent, Random, RoundRobin};
use pingora_load_balancing::{Backend, LoadBalancer};

/// One node, resolved.
#[derive(Debug)]
pub struct Node {
    pub addr: SocketAddr,
    /// `host:port` as configured, for the Host header in NODE mode and logs.
    pub host: String,
    pub port: u16,
    pub weight: usize,
    /// Requests in flight from this process (least connections).
    pub in_flight: AtomicUsize,
    /// Consecutive failures seen in real traffic.
    failures: AtomicU32,
    /// Until when (ms since the upstream was built) passive checks keep it out.
    ejected_until_ms: AtomicU64,
}

enum Selector {
    RoundRobin(Arc<LoadBalancer<RoundRobin>>),
    Random(Arc<LoadBalancer<Random>>),
    Consistent(Arc<LoadBalancer<Consistent>>),
    /// The round-robin balancer is kept only for its health state.
    LeastConnections(Arc<LoadBalancer<RoundRobin>>),
}

/// A load balancer whose backends carry health state.
pub trait HealthTarget: Send + Sync {
    fn backends(&self) -> &pingora_load_balancing::Backends;
}

impl<S> HealthTarget for LoadBalancer<S>
where
    S: BackendSelection + Send + Sync + 'static,
    S::Iter: BackendIter,
{
    fn backends(&self) -> &pingora_load_balancing::Backends {
        LoadBalancer::backends(self)
    }
}

/// The nodes of one priority group and their selector.
struct Group {
    /// Indexes into [`Upstream::nodes`].
    nodes: Vec<usize>,
    selector: Selector,
    /// The same balancer, when active checks run on it.
    checked: Option<Arc<dyn HealthTarget>>,
}

/// Passive health settings, resolved with their defaults.
struct Passive {
    threshold: u32,
    statuses: Vec<u16>,
    eject: Duration,
}

/// An upstream ready to serve: built once per config change (and reused
/// across reloads while its config is unchanged, so health state survives).
pub struct Upstream {
    pub config: v1::Upstream,
    pub nodes: Vec<Node>,
    groups: Vec<Group>,
    passive: Option<Passive>,
    born: Instant,
    pub scheme: v1::upstream::Scheme,
    /// Extra CAs trusted for the nodes (`tls.ca`), parsed once.
    pub ca: Option<Arc<Box<[pingora_core::tls::x509::X509]>>>,
    /// The client certificate presented to the nodes (`tls.client_cert`).
    pub client_cert: Option<Arc<pingora_core::utils::tls::CertKey>>,
}

/// Why an upstream cannot be built.
#[derive(Debug)]
pub struct UpstreamError(pub String);

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UpstreamError {}

fn backend(node: &Node, index: usize) -> Backend {
    let mut b = Backend {
        addr: pingora_core::protocols::l4::socket::SocketAddr::Inet(node.addr),
        weight: node.weight.max(1),
        ext: Default::default(),
    };
    b.ext.insert(index);
    b
}

fn load_balancer<S>(nodes: &[Node], members: &[usize]) -> LoadBalancer<S>
where
    S: BackendSelection + 'static,
    S::Iter: BackendIter,
{
    let backends: std::collections::BTreeSet<Backend> = members.iter().map(|&i| backend(&nodes[i], i)).collect();
    let discovery = pingora_load_balancing::discovery::Static::new(backends);
    let lb = LoadBalancer::<S>::from_backends(pingora_load_balancing::Backends::new(discovery));
    // Static discovery completes on its first poll, as pingora's own
    // `LoadBalancer::try_from_iter` relies on.
    {
        let mut update = std::pin::pin!(lb.update());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match update.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(Ok(())) => {}
            std::task::Poll::Ready(Err(e)) => log::error!("load balancer update failed: {e}"),
            std::task::Poll::Pending => log::error!("static discovery did not complete at once"),
        }
    }
    lb
}

impl Upstream {
    /// Resolves the nodes and builds the selectors. Blocking (DNS): call it
    /// off the request path.
    pub fn build(config: &v1::Upstream) -> Result<Upstream, UpstreamError> {
        let mut nodes = Vec::with_capacity(config.nodes.len());
        for n in &config.nodes {
            let port =
                u16::try_from(n.port).map_err(|_| UpstreamError(format!("node {}: port out of range", n.host)))?;
            let addr = resolve(&n.host, port)?;
            nodes.push(Node {
                addr,
                host: n.host.clone(),
                port,
                weight: n.weight.unwrap_or(1) as usize,
                in_flight: AtomicUsize::new(0),
                failures: AtomicU32::new(0),
                ejected_until_ms: AtomicU64::new(0),
            });
        }
        let mut priorities: Vec<i32> = config.nodes.iter().map(|n| n.priority).collect();
        priorities.sort_unstable();
        priorities.dedup();
        let algorithm = config.load_balancer.as_ref().map(|lb| lb.algorithm()).unwrap_or(Algorithm::RoundRobin);
        let active = config.health_check.as_ref().and_then(|h| h.active.as_ref());
        let mut groups = Vec::new();
        for p in priorities {
            // Weight 0 keeps a node configured but sends it nothing.
            let members: Vec<usize> =
                (0..nodes.len()).filter(|&i| config.nodes[i].priority == p && nodes[i].weight > 0).collect();
            if members.is_empty() {
                continue;
            }
            fn checked<S>(lb: &Arc<LoadBalancer<S>>, on: bool) -> Option<Arc<dyn HealthTarget>>
            where
                S: BackendSelection + Send + Sync + 'static,
                S::Iter: BackendIter,
            {
                on.then(|| lb.clone() as Arc<dyn HealthTarget>)
            }
            let on = active.is_some();
            let (selector, checked) = match algorithm {
                Algorithm::Random => {
                    let lb = Arc::new(with_health_check(load_balancer::<Random>(&nodes, &members), active, config));
                    (Selector::Random(lb.clone()), checked(&lb, on))
                }
                Algorithm::ConsistentHash => {
                    let lb = Arc::new(with_health_check(load_balancer::<Consistent>(&nodes, &members), active, config));
                    (Selector::Consistent(lb.clone()), checked(&lb, on))
                }
                Algorithm::LeastConnections => {
                    let lb = Arc::new(with_health_check(load_balancer::<RoundRobin>(&nodes, &members), active, config));
                    (Selector::LeastConnections(lb.clone()), checked(&lb, on))
                }
                Algorithm::RoundRobin | Algorithm::Unspecified => {
                    let lb = Arc::new(with_health_check(load_balancer::<RoundRobin>(&nodes, &members), active, config));
                    (Selector::RoundRobin(lb.clone()), checked(&lb, on))
                }
            };
            groups.push(Group { nodes: members, selector, checked });
        }
        let passive = config.health_check.as_ref().and_then(|h| h.passive.as_ref()).map(|p| Passive {
            threshold: p.unhealthy_threshold.unwrap_or(3),
            statuses: if p.unhealthy_statuses.is_empty() {
                vec![502, 503, 504]
            } else {
                p.unhealthy_statuses.iter().map(|&s| s as u16).collect()
            },
            eject: p.eject_duration.as_ref().map(duration).unwrap_or(Duration::from_secs(10)),
        });
        let (ca, client_cert) = upstream_tls(config.tls.as_ref())?;
        Ok(Upstream {
            config: config.clone(),
            nodes,
            groups,
            passive,
            born: Instant::now(),
            scheme: config.scheme(),
            ca,
            client_cert,
        })
    }

    /// Chooses a node for a request: `key` feeds consistent hashing, `tried`
    /// holds the nodes this request already failed on.
    pub fn select(&self, key: &[u8], tried: &[usize]) -> Option<usize> {
        let now_ms = self.born.elapsed().as_millis() as u64;
        let usable = |i: usize| !tried.contains(&i) && self.nodes[i].ejected_until_ms.load(Ordering::Relaxed) <= now_ms;
        for group in &self.groups {
            // A single node needs no balancer (and skips its iterator's
            // per-call allocation).
            if let [only] = group.nodes[..] {
                let healthy =
                    group.checked.as_ref().is_none_or(|c| c.backends().ready(&backend(&self.nodes[only], only)));
                if usable(only) && healthy {
                    return Some(only);
                }
                continue;
            }
            let max = group.nodes.len() * 2 + 1;
            let accept = |b: &Backend, healthy: bool| healthy && b.ext.get::<usize>().is_some_and(|&i| usable(i));
            let chosen = match &group.selector {
                Selector::RoundRobin(lb) => lb.select_with(key, max, accept),
                Selector::Random(lb) => lb.select_with(key, max, accept),
                Selector::Consistent(lb) => lb.select_with(key, max, accept),
                Selector::LeastConnections(lb) => {
                    let healthy = |i: usize| lb.backends().ready(&backend(&self.nodes[i], i));
                    let best = group.nodes.iter().copied().filter(|&i| usable(i) && healthy(i)).min_by_key(|&i| {
                        (self.nodes[i].in_flight.load(Ordering::Relaxed) * 1000) / self.nodes[i].weight.max(1)
                    });
                    if let Some(i) = best {
                        return Some(i);
                    }
                    continue;
                }
            };
            if let Some(i) = chosen.and_then(|b| b.ext.get::<usize>().copied()) {
                return Some(i);
            }
        }
        None
    }

    /// Records the outcome of a request to a node (passive health checks).
    /// `status` is the response status, `None` for a connection failure or
    /// timeout.
    pub fn observe(&self, node: usize, status: Option<u16>) {
        let Some(p) = &self.passive else { return };
        let Some(n) = self.nodes.get(node) else { return };
        let failed = status.is_none_or(|s| p.statuses.contains(&s));
        if !failed {
            n.failures.store(0, Ordering::Relaxed);
            return;
        }
        let count = n.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if count >= p.threshold {
            let until = self.born.elapsed() + p.eject;
            n.ejected_until_ms.store(until.as_millis() as u64, Ordering::Relaxed);
            n.failures.store(0, Ordering::Relaxed);
            log::warn!("upstream {}: node {} ejected for {:?} after {count} failures", self.config.id, n.addr, p.eject);
        }
    }

    /// Each node (`host:port` as configured) and whether requests may go to
    /// it now: its active checks pass and passive checks did not eject it.
    pub fn node_health(&self) -> Vec<(String, bool)> {
        let now_ms = self.born.elapsed().as_millis() as u64;
        let mut out = Vec::with_capacity(self.nodes.len());
        for group in &self.groups {
            for &i in &group.nodes {
                let node = &self.nodes[i];
                let checked = group.checked.as_ref().is_none_or(|c| c.backends().ready(&backend(node, i)));
                let ejected = node.ejected_until_ms.load(Ordering::Relaxed) > now_ms;
                out.push((format!("{}:{}", node.host, node.port), checked && !ejected));
            }
        }
        out
    }

    /// The backends whose active checks must run, with the check interval.
    pub fn health_checks(&self) -> Vec<(Arc<dyn HealthTarget>, Duration)> {
        let Some(active) = self.config.health_check.as_ref().and_then(|h| h.active.as_ref()) else { return Vec::new() };
        let interval = active.interval.as_ref().map(duration).unwrap_or(Duration::from_secs(5));
        self.groups.iter().filter_map(|g| g.checked.clone().map(|h| (h, interval))).collect()
    }
}

fn with_health_check<S>(
    mut lb: LoadBalancer<S>,
    active: Option<&v1::ActiveHealthCheck>,
    up: &v1::Upstream,
) -> LoadBalancer<S>
where
    S: BackendSelection + 'static,
    S::Iter: BackendIter,
{
    let Some(active) = active else { return lb };
    let timeout = active.timeout.as_ref().map(duration).unwrap_or(Duration::from_secs(2));
    let success = active.healthy_threshold.unwrap_or(2) as usize;
    let failure = active.unhealthy_threshold.unwrap_or(3) as usize;
    let ty = active.r#type();
    if ty == v1::active_health_check::Type::Tcp {
        let mut hc = TcpHealthCheck::new();
        hc.consecutive_success = success;
        hc.consecutive_failure = failure;
        hc.peer_template.options.connection_timeout = Some(timeout);
        hc.health_changed_callback = Some(Box::new(LogHealth(up.id.clone())));
        lb.set_health_check(hc);
    } else {
        let tls = ty == v1::active_health_check::Type::Https;
        let host = if active.host.is_empty() {
            up.nodes.first().map(|n| n.host.clone()).unwrap_or_default()
        } else {
            active.host.clone()
        };
        let mut hc = HttpHealthCheck::new(&host, tls);
        hc.consecutive_success = success;
        hc.consecutive_failure = failure;
        hc.peer_template.options.connection_timeout = Some(timeout);
        hc.peer_template.options.read_timeout = Some(timeout);
        hc.peer_template.options.verify_cert = !active.insecure_skip_verify;
        let path = if active.path.is_empty() { "/" } else { &active.path };
        hc.req.set_uri(http::Uri::try_from(path).unwrap_or_else(|_| http::Uri::from_static("/")));
        let statuses: Vec<u16> = active.healthy_statuses.iter().map(|&s| s as u16).collect();
        hc.validator = Some(Box::new(move |resp: &pingora_http::ResponseHeader| {
            let code = resp.status.as_u16();
            let ok = if statuses.is_empty() { (200..400).contains(&code) } else { statuses.contains(&code) };
            if ok {
                Ok(())
            } else {
                pingora_error::Error::e_explain(
                    pingora_error::ErrorType::CustomCode("unhealthy status", code),
                    "health check",
                )
            }
        }));
        hc.health_changed_callback = Some(Box::new(LogHealth(up.id.clone())));
        lb.set_health_check(Box::new(hc));
    }
    lb
}

struct LogHealth(String);

#[async_trait::async_trait]
impl pingora_load_balancing::health_check::HealthObserve for LogHealth {
    async fn observe(&self, target: &Backend, healthy: bool) {
        if healthy {
            log::info!("upstream {}: node {} is healthy", self.0, target.addr);
        } else {
            log::warn!("upstream {}: node {} is unhealthy", self.0, target.addr);
        }
    }
}

pub fn duration(d: &pbjson_types::Duration) -> Duration {
    Duration::new(d.seconds.max(0) as u64, d.nanos.max(0) as u32)
}

type TlsMaterial = (Option<Arc<Box<[pingora_core::tls::x509::X509]>>>, Option<Arc<pingora_core::utils::tls::CertKey>>);

/// Parses the upstream's CA and client certificate once, so that a bad PEM
/// rejects the config instead of failing requests.
fn upstream_tls(tls: Option<&v1::UpstreamTls>) -> Result<TlsMaterial, UpstreamError> {
    use pingora_core::tls::pkey::PKey;
    use pingora_core::tls::x509::X509;
    let Some(tls) = tls else { return Ok((None, None)) };
    let ca = if tls.ca.is_empty() {
        None
    } else {
        let certs = X509::stack_from_pem(tls.ca.as_bytes()).map_err(|e| UpstreamError(format!("tls.ca: {e}")))?;
        Some(Arc::new(certs.into_boxed_slice()))
    };
    let client_cert = match &tls.client_cert {
        Some(pair) => {
            let certs = X509::stack_from_pem(pair.cert.as_bytes())
                .map_err(|e| UpstreamError(format!("tls.client_cert.cert: {e}")))?;
            if certs.is_empty() {
                return Err(UpstreamError("tls.client_cert.cert: no certificate in the PEM text".into()));
            }
            let key = PKey::private_key_from_pem(pair.key.as_bytes())
                .map_err(|e| UpstreamError(format!("tls.client_cert.key: {e}")))?;
            Some(Arc::new(pingora_core::utils::tls::CertKey::new(certs, key)))
        }
        None => None,
    };
    Ok((ca, client_cert))
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, UpstreamError> {
    use std::net::ToSocketAddrs;
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    (host, port)
        .to_socket_addrs()
        .map_err(|e| UpstreamError(format!("node {host}:{port}: cannot resolve: {e}")))?
        .next()
        .ok_or_else(|| UpstreamError(format!("node {host}:{port}: resolves to no address")))
}
