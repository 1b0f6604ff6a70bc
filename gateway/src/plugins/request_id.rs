//! `request_id`: gives each request an id, sent upstream, to the client and
//! to the logs. A well-formed id already in the request is kept.

use http::HeaderValue;
use pingora_config::v1;
use pingora_config::v1::request_id_plugin::Algorithm;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;

use crate::headers::{HeaderTarget, Name};

use super::{BuildCx, Flow, Hooks, Plugin, PluginCtx};

pub struct RequestId {
    header: Name,
    include_in_response: bool,
    algorithm: Algorithm,
}

pub fn build(cfg: &v1::RequestIdPlugin, _cx: &mut BuildCx<'_>) -> Result<RequestId, String> {
    let name = if cfg.header_name.is_empty() { "X-Request-Id" } else { cfg.header_name.as_str() };
    Ok(RequestId {
        header: Name::parse(name).map_err(|e| format!("header_name: {e}"))?,
        include_in_response: cfg.include_in_response.unwrap_or(true),
        algorithm: cfg.algorithm(),
    })
}

/// An id from the client is kept when it is 1-128 characters of
/// `[A-Za-z0-9._:-]` (anything else could smuggle text into logs).
fn acceptable(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_alphanumeric() || b"._:-".contains(c))
}

const NANOID_ALPHABET: &[u8; 64] = b"_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

fn generate(algorithm: Algorithm) -> HeaderValue {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text: &[u8] = match algorithm {
        Algorithm::UuidV7 => uuid::Uuid::now_v7().hyphenated().encode_lower(&mut buf).as_bytes(),
        Algorithm::Nanoid => {
            for b in buf.iter_mut().take(21) {
                *b = NANOID_ALPHABET[fastrand::usize(..64)];
            }
            &buf[..21]
        }
        Algorithm::UuidV4 | Algorithm::Unspecified => {
            uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf).as_bytes()
        }
    };
    HeaderValue::from_bytes(text).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

#[async_trait::async_trait]
impl Plugin for RequestId {
    fn hooks(&self) -> Hooks {
        Hooks::REQUEST | Hooks::UPSTREAM_REQUEST | Hooks::RESPONSE
    }

    fn request_now(&self, session: &mut Session, ctx: &mut PluginCtx) -> Option<pingora_error::Result<Flow>> {
        Some(self.check(session, ctx))
    }

    fn upstream_request(&self, _: &Session, req: &mut RequestHeader, ctx: &mut PluginCtx) -> pingora_error::Result<()> {
        if let Some(id) = &ctx.request_id {
            req.insert(&self.header, id.clone())?;
        }
        Ok(())
    }

    fn response(&self, _: &mut Session, resp: &mut ResponseHeader, ctx: &mut PluginCtx) -> pingora_error::Result<()> {
        if self.include_in_response
            && let Some(id) = &ctx.request_id
        {
            resp.insert(&self.header, id.clone())?;
        }
        Ok(())
    }
}

impl RequestId {
    /// The request phase (it never waits: [`Plugin::request_now`]).
    fn check(&self, session: &mut Session, ctx: &mut PluginCtx) -> pingora_error::Result<Flow> {
        if ctx.request_id.is_none() {
            let id = match session.req_header().headers.get(&self.header.name) {
                Some(v) if acceptable(v) => v.clone(),
                _ => generate(self.algorithm),
            };
            ctx.request_id = Some(id);
        }
        Ok(Flow::Continue)
    }
}
