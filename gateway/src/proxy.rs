//! The request life cycle on Pingora's `ProxyHttp` phases
//! (see Pingora's `docs/user_guide/phase.md`):
//!
//! 0. `early_request_filter`: load the snapshot once, route the request,
//!    let plugins switch Pingora's downstream modules on (compression,
//!    grpc-web) before those read the request;
//! 1. `request_filter`: run the global rules' then the route's request
//!    plugins (a plugin may answer); 404 when no route matched;
//! 2. `upstream_peer`: choose a node of the route's upstream, skipping the
//!    nodes this request already failed on; build the peer with the
//!    route's timeouts, TLS and ALPN;
//! 3. `upstream_request_filter`: Host header by `pass_host`, forwarding
//!    headers, the consumer's name, then the plugins' upstream-request hooks;
//! 4. `fail_to_connect`: retry on another node while retries and the retry
//!    timeout allow; record the failure for passive health checks;
//! 5. `upstream_response_filter`: record the status for passive checks;
//!    `response_filter` / `response_body_filter`: the plugins' response
//!    hooks;
//! 6. `fail_to_proxy`: timeouts become 504, other upstream errors 502 (also
//!    through the plugins' response hooks);
//! 7. `logging`: release the node's in-flight count, run the log hooks.
//!
//! Responses written by plugins go through [`Pipeline::answer`], so the
//! response hooks (CORS, request id, rewrites) apply to them too.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pingora_config::v1::upstream::{PassHost, Scheme};
use pingora_core::protocols::ALPN;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, OrErr, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use crate::Live;
use crate::headers::{HeaderTarget, X_CONSUMER_USERNAME, X_FORWARDED_FOR, X_FORWARDED_PROTO};
use crate::plugins::{LogEntry, Pipeline, PluginCtx, Response};
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
    /// State the plugins share for this request.
    pub plugin: PluginCtx,
    /// Whether any plugin applies (the global rules or the route's).
    plugins: bool,
    /// When the node was chosen, and how long its response header took.
    upstream_started: Option<Instant>,
    upstream_latency: Option<Duration>,
    /// The body bytes loggers asked for, and what was kept of them.
    capture: crate::plugins::BodyLimits,
    request_body: Vec<u8>,
    response_body: Vec<u8>,
}

impl Ctx {
    fn route(&self) -> Option<&Route> {
        Some(&self.snapshot.as_ref()?.routes[self.route?])
    }

    /// The upstream of the request: a plugin's choice, else the route's.
    fn upstream(&self) -> Option<&Arc<Upstream>> {
        self.plugin.upstream.as_ref().or_else(|| self.route()?.upstream.as_ref())
    }

    /// The request's pipeline when it has plugins. Borrows only the
    /// snapshot field, so the hooks can take `&mut self.plugin` beside it.
    fn pipeline_of(snapshot: &Option<Arc<Snapshot>>, plugins: bool, route: Option<usize>) -> Option<Pipeline<'_>> {
        if !plugins {
            return None;
        }
        Some(pipeline(snapshot.as_deref()?, route))
    }
}

fn pipeline(snapshot: &Snapshot, route: Option<usize>) -> Pipeline<'_> {
    Pipeline { global: &snapshot.global, route: route.and_then(|i| snapshot.routes.get(i)).map(|r| &r.plugins) }
}

const NOT_FOUND: &[u8] = b"{\"error\":\"no route matches this request\"}\n";

fn not_found() -> Response {
    Response {
        status: 404,
        headers: vec![(http::header::CONTENT_TYPE.into(), http::HeaderValue::from_static("application/json"))],
        body: Bytes::from_static(NOT_FOUND),
    }
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

/// Appends `ip` as text. An IPv4 address (nearly every client) is written
/// digit by digit: `Display` goes through `fmt`'s padding machinery, which
/// was 0.4% of the CPU of a proxied request (perf).
fn write_ip(out: &mut Vec<u8>, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
        }
        std::net::IpAddr::V6(_) => {
            use std::io::Write;
            let _ = write!(out, "{ip}");
        }
    }
}

#[async_trait::async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn init_downstream_modules(&self, modules: &mut pingora_core::modules::http::HttpModules) {
        // Both start switched off; the compression and grpc_web plugins
        // switch them on per request.
        modules.add_module(pingora_core::modules::http::compression::ResponseCompressionBuilder::enable(0));
        modules.add_module(Box::new(pingora_core::modules::http::grpc_web::GrpcWeb));
    }

    fn new_ctx(&self) -> Ctx {
        Ctx {
            _in_flight: InFlight::new(&self.in_flight),
            snapshot: None,
            route: None,
            node: None,
            tried: smallvec::SmallVec::new(),
            started: Instant::now(),
            tls: false,
            plugin: PluginCtx::default(),
            plugins: false,
            upstream_started: None,
            upstream_latency: None,
            capture: Default::default(),
            request_body: Vec::new(),
            response_body: Vec::new(),
        }
    }

    async fn early_request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
        let snapshot = self.live.load();
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
        ctx.route = found;
        let route = found.and_then(|i| snapshot.routes.get(i));
        ctx.plugins = !snapshot.global.is_empty() || route.is_some_and(|r| !r.plugins.is_empty());
        if ctx.plugins {
            ctx.plugin.route = route.map(|r| r.info.clone());
            let p = pipeline(&snapshot, found);
            p.early(session, &mut ctx.plugin)?;
            ctx.capture = p.body_capture(None);
        }
        ctx.snapshot = Some(snapshot);
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        if self.draining.load(Ordering::Relaxed) {
            session.set_keepalive(None);
        }
        ctx.tls = session.digest().and_then(|d| d.ssl_digest.as_ref()).is_some();
        let Some(p) = Ctx::pipeline_of(&ctx.snapshot, ctx.plugins, ctx.route) else {
            if ctx.route.is_none() {
                // No plugin anywhere: the 404 needs no hooks.
                let r = not_found();
                let mut resp = ResponseHeader::build(404, Some(2))?;
                resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
                resp.insert_header(http::header::CONTENT_LENGTH, r.body.len().to_string())?;
                session.write_response_header(Box::new(resp), false).await?;
                session.write_response_body(Some(r.body), true).await?;
                return Ok(true);
            }
            return Ok(false);
        };
        let answer = match p.request(session, &mut ctx.plugin).await? {
            Some(r) => Some(r),
            None if ctx.route.is_none() => Some(not_found()),
            None => None,
        };
        if let Some(r) = answer {
            p.answer(session, &mut ctx.plugin, r).await?;
            return Ok(true);
        }
        if ctx.capture.request > 0 {
            session.enable_retry_buffering();
        }
        Ok(false)
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let (upstream, timeouts) = match (ctx.route(), ctx.upstream()) {
            (Some(r), Some(u)) => (u.clone(), r.timeouts),
            (Some(_), None) => return Error::e_explain(ErrorType::HTTPStatus(502), "the route has no upstream"),
            (None, _) => return Error::e_explain(ErrorType::HTTPStatus(404), "no route"),
        };
        if ctx.plugins {
            // For the log hooks only (a request without plugins has none).
            ctx.upstream_started = Some(Instant::now());
        }
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
            let mut xff = Vec::with_capacity(48);
            if let Some(prev) = upstream_request.headers.get(&X_FORWARDED_FOR.name) {
                xff.extend_from_slice(prev.as_bytes());
                xff.extend_from_slice(b", ");
            }
            write_ip(&mut xff, ip);
            let xff = http::HeaderValue::from_maybe_shared(bytes::Bytes::from(xff))
                .or_err(ErrorType::InternalError, "x-forwarded-for")?;
            upstream_request.insert(&X_FORWARDED_FOR, xff)?;
        }
        if upstream.config.keepalive_pool.as_ref().and_then(|p| p.size) == Some(0)
            && upstream_request.version != http::Version::HTTP_2
            && !session.is_upgrade_req()
        {
            upstream_request.insert_header(http::header::CONNECTION, "close")?;
        }
        upstream_request
            .insert(&X_FORWARDED_PROTO, http::HeaderValue::from_static(if ctx.tls { "https" } else { "http" }))?;
        match &ctx.plugin.consumer {
            Some(c) => upstream_request.insert(&X_CONSUMER_USERNAME, c.header.clone())?,
            // A client cannot claim to be a consumer.
            None => {
                upstream_request.remove(&X_CONSUMER_USERNAME);
            }
        }
        if let Some(p) = Ctx::pipeline_of(&ctx.snapshot, ctx.plugins, ctx.route) {
            p.upstream_request(session, upstream_request, &mut ctx.plugin)?;
        }
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
        if let Some(t) = ctx.upstream_started {
            ctx.upstream_latency = Some(t.elapsed());
        }
        Ok(())
    }

    async fn response_filter(&self, session: &mut Session, resp: &mut ResponseHeader, ctx: &mut Ctx) -> Result<()> {
        if let Some(p) = Ctx::pipeline_of(&ctx.snapshot, ctx.plugins, ctx.route) {
            p.response(session, resp, &mut ctx.plugin)?;
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<Duration>> {
        if let Some(p) = Ctx::pipeline_of(&ctx.snapshot, ctx.plugins, ctx.route) {
            p.response_body(body, end, &mut ctx.plugin)?;
            if ctx.capture.response > ctx.response_body.len()
                && let Some(b) = body
            {
                let room = ctx.capture.response - ctx.response_body.len();
                ctx.response_body.extend_from_slice(&b[..b.len().min(room)]);
            }
        }
        Ok(None)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if ctx.capture.request > ctx.request_body.len()
            && let Some(b) = body
        {
            let room = ctx.capture.request - ctx.request_body.len();
            ctx.request_body.extend_from_slice(&b[..b.len().min(room)]);
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
            match Ctx::pipeline_of(&ctx.snapshot, ctx.plugins, ctx.route) {
                Some(p) if session.response_written().is_none() => {
                    let _ = p.answer(session, &mut ctx.plugin, Response::status(code)).await;
                }
                _ => {
                    let _ = session.respond_error(code).await;
                }
            }
        }
        FailToProxy { error_code: code, can_reuse_downstream: false }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        if let (Some(upstream), Some(node)) = (ctx.upstream(), ctx.node) {
            upstream.nodes[node].in_flight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
        let Some(p) = Ctx::pipeline_of(&ctx.snapshot, ctx.plugins, ctx.route) else { return };
        if !p.has(crate::plugins::Hooks::LOG, ctx.plugin.consumer.as_deref()) {
            return;
        }
        let latency = ctx.started.elapsed();
        let upstream = ctx.upstream();
        let entry = LogEntry {
            request: session.req_header(),
            response: session.response_written(),
            status: session.response_written().map(|r| r.status.as_u16()).unwrap_or(0),
            client_ip: crate::plugins::client_ip(session),
            upstream_addr: match (upstream, ctx.node) {
                (Some(u), Some(n)) => Some(u.nodes[n].addr),
                _ => None,
            },
            upstream: upstream.filter(|_| ctx.node.is_some()),
            start: Default::default(),
            latency,
            upstream_latency: ctx.upstream_latency,
            bytes_received: session.body_bytes_read(),
            bytes_sent: session.body_bytes_sent(),
            request_body: (ctx.capture.request > 0).then_some(ctx.request_body.as_slice()),
            response_body: (ctx.capture.response > 0).then_some(ctx.response_body.as_slice()),
            error: e.map(|e| e.to_string()),
        };
        p.log(&entry, &ctx.plugin);
    }
}

#[cfg(test)]
mod tests {
    use super::write_ip;
    use std::net::IpAddr;

    #[test]
    fn an_address_is_written_as_display_writes_it() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut addrs: Vec<IpAddr> =
            ["0.0.0.0", "255.255.255.255", "10.0.100.9", "127.0.0.1", "::1", "2001:db8::7:0:1"]
                .iter()
                .map(|a| a.parse().expect("address"))
                .collect();
        addrs.extend((0..1000).map(|_| IpAddr::from(rng.u32(..).to_be_bytes())));
        for ip in addrs {
            let mut out = b"prev, ".to_vec();
            write_ip(&mut out, ip);
            assert_eq!(String::from_utf8(out).expect("utf-8"), format!("prev, {ip}"));
        }
    }
}
