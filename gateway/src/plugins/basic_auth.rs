//! `basic_auth`: identifies the consumer by HTTP Basic credentials.

use std::sync::Arc;

use base64::Engine;
use http::{HeaderValue, header};
use pingora_config::v1;
use pingora_proxy::Session;

use super::{Auth, BuildCx, Consumers, Hooks, Plugin, Response};

pub struct BasicAuth {
    hide: bool,
    challenge: HeaderValue,
    consumers: Arc<Consumers>,
}

pub fn build(cfg: &v1::BasicAuthPlugin, cx: &mut BuildCx<'_>) -> Result<BasicAuth, String> {
    let realm = if cfg.realm.is_empty() { "pingora-config" } else { cfg.realm.as_str() };
    Ok(BasicAuth {
        hide: cfg.hide_credentials.unwrap_or(true),
        challenge: HeaderValue::try_from(format!("Basic realm=\"{realm}\"")).map_err(|e| format!("realm: {e}"))?,
        consumers: cx.consumers.clone(),
    })
}

impl BasicAuth {
    fn reject(&self, message: &str) -> Response {
        Response::error(401, message).header(header::WWW_AUTHENTICATE, self.challenge.clone())
    }
}

#[async_trait::async_trait]
impl Plugin for BasicAuth {
    fn hooks(&self) -> Hooks {
        Hooks::REQUEST
    }

    fn is_auth(&self) -> bool {
        true
    }

    fn authenticate(&self, session: &mut Session) -> Auth {
        let Some(value) = session.req_header().headers.get(header::AUTHORIZATION) else { return Auth::Absent };
        let v = value.as_bytes();
        if v.len() < 6 || !v[..6].eq_ignore_ascii_case(b"basic ") {
            return Auth::Absent;
        }
        let decoded = base64::engine::general_purpose::STANDARD.decode(v[6..].trim_ascii());
        let found = decoded.ok().and_then(|raw| {
            let at = raw.iter().position(|&b| b == b':')?;
            let user = std::str::from_utf8(&raw[..at]).ok()?;
            self.consumers.by_basic(user, &raw[at + 1..]).cloned()
        });
        if self.hide {
            session.req_header_mut().remove_header(&header::AUTHORIZATION);
        }
        match found {
            Some(c) => Auth::Consumer(c),
            None => Auth::Reject(self.reject("Invalid user name or password")),
        }
    }

    fn missing_credential(&self) -> Response {
        self.reject("Missing authorization in request")
    }
}
