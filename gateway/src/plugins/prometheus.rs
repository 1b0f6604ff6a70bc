//! `prometheus`: request counters, latency histograms and bandwidth per
//! route, service, upstream and status, in the process registry
//! ([`crate::metrics`]) served by the admin listener's metrics endpoint.

use std::sync::{Arc, LazyLock};

use pingora_config::v1;
use prometheus::{HistogramVec, IntCounterVec, exponential_buckets};

use super::{BuildCx, Hooks, LogEntry, Plugin, PluginCtx};

struct Metrics {
    requests: IntCounterVec,
    latency: HistogramVec,
    upstream_latency: HistogramVec,
    bandwidth: IntCounterVec,
}

static METRICS: LazyLock<Option<Metrics>> = LazyLock::new(|| {
    let buckets = exponential_buckets(0.0005, 2.0, 16).ok()?;
    let m = Metrics {
        requests: prometheus::register_int_counter_vec!(
            "pingora_config_http_requests_total",
            "HTTP requests by route, service, upstream, consumer and status.",
            &["route", "service", "upstream", "consumer", "status"]
        )
        .ok()?,
        latency: prometheus::register_histogram_vec!(
            "pingora_config_http_request_duration_seconds",
            "Time from the request's start to the end of its response.",
            &["route", "service"],
            buckets.clone()
        )
        .ok()?,
        upstream_latency: prometheus::register_histogram_vec!(
            "pingora_config_upstream_duration_seconds",
            "Time from choosing the upstream node to its response header.",
            &["route", "service", "upstream"],
            buckets
        )
        .ok()?,
        bandwidth: prometheus::register_int_counter_vec!(
            "pingora_config_bandwidth_bytes_total",
            "Bytes received from clients (ingress) and sent to them (egress).",
            &["type", "route", "service"]
        )
        .ok()?,
    };
    Some(m)
});

pub struct Prometheus {
    prefer_name: bool,
    /// The metric children of each (route, service, upstream, consumer),
    /// resolved once: a request then costs one map lookup, not four label
    /// hashes in the registry.
    cache: std::sync::RwLock<std::collections::HashMap<Key, Children, foldhash::fast::RandomState>>,
}

/// The identities (addresses) of the route, upstream and consumer; the
/// cached value holds them, so an address cannot be reused by another
/// while its entry exists. The cache lives as long as this plugin instance,
/// that is one config snapshot.
type Key = (usize, usize, usize);

/// What the cache key's addresses point at, kept alive with the entry.
type Owners = (Option<Arc<super::RouteInfo>>, Option<Arc<crate::upstream::Upstream>>, Option<Arc<super::Consumer>>);

struct Children {
    _owners: Owners,
    labels: [Arc<str>; 4],
    latency: prometheus::Histogram,
    upstream_latency: prometheus::Histogram,
    ingress: prometheus::IntCounter,
    egress: prometheus::IntCounter,
    /// Request counters by status, added as statuses are seen.
    by_status: std::sync::RwLock<Vec<(u16, prometheus::IntCounter)>>,
}

pub fn build(cfg: &v1::PrometheusPlugin, _cx: &mut BuildCx<'_>) -> Result<Prometheus, String> {
    if METRICS.is_none() {
        return Err("the metrics could not be registered".to_owned());
    }
    Ok(Prometheus { prefer_name: cfg.prefer_name, cache: Default::default() })
}

#[async_trait::async_trait]
impl Plugin for Prometheus {
    fn hooks(&self) -> Hooks {
        Hooks::LOG
    }

    fn log(&self, entry: &LogEntry<'_>, ctx: &PluginCtx) {
        let Some(m) = METRICS.as_ref() else { return };
        let addr = |p: Option<*const ()>| p.map(|p| p as usize).unwrap_or(0);
        let key: Key = (
            addr(ctx.route.as_ref().map(|r| Arc::as_ptr(r) as *const ())),
            addr(entry.upstream.map(|u| Arc::as_ptr(u) as *const ())),
            addr(ctx.consumer.as_ref().map(|c| Arc::as_ptr(c) as *const ())),
        );
        // The usual request: its children exist; record under the read lock
        // (no reference count touched).
        if let Ok(cache) = self.cache.read()
            && let Some(children) = cache.get(&key)
        {
            children.record(m, entry);
            return;
        }
        let pick = |name: &Arc<str>, id: &Arc<str>| {
            if self.prefer_name && !name.is_empty() { name.clone() } else { id.clone() }
        };
        let empty: Arc<str> = Arc::from("");
        let (route, service) = match &ctx.route {
            Some(r) => (pick(&r.name, &r.id), pick(&r.service_name, &r.service_id)),
            None => (empty.clone(), empty.clone()),
        };
        let upstream: Arc<str> = entry.upstream_id().map(Arc::from).unwrap_or_else(|| empty.clone());
        let consumer = ctx.consumer.as_ref().map(|c| c.username.clone()).unwrap_or(empty);
        let (r, s, u) = (&*route, &*service, &*upstream);
        let children = Children {
            _owners: (ctx.route.clone(), entry.upstream.cloned(), ctx.consumer.clone()),
            latency: m.latency.with_label_values(&[r, s]),
            upstream_latency: m.upstream_latency.with_label_values(&[r, s, u]),
            ingress: m.bandwidth.with_label_values(&["ingress", r, s]),
            egress: m.bandwidth.with_label_values(&["egress", r, s]),
            by_status: Default::default(),
            labels: [route.clone(), service.clone(), upstream.clone(), consumer],
        };
        children.record(m, entry);
        if let Ok(mut w) = self.cache.write() {
            // Bounded: consumers and upstreams are finite per config, but
            // never let a cache grow without limit.
            if w.len() > 10_000 {
                w.clear();
            }
            w.insert(key, children);
        }
    }
}

impl Children {
    /// Counts one finished request.
    fn record(&self, m: &Metrics, entry: &LogEntry<'_>) {
        let counted = self.by_status.read().is_ok_and(|v| match v.iter().find(|(s, _)| *s == entry.status) {
            Some((_, c)) => {
                c.inc();
                true
            }
            None => false,
        });
        if !counted {
            let status = entry.status.to_string();
            let [r, s, u, c] = &self.labels;
            let counter = m.requests.with_label_values(&[&**r, &**s, &**u, &**c, status.as_str()]);
            counter.inc();
            if let Ok(mut v) = self.by_status.write()
                && !v.iter().any(|(s, _)| *s == entry.status)
            {
                v.push((entry.status, counter));
            }
        }
        self.latency.observe(entry.latency.as_secs_f64());
        if let Some(u) = entry.upstream_latency {
            self.upstream_latency.observe(u.as_secs_f64());
        }
        self.ingress.inc_by(entry.bytes_received as u64);
        self.egress.inc_by(entry.bytes_sent as u64);
    }
}
