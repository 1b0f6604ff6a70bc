//! `mock`: answers the request from the config (a fixed response, or the
//! request echoed back as JSON), without any upstream.

use std::time::Duration;

use bytes::Bytes;
use pingora_config::v1;
use pingora_config::v1::mock_plugin::Response;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use super::{Flow, Plugin};
use crate::upstream::duration;

pub struct Mock {
    status: u16,
    content_type: String,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    delay: Option<Duration>,
    body: Option<Bytes>,
    echo: bool,
}

impl Mock {
    pub fn new(cfg: v1::MockPlugin) -> Result<Mock, String> {
        let mut headers = Vec::new();
        for h in &cfg.headers {
            let name =
                http::HeaderName::try_from(h.name.as_str()).map_err(|e| format!("mock: header {}: {e}", h.name))?;
            let value =
                http::HeaderValue::try_from(h.value.as_str()).map_err(|e| format!("mock: header {}: {e}", h.name))?;
            headers.push((name, value));
        }
        let (body, echo) = match cfg.response {
            Some(Response::Body(b)) => (Some(Bytes::from(b)), false),
            Some(Response::Echo(e)) => (None, e),
            None => (None, false),
        };
        let content_type =
            if echo || cfg.content_type.is_empty() { "application/json".to_owned() } else { cfg.content_type.clone() };
        Ok(Mock {
            status: cfg.status.unwrap_or(200) as u16,
            content_type,
            headers,
            delay: cfg.delay.as_ref().map(duration).filter(|d| !d.is_zero()),
            body,
            echo,
        })
    }

    fn echo_body(session: &Session) -> Bytes {
        let req = session.req_header();
        let headers: serde_json::Map<String, serde_json::Value> = req
            .headers
            .iter()
            .map(|(k, v)| {
                (k.as_str().to_owned(), serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()))
            })
            .collect();
        let client_ip = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip().to_string());
        let json = serde_json::json!({
            "method": req.method.as_str(),
            "uri": req.uri.path(),
            "query": req.uri.query().unwrap_or(""),
            "headers": headers,
            "client_ip": client_ip,
        });
        Bytes::from(json.to_string())
    }
}

#[async_trait::async_trait]
impl Plugin for Mock {
    async fn request(&self, session: &mut Session) -> pingora_error::Result<Flow> {
        if let Some(d) = self.delay {
            tokio::time::sleep(d).await;
        }
        let body = if self.echo { Self::echo_body(session) } else { self.body.clone().unwrap_or_default() };
        let mut resp = ResponseHeader::build(self.status, Some(self.headers.len() + 2))?;
        resp.insert_header(http::header::CONTENT_TYPE, self.content_type.as_str())?;
        resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
        for (k, v) in &self.headers {
            resp.append_header(k.clone(), v.clone())?;
        }
        session.write_response_header(Box::new(resp), body.is_empty()).await?;
        if !body.is_empty() {
            session.write_response_body(Some(body), true).await?;
        }
        Ok(Flow::Responded)
    }

    fn responds(&self) -> bool {
        true
    }
}
