//! What the limit plugins share: the key a request is counted by, and the
//! counters kept per plugin instance.
//!
//! Counters live in the memory of the gateway process (shared by its
//! threads). A shared store (e.g. Redis) would implement the same small
//! surface: `acquire(key)`-style calls returning the decision; the plugins
//! only talk to these types.

use pingora_config::v1;
use pingora_config::v1::limit_key::Source;
use pingora_proxy::Session;

use super::PluginCtx;

/// What a limit counts by, compiled.
#[derive(Clone, Debug)]
pub enum KeySource {
    ClientIp,
    Header(http::HeaderName),
    QueryArg(String),
    Cookie(String),
    Consumer,
    Route,
    Shared,
}

impl KeySource {
    pub fn new(key: Option<&v1::LimitKey>) -> Result<KeySource, String> {
        Ok(match key.and_then(|k| k.source.as_ref()) {
            None | Some(Source::ClientIp(_)) => KeySource::ClientIp,
            Some(Source::Header(h)) => {
                KeySource::Header(http::HeaderName::try_from(h.as_str()).map_err(|e| format!("key.header: {e}"))?)
            }
            Some(Source::QueryArg(q)) => KeySource::QueryArg(q.clone()),
            Some(Source::Cookie(c)) => KeySource::Cookie(c.clone()),
            Some(Source::Consumer(_)) => KeySource::Consumer,
            Some(Source::Route(_)) => KeySource::Route,
            Some(Source::Shared(_)) => KeySource::Shared,
        })
    }

    /// The key of this request; falls back to the client IP when the
    /// property is missing. Prefixed by kind so a header value can never
    /// collide with an IP address.
    pub fn key(&self, session: &Session, ctx: &PluginCtx) -> Key {
        let req = session.req_header();
        let found: Option<Key> = match self {
            KeySource::ClientIp => None,
            KeySource::Header(h) => req.headers.get(h).map(|v| prefixed(b"h:", v.as_bytes())),
            KeySource::QueryArg(q) => crate::router::query_value(req.uri.query(), q).map(|v| prefixed(b"q:", &v)),
            KeySource::Cookie(c) => crate::router::cookie_value(&req.headers, c).map(|v| prefixed(b"c:", v)),
            KeySource::Consumer => ctx.consumer.as_ref().map(|c| prefixed(b"u:", c.username.as_bytes())),
            KeySource::Route => ctx.route.as_ref().map(|r| prefixed(b"r:", r.id.as_bytes())),
            KeySource::Shared => Some(Key::from_slice(b"*")),
        };
        found.unwrap_or_else(|| match super::client_ip(session) {
            Some(std::net::IpAddr::V4(v4)) => Key::from_slice(&v4.octets()),
            Some(std::net::IpAddr::V6(v6)) => Key::from_slice(&v6.octets()),
            None => Key::from_slice(b"-"),
        })
    }
}

/// A limit key: inline up to 32 bytes (an address, a short header value),
/// so the common case allocates nothing.
pub type Key = smallvec::SmallVec<[u8; 32]>;

fn prefixed(prefix: &[u8], value: &[u8]) -> Key {
    let mut v = Key::with_capacity(prefix.len() + value.len());
    v.extend_from_slice(prefix);
    v.extend_from_slice(value);
    v
}

/// The rejection of a limit plugin.
pub fn rejection(code: Option<u32>, msg: &str) -> super::Response {
    super::Response::error(code.unwrap_or(429) as u16, msg)
}
