//! `redirect`: answers with a redirect (HTTP to HTTPS, a fixed or computed
//! location).

use http::{HeaderValue, header};
use pingora_config::v1;
use pingora_config::v1::redirect_plugin::Target;
use pingora_proxy::Session;
use regex::Regex;

use super::vars::{Template, request_host};
use super::{BuildCx, Flow, Hooks, Plugin, PluginCtx, Response};

enum To {
    Https,
    Uri(Template),
    Regex(Regex, String),
}

pub struct Redirect {
    to: To,
    code: u16,
    append_query: bool,
}

pub fn build(cfg: &v1::RedirectPlugin, _cx: &mut BuildCx<'_>) -> Result<Redirect, String> {
    let to = match cfg.target.as_ref().ok_or("a target (http_to_https, uri or regex_uri) is required")? {
        Target::HttpToHttps(_) => To::Https,
        Target::Uri(u) => To::Uri(Template::new(u)?),
        Target::RegexUri(r) => {
            To::Regex(Regex::new(&r.regex).map_err(|e| format!("regex_uri.regex: {e}"))?, r.replacement.clone())
        }
    };
    let default = if matches!(to, To::Https) { 301 } else { 302 };
    Ok(Redirect {
        append_query: cfg.append_query_string || matches!(to, To::Https),
        to,
        code: cfg.ret_code.unwrap_or(default) as u16,
    })
}

#[async_trait::async_trait]
impl Plugin for Redirect {
    fn hooks(&self) -> Hooks {
        Hooks::REQUEST
    }

    fn request_now(&self, session: &mut Session, ctx: &mut PluginCtx) -> Option<pingora_error::Result<Flow>> {
        Some(self.check(session, ctx))
    }

    fn responds(&self) -> bool {
        !matches!(self.to, To::Https | To::Regex(..))
    }
}

impl Redirect {
    /// The request phase (it never waits: [`Plugin::request_now`]).
    fn check(&self, session: &mut Session, ctx: &mut PluginCtx) -> pingora_error::Result<Flow> {
        let req = session.req_header();
        let mut location = match &self.to {
            To::Https => {
                if session.digest().and_then(|d| d.ssl_digest.as_ref()).is_some() {
                    return Ok(Flow::Continue);
                }
                format!("https://{}{}", request_host(req), req.uri.path())
            }
            To::Uri(t) => t.render(session, req, ctx),
            To::Regex(re, replacement) => {
                let path = req.uri.path();
                if !re.is_match(path) {
                    return Ok(Flow::Continue);
                }
                re.replace(path, replacement.as_str()).into_owned()
            }
        };
        if self.append_query
            && let Some(q) = req.uri.query()
        {
            location.push(if location.contains('?') { '&' } else { '?' });
            location.push_str(q);
        }
        let Ok(value) = HeaderValue::try_from(location) else {
            return Ok(Flow::Respond(Response::error(500, "redirect location is not a valid header")));
        };
        Ok(Flow::Respond(Response::status(self.code).header(header::LOCATION, value)))
    }
}
