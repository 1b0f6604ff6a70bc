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
//! - [`admin`]: the management API (gRPC, grpc-web) and the store's write path.

pub mod admin;
pub mod headers;
pub mod metrics;
pub mod plugins;
pub mod proxy;
pub mod router;
pub mod server;
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
}

impl Live {
    pub fn new(snapshot: Snapshot) -> Live {
        Live { current: ArcSwap::from_pointee(snapshot) }
    }

    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn store(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
    }
}
