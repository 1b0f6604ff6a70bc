//! `proxy_rewrite`: changes the request sent upstream (path, method, host,
//! headers). The client's request, as logged, is unchanged.

use http::Method;
use pingora_config::v1;
use pingora_config::v1::proxy_rewrite_plugin::Method as M;
use pingora_http::RequestHeader;
use pingora_proxy::Session;
use regex::Regex;

use super::vars::Template;
use super::{BuildCx, Hooks, Plugin, PluginCtx};
use crate::headers::{HeaderTarget, Name};

enum Uri {
    Keep,
    Fixed { path: String, query: Option<String> },
    Regex(Regex, String),
}

/// Header changes, compiled (remove, then set, then add).
pub struct HeaderOps {
    remove: Vec<Name>,
    set: Vec<(Name, Template)>,
    add: Vec<(Name, Template)>,
}

impl HeaderOps {
    pub fn new(h: Option<&v1::HeaderRewrite>) -> Result<HeaderOps, String> {
        let Some(h) = h else { return Ok(HeaderOps { remove: vec![], set: vec![], add: vec![] }) };
        let name = |n: &str| Name::parse(n).map_err(|e| format!("header {n}: {e}"));
        let pairs = |l: &[v1::HeaderValue]| -> Result<Vec<(Name, Template)>, String> {
            l.iter().map(|hv| Ok((name(&hv.name)?, Template::new(&hv.value)?))).collect()
        };
        Ok(HeaderOps {
            remove: h.remove.iter().map(|n| name(n)).collect::<Result<_, _>>()?,
            set: pairs(&h.set)?,
            add: pairs(&h.add)?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    /// Applies the changes to `target`; variables are read from the
    /// client's request.
    pub fn apply(
        &self,
        session: &Session,
        ctx: &PluginCtx,
        target: &mut impl HeaderTarget,
    ) -> pingora_error::Result<()> {
        let req = session.req_header();
        for n in &self.remove {
            target.remove(n);
        }
        for (n, t) in &self.set {
            if let Some(v) = t.header(session, req, ctx) {
                target.insert(n, v)?;
            }
        }
        for (n, t) in &self.add {
            if let Some(v) = t.header(session, req, ctx) {
                target.append(n, v)?;
            }
        }
        Ok(())
    }
}

pub struct ProxyRewrite {
    uri: Uri,
    method: Option<Method>,
    host: Option<http::HeaderValue>,
    headers: HeaderOps,
}

pub fn build(cfg: &v1::ProxyRewritePlugin, _cx: &mut BuildCx<'_>) -> Result<ProxyRewrite, String> {
    let uri = if let Some(r) = &cfg.regex_uri {
        Uri::Regex(Regex::new(&r.regex).map_err(|e| format!("regex_uri.regex: {e}"))?, r.replacement.clone())
    } else if !cfg.uri.is_empty() {
        match cfg.uri.split_once('?') {
            Some((p, q)) => Uri::Fixed { path: p.to_owned(), query: Some(q.to_owned()) },
            None => Uri::Fixed { path: cfg.uri.clone(), query: None },
        }
    } else {
        Uri::Keep
    };
    let method = match cfg.method() {
        M::Unspecified => None,
        M::Get => Some(Method::GET),
        M::Head => Some(Method::HEAD),
        M::Post => Some(Method::POST),
        M::Put => Some(Method::PUT),
        M::Delete => Some(Method::DELETE),
        M::Connect => Some(Method::CONNECT),
        M::Options => Some(Method::OPTIONS),
        M::Trace => Some(Method::TRACE),
        M::Patch => Some(Method::PATCH),
    };
    let host = if cfg.host.is_empty() {
        None
    } else {
        Some(http::HeaderValue::try_from(cfg.host.as_str()).map_err(|e| format!("host: {e}"))?)
    };
    Ok(ProxyRewrite { uri, method, host, headers: HeaderOps::new(cfg.headers.as_ref())? })
}

#[async_trait::async_trait]
impl Plugin for ProxyRewrite {
    fn hooks(&self) -> Hooks {
        Hooks::UPSTREAM_REQUEST
    }

    fn upstream_request(
        &self,
        session: &Session,
        req: &mut RequestHeader,
        ctx: &mut PluginCtx,
    ) -> pingora_error::Result<()> {
        let new_path = match &self.uri {
            Uri::Keep => None,
            Uri::Fixed { path, query } => Some(match query.as_deref().or(req.uri.query()) {
                Some(q) => format!("{path}?{q}"),
                None => path.clone(),
            }),
            Uri::Regex(re, replacement) => {
                let path = req.uri.path();
                re.is_match(path).then(|| {
                    let p = re.replace(path, replacement.as_str()).into_owned();
                    match req.uri.query() {
                        Some(q) => format!("{p}?{q}"),
                        None => p,
                    }
                })
            }
        };
        if let Some(p) = new_path {
            let uri = http::Uri::try_from(p).map_err(|e| {
                pingora_error::Error::because(pingora_error::ErrorType::InternalError, "proxy_rewrite uri", e)
            })?;
            req.set_uri(uri);
        }
        if let Some(m) = &self.method {
            req.set_method(m.clone());
        }
        if let Some(h) = &self.host {
            req.insert_header(http::header::HOST, h.clone())?;
        }
        if !self.headers.is_empty() {
            self.headers.apply(session, ctx, req)?;
        }
        Ok(())
    }
}
