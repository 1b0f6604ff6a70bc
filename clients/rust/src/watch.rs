//! The event stream, resumed after a lost connection from the last revision
//! seen, so that no config change is missed or repeated.

use std::collections::HashSet;
use std::time::Duration;

use tonic::Code;

use crate::v1;
use crate::{Client, Error};

/// Delay between two connection attempts: starts at `initial`, doubles after
/// each failure up to `max`, back to `initial` once an event arrives. Each
/// delay is jittered (50-100%).
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(10) }
    }
}

/// What [`Watch::next`] returns.
#[derive(Debug)]
pub enum WatchItem {
    /// An event. After `resync_required`, the watch resumes from the store's
    /// current revision: changes in between were not seen.
    Event(v1::Event),
    /// The stream broke (or could not start); the watch waited `delay` and
    /// reconnects at the next call.
    Reconnecting {
        /// Why.
        error: Error,
        /// How long it waited.
        delay: Duration,
    },
}

/// A Watch call that reconnects by itself.
///
/// Resource events are resumed exactly: after a reconnection the stream is
/// asked from the revision of the last resource event received (inclusive,
/// as one write's events share a revision) and the events already received
/// are dropped by id. Health and node events are live only.
pub struct Watch {
    client: Client,
    request: v1::WatchRequest,
    stream: Option<tonic::Streaming<v1::Event>>,
    backoff: Backoff,
    delay: Duration,
    /// Revision of the last resource event returned, and the ids of the
    /// events returned at that revision.
    last: i64,
    seen: HashSet<String>,
}

impl Watch {
    /// A watch of `request`. With `start_revision` 0 it first reads the
    /// store's revision, so that a reconnection before the first event still
    /// misses nothing.
    pub fn new(client: Client, request: v1::WatchRequest, backoff: Backoff) -> Watch {
        let last = request.start_revision;
        Watch { client, request, stream: None, backoff, delay: backoff.initial, last, seen: HashSet::new() }
    }

    /// The next event, or the report of a reconnection. Errors that a retry
    /// cannot cure (authentication, a bad request) end the watch.
    pub async fn next(&mut self) -> Result<WatchItem, Error> {
        loop {
            let Some(stream) = self.stream.as_mut() else {
                match self.open().await {
                    Ok(()) => continue,
                    Err(error) => return self.retry(error).await,
                }
            };
            match stream.message().await {
                Ok(Some(event)) => {
                    self.delay = self.backoff.initial;
                    if let Some(event) = self.accept(event) {
                        return Ok(WatchItem::Event(event));
                    }
                }
                Ok(None) => {
                    self.stream = None;
                    let error = Error::Status(tonic::Status::unavailable("the gateway ended the stream"));
                    return self.retry(error).await;
                }
                Err(status) => {
                    self.stream = None;
                    return self.retry(Error::Status(status)).await;
                }
            }
        }
    }

    async fn open(&mut self) -> Result<(), Error> {
        if self.last == 0 {
            // Start live, but from a known revision.
            let status = self.client.node_status().await?;
            let current = status.store.map(|s| s.revision).unwrap_or(0).max(status.applied_revision);
            self.last = current + 1;
        }
        let mut request = self.request.clone();
        request.start_revision = self.last;
        self.stream = Some(self.client.events.watch(request).await?.into_inner());
        Ok(())
    }

    /// Drops what was already returned; records what is returned.
    fn accept(&mut self, event: v1::Event) -> Option<v1::Event> {
        match &event.payload {
            Some(v1::event::Payload::Resource(_)) => {
                if event.revision < self.last || (event.revision == self.last && self.seen.contains(&event.id)) {
                    return None;
                }
                if event.revision > self.last {
                    self.last = event.revision;
                    self.seen.clear();
                }
                self.seen.insert(event.id.clone());
            }
            Some(v1::event::Payload::ResyncRequired(r)) => {
                self.last = r.current_revision + 1;
                self.seen.clear();
                self.stream = None;
            }
            _ => {}
        }
        Some(event)
    }

    async fn retry(&mut self, error: Error) -> Result<WatchItem, Error> {
        let retryable = matches!(
            error.code(),
            Some(
                Code::Unavailable
                    | Code::Unknown
                    | Code::Internal
                    | Code::DeadlineExceeded
                    | Code::ResourceExhausted
                    | Code::Aborted
                    | Code::Cancelled
            )
        );
        if !retryable {
            return Err(error);
        }
        let delay = self.delay.mul_f64(0.5 + fastrand::f64() / 2.0);
        self.delay = (self.delay * 2).min(self.backoff.max);
        tokio::time::sleep(delay).await;
        Ok(WatchItem::Reconnecting { error, delay })
    }
}

impl Client {
    /// Watches events from `request.start_revision` (0: from now), with the
    /// default backoff. See [`Watch`].
    pub fn watch(&self, request: v1::WatchRequest) -> Watch {
        Watch::new(self.clone(), request, Backoff::default())
    }
}
