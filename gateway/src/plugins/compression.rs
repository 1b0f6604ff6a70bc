//! `compression`: gzip/brotli responses through Pingora's downstream
//! compression module, which this plugin switches on per request and per
//! response.
//!
//! Note: when the client accepts both algorithms, Pingora's module picks by
//! the order of the client's `Accept-Encoding`; `algorithms` limits what
//! is offered.

use http::header;
use pingora_config::v1;
use pingora_config::v1::compression_plugin::Algorithm;
use pingora_core::modules::http::compression::ResponseCompression;
use pingora_core::protocols::http::compression::Algorithm as PAlgorithm;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use super::{BuildCx, Hooks, Plugin, PluginCtx};

pub struct Compression {
    algorithms: Vec<PAlgorithm>,
    level: u32,
    min_length: u64,
    types: Vec<String>,
}

const DEFAULT_TYPES: [&str; 8] = [
    "text/html",
    "text/plain",
    "text/css",
    "text/javascript",
    "application/javascript",
    "application/json",
    "application/xml",
    "image/svg+xml",
];

pub fn build(cfg: &v1::CompressionPlugin, _cx: &mut BuildCx<'_>) -> Result<Compression, String> {
    let mut algorithms: Vec<PAlgorithm> = cfg
        .algorithms()
        .filter_map(|a| match a {
            Algorithm::Gzip => Some(PAlgorithm::Gzip),
            Algorithm::Brotli => Some(PAlgorithm::Brotli),
            Algorithm::Unspecified => None,
        })
        .collect();
    if algorithms.is_empty() {
        algorithms = vec![PAlgorithm::Brotli, PAlgorithm::Gzip];
    }
    let types = if cfg.content_types.is_empty() {
        DEFAULT_TYPES.iter().map(|s| s.to_string()).collect()
    } else {
        cfg.content_types.iter().map(|s| s.to_ascii_lowercase()).collect()
    };
    Ok(Compression {
        algorithms,
        level: cfg.level.unwrap_or(5),
        min_length: u64::from(cfg.min_length.unwrap_or(256)),
        types,
    })
}

impl Compression {
    fn type_ok(&self, resp: &ResponseHeader) -> bool {
        let Some(ct) = resp.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
        let ct = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        let major = ct.split('/').next().unwrap_or("");
        self.types.iter().any(|t| t == "*" || *t == ct || t.strip_suffix("/*").is_some_and(|m| m == major))
    }

    fn eligible(&self, session: &Session, resp: &ResponseHeader) -> bool {
        let no_transform = resp
            .headers
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("no-transform"));
        let too_small = resp
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n < self.min_length);
        session.req_header().method != http::Method::HEAD
            && !matches!(resp.status.as_u16(), 204 | 304)
            && !resp.headers.contains_key(header::CONTENT_ENCODING)
            && !no_transform
            && !too_small
            && self.type_ok(resp)
    }
}

#[async_trait::async_trait]
impl Plugin for Compression {
    fn hooks(&self) -> Hooks {
        Hooks::EARLY | Hooks::RESPONSE
    }

    fn early(&self, session: &mut Session, _ctx: &mut PluginCtx) -> pingora_error::Result<()> {
        // Switched on before the module reads `Accept-Encoding`.
        if let Some(c) = session.downstream_modules_ctx.get_mut::<ResponseCompression>() {
            for a in &self.algorithms {
                c.adjust_algorithm_level(*a, self.level);
            }
        }
        Ok(())
    }

    fn response(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        _ctx: &mut PluginCtx,
    ) -> pingora_error::Result<()> {
        if !self.eligible(session, resp)
            && let Some(c) = session.downstream_modules_ctx.get_mut::<ResponseCompression>()
            && c.is_header_phase()
        {
            c.adjust_level(0);
        }
        Ok(())
    }
}
