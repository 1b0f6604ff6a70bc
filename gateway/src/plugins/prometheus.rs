//! `prometheus`: request counters, latency histograms and bandwidth per
//! route, service, upstream and status, in the process registry
//! ([`crate::metrics`]) served by the admin listener's metrics endpoint.

use std::sync::LazyLock;

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
}

pub fn build(cfg: &v1::PrometheusPlugin, _cx: &mut BuildCx<'_>) -> Result<Prometheus, String> {
    if METRICS.is_none() {
        return Err("the metrics could not be registered".to_owned());
    }
    Ok(Prometheus { prefer_name: cfg.prefer_name })
}

#[async_trait::async_trait]
impl Plugin for Prometheus {
    fn hooks(&self) -> Hooks {
        Hooks::LOG
    }

    fn log(&self, entry: &LogEntry<'_>, ctx: &PluginCtx) {
        let Some(m) = METRICS.as_ref() else { return };
        let (route, service) = match &ctx.route {
            Some(r) if self.prefer_name => (
                if r.name.is_empty() { &*r.id } else { &*r.name },
                if r.service_name.is_empty() { &*r.service_id } else { &*r.service_name },
            ),
            Some(r) => (&*r.id, &*r.service_id),
            None => ("", ""),
        };
        let upstream = entry.upstream_id.unwrap_or("");
        let consumer = ctx.consumer.as_ref().map(|c| &*c.username).unwrap_or("");
        let mut status = itoa_buf(entry.status);
        m.requests.with_label_values(&[route, service, upstream, consumer, status.as_str()]).inc();
        m.latency.with_label_values(&[route, service]).observe(entry.latency.as_secs_f64());
        if let Some(u) = entry.upstream_latency {
            m.upstream_latency.with_label_values(&[route, service, upstream]).observe(u.as_secs_f64());
        }
        m.bandwidth.with_label_values(&["ingress", route, service]).inc_by(entry.bytes_received as u64);
        m.bandwidth.with_label_values(&["egress", route, service]).inc_by(entry.bytes_sent as u64);
        status.clear();
    }
}

fn itoa_buf(n: u16) -> String {
    n.to_string()
}
