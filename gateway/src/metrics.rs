//! Process metrics in the Prometheus text format.
//!
//! Every metric of the gateway is registered in the `prometheus` crate's
//! default registry; [`render`] is what the admin listener's metrics
//! endpoint (bootstrap `metrics.path`, default `/metrics`) answers.

/// The text exposition of every registered metric.
pub fn render() -> String {
    use prometheus::Encoder;
    let mut out = Vec::new();
    let encoder = prometheus::TextEncoder::new();
    if let Err(e) = encoder.encode(&prometheus::gather(), &mut out) {
        log::warn!("metrics: {e}");
    }
    String::from_utf8(out).unwrap_or_default()
}
