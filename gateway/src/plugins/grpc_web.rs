//! `grpc_web`: serves gRPC-Web clients from a gRPC upstream through
//! Pingora's grpc-web bridge module, and answers their CORS preflights.

use http::{HeaderValue, header};
use pingora_config::v1;
use pingora_core::modules::http::grpc_web::GrpcWebBridge;
use pingora_proxy::Session;

use super::{BuildCx, Flow, Hooks, Plugin, PluginCtx, Response};

pub struct GrpcWeb {
    any_origin: bool,
    origins: Vec<String>,
    expose: HeaderValue,
}

pub fn build(cfg: &v1::GrpcWebPlugin, _cx: &mut BuildCx<'_>) -> Result<GrpcWeb, String> {
    let mut expose = vec!["grpc-status".to_owned(), "grpc-message".to_owned(), "grpc-status-details-bin".to_owned()];
    expose.extend(cfg.cors_expose_headers.iter().cloned());
    Ok(GrpcWeb {
        any_origin: cfg.cors_allow_origins.is_empty() || cfg.cors_allow_origins.iter().any(|o| o == "*"),
        origins: cfg.cors_allow_origins.clone(),
        expose: HeaderValue::try_from(expose.join(", ")).map_err(|e| format!("cors_expose_headers: {e}"))?,
    })
}

fn is_grpc_web(session: &Session) -> bool {
    session
        .req_header()
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc-web"))
}

impl GrpcWeb {
    fn allow(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        if self.any_origin {
            return Some(HeaderValue::from_static("*"));
        }
        let o = origin.to_str().ok()?;
        self.origins.iter().any(|x| x == o).then(|| origin.clone())
    }
}

#[async_trait::async_trait]
impl Plugin for GrpcWeb {
    fn hooks(&self) -> Hooks {
        Hooks::EARLY | Hooks::REQUEST
    }

    fn early(&self, session: &mut Session, _ctx: &mut PluginCtx) -> pingora_error::Result<()> {
        if is_grpc_web(session)
            && let Some(bridge) = session.downstream_modules_ctx.get_mut::<GrpcWebBridge>()
        {
            bridge.init();
        }
        Ok(())
    }

    fn request_now(&self, session: &mut Session, ctx: &mut PluginCtx) -> Option<pingora_error::Result<Flow>> {
        Some(self.check(session, ctx))
    }
}

impl GrpcWeb {
    /// The request phase (it never waits: [`Plugin::request_now`]).
    fn check(&self, session: &mut Session, ctx: &mut PluginCtx) -> pingora_error::Result<Flow> {
        let req = session.req_header();
        let Some(origin) = req.headers.get(header::ORIGIN) else { return Ok(Flow::Continue) };
        let Some(allow) = self.allow(origin) else { return Ok(Flow::Continue) };
        if req.method == http::Method::OPTIONS {
            let asked = req
                .headers
                .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
                .cloned()
                .unwrap_or(HeaderValue::from_static("content-type, x-grpc-web, x-user-agent, grpc-timeout"));
            return Ok(Flow::Respond(
                Response::status(204)
                    .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow)
                    .header(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, OPTIONS"))
                    .header(header::ACCESS_CONTROL_ALLOW_HEADERS, asked)
                    .header(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600")),
            ));
        }
        ctx.response_headers.push((header::ACCESS_CONTROL_ALLOW_ORIGIN.into(), allow));
        ctx.response_headers.push((header::ACCESS_CONTROL_EXPOSE_HEADERS.into(), self.expose.clone()));
        Ok(Flow::Continue)
    }
}
