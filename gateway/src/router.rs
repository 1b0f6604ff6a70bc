//! Request routing: which route a request belongs to.
//!
//! [`Router::new`] indexes the enabled routes of a snapshot once (and compiles
//! their regular expressions); [`Router::find`] runs on every request and
//! returns the winning route's config `index`.
//!
//! # Precedence
//!
//! Among the routes whose host, URI and filters all match a request:
//!
//! 1. host: an exact host beats a wildcard `*.suffix` (a longer suffix beats a
//!    shorter one), which beats a route with no hosts;
//! 2. then URI: an exact URI beats a parameter URI (more static segments
//!    first), which beats a prefix URI (a longer prefix first); a route with
//!    no URIs counts as the shortest prefix;
//! 3. then the higher `priority`;
//! 4. then the lower `index` (config order).
//!
//! Methods, header/query/cookie matchers and remote addresses are filters:
//! they do not change the order above; a route that fails one is skipped and
//! the next candidate in that order is tried. A route with several hosts or
//! URIs ranks by the best of them that matches.
//!
//! # Cost
//!
//! Routes are indexed by host, then by URI, so `find` never looks at a route
//! that cannot match. Hosts: one hash lookup for the exact host, then one per
//! dot of the request host that starts a suffix as long as a configured
//! wildcard's. In each host bucket: one hash lookup for the exact URI; a walk
//! of a segment trie for parameter URIs (one lookup per path segment); one
//! hash lookup per distinct prefix length, skipped without hashing when all
//! prefixes of that length end with `/` and the path has no `/` there. The
//! cost grows with the length of the host and path, not with the number of
//! routes. Filters run only on candidates, in precedence order. `find`
//! allocates nothing, except to percent-decode a query value that a matcher
//! reads or to lower-case a host longer than 256 bytes.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;

use http::{HeaderMap, HeaderName, Method};
use ipnet::IpNet;
use pingora_config::v1::KeyValueMatch;
use pingora_config::v1::string_match::Match;
use regex::bytes::Regex;

/// A route as the router sees it: where it applies and how it ranks. It
/// borrows the route's config where it can: a reload builds one per route.
#[derive(Debug, Clone, Default)]
pub struct RouteSpec<'a> {
    /// Position of the route in the config (0-based); the last tie-break, and
    /// what [`Router::find`] returns.
    pub index: usize,
    /// Exact hosts, or `*.suffix` wildcards; any case. Empty means any host
    /// (the caller has already put the service's hosts here if it has some).
    pub hosts: Cow<'a, [String]>,
    /// URI patterns as in `Route.uris`: exact `/a/b`, prefix `/a/*` (a trailing
    /// `*`), parameter `/users/:id/orders` (a segment starting with `:` matches
    /// one non-empty path segment; may end with `/*`). Empty means any path.
    pub uris: Cow<'a, [String]>,
    /// Allowed methods; empty means any.
    pub methods: Vec<Method>,
    /// Header matchers; every one must succeed.
    pub headers: Cow<'a, [KeyValueMatch]>,
    /// Query-argument matchers; every one must succeed.
    pub query: Cow<'a, [KeyValueMatch]>,
    /// Cookie matchers; every one must succeed.
    pub cookies: Cow<'a, [KeyValueMatch]>,
    /// Client networks allowed; empty means any client.
    pub remote_addrs: Vec<IpNet>,
    /// Higher wins among routes that match equally well.
    pub priority: i32,
}

/// The parts of a request that routing reads.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The Host header or `:authority`, possibly with a port, in any case.
    pub host: &'a str,
    /// The path, without the query string.
    pub path: &'a str,
    /// The raw query string, without the `?`.
    pub query: Option<&'a str>,
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    /// The TCP peer's address.
    pub client_ip: Option<IpAddr>,
}

/// A route the router cannot index: its `index` and why.
#[derive(Debug)]
pub struct RouterError {
    pub route: usize,
    pub message: String,
}

impl fmt::Display for RouterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "route {}: {}", self.route, self.message)
    }
}

impl std::error::Error for RouterError {}

/// The routes of one snapshot, indexed for [`Router::find`].
///
/// Internally a route is known by its id: its position in `routes`, which is
/// sorted by config `index`, so a lower id is an earlier route.
#[derive(Debug, Default)]
pub struct Router {
    routes: Vec<CompiledRoute>,
    exact_hosts: Map<Bucket>,
    /// Wildcard hosts by suffix, leading dot included: `*.example.com` is
    /// under `.example.com`.
    wildcard_hosts: Map<Bucket>,
    /// Shortest and longest wildcard suffix, so that `find` probes only the
    /// suffixes of the request host that may be there.
    wildcard_lens: (usize, usize),
    any_host: Bucket,
}

impl Router {
    /// Indexes `routes` and compiles their matchers. Fails on the first route
    /// with an invalid regex, header name or URI pattern.
    pub fn new(mut routes: Vec<RouteSpec<'_>>) -> Result<Router, RouterError> {
        routes.sort_by_key(|spec| spec.index);
        let mut router = Router::default();
        router.routes.reserve_exact(routes.len());
        for (id, spec) in routes.iter().enumerate() {
            let error = |message| RouterError { route: spec.index, message };
            let uris =
                spec.uris.iter().map(|uri| UriPattern::parse(uri)).collect::<Result<Vec<_>, _>>().map_err(error)?;
            router.routes.push(CompiledRoute::new(spec, &uris).map_err(error)?);
            if spec.hosts.is_empty() {
                router.any_host.add(&uris, id);
            }
            for host in spec.hosts.iter() {
                router.bucket_for(host).add(&uris, id);
            }
        }
        let routes = &router.routes;
        for bucket in router.exact_hosts.values_mut().chain(router.wildcard_hosts.values_mut()) {
            bucket.finish(routes);
        }
        router.any_host.finish(routes);
        Ok(router)
    }

    /// The `index` of the route `request` belongs to, if any.
    pub fn find(&self, request: &Request<'_>) -> Option<usize> {
        let mut buf = [0; HOST_BUF];
        let host = normalize_host(request.host, &mut buf);
        let (path, mut search) = (request.path, Search { routes: &self.routes, request, failed: Failed::default() });
        let id = self
            .exact_hosts
            .get(&*host)
            .and_then(|bucket| bucket.find(path, &mut search))
            .or_else(|| self.wildcard_buckets(&host).find_map(|bucket| bucket.find(path, &mut search)))
            .or_else(|| self.any_host.find(path, &mut search))?;
        Some(self.routes[id].index)
    }

    /// The `:name` captures of `path` in the first parameter URI of the route
    /// with this `index` that matches it; empty when there is none.
    pub fn params(&self, route: usize, path: &str) -> Vec<(String, String)> {
        let Ok(id) = self.routes.binary_search_by_key(&route, |r| r.index) else {
            return Vec::new();
        };
        self.routes[id].param_uris.iter().find_map(|uri| uri.captures(path)).unwrap_or_default()
    }

    /// The number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The bucket of a configured host, created if new.
    fn bucket_for(&mut self, host: &str) -> &mut Bucket {
        // Hosts are mostly lowercase already: copy only those that are not.
        let host: Cow<'_, str> = match host.bytes().any(|b| b.is_ascii_uppercase()) {
            true => host.to_ascii_lowercase().into(),
            false => host.into(),
        };
        let host = host.strip_suffix('.').unwrap_or(&host);
        match host.strip_prefix('*') {
            Some(suffix) if suffix.starts_with('.') => {
                let (shortest, longest) = &mut self.wildcard_lens;
                if self.wildcard_hosts.is_empty() || suffix.len() < *shortest {
                    *shortest = suffix.len();
                }
                *longest = (*longest).max(suffix.len());
                bucket(&mut self.wildcard_hosts, suffix)
            }
            _ => bucket(&mut self.exact_hosts, host),
        }
    }

    /// The wildcard buckets of a (normalized) host, the longest suffix
    /// first. A suffix starts at a dot after the first label; only the dots
    /// that start a suffix as long as some wildcard's are probed.
    fn wildcard_buckets<'s>(&'s self, host: &'s str) -> impl Iterator<Item = &'s Bucket> {
        let (shortest, longest) = self.wildcard_lens;
        let dots = match self.wildcard_hosts.is_empty() {
            true => 0..0,
            false => host.len().saturating_sub(longest).max(1)..host.len().saturating_sub(shortest) + 1,
        };
        dots.filter(|&at| host.as_bytes().get(at) == Some(&b'.'))
            .filter_map(|at| self.wildcard_hosts.get(host.get(at..)?))
    }
}

/// The bucket of `key`, created if new (a key is copied only then).
fn bucket<'m>(map: &'m mut Map<Bucket>, key: &str) -> &'m mut Bucket {
    if !map.contains_key(key) {
        map.insert(key.into(), Bucket::default());
    }
    map.get_mut(key).expect("inserted above")
}

/// The router's maps: by host, URI or path segment. std's SipHash costs as
/// much as the rest of a lookup on these short keys; foldhash's seeded
/// folded multiply is several times cheaper, and chosen-collision resistance
/// is not needed: the keys come from the config, requests only probe them.
type Map<V> = HashMap<Box<str>, V, foldhash::fast::RandomState>;

/// Room on the stack to lower-case a request host without allocating (DNS
/// names are at most 253 bytes).
const HOST_BUF: usize = 256;

/// The request host as routes name it: without user info, port, IPv6
/// brackets or trailing dot, in lower case.
fn normalize_host<'b>(raw: &'b str, buf: &'b mut [u8; HOST_BUF]) -> Cow<'b, str> {
    // One branch-free pass tells whether the host is of the common form.
    let seen = raw.bytes().fold(0, |seen, b| seen | HOST_BYTES[usize::from(b)]);
    let host = match seen & (COLON | OTHER) {
        0 => raw,
        COLON => strip_port(raw),
        _ => authority_host(raw),
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    let upper = seen & UPPER != 0 || (seen & OTHER != 0 && host.bytes().any(|b| b.is_ascii_uppercase()));
    if upper { lower_case(host, buf) } else { Cow::Borrowed(host) }
}

/// Classes of the bytes of a request host. Most hosts have only `PLAIN` ones.
const PLAIN: u8 = 0;
const UPPER: u8 = 1;
const COLON: u8 = 2;
const OTHER: u8 = 4;
const HOST_BYTES: [u8; 256] = {
    let mut classes = [OTHER; 256];
    let mut b = 0;
    while b < 256 {
        classes[b] = match b as u8 {
            b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' => PLAIN,
            b'A'..=b'Z' => UPPER,
            b':' => COLON,
            _ => OTHER,
        };
        b += 1;
    }
    classes
};

/// The host of any authority: `host:port`, `[v6]:port`, `user@host`.
fn authority_host(authority: &str) -> &str {
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once(']').map_or(bracketed, |(ip, _)| ip),
        None => strip_port(host),
    }
}

/// `host:port` without the port; a bare IPv6 address (several colons) as is.
fn strip_port(host: &str) -> &str {
    let bytes = host.as_bytes();
    match bytes.iter().position(|&b| b == b':') {
        Some(colon) if bytes[colon + 1..].iter().all(|&b| b != b':') => &host[..colon],
        _ => host,
    }
}

/// `host` in lower case, in `buf` if it fits.
fn lower_case<'b>(host: &'b str, buf: &'b mut [u8; HOST_BUF]) -> Cow<'b, str> {
    let Some(lower) = buf.get_mut(..host.len()) else {
        return Cow::Owned(host.to_ascii_lowercase());
    };
    for (lower, b) in lower.iter_mut().zip(host.bytes()) {
        *lower = b.to_ascii_lowercase();
    }
    let lower: &'b [u8] = lower;
    // Lower-casing ASCII keeps UTF-8 valid, so the fallback never runs.
    std::str::from_utf8(lower).map_or_else(|_| Cow::Owned(host.to_ascii_lowercase()), Cow::Borrowed)
}

/// A route's ranking and filters, ready for requests.
#[derive(Debug)]
struct CompiledRoute {
    index: usize,
    priority: i32,
    /// `None` when the route has no filter: it accepts every request.
    filters: Option<Filters>,
    /// The parameter URIs in config order, for [`Router::params`].
    param_uris: Vec<ParamUri>,
}

impl CompiledRoute {
    fn new(spec: &RouteSpec<'_>, uris: &[UriPattern]) -> Result<CompiledRoute, String> {
        let param_uris = uris
            .iter()
            .filter_map(|uri| match uri {
                UriPattern::Param(p) => Some(p.clone()),
                _ => None,
            })
            .collect();
        Ok(CompiledRoute { index: spec.index, priority: spec.priority, filters: Filters::new(spec)?, param_uris })
    }
}

/// What a request must have, besides host and URI, to match a route.
#[derive(Debug)]
struct Filters {
    methods: Vec<Method>,
    headers: Vec<(HeaderName, ValueMatch)>,
    query: Vec<(Box<str>, ValueMatch)>,
    cookies: Vec<(Box<str>, ValueMatch)>,
    remote_addrs: Vec<IpNet>,
}

impl Filters {
    /// The filters of a route; `None` when it has none.
    fn new(spec: &RouteSpec<'_>) -> Result<Option<Filters>, String> {
        let RouteSpec { methods, headers, query, cookies, remote_addrs, .. } = spec;
        if methods.is_empty() && headers.is_empty() && query.is_empty() && cookies.is_empty() && remote_addrs.is_empty()
        {
            return Ok(None);
        }
        let headers = headers
            .iter()
            .map(|m| {
                let name = HeaderName::from_bytes(m.name.as_bytes())
                    .map_err(|_| format!("`{}` is not a valid header name", m.name))?;
                Ok((name, ValueMatch::new(m, "header")?))
            })
            .collect::<Result<_, String>>()?;
        let by_name = |matchers: &[KeyValueMatch], kind: &str| -> Result<Vec<(Box<str>, ValueMatch)>, String> {
            matchers.iter().map(|m| Ok((m.name.as_str().into(), ValueMatch::new(m, kind)?))).collect()
        };
        Ok(Some(Filters {
            methods: methods.clone(),
            headers,
            query: by_name(query, "query")?,
            cookies: by_name(cookies, "cookie")?,
            remote_addrs: remote_addrs.clone(),
        }))
    }

    /// Whether the request passes every filter.
    fn accept(&self, request: &Request<'_>) -> bool {
        (self.methods.is_empty() || self.methods.contains(request.method))
            && (self.remote_addrs.is_empty()
                || request.client_ip.is_some_and(|ip| {
                    let ip = ip.to_canonical(); // an IPv4-mapped IPv6 peer is its IPv4 address
                    self.remote_addrs.iter().any(|net| net.contains(&ip))
                }))
            && self.headers.iter().all(|(name, m)| m.matches(request.headers.get(name).map(|v| v.as_bytes())))
            && self.query.iter().all(|(name, m)| m.matches(query_value(request.query, name).as_deref()))
            && self.cookies.iter().all(|(name, m)| m.matches(cookie_value(request.headers, name)))
    }
}

/// One header, query or cookie matcher.
#[derive(Debug)]
struct ValueMatch {
    test: ValueTest,
    invert: bool,
}

#[derive(Debug)]
enum ValueTest {
    Exact(Box<[u8]>),
    Prefix(Box<[u8]>),
    Regex(Regex),
    Present,
    /// `present: false`, read as "absent".
    Absent,
}

impl ValueMatch {
    fn new(matcher: &KeyValueMatch, kind: &str) -> Result<ValueMatch, String> {
        let name = &matcher.name;
        let value = matcher.value.as_ref().ok_or_else(|| format!("{kind} matcher `{name}` has no value"))?;
        let test = match value.r#match.as_ref().ok_or_else(|| format!("{kind} matcher `{name}` has no match"))? {
            Match::Exact(s) => ValueTest::Exact(s.as_bytes().into()),
            Match::Prefix(s) => ValueTest::Prefix(s.as_bytes().into()),
            Match::Regex(re) => ValueTest::Regex(
                Regex::new(re).map_err(|e| format!("{kind} matcher `{name}`: invalid regex `{re}`: {e}"))?,
            ),
            Match::Present(true) => ValueTest::Present,
            Match::Present(false) => ValueTest::Absent,
        };
        Ok(ValueMatch { test, invert: value.invert })
    }

    /// Whether the matcher succeeds on a value, `None` when the key is absent.
    fn matches(&self, value: Option<&[u8]>) -> bool {
        let hit = match (&self.test, value) {
            (ValueTest::Present, value) => value.is_some(),
            (ValueTest::Absent, value) => value.is_none(),
            (_, None) => false,
            (ValueTest::Exact(want), Some(value)) => value == &**want,
            (ValueTest::Prefix(want), Some(value)) => value.starts_with(want),
            (ValueTest::Regex(re), Some(value)) => re.is_match(value),
        };
        hit != self.invert
    }
}

/// Header, query and cookie matchers outside routing (traffic_split rules
/// use the same semantics as route matchers).
#[derive(Debug)]
pub struct RequestMatch {
    headers: Vec<(HeaderName, ValueMatch)>,
    query: Vec<(Box<str>, ValueMatch)>,
    cookies: Vec<(Box<str>, ValueMatch)>,
}

impl RequestMatch {
    pub fn new(
        headers: &[KeyValueMatch],
        query: &[KeyValueMatch],
        cookies: &[KeyValueMatch],
    ) -> Result<RequestMatch, String> {
        let headers = headers
            .iter()
            .map(|m| {
                let name = HeaderName::from_bytes(m.name.as_bytes())
                    .map_err(|_| format!("`{}` is not a valid header name", m.name))?;
                Ok((name, ValueMatch::new(m, "header")?))
            })
            .collect::<Result<_, String>>()?;
        let by_name = |matchers: &[KeyValueMatch], kind: &str| -> Result<Vec<(Box<str>, ValueMatch)>, String> {
            matchers.iter().map(|m| Ok((m.name.as_str().into(), ValueMatch::new(m, kind)?))).collect()
        };
        Ok(RequestMatch { headers, query: by_name(query, "query")?, cookies: by_name(cookies, "cookie")? })
    }

    /// Whether every matcher succeeds (true when there are none).
    pub fn accept(&self, headers: &HeaderMap, query: Option<&str>) -> bool {
        self.headers.iter().all(|(name, m)| m.matches(headers.get(name).map(|v| v.as_bytes())))
            && self.query.iter().all(|(name, m)| m.matches(query_value(query, name).as_deref()))
            && self.cookies.iter().all(|(name, m)| m.matches(cookie_value(headers, name)))
    }
}

/// The first value of query argument `name` (case-sensitive), percent-decoded.
/// An argument without `=` has the empty value. Also used for consistent
/// hashing on a query argument.
pub fn query_value<'q>(query: Option<&'q str>, name: &str) -> Option<Cow<'q, [u8]>> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| percent_decode(value.as_bytes()))
    })
}

fn percent_decode(raw: &[u8]) -> Cow<'_, [u8]> {
    if !raw.contains(&b'%') {
        return Cow::Borrowed(raw);
    }
    let hex = |b: Option<&u8>| b.and_then(|&b| char::from(b).to_digit(16)).and_then(|d| u8::try_from(d).ok());
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match (b, hex(raw.get(i + 1)), hex(raw.get(i + 2))) {
            (b'%', Some(high), Some(low)) => {
                out.push(high << 4 | low);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

/// The value of cookie `name` (case-sensitive) in the `Cookie` headers
/// (HTTP/2 may send several). Also used for consistent hashing on a cookie.
pub fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers.get_all(http::header::COOKIE).iter().flat_map(|v| v.as_bytes().split(|&b| b == b';')).find_map(|pair| {
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &b""[..]),
        };
        (key.trim_ascii() == name.as_bytes()).then(|| value.trim_ascii())
    })
}

/// The state of one `find`: the request, and the candidates that failed a
/// filter, so that a route listed under several hosts or URIs is checked once.
struct Search<'a> {
    routes: &'a [CompiledRoute],
    request: &'a Request<'a>,
    failed: Failed,
}

impl Search<'_> {
    fn accepts(&mut self, id: usize) -> bool {
        let Some(filters) = &self.routes[id].filters else { return true };
        if self.failed.contains(id) {
            return false;
        }
        let accepted = filters.accept(self.request);
        if !accepted {
            self.failed.insert(id);
        }
        accepted
    }

    /// The first candidate (they are in precedence order) that passes its filters.
    fn first(&mut self, candidates: &[usize]) -> Option<usize> {
        candidates.iter().copied().find(|&id| self.accepts(id))
    }

    /// Replaces `best` (static segment count, route) with the first of
    /// `candidates` that passes its filters, if that one ranks higher.
    fn offer(&mut self, statics: usize, candidates: &[usize], best: &mut Option<(usize, usize)>) {
        for &id in candidates {
            if let Some((best_statics, best_id)) = *best
                && self.rank(statics, id) <= self.rank(best_statics, best_id)
            {
                return; // the following candidates rank lower still
            }
            if self.accepts(id) {
                *best = Some((statics, id));
                return;
            }
        }
    }

    fn rank(&self, statics: usize, id: usize) -> (usize, i32, Reverse<usize>) {
        (statics, self.routes[id].priority, Reverse(id))
    }
}

/// Routes that failed a filter during one `find`. Only a few are remembered;
/// a forgotten one is merely checked again.
#[derive(Default)]
struct Failed {
    ids: [usize; 8],
    len: usize,
}

impl Failed {
    fn contains(&self, id: usize) -> bool {
        self.ids[..self.len].contains(&id)
    }

    fn insert(&mut self, id: usize) {
        if let Some(slot) = self.ids.get_mut(self.len) {
            *slot = id;
            self.len += 1;
        }
    }
}

/// A URI of `Route.uris`, parsed.
#[derive(Debug, Clone)]
enum UriPattern {
    Exact(Box<str>),
    /// The text before the trailing `*`.
    Prefix(Box<str>),
    Param(ParamUri),
}

impl UriPattern {
    fn parse(uri: &str) -> Result<UriPattern, String> {
        let (body, open) = uri.strip_suffix('*').map_or((uri, false), |body| (body, true));
        if !body.split('/').any(|segment| segment.starts_with(':')) {
            return Ok(if open { UriPattern::Prefix(body.into()) } else { UriPattern::Exact(uri.into()) });
        }
        let Some(body) = body.strip_prefix('/') else {
            return Err(format!("URI `{uri}` must start with `/`"));
        };
        let mut parts: Vec<&str> = body.split('/').collect();
        let tail = if open { parts.pop() } else { None };
        if tail.is_some_and(|tail| tail.starts_with(':')) {
            return Err(format!("URI `{uri}`: `*` cannot end a parameter; write `/:name/*`"));
        }
        let segments = parts
            .into_iter()
            .map(|part| match part.strip_prefix(':') {
                Some(name) => Segment::Param(name.into()),
                None => Segment::Static(part.into()),
            })
            .collect();
        Ok(UriPattern::Param(ParamUri { segments, tail: tail.map(Into::into) }))
    }
}

/// A parameter URI: `/users/:id/orders` is the segments `users`, `:id`,
/// `orders`; `/files/:id/*` is `files`, `:id` and the tail `` (any rest).
#[derive(Debug, Clone)]
struct ParamUri {
    segments: Vec<Segment>,
    /// With a trailing `*`: the text the rest of the path (after the segments
    /// and a `/`) must start with.
    tail: Option<Box<str>>,
}

#[derive(Debug, Clone)]
enum Segment {
    Static(Box<str>),
    Param(Box<str>),
}

impl ParamUri {
    /// The `:name` captures of `path`, or `None` when it does not match.
    fn captures(&self, path: &str) -> Option<Vec<(String, String)>> {
        let mut rest = Some(path.strip_prefix('/')?);
        let mut found = Vec::new();
        for segment in &self.segments {
            let (value, next) = split_segment(rest?);
            match segment {
                Segment::Static(text) if **text == *value => {}
                Segment::Param(name) if !value.is_empty() => found.push((name.to_string(), value.to_string())),
                _ => return None,
            }
            rest = next;
        }
        match (&self.tail, rest) {
            (None, None) => Some(found),
            (Some(tail), Some(rest)) if rest.starts_with(&**tail) => Some(found),
            _ => None,
        }
    }
}

/// `a/b/c` is `a` and the rest `b/c`; `a` is `a` and no rest. (A plain byte
/// loop: `split_once` costs more on segments this short.)
fn split_segment(rest: &str) -> (&str, Option<&str>) {
    match rest.bytes().position(|b| b == b'/') {
        Some(slash) => (&rest[..slash], Some(&rest[slash + 1..])),
        None => (rest, None),
    }
}

/// The routes under one host (or under none): their URIs indexed.
#[derive(Debug, Default)]
struct Bucket {
    /// Routes by exact URI.
    exact: Map<Vec<usize>>,
    params: ParamTree,
    /// Routes by prefix URI: the text before the `*`, or the empty prefix
    /// for routes without URIs.
    prefixes: Map<Vec<usize>>,
    /// The distinct lengths of `prefixes`, longest first.
    prefix_lens: Vec<PrefixLen>,
}

/// A length of prefix URIs. When all of them end with `/` (as most do), a path
/// is probed at that length only if it has a `/` there: the probes are bounded
/// by the path's segments, not by the number of prefixes.
#[derive(Debug, Clone, Copy)]
struct PrefixLen {
    len: usize,
    all_end_with_slash: bool,
}

impl Bucket {
    fn add(&mut self, uris: &[UriPattern], id: usize) {
        if uris.is_empty() {
            self.prefixes.entry("".into()).or_default().push(id); // the shortest prefix
        }
        for uri in uris {
            match uri {
                UriPattern::Exact(path) => self.exact.entry(path.clone()).or_default().push(id),
                UriPattern::Param(uri) => self.params.add(uri, id),
                UriPattern::Prefix(prefix) => self.prefixes.entry(prefix.clone()).or_default().push(id),
            }
        }
    }

    /// Puts every candidate list in precedence order; lists the prefix lengths.
    fn finish(&mut self, routes: &[CompiledRoute]) {
        let order = |ids: &mut Vec<usize>| {
            ids.sort_by_key(|&id| (Reverse(routes[id].priority), id));
            ids.dedup();
        };
        self.exact.values_mut().for_each(order);
        self.prefixes.values_mut().for_each(order);
        for node in &mut self.params.nodes {
            order(&mut node.routes);
            node.tails.iter_mut().for_each(|(_, ids)| order(ids));
        }
        let mut lens = BTreeMap::new();
        for prefix in self.prefixes.keys() {
            *lens.entry(Reverse(prefix.len())).or_insert(true) &= prefix.ends_with('/');
        }
        self.prefix_lens =
            lens.into_iter().map(|(Reverse(len), all_end_with_slash)| PrefixLen { len, all_end_with_slash }).collect();
    }

    /// The best route of this bucket for `path`: exact URI, then parameter
    /// URIs, then prefixes from the longest.
    fn find(&self, path: &str, search: &mut Search<'_>) -> Option<usize> {
        if let Some(id) = self.exact.get(path).and_then(|ids| search.first(ids)) {
            return Some(id);
        }
        if let Some(id) = self.params.find(path, search) {
            return Some(id);
        }
        let longer = self.prefix_lens.partition_point(|l| l.len > path.len());
        for &PrefixLen { len, all_end_with_slash } in &self.prefix_lens[longer..] {
            let Some(prefix) = path.get(..len) else { continue }; // cut inside a UTF-8 character
            if all_end_with_slash && !prefix.ends_with('/') {
                continue;
            }
            if let Some(id) = self.prefixes.get(prefix).and_then(|ids| search.first(ids)) {
                return Some(id);
            }
        }
        None
    }
}

/// Parameter URIs in a trie of path segments. Node 0 is the root, `/`.
#[derive(Debug)]
struct ParamTree {
    nodes: Vec<ParamNode>,
}

#[derive(Debug, Default)]
struct ParamNode {
    statics: Map<usize>,
    param: Option<usize>,
    /// Routes whose URI ends at this node, in precedence order.
    routes: Vec<usize>,
    /// Routes whose URI ends at this node with a `*` tail: the text the rest
    /// of the path starts with, and the routes in precedence order.
    tails: Vec<(Box<str>, Vec<usize>)>,
}

impl Default for ParamTree {
    fn default() -> ParamTree {
        ParamTree { nodes: vec![ParamNode::default()] }
    }
}

impl ParamTree {
    fn add(&mut self, uri: &ParamUri, id: usize) {
        let mut node = 0;
        for segment in &uri.segments {
            let next = self.nodes.len();
            let child = match segment {
                Segment::Static(text) => *self.nodes[node].statics.entry(text.clone()).or_insert(next),
                Segment::Param(_) => *self.nodes[node].param.get_or_insert(next),
            };
            if child == next {
                self.nodes.push(ParamNode::default());
            }
            node = child;
        }
        let node = &mut self.nodes[node];
        match &uri.tail {
            None => node.routes.push(id),
            Some(tail) => match node.tails.iter_mut().find(|(t, _)| t == tail) {
                Some((_, ids)) => ids.push(id),
                None => node.tails.push((tail.clone(), vec![id])),
            },
        }
    }

    /// The best route of the matching parameter URIs: most static segments,
    /// then priority, then config order.
    fn find(&self, path: &str, search: &mut Search<'_>) -> Option<usize> {
        if self.nodes.len() == 1 {
            return None;
        }
        let mut best = None;
        self.visit(0, Some(path.strip_prefix('/')?), 0, search, &mut best);
        best.map(|(_, id)| id)
    }

    /// Offers the routes of every URI below `node` that matches `rest` (the
    /// path after this node's segments, `None` when the path ends here).
    fn visit(
        &self,
        node: usize,
        rest: Option<&str>,
        statics: usize,
        search: &mut Search<'_>,
        best: &mut Option<(usize, usize)>,
    ) {
        let node = &self.nodes[node];
        let Some(rest) = rest else {
            search.offer(statics, &node.routes, best);
            return;
        };
        for (tail, routes) in &node.tails {
            if rest.starts_with(&**tail) {
                search.offer(statics, routes, best);
            }
        }
        let (segment, next) = split_segment(rest);
        if let Some(&child) = node.statics.get(segment) {
            self.visit(child, next, statics + 1, search, best);
        }
        if let Some(child) = node.param.filter(|_| !segment.is_empty()) {
            self.visit(child, next, statics, search, best);
        }
    }
}

#[cfg(test)]
mod tests {
    use pingora_config::v1::StringMatch;

    use super::*;

    fn route(index: usize, hosts: &[&str], uris: &[&str]) -> RouteSpec<'static> {
        RouteSpec {
            index,
            hosts: hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>().into(),
            uris: uris.iter().map(|u| u.to_string()).collect::<Vec<_>>().into(),
            ..RouteSpec::default()
        }
    }

    fn with_priority(mut spec: RouteSpec<'static>, priority: i32) -> RouteSpec<'static> {
        spec.priority = priority;
        spec
    }

    fn matcher(name: &str, m: Match, invert: bool) -> KeyValueMatch {
        KeyValueMatch { name: name.into(), value: Some(StringMatch { invert, r#match: Some(m) }) }
    }

    fn router(routes: Vec<RouteSpec<'_>>) -> Router {
        Router::new(routes).expect("the routes are valid")
    }

    /// A request builder over owned parts.
    struct Req {
        host: String,
        path: String,
        query: Option<String>,
        method: Method,
        headers: HeaderMap,
        client_ip: Option<IpAddr>,
    }

    fn req(host: &str, path_and_query: &str) -> Req {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q.to_string())),
            None => (path_and_query, None),
        };
        Req {
            host: host.into(),
            path: path.into(),
            query,
            method: Method::GET,
            headers: HeaderMap::new(),
            client_ip: None,
        }
    }

    impl Req {
        fn method(mut self, method: Method) -> Req {
            self.method = method;
            self
        }

        fn header(mut self, name: &'static str, value: &str) -> Req {
            self.headers.append(name, value.parse().expect("a valid header value"));
            self
        }

        fn ip(mut self, ip: &str) -> Req {
            self.client_ip = Some(ip.parse().expect("a valid IP"));
            self
        }

        fn find(&self, router: &Router) -> Option<usize> {
            router.find(&Request {
                host: &self.host,
                path: &self.path,
                query: self.query.as_deref(),
                method: &self.method,
                headers: &self.headers,
                client_ip: self.client_ip,
            })
        }
    }

    // Host precedence.

    #[test]
    fn exact_host_beats_wildcard_beats_no_host() {
        let r = router(vec![
            with_priority(route(0, &[], &["/*"]), 10),
            with_priority(route(1, &["*.example.com"], &["/*"]), 5),
            route(2, &["api.example.com"], &["/*"]),
        ]);
        assert_eq!(req("api.example.com", "/x").find(&r), Some(2));
        assert_eq!(req("web.example.com", "/x").find(&r), Some(1));
        assert_eq!(req("example.org", "/x").find(&r), Some(0));
    }

    #[test]
    fn host_beats_uri() {
        let r = router(vec![route(0, &[], &["/exact"]), route(1, &["*.a.com"], &["/*"]), route(2, &["a.com"], &[])]);
        assert_eq!(req("a.com", "/exact").find(&r), Some(2));
        assert_eq!(req("www.a.com", "/exact").find(&r), Some(1));
        assert_eq!(req("b.com", "/exact").find(&r), Some(0));
    }

    #[test]
    fn wildcards_of_different_lengths_are_all_probed() {
        let r = router(vec![route(0, &["*.a.io"], &[]), route(1, &["*.very.long.example.com"], &[])]);
        assert_eq!(req("x.a.io", "/").find(&r), Some(0));
        assert_eq!(req("x.y.very.long.example.com", "/").find(&r), Some(1));
        assert_eq!(req("very.long.example.com", "/").find(&r), None);
        assert_eq!(req("a.io", "/").find(&r), None);
    }

    #[test]
    fn longer_wildcard_suffix_wins() {
        let r = router(vec![
            route(0, &["*.com"], &[]),
            route(1, &["*.example.com"], &[]),
            route(2, &["*.b.example.com"], &[]),
        ]);
        assert_eq!(req("a.b.example.com", "/").find(&r), Some(2));
        assert_eq!(req("a.c.example.com", "/").find(&r), Some(1));
        assert_eq!(req("x.com", "/").find(&r), Some(0));
    }

    #[test]
    fn wildcard_matches_subdomains_at_any_depth_but_not_the_domain() {
        let r = router(vec![route(0, &["*.example.com"], &[])]);
        assert_eq!(req("a.example.com", "/").find(&r), Some(0));
        assert_eq!(req("a.b.example.com", "/").find(&r), Some(0));
        assert_eq!(req("example.com", "/").find(&r), None);
        assert_eq!(req("badexample.com", "/").find(&r), None);
        assert_eq!(req(".example.com", "/").find(&r), None);
    }

    #[test]
    fn request_host_loses_port_and_case() {
        let r = router(vec![route(0, &["API.Example.com"], &[]), route(1, &["*.Example.org"], &[])]);
        assert_eq!(req("api.example.com:8080", "/").find(&r), Some(0));
        assert_eq!(req("API.EXAMPLE.COM", "/").find(&r), Some(0));
        assert_eq!(req("Api.Example.Com:443", "/").find(&r), Some(0));
        assert_eq!(req("api.example.com.", "/").find(&r), Some(0));
        assert_eq!(req("user@api.example.com:80", "/").find(&r), Some(0));
        assert_eq!(req("WWW.EXAMPLE.ORG:8443", "/").find(&r), Some(1));
    }

    #[test]
    fn ipv6_host_with_port_is_stripped() {
        let buf = &mut [0; HOST_BUF];
        assert_eq!(normalize_host("[::1]:8080", buf), "::1");
        assert_eq!(normalize_host("[2001:DB8::1]", buf), "2001:db8::1");
        assert_eq!(normalize_host("2001:db8::1", buf), "2001:db8::1");
        assert_eq!(normalize_host("10.0.0.1:80", buf), "10.0.0.1");
        assert_eq!(normalize_host("My_Host.example.com:80", buf), "my_host.example.com");
        assert_eq!(normalize_host("", buf), "");
        let r = router(vec![route(0, &["a.com"], &[]), route(1, &[], &["/v6"])]);
        assert_eq!(req("[::1]:8080", "/v6").find(&r), Some(1));
    }

    #[test]
    fn lower_case_host_is_not_copied() {
        let buf = &mut [0; HOST_BUF];
        assert!(matches!(normalize_host("api.example.com:80", buf), Cow::Borrowed("api.example.com")));
        let long = "A".repeat(300);
        assert_eq!(normalize_host(&long, buf), "a".repeat(300));
    }

    // URI precedence.

    #[test]
    fn exact_uri_beats_param_beats_prefix() {
        let r = router(vec![
            with_priority(route(0, &[], &["/users/*"]), 10),
            with_priority(route(1, &[], &["/users/:id"]), 5),
            route(2, &["a.com"], &[]),
            route(3, &[], &["/users/me"]),
        ]);
        assert_eq!(req("x.com", "/users/me").find(&r), Some(3));
        assert_eq!(req("x.com", "/users/42").find(&r), Some(1));
        assert_eq!(req("x.com", "/users/42/orders").find(&r), Some(0));
    }

    #[test]
    fn param_uri_with_more_static_segments_wins() {
        let r = router(vec![
            route(0, &[], &["/:a/:b/:c"]),
            route(1, &[], &["/a/:b/:c"]),
            route(2, &[], &["/:a/b/c"]),
            route(3, &[], &["/a/b/:c"]),
        ]);
        assert_eq!(req("h", "/a/b/c").find(&r), Some(2));
        assert_eq!(req("h", "/a/b/x").find(&r), Some(3));
        assert_eq!(req("h", "/a/x/y").find(&r), Some(1));
        assert_eq!(req("h", "/x/y/z").find(&r), Some(0));
    }

    #[test]
    fn param_uris_with_equal_static_segments_tie_on_priority() {
        let r = router(vec![route(0, &[], &["/a/:x"]), with_priority(route(1, &[], &["/:y/b"]), 1)]);
        assert_eq!(req("h", "/a/b").find(&r), Some(1));
        let r = router(vec![route(0, &[], &["/a/:x"]), route(1, &[], &["/:y/b"])]);
        assert_eq!(req("h", "/a/b").find(&r), Some(0));
    }

    #[test]
    fn param_matches_one_non_empty_segment() {
        let r = router(vec![route(0, &[], &["/users/:id/orders"])]);
        assert_eq!(req("h", "/users/42/orders").find(&r), Some(0));
        assert_eq!(req("h", "/users//orders").find(&r), None);
        assert_eq!(req("h", "/users/4/2/orders").find(&r), None);
        assert_eq!(req("h", "/users/42/orders/").find(&r), None);
        assert_eq!(req("h", "/users/42").find(&r), None);
    }

    #[test]
    fn param_uri_may_end_with_a_wildcard() {
        let r = router(vec![route(0, &[], &["/files/:id/*"]), route(1, &[], &["/v/:id/ab*"]), route(2, &[], &["/*"])]);
        assert_eq!(req("h", "/files/7/").find(&r), Some(0));
        assert_eq!(req("h", "/files/7/a/b").find(&r), Some(0));
        assert_eq!(req("h", "/files/7").find(&r), Some(2));
        assert_eq!(req("h", "/v/7/abc").find(&r), Some(1));
        assert_eq!(req("h", "/v/7/xabc").find(&r), Some(2));
        assert!(Router::new(vec![route(4, &[], &["/files/:id*"])]).is_err());
    }

    #[test]
    fn longer_prefix_wins_and_no_uris_is_the_shortest() {
        let r = router(vec![
            with_priority(route(0, &[], &[]), 100),
            with_priority(route(1, &[], &["/*"]), 50),
            with_priority(route(2, &[], &["/api/*"]), 10),
            route(3, &[], &["/api/v1/*"]),
        ]);
        assert_eq!(req("h", "/api/v1/users").find(&r), Some(3));
        assert_eq!(req("h", "/api/v2").find(&r), Some(2));
        assert_eq!(req("h", "/api/").find(&r), Some(2));
        assert_eq!(req("h", "/api").find(&r), Some(1));
        assert_eq!(req("h", "*").find(&r), Some(0));
    }

    #[test]
    fn prefixes_of_one_length_with_and_without_slash() {
        let r = router(vec![route(0, &[], &["/ab/*"]), route(1, &[], &["/abc*"]), route(2, &[], &["/a*"])]);
        assert_eq!(req("h", "/ab/x").find(&r), Some(0));
        assert_eq!(req("h", "/abcd").find(&r), Some(1));
        assert_eq!(req("h", "/abd").find(&r), Some(2));
        assert_eq!(req("h", "/").find(&r), None);
    }

    #[test]
    fn exact_uri_matches_only_that_path() {
        let r = router(vec![route(0, &[], &["/a"]), route(1, &[], &["/a/b"])]);
        assert_eq!(req("h", "/a").find(&r), Some(0));
        assert_eq!(req("h", "/a/").find(&r), None);
        assert_eq!(req("h", "/ab").find(&r), None);
        assert_eq!(req("h", "/a/b").find(&r), Some(1));
        assert_eq!(req("h", "/").find(&r), None);
    }

    #[test]
    fn prefix_without_slash_is_a_text_prefix() {
        let r = router(vec![route(0, &[], &["/img*"])]);
        assert_eq!(req("h", "/img").find(&r), Some(0));
        assert_eq!(req("h", "/images/a.png").find(&r), None);
        assert_eq!(req("h", "/imgs/a.png").find(&r), Some(0));
    }

    #[test]
    fn utf8_paths_are_compared_by_bytes() {
        let r = router(vec![
            route(0, &[], &["/é/*"]),
            route(1, &[], &["/è"]),
            route(2, &[], &["/*"]),
            route(3, &[], &["/:x/ü"]),
        ]);
        assert_eq!(req("h", "/é/x").find(&r), Some(0));
        assert_eq!(req("h", "/è").find(&r), Some(1));
        assert_eq!(req("h", "/ê").find(&r), Some(2));
        assert_eq!(req("h", "/é").find(&r), Some(2));
        assert_eq!(req("h", "/日本/ü").find(&r), Some(3));
        assert_eq!(r.params(3, "/日本/ü"), vec![("x".to_string(), "日本".to_string())]);
    }

    // Ties.

    #[test]
    fn higher_priority_wins_a_tie() {
        let r = router(vec![
            route(0, &[], &["/a"]),
            with_priority(route(1, &[], &["/a"]), 1),
            with_priority(route(2, &[], &["/a"]), -1),
        ]);
        assert_eq!(req("h", "/a").find(&r), Some(1));
    }

    #[test]
    fn config_order_breaks_the_last_tie() {
        let r = router(vec![route(7, &[], &["/a"]), route(3, &[], &["/a"]), route(5, &[], &["/a"])]);
        assert_eq!(req("h", "/a").find(&r), Some(3));
    }

    // Filters.

    #[test]
    fn failing_filter_falls_back_to_next_candidate() {
        let mut post_only = route(0, &["a.com"], &["/a"]);
        post_only.methods = vec![Method::POST];
        let mut with_header = with_priority(route(1, &["a.com"], &["/a"]), -1);
        with_header.headers = vec![matcher("x-beta", Match::Present(true), false)].into();
        let r = router(vec![post_only, with_header, route(2, &["a.com"], &["/*"]), route(3, &[], &["/a"])]);
        assert_eq!(req("a.com", "/a").method(Method::POST).find(&r), Some(0));
        assert_eq!(req("a.com", "/a").header("x-beta", "1").find(&r), Some(1));
        assert_eq!(req("a.com", "/a").find(&r), Some(2));
    }

    #[test]
    fn failing_filter_falls_back_to_next_host() {
        let mut internal = route(0, &["a.com"], &["/a"]);
        internal.remote_addrs = vec!["10.0.0.0/8".parse().expect("a CIDR")];
        let r = router(vec![internal, route(1, &["*.com"], &["/*"]), route(2, &[], &["/a"])]);
        assert_eq!(req("a.com", "/a").ip("10.1.2.3").find(&r), Some(0));
        assert_eq!(req("a.com", "/a").ip("192.168.1.1").find(&r), Some(1));
        assert_eq!(req("a.org", "/a").ip("10.1.2.3").find(&r), Some(2));
    }

    #[test]
    fn failing_filter_falls_back_among_params() {
        let mut deep = route(0, &[], &["/a/b/:c"]);
        deep.methods = vec![Method::PUT];
        let r = router(vec![deep, route(1, &[], &["/a/:b/:c"])]);
        assert_eq!(req("h", "/a/b/c").method(Method::PUT).find(&r), Some(0));
        assert_eq!(req("h", "/a/b/c").find(&r), Some(1));
    }

    #[test]
    fn methods_filter() {
        let mut spec = route(0, &[], &["/a"]);
        spec.methods = vec![Method::GET, Method::HEAD];
        let r = router(vec![spec]);
        assert_eq!(req("h", "/a").method(Method::HEAD).find(&r), Some(0));
        assert_eq!(req("h", "/a").method(Method::DELETE).find(&r), None);
    }

    #[test]
    fn header_matchers() {
        let cases = [
            (Match::Exact("v1".into()), false, Some("v1"), true),
            (Match::Exact("v1".into()), false, Some("V1"), false),
            (Match::Exact("v1".into()), false, None, false),
            (Match::Prefix("v".into()), false, Some("v2"), true),
            (Match::Regex("^v[0-9]+$".into()), false, Some("v10"), true),
            (Match::Regex("^v[0-9]+$".into()), false, Some("v1x"), false),
            (Match::Regex("[0-9]".into()), false, Some("v1x"), true),
            (Match::Present(true), false, Some(""), true),
            (Match::Present(true), false, None, false),
            (Match::Present(true), true, None, true),
            (Match::Present(false), false, None, true),
            (Match::Exact("v1".into()), true, Some("v2"), true),
            (Match::Exact("v1".into()), true, None, true),
            (Match::Exact("v1".into()), true, Some("v1"), false),
        ];
        for (m, invert, value, expected) in cases {
            let mut spec = route(0, &[], &[]);
            spec.headers = vec![matcher("X-Version", m.clone(), invert)].into();
            let r = router(vec![spec]);
            let mut request = req("h", "/");
            if let Some(value) = value {
                request = request.header("x-version", value);
            }
            assert_eq!(request.find(&r).is_some(), expected, "{m:?} invert={invert} on {value:?}");
        }
    }

    #[test]
    fn every_header_matcher_must_succeed() {
        let mut spec = route(0, &[], &[]);
        spec.headers =
            vec![matcher("a", Match::Exact("1".into()), false), matcher("b", Match::Exact("2".into()), false)].into();
        let r = router(vec![spec]);
        assert_eq!(req("h", "/").header("a", "1").header("b", "2").find(&r), Some(0));
        assert_eq!(req("h", "/").header("a", "1").find(&r), None);
    }

    #[test]
    fn query_matchers() {
        let mut spec = route(0, &[], &[]);
        spec.query =
            vec![matcher("lang", Match::Exact("fr ca".into()), false), matcher("debug", Match::Present(true), false)]
                .into();
        let r = router(vec![spec]);
        assert_eq!(req("h", "/?lang=fr%20ca&debug").find(&r), Some(0));
        assert_eq!(req("h", "/?debug=&lang=fr%20ca").find(&r), Some(0));
        assert_eq!(req("h", "/?lang=fr%20ca").find(&r), None);
        assert_eq!(req("h", "/?Lang=fr%20ca&debug").find(&r), None, "names are case-sensitive");
        assert_eq!(req("h", "/?lang=fr%20ca&lang=x&debug").find(&r), Some(0), "the first value counts");
        assert_eq!(req("h", "/").find(&r), None);
    }

    #[test]
    fn query_values_are_percent_decoded() {
        assert_eq!(percent_decode(b"a%2Fb%zz%4"), &b"a/b%zz%4"[..]);
        assert_eq!(percent_decode(b"%C3%A9"), "é".as_bytes());
        assert!(matches!(percent_decode(b"plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn inverted_query_matcher_accepts_absent_argument() {
        let mut spec = route(0, &[], &[]);
        spec.query = vec![matcher("legacy", Match::Exact("1".into()), true)].into();
        let r = router(vec![spec]);
        assert_eq!(req("h", "/").find(&r), Some(0));
        assert_eq!(req("h", "/?legacy=0").find(&r), Some(0));
        assert_eq!(req("h", "/?legacy=1").find(&r), None);
    }

    #[test]
    fn cookie_matchers() {
        let mut spec = route(0, &[], &[]);
        spec.cookies =
            vec![matcher("session", Match::Prefix("abc".into()), false), matcher("beta", Match::Present(true), false)]
                .into();
        let r = router(vec![spec]);
        assert_eq!(req("h", "/").header("cookie", "a=1; session=abc123; beta=").find(&r), Some(0));
        assert_eq!(req("h", "/").header("cookie", "session=abc1").header("cookie", "beta=1").find(&r), Some(0));
        assert_eq!(req("h", "/").header("cookie", "Session=abc1; beta=1").find(&r), None);
        assert_eq!(req("h", "/").header("cookie", "session=xyz; beta=1").find(&r), None);
        assert_eq!(req("h", "/").find(&r), None);
    }

    #[test]
    fn remote_addrs_filter() {
        let mut spec = route(0, &[], &[]);
        spec.remote_addrs = vec!["10.0.0.0/8".parse().expect("a CIDR"), "2001:db8::1/128".parse().expect("a CIDR")];
        let r = router(vec![spec]);
        assert_eq!(req("h", "/").ip("10.9.8.7").find(&r), Some(0));
        assert_eq!(req("h", "/").ip("::ffff:10.9.8.7").find(&r), Some(0));
        assert_eq!(req("h", "/").ip("2001:db8::1").find(&r), Some(0));
        assert_eq!(req("h", "/").ip("11.0.0.1").find(&r), None);
        assert_eq!(req("h", "/").find(&r), None, "no client address, no match");
    }

    // Routes in several places.

    #[test]
    fn route_with_several_hosts_ranks_by_the_best() {
        let r = router(vec![route(0, &["*.com"], &["/*"]), route(1, &["*.a.com", "b.a.com"], &["/*"])]);
        assert_eq!(req("b.a.com", "/x").find(&r), Some(1));
        assert_eq!(req("c.a.com", "/x").find(&r), Some(1));
        assert_eq!(req("c.com", "/x").find(&r), Some(0));
    }

    #[test]
    fn route_with_several_uris_ranks_by_the_best() {
        let r = router(vec![
            with_priority(route(0, &[], &["/a/*"]), 1),
            route(1, &[], &["/*", "/a/b"]),
            route(2, &[], &["/a/:x", "/a/:x/:y"]),
        ]);
        assert_eq!(req("h", "/a/b").find(&r), Some(1));
        assert_eq!(req("h", "/a/c").find(&r), Some(2));
        assert_eq!(req("h", "/a/c/d").find(&r), Some(2));
        assert_eq!(req("h", "/a/c/d/e").find(&r), Some(0));
        assert_eq!(req("h", "/b").find(&r), Some(1));
    }

    #[test]
    fn route_in_several_buckets_failing_a_filter_is_skipped_everywhere() {
        let mut spec = route(0, &["a.com", "*.com"], &["/a", "/*"]);
        spec.methods = vec![Method::POST];
        let r = router(vec![spec, route(1, &[], &[])]);
        assert_eq!(req("a.com", "/a").find(&r), Some(1));
        assert_eq!(req("a.com", "/a").method(Method::POST).find(&r), Some(0));
    }

    // The router itself.

    #[test]
    fn route_failing_filters_is_remembered_once() {
        let mut failed = Failed::default();
        (0..10).for_each(|id| failed.insert(id));
        assert!(failed.contains(7));
        assert!(!failed.contains(9), "beyond its room, a route is merely checked again");
    }

    #[test]
    fn empty_router_finds_nothing() {
        let r = router(Vec::new());
        assert!(r.is_empty());
        assert_eq!(r.len(), 0);
        assert_eq!(req("a.com", "/").find(&r), None);
    }

    #[test]
    fn bad_regex_names_the_route() {
        let mut spec = route(4, &[], &[]);
        spec.cookies = vec![matcher("c", Match::Regex("(".into()), false)].into();
        let err = Router::new(vec![route(0, &[], &[]), spec]).expect_err("the regex is invalid");
        assert_eq!(err.route, 4);
        assert!(err.message.contains("cookie matcher `c`"), "{err}");
    }

    #[test]
    fn matcher_without_value_is_an_error() {
        let mut spec = route(2, &[], &[]);
        spec.headers = vec![KeyValueMatch { name: "x".into(), value: None }].into();
        assert_eq!(Router::new(vec![spec]).map(|_| ()).expect_err("no value").route, 2);
    }

    #[test]
    fn params_are_captured_from_the_first_matching_param_uri() {
        let r = router(vec![route(5, &[], &["/static", "/users/:id", "/users/:id/orders/:order"])]);
        assert_eq!(r.len(), 1);
        assert_eq!(
            r.params(5, "/users/42/orders/7"),
            vec![("id".to_string(), "42".to_string()), ("order".to_string(), "7".to_string())]
        );
        assert_eq!(r.params(5, "/users/42"), vec![("id".to_string(), "42".to_string())]);
        assert!(r.params(5, "/static").is_empty());
        assert!(r.params(6, "/users/42").is_empty());
    }

    #[test]
    fn uris_sharing_text_are_told_apart() {
        let uris = ["/api/v1/users", "/api/v1/user", "/api/v2/*", "/api/*", "/a", "/api/v1/users/*"];
        let r = router(uris.iter().enumerate().map(|(i, u)| route(i, &[], &[*u])).collect());
        assert_eq!(req("h", "/api/v1/users").find(&r), Some(0));
        assert_eq!(req("h", "/api/v1/user").find(&r), Some(1));
        assert_eq!(req("h", "/api/v1/use").find(&r), Some(3));
        assert_eq!(req("h", "/api/v2/x").find(&r), Some(2));
        assert_eq!(req("h", "/a").find(&r), Some(4));
        assert_eq!(req("h", "/api/v1/users/9").find(&r), Some(5));
        assert_eq!(req("h", "/b").find(&r), None);
    }

    #[test]
    fn many_routes_are_found_by_host_and_uri() {
        let specs = (0..2000).map(|i| route(i, &[&format!("h{}.com", i % 50)], &[&format!("/s{i}/*")])).collect();
        let r = router(specs);
        assert_eq!(req("h7.com", "/s1257/x").find(&r), Some(1257));
        assert_eq!(req("h8.com", "/s1257/x").find(&r), None);
    }
}
