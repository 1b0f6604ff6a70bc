//! `mock`: answers the request from the config (a fixed response, or the
//! request echoed back as JSON), without any upstream.

use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use pingora_config::v1;
use pingora_config::v1::mock_plugin::Response as Body;
use pingora_proxy::Session;

use super::{BuildCx, Flow, Hooks, Plugin, PluginCtx, Response};
use crate::headers::Name;
use crate::upstream::duration;

pub struct Mock {
    response: Response,
    delay: Option<Duration>,
    echo: bool,
}

pub fn build(cfg: &v1::MockPlugin, _cx: &mut BuildCx<'_>) -> Result<Mock, String> {
    let (body, echo) = match &cfg.response {
        Some(Body::Body(b)) => (Bytes::from(b.clone()), false),
        Some(Body::Echo(e)) => (Bytes::new(), *e),
        None => (Bytes::new(), false),
    };
    let content_type = if echo || cfg.content_type.is_empty() { "application/json" } else { cfg.content_type.as_str() };
    let content_type = HeaderValue::try_from(content_type).map_err(|e| format!("header content-type: {e}"))?;
    let mut headers = vec![(http::header::CONTENT_TYPE.into(), content_type)];
    for h in &cfg.headers {
        // Sent with the name's case as written.
        let name = Name::parse(&h.name).map_err(|e| format!("header {}: {e}", h.name))?;
        let value = HeaderValue::try_from(h.value.as_str()).map_err(|e| format!("header {}: {e}", h.name))?;
        headers.push((name, value));
    }
    Ok(Mock {
        response: Response { status: cfg.status.unwrap_or(200) as u16, headers, body },
        delay: cfg.delay.as_ref().map(duration).filter(|d| !d.is_zero()),
        echo,
    })
}

impl Mock {
    fn echo_body(session: &Session) -> Bytes {
        let req = session.req_header();
        let headers: serde_json::Map<String, serde_json::Value> = req
            .headers
            .iter()
            .map(|(k, v)| {
                (k.as_str().to_owned(), serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()))
            })
            .collect();
        let json = serde_json::json!({
            "method": req.method.as_str(),
            "uri": req.uri.path(),
            "query": req.uri.query().unwrap_or(""),
            "headers": headers,
            "client_ip": super::client_ip(session).map(|ip| ip.to_string()),
        });
        Bytes::from(json.to_string())
    }
}

#[async_trait::async_trait]
impl Plugin for Mock {
    fn hooks(&self) -> Hooks {
        Hooks::REQUEST
    }

    async fn request(&self, session: &mut Session, _ctx: &mut PluginCtx) -> pingora_error::Result<Flow> {
        if let Some(d) = self.delay {
            tokio::time::sleep(d).await;
        }
        let mut r = self.response.clone();
        if self.echo {
            r.body = Self::echo_body(session);
        }
        Ok(Flow::Respond(r))
    }

    fn responds(&self) -> bool {
        true
    }
}
