//! The pingora-config gateway: an API gateway on Cloudflare Pingora driven
//! by the config resources of `proto/`.
//!
//! - [`snapshot`]: the live config compiled for requests, swapped whole;
//! - [`router`]: which route a request belongs to;
//! - [`upstream`]: choosing a node, health checks;
//! - [`proxy`]: the request life cycle (Pingora's `ProxyHttp` phases);
//! - [`plugins`]: the plugin pipeline;
//! - [`tls`]: certificates by SNI;
//! - [`store`]: where the config comes from and how changes arrive;
//! - [`server`]: assembling listeners and services from the bootstrap;
//! - [`shared`]: the config as held, each resource shared between revisions;
//! - [`admin`]: the management API (gRPC, grpc-web) and the store's write path.

pub mod admin;
pub mod headers;
pub mod metrics;
pub mod plugins;
pub mod proxy;
pub mod router;
pub mod server;
pub mod shared;
pub mod snapshot;
pub mod store;
pub mod tls;
pub mod upstream;

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::snapshot::Snapshot;

/// The live config: one snapshot, replaced whole. A request loads it once
/// and keeps that snapshot to its end, so a reload never changes a request
/// in flight.
pub struct Live {
    current: ArcSwap<Snapshot>,
    /// Snapshots replaced while requests still held them. They are kept
    /// here so that the last reference is never dropped by a request on a
    /// worker: freeing a compiled config costs in proportion to its number
    /// of routes, which belongs on the thread that replaced it, or the one
    /// calling [`Live::reap`].
    retired: std::sync::Mutex<Vec<Arc<Snapshot>>>,
}

impl Live {
    pub fn new(snapshot: Snapshot) -> Live {
        Live { current: ArcSwap::from_pointee(snapshot), retired: std::sync::Mutex::default() }
    }

    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Serves `snapshot` from now on, and frees on this thread the replaced
    /// snapshots no request holds any more.
    pub fn store(&self, snapshot: Snapshot) {
        let old = self.current.swap(Arc::new(snapshot));
        self.retire(Some(old));
    }

    /// Frees on this thread the replaced snapshots that no request holds
    /// any more; returns how many are still held. The admin service calls
    /// it every second, for the snapshots still in use at the last store.
    pub fn reap(&self) -> usize {
        self.retire(None)
    }

    fn retire(&self, old: Option<Arc<Snapshot>>) -> usize {
        let (free, held) = {
            let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
            retired.extend(old);
            // Only `current` hands snapshots out, and `swap` has counted
            // every reader of the old one when it returns: a count of 1 is
            // this list's own reference, and stays 1.
            let free: Vec<_> = retired.extract_if(.., |s| Arc::strong_count(s) == 1).collect();
            (free, retired.len())
        };
        drop(free);
        held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_snapshot_is_freed_by_the_store_or_the_reaper_never_by_the_request_holding_it() {
        let build = || Snapshot::build(Arc::default(), snapshot::Timeouts::DEFAULT, None);
        let live = Live::new(build().expect("empty config"));
        // A request holds the first snapshot across a reload.
        let request = live.load();
        let first = Arc::downgrade(&request);
        live.store(build().expect("empty config"));
        let second = Arc::downgrade(&live.load());
        drop(request);
        assert!(first.upgrade().is_some(), "the request's drop freed the snapshot");
        assert_eq!(live.reap(), 0);
        assert!(first.upgrade().is_none(), "reap did not free it");
        // One no request holds is freed by the next store at once.
        live.store(build().expect("empty config"));
        assert!(second.upgrade().is_none());
        assert_eq!(live.reap(), 0);
    }
}
