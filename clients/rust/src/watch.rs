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
    Event(Box<v1::Event>),
    /// The stream broke (or could not start); the next call waits `delay`,
    /// then reconnects.
    Reconnecting {
        /// Why.
        error: Error,
        /// How long the next call waits before reconnecting.
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
    /// The wait before the next connection attempt, after a failure.
    pending: Option<Duration>,
    resume: Resume,
}

/// Where to resume: the revision of the last resource event returned, and
/// the ids of the events returned at that revision.
#[derive(Default)]
struct Resume {
    last: i64,
    seen: HashSet<String>,
}

impl Resume {
    /// The event if it was not returned yet, and whether the stream must be
    /// opened again (after `resync_required`).
    fn accept(&mut self, event: v1::Event) -> (Option<v1::Event>, bool) {
        match &event.payload {
            Some(v1::event::Payload::Resource(_)) => {
                if event.revision < self.last || (event.revision == self.last && self.seen.contains(&event.id)) {
                    return (None, false);
                }
                if event.revision > self.last {
                    self.last = event.revision;
                    self.seen.clear();
                }
                self.seen.insert(event.id.clone());
                (Some(event), false)
            }
            Some(v1::event::Payload::ResyncRequired(r)) => {
                let partly_seen = !self.seen.is_empty();
                self.seen.clear();
                if r.oldest_revision == self.last + 1 && partly_seen {
                    // The history starts right after the revision we were
                    // reading (a restarted gateway keeps none): every later
                    // change is still there, so carry on from it quietly.
                    self.last = r.oldest_revision;
                    return (None, true);
                }
                self.last = r.current_revision + 1;
                (Some(event), true)
            }
            _ => (Some(event), false),
        }
    }
}

impl Watch {
    /// A watch of `request`. With `start_revision` 0 it first reads the
    /// store's revision, so that a reconnection before the first event still
    /// misses nothing.
    pub fn new(client: Client, request: v1::WatchRequest, backoff: Backoff) -> Watch {
        let resume = Resume { last: request.start_revision, seen: HashSet::new() };
        Watch { client, request, stream: None, backoff, delay: backoff.initial, pending: None, resume }
    }

    /// The next event, or the report of a reconnection. Errors that a retry
    /// cannot cure (authentication, a bad request) end the watch.
    pub async fn next(&mut self) -> Result<WatchItem, Error> {
        if let Some(delay) = self.pending.take() {
            tokio::time::sleep(delay).await;
        }
        loop {
            let Some(stream) = self.stream.as_mut() else {
                match self.open().await {
                    Ok(()) => continue,
                    Err(error) => return self.retry(error),
                }
            };
            match stream.message().await {
                Ok(Some(event)) => {
                    self.delay = self.backoff.initial;
                    let (event, reopen) = self.resume.accept(event);
                    if reopen {
                        self.stream = None;
                    }
                    if let Some(event) = event {
                        return Ok(WatchItem::Event(Box::new(event)));
                    }
                }
                Ok(None) => {
                    self.stream = None;
                    let error = Error::Status(tonic::Status::unavailable("the gateway ended the stream"));
                    return self.retry(error);
                }
                Err(status) => {
                    self.stream = None;
                    return self.retry(Error::Status(status));
                }
            }
        }
    }

    async fn open(&mut self) -> Result<(), Error> {
        if self.resume.last == 0 {
            // Start live, but from a known revision.
            let status = self.client.node_status().await?;
            let current = status.store.map(|s| s.revision).unwrap_or(0).max(status.applied_revision);
            self.resume.last = current + 1;
        }
        let mut request = self.request.clone();
        request.start_revision = self.resume.last;
        self.stream = Some(self.client.events.watch(request).await?.into_inner());
        Ok(())
    }

    fn retry(&mut self, error: Error) -> Result<WatchItem, Error> {
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
        self.pending = Some(delay);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(id: &str, revision: i64) -> v1::Event {
        let payload = v1::event::Payload::Resource(v1::ResourceEvent::default());
        v1::Event { id: id.into(), revision, payload: Some(payload), ..Default::default() }
    }

    fn resync(oldest: i64, current: i64) -> v1::Event {
        let r = v1::ResyncRequired { oldest_revision: oldest, current_revision: current };
        v1::Event { payload: Some(v1::event::Payload::ResyncRequired(r)), ..Default::default() }
    }

    #[test]
    fn a_replay_after_reconnecting_drops_the_events_already_returned() {
        let mut r = Resume { last: 5, ..Default::default() };
        assert!(r.accept(resource("a", 4)).0.is_none(), "before the start");
        assert!(r.accept(resource("b", 5)).0.is_some());
        // The stream breaks inside revision 5; the replay from 5 repeats b.
        assert!(r.accept(resource("b", 5)).0.is_none());
        assert!(r.accept(resource("c", 5)).0.is_some(), "the rest of revision 5");
        assert!(r.accept(resource("d", 6)).0.is_some());
        assert_eq!(r.last, 6);
    }

    #[test]
    fn a_resync_right_after_the_last_revision_resumes_quietly_otherwise_it_is_reported() {
        let mut r = Resume { last: 6, ..Default::default() };
        assert!(r.accept(resource("a", 6)).0.is_some());
        assert_eq!(r.accept(resync(7, 6)).0.map(|e| e.id), None);
        assert_eq!(r.last, 7);
        // Asked from 7 (nothing seen there yet), 7 is gone: reported.
        assert!(r.accept(resync(8, 9)).0.is_some());
        let (event, reopen) = r.accept(resync(20, 25));
        assert!(event.is_some() && reopen);
        assert_eq!(r.last, 26);
    }
}
