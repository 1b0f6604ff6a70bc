//! Values with variables (`$remote_addr`, `$host`, `$uri`, `$request_id`,
//! `$consumer`, `$route_id`), compiled once per config.

use http::HeaderValue;
use pingora_http::RequestHeader;
use pingora_proxy::Session;

use super::PluginCtx;

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    RemoteAddr,
    Host,
    Uri,
    RequestId,
    Consumer,
    RouteId,
}

/// A string with variables.
#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<Part>,
    /// The value when it has no variables.
    fixed: Option<HeaderValue>,
}

const VARS: [(&str, Part); 6] = [
    ("remote_addr", Part::RemoteAddr),
    ("request_id", Part::RequestId),
    ("route_id", Part::RouteId),
    ("consumer", Part::Consumer),
    ("host", Part::Host),
    ("uri", Part::Uri),
];

impl Template {
    pub fn new(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            literal.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            match VARS.iter().find(|(name, _)| after.starts_with(name)) {
                Some((name, part)) => {
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(part.clone());
                    rest = &after[name.len()..];
                }
                None => {
                    literal.push('$');
                    rest = after;
                }
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        let fixed = match parts.as_slice() {
            [] => Some(HeaderValue::from_static("")),
            [Part::Text(t)] => Some(HeaderValue::try_from(t.as_str()).map_err(|e| format!("`{text}`: {e}"))?),
            _ => None,
        };
        Ok(Template { parts, fixed })
    }

    /// The text for this request.
    pub fn render(&self, session: &Session, req: &RequestHeader, ctx: &PluginCtx) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::RemoteAddr => {
                    if let Some(ip) = super::client_ip(session) {
                        out.push_str(&ip.to_string());
                    }
                }
                Part::Host => out.push_str(request_host(req)),
                Part::Uri => out.push_str(req.uri.path()),
                Part::RequestId => {
                    out.push_str(ctx.request_id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or_default())
                }
                Part::Consumer => out.push_str(ctx.consumer.as_ref().map(|c| &*c.username).unwrap_or_default()),
                Part::RouteId => out.push_str(ctx.route.as_ref().map(|r| &*r.id).unwrap_or_default()),
            }
        }
        out
    }

    /// As a header value for this request.
    pub fn header(&self, session: &Session, req: &RequestHeader, ctx: &PluginCtx) -> Option<HeaderValue> {
        match &self.fixed {
            Some(v) => Some(v.clone()),
            None => HeaderValue::try_from(self.render(session, req, ctx)).ok(),
        }
    }
}

/// The request's host, without port.
pub fn request_host(req: &RequestHeader) -> &str {
    let host =
        req.uri.host().or_else(|| req.headers.get(http::header::HOST).and_then(|h| h.to_str().ok())).unwrap_or("");
    if host.starts_with('[') {
        return host.split(']').next().map(|h| &host[..h.len() + 1]).unwrap_or(host);
    }
    host.split(':').next().unwrap_or(host)
}
