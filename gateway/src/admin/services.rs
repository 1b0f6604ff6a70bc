//! `ConfigService`, `StatusService` and `EventService`.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pingora_config::v1;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::Live;
use crate::admin::auth::require_editor;
use crate::admin::edit::Edit;
use crate::admin::json;
use crate::admin::resources::Kind;
use crate::admin::store::{Change, Head, changes};
use crate::admin::write::{Writer, rejected, violations};
use crate::shared::SharedConfig;

/// What this node tells about itself.
pub struct Node {
    pub id: String,
    pub start: SystemTime,
}

pub(crate) fn timestamp(t: SystemTime) -> pbjson_types::Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    pbjson_types::Timestamp { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 }
}

/// Secrets of `new` sent as the marker take the value stored for the same
/// resource; returns the paths of markers with nothing stored.
fn restore_kind<R: Kind>(new: &mut v1::Config, old: &SharedConfig) -> Result<Vec<String>, Status> {
    let mut missing = Vec::new();
    for (i, r) in R::proto_items_mut(new).iter_mut().enumerate() {
        let stored = R::items(old).iter().find(|o| o.id() == r.id()).map(|o| &**o);
        let (restored, m) =
            json::restore(r, stored, &format!("{}[{i}]", R::COLLECTION)).map_err(Status::invalid_argument)?;
        *r = restored;
        missing.extend(m);
    }
    Ok(missing)
}

fn restore_config(new: &mut v1::Config, old: &SharedConfig) -> Result<Vec<String>, Status> {
    let mut missing = restore_kind::<v1::Route>(new, old)?;
    missing.extend(restore_kind::<v1::Service>(new, old)?);
    missing.extend(restore_kind::<v1::Upstream>(new, old)?);
    missing.extend(restore_kind::<v1::Consumer>(new, old)?);
    missing.extend(restore_kind::<v1::Ssl>(new, old)?);
    missing.extend(restore_kind::<v1::GlobalRule>(new, old)?);
    missing.extend(restore_kind::<v1::PluginConfig>(new, old)?);
    Ok(missing)
}

fn secret_violations(missing: Vec<String>) -> Vec<v1::Violation> {
    missing
        .into_iter()
        .map(|path| v1::Violation {
            path,
            rule: "secret".into(),
            message: format!("`{}` stands for a stored secret, and none is stored here", json::REDACTED),
        })
        .collect()
}

/// The diff between two configs, resource by resource, field by field.
pub fn config_diff(old: &SharedConfig, new: &SharedConfig) -> v1::ConfigDiff {
    diff_of(changes(old, new))
}

/// The diff of these changes, resource by resource, field by field.
pub fn diff_of(changes: Vec<Change>) -> v1::ConfigDiff {
    use v1::resource_change::Type;
    let changes = changes
        .into_iter()
        .map(|((kind, id), before, after)| {
            let (ty, fields) = match (&before, &after) {
                (None, _) => (Type::Added, Vec::new()),
                (_, None) => (Type::Removed, Vec::new()),
                (Some(a), Some(b)) => {
                    let mut fields = json::diff(a, b);
                    // Paths start at the resource, not at the oneof holding it.
                    for f in &mut fields {
                        f.path = f.path.split_once('.').map(|(_, rest)| rest.to_owned()).unwrap_or_default();
                    }
                    (Type::Changed, fields)
                }
            };
            v1::ResourceChange { kind: kind as i32, id, r#type: ty as i32, fields }
        })
        .collect();
    v1::ConfigDiff { changes }
}

pub struct Configs {
    pub writer: Arc<Writer>,
}

#[tonic::async_trait]
impl v1::config_service_server::ConfigService for Configs {
    async fn apply_config(
        &self,
        req: Request<v1::ApplyConfigRequest>,
    ) -> Result<Response<v1::ApplyConfigResponse>, Status> {
        if !req.get_ref().dry_run {
            require_editor(&req)?;
        }
        let q = req.into_inner();
        let new = q.config.ok_or_else(|| Status::invalid_argument("`config` is required"))?;
        let expected = q.expected_revision;
        let stale = move |head: &Head<'_>| -> Result<(), Status> {
            if expected > 0 && head.revision != expected {
                return Err(Status::aborted(format!(
                    "the config changed since revision {expected} (now {}): export it again and retry",
                    head.revision
                )));
            }
            Ok(())
        };
        let prepare = move |head: &Head<'_>| -> Result<v1::Config, Status> {
            stale(head)?;
            let mut config = new.clone();
            let missing = restore_config(&mut config, head.config)?;
            if !missing.is_empty() {
                return Err(rejected(&SharedConfig::from(config), &secret_violations(missing)));
            }
            Ok(config)
        };
        if q.dry_run {
            let stored = self.writer.store.current();
            let config = prepare(&stored.head())?;
            let shared = SharedConfig::from(config.clone());
            let diff = config_diff(&stored.config, &shared);
            if shared != *stored.config {
                self.writer.check(config).await?;
            }
            return Ok(Response::new(v1::ApplyConfigResponse { revision: stored.revision, diff: Some(diff) }));
        }
        let written = self.writer.write(move |head| prepare(head).map(Edit::Whole)).await?;
        let diff = diff_of(written.changes);
        Ok(Response::new(v1::ApplyConfigResponse { revision: written.revision, diff: Some(diff) }))
    }

    async fn validate_config(
        &self,
        req: Request<v1::ValidateConfigRequest>,
    ) -> Result<Response<v1::ValidateConfigResponse>, Status> {
        let mut config = req.into_inner().config.ok_or_else(|| Status::invalid_argument("`config` is required"))?;
        // Markers are placeholders here: restore what can be, ignore the rest.
        let stored = self.writer.store.current();
        let placeholders = restore_config(&mut config, &stored.config)?;
        let mut found = match pingora_config::validate_message(&config, "grpc") {
            Ok(_) => Vec::new(),
            Err(report) => violations(&report),
        };
        found.retain(|v| !placeholders.contains(&v.path));
        found.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Response::new(v1::ValidateConfigResponse { valid: found.is_empty(), violations: found }))
    }

    async fn export_config(
        &self,
        _req: Request<v1::ExportConfigRequest>,
    ) -> Result<Response<v1::ExportConfigResponse>, Status> {
        let stored = self.writer.store.current();
        Ok(Response::new(v1::ExportConfigResponse {
            config: Some(json::redact(&stored.config.to_proto())),
            revision: stored.revision,
            config_hash: stored.hash.clone(),
        }))
    }
}

pub struct Statuses {
    pub writer: Arc<Writer>,
    pub node: Arc<Node>,
}

/// `route:<id>` (the snapshot's key of an inline upstream) -> `routes/<id>`.
fn upstream_name(key: &str) -> String {
    match key.split_once(':') {
        Some(("route", id)) => format!("routes/{id}"),
        Some(("service", id)) => format!("services/{id}"),
        _ => key.to_owned(),
    }
}

/// Every node of every upstream served, with its health.
pub fn health(live: &Live) -> Vec<v1::UpstreamHealth> {
    let snapshot = live.load();
    let mut out: Vec<v1::UpstreamHealth> = snapshot
        .upstreams
        .iter()
        .map(|(key, u)| v1::UpstreamHealth {
            upstream_id: upstream_name(key),
            nodes: u
                .node_health()
                .into_iter()
                .map(|(address, healthy)| v1::NodeHealth { address, healthy, ..Default::default() })
                .collect(),
        })
        .collect();
    out.sort_by(|a, b| a.upstream_id.cmp(&b.upstream_id));
    out
}

#[tonic::async_trait]
impl v1::status_service_server::StatusService for Statuses {
    async fn get_status(&self, _req: Request<v1::GetStatusRequest>) -> Result<Response<v1::NodeStatus>, Status> {
        let store = &self.writer.store;
        let stored = store.current();
        let error = store.last_error();
        Ok(Response::new(v1::NodeStatus {
            node_id: self.node.id.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            start_time: Some(timestamp(self.node.start)),
            uptime: Some(pbjson_types::Duration {
                seconds: self.node.start.elapsed().unwrap_or_default().as_secs() as i64,
                nanos: 0,
            }),
            applied_revision: stored.revision,
            config_hash: stored.hash.clone(),
            applied_time: Some(timestamp(stored.applied_time)),
            last_error: error.as_ref().map(|e| e.0.clone()).unwrap_or_default(),
            last_error_time: error.as_ref().map(|e| timestamp(e.1)),
            store: Some(v1::StoreStatus {
                kind: store.kind() as i32,
                connected: store.connected(),
                endpoint: store.endpoint(),
                revision: stored.revision,
                last_error: store.store_error().unwrap_or_default(),
            }),
            upstreams: health(&self.writer.live),
            sinks: crate::admin::sinks::status(),
        }))
    }

    async fn list_nodes(&self, _req: Request<v1::ListNodesRequest>) -> Result<Response<v1::ListNodesResponse>, Status> {
        let store = &self.writer.store;
        if let Some(mut nodes) = store.nodes().await {
            nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
            return Ok(Response::new(v1::ListNodesResponse { nodes }));
        }
        let stored = store.current();
        Ok(Response::new(v1::ListNodesResponse {
            nodes: vec![v1::ClusterNode {
                node_id: self.node.id.clone(),
                version: env!("CARGO_PKG_VERSION").into(),
                start_time: Some(timestamp(self.node.start)),
                applied_revision: stored.revision,
                config_hash: stored.hash.clone(),
                last_error: store.last_error().map(|e| e.0).unwrap_or_default(),
                last_seen: Some(timestamp(SystemTime::now())),
            }],
        }))
    }
}

pub struct Events {
    pub writer: Arc<Writer>,
    pub shutdown: watch::Receiver<bool>,
}

fn event_kind(e: &v1::Event) -> v1::event::Kind {
    match e.payload {
        Some(v1::event::Payload::Resource(_)) => v1::event::Kind::Resource,
        Some(v1::event::Payload::Health(_)) => v1::event::Kind::Health,
        Some(v1::event::Payload::Node(_)) => v1::event::Kind::Node,
        _ => v1::event::Kind::Unspecified,
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<v1::Event, Status>> + Send>>;

#[tonic::async_trait]
impl v1::event_service_server::EventService for Events {
    type WatchStream = EventStream;

    async fn watch(&self, req: Request<v1::WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let q = req.into_inner();
        if q.start_revision < 0 {
            return Err(Status::invalid_argument("start_revision: must be 0 or more"));
        }
        let kinds = q.kinds.clone();
        let resource_kinds = q.resource_kinds.clone();
        let start = q.start_revision;
        let wanted = move |e: &v1::Event| {
            if !kinds.is_empty() && !kinds.contains(&(event_kind(e) as i32)) {
                return false;
            }
            match &e.payload {
                Some(v1::event::Payload::Resource(r)) => {
                    e.revision >= start && (resource_kinds.is_empty() || resource_kinds.contains(&r.kind))
                }
                _ => true,
            }
        };
        let log = self.writer.store.clone();
        let (tx, rx) = mpsc::channel::<Result<v1::Event, Status>>(64);
        let resync = move |oldest: i64, current: i64| {
            let events = log.events();
            events.event(
                format!("resync/{current}"),
                current,
                v1::event::Payload::ResyncRequired(v1::ResyncRequired {
                    oldest_revision: oldest,
                    current_revision: current,
                }),
            )
        };
        let store = self.writer.store.clone();
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let (replay, mut live) = match store.events().subscribe(start) {
                Ok(s) => s,
                Err(too_old) => {
                    let _ = tx.send(Ok(resync(too_old.oldest, too_old.current))).await;
                    return;
                }
            };
            for e in replay {
                if wanted(&e) && tx.send(Ok((*e).clone())).await.is_err() {
                    return;
                }
            }
            loop {
                tokio::select! {
                    _ = shutdown.changed() => {
                        let _ = tx.send(Err(Status::unavailable("the gateway is shutting down: reconnect"))).await;
                        return;
                    }
                    _ = tx.closed() => return,
                    received = live.recv() => match received {
                        Ok(e) => {
                            if wanted(&e) && tx.send(Ok((*e).clone())).await.is_err() {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            // Too slow a reader: it must list again.
                            let b = store.events().bounds();
                            let _ = tx.send(Ok(resync(b.oldest, b.current))).await;
                            return;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}

/// Emits a health event on every node health transition (polled).
pub async fn watch_health(writer: Arc<Writer>, mut shutdown: watch::Receiver<bool>) {
    let mut known: std::collections::HashMap<(String, String), bool> = std::collections::HashMap::new();
    let mut first = true;
    loop {
        if writer.store.events().watchers() == 0 {
            // Nobody listens: no polling; start from a fresh view later.
            known.clear();
            first = true;
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            continue;
        }
        let snapshot = writer.live.load();
        let mut seen = std::collections::HashMap::new();
        for (key, u) in &snapshot.upstreams {
            let active = u.config.health_check.as_ref().is_some_and(|h| h.active.is_some());
            for (node, healthy) in u.node_health() {
                let k = (upstream_name(key), node);
                // A node not seen before (a new upstream or node) started
                // healthy, as every node does: found unhealthy, it changed.
                if !first && known.get(&k).copied().unwrap_or(true) != healthy {
                    let source =
                        if active { v1::health_event::Source::Active } else { v1::health_event::Source::Passive };
                    let events = writer.store.events();
                    let revision = writer.store.current().revision;
                    let event = events.event(
                        format!(
                            "health/{}/{}/{}",
                            k.0,
                            k.1,
                            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis()
                        ),
                        revision,
                        v1::event::Payload::Health(v1::HealthEvent {
                            upstream_id: k.0.clone(),
                            node: k.1.clone(),
                            healthy,
                            reason: if healthy { "health checks pass".into() } else { "health checks fail".into() },
                            source: source as i32,
                        }),
                    );
                    events.send_live(event);
                }
                seen.insert(k, healthy);
            }
        }
        known = seen;
        first = false;
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}
