//! The etcd store: the config kept in etcd v3, shared by several gateway
//! nodes.
//!
//! - One key per resource, `<prefix>/<collection>/<id>` (`routes`,
//!   `services`, `upstreams`, `consumers`, `ssls`, `global_rules`,
//!   `plugin_configs`), whose value is the resource in proto-JSON (proto field
//!   names, what the YAML loader reads).
//! - The config's revision is etcd's: the revision of the last change this
//!   node applied. A resource's `meta.revision` is its key's mod revision.
//! - A write is one etcd transaction: every touched key must still be at the
//!   mod revision this node last saw (absent for a creation), and no config
//!   key may have changed since the revision this node has seen (so the
//!   whole config is a compare-and-swap, as with the file store). A failed
//!   compare is ABORTED. Writes queued together are one transaction (so
//!   they share its revision, as the resources of one `ApplyConfig` do),
//!   split only where a key would repeat or etcd's `--max-txn-ops` or
//!   request size would be exceeded, each part chained on the revision the
//!   previous one produced (a single write over those limits gets
//!   FAILED_PRECONDITION). This node applies the batch itself (one
//!   compile), and a write returns once this node serves it, so the next
//!   read through the same node sees it.
//! - Every node lists the prefix, then watches it from the revision after
//!   the listing; on compaction it lists again and applies the difference.
//!   Revisions that arrive together (or, while changes stream in, within
//!   20 ms of the previous apply) are applied together: one validation and
//!   one compile of the config they give, the events of each revision. A
//!   change is applied only if that config validates and compiles (the one
//!   validation path); if it does not, the revisions are taken one at a
//!   time and those that make the config invalid are ignored: logged,
//!   counted in `pingora_config_etcd_rejected_total`, and recorded as the
//!   node's last error. (So an invalid revision followed in the same group
//!   by one that makes the whole valid again is applied with it: the node
//!   then serves what etcd holds.) A document that does not parse is
//!   ignored alone.
//! - While etcd is unreachable the node keeps serving what it applied,
//!   reports `connected = false` and the error, and reconnects with backoff
//!   (resuming the watch from the revision it had seen). The applied config
//!   is cached on disk (`<cache_dir>/<prefix>.json`, written atomically,
//!   the latest one at most every 200 ms), so a node started while etcd is
//!   down serves the last config it saw.
//! - Node registry: each node keeps `<prefix>/nodes/<node_id>` under a lease
//!   of `node_ttl`, holding its status; `ListNodes` reads those keys, and
//!   their creation and deletion (lease expiry included) are the node
//!   JOINED / LEFT events.
//!
//! All etcd traffic runs on a small runtime of its own, so that it never
//! competes with the proxy's workers and outlives any one Pingora service.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp};
use pingora_config::v1;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use prost::Message;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use crate::Live;
use crate::admin::json;
use crate::admin::store::{
    self, Batch, COLLECTIONS, Change, CommitError, Committed, ConfigStore, EventLog, Key, Meta, Proposed, Stored,
    collection,
};
use crate::shared::{SharedConfig, SharedResource};
use crate::snapshot::{Snapshot, Timeouts};

/// The etcd store's settings, from the bootstrap's `store.etcd`.
#[derive(Clone)]
pub struct Settings {
    pub endpoints: Vec<String>,
    /// Without a trailing slash, for example `/pingora-config`.
    pub prefix: String,
    pub dial_timeout: Duration,
    pub request_timeout: Duration,
    pub user: Option<(String, String)>,
    pub tls: Option<etcd_client::TlsOptions>,
    pub cache_dir: PathBuf,
    pub node_ttl: Duration,
    pub node_id: String,
    /// What this node registers as its address (its admin listener).
    pub address: String,
}

impl Settings {
    pub fn from_bootstrap(e: &v1::EtcdStore, node_id: String, address: String) -> Settings {
        let d = |v: &Option<pbjson_types::Duration>, default: Duration| {
            v.as_ref().map(crate::upstream::duration).unwrap_or(default)
        };
        let prefix = if e.prefix.is_empty() { "/pingora-config".to_owned() } else { e.prefix.clone() };
        let tls = e.tls.as_ref().map(|t| {
            if t.insecure_skip_verify {
                log::warn!("etcd: tls.insecure_skip_verify is not supported by the etcd client; verifying");
            }
            let mut o = etcd_client::TlsOptions::new();
            if !t.ca.is_empty() {
                o = o.ca_certificate(etcd_client::Certificate::from_pem(&t.ca));
            }
            if let Some(c) = &t.client_cert {
                o = o.identity(etcd_client::Identity::from_pem(&c.cert, &c.key));
            }
            if !t.sni.is_empty() {
                o = o.domain_name(t.sni.clone());
            }
            o
        });
        Settings {
            endpoints: e.endpoints.clone(),
            prefix: prefix.trim_end_matches('/').to_owned(),
            dial_timeout: d(&e.dial_timeout, Duration::from_secs(5)),
            request_timeout: d(&e.request_timeout, Duration::from_secs(10)),
            user: (!e.username.is_empty()).then(|| (e.username.clone(), e.password.clone())),
            tls,
            cache_dir: PathBuf::from(if e.cache_dir.is_empty() { "/var/cache/pingora-config" } else { &e.cache_dir }),
            node_ttl: d(&e.node_ttl, Duration::from_secs(10)),
            node_id,
            address,
        }
    }

    fn cache_path(&self) -> PathBuf {
        let name = self.prefix.trim_start_matches('/').replace('/', "_");
        self.cache_dir.join(format!("{name}.json"))
    }
}

/// The etcd metrics.
pub mod metrics {
    use std::sync::OnceLock;

    fn counter(name: &str, help: &str) -> prometheus::IntCounter {
        prometheus::register_int_counter!(name, help)
            .or_else(|_| prometheus::IntCounter::new(name, help))
            .unwrap_or_else(|_| unreachable!("a valid metric name"))
    }

    /// `pingora_config_etcd_rejected_total`: changes read from etcd that were
    /// not applied (a document that does not parse, or a config that does
    /// not validate).
    pub fn rejected() -> &'static prometheus::IntCounter {
        static C: OnceLock<prometheus::IntCounter> = OnceLock::new();
        C.get_or_init(|| {
            counter("pingora_config_etcd_rejected_total", "Changes read from etcd that were ignored as invalid.")
        })
    }

    /// `pingora_config_etcd_reconnects_total`: times the watch on etcd was lost.
    pub fn disconnects() -> &'static prometheus::IntCounter {
        static C: OnceLock<prometheus::IntCounter> = OnceLock::new();
        C.get_or_init(|| counter("pingora_config_etcd_disconnects_total", "Times the connection to etcd was lost."))
    }

    /// `pingora_config_etcd_connected`: 1 while the watch on etcd runs.
    pub fn connected() -> &'static prometheus::IntGauge {
        static G: OnceLock<prometheus::IntGauge> = OnceLock::new();
        G.get_or_init(|| {
            let (name, help) = ("pingora_config_etcd_connected", "1 while this node follows etcd, 0 otherwise.");
            prometheus::register_int_gauge!(name, help)
                .or_else(|_| prometheus::IntGauge::new(name, help))
                .unwrap_or_else(|_| unreachable!("a valid metric name"))
        })
    }
}

use v1::resource::Kind;

/// What a key under the prefix is.
enum Path {
    Resource(Key),
    Node(String),
    Other,
}

fn parse_key(prefix: &str, key: &[u8]) -> Path {
    let Ok(key) = std::str::from_utf8(key) else { return Path::Other };
    let Some(rest) = key.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')) else { return Path::Other };
    let Some((coll, id)) = rest.split_once('/') else { return Path::Other };
    if id.is_empty() || id.contains('/') {
        return Path::Other;
    }
    if coll == "nodes" {
        return Path::Node(id.to_owned());
    }
    match COLLECTIONS.iter().find(|(_, c)| *c == coll) {
        Some((kind, _)) => Path::Resource((*kind, id.to_owned())),
        None => Path::Other,
    }
}

fn etcd_key(prefix: &str, (kind, id): &Key) -> String {
    format!("{prefix}/{}/{id}", collection(*kind))
}

/// Parses one document; its id must be the key's.
fn decode((kind, id): &Key, bytes: &[u8]) -> Result<SharedResource, String> {
    use v1::resource::Value;
    fn parse<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, String> {
        serde_json::from_slice(b).map_err(|e| format!("not a valid document: {e}"))
    }
    let (own, value) = match kind {
        Kind::Route => parse::<v1::Route>(bytes).map(|r| (r.id.clone(), Value::Route(r)))?,
        Kind::Service => parse::<v1::Service>(bytes).map(|r| (r.id.clone(), Value::Service(r)))?,
        Kind::Upstream => parse::<v1::Upstream>(bytes).map(|r| (r.id.clone(), Value::Upstream(r)))?,
        Kind::Consumer => parse::<v1::Consumer>(bytes).map(|r| (r.username.clone(), Value::Consumer(r)))?,
        Kind::Ssl => parse::<v1::Ssl>(bytes).map(|r| (r.id.clone(), Value::Ssl(r)))?,
        Kind::GlobalRule => parse::<v1::GlobalRule>(bytes).map(|r| (r.id.clone(), Value::GlobalRule(r)))?,
        Kind::PluginConfig => parse::<v1::PluginConfig>(bytes).map(|r| (r.id.clone(), Value::PluginConfig(r)))?,
        Kind::Unspecified => return Err("unknown kind".into()),
    };
    if own != *id {
        return Err(format!("its id `{own}` is not the one of its key (`{id}`)"));
    }
    Ok(SharedResource::from(value))
}

fn encode(r: &v1::Resource) -> Vec<u8> {
    use v1::resource::Value;
    let v = match &r.value {
        Some(Value::Route(x)) => serde_json::to_vec(x),
        Some(Value::Service(x)) => serde_json::to_vec(x),
        Some(Value::Upstream(x)) => serde_json::to_vec(x),
        Some(Value::Consumer(x)) => serde_json::to_vec(x),
        Some(Value::Ssl(x)) => serde_json::to_vec(x),
        Some(Value::GlobalRule(x)) => serde_json::to_vec(x),
        Some(Value::PluginConfig(x)) => serde_json::to_vec(x),
        None => Ok(b"{}".to_vec()),
    };
    v.unwrap_or_default()
}

/// The config holding `docs`, each collection ordered by id (every node
/// builds the same config, hence the same hash, from the same keys). The
/// resources are the documents' own: a pointer each.
fn build_config<'a>(docs: impl Iterator<Item = &'a SharedResource>) -> SharedConfig {
    SharedConfig::from_resources(docs)
}

/// The applied documents by key: a persistent map, so that a commit or a
/// change from the watch starts from the current ones without copying
/// every resource.
type Docs = imbl::OrdMap<Key, Doc>;

/// Mod revision of every config key, as last seen (persistent, as [`Docs`]).
type Raw = imbl::OrdMap<Key, i64>;

/// A document applied, with its key's revisions. The resource is the one
/// the applied config holds (shared).
#[derive(Clone)]
struct Doc {
    resource: SharedResource,
    mod_rev: i64,
    create_rev: i64,
}

fn meta(d: &Doc, update_time: Option<(i64, i32)>) -> Meta {
    Meta {
        revision: d.mod_rev,
        create_revision: d.create_rev,
        update_time,
        hash: json::sha256(&d.resource.to_resource().encode_to_vec()),
    }
}

/// Validates and compiles a whole config (blocking).
fn check(config: SharedConfig, defaults: Timeouts, previous: Option<&Snapshot>) -> Result<Snapshot, String> {
    // Validated by its changes when they allow it (see
    // `write::valid_by_its_changes`): the previous snapshot's config is
    // valid.
    let by_changes = previous.is_some_and(|p| {
        crate::admin::write::valid_by_its_changes(&config, &store::changes(&p.config, &config), false)
    });
    if !by_changes && let Err(report) = pingora_config::validate_message(&config.to_proto(), "etcd") {
        return Err(report.to_string());
    }
    Snapshot::build(Arc::new(config), defaults, previous).map_err(|e| e.to_string())
}

/// What a node registers about itself.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct NodeRecord {
    pub node_id: String,
    pub version: String,
    pub address: String,
    pub start_time: i64,
    pub applied_revision: i64,
    pub config_hash: String,
    #[serde(default)]
    pub last_error: String,
    /// Seconds since the epoch when the record was written.
    #[serde(default)]
    pub updated: i64,
}

impl NodeRecord {
    fn to_proto(&self) -> v1::ClusterNode {
        v1::ClusterNode {
            node_id: self.node_id.clone(),
            version: self.version.clone(),
            start_time: Some(pbjson_types::Timestamp { seconds: self.start_time, nanos: 0 }),
            applied_revision: self.applied_revision,
            config_hash: self.config_hash.clone(),
            last_error: self.last_error.clone(),
            last_seen: Some(pbjson_types::Timestamp { seconds: self.updated, nanos: 0 }),
        }
    }
}

/// The cached config, on local disk (written as [`CacheOut`]).
#[derive(Serialize, Deserialize)]
struct Cache<C = serde_json::Value> {
    revision: i64,
    /// The etcd revision seen when it was written.
    seen: i64,
    config: C,
    /// `<KIND>/<id>` -> (mod revision, create revision).
    revisions: BTreeMap<String, (i64, i64)>,
}

/// The cache as written: the config serialized straight from the shared
/// resources (no copy, no JSON tree).
type CacheOut<'a> = Cache<&'a SharedConfig>;

struct State {
    stored: Arc<Stored>,
    /// The applied documents (the config of `stored`).
    docs: Docs,
    /// Mod revision of every config key in etcd as last seen, applied or
    /// not: what a write compares.
    raw: Raw,
    /// The etcd revision this node has processed.
    seen: i64,
}

/// The etcd store, as seen by the management API.
pub struct EtcdConfigStore {
    settings: Settings,
    defaults: Timeouts,
    live: Arc<Live>,
    runtime: tokio::runtime::Handle,
    client: tokio::sync::Mutex<Option<Client>>,
    state: Mutex<State>,
    history: Mutex<VecDeque<Arc<Stored>>>,
    events: EventLog,
    last_error: Mutex<Option<(String, SystemTime)>>,
    store_error: Mutex<Option<String>>,
    connected: AtomicBool,
    /// The etcd revision processed, for writers waiting on their change.
    seen_tx: watch::Sender<i64>,
    /// True while this node writes a batch: the watch holds off applying
    /// until the writer has installed it (see [`EtcdConfigStore::commit_batch`]).
    /// (a batch is being written, batches finished so far).
    committing: watch::Sender<(bool, u64)>,
    /// The registry as last seen.
    nodes: Mutex<BTreeMap<String, NodeRecord>>,
    status_changed: Notify,
    cache_tx: watch::Sender<Option<Arc<Stored>>>,
    start: SystemTime,
}

/// Held earlier revisions, for listings read across pages.
const HISTORY: usize = 32;

/// The changes of one etcd revision: key, document (none: deleted), and
/// whether it parsed.
type Revision = (i64, Vec<(Key, Option<Doc>, Result<(), String>)>);

/// The least time between two applies of watch events while they stream
/// in (see [`EtcdConfigStore::follow`]).
const APPLY_GAP: Duration = Duration::from_millis(20);

/// The most watch events applied together.
const MAX_COALESCED: usize = 4096;

fn now_secs() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

async fn with_timeout<T, E: std::fmt::Display>(
    d: Duration,
    what: &str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(d, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {d:?}")),
    }
}

impl EtcdConfigStore {
    /// Connects and loads the config (or, with etcd unreachable, the cached
    /// one; with no cache either, an empty config), then follows etcd in the
    /// background. Returns the store and the live config it drives.
    pub fn open(settings: Settings, defaults: Timeouts) -> Result<(Arc<EtcdConfigStore>, Arc<Live>), String> {
        // One worker: the client's connection, its balancer and this
        // store's tasks wake each other on every transaction and watch
        // event, and with two workers those wake-ups crossed threads (per
        // write through this node: 5 futex calls, 9 context switches; with
        // one, 0.5 and 7, and 10-15% less CPU). Blocking work goes to
        // `spawn_blocking`, so nothing here holds the worker for long.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("etcd")
            .on_thread_start(crate::server::control_plane_thread)
            .enable_all()
            .build()
            .map_err(|e| format!("etcd: cannot start its runtime: {e}"))?;
        // The store lives as long as the process.
        let runtime: &'static tokio::runtime::Runtime = Box::leak(Box::new(runtime));
        let s = settings.clone();
        let listed = runtime.block_on(async move {
            let mut client = connect(&s).await?;
            let resp = with_timeout(
                s.request_timeout,
                "etcd get",
                client.get(format!("{}/", s.prefix), Some(GetOptions::new().with_prefix())),
            )
            .await?;
            Ok::<_, String>((client, resp))
        });
        let (client, first, seen, need_list, error) = match listed {
            Ok((client, resp)) => {
                let header = resp.header().map(|h| h.revision()).unwrap_or(0);
                let listing = Listing::from(&settings.prefix, resp.kvs());
                let (docs, errors) = listing.adopt(None, defaults);
                let revision = docs.1.values().map(|d| d.mod_rev).max().unwrap_or(header);
                log::info!(
                    "etcd: loaded {} resources at revision {revision} from {}",
                    docs.1.len(),
                    settings.endpoints.join(",")
                );
                (Some(client), Some((docs, revision, listing.raw, listing.nodes)), header, false, errors.join("\n"))
            }
            Err(e) => {
                log::warn!("etcd unreachable at start ({e}); serving the cached config while reconnecting");
                (None, None, 0, true, e)
            }
        };
        let (snapshot, docs, revision, raw, nodes, seen) = match first {
            Some(((snapshot, docs), revision, raw, nodes)) => (snapshot, docs, revision, raw, nodes, seen),
            None => match load_cache(&settings, defaults) {
                Ok((snapshot, docs, revision, seen)) => {
                    log::info!("etcd: serving the cached config of revision {revision}");
                    let raw: Raw = docs.iter().map(|(k, d)| (k.clone(), d.mod_rev)).collect();
                    (snapshot, docs, revision, raw, BTreeMap::new(), seen)
                }
                Err(e) => {
                    log::warn!("etcd: no usable cache ({e}); serving an empty config until etcd answers");
                    let snapshot = check(SharedConfig::default(), defaults, None)?;
                    (snapshot, Docs::new(), 0, Raw::new(), BTreeMap::new(), 0)
                }
            },
        };
        let config = snapshot.config.clone();
        let live = Arc::new(Live::new(snapshot));
        let metas = docs.iter().map(|(k, d)| (k.clone(), meta(d, None))).collect();
        let stored = Arc::new(Stored {
            hash: json::config_hash(&config),
            config,
            revision,
            metas,
            applied_time: SystemTime::now(),
        });
        crate::admin::metrics::revision().set(revision);
        let (cache_tx, cache_rx) = watch::channel(Some(stored.clone()));
        let connected = client.is_some();
        metrics::connected().set(connected as i64);
        let store = Arc::new(EtcdConfigStore {
            defaults,
            live: live.clone(),
            runtime: runtime.handle().clone(),
            client: tokio::sync::Mutex::new(client),
            state: Mutex::new(State { stored: stored.clone(), docs, raw, seen }),
            history: Mutex::new(VecDeque::from([stored])),
            events: EventLog::new(settings.node_id.clone(), revision),
            last_error: Mutex::new(None),
            store_error: Mutex::new((!connected).then(|| error.clone())),
            connected: AtomicBool::new(connected),
            seen_tx: watch::channel(seen).0,
            committing: watch::channel((false, 0)).0,
            nodes: Mutex::new(nodes),
            status_changed: Notify::new(),
            cache_tx,
            start: SystemTime::now(),
            settings,
        });
        if connected && !error.is_empty() {
            store.set_error(error);
        }
        let cache_path = store.settings.cache_path();
        runtime.spawn(write_cache(cache_path, cache_rx, store.clone()));
        runtime.spawn(store.clone().follow_loop(need_list));
        runtime.spawn(store.clone().register_loop());
        Ok((store, live))
    }

    fn set_error(&self, e: String) {
        if let Ok(mut l) = self.last_error.lock() {
            *l = Some((e, SystemTime::now()));
        }
        self.status_changed.notify_one();
    }

    fn set_connected(&self, connected: bool, error: Option<String>) {
        let was = self.connected.swap(connected, Ordering::SeqCst);
        if was && !connected {
            metrics::disconnects().inc();
        }
        metrics::connected().set(connected as i64);
        if let Ok(mut e) = self.store_error.lock() {
            match (connected, error) {
                (true, _) => *e = None,
                (false, Some(err)) => *e = Some(err),
                (false, None) => {}
            }
        }
    }

    async fn client(&self) -> Result<Client, String> {
        let mut c = self.client.lock().await;
        if let Some(c) = c.as_ref() {
            return Ok(c.clone());
        }
        let client = connect(&self.settings).await?;
        *c = Some(client.clone());
        Ok(client)
    }

    fn seen(&self) -> i64 {
        self.state.lock().map(|s| s.seen).unwrap_or(0)
    }

    /// Follows etcd for ever: list when needed, watch, reconnect with backoff.
    async fn follow_loop(self: Arc<Self>, mut need_list: bool) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            let error = self.follow(&mut need_list, &mut backoff).await;
            if need_list && error.is_none() {
                continue;
            }
            let error = error.unwrap_or_else(|| "the watch ended".into());
            if self.connected.load(Ordering::SeqCst) {
                log::warn!("etcd: {error}; serving revision {} while reconnecting", self.current_revision());
            } else {
                log::debug!("etcd: {error}");
            }
            self.set_connected(false, Some(error));
            tokio::time::sleep(backoff.next()).await;
        }
    }

    fn current_revision(&self) -> i64 {
        self.state.lock().map(|s| s.stored.revision).unwrap_or(0)
    }

    /// One watch session. `None`: a compaction asks for a listing.
    async fn follow(&self, need_list: &mut bool, backoff: &mut Backoff) -> Option<String> {
        let mut client = match self.client().await {
            Ok(c) => c,
            Err(e) => return Some(e),
        };
        let rt = self.settings.request_timeout;
        if *need_list {
            let get = client.get(format!("{}/", self.settings.prefix), Some(GetOptions::new().with_prefix()));
            let resp = match with_timeout(rt, "etcd get", get).await {
                Ok(r) => r,
                Err(e) => return Some(e),
            };
            self.relist(resp).await;
            *need_list = false;
        }
        let start = self.seen() + 1;
        let options = etcd_client::WatchOptions::new().with_prefix().with_start_revision(start);
        let mut stream =
            match with_timeout(rt, "etcd watch", client.watch(format!("{}/", self.settings.prefix), Some(options)))
                .await
            {
                Ok(s) => s,
                Err(e) => return Some(e),
            };
        let mut next = None;
        let mut last_apply: Option<tokio::time::Instant> = None;
        loop {
            let received = match next.take() {
                Some(r) => r,
                None => stream.message().await,
            };
            let msg = match received {
                Ok(Some(m)) => m,
                Ok(None) => return Some("etcd closed the watch".into()),
                Err(e) => return Some(format!("etcd watch: {e}")),
            };
            if msg.created() {
                if !self.connected.load(Ordering::SeqCst) {
                    log::info!("etcd: connected, following from revision {start}");
                }
                self.set_connected(true, None);
                backoff.reset();
            }
            if msg.compact_revision() > 0 {
                log::info!("etcd: revision {start} was compacted (now {}); listing again", msg.compact_revision());
                *need_list = true;
                return None;
            }
            if msg.canceled() {
                *need_list = true;
                return Some(format!("etcd canceled the watch: {}", msg.cancel_reason()));
            }
            // The responses already here, and under a stream of changes
            // those arriving until APPLY_GAP after the previous apply, are
            // applied together (at most MAX_COALESCED events): one compile
            // for all their revisions. A change after a quiet spell is
            // applied at once.
            let mut events = msg.events().to_vec();
            let gather_until = match last_apply {
                Some(t) if !events.is_empty() => t + APPLY_GAP,
                _ => tokio::time::Instant::now(),
            };
            while events.len() < MAX_COALESCED {
                let wait = gather_until.saturating_duration_since(tokio::time::Instant::now());
                match tokio::time::timeout(wait, stream.message()).await {
                    Ok(Ok(Some(m))) if !m.created() && m.compact_revision() == 0 && !m.canceled() => {
                        events.extend_from_slice(m.events());
                    }
                    Ok(other) => {
                        next = Some(other);
                        break;
                    }
                    Err(_) => break,
                }
            }
            if !events.is_empty() {
                last_apply = Some(tokio::time::Instant::now());
            }
            self.on_events(&events).await;
        }
    }

    /// Applies the events of the watch responses at hand: revisions that
    /// arrive together are applied together (see [`EtcdConfigStore::apply_revisions`]).
    async fn on_events(&self, events: &[etcd_client::Event]) {
        // A batch this node is writing is installed by the writer; wait for
        // it rather than compile its revisions one by one.
        // Until that batch ends, even if the next one starts at once.
        let mut committing = self.committing.subscribe();
        let started = committing.borrow().1;
        let ended = committing.wait_for(|(busy, done)| !*busy || *done != started);
        let _ = tokio::time::timeout(self.settings.request_timeout, ended).await;
        let mut revisions: Vec<Revision> = Vec::new();
        for e in events {
            let Some(kv) = e.kv() else { continue };
            let rev = kv.mod_revision();
            let change = match parse_key(&self.settings.prefix, kv.key()) {
                Path::Resource(key) => match e.event_type() {
                    EventType::Delete => (key, None, Ok(())),
                    EventType::Put => match decode(&key, kv.value()) {
                        Ok(resource) => {
                            (key, Some(Doc { resource, mod_rev: rev, create_rev: kv.create_revision() }), Ok(()))
                        }
                        Err(err) => (key, None, Err(err)),
                    },
                },
                Path::Node(id) => {
                    self.on_node(&id, e.event_type(), kv);
                    continue;
                }
                Path::Other => continue,
            };
            match revisions.last_mut() {
                Some((r, batch)) if *r == rev => batch.push(change),
                _ => revisions.push((rev, vec![change])),
            }
        }
        self.apply_revisions(revisions).await;
        if let Some(last) = events.iter().filter_map(|e| e.kv()).map(|kv| kv.mod_revision()).max()
            && let Ok(mut s) = self.state.lock()
            && last > s.seen
        {
            s.seen = last;
        }
        self.seen_tx.send_modify(|s| *s = (*s).max(self.seen()));
    }

    /// Applies several revisions at once: each one's changes on top of the
    /// previous, then the resulting config is validated and compiled once
    /// and installed with the events of every revision. Under a stream of
    /// writes through other nodes, this node compiles once per watch
    /// response at hand rather than once per revision. Should the whole not
    /// be valid, the revisions are applied one at a time, each ignored if it
    /// makes the config invalid (see [`EtcdConfigStore::apply_batch`]).
    async fn apply_revisions(&self, mut revisions: Vec<Revision>) {
        if revisions.len() <= 1 {
            if let Some((rev, batch)) = revisions.pop() {
                self.apply_batch(rev, batch).await;
            }
            return;
        }
        let (mut docs, current) = match self.state.lock() {
            Ok(mut s) => {
                revisions.retain(|(rev, _)| *rev > s.seen);
                if revisions.is_empty() {
                    // This node's own writes, installed when committed.
                    return;
                }
                for (rev, batch) in &revisions {
                    for (key, doc, r) in batch {
                        match (doc, r) {
                            (None, Ok(())) => s.raw.remove(key),
                            _ => s.raw.insert(key.clone(), *rev),
                        };
                    }
                }
                (s.docs.clone(), s.stored.clone())
            }
            Err(_) => return,
        };
        let Some(last) = revisions.last().map(|r| r.0) else { return };
        let mut errors = Vec::new();
        let mut changes: Vec<(i64, Vec<Change>)> = Vec::new();
        for (rev, batch) in &revisions {
            let mut changed = Vec::new();
            for (key, doc, r) in batch {
                match (doc, r) {
                    (_, Err(e)) => errors.push(format!("{} (revision {rev}): {e}", etcd_key("", key))),
                    (Some(d), Ok(())) => {
                        let old = docs.insert(key.clone(), d.clone()).map(|o| o.resource);
                        if old.as_ref() != Some(&d.resource) {
                            let old = old.map(|o| o.to_resource());
                            changed.push((key.clone(), old, Some(d.resource.to_resource())));
                        }
                    }
                    (None, Ok(())) => {
                        if let Some(old) = docs.remove(key) {
                            changed.push((key.clone(), Some(old.resource.to_resource()), None));
                        }
                    }
                }
            }
            changed.sort_by(|x, y| x.0.cmp(&y.0));
            changes.push((*rev, changed));
        }
        let Some((config, checked)) = self.compile(&docs, &current).await else {
            self.reject(&errors);
            self.advance(last);
            return;
        };
        match checked {
            Ok(snapshot) => {
                self.reject(&errors);
                if let Ok(mut s) = self.state.lock() {
                    if s.stored.revision != current.revision {
                        return;
                    }
                    self.install_locked(&mut s, docs, Arc::new(config), changes, snapshot, None);
                }
            }
            Err(_) => {
                for (rev, batch) in revisions {
                    self.apply_batch(rev, batch).await;
                }
            }
        }
    }

    fn on_node(&self, id: &str, ty: EventType, kv: &etcd_client::KeyValue) {
        let ty = match ty {
            EventType::Put => {
                if let Ok(r) = serde_json::from_slice::<NodeRecord>(kv.value())
                    && let Ok(mut n) = self.nodes.lock()
                {
                    n.insert(id.to_owned(), r.clone());
                }
                if kv.version() != 1 {
                    return;
                }
                v1::node_event::Type::Joined
            }
            EventType::Delete => {
                if let Ok(mut n) = self.nodes.lock() {
                    n.remove(id);
                }
                v1::node_event::Type::Left
            }
        };
        let version = self.nodes.lock().ok().and_then(|n| n.get(id).map(|r| r.version.clone())).unwrap_or_default();
        let word = if ty == v1::node_event::Type::Joined { "joined" } else { "left" };
        log::info!("etcd: node {id} {word}");
        let event = self.events.event(
            format!("node/{id}/{word}/{}", kv.mod_revision()),
            self.current_revision(),
            v1::event::Payload::Node(v1::NodeEvent { node_id: id.to_owned(), r#type: ty as i32, version }),
        );
        self.events.send_live(event);
    }

    /// Applies the config changes of one etcd revision, if the config they
    /// give is valid; otherwise ignores them.
    /// The config `docs` make, and its snapshot (validated and compiled off
    /// the runtime); `None` when it is the config already live.
    async fn compile(&self, docs: &Docs, current: &Stored) -> Option<(SharedConfig, Result<Snapshot, String>)> {
        let config = build_config(docs.values().map(|d| &d.resource));
        if config == *current.config {
            return None;
        }
        let (defaults, previous, c) = (self.defaults, self.live.load(), config.clone());
        let checked = tokio::task::spawn_blocking(move || check(c, defaults, Some(&previous)))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        Some((config, checked))
    }

    async fn apply_batch(&self, revision: i64, batch: Vec<(Key, Option<Doc>, Result<(), String>)>) {
        let (mut docs, current) = match self.state.lock() {
            Ok(mut s) => {
                if revision <= s.seen {
                    return;
                }
                for (key, doc, _) in &batch {
                    match doc {
                        Some(_) => s.raw.insert(key.clone(), revision),
                        None => s.raw.remove(key),
                    };
                }
                // A document that does not parse still has a key (its
                // mod revision is what the next write of it compares).
                for (key, _, r) in &batch {
                    if r.is_err() {
                        s.raw.insert(key.clone(), revision);
                    }
                }
                (s.docs.clone(), s.stored.clone())
            }
            Err(_) => return,
        };
        let mut errors = Vec::new();
        for (key, doc, r) in batch {
            match (doc, r) {
                (_, Err(e)) => errors.push(format!("{} (revision {revision}): {e}", etcd_key("", &key))),
                (Some(d), Ok(())) => {
                    docs.insert(key, d);
                }
                (None, Ok(())) => {
                    docs.remove(&key);
                }
            }
        }
        let Some((config, snapshot)) = self.compile(&docs, &current).await else {
            self.reject(&errors);
            self.advance(revision);
            return;
        };
        match snapshot {
            Ok(snapshot) => {
                self.reject(&errors);
                self.install(docs, config, revision, snapshot);
            }
            Err(e) => {
                errors.push(format!("the change at revision {revision} makes the config invalid:\n{e}"));
                self.reject(&errors);
                self.advance(revision);
            }
        }
    }

    fn reject(&self, errors: &[String]) {
        if errors.is_empty() {
            return;
        }
        let text = errors.join("\n");
        log::error!("etcd: ignored, still serving the previous config: {text}");
        metrics::rejected().inc_by(errors.len() as u64);
        self.set_error(text);
    }

    fn advance(&self, revision: i64) {
        if let Ok(mut s) = self.state.lock()
            && revision > s.seen
        {
            s.seen = revision;
        }
        self.seen_tx.send_modify(|s| *s = (*s).max(revision));
    }

    /// Makes `config` the applied config at `revision`.
    fn install(&self, docs: Docs, config: SharedConfig, revision: i64, snapshot: Snapshot) {
        let Ok(mut s) = self.state.lock() else { return };
        let changes = store::changes(&s.stored.config, &config);
        self.install_locked(&mut s, docs, Arc::new(config), vec![(revision, changes)], snapshot, None);
    }

    /// Makes `config` the applied config at the last of `revisions`, each
    /// with its own changes (events), and `snapshot` (built from `config`)
    /// live. `known`: the metadata after the last revision and the config's
    /// hash, when the caller has them (a commit of this node's), rather
    /// than derived again from every document.
    fn install_locked(
        &self,
        s: &mut State,
        docs: Docs,
        config: Arc<SharedConfig>,
        revisions: Vec<(i64, Vec<Change>)>,
        snapshot: Snapshot,
        known: Option<(store::Metas, String)>,
    ) {
        let Some(revision) = revisions.last().map(|r| r.0) else { return };
        let (metas, hash) = known.unwrap_or_else(|| {
            let metas = docs
                .iter()
                .map(|(k, d)| {
                    let old = s.stored.metas.get(k).filter(|m| m.revision == d.mod_rev);
                    (k.clone(), old.cloned().unwrap_or_else(|| meta(d, None)))
                })
                .collect();
            (metas, json::config_hash(&config))
        });
        let stored = Arc::new(Stored { hash, config, revision, metas, applied_time: SystemTime::now() });
        self.live.store(snapshot);
        s.stored = stored.clone();
        s.docs = docs;
        if revision > s.seen {
            s.seen = revision;
        }
        if let Ok(mut h) = self.history.lock() {
            h.push_back(stored.clone());
            while h.len() > HISTORY {
                h.pop_front();
            }
        }
        for (r, changes) in &revisions {
            self.events.record(*r, changes);
        }
        crate::admin::metrics::revision().set(revision);
        self.cache_tx.send_replace(Some(stored));
        self.status_changed.notify_one();
        self.seen_tx.send_modify(|s| *s = (*s).max(revision));
    }

    /// A new listing (after a compaction or a reconnection from the cache):
    /// applies the difference with what is served.
    async fn relist(&self, resp: etcd_client::GetResponse) {
        let header = resp.header().map(|h| h.revision()).unwrap_or(0);
        let listing = Listing::from(&self.settings.prefix, resp.kvs());
        let previous = self.live.load();
        let defaults = self.defaults;
        let raw = listing.raw.clone();
        if let Ok(mut n) = self.nodes.lock() {
            *n = listing.nodes.clone();
        }
        let adopted = tokio::task::spawn_blocking(move || listing.adopt(Some(&previous), defaults)).await;
        let Ok(((snapshot, docs), errors)) = adopted else { return };
        self.reject(&errors);
        let current = self.state.lock().ok().map(|s| s.stored.clone());
        let Some(current) = current else { return };
        if let Ok(mut s) = self.state.lock() {
            s.raw = raw;
        }
        if *snapshot.config == *current.config {
            self.advance(header);
            return;
        }
        let mut revision = docs.values().map(|d| d.mod_rev).max().unwrap_or(header);
        if revision <= current.revision {
            revision = header;
        }
        let config = (*snapshot.config).clone();
        self.install(docs, config, revision, snapshot);
        self.advance(header);
    }

    /// Keeps this node's key alive under its lease, with its status.
    async fn register_loop(self: Arc<Self>) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        loop {
            if let Err(e) = self.register(&mut backoff).await {
                log::debug!("etcd: node registry: {e}");
            }
            tokio::time::sleep(backoff.next()).await;
        }
    }

    fn record(&self) -> NodeRecord {
        let stored = self.current();
        NodeRecord {
            node_id: self.settings.node_id.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            address: self.settings.address.clone(),
            start_time: self.start.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0),
            applied_revision: stored.revision,
            config_hash: stored.hash.clone(),
            last_error: self.last_error.lock().ok().and_then(|e| e.clone()).map(|e| e.0).unwrap_or_default(),
            updated: 0,
        }
    }

    async fn register(&self, backoff: &mut Backoff) -> Result<(), String> {
        let mut client = self.client().await?;
        let rt = self.settings.request_timeout;
        let ttl = self.settings.node_ttl.as_secs().max(2) as i64;
        let lease = with_timeout(rt, "etcd lease grant", client.lease_grant(ttl, None)).await?.id();
        let (mut keeper, mut responses) =
            with_timeout(rt, "etcd lease keep-alive", client.lease_keep_alive(lease)).await?;
        let key = format!("{}/nodes/{}", self.settings.prefix, self.settings.node_id);
        let mut written: Option<NodeRecord> = None;
        let mut tick = tokio::time::interval(Duration::from_secs(ttl as u64) / 3);
        // At most one status write a second: under a stream of writes every
        // node would otherwise add its own etcd write (and fsync) to each.
        const GAP: Duration = Duration::from_secs(1);
        let mut last_put: Option<tokio::time::Instant> = None;
        loop {
            let record = self.record();
            let due = written.as_ref() != Some(&record);
            let wait = last_put.map(|t| GAP.saturating_sub(t.elapsed())).unwrap_or_default();
            if due && wait.is_zero() {
                let mut value = record.clone();
                value.updated = now_secs();
                let bytes = serde_json::to_vec(&value).unwrap_or_default();
                let put = client.put(key.clone(), bytes, Some(PutOptions::new().with_lease(lease)));
                with_timeout(rt, "etcd put node", put).await?;
                written = Some(record);
                last_put = Some(tokio::time::Instant::now());
                backoff.reset();
                continue;
            }
            tokio::select! {
                _ = tick.tick() => {
                    with_timeout(rt, "etcd lease keep-alive", keeper.keep_alive()).await?;
                    match with_timeout(rt, "etcd lease keep-alive", responses.message()).await? {
                        Some(r) if r.ttl() > 0 => {}
                        _ => return Err("the node lease expired".into()),
                    }
                }
                _ = self.status_changed.notified() => {}
                _ = tokio::time::sleep(wait), if due => {}
            }
        }
    }

    /// The registered nodes, read from etcd (the last view when it is
    /// unreachable).
    async fn read_nodes(&self) -> Vec<NodeRecord> {
        let read = async {
            let mut client = self.client().await?;
            let get = client.get(format!("{}/nodes/", self.settings.prefix), Some(GetOptions::new().with_prefix()));
            with_timeout(self.settings.request_timeout, "etcd get nodes", get).await
        };
        match read.await {
            Ok(resp) => Listing::from(&self.settings.prefix, resp.kvs()).nodes.into_values().collect(),
            Err(_) => self.nodes.lock().map(|n| n.values().cloned().collect()).unwrap_or_default(),
        }
    }

    pub fn current(&self) -> Arc<Stored> {
        match self.state.lock() {
            Ok(s) => s.stored.clone(),
            Err(p) => p.into_inner().stored.clone(),
        }
    }

    /// Writes a batch as few transactions as etcd allows: consecutive writes
    /// go in one transaction (one etcd revision, which they share, as the
    /// resources of one `ApplyConfig` do) unless a key would repeat or the
    /// transaction would exceed [`TXN_KEYS`] or [`TXN_BYTES`] (see
    /// [`txn_runs`]). Each transaction is conditioned on the keys it
    /// touches being at the mod revision this node knows (absent for a
    /// creation) and on no config key having changed since the revision
    /// before it: the previous transaction's for all but the first, so the
    /// batch needs no wait for the watch in between. Then this node installs the batch itself, the
    /// snapshot the writer built for the last write going live and the
    /// events of each revision recorded (in the order of the writes, which
    /// is the order of the transaction's operations, so the order the other
    /// nodes' watches report), while its watch holds off (the watch then
    /// skips those revisions); should anything else have happened
    /// meanwhile, it waits for the watch to apply them instead.
    ///
    /// One transaction per batch rather than per write saves, for all but
    /// one write of a batch, the round trip and the watch echo that are most
    /// of what a write costs the node written through (bench/README.md,
    /// "Session 14").
    async fn commit_batch(&self, base: i64, batch: Batch, snapshot: Snapshot) -> Vec<Result<Committed, CommitError>> {
        let n = batch.writes.len();
        if !self.connected.load(Ordering::SeqCst) {
            let why = self.store_error.lock().ok().and_then(|e| e.clone()).unwrap_or_default();
            return vec![Err(CommitError::Io(format!("etcd is unreachable ({why}): nothing was written"))); n];
        }
        let committing = Committing::start(&self.committing);
        let (mut docs, mut raw, mut seen, mut metas, start) = {
            let Ok(s) = self.state.lock() else {
                return vec![Err(CommitError::Io("the store lock is poisoned".into())); n];
            };
            if s.stored.revision != base {
                return vec![Err(CommitError::Stale { current: s.stored.revision }); n];
            }
            (s.docs.clone(), s.raw.clone(), s.seen, s.stored.metas.clone(), s.stored.revision)
        };
        let seen_at_start = seen;
        let client = match self.client().await {
            Ok(c) => c,
            Err(e) => return vec![Err(CommitError::Io(e)); n],
        };
        let prefix = self.settings.prefix.clone();
        let rt = self.settings.request_timeout;
        // Each write's values, encoded once: their size splits the batch too.
        let encoded: Vec<Vec<Option<Vec<u8>>>> = batch
            .writes
            .iter()
            .map(|p| p.changes.iter().map(|(_, _, new)| new.as_ref().map(encode)).collect())
            .collect();
        let runs = txn_runs(batch.writes.iter().zip(&encoded).map(|(p, values)| {
            let bytes = values.iter().flatten().map(Vec::len).sum();
            (p.changes.iter().map(|(k, _, _)| k), bytes)
        }));
        let mut writes = batch.writes.into_iter().zip(encoded);
        let mut results = Vec::with_capacity(n);
        let mut revisions: Vec<(i64, Vec<Change>)> = Vec::new();
        let mut last = start;
        let mut failed: Option<CommitError> = None;
        // Whether the documents as etcd returns them are the ones written
        // (what the watch would build), so that this node can install them.
        let mut exact = true;
        for run in runs {
            let (group, encoded): (Vec<Proposed>, Vec<_>) = writes.by_ref().take(run.len()).unzip();
            if let Some(e) = &failed {
                results.extend(group.iter().map(|_| Err(e.clone())));
                continue;
            }
            if group.iter().all(|p| p.changes.is_empty()) {
                // Only the order changed, which etcd does not keep.
                results
                    .extend(group.iter().map(|_| Ok(Committed { before: last, revision: last, metas: metas.clone() })));
                continue;
            }
            let mut compares = Vec::new();
            let mut ops = Vec::new();
            let mut values = Vec::new();
            for ((key, _, _), value) in group.iter().flat_map(|p| &p.changes).zip(encoded.into_iter().flatten()) {
                let k = etcd_key(&prefix, key);
                compares.push(match raw.get(key) {
                    Some(rev) => Compare::mod_revision(k.clone(), CompareOp::Equal, *rev),
                    None => Compare::version(k.clone(), CompareOp::Equal, 0),
                });
                match &value {
                    Some(bytes) => ops.push(TxnOp::put(k, bytes.clone(), None)),
                    None => ops.push(TxnOp::delete(k, None)),
                }
                values.push(value);
            }
            // Nothing of the config changed since what this node has seen
            // or written (the node keys, between `global_rules` and
            // `plugin_configs`, are left out).
            let newer = seen + 1;
            compares.push(
                Compare::mod_revision(format!("{prefix}/"), CompareOp::Less, newer)
                    .with_range(format!("{prefix}/nodes/")),
            );
            compares.push(
                Compare::mod_revision(format!("{prefix}/nodes0"), CompareOp::Less, newer)
                    .with_range(format!("{prefix}0")),
            );
            let txn = Txn::new().when(compares).and_then(ops);
            let mut c = client.clone();
            let resp = match self.runtime.spawn(async move { tokio::time::timeout(rt, c.txn(txn)).await }).await {
                Ok(Ok(Ok(r))) => Ok(r),
                // What etcd refuses whatever its state: a request over
                // `--max-request-bytes` (or its gRPC limit, 512 KiB above)
                // or `--max-txn-ops`.
                Ok(Ok(Err(etcd_client::Error::GRpcStatus(s))))
                    if matches!(s.code(), tonic::Code::InvalidArgument | tonic::Code::ResourceExhausted) =>
                {
                    Err(CommitError::TooLarge(format!(
                        "etcd refused the transaction ({}): one write may change at most what one etcd request \
                         takes (--max-request-bytes, 1.5 MiB by default; --max-txn-ops, 128 by default: 126 \
                         resources)",
                        s.message()
                    )))
                }
                Ok(Ok(Err(e))) => Err(CommitError::Io(format!("etcd transaction: {e}"))),
                Ok(Err(_)) => Err(CommitError::Io(format!("etcd transaction: no answer within {rt:?}"))),
                Err(e) => Err(CommitError::Io(e.to_string())),
            };
            let resp = match resp {
                Ok(r) if r.succeeded() => r,
                Ok(_) => {
                    let e = CommitError::Stale { current: self.current_revision().max(self.seen()) };
                    results.extend(group.iter().map(|_| Err(e.clone())));
                    failed = Some(e);
                    continue;
                }
                Err(e) => {
                    results.extend(group.iter().map(|_| Err(e.clone())));
                    failed = Some(e);
                    continue;
                }
            };
            let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
            let mut values = values.into_iter();
            let mut changed = Vec::new();
            for p in group {
                for ((key, _, new), bytes) in p.changes.iter().zip(values.by_ref()) {
                    match bytes {
                        Some(bytes) => {
                            raw.insert(key.clone(), revision);
                            match decode(key, &bytes) {
                                Ok(resource) => {
                                    let same =
                                        new.as_ref().and_then(|n| n.value.as_ref()).is_some_and(|n| resource.is(n));
                                    exact &= same;
                                    // The document holds the resource the
                                    // written config holds: they share it.
                                    let resource = match same {
                                        true => batch.last.config.find(&resource).unwrap_or(resource),
                                        false => resource,
                                    };
                                    let create_rev = docs.get(key).map(|d| d.create_rev).unwrap_or(revision);
                                    let doc = Doc { resource, mod_rev: revision, create_rev };
                                    // The writer hashed what etcd now holds.
                                    let m = match p.metas.get(key).filter(|_| same) {
                                        Some(planned) => Meta {
                                            revision,
                                            create_revision: create_rev,
                                            update_time: None,
                                            hash: planned.hash.clone(),
                                        },
                                        None => meta(&doc, None),
                                    };
                                    metas.insert(key.clone(), m);
                                    docs.insert(key.clone(), doc);
                                }
                                Err(_) => exact = false,
                            }
                        }
                        None => {
                            raw.remove(key);
                            docs.remove(key);
                            metas.remove(key);
                        }
                    }
                }
                // Only the order changed: etcd stored nothing for it.
                let before = if p.changes.is_empty() { revision } else { last };
                results.push(Ok(Committed { before, revision, metas: metas.clone() }));
                changed.extend(p.changes);
            }
            seen = revision;
            revisions.push((revision, changed));
            last = revision;
        }
        let Some(written) = revisions.last().map(|r| r.0) else { return results };
        let installed = failed.is_none()
            && exact
            && match self.state.lock() {
                Ok(mut s) if s.seen == seen_at_start && s.stored.revision == base => {
                    s.raw = raw;
                    let known = Some((metas, batch.last.hash.clone()));
                    self.install_locked(&mut s, docs, batch.last.config.clone(), revisions, snapshot, known);
                    true
                }
                _ => false,
            };
        drop(committing);
        if !installed {
            // Stored, not applied: the watch applies it (and compiles it).
            let mut seen = self.seen_tx.subscribe();
            if tokio::time::timeout(rt, seen.wait_for(|s| *s >= written)).await.is_err() {
                log::warn!("etcd: revision {written} written but not yet seen by the watch");
            }
        }
        results
    }
}

/// The most keys one transaction of a batch holds: etcd's default
/// `--max-txn-ops` is 128, and a transaction's compares (one per key, and
/// two for the rest of the config) count against it.
const TXN_KEYS: usize = 126;

/// The most value bytes one transaction of a batch holds: etcd's default
/// `--max-request-bytes` is 1.5 MiB, and a request also carries the keys
/// and the compares.
const TXN_BYTES: usize = 1024 * 1024;

/// Splits a batch's writes (the keys each changes, in order, and the size
/// of the values it puts) into the runs of consecutive writes committed as
/// one transaction each: as long as the run holds no key twice (etcd
/// refuses a key repeated in a transaction, and each write must find the
/// keys it read at the revision it read them), at most [`TXN_KEYS`] keys
/// and at most [`TXN_BYTES`] of values. A write bigger than that is a run
/// of its own, bounded by etcd's limits alone, as it was before batches
/// shared transactions.
fn txn_runs<'a, W, K>(writes: W) -> Vec<std::ops::Range<usize>>
where
    W: IntoIterator<Item = (K, usize)>,
    K: IntoIterator<Item = &'a Key>,
{
    let mut runs = Vec::new();
    let mut start = 0;
    let mut keys: std::collections::HashSet<&Key> = std::collections::HashSet::new();
    let mut bytes = 0;
    let mut n = 0;
    for (i, (write, size)) in writes.into_iter().enumerate() {
        let mine: Vec<&Key> = write.into_iter().collect();
        let fits =
            keys.len() + mine.len() <= TXN_KEYS && bytes + size <= TXN_BYTES && !mine.iter().any(|k| keys.contains(k));
        if i > start && !fits {
            runs.push(start..i);
            start = i;
            keys.clear();
            bytes = 0;
        }
        keys.extend(mine);
        bytes += size;
        n = i + 1;
    }
    if n > start {
        runs.push(start..n);
    }
    runs
}

/// Marks a batch being written; unmarks it when dropped.
struct Committing<'a>(&'a watch::Sender<(bool, u64)>);

impl<'a> Committing<'a> {
    fn start(tx: &'a watch::Sender<(bool, u64)>) -> Committing<'a> {
        tx.send_modify(|c| c.0 = true);
        Committing(tx)
    }
}

impl Drop for Committing<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|c| *c = (false, c.1 + 1));
    }
}

/// A listing of the prefix, parsed.
struct Listing {
    docs: Docs,
    raw: Raw,
    nodes: BTreeMap<String, NodeRecord>,
    errors: Vec<String>,
}

impl Listing {
    fn from(prefix: &str, kvs: &[etcd_client::KeyValue]) -> Listing {
        let mut l = Listing { docs: Docs::new(), raw: Raw::new(), nodes: BTreeMap::new(), errors: Vec::new() };
        for kv in kvs {
            match parse_key(prefix, kv.key()) {
                Path::Resource(key) => {
                    l.raw.insert(key.clone(), kv.mod_revision());
                    match decode(&key, kv.value()) {
                        Ok(resource) => {
                            let doc = Doc { resource, mod_rev: kv.mod_revision(), create_rev: kv.create_revision() };
                            l.docs.insert(key, doc);
                        }
                        Err(e) => l.errors.push(format!("{}: {e}", etcd_key(prefix, &key))),
                    }
                }
                Path::Node(id) => {
                    if let Ok(r) = serde_json::from_slice::<NodeRecord>(kv.value()) {
                        l.nodes.insert(id, r);
                    }
                }
                Path::Other => {}
            }
        }
        l
    }

    /// The largest valid config of the listing: all of it when it
    /// validates, otherwise the documents added one at a time (referenced
    /// kinds first), each kept only if the config stays valid.
    #[allow(clippy::type_complexity)]
    fn adopt(&self, previous: Option<&Snapshot>, defaults: Timeouts) -> ((Snapshot, Docs), Vec<String>) {
        let mut errors = self.errors.clone();
        let all = build_config(self.docs.values().map(|d| &d.resource));
        match check(all, defaults, previous) {
            Ok(s) => return ((s, self.docs.clone()), errors),
            Err(e) => errors.push(format!("the config in etcd is not valid as a whole:\n{e}")),
        }
        let mut kept: Docs = Docs::new();
        for (kind, _) in COLLECTIONS {
            for (key, doc) in self.docs.iter().filter(|(k, _)| k.0 == kind) {
                kept.insert(key.clone(), doc.clone());
                let c = build_config(kept.values().map(|d| &d.resource));
                if let Err(report) = pingora_config::validate_message(&c.to_proto(), "etcd") {
                    kept.remove(key);
                    errors.push(format!("ignored {}: {report}", etcd_key("", key)));
                }
            }
        }
        let config = build_config(kept.values().map(|d| &d.resource));
        match check(config, defaults, previous) {
            Ok(s) => ((s, kept), errors),
            Err(e) => {
                errors.push(format!("no valid config could be built: {e}"));
                let empty = check(SharedConfig::default(), defaults, previous);
                match empty {
                    Ok(s) => ((s, Docs::new()), errors),
                    Err(_) => unreachable!("an empty config is valid"),
                }
            }
        }
    }
}

async fn connect(s: &Settings) -> Result<Client, String> {
    let mut o = ConnectOptions::new()
        .with_connect_timeout(s.dial_timeout)
        .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
        .with_keep_alive_while_idle(true);
    if let Some((user, password)) = &s.user {
        o = o.with_user(user.clone(), password.clone());
    }
    if let Some(tls) = &s.tls {
        o = o.with_tls(tls.clone());
    }
    let endpoints = s.endpoints.clone();
    with_timeout(s.dial_timeout + s.request_timeout, "etcd connect", Client::connect(endpoints, Some(o))).await
}

fn load_cache(s: &Settings, defaults: Timeouts) -> Result<(Snapshot, Docs, i64, i64), String> {
    let path = s.cache_path();
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let cache: Cache = serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let config: v1::Config = json::from_json(cache.config)?;
    let config = SharedConfig::from(config);
    let docs = config
        .resources()
        .map(|(kind, id, r)| {
            let (m, c) = cache.revisions.get(&format!("{}/{id}", kind.as_str_name())).copied().unwrap_or((0, 0));
            ((kind, id.to_owned()), Doc { resource: r, mod_rev: m, create_rev: c })
        })
        .collect();
    let snapshot = check(config, defaults, None)?;
    Ok((snapshot, docs, cache.revision, cache.seen))
}

/// How long after a change the cache is written, and how long at least
/// between two cache writes.
const CACHE_PAUSE: Duration = Duration::from_millis(200);
const CACHE_INTERVAL: Duration = Duration::from_secs(1);

/// Writes the latest applied config to the cache, one write at a time.
async fn write_cache(path: PathBuf, mut rx: watch::Receiver<Option<Arc<Stored>>>, store: Arc<EtcdConfigStore>) {
    let mut warned = false;
    let mut last_write;
    loop {
        let stored = rx.borrow_and_update().clone();
        last_write = tokio::time::Instant::now();
        if let Some(stored) = stored {
            let cache = CacheOut {
                revision: stored.revision,
                seen: store.seen(),
                config: &stored.config,
                revisions: stored
                    .metas
                    .iter()
                    .map(|((k, id), m)| (format!("{}/{id}", k.as_str_name()), (m.revision, m.create_revision)))
                    .collect(),
            };
            let bytes = serde_json::to_vec(&cache).unwrap_or_default();
            let p = path.clone();
            let written = tokio::task::spawn_blocking(move || {
                if let Some(dir) = p.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                store::write_atomic(&p, &bytes)
            })
            .await;
            match written {
                Ok(Ok(())) => warned = false,
                Ok(Err(e)) if !warned => {
                    warned = true;
                    log::warn!("etcd: cannot write the cache {}: {e}", path.display());
                }
                _ => {}
            }
        }
        if rx.changed().await.is_err() {
            return;
        }
        // A change is cached 200 ms after it, or a second after the last
        // cache write if that is later: under a stream of changes, one
        // write (with its fsyncs) a second, of the latest config. (At 200
        // writes/s, five a second were 5% of the control plane's CPU.)
        let now = tokio::time::Instant::now();
        tokio::time::sleep_until((now + CACHE_PAUSE).max(last_write + CACHE_INTERVAL)).await;
    }
}

/// Exponential backoff with jitter.
struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff { initial, max, next: initial }
    }

    fn reset(&mut self) {
        self.next = self.initial;
    }

    fn next(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d.mul_f64(0.75 + fastrand::f64() / 2.0)
    }
}

#[tonic::async_trait]
impl ConfigStore for Arc<EtcdConfigStore> {
    fn kind(&self) -> v1::store_status::Kind {
        v1::store_status::Kind::Etcd
    }

    fn endpoint(&self) -> String {
        format!("{} (prefix {})", self.settings.endpoints.join(","), self.settings.prefix)
    }

    fn connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    fn current(&self) -> Arc<Stored> {
        EtcdConfigStore::current(self)
    }

    fn at(&self, revision: i64) -> Option<Arc<Stored>> {
        self.history.lock().ok()?.iter().find(|s| s.revision == revision).cloned()
    }

    async fn commit(&self, base: i64, batch: Batch, snapshot: Snapshot) -> Vec<Result<Committed, CommitError>> {
        self.commit_batch(base, batch, snapshot).await
    }

    fn ordered_by_id(&self) -> bool {
        true
    }

    fn events(&self) -> &EventLog {
        &self.events
    }

    fn last_error(&self) -> Option<(String, SystemTime)> {
        self.last_error.lock().ok()?.clone()
    }

    fn store_error(&self) -> Option<String> {
        self.store_error.lock().ok()?.clone()
    }

    async fn nodes(&self) -> Option<Vec<v1::ClusterNode>> {
        let this = self.clone();
        let nodes = self.runtime.spawn(async move { this.read_nodes().await }).await.ok()?;
        Some(nodes.iter().map(NodeRecord::to_proto).collect())
    }
}

/// Runs the active health checks of the snapshots the etcd store installs
/// (the file store's task does it for the file store).
pub struct HealthCheckService {
    pub live: Arc<Live>,
}

#[async_trait::async_trait]
impl BackgroundService for HealthCheckService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        crate::server::control_plane_thread();
        let mut checks = crate::store::HealthChecks::default();
        let mut last = 0usize;
        loop {
            let snapshot = self.live.load();
            if Arc::as_ptr(&snapshot) as usize != last {
                last = Arc::as_ptr(&snapshot) as usize;
                checks.sync(&snapshot);
            }
            drop(snapshot);
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
        checks.stop_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_kinds_and_documents_must_carry_their_key_id() {
        let p = "/pc";
        assert!(matches!(parse_key(p, b"/pc/routes/a"), Path::Resource((Kind::Route, ref id)) if id == "a"));
        assert!(matches!(parse_key(p, b"/pc/nodes/n1"), Path::Node(ref id) if id == "n1"));
        assert!(matches!(parse_key(p, b"/pc/whatever/a"), Path::Other));
        assert!(matches!(parse_key(p, b"/pcx/routes/a"), Path::Other));
        let key = (Kind::Upstream, "u".to_owned());
        assert!(decode(&key, br#"{"id":"u","nodes":[{"host":"127.0.0.1","port":1}]}"#).is_ok());
        assert!(decode(&key, br#"{"id":"v"}"#).is_err());
        assert!(decode(&key, b"not json").is_err());
        let r = decode(&key, br#"{"id":"u","nodes":[{"host":"127.0.0.1","port":1}]}"#)
            .unwrap_or_else(|e| panic!("{e}"))
            .to_resource();
        assert_eq!(decode(&key, &encode(&r)).map(|d| d.to_resource()).ok(), Some(r));
    }

    #[test]
    #[allow(clippy::single_range_in_vec_init)] // one run of writes
    fn a_batch_is_one_transaction_until_a_key_repeats_or_it_grows_too_big() {
        let key = |id: &str| (Kind::Route, id.to_owned());
        let (a, b, c) = (key("a"), key("b"), key("c"));
        let runs = |writes: &[Vec<&Key>]| txn_runs(writes.iter().map(|w| (w.iter().copied(), 100)));
        assert!(runs(&[]).is_empty());
        assert_eq!(runs(&[vec![&a], vec![&b], vec![], vec![&c]]), [0..4]);
        // A delete then a creation of `a`: two transactions, in order.
        assert_eq!(runs(&[vec![&a], vec![&b], vec![&a, &c]]), [0..2, 2..3]);
        // The same kind but another id is another key.
        assert_eq!(runs(&[vec![&a], vec![&key("a2")]]), [0..2]);
        let many: Vec<Key> = (0..TXN_KEYS).map(|i| key(&format!("k{i}"))).collect();
        let all: Vec<&Key> = many.iter().collect();
        assert_eq!(runs(&[vec![&a], all.clone(), vec![&b]]), [0..1, 1..2, 2..3]);
        assert_eq!(runs(&[all[..TXN_KEYS - 1].to_vec(), vec![&a], vec![&b]]), [0..2, 2..3]);
        // Bigger than a transaction should be: alone, for etcd to judge.
        let more: Vec<Key> = (0..TXN_KEYS + 5).map(|i| key(&format!("m{i}"))).collect();
        assert_eq!(runs(&[vec![&a], more.iter().collect(), vec![&b]]), [0..1, 1..2, 2..3]);
        // Values past etcd's request size: split, a big one alone.
        let sized = |sizes: &[usize]| txn_runs(sizes.iter().zip(&many).map(|(n, k)| ([k], *n)));
        assert_eq!(sized(&[TXN_BYTES / 2, TXN_BYTES / 2, 1]), [0..2, 2..3]);
        assert_eq!(sized(&[1, TXN_BYTES + 1, 1]), [0..1, 1..2, 2..3]);
    }

    #[test]
    fn canonical_is_the_order_every_node_builds_from_the_keys() {
        let text = "upstreams:\n  - { id: b, nodes: [{ host: 127.0.0.1, port: 1 }] }\n  - { id: a, nodes: [{ host: 127.0.0.1, port: 1 }] }\nroutes:\n  - { id: r2, uris: [/x], upstream_id: a }\n  - { id: r10, uris: [/y], upstream_id: b }\n  - { id: r1, uris: [/z], upstream_id: a }\n";
        let config = match pingora_config::load_str::<v1::Config>(text, "test") {
            Ok((c, _)) => c,
            Err(e) => panic!("{e}"),
        };
        let config = SharedConfig::from(config);
        let docs: std::collections::BTreeMap<Key, SharedResource> =
            config.resources().map(|(kind, id, r)| ((kind, id.to_owned()), r)).collect();
        let built = build_config(docs.values());
        let ids: Vec<&str> = built.routes.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["r1", "r10", "r2"]);
        assert_eq!(store::sort_by_id(config), built);
    }
}
