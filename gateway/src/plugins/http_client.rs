//! Requests the gateway itself sends (forward_auth's subrequest,
//! http_logger's batches), over Pingora's connector and its connection pool:
//! no second HTTP client.

use std::net::ToSocketAddrs;
use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use pingora_core::connectors::http::Connector;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::RequestHeader;

/// The connector of requests sent from the proxy's own threads. A logger
/// thread with its own runtime keeps its own connector (a pooled
/// connection belongs to the runtime that opened it).
pub static CONNECTOR: LazyLock<Connector> = LazyLock::new(|| Connector::new(None));

/// A URL resolved once, when the config is loaded.
#[derive(Clone)]
pub struct Target {
    peer: HttpPeer,
    host: HeaderValue,
    path: String,
}

impl Target {
    pub fn new(url: &str, verify: bool) -> Result<Target, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("`{url}`: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(format!("`{url}`: the scheme must be http or https")),
        };
        let host = uri.host().ok_or_else(|| format!("`{url}` has no host"))?;
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addr = (bare, port)
            .to_socket_addrs()
            .map_err(|e| format!("`{host}` does not resolve: {e}"))?
            .next()
            .ok_or_else(|| format!("`{host}` does not resolve"))?;
        let mut peer = HttpPeer::new(addr, tls, bare.to_owned());
        peer.options.verify_cert = verify;
        peer.options.verify_hostname = verify;
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or(host);
        Ok(Target {
            peer,
            host: HeaderValue::try_from(authority).map_err(|e| e.to_string())?,
            path: uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/".to_owned()),
        })
    }
}

/// An answer.
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// Sends one request; the whole exchange must finish within `timeout`.
pub async fn send(
    connector: &Connector,
    target: &Target,
    method: Method,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Option<Bytes>,
    timeout: Duration,
    keepalive: bool,
) -> Result<Reply, String> {
    match tokio::time::timeout(timeout, exchange(connector, target, method, headers, body, keepalive)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

async fn exchange(
    connector: &Connector,
    target: &Target,
    method: Method,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Option<Bytes>,
    keepalive: bool,
) -> Result<Reply, String> {
    let (mut session, _) = connector.get_http_session(&target.peer).await.map_err(|e| e.to_string())?;
    let mut req =
        RequestHeader::build(method, target.path.as_bytes(), Some(headers.len() + 3)).map_err(|e| e.to_string())?;
    req.insert_header(http::header::HOST, target.host.clone()).map_err(|e| e.to_string())?;
    for (k, v) in headers {
        req.append_header(k, v).map_err(|e| e.to_string())?;
    }
    let body = body.unwrap_or_default();
    req.insert_header(http::header::CONTENT_LENGTH, body.len().to_string()).map_err(|e| e.to_string())?;
    if !keepalive {
        req.insert_header(http::header::CONNECTION, "close").map_err(|e| e.to_string())?;
    }
    session.write_request_header(Box::new(req)).await.map_err(|e| e.to_string())?;
    if !body.is_empty() {
        session.write_request_body(body, true).await.map_err(|e| e.to_string())?;
    }
    session.finish_request_body().await.map_err(|e| e.to_string())?;
    session.read_response_header().await.map_err(|e| e.to_string())?;
    let (status, headers) = match session.response_header() {
        Some(h) => (h.status.as_u16(), h.headers.clone()),
        None => return Err("no response header".to_owned()),
    };
    let mut out = Vec::new();
    while let Some(chunk) = session.read_response_body().await.map_err(|e| e.to_string())? {
        out.extend_from_slice(&chunk);
        if out.len() > 1 << 20 {
            return Err("answer body over 1 MiB".to_owned());
        }
    }
    if keepalive {
        connector.release_http_session(session, &target.peer, Some(Duration::from_secs(60))).await;
    }
    Ok(Reply { status, headers, body: Bytes::from(out) })
}
