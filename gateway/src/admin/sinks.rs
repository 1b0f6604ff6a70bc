//! Push sinks (`Bootstrap.event_sinks`): every event of this node's event
//! log (resource changes, health transitions, nodes joining and leaving)
//! whose kind a sink takes is queued for it and delivered by the sink's own
//! task: a webhook POST of the `DeliverEventRequest` in proto-JSON, or an
//! `EventSinkService.Deliver` call.
//!
//! - Each sink has a bounded queue (`queue_size`); when it is full the
//!   oldest event is dropped (logged, counted). Queuing never waits, so a
//!   slow or dead receiver delays nothing but its own sink: not requests,
//!   not writes.
//! - A failed delivery is retried with exponential backoff and jitter
//!   (`initial_backoff` doubling up to `max_backoff`), at most `max_retries`
//!   times; the event keeps its place at the head of the queue meanwhile,
//!   so events arrive in order and at least once while the gateway runs.
//! - Counters per sink are in `GetStatus` (`NodeStatus.sinks`) and in the
//!   metrics `pingora_config_sink_deliveries_total{sink,outcome}` and
//!   `pingora_config_sink_queue_length{sink}`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use pingora_config::v1;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use tokio::sync::{Notify, broadcast};

use crate::admin::write::Writer;
use crate::upstream::duration;

/// The sink metrics.
pub mod metrics {
    use std::sync::OnceLock;

    /// `pingora_config_sink_deliveries_total{sink,outcome}`: outcome is
    /// `delivered`, `retried` (a failed attempt to be retried) or `dropped`.
    pub fn deliveries() -> &'static prometheus::IntCounterVec {
        static C: OnceLock<prometheus::IntCounterVec> = OnceLock::new();
        C.get_or_init(|| {
            let opts = prometheus::Opts::new(
                "pingora_config_sink_deliveries_total",
                "Event deliveries to the event sinks, by sink and outcome.",
            );
            prometheus::register_int_counter_vec!(opts.clone(), &["sink", "outcome"])
                .or_else(|_| prometheus::IntCounterVec::new(opts, &["sink", "outcome"]))
                .unwrap_or_else(|_| unreachable!("a valid metric name"))
        })
    }

    /// `pingora_config_sink_queue_length{sink}`.
    pub fn queue() -> &'static prometheus::IntGaugeVec {
        static G: OnceLock<prometheus::IntGaugeVec> = OnceLock::new();
        G.get_or_init(|| {
            let opts = prometheus::Opts::new("pingora_config_sink_queue_length", "Events waiting per event sink.");
            prometheus::register_int_gauge_vec!(opts.clone(), &["sink"])
                .or_else(|_| prometheus::IntGaugeVec::new(opts, &["sink"]))
                .unwrap_or_else(|_| unreachable!("a valid metric name"))
        })
    }
}

enum Target {
    Webhook {
        url: String,
        headers: Vec<(String, String)>,
        timeout: Duration,
        client: reqwest::Client,
    },
    Grpc {
        endpoint: Box<tonic::transport::Endpoint>,
        /// Made on the first delivery (it needs the runtime).
        channel: std::sync::OnceLock<tonic::transport::Channel>,
        metadata: Vec<(String, String)>,
        timeout: Duration,
    },
}

#[derive(Default, Clone)]
struct Stats {
    delivered: u64,
    failed_attempts: u64,
    dropped: u64,
    last_error: Option<(String, SystemTime)>,
}

/// One sink: its settings, queue and counters.
pub struct Sink {
    name: String,
    kinds: Vec<i32>,
    target: Target,
    queue_size: usize,
    max_retries: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    queue: Mutex<VecDeque<Arc<v1::Event>>>,
    ready: Notify,
    stats: Mutex<Stats>,
}

/// Why one delivery failed, and whether to try again.
struct Failure {
    error: String,
    retry: bool,
}

impl Sink {
    fn new(s: &v1::EventSink) -> Result<Sink, String> {
        let target = match &s.target {
            Some(v1::event_sink::Target::Webhook(w)) => {
                let mut b = reqwest::Client::builder().use_rustls_tls();
                if let Some(tls) = &w.tls {
                    if !tls.ca.is_empty() {
                        let ca = reqwest::Certificate::from_pem(tls.ca.as_bytes())
                            .map_err(|e| format!("event sink {}: tls.ca: {e}", s.name))?;
                        b = b.add_root_certificate(ca);
                    }
                    if let Some(c) = &tls.client_cert {
                        let pem = format!("{}\n{}", c.cert, c.key);
                        let id = reqwest::Identity::from_pem(pem.as_bytes())
                            .map_err(|e| format!("event sink {}: tls.client_cert: {e}", s.name))?;
                        b = b.identity(id);
                    }
                    b = b.danger_accept_invalid_certs(tls.insecure_skip_verify);
                }
                let timeout = w.timeout.as_ref().map(duration).unwrap_or(Duration::from_secs(5));
                Target::Webhook {
                    url: w.url.clone(),
                    headers: w.headers.iter().map(|h| (h.name.clone(), h.value.clone())).collect(),
                    timeout,
                    client: b.build().map_err(|e| format!("event sink {}: {e}", s.name))?,
                }
            }
            Some(v1::event_sink::Target::Grpc(g)) => {
                let mut endpoint = tonic::transport::Endpoint::from_shared(g.url.clone())
                    .map_err(|e| format!("event sink {}: url: {e}", s.name))?
                    .connect_timeout(Duration::from_secs(5));
                if g.url.starts_with("https://") {
                    let mut tls = tonic::transport::ClientTlsConfig::new();
                    if let Some(t) = &g.tls {
                        if !t.ca.is_empty() {
                            tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(&t.ca));
                        }
                        if let Some(c) = &t.client_cert {
                            tls = tls.identity(tonic::transport::Identity::from_pem(&c.cert, &c.key));
                        }
                        if !t.sni.is_empty() {
                            tls = tls.domain_name(t.sni.clone());
                        }
                    }
                    endpoint = endpoint.tls_config(tls).map_err(|e| format!("event sink {}: tls: {e}", s.name))?;
                }
                Target::Grpc {
                    endpoint: Box::new(endpoint),
                    channel: std::sync::OnceLock::new(),
                    metadata: g.metadata.iter().map(|h| (h.name.to_ascii_lowercase(), h.value.clone())).collect(),
                    timeout: g.timeout.as_ref().map(duration).unwrap_or(Duration::from_secs(5)),
                }
            }
            None => return Err(format!("event sink {}: no target", s.name)),
        };
        let initial_backoff = s.initial_backoff.as_ref().map(duration).unwrap_or(Duration::from_millis(500));
        Ok(Sink {
            name: s.name.clone(),
            kinds: s.kinds.clone(),
            target,
            queue_size: s.queue_size.unwrap_or(10_000).max(1) as usize,
            max_retries: s.max_retries.unwrap_or(5),
            initial_backoff,
            max_backoff: s.max_backoff.as_ref().map(duration).unwrap_or(Duration::from_secs(30)).max(initial_backoff),
            queue: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            stats: Mutex::new(Stats::default()),
        })
    }

    fn wants(&self, e: &v1::Event) -> bool {
        let kind = match e.payload {
            Some(v1::event::Payload::Resource(_)) => v1::event::Kind::Resource,
            Some(v1::event::Payload::Health(_)) => v1::event::Kind::Health,
            Some(v1::event::Payload::Node(_)) => v1::event::Kind::Node,
            _ => return false,
        };
        self.kinds.is_empty() || self.kinds.contains(&(kind as i32))
    }

    /// Queues an event without waiting: drops the oldest when full.
    fn push(&self, e: Arc<v1::Event>) {
        let Ok(mut q) = self.queue.lock() else { return };
        if q.len() >= self.queue_size {
            q.pop_front();
            drop(q);
            self.dropped("the queue is full");
            let Ok(mut q) = self.queue.lock() else { return };
            q.push_back(e);
            metrics::queue().with_label_values(&[&self.name]).set(q.len() as i64);
        } else {
            q.push_back(e);
            metrics::queue().with_label_values(&[&self.name]).set(q.len() as i64);
        }
        self.ready.notify_one();
    }

    fn dropped(&self, why: &str) {
        log::warn!("event sink {}: an event was dropped: {why}", self.name);
        metrics::deliveries().with_label_values(&[&self.name, "dropped"]).inc();
        if let Ok(mut s) = self.stats.lock() {
            s.dropped += 1;
        }
    }

    fn status(&self) -> v1::SinkStatus {
        let stats = self.stats.lock().map(|s| s.clone()).unwrap_or_default();
        let queued = self.queue.lock().map(|q| q.len()).unwrap_or(0) as u64;
        v1::SinkStatus {
            name: self.name.clone(),
            queued,
            delivered: stats.delivered,
            failed_attempts: stats.failed_attempts,
            dropped: stats.dropped,
            last_error: stats.last_error.as_ref().map(|e| e.0.clone()).unwrap_or_default(),
            last_error_time: stats.last_error.as_ref().map(|e| crate::admin::services::timestamp(e.1)),
        }
    }

    async fn deliver(&self, event: &v1::Event) -> Result<(), Failure> {
        let request = v1::DeliverEventRequest { sink: self.name.clone(), event: Some(event.clone()) };
        match &self.target {
            Target::Webhook { url, headers, timeout, client } => {
                let body = serde_json::to_vec(&request).map_err(|e| Failure { error: e.to_string(), retry: false })?;
                let mut req = client
                    .post(url)
                    .timeout(*timeout)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(body);
                for (k, v) in headers {
                    req = req.header(k, v);
                }
                match req.send().await {
                    Ok(resp) if resp.status().is_success() => Ok(()),
                    Ok(resp) => {
                        let code = resp.status().as_u16();
                        Err(Failure {
                            error: format!("POST {url}: HTTP {code}"),
                            retry: code == 408 || code == 429 || code >= 500,
                        })
                    }
                    Err(e) => Err(Failure { error: format!("POST {url}: {e}"), retry: true }),
                }
            }
            Target::Grpc { endpoint, channel, metadata, timeout } => {
                let channel = channel.get_or_init(|| endpoint.connect_lazy()).clone();
                let mut client = v1::event_sink_service_client::EventSinkServiceClient::new(channel);
                let mut req = tonic::Request::new(request);
                req.set_timeout(*timeout);
                for (k, v) in metadata {
                    if let (Ok(k), Ok(v)) = (
                        k.parse::<tonic::metadata::MetadataKey<tonic::metadata::Ascii>>(),
                        v.parse::<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>(),
                    ) {
                        req.metadata_mut().insert(k, v);
                    }
                }
                match tokio::time::timeout(*timeout, client.deliver(req)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(s)) => {
                        use tonic::Code;
                        let retry = matches!(
                            s.code(),
                            Code::Unavailable
                                | Code::DeadlineExceeded
                                | Code::ResourceExhausted
                                | Code::Aborted
                                | Code::Internal
                                | Code::Unknown
                        );
                        Err(Failure { error: format!("Deliver: {:?}: {}", s.code(), s.message()), retry })
                    }
                    Err(_) => Err(Failure { error: format!("Deliver: no answer within {timeout:?}"), retry: true }),
                }
            }
        }
    }

    /// Delivers the queue, head first, for ever.
    async fn run(self: Arc<Self>) {
        loop {
            let head = self.queue.lock().ok().and_then(|q| q.front().cloned());
            let Some(event) = head else {
                self.ready.notified().await;
                continue;
            };
            let mut attempt = 0u32;
            let mut backoff = self.initial_backoff;
            loop {
                match self.deliver(&event).await {
                    Ok(()) => {
                        metrics::deliveries().with_label_values(&[&self.name, "delivered"]).inc();
                        if let Ok(mut s) = self.stats.lock() {
                            s.delivered += 1;
                            s.last_error = None;
                        }
                        break;
                    }
                    Err(f) => {
                        if let Ok(mut s) = self.stats.lock() {
                            s.failed_attempts += 1;
                            s.last_error = Some((f.error.clone(), SystemTime::now()));
                        }
                        if !f.retry || attempt >= self.max_retries {
                            self.dropped(&format!("{} (after {} attempt(s))", f.error, attempt + 1));
                            break;
                        }
                        metrics::deliveries().with_label_values(&[&self.name, "retried"]).inc();
                        log::debug!("event sink {}: {}; retrying in {backoff:?}", self.name, f.error);
                        attempt += 1;
                        tokio::time::sleep(backoff.mul_f64(0.8 + fastrand::f64() * 0.4).min(self.max_backoff)).await;
                        backoff = (backoff * 2).min(self.max_backoff);
                    }
                }
            }
            // Pop the event delivered (or given up), unless a full queue
            // already pushed it out.
            if let Ok(mut q) = self.queue.lock() {
                if q.front().is_some_and(|e| Arc::ptr_eq(e, &event)) {
                    q.pop_front();
                }
                metrics::queue().with_label_values(&[&self.name]).set(q.len() as i64);
            }
        }
    }
}

/// Every sink of the bootstrap.
pub struct Sinks {
    pub sinks: Vec<Arc<Sink>>,
}

/// The sinks of this process, for `GetStatus`.
static STATUS: std::sync::OnceLock<Arc<Sinks>> = std::sync::OnceLock::new();

/// The status of every sink (none when there are none).
pub fn status() -> Vec<v1::SinkStatus> {
    STATUS.get().map(|s| s.sinks.iter().map(|s| s.status()).collect()).unwrap_or_default()
}

impl Sinks {
    /// The sinks of the bootstrap; `None` when there are none. A sink that
    /// cannot be set up is logged and left out.
    pub fn start(config: &[v1::EventSink]) -> Option<Arc<Sinks>> {
        let sinks: Vec<Arc<Sink>> = config
            .iter()
            .filter_map(|s| match Sink::new(s) {
                Ok(s) => Some(Arc::new(s)),
                Err(e) => {
                    log::error!("{e}");
                    None
                }
            })
            .collect();
        if sinks.is_empty() {
            return None;
        }
        let sinks = Arc::new(Sinks { sinks });
        let _ = STATUS.set(sinks.clone());
        Some(sinks)
    }

    pub fn service(self: Arc<Self>, writer: Arc<Writer>) -> SinkService {
        SinkService { sinks: self, writer }
    }
}

/// Feeds the sinks from the event log and runs their delivery tasks.
pub struct SinkService {
    sinks: Arc<Sinks>,
    writer: Arc<Writer>,
}

#[async_trait::async_trait]
impl BackgroundService for SinkService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        crate::server::control_plane_thread();
        let tasks: Vec<_> = self.sinks.sinks.iter().map(|s| tokio::spawn(s.clone().run())).collect();
        let mut live = match self.writer.store.events().subscribe(0) {
            Ok((_, live)) => live,
            Err(_) => return,
        };
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                e = live.recv() => match e {
                    Ok(e) => {
                        for s in &self.sinks.sinks {
                            if s.wants(&e) {
                                s.push(e.clone());
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        for s in &self.sinks.sinks {
                            for _ in 0..n {
                                s.dropped("the event feed outran the sinks");
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        }
        tasks.iter().for_each(|t| t.abort());
    }
}
