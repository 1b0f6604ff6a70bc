//! `cors`: answers preflights from allowed origins and adds the
//! `Access-Control-Allow-*` headers to their other responses.

use std::time::Duration;

use http::{HeaderName, HeaderValue, header};
use pingora_config::v1;
use pingora_proxy::Session;
use regex::Regex;

use super::{BuildCx, Flow, Hooks, Plugin, PluginCtx, Response};
use crate::upstream::duration;

pub struct Cors {
    any_origin: bool,
    origins: Vec<String>,
    origin_regexes: Vec<Regex>,
    methods: HeaderValue,
    any_header: bool,
    headers: Option<HeaderValue>,
    expose: Option<HeaderValue>,
    max_age: HeaderValue,
    credentials: bool,
}

fn join(list: &[String]) -> Result<HeaderValue, String> {
    HeaderValue::try_from(list.join(", ")).map_err(|e| e.to_string())
}

pub fn build(cfg: &v1::CorsPlugin, _cx: &mut BuildCx<'_>) -> Result<Cors, String> {
    let star = |l: &[String]| l.is_empty() || l.iter().any(|s| s == "*");
    let any_origin = (cfg.allow_origins.is_empty() && cfg.allow_origins_regex.is_empty())
        || cfg.allow_origins.iter().any(|s| s == "*");
    if cfg.allow_credentials {
        // Browsers refuse credentials with a wildcard (the rule the schema
        // vocabulary cannot say; see plugins.proto).
        for (field, wild) in [
            ("allow_origins", any_origin),
            ("allow_methods", star(&cfg.allow_methods)),
            ("allow_headers", star(&cfg.allow_headers)),
        ] {
            if wild {
                return Err(format!(
                    "allow_credentials: true cannot be combined with `*` (written or default) in {field}: browsers refuse it; list the values"
                ));
            }
        }
    }
    let origin_regexes = cfg
        .allow_origins_regex
        .iter()
        .map(|r| Regex::new(&format!("^(?:{r})$")).map_err(|e| format!("allow_origins_regex: {e}")))
        .collect::<Result<_, _>>()?;
    let methods = if star(&cfg.allow_methods) {
        HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH")
    } else {
        join(&cfg.allow_methods)?
    };
    let any_header = star(&cfg.allow_headers);
    Ok(Cors {
        any_origin,
        origins: cfg.allow_origins.iter().filter(|o| *o != "*").cloned().collect(),
        origin_regexes,
        methods,
        any_header,
        headers: if any_header { None } else { Some(join(&cfg.allow_headers)?) },
        expose: if cfg.expose_headers.is_empty() { None } else { Some(join(&cfg.expose_headers)?) },
        max_age: HeaderValue::from(cfg.max_age.as_ref().map(duration).unwrap_or(Duration::from_secs(5)).as_secs()),
        credentials: cfg.allow_credentials,
    })
}

impl Cors {
    fn allowed(&self, origin: &str) -> bool {
        self.any_origin
            || self.origins.iter().any(|o| o == origin)
            || self.origin_regexes.iter().any(|r| r.is_match(origin))
    }

    fn allow_origin(&self, origin: &HeaderValue) -> HeaderValue {
        // With credentials the exact origin must be echoed; a wildcard
        // config without credentials may answer `*`.
        if self.any_origin && !self.credentials { HeaderValue::from_static("*") } else { origin.clone() }
    }
}

#[async_trait::async_trait]
impl Plugin for Cors {
    fn hooks(&self) -> Hooks {
        Hooks::REQUEST
    }

    fn request_now(&self, session: &mut Session, ctx: &mut PluginCtx) -> Option<pingora_error::Result<Flow>> {
        Some(self.check(session, ctx))
    }
}

impl Cors {
    /// The request phase (it never waits: [`Plugin::request_now`]).
    fn check(&self, session: &mut Session, ctx: &mut PluginCtx) -> pingora_error::Result<Flow> {
        let req = session.req_header();
        let Some(origin) = req.headers.get(header::ORIGIN).cloned() else { return Ok(Flow::Continue) };
        let allowed = origin.to_str().is_ok_and(|o| self.allowed(o));
        let preflight =
            req.method == http::Method::OPTIONS && req.headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        if !allowed {
            // No CORS headers: the browser blocks the response. A preflight
            // is still answered by the gateway, without permission.
            return Ok(if preflight { Flow::Respond(Response::status(204)) } else { Flow::Continue });
        }
        let mut headers: Vec<(HeaderName, HeaderValue)> = vec![
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, self.allow_origin(&origin)),
            (header::VARY, HeaderValue::from_static("Origin")),
        ];
        if self.credentials {
            headers.push((header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true")));
        }
        if preflight {
            headers.push((header::ACCESS_CONTROL_ALLOW_METHODS, self.methods.clone()));
            let asked = req.headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS).cloned();
            match (&self.headers, asked) {
                (Some(h), _) => headers.push((header::ACCESS_CONTROL_ALLOW_HEADERS, h.clone())),
                (None, Some(asked)) if self.any_header => headers.push((header::ACCESS_CONTROL_ALLOW_HEADERS, asked)),
                _ => {}
            }
            headers.push((header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone()));
            let mut r = Response::status(204);
            r.headers = headers.into_iter().map(|(n, v)| (n.into(), v)).collect();
            return Ok(Flow::Respond(r));
        }
        if let Some(e) = &self.expose {
            headers.push((header::ACCESS_CONTROL_EXPOSE_HEADERS, e.clone()));
        }
        ctx.response_headers.extend(headers.into_iter().map(|(n, v)| (n.into(), v)));
        Ok(Flow::Continue)
    }
}
