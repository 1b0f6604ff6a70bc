//! `response_rewrite`: changes the response sent to the client (status,
//! headers, body), from the upstream or from the gateway.

use base64::Engine;
use bytes::Bytes;
use http::header;
use pingora_config::v1;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use super::proxy_rewrite::HeaderOps;
use super::{BuildCx, Hooks, Plugin, PluginCtx};

pub struct ResponseRewrite {
    status: Option<u16>,
    headers: HeaderOps,
    body: Option<Bytes>,
}

pub fn build(cfg: &v1::ResponseRewritePlugin, _cx: &mut BuildCx<'_>) -> Result<ResponseRewrite, String> {
    let body = if cfg.body.is_empty() && !cfg.body_base64 {
        None
    } else if cfg.body_base64 {
        Some(Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(cfg.body.trim())
                .map_err(|e| format!("body: not base64: {e}"))?,
        ))
    } else {
        Some(Bytes::from(cfg.body.clone()))
    };
    Ok(ResponseRewrite {
        status: cfg.status_code.map(|s| s as u16),
        headers: HeaderOps::new(cfg.headers.as_ref())?,
        body,
    })
}

#[async_trait::async_trait]
impl Plugin for ResponseRewrite {
    fn hooks(&self) -> Hooks {
        if self.body.is_some() { Hooks::RESPONSE | Hooks::RESPONSE_BODY } else { Hooks::RESPONSE }
    }

    fn response(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut PluginCtx,
    ) -> pingora_error::Result<()> {
        if let Some(s) = self.status {
            resp.set_status(s)?;
        }
        if let Some(b) = &self.body {
            resp.remove_header(&header::CONTENT_ENCODING);
            resp.remove_header(&header::TRANSFER_ENCODING);
            resp.insert_header(header::CONTENT_LENGTH, b.len().to_string())?;
        }
        if !self.headers.is_empty() {
            self.headers.apply(session, ctx, resp)?;
        }
        Ok(())
    }

    fn response_body(&self, body: &mut Option<Bytes>, end: bool, _ctx: &mut PluginCtx) -> pingora_error::Result<()> {
        if let Some(b) = &self.body {
            *body = if end { Some(b.clone()) } else { None };
        }
        Ok(())
    }
}
