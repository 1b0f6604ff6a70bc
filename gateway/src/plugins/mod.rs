//! The plugin pipeline.
//!
//! # Building
//!
//! Plugins are built once per config snapshot from their typed messages
//! ([`v1::Plugins`]), never parsed on the request path. Each *scope* that
//! writes plugins (a service, a plugin config, a route, a consumer, a global
//! rule) is built once: a limit written on a service is one instance shared
//! by all the service's routes. A plugin whose config cannot be served (a
//! key that does not parse, a file that cannot be opened) fails the whole
//! snapshot: the running config stays, and the error names the scope and
//! the plugin.
//!
//! # Precedence
//!
//! For the matched route, one instance per plugin is chosen, the highest
//! scope winning whole (fields are not merged): consumer > route > plugin
//! config > service. `disable: true` in the winning scope turns the plugin
//! off, and also skips the same plugin of the global rules for that route.
//! Global rules run for every request (also when no route matches), before
//! the route's plugins, phase by phase.
//!
//! # Order and phases
//!
//! Within a chain, plugins run by [`priority`] (the order of the stages in
//! `proto/pingora_config/v1/plugins.proto`), whatever the order written. A
//! plugin implements the hooks it needs (see [`Plugin`]) and declares them
//! in [`Plugin::hooks`], so a phase only visits the plugins that act in it.
//!
//! # Adding a plugin
//!
//! One message in `plugins.proto` (and a field in `Plugins`), `make gen`,
//! one file in this directory with a `build` function and a [`Plugin`]
//! implementation, and one line in [`registry!`] below with its priority.
//! See CONTRIBUTING.md.

mod basic_auth;
mod compression;
mod consumers;
mod cors;
mod fault_injection;
mod file_logger;
mod forward_auth;
mod grpc_web;
mod http_client;
mod http_logger;
mod ip_restriction;
mod jwt_auth;
mod key_auth;
mod limit_conn;
mod limit_count;
mod limit_req;
mod limits;
mod log_entry;
mod mock;
mod prometheus;
mod proxy_rewrite;
mod redirect;
mod request_id;
mod response_rewrite;
mod traffic_split;
mod vars;

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora_config::v1;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;
use smallvec::SmallVec;

pub use consumers::{Consumer, Consumers};
pub use log_entry::{BodyLimits, LogEntry};

use crate::headers::HeaderTarget;
use crate::upstream::Upstream;

/// Which hooks a plugin implements (a bit set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hooks(u8);

impl Hooks {
    pub const EARLY: Hooks = Hooks(1);
    pub const REQUEST: Hooks = Hooks(1 << 1);
    pub const UPSTREAM_REQUEST: Hooks = Hooks(1 << 2);
    pub const RESPONSE: Hooks = Hooks(1 << 3);
    pub const RESPONSE_BODY: Hooks = Hooks(1 << 4);
    pub const LOG: Hooks = Hooks(1 << 5);
    pub const NONE: Hooks = Hooks(0);
    /// How many hooks there are.
    pub const COUNT: usize = 6;

    pub const fn or(self, other: Hooks) -> Hooks {
        Hooks(self.0 | other.0)
    }

    pub const fn has(self, other: Hooks) -> bool {
        self.0 & other.0 != 0
    }
}

impl std::ops::BitOr for Hooks {
    type Output = Hooks;
    fn bitor(self, rhs: Hooks) -> Hooks {
        self.or(rhs)
    }
}

/// A response written by the gateway itself (a rejection, a redirect, a
/// mock). The response hooks of every plugin still run on it.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(crate::headers::Name, HeaderValue)>,
    pub body: Bytes,
}

impl Response {
    /// A response with no body.
    pub fn status(status: u16) -> Response {
        Response { status, headers: Vec::new(), body: Bytes::new() }
    }

    /// `{"error_msg": "<message>"}`, or no body when `message` is empty.
    pub fn error(status: u16, message: &str) -> Response {
        if message.is_empty() {
            return Response::status(status);
        }
        let body = serde_json::json!({ "error_msg": message }).to_string();
        Response {
            status,
            headers: vec![(http::header::CONTENT_TYPE.into(), HeaderValue::from_static("application/json"))],
            body: Bytes::from(body),
        }
    }

    pub fn header(mut self, name: impl Into<crate::headers::Name>, value: HeaderValue) -> Response {
        self.headers.push((name.into(), value));
        self
    }
}

/// What a request-phase hook decided.
pub enum Flow {
    /// Go on with the next plugin, then the upstream.
    Continue,
    /// Answer with this response; no later request-phase plugin runs and
    /// the upstream is not called. Response hooks and logging still run.
    Respond(Response),
}

/// What an authentication plugin found in the request.
pub enum Auth {
    /// No credential of this kind: the next auth plugin is asked.
    Absent,
    /// The credential identifies this consumer.
    Consumer(Arc<Consumer>),
    /// The credential is present but wrong: rejected, no other auth plugin
    /// is asked.
    Reject(Response),
}

/// Per-request state shared by the plugins of a request.
#[derive(Default)]
pub struct PluginCtx {
    /// The consumer identified by an auth plugin.
    pub consumer: Option<Arc<Consumer>>,
    /// The request id (request_id plugin), for later plugins and logs.
    pub request_id: Option<HeaderValue>,
    /// The upstream chosen by a plugin (traffic_split) instead of the
    /// route's.
    pub upstream: Option<Arc<Upstream>>,
    /// Headers added to whatever response goes out (CORS, rate limits).
    pub response_headers: SmallVec<[(crate::headers::Name, HeaderValue); 4]>,
    /// Values released when the request ends (limit_conn's slots).
    pub guards: SmallVec<[Box<dyn Any + Send + Sync>; 1]>,
    /// The response was written by a plugin.
    pub responded: bool,
    /// The scope of the matched route, for limits, metrics and logs.
    pub route: Option<Arc<RouteInfo>>,
}

/// The ids of the matched route, for labels and log fields.
#[derive(Debug, Default)]
pub struct RouteInfo {
    pub id: Arc<str>,
    pub name: Arc<str>,
    pub service_id: Arc<str>,
    pub service_name: Arc<str>,
}

/// A plugin built from its config. Every hook has a default that does
/// nothing; [`Plugin::hooks`] says which ones the plugin overrides.
#[async_trait::async_trait]
pub trait Plugin: Send + Sync {
    /// The hooks this plugin implements.
    fn hooks(&self) -> Hooks;

    /// Before Pingora's downstream modules read the request (compression,
    /// grpc-web bridge): switch modules on for this request. The route is
    /// already matched.
    fn early(&self, _session: &mut Session, _ctx: &mut PluginCtx) -> pingora_error::Result<()> {
        Ok(())
    }

    /// The request phase, after routing and before any upstream is chosen:
    /// check, limit, rewrite the downstream request, or answer it.
    async fn request(&self, _session: &mut Session, _ctx: &mut PluginCtx) -> pingora_error::Result<Flow> {
        Ok(Flow::Continue)
    }

    /// The request phase of a plugin that never waits. `Some` is its
    /// outcome and [`Plugin::request`] is not called; `None` (the default)
    /// runs `request`. A plugin implements one of the two: this one costs
    /// no boxed future per request.
    fn request_now(&self, _session: &mut Session, _ctx: &mut PluginCtx) -> Option<pingora_error::Result<Flow>> {
        None
    }

    /// An authentication plugin: what the request's credential says. Only
    /// called when [`Plugin::is_auth`] is true.
    fn authenticate(&self, _session: &mut Session) -> Auth {
        Auth::Absent
    }

    /// The response when no auth plugin of the chain found a credential.
    fn missing_credential(&self) -> Response {
        Response::error(401, "Missing credentials")
    }

    fn is_auth(&self) -> bool {
        false
    }

    /// Just before the request is sent upstream: change what is sent (the
    /// client's request is unchanged, for logs).
    fn upstream_request(
        &self,
        _session: &Session,
        _req: &mut RequestHeader,
        _ctx: &mut PluginCtx,
    ) -> pingora_error::Result<()> {
        Ok(())
    }

    /// The response header about to be sent to the client, from the
    /// upstream or from a plugin.
    fn response(
        &self,
        _session: &mut Session,
        _resp: &mut ResponseHeader,
        _ctx: &mut PluginCtx,
    ) -> pingora_error::Result<()> {
        Ok(())
    }

    /// Each chunk of the response body; `end` marks the last call.
    fn response_body(&self, _body: &mut Option<Bytes>, _end: bool, _ctx: &mut PluginCtx) -> pingora_error::Result<()> {
        Ok(())
    }

    /// After the response is sent (or the request failed). Must not block:
    /// loggers hand the entry to a background task.
    fn log(&self, _entry: &LogEntry<'_>, _ctx: &PluginCtx) {}

    /// How much of the request and response bodies the log hook wants.
    fn body_capture(&self) -> log_entry::BodyLimits {
        log_entry::BodyLimits::default()
    }

    /// Whether this plugin answers every request by itself (a route with it
    /// needs no upstream).
    fn responds(&self) -> bool {
        false
    }
}

/// One plugin of a chain.
#[derive(Clone)]
pub struct Entry {
    pub name: &'static str,
    pub priority: u16,
    pub hooks: Hooks,
    pub plugin: Arc<dyn Plugin>,
}

/// The plugins of one scope, by name; `None` is a written but disabled
/// plugin.
pub type ScopePlugins = Vec<(&'static str, Option<Entry>)>;

/// The plugins that run for a route (or for a consumer, or the global
/// rules), in execution order.
#[derive(Default, Clone)]
pub struct PluginChain {
    entries: Vec<Entry>,
    /// Plugins turned off in the winning scope: the same plugin of the
    /// global rules is skipped too.
    disabled: Vec<&'static str>,
    hooks: Hooks,
    /// `entries` implementing each hook (by bit position), in order: a
    /// request walks one of these instead of filtering `entries`.
    by_hook: [Vec<Entry>; Hooks::COUNT],
}

/// The plugin configs that apply to a route, lowest precedence first.
pub struct Layers<'a> {
    pub service: Option<&'a ScopePlugins>,
    pub plugin_config: Option<&'a ScopePlugins>,
    pub route: Option<&'a ScopePlugins>,
}

impl PluginChain {
    /// The chain of a route from its scopes.
    pub fn for_route(layers: &Layers<'_>) -> PluginChain {
        if layers.service.is_none() && layers.plugin_config.is_none() && layers.route.is_none() {
            return PluginChain::default();
        }
        let mut chosen: Vec<(&'static str, Option<Entry>)> = Vec::new();
        for layer in [layers.service, layers.plugin_config, layers.route].into_iter().flatten() {
            for (name, entry) in layer {
                chosen.retain(|(n, _)| n != name);
                chosen.push((name, entry.clone()));
            }
        }
        let disabled = chosen.iter().filter(|(_, e)| e.is_none()).map(|(n, _)| *n).collect();
        PluginChain::from_entries(chosen.into_iter().filter_map(|(_, e)| e).collect(), disabled)
    }

    /// A chain of the given entries (sorted here).
    pub fn from_entries(mut entries: Vec<Entry>, disabled: Vec<&'static str>) -> PluginChain {
        entries.sort_by_key(|e| e.priority);
        let hooks = entries.iter().fold(Hooks::NONE, |h, e| h | e.hooks);
        let by_hook = std::array::from_fn(|bit| {
            let hook = Hooks(1 << bit);
            entries.iter().filter(|e| e.hooks.has(hook)).cloned().collect()
        });
        PluginChain { entries, disabled, hooks, by_hook }
    }

    /// The entries implementing `hook` (one hook), in execution order.
    pub fn hooked(&self, hook: Hooks) -> &[Entry] {
        debug_assert_eq!(hook.0.count_ones(), 1, "one hook at a time");
        &self.by_hook[hook.0.trailing_zeros() as usize]
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn has(&self, hooks: Hooks) -> bool {
        self.hooks.has(hooks)
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Whether a plugin of the chain answers every request by itself.
    pub fn responds(&self) -> bool {
        self.entries.iter().any(|e| e.plugin.responds())
    }

    /// Whether this (route) chain turns `name` off.
    pub fn disables(&self, name: &str) -> bool {
        self.disabled.contains(&name)
    }
}

/// The plugins that run for one request: the global rules' chain, the
/// route's chain, and the consumer's plugins once one is identified.
pub struct Pipeline<'a> {
    pub global: &'a PluginChain,
    pub route: Option<&'a PluginChain>,
}

impl<'a> Pipeline<'a> {
    /// The entries implementing `hook`, in execution order: the global
    /// rules' (minus those the route disables), then the route's with the
    /// consumer's plugins taking precedence after authentication.
    pub fn entries(&self, hook: Hooks, consumer: Option<&'a Consumer>) -> SmallVec<[&'a Entry; 12]> {
        let mut out = SmallVec::new();
        if self.global.hooks.has(hook) {
            for e in &self.global.entries {
                if e.hooks.has(hook) && !self.route.is_some_and(|r| r.disables(e.name)) {
                    out.push(e);
                }
            }
        }
        if let Some(route) = self.route {
            out.extend(route_entries(route, consumer, hook));
        }
        out
    }

    /// Whether any plugin of the request implements `hook`.
    pub fn has(&self, hook: Hooks, consumer: Option<&Consumer>) -> bool {
        self.global.hooks.has(hook)
            || self.route.is_some_and(|r| r.hooks.has(hook))
            || consumer.is_some_and(|c| c.plugins.hooks.has(hook))
    }

    /// Calls `f` on the entries implementing `hook`, in the order of
    /// [`Pipeline::entries`], up to the first error. Without global rules
    /// for `hook` and without consumer plugins (the usual request) it walks
    /// the route's prebuilt list and collects nothing.
    fn each<E>(
        &self,
        hook: Hooks,
        consumer: Option<&Consumer>,
        mut f: impl FnMut(&Entry) -> Result<(), E>,
    ) -> Result<(), E> {
        let consumer = consumer.filter(|c| !c.plugins.entries.is_empty());
        if !self.global.hooks.has(hook) && consumer.is_none() {
            for e in self.route.map(|r| r.hooked(hook)).unwrap_or_default() {
                f(e)?;
            }
            return Ok(());
        }
        for e in self.entries(hook, consumer) {
            f(e)?;
        }
        Ok(())
    }

    /// The consumer whose own plugins take part, if any: a clone only when
    /// there are such plugins, so hooks can borrow the context mutably.
    fn consumer_with_plugins(ctx: &PluginCtx) -> Option<Arc<Consumer>> {
        ctx.consumer.as_ref().filter(|c| !c.plugins.entries.is_empty()).cloned()
    }

    /// Runs `early` of every plugin.
    pub fn early(&self, session: &mut Session, ctx: &mut PluginCtx) -> pingora_error::Result<()> {
        self.each(Hooks::EARLY, None, |e| e.plugin.early(session, ctx))
    }

    /// Runs the request phase of the global rules, then of the route (with
    /// the authentication stage), in order. `Some(response)` when a plugin
    /// answered.
    pub async fn request(&self, session: &mut Session, ctx: &mut PluginCtx) -> pingora_error::Result<Option<Response>> {
        if self.global.hooks.has(Hooks::REQUEST) {
            let route = self.route;
            let entries: SmallVec<[&Entry; 12]> = self
                .global
                .hooked(Hooks::REQUEST)
                .iter()
                .filter(|e| !route.is_some_and(|r| r.disables(e.name)))
                .collect();
            if let Some(r) = run_request(&entries, session, ctx).await? {
                return Ok(Some(r));
            }
        }
        let Some(route) = self.route else { return Ok(None) };
        let entries = route.hooked(Hooks::REQUEST);
        if entries.is_empty() {
            return Ok(None);
        }
        // Up to and including authentication: the route's plugins alone
        // (the consumer is not known yet).
        let split = entries.iter().position(|e| e.priority > AUTH_END).unwrap_or(entries.len());
        if let Some(r) = run_request(&entries[..split], session, ctx).await? {
            return Ok(Some(r));
        }
        match Self::consumer_with_plugins(ctx) {
            Some(c) => {
                let after: SmallVec<[&Entry; 12]> = route_entries(route, Some(&c), Hooks::REQUEST)
                    .into_iter()
                    .filter(|e| e.priority > AUTH_END)
                    .collect();
                run_request(&after, session, ctx).await
            }
            None => run_request(&entries[split..], session, ctx).await,
        }
    }

    /// Runs the upstream-request hooks.
    pub fn upstream_request(
        &self,
        session: &Session,
        req: &mut RequestHeader,
        ctx: &mut PluginCtx,
    ) -> pingora_error::Result<()> {
        let consumer = Self::consumer_with_plugins(ctx);
        self.each(Hooks::UPSTREAM_REQUEST, consumer.as_deref(), |e| e.plugin.upstream_request(session, req, ctx))
    }

    /// Runs the response hooks, then adds the headers plugins queued.
    pub fn response(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut PluginCtx,
    ) -> pingora_error::Result<()> {
        let consumer = Self::consumer_with_plugins(ctx);
        self.each(Hooks::RESPONSE, consumer.as_deref(), |e| e.plugin.response(session, resp, ctx))?;
        for (name, value) in ctx.response_headers.drain(..) {
            if name == http::header::VARY {
                resp.append(&name, value)?;
            } else {
                resp.insert(&name, value)?;
            }
        }
        Ok(())
    }

    /// How much of the bodies the request's loggers want.
    pub fn body_capture(&self, consumer: Option<&Consumer>) -> log_entry::BodyLimits {
        let mut limits = log_entry::BodyLimits::default();
        let _ = self.each(Hooks::LOG, consumer, |e| {
            let b = e.plugin.body_capture();
            limits.request = limits.request.max(b.request);
            limits.response = limits.response.max(b.response);
            Ok::<(), ()>(())
        });
        limits
    }

    /// Runs the response body hooks on one chunk.
    pub fn response_body(&self, body: &mut Option<Bytes>, end: bool, ctx: &mut PluginCtx) -> pingora_error::Result<()> {
        let consumer = Self::consumer_with_plugins(ctx);
        self.each(Hooks::RESPONSE_BODY, consumer.as_deref(), |e| e.plugin.response_body(body, end, ctx))
    }

    /// Runs the log hooks.
    pub fn log(&self, entry: &LogEntry<'_>, ctx: &PluginCtx) {
        let _ = self.each(Hooks::LOG, ctx.consumer.as_deref(), |e| {
            e.plugin.log(entry, ctx);
            Ok::<(), ()>(())
        });
    }

    /// Writes a response produced by the gateway, through the response
    /// hooks of every plugin.
    pub async fn answer(
        &self,
        session: &mut Session,
        ctx: &mut PluginCtx,
        response: Response,
    ) -> pingora_error::Result<()> {
        ctx.responded = true;
        let Response { status, headers, body } = response;
        let mut resp = ResponseHeader::build(status, Some(headers.len() + 4))?;
        for (k, v) in headers {
            resp.append(&k, v)?;
        }
        self.response(session, &mut resp, ctx)?;
        let mut body = Some(body);
        self.response_body(&mut body, true, ctx)?;
        let body = body.unwrap_or_default();
        resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
        let head_only = session.req_header().method == http::Method::HEAD;
        session.write_response_header(Box::new(resp), body.is_empty() || head_only).await?;
        if !body.is_empty() && !head_only {
            session.write_response_body(Some(body), true).await?;
        }
        Ok(())
    }
}

/// The route's entries implementing `hook`, with the consumer's plugins
/// replacing the route's of the same name after authentication.
fn route_entries<'a>(route: &'a PluginChain, consumer: Option<&'a Consumer>, hook: Hooks) -> SmallVec<[&'a Entry; 12]> {
    let consumer = consumer.map(|c| &c.plugins).filter(|c| !c.entries.is_empty());
    let Some(c) = consumer else {
        if !route.hooks.has(hook) {
            return SmallVec::new();
        }
        return route.entries.iter().filter(|e| e.hooks.has(hook)).collect();
    };
    let overridden = |name: &str| c.entries.iter().any(|e| e.name == name) || c.disables(name);
    let mut merged: SmallVec<[&Entry; 12]> =
        route.entries.iter().filter(|e| e.hooks.has(hook) && (e.priority <= AUTH_END || !overridden(e.name))).collect();
    merged.extend(c.entries.iter().filter(|e| e.hooks.has(hook) && e.priority > AUTH_END));
    merged.sort_by_key(|e| e.priority);
    merged
}

/// Runs request hooks in order; a run of adjacent auth plugins is one
/// stage where the first credential found decides.
async fn run_request<E: std::borrow::Borrow<Entry>>(
    entries: &[E],
    session: &mut Session,
    ctx: &mut PluginCtx,
) -> pingora_error::Result<Option<Response>> {
    let mut i = 0;
    while i < entries.len() {
        let e = entries[i].borrow();
        if e.plugin.is_auth() {
            let start = i;
            while i < entries.len() && entries[i].borrow().plugin.is_auth() {
                i += 1;
            }
            let mut decided = false;
            for a in &entries[start..i] {
                match a.borrow().plugin.authenticate(session) {
                    Auth::Absent => continue,
                    Auth::Consumer(c) => {
                        ctx.consumer = Some(c);
                        decided = true;
                        break;
                    }
                    Auth::Reject(r) => return Ok(Some(r)),
                }
            }
            if !decided {
                return Ok(Some(entries[start].borrow().plugin.missing_credential()));
            }
            continue;
        }
        let flow = match e.plugin.request_now(session, ctx) {
            Some(flow) => flow?,
            None => e.plugin.request(session, ctx).await?,
        };
        if let Flow::Respond(r) = flow {
            return Ok(Some(r));
        }
        i += 1;
    }
    Ok(None)
}

/// The last priority of the authentication stage.
const AUTH_END: u16 = 49;

/// What building a plugin may look at.
pub struct BuildCx<'a> {
    /// The scope being built, for example `routes[3] (users)`: the key of
    /// state kept across reloads, and the prefix of errors.
    pub scope: String,
    pub consumers: &'a Arc<Consumers>,
    /// Upstreams of the snapshot, for traffic_split (by id, and inline
    /// ones added under their own key).
    pub upstreams: &'a mut HashMap<String, Arc<Upstream>>,
    pub previous_upstreams: Option<&'a HashMap<String, Arc<Upstream>>>,
}

fn entry<P: Plugin + 'static>(name: &'static str, plugin: P) -> Entry {
    Entry { name, priority: priority(name), hooks: plugin.hooks(), plugin: Arc::new(plugin) }
}

/// Declares every plugin: its field in [`v1::Plugins`], its priority (the
/// stage order documented in plugins.proto) and its module's `build`.
macro_rules! registry {
    ($( $field:ident : $prio:expr => $module:ident ),* $(,)?) => {
        /// The execution priority of a plugin: lower runs first.
        pub fn priority(name: &str) -> u16 {
            match name {
                $( stringify!($field) => $prio, )*
                _ => u16::MAX,
            }
        }

        /// Builds every plugin written in one scope. Errors are
        /// `plugins.<name>: <why>`.
        pub fn build_scope(plugins: &v1::Plugins, cx: &mut BuildCx<'_>) -> Result<ScopePlugins, Vec<String>> {
            let mut out = ScopePlugins::new();
            let mut errors = Vec::new();
            $(
                if let Some(cfg) = &plugins.$field {
                    if cfg.disable {
                        out.push((stringify!($field), None));
                    } else {
                        match $module::build(cfg, cx) {
                            Ok(p) => out.push((stringify!($field), Some(entry(stringify!($field), p)))),
                            Err(e) => errors.push(format!("plugins.{}: {e}", stringify!($field))),
                        }
                    }
                }
            )*
            if errors.is_empty() { Ok(out) } else { Err(errors) }
        }
    };
}

registry! {
    request_id: 10 => request_id,
    ip_restriction: 20 => ip_restriction,
    cors: 30 => cors,
    key_auth: 40 => key_auth,
    jwt_auth: 41 => jwt_auth,
    basic_auth: 42 => basic_auth,
    forward_auth: 45 => forward_auth,
    limit_conn: 50 => limit_conn,
    limit_req: 51 => limit_req,
    limit_count: 52 => limit_count,
    redirect: 60 => redirect,
    mock: 61 => mock,
    fault_injection: 62 => fault_injection,
    proxy_rewrite: 70 => proxy_rewrite,
    traffic_split: 71 => traffic_split,
    grpc_web: 72 => grpc_web,
    response_rewrite: 80 => response_rewrite,
    compression: 81 => compression,
    prometheus: 90 => prometheus,
    http_logger: 91 => http_logger,
    file_logger: 92 => file_logger,
}

/// State kept across config reloads for as long as a plugin built with the
/// same `key` exists (rate-limit counters survive an unrelated change).
pub fn shared_state<T: Default + Send + Sync + 'static>(key: String) -> Arc<T> {
    static STATES: Mutex<Vec<(String, Weak<dyn Any + Send + Sync>)>> = Mutex::new(Vec::new());
    let mut states = STATES.lock().unwrap_or_else(|e| e.into_inner());
    states.retain(|(_, w)| w.strong_count() > 0);
    if let Some(existing) = states.iter().find(|(k, _)| *k == key).and_then(|(_, w)| w.upgrade())
        && let Ok(t) = existing.downcast::<T>()
    {
        return t;
    }
    let fresh = Arc::new(T::default());
    let erased: Arc<dyn Any + Send + Sync> = fresh.clone();
    states.push((key, Arc::downgrade(&erased)));
    fresh
}

/// A header name and value from the config (validated by the schema; an
/// error here is a bug caught at load).
pub fn header_pair(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let n = HeaderName::try_from(name).map_err(|e| format!("header {name}: {e}"))?;
    let v = HeaderValue::try_from(value).map_err(|e| format!("header {name}: {e}"))?;
    Ok((n, v))
}

/// The client address: the TCP peer.
pub fn client_ip(session: &Session) -> Option<std::net::IpAddr> {
    session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip())
}

/// Removes a query argument (compared as written, like the router does)
/// from a request's URI.
pub fn remove_query_arg(req: &mut RequestHeader, name: &str) {
    let Some(query) = req.uri.query() else { return };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|kv| {
            let key = kv.split('=').next().unwrap_or("");
            key != name
        })
        .collect();
    let path = req.uri.path().to_owned();
    let new = if kept.is_empty() { path } else { format!("{path}?{}", kept.join("&")) };
    if let Ok(uri) = http::Uri::try_from(new) {
        req.set_uri(uri);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake(Hooks);

    #[async_trait::async_trait]
    impl Plugin for Fake {
        fn hooks(&self) -> Hooks {
            self.0
        }
    }

    #[test]
    fn a_chain_lists_the_entries_of_each_hook_in_priority_order() {
        assert_eq!(Hooks::LOG.0, 1 << (Hooks::COUNT - 1), "Hooks::COUNT covers every hook");
        let e = |name: &'static str, priority, hooks| Entry { name, priority, hooks, plugin: Arc::new(Fake(hooks)) };
        let chain = PluginChain::from_entries(
            vec![
                e("c", 30, Hooks::REQUEST | Hooks::LOG),
                e("a", 10, Hooks::LOG),
                e("b", 20, Hooks::REQUEST | Hooks::RESPONSE),
            ],
            vec![],
        );
        let names = |h| chain.hooked(h).iter().map(|e| e.name).collect::<Vec<_>>();
        assert_eq!(names(Hooks::REQUEST), ["b", "c"]);
        assert_eq!(names(Hooks::LOG), ["a", "c"]);
        assert_eq!(names(Hooks::RESPONSE), ["b"]);
        assert!(names(Hooks::EARLY).is_empty());
        for bit in 0..Hooks::COUNT {
            let h = Hooks(1 << bit);
            let filtered: Vec<_> = chain.entries().iter().filter(|e| e.hooks.has(h)).map(|e| e.name).collect();
            assert_eq!(names(h), filtered);
        }
    }
}
