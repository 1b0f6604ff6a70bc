//! `http_logger`: access-log entries POSTed in batches (a JSON array) by a
//! background thread; the request path only pushes into a bounded queue
//! (a full queue drops the entry and counts it).

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora_config::v1;
use pingora_core::connectors::http::Connector;

use super::file_logger::DROPPED;
use super::http_client::{Target, send};
use super::log_entry::BodyLimits;
use super::{BuildCx, Hooks, LogEntry, Plugin, PluginCtx, header_pair};
use crate::upstream::duration;

pub struct HttpLogger {
    queue: SyncSender<serde_json::Value>,
    body: BodyLimits,
}

struct Sender {
    target: Target,
    headers: Vec<(HeaderName, HeaderValue)>,
    batch: usize,
    inactive: Duration,
    buffer: Duration,
    retries: u32,
    retry_delay: Duration,
    timeout: Duration,
}

pub fn build(cfg: &v1::HttpLoggerPlugin, _cx: &mut BuildCx<'_>) -> Result<HttpLogger, String> {
    let target = Target::new(&cfg.url, cfg.tls_verify.unwrap_or(true)).map_err(|e| format!("url: {e}"))?;
    let mut headers = vec![header_pair("content-type", "application/json")?];
    if !cfg.authorization.is_empty() {
        headers.push(
            header_pair("authorization", &cfg.authorization).map_err(|_| "authorization: not a valid header value")?,
        );
    }
    for h in &cfg.headers {
        headers.push(header_pair(&h.name, &h.value)?);
    }
    let sender = Sender {
        target,
        headers,
        batch: cfg.batch_max_size.unwrap_or(1000) as usize,
        inactive: cfg.inactive_timeout.as_ref().map(duration).unwrap_or(Duration::from_secs(5)),
        buffer: cfg.buffer_duration.as_ref().map(duration).unwrap_or(Duration::from_secs(60)),
        retries: cfg.retries,
        retry_delay: cfg.retry_delay.as_ref().map(duration).unwrap_or(Duration::from_secs(1)),
        timeout: cfg.timeout.as_ref().map(duration).unwrap_or(Duration::from_secs(3)),
    };
    let (tx, rx) = sync_channel(cfg.max_queue.unwrap_or(10_000) as usize);
    std::thread::Builder::new()
        .name("http-logger".into())
        .spawn(move || run(sender, rx))
        .map_err(|e| format!("cannot start the sender thread: {e}"))?;
    Ok(HttpLogger {
        queue: tx,
        body: BodyLimits::new(
            cfg.include_req_body,
            cfg.max_req_body_bytes,
            cfg.include_resp_body,
            cfg.max_resp_body_bytes,
        ),
    })
}

/// The sender thread: batches entries and POSTs them; ends when the plugin
/// is dropped by a reload, after sending what is queued.
fn run(sender: Sender, rx: Receiver<serde_json::Value>) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        log::error!("http_logger: cannot start a runtime");
        return;
    };
    let connector = Connector::new(None);
    let mut batch: Vec<serde_json::Value> = Vec::new();
    let mut oldest: Option<Instant> = None;
    let mut last: Instant = Instant::now();
    loop {
        let wait = match oldest {
            Some(o) => sender.inactive.saturating_sub(last.elapsed()).min(sender.buffer.saturating_sub(o.elapsed())),
            None => Duration::from_secs(3600),
        };
        let done = match rx.recv_timeout(wait) {
            Ok(e) => {
                batch.push(e);
                last = Instant::now();
                oldest.get_or_insert(last);
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        let due = oldest.is_some_and(|o| o.elapsed() >= sender.buffer) || last.elapsed() >= sender.inactive;
        if !batch.is_empty() && (batch.len() >= sender.batch || due || done) {
            let body = Bytes::from(serde_json::Value::Array(std::mem::take(&mut batch)).to_string());
            oldest = None;
            rt.block_on(deliver(&connector, &sender, body));
        }
        if done {
            return;
        }
    }
}

async fn deliver(connector: &Connector, s: &Sender, body: Bytes) {
    for attempt in 0..=s.retries {
        if attempt > 0 {
            tokio::time::sleep(s.retry_delay).await;
        }
        match send(connector, &s.target, http::Method::POST, s.headers.clone(), Some(body.clone()), s.timeout, true)
            .await
        {
            Ok(r) if (200..300).contains(&r.status) => return,
            Ok(r) => log::warn!("http_logger: the endpoint answered {}", r.status),
            Err(e) => log::warn!("http_logger: {e}"),
        }
    }
    if let Some(d) = DROPPED.as_ref() {
        d.with_label_values(&["http_logger"]).inc();
    }
}

#[async_trait::async_trait]
impl Plugin for HttpLogger {
    fn hooks(&self) -> Hooks {
        Hooks::LOG
    }

    fn log(&self, entry: &LogEntry<'_>, ctx: &PluginCtx) {
        if let Err(TrySendError::Full(_)) = self.queue.try_send(entry.json(ctx, &self.body))
            && let Some(d) = DROPPED.as_ref()
        {
            d.with_label_values(&["http_logger"]).inc();
        }
    }

    fn body_capture(&self) -> BodyLimits {
        self.body
    }
}
