//! `key_auth`: identifies the consumer by an API key in a header or query
//! argument.

use std::sync::Arc;

use http::HeaderName;
use pingora_config::v1;
use pingora_proxy::Session;

use super::{Auth, BuildCx, Consumers, Hooks, Plugin, Response};

pub struct KeyAuth {
    header: HeaderName,
    query: String,
    hide: bool,
    consumers: Arc<Consumers>,
}

pub fn build(cfg: &v1::KeyAuthPlugin, cx: &mut BuildCx<'_>) -> Result<KeyAuth, String> {
    let header = if cfg.header.is_empty() { "apikey" } else { cfg.header.as_str() };
    Ok(KeyAuth {
        header: HeaderName::try_from(header).map_err(|e| format!("header: {e}"))?,
        query: if cfg.query.is_empty() { "apikey".to_owned() } else { cfg.query.clone() },
        hide: cfg.hide_credentials.unwrap_or(true),
        consumers: cx.consumers.clone(),
    })
}

#[async_trait::async_trait]
impl Plugin for KeyAuth {
    fn hooks(&self) -> Hooks {
        Hooks::REQUEST
    }

    fn is_auth(&self) -> bool {
        true
    }

    fn authenticate(&self, session: &mut Session) -> Auth {
        let req = session.req_header();
        let (found, from_header) = match req.headers.get(&self.header) {
            Some(v) => (self.consumers.by_key(v.as_bytes()).cloned(), true),
            None => match crate::router::query_value(req.uri.query(), &self.query) {
                Some(v) => (self.consumers.by_key(&v).cloned(), false),
                None => return Auth::Absent,
            },
        };
        if self.hide {
            let req = session.req_header_mut();
            if from_header {
                req.remove_header(&self.header);
            } else {
                super::remove_query_arg(req, &self.query);
            }
        }
        match found {
            Some(c) => Auth::Consumer(c),
            None => Auth::Reject(Response::error(401, "Invalid API key in request")),
        }
    }

    fn missing_credential(&self) -> Response {
        Response::error(401, "Missing API key in request")
    }
}
