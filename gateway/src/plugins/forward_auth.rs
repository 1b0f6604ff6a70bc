//! `forward_auth`: asks an external service whether the request may pass.

use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use pingora_config::v1;
use pingora_config::v1::forward_auth_plugin::RequestMethod;
use pingora_proxy::Session;

use super::http_client::{CONNECTOR, Target, send};
use super::vars::request_host;
use super::{BuildCx, Flow, Hooks, Plugin, PluginCtx, Response};
use crate::upstream::duration;

pub struct ForwardAuth {
    target: Target,
    method: Method,
    request_headers: Vec<HeaderName>,
    upstream_headers: Vec<HeaderName>,
    client_headers: Vec<HeaderName>,
    timeout: Duration,
    keepalive: bool,
    allow_degradation: bool,
    status_on_error: u16,
}

fn names(list: &[String], field: &str) -> Result<Vec<HeaderName>, String> {
    list.iter().map(|n| HeaderName::try_from(n.as_str()).map_err(|e| format!("{field}: {n}: {e}"))).collect()
}

pub fn build(cfg: &v1::ForwardAuthPlugin, _cx: &mut BuildCx<'_>) -> Result<ForwardAuth, String> {
    Ok(ForwardAuth {
        target: Target::new(&cfg.uri, cfg.tls_verify.unwrap_or(true)).map_err(|e| format!("uri: {e}"))?,
        method: if cfg.request_method() == RequestMethod::Post { Method::POST } else { Method::GET },
        request_headers: names(&cfg.request_headers, "request_headers")?,
        upstream_headers: names(&cfg.upstream_headers, "upstream_headers")?,
        client_headers: names(&cfg.client_headers, "client_headers")?,
        timeout: cfg.timeout.as_ref().map(duration).unwrap_or(Duration::from_secs(3)),
        keepalive: cfg.keepalive.unwrap_or(true),
        allow_degradation: cfg.allow_degradation,
        status_on_error: cfg.status_on_error.unwrap_or(403) as u16,
    })
}

#[async_trait::async_trait]
impl Plugin for ForwardAuth {
    fn hooks(&self) -> Hooks {
        Hooks::REQUEST
    }

    async fn request(&self, session: &mut Session, _ctx: &mut PluginCtx) -> pingora_error::Result<Flow> {
        let tls = session.digest().and_then(|d| d.ssl_digest.as_ref()).is_some();
        let req = session.req_header();
        let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
        let fixed = |s: &str| HeaderValue::try_from(s).ok();
        let forwarded = [
            ("x-forwarded-proto", fixed(if tls { "https" } else { "http" })),
            ("x-forwarded-method", fixed(req.method.as_str())),
            ("x-forwarded-host", fixed(request_host(req))),
            ("x-forwarded-uri", req.uri.path_and_query().and_then(|p| fixed(p.as_str()))),
            ("x-forwarded-for", super::client_ip(session).and_then(|ip| fixed(&ip.to_string()))),
        ];
        for (name, value) in forwarded {
            if let Some(v) = value {
                headers.push((HeaderName::from_static(name), v));
            }
        }
        for name in &self.request_headers {
            for v in req.headers.get_all(name) {
                headers.push((name.clone(), v.clone()));
            }
        }
        let body = if self.method == Method::POST {
            // The client's body is read whole (it is then replayed upstream
            // by Pingora from the retry buffer).
            session.enable_retry_buffering();
            let mut buf = Vec::new();
            while let Some(chunk) = session.read_request_body().await? {
                buf.extend_from_slice(&chunk);
            }
            if session.retry_buffer_truncated() {
                // Pingora keeps a bounded copy to replay upstream; a larger
                // body could not reach the upstream whole.
                return Ok(Flow::Respond(Response::error(413, "request body too large for forward_auth with POST")));
            }
            Some(bytes::Bytes::from(buf))
        } else {
            None
        };
        match send(&CONNECTOR, &self.target, self.method.clone(), headers, body, self.timeout, self.keepalive).await {
            Ok(reply) if (200..300).contains(&reply.status) => {
                let req = session.req_header_mut();
                for name in &self.upstream_headers {
                    req.remove_header(name);
                    for v in reply.headers.get_all(name) {
                        req.append_header(name.clone(), v.clone())?;
                    }
                }
                Ok(Flow::Continue)
            }
            Ok(reply) => {
                let mut r = Response::status(reply.status);
                if let Some(ct) = reply.headers.get(http::header::CONTENT_TYPE) {
                    r.headers.push((http::header::CONTENT_TYPE.into(), ct.clone()));
                }
                for name in &self.client_headers {
                    for v in reply.headers.get_all(name) {
                        r.headers.push((name.clone().into(), v.clone()));
                    }
                }
                r.body = reply.body;
                Ok(Flow::Respond(r))
            }
            Err(e) => {
                log::warn!("forward_auth: {e}");
                if self.allow_degradation {
                    Ok(Flow::Continue)
                } else {
                    Ok(Flow::Respond(Response::status(self.status_on_error)))
                }
            }
        }
    }
}
