//! The request life cycle on Pingora's `ProxyHttp` phases
//! (see Pingora's `docs/user_guide/phase.md`):
//!
//! 1. `request_filter`: load the snapshot once, route the request (404 when
//!    nothing matches), run the route's plugins (a plugin may answer);
//! 2. `upstream_peer`: choose a node of the route's upstream, skipping the
//!    nodes this request already failed on; build the peer with the
//!    route's timeouts, TLS and ALPN;
//! 3. `upstream_request_filter`: Host header by `pass_host`, forwarding
//!    headers;
//! 4. `fail_to_connect`: retry on another node while retries and the retry
//!    timeout allow; record the failure for passive health checks;
//! 5. `upstream_response_filter`: record the status for passive checks;
//! 6. `fail_to_proxy`: timeouts become 504, other upstream errors 502;
//! 7. `logging`: release the node's in-flight count.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use pingora_config::v1::upstream::{PassHost, Scheme};
use pingora_core::protocols::ALPN;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use crate::Live;
use crate::plugins::Flow;
use crate::router::Request;
use crate::snapshot::{Route, Snapshot};
use crate::upstream::Upstream;

/// The gateway's `ProxyHttp` implementation.
pub struct Gateway {
    pub live: Arc<Live>,
    /// Requests in flight in this process (for draining on shutdown).
    pub in_flight: Arc<AtomicUsize>,
    /// Set once a graceful upgrade or shutdown has begun.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
}

/// Counts a request in flight for as long as its context lives.
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(counter: &Arc<AtomicUsize>) -> InFlight {
        counter.fetch_add(1, Ordering::Relaxed);
        InFlight(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Per-request state.
pub struct Ctx {
    _in_flight: InFlight,
    snapshot: Option<Arc<Snapshot>>,
    route: Option<usize>,
    /// The node chosen last, and every node tried so far.
    node: Option<usize>,
    tried: smallvec::SmallVec<[usize; 4]>,
    started: Instant,
    tls: bool,
}

impl Ctx {
    fn route(&self) -> Option<&Route> {
        Some(&self.snapshot.as_ref()?.routes[self.route?])
    }

    fn upstream(&self) -> Option<&Arc<Upstream>> {
        self.route()?.upstream.as_ref()
    }
}

static X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: http::HeaderName = http::HeaderName::from_static("x-forwarded-proto");

const NOT_FOUND: &[u8] = b"{\"error\":\"no route matches this request\"}\n";

async fn respond(session: &mut Session, status: u16, body: &'static [u8]) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(2))?;
    resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(Bytes::from_static(body)), true).await
}

/// The hash key of a request for consistent hashing.
fn hash_key(session: &Session, upstream: &Upstream) -> Vec<u8> {
    use pingora_config::v1::hash_key::Source;
    let Some(source) =
        upstream.config.load_balancer.as_ref().and_then(|lb| lb.hash_key.as_ref()).and_then(|k| k.source.as_ref())
    else {
        return Vec::new();
    };
    let req = session.req_header();
    match source {
        Source::Header(name) => req.headers.get(name.as_str()).map(|v| v.as_bytes().to_vec()).unwrap_or_default(),
        Source::Cookie(name) => crate::router::cookie_value(&req.headers, name).map(<[u8]>::to_vec).unwrap_or_default(),
        Source::QueryArg(name) => {
            crate::router::query_value(req.uri.query(), name).map(|v| v.into_owned()).unwrap_or_default()
        }
        Source::ClientIp(_) => {
            session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip().to_string().into_bytes()).unwrap_or_default()
        }
        Source::Uri(_) => req.uri.path().as_bytes().to_vec(),
    }
}

#[async_trait::async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            _in_flight: InFlight::new(&self.in_flight),
            snapshot: None,
            route: None,
            node: None,
            tried: smallvec::SmallVec::new(),
            started: Instant::now(),
            tls: false,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        if self.draining.load(Ordering::Relaxed) {
            session.set_keepalive(None);
        }
        let snapshot = self.live.load();
        ctx.tls = session.digest().and_then(|d| d.ssl_digest.as_ref()).is_some();
        let found = {
            let req = session.req_header();
            let host = req
                .uri
                .authority()
                .map(|a| a.as_str())
                .or_else(|| req.headers.get(http::header::HOST).and_then(|h| h.to_str().ok()))
                .unwrap_or("");
            let client_ip = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
            snapshot.router.find(&Request {
                host,
                path: req.uri.path(),
                query: req.uri.query(),
                method: &req.method,
                headers: &req.headers,
                client_ip,
            })
        };
        ctx.snapshot = Some(snapshot);
        let Some(index) = found else {
            respond(session, 404, NOT_FOUND).await?;
            return Ok(true);
        };
        ctx.route = Some(index);
        let Some(route) = ctx.route() else { return Ok(false) };
        if !route.plugins.is_empty() {
            let chain = route.plugins.clone();
            if let Flow::Responded = chain.request(session).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let (upstream, timeouts) = match ctx.route() {
            Some(r) => match &r.upstream {
                Some(u) => (u.clone(), r.timeouts),
                None => return Error::e_explain(ErrorType::HTTPStatus(502), "the route has no upstream"),
            },
            None => return Error::e_explain(ErrorType::HTTPStatus(404), "no route"),
        };
        let key = hash_key(session, &upstream);
        let Some(node_index) = upstream.select(&key, &ctx.tried) else {
            return Error::e_explain(
                ErrorType::HTTPStatus(502),
                format!("upstream {}: no healthy node left", upstream.config.id),
            );
        };
        if let Some(previous) = ctx.node.replace(node_index) {
            upstream.nodes[previous].in_flight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
        ctx.tried.push(node_index);
        let node = &upstream.nodes[node_index];
        node.in_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);

        let tls = matches!(upstream.scheme, Scheme::Https | Scheme::Grpcs);
        let tls_cfg = upstream.config.tls.as_ref();
        let sni = match tls_cfg.map(|t| t.sni.as_str()).filter(|s| !s.is_empty()) {
            Some(s) => s.to_owned(),
            None if tls => match upstream.config.pass_host() {
                PassHost::Rewrite => upstream.config.upstream_host.clone(),
                PassHost::Node => node.host.clone(),
                _ => session
                    .req_header()
                    .headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(|h| h.split(':').next().unwrap_or(h).to_owned())
                    .unwrap_or_else(|| node.host.clone()),
            },
            None => String::new(),
        };
        let mut peer = HttpPeer::new(node.addr, tls, sni);
        peer.options.connection_timeout = Some(timeouts.connect);
        peer.options.read_timeout = Some(timeouts.read);
        peer.options.write_timeout = Some(timeouts.send);
        if let Some(pool) = &upstream.config.keepalive_pool
            && let Some(idle) = &pool.idle_timeout
        {
            peer.options.idle_timeout = Some(crate::upstream::duration(idle));
        }
        if let Some(t) = tls_cfg {
            let verify = t.verify.unwrap_or(true);
            peer.options.verify_cert = verify;
            peer.options.verify_hostname = verify;
        }
        peer.options.ca = upstream.ca.clone();
        peer.client_cert_key = upstream.client_cert.clone();
        peer.options.alpn = match upstream.scheme {
            Scheme::Grpc | Scheme::Grpcs => ALPN::H2,
            Scheme::Https => ALPN::H2H1,
            _ => ALPN::H1,
        };
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let Some(upstream) = ctx.upstream() else { return Ok(()) };
        match upstream.config.pass_host() {
            PassHost::Node => {
                if let Some(n) = ctx.node.map(|i| &upstream.nodes[i]) {
                    let host =
                        if n.port == 80 || n.port == 443 { n.host.clone() } else { format!("{}:{}", n.host, n.port) };
                    upstream_request.insert_header(http::header::HOST, host)?;
                }
            }
            PassHost::Rewrite => {
                upstream_request.insert_header(http::header::HOST, upstream.config.upstream_host.as_str())?
            }
            PassHost::Pass | PassHost::Unspecified => {}
        }
        if let Some(ip) = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip()) {
            let xff = match upstream_request.headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
                Some(prev) => format!("{prev}, {ip}"),
                None => ip.to_string(),
            };
            upstream_request.insert_header(X_FORWARDED_FOR.clone(), xff)?;
        }
        if upstream.config.keepalive_pool.as_ref().and_then(|p| p.size) == Some(0)
            && upstream_request.version != http::Version::HTTP_2
            && !session.is_upgrade_req()
        {
            upstream_request.insert_header(http::header::CONNECTION, "close")?;
        }
        upstream_request.insert_header(X_FORWARDED_PROTO.clone(), if ctx.tls { "https" } else { "http" })?;
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let Some(upstream) = ctx.upstream().cloned() else { return e };
        if let Some(node) = ctx.node {
            upstream.observe(node, None);
        }
        let retries =
            upstream.config.retries.unwrap_or_else(|| (upstream.nodes.len().saturating_sub(1)).min(3) as u32) as usize;
        let within_budget = upstream
            .config
            .retry_timeout
            .as_ref()
            .map(crate::upstream::duration)
            .is_none_or(|t| ctx.started.elapsed() < t);
        if ctx.tried.len() <= retries && within_budget {
            e.set_retry(true);
        }
        e
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let (Some(upstream), Some(node)) = (ctx.upstream(), ctx.node) {
            upstream.observe(node, Some(upstream_response.status.as_u16()));
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let code = match e.etype() {
            ErrorType::HTTPStatus(code) => *code,
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => 504,
            _ => match e.esource() {
                pingora_error::ErrorSource::Upstream => 502,
                pingora_error::ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                    _ => 400,
                },
                _ => 500,
            },
        };
        if matches!(e.etype(), ErrorType::ReadTimedout | ErrorType::WriteTimedout)
            && let (Some(upstream), Some(node)) = (ctx.upstream(), ctx.node)
        {
            upstream.observe(node, None);
        }
        if code > 0 {
            let _ = session.respond_error(code).await;
        }
        FailToProxy { error_code: code, can_reuse_downstream: false }
    }

    async fn logging(&self, _session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        if let (Some(upstream), Some(node)) = (ctx.upstream(), ctx.node) {
            upstream.nodes[node].in_flight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}
