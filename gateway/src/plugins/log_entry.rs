//! What the log hooks see of a finished request, and the access-log
//! formats built from it.

use std::time::{Duration, SystemTime};

use pingora_http::{RequestHeader, ResponseHeader};

use super::PluginCtx;

/// One finished request, as the log and metrics plugins see it.
pub struct LogEntry<'a> {
    pub request: &'a RequestHeader,
    pub response: Option<&'a ResponseHeader>,
    /// The response status sent (0 when none was sent).
    pub status: u16,
    pub client_ip: Option<std::net::IpAddr>,
    pub upstream_addr: Option<std::net::SocketAddr>,
    /// The upstream the request went to (its identity keys metric caches).
    pub upstream: Option<&'a std::sync::Arc<crate::upstream::Upstream>>,
    /// When the request started: read from the clock only when a logger
    /// asks ([`LogEntry::start`]), so the metrics alone cost no clock read.
    pub start: std::cell::OnceCell<SystemTime>,
    /// From the request's start to the end of the response.
    pub latency: Duration,
    /// From choosing the node to the upstream's response header.
    pub upstream_latency: Option<Duration>,
    pub bytes_received: usize,
    pub bytes_sent: usize,
    /// The start of the request body, when a logger asked for it.
    pub request_body: Option<&'a [u8]>,
    /// The start of the response body, when a logger asked for it.
    pub response_body: Option<&'a [u8]>,
    /// The error that ended the request, if any.
    pub error: Option<String>,
}

impl LogEntry<'_> {
    /// When the request started (wall clock).
    pub fn start(&self) -> SystemTime {
        *self.start.get_or_init(|| SystemTime::now() - self.latency)
    }
}

/// How much of the bodies a logger keeps.
#[derive(Debug, Clone, Copy, Default)]
pub struct BodyLimits {
    pub request: usize,
    pub response: usize,
}

impl BodyLimits {
    pub fn new(req: bool, req_max: Option<u32>, resp: bool, resp_max: Option<u32>) -> BodyLimits {
        BodyLimits {
            request: if req { req_max.unwrap_or(8192) as usize } else { 0 },
            response: if resp { resp_max.unwrap_or(8192) as usize } else { 0 },
        }
    }
}

fn headers_json(h: &http::HeaderMap) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (k, v) in h {
        // Credentials never reach a log.
        let value = if k == http::header::AUTHORIZATION || k == http::header::COOKIE || k.as_str() == "apikey" {
            "<redacted>".to_owned()
        } else {
            String::from_utf8_lossy(v.as_bytes()).into_owned()
        };
        map.insert(k.as_str().to_owned(), serde_json::Value::String(value));
    }
    serde_json::Value::Object(map)
}

fn body_json(body: Option<&[u8]>, max: usize) -> Option<serde_json::Value> {
    let b = body?;
    let b = &b[..b.len().min(max)];
    Some(match std::str::from_utf8(b) {
        Ok(s) => serde_json::Value::String(s.to_owned()),
        Err(_) => {
            use base64::Engine;
            serde_json::json!({ "base64": base64::engine::general_purpose::STANDARD.encode(b) })
        }
    })
}

impl LogEntry<'_> {
    /// The id of the upstream the request went to (none for an inline one).
    pub fn upstream_id(&self) -> Option<&str> {
        self.upstream.map(|u| u.config.id.as_str()).filter(|s| !s.is_empty())
    }

    /// The JSON access-log entry (file_logger JSON, http_logger batches).
    pub fn json(&self, ctx: &PluginCtx, body: &BodyLimits) -> serde_json::Value {
        let start: chrono::DateTime<chrono::Utc> = self.start().into();
        let mut request = serde_json::json!({
            "method": self.request.method.as_str(),
            "uri": self.request.uri.to_string(),
            "headers": headers_json(&self.request.headers),
            "size": self.bytes_received,
        });
        if body.request > 0
            && let Some(b) = body_json(self.request_body, body.request)
        {
            request["body"] = b;
        }
        let mut response = serde_json::json!({
            "status": self.status,
            "headers": self.response.map(|r| headers_json(&r.headers)).unwrap_or_default(),
            "size": self.bytes_sent,
        });
        if body.response > 0
            && let Some(b) = body_json(self.response_body, body.response)
        {
            response["body"] = b;
        }
        serde_json::json!({
            "start_time": start.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "client_ip": self.client_ip.map(|ip| ip.to_string()),
            "request": request,
            "response": response,
            "route_id": ctx.route.as_ref().map(|r| r.id.to_string()),
            "service_id": ctx.route.as_ref().map(|r| r.service_id.to_string()).filter(|s| !s.is_empty()),
            "consumer": ctx.consumer.as_ref().map(|c| c.username.to_string()),
            "upstream": self.upstream_addr.map(|a| a.to_string()),
            "upstream_id": self.upstream_id(),
            "latency_ms": self.latency.as_secs_f64() * 1000.0,
            "upstream_latency_ms": self.upstream_latency.map(|d| d.as_secs_f64() * 1000.0),
            "request_id": ctx.request_id.as_ref().and_then(|v| v.to_str().ok()),
            "error": self.error,
        })
    }

    /// The combined log format followed by the request id, route id,
    /// upstream address and total latency in seconds.
    pub fn text_line(&self, ctx: &PluginCtx) -> String {
        let start: chrono::DateTime<chrono::Local> = self.start().into();
        let header = |name: http::header::HeaderName| {
            self.request.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("-").replace('"', "\\\"")
        };
        let dash = |s: Option<&str>| s.filter(|s| !s.is_empty()).unwrap_or("-").to_owned();
        format!(
            "{} - {} [{}] \"{} {} {:?}\" {} {} \"{}\" \"{}\" {} {} {} {:.3}",
            self.client_ip.map(|ip| ip.to_string()).unwrap_or_else(|| "-".to_owned()),
            dash(ctx.consumer.as_ref().map(|c| &*c.username)),
            start.format("%d/%b/%Y:%H:%M:%S %z"),
            self.request.method,
            self.request.uri,
            self.request.version,
            self.status,
            self.bytes_sent,
            header(http::header::REFERER),
            header(http::header::USER_AGENT),
            dash(ctx.request_id.as_ref().and_then(|v| v.to_str().ok())),
            dash(ctx.route.as_ref().map(|r| &*r.id)),
            dash(self.upstream_addr.map(|a| a.to_string()).as_deref()),
            self.latency.as_secs_f64(),
        )
    }
}
