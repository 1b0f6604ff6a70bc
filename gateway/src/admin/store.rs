//! The store behind the management API: the [`ConfigStore`] seam (the file
//! store implements it here; the etcd store will implement it too), the
//! revisions and per-resource metadata, and the bounded event history that
//! `Watch` replays from.
//!
//! # The file store
//!
//! - A write renders the whole config as YAML and replaces the file
//!   atomically: a temporary file in the same directory, fsync, rename over
//!   the config, fsync of the directory. A crash leaves the old file or the
//!   new one, never a mix. The file it replaces is kept (hard link) as
//!   `<path>.versions/<revision>.yaml`, the newest `keep_versions` of them.
//! - Group commit: the writes queued while a file write runs are committed
//!   together by the next one ([`crate::admin::write`]): each still gets
//!   its own revision, metadata and events, and returns once the file
//!   holding it is synced; the file is written once for the batch, so the
//!   intermediate revisions of a batch have no file of their own in
//!   `<path>.versions/`.
//! - Revisions survive restarts through a sidecar, `<path>.state.json`
//!   (written atomically after the config): the store revision, the hash
//!   of the file text it describes, and per resource its revision, creation
//!   revision, update time and content hash. At start, a sidecar whose hash
//!   matches the file is taken as is; otherwise (the file was edited while
//!   the gateway was down, or it crashed between the two renames) the
//!   revision is bumped once and only resources whose content hash differs
//!   get the new revision. No sidecar: revision 1 for everything. Starting
//!   writes nothing, so the same files give the same revisions every time.
//! - The file watcher compares the text it reads with the text last applied,
//!   so our own writes are not applied twice; an edit by hand is a new
//!   revision like any write (without an update time).

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use pingora_config::v1;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::Live;
use crate::admin::json;
use crate::shared::SharedConfig;
use crate::snapshot::Snapshot;

/// A resource's place in the config: its kind and id.
pub type Key = (v1::resource::Kind, String);

/// The metadata of every resource, by key: a persistent map, so that the
/// next revision's is the previous one plus the changes (O(log n) per
/// change), not a copy of it (~100 us per write at 200 routes).
/// The config's collections (their field names in `Config`, the etcd key
/// segments) in the order their references point: what a config built one
/// document at a time adds first.
pub(crate) const COLLECTIONS: [(v1::resource::Kind, &str); 7] = {
    use v1::resource::Kind;
    [
        (Kind::Upstream, "upstreams"),
        (Kind::Service, "services"),
        (Kind::PluginConfig, "plugin_configs"),
        (Kind::GlobalRule, "global_rules"),
        (Kind::Consumer, "consumers"),
        (Kind::Ssl, "ssls"),
        (Kind::Route, "routes"),
    ]
};

/// The collection of a kind of resource.
pub(crate) fn collection(kind: v1::resource::Kind) -> &'static str {
    COLLECTIONS.iter().find(|(k, _)| *k == kind).map(|(_, c)| *c).unwrap_or("unknown")
}

pub type Metas = imbl::OrdMap<Key, Meta>;

/// What the store keeps about one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub revision: i64,
    pub create_revision: i64,
    /// Seconds and nanoseconds since the epoch; `None` for a change made
    /// outside the management API.
    pub update_time: Option<(i64, i32)>,
    /// Hash of the resource's encoding.
    pub hash: String,
}

impl Meta {
    pub fn to_proto(&self) -> v1::ResourceMeta {
        v1::ResourceMeta {
            revision: self.revision,
            create_revision: self.create_revision,
            update_time: self.update_time.map(|(seconds, nanos)| pbjson_types::Timestamp { seconds, nanos }),
        }
    }
}

/// The config at one store revision.
pub struct Stored {
    pub config: Arc<SharedConfig>,
    pub revision: i64,
    pub metas: Metas,
    /// [`json::config_hash`] of `config`.
    pub hash: String,
    /// When this revision was applied by this node.
    pub applied_time: SystemTime,
}

/// Why a commit did not happen.
#[derive(Debug, Clone)]
pub enum CommitError {
    /// The store moved past the base revision.
    Stale { current: i64 },
    /// Persisting failed; nothing changed.
    Io(String),
    /// The store refused the write as bigger than it takes at once
    /// (etcd's request size or operation count); nothing changed, and
    /// trying again would not help.
    TooLarge(String),
}

/// The watcher asked for history no longer held: oldest replayable and
/// current revision.
#[derive(Debug, Clone, Copy)]
pub struct TooOld {
    pub oldest: i64,
    pub current: i64,
}

impl Stored {
    /// What a change sees of this revision.
    pub fn head(&self) -> Head<'_> {
        Head { config: &self.config, metas: &self.metas, revision: self.revision }
    }
}

/// The config as a write's change sees it: as the writes before it in its
/// batch left it.
#[derive(Clone, Copy)]
pub struct Head<'a> {
    pub config: &'a SharedConfig,
    pub metas: &'a Metas,
    pub revision: i64,
}

/// One write of a batch, validated and ready to store: its revision
/// (provisional: the one before plus one; the file store's own, while the
/// etcd store's are etcd's), the metadata after it, and the resources it
/// changes.
pub struct Proposed {
    pub revision: i64,
    pub metas: Metas,
    pub changes: Vec<Change>,
}

/// The writes of a batch and the config after the last one, at its
/// provisional revision (the config of the writes before it is not kept:
/// only the last is ever served).
pub struct Batch {
    pub writes: Vec<Proposed>,
    pub last: Arc<Stored>,
}

/// One write as stored: its revision and the metadata after it.
#[derive(Clone)]
pub struct Committed {
    /// The store revision before it: the previous write's, or for writes
    /// etcd committed in one transaction, the one before that transaction;
    /// `revision` when the store had nothing to store for it.
    pub before: i64,
    pub revision: i64,
    pub metas: Metas,
}

/// What [`ConfigStore::commit_here`] did with a batch.
pub enum CommitHere {
    /// Committed: one result per write.
    Done(Vec<Result<Committed, CommitError>>),
    /// Left for [`ConfigStore::commit`].
    Later(Batch, Box<Snapshot>),
}

/// Where the config lives, seen from the management API. Writes are
/// compare-and-swap on the store revision; the caller validates the whole
/// config after each write and builds the snapshot first (one validation
/// path), and serializes its commits.
#[tonic::async_trait]
pub trait ConfigStore: Send + Sync + 'static {
    fn kind(&self) -> v1::store_status::Kind;
    /// Where the store is (a path, etcd endpoints).
    fn endpoint(&self) -> String;
    /// Whether the store is reachable now.
    fn connected(&self) -> bool;
    /// The config at the current revision.
    fn current(&self) -> Arc<Stored>;
    /// The config at an earlier revision, while it is still held (paging).
    fn at(&self, revision: i64) -> Option<Arc<Stored>>;
    /// Stores the writes of a batch, in order, one revision each, if the
    /// store is still at `base`, then makes `snapshot` (built from the last
    /// one's config) live and records the events of every revision. One
    /// result per write, its revision and metadata as stored (the store's
    /// current config and its history hold the last one's config only): a
    /// write fails only with
    /// those after it (the file store persists the batch at once, so all
    /// fail or none; the etcd store writes them in as few transactions as
    /// etcd allows, see `EtcdConfigStore::commit_batch`).
    async fn commit(&self, base: i64, batch: Batch, snapshot: Snapshot) -> Vec<Result<Committed, CommitError>>;
    /// Commits the batch on the calling thread when the store can without
    /// waiting on the network (the file store): the writer then plans and
    /// commits a batch on one blocking thread, one hand-off between threads
    /// fewer per batch. Otherwise gives the batch back for [`Self::commit`].
    fn commit_here(&self, _base: i64, batch: Batch, snapshot: Snapshot) -> CommitHere {
        CommitHere::Later(batch, Box::new(snapshot))
    }
    /// Whether the store keeps each collection in id order (etcd), rather
    /// than in the order written, so that the snapshot built by the writer
    /// is the one every node builds: see [`sort_by_id`].
    fn ordered_by_id(&self) -> bool {
        false
    }
    /// The event history and live feed.
    fn events(&self) -> &EventLog;
    /// The last change that could not be applied, and when.
    fn last_error(&self) -> Option<(String, SystemTime)>;
    /// Why the store is unreachable, while it is.
    fn store_error(&self) -> Option<String> {
        None
    }
    /// The nodes sharing the store, when the store keeps a registry.
    async fn nodes(&self) -> Option<Vec<v1::ClusterNode>> {
        None
    }
}

/// Every resource of a config by key, as the `Resource` oneof.
pub fn resources(config: &SharedConfig) -> BTreeMap<Key, v1::Resource> {
    config.resources().map(|(kind, id, r)| ((kind, id.to_owned()), r.to_resource())).collect()
}

/// `config` with each collection in id order: what a store that keeps
/// resources by key (etcd) builds from them, for a config without duplicate
/// ids (which validation refuses anyway).
pub fn sort_by_id(mut c: SharedConfig) -> SharedConfig {
    c.routes.sort_by(|a, b| a.id.cmp(&b.id));
    c.services.sort_by(|a, b| a.id.cmp(&b.id));
    c.upstreams.sort_by(|a, b| a.id.cmp(&b.id));
    c.consumers.sort_by(|a, b| a.username.cmp(&b.username));
    c.ssls.sort_by(|a, b| a.id.cmp(&b.id));
    c.global_rules.sort_by(|a, b| a.id.cmp(&b.id));
    c.plugin_configs.sort_by(|a, b| a.id.cmp(&b.id));
    c
}

fn resource_hash(r: &v1::Resource) -> String {
    json::sha256(&prost::Message::encode_to_vec(r))
}

/// One change between two configs: key, old and new value.
pub type Change = (Key, Option<v1::Resource>, Option<v1::Resource>);

/// The resources that differ between two configs, by key. Compares in
/// place (a resource the two share is not even compared) and clones only
/// what changed: it runs for every write.
pub fn changes(old: &SharedConfig, new: &SharedConfig) -> Vec<Change> {
    use v1::resource::{Kind, Value};
    let mut out = Vec::new();
    diff_collection(&old.routes, &new.routes, Kind::Route, |r| &r.id, Value::Route, &mut out);
    diff_collection(&old.services, &new.services, Kind::Service, |r| &r.id, Value::Service, &mut out);
    diff_collection(&old.upstreams, &new.upstreams, Kind::Upstream, |r| &r.id, Value::Upstream, &mut out);
    diff_collection(&old.consumers, &new.consumers, Kind::Consumer, |r| &r.username, Value::Consumer, &mut out);
    diff_collection(&old.ssls, &new.ssls, Kind::Ssl, |r| &r.id, Value::Ssl, &mut out);
    diff_collection(&old.global_rules, &new.global_rules, Kind::GlobalRule, |r| &r.id, Value::GlobalRule, &mut out);
    diff_collection(
        &old.plugin_configs,
        &new.plugin_configs,
        Kind::PluginConfig,
        |r| &r.id,
        Value::PluginConfig,
        &mut out,
    );
    out.sort_by(|x, y| x.0.cmp(&y.0));
    out
}

fn diff_collection<T: PartialEq + Clone>(
    old: &[Arc<T>],
    new: &[Arc<T>],
    kind: v1::resource::Kind,
    id: fn(&T) -> &String,
    wrap: fn(T) -> v1::resource::Value,
    out: &mut Vec<Change>,
) {
    let resource = |t: &T| v1::Resource { value: Some(wrap(t.clone())) };
    let same = |a: &Arc<T>, b: &Arc<T>| Arc::ptr_eq(a, b) || a == b;
    // The usual write: same ids in the same order, one or a few changed.
    if old.len() == new.len() && old.iter().zip(new).all(|(a, b)| Arc::ptr_eq(a, b) || id(a) == id(b)) {
        for (a, b) in old.iter().zip(new) {
            if !same(a, b) {
                out.push(((kind, id(b).clone()), Some(resource(a)), Some(resource(b))));
            }
        }
        return;
    }
    let before: std::collections::HashMap<&String, &Arc<T>> = old.iter().map(|t| (id(t), t)).collect();
    let after: std::collections::HashSet<&String> = new.iter().map(|t| id(t)).collect();
    for b in new {
        match before.get(id(b)) {
            Some(a) if same(a, b) => {}
            a => out.push(((kind, id(b).clone()), a.map(|a| resource(a)), Some(resource(b)))),
        }
    }
    for a in old.iter().filter(|a| !after.contains(id(a))) {
        out.push(((kind, id(a).clone()), Some(resource(a)), None));
    }
}

/// The metadata after `changes` at `revision`.
pub fn next_metas(previous: &Metas, changes: &[Change], revision: i64, time: Option<(i64, i32)>) -> Metas {
    let mut metas = previous.clone();
    for (key, _, new_value) in changes {
        match new_value {
            None => {
                metas.remove(key);
            }
            Some(v) => {
                let create_revision = previous.get(key).map(|m| m.create_revision).unwrap_or(revision);
                metas
                    .insert(key.clone(), Meta { revision, create_revision, update_time: time, hash: resource_hash(v) });
            }
        }
    }
    metas
}

pub(crate) fn now() -> (i64, i32) {
    let d = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    (d.as_secs() as i64, d.subsec_nanos() as i32)
}

/// Events kept for `Watch` replays, and the live feed.
pub struct EventLog {
    inner: Mutex<LogInner>,
    tx: broadcast::Sender<Arc<v1::Event>>,
    node_id: String,
}

struct LogInner {
    events: VecDeque<Arc<v1::Event>>,
    /// The oldest revision whose changes are all still held.
    oldest: i64,
    current: i64,
}

/// Events to replay, then the live feed.
pub type Subscription = (Vec<Arc<v1::Event>>, broadcast::Receiver<Arc<v1::Event>>);

/// Resource events kept for replay.
pub const RETENTION: usize = 10_000;

impl EventLog {
    pub fn new(node_id: String, revision: i64) -> EventLog {
        let (tx, _) = broadcast::channel(1024);
        EventLog {
            inner: Mutex::new(LogInner { events: VecDeque::new(), oldest: revision + 1, current: revision }),
            tx,
            node_id,
        }
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// An event of this node, now.
    pub fn event(&self, id: String, revision: i64, payload: v1::event::Payload) -> v1::Event {
        let (seconds, nanos) = now();
        v1::Event {
            id,
            revision,
            time: Some(pbjson_types::Timestamp { seconds, nanos }),
            node_id: self.node_id.clone(),
            payload: Some(payload),
        }
    }

    /// Records the resource events of one revision and sends them live.
    pub(crate) fn record(&self, revision: i64, changes: &[Change]) {
        let Ok(mut inner) = self.inner.lock() else { return };
        for ((kind, id), old_value, new_value) in changes {
            let ty = if new_value.is_some() { v1::resource_event::Type::Put } else { v1::resource_event::Type::Delete };
            let event = self.event(
                format!("{revision}/{}/{id}", kind.as_str_name().to_ascii_lowercase()),
                revision,
                v1::event::Payload::Resource(v1::ResourceEvent {
                    kind: *kind as i32,
                    id: id.clone(),
                    r#type: ty as i32,
                    old_value: old_value.as_ref().map(json::redact),
                    new_value: new_value.as_ref().map(json::redact),
                }),
            );
            let event = Arc::new(event);
            inner.events.push_back(event.clone());
            let _ = self.tx.send(event);
        }
        inner.current = revision;
        // Drop whole revisions, oldest first.
        while inner.events.len() > RETENTION {
            let Some(first) = inner.events.pop_front() else { break };
            while inner.events.front().is_some_and(|e| e.revision == first.revision) {
                inner.events.pop_front();
            }
            inner.oldest = first.revision + 1;
        }
    }

    /// How many watchers follow the live feed.
    pub fn watchers(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Sends an event that is not replayed (health, node).
    pub fn send_live(&self, event: v1::Event) {
        let _ = self.tx.send(Arc::new(event));
    }

    /// The held events from `start` on (none for 0), and the live feed from
    /// right after them.
    pub fn subscribe(&self, start: i64) -> Result<Subscription, TooOld> {
        let inner = self.inner.lock().map_err(|_| TooOld { oldest: 0, current: 0 })?;
        if start > 0 && start < inner.oldest {
            return Err(TooOld { oldest: inner.oldest, current: inner.current });
        }
        let replay =
            if start > 0 { inner.events.iter().filter(|e| e.revision >= start).cloned().collect() } else { Vec::new() };
        Ok((replay, self.tx.subscribe()))
    }

    pub fn bounds(&self) -> TooOld {
        self.inner
            .lock()
            .map(|i| TooOld { oldest: i.oldest, current: i.current })
            .unwrap_or(TooOld { oldest: 0, current: 0 })
    }
}

/// The sidecar that keeps revisions across restarts. Read into a map of
/// owned metadata; written from the metadata map as it is (`ResourcesOut`),
/// with no copy of it: that runs on every commit.
#[derive(Serialize, Deserialize, Default)]
struct Sidecar<R = BTreeMap<String, SidecarMeta>> {
    revision: i64,
    /// `sha256:` of the file text this state describes.
    file_hash: String,
    /// `<kind>/<id>` -> meta.
    resources: R,
}

#[derive(Serialize, Deserialize, Clone)]
struct SidecarMeta<H = String> {
    revision: i64,
    create_revision: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    update_time: Option<(i64, i32)>,
    hash: H,
}

fn sidecar_key((kind, id): &Key) -> String {
    format!("{}/{id}", kind.as_str_name())
}

/// The `resources` of a sidecar being written: the metadata map, borrowed.
struct ResourcesOut<'a>(&'a Metas);

impl Serialize for ResourcesOut<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        /// [`sidecar_key`], written straight into the output.
        struct KeyOut<'a>(&'a Key);
        impl std::fmt::Display for KeyOut<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}/{}", self.0.0.as_str_name(), self.0.1)
            }
        }
        impl Serialize for KeyOut<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
        serializer.collect_map(self.0.iter().map(|(k, m)| {
            let meta = SidecarMeta {
                revision: m.revision,
                create_revision: m.create_revision,
                update_time: m.update_time,
                hash: m.hash.as_str(),
            };
            (KeyOut(k), meta)
        }))
    }
}

/// Held earlier revisions, for listings read across pages.
const HISTORY: usize = 32;

/// The file store, as seen by the management API and the file watcher.
pub struct FileConfigStore {
    path: PathBuf,
    keep_versions: u32,
    live: Arc<Live>,
    state: Mutex<FileState>,
    history: Mutex<VecDeque<Arc<Stored>>>,
    events: EventLog,
    last_error: Mutex<Option<(String, SystemTime)>>,
}

struct FileState {
    stored: Arc<Stored>,
    /// The text of the file last applied or written.
    text: String,
    /// The file as the store last wrote it, to tell its own writes from
    /// edits without reading the file back.
    written: Option<FileId>,
    /// Renders the file a resource at a time.
    yaml: json::YamlRenderer,
    /// The revisions kept in `<path>.versions/`, oldest first: read from
    /// the directory at the first write, then kept up to date here.
    versions: Option<VecDeque<i64>>,
}

/// What identifies a version of a file without reading it: the inode each
/// write renames into place, and its size and modification time (a write
/// into the same inode changes those).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
}

impl FileId {
    pub fn of(path: &Path) -> Option<FileId> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(FileId { dev: m.dev(), ino: m.ino(), len: m.len(), mtime: (m.mtime(), m.mtime_nsec()) })
    }
}

impl FileConfigStore {
    /// The store over the file `path` whose `text` was loaded as `config`.
    pub fn open(
        path: PathBuf,
        keep_versions: u32,
        live: Arc<Live>,
        text: String,
        config: Arc<SharedConfig>,
        node_id: String,
    ) -> FileConfigStore {
        remove_stale_temp_files(&path);
        let sidecar: Option<Sidecar> =
            std::fs::read(sidecar_path(&path)).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let current = resources(&config);
        let file_hash = json::sha256(text.as_bytes());
        let (revision, metas) = match sidecar {
            Some(s) => {
                let revision = if s.file_hash == file_hash { s.revision } else { s.revision + 1 };
                let metas = current
                    .iter()
                    .map(|(key, value)| {
                        let hash = resource_hash(value);
                        let meta = match s.resources.get(&sidecar_key(key)) {
                            Some(m) if m.hash == hash => Meta {
                                revision: m.revision,
                                create_revision: m.create_revision,
                                update_time: m.update_time,
                                hash,
                            },
                            Some(m) => Meta { revision, create_revision: m.create_revision, update_time: None, hash },
                            None => Meta { revision, create_revision: revision, update_time: None, hash },
                        };
                        (key.clone(), meta)
                    })
                    .collect();
                (revision, metas)
            }
            None => {
                let metas = current
                    .iter()
                    .map(|(key, value)| {
                        let meta =
                            Meta { revision: 1, create_revision: 1, update_time: None, hash: resource_hash(value) };
                        (key.clone(), meta)
                    })
                    .collect();
                (1, metas)
            }
        };
        let hash = json::config_hash(&config);
        let stored = Arc::new(Stored { config, revision, metas, hash, applied_time: SystemTime::now() });
        crate::admin::metrics::revision().set(revision);
        // Nothing is written until something changes: the same files give
        // the same revisions at every start.
        FileConfigStore {
            path,
            keep_versions,
            live,
            state: Mutex::new(FileState {
                stored: stored.clone(),
                text: text.clone(),
                written: None,
                yaml: json::YamlRenderer::default(),
                versions: None,
            }),
            history: Mutex::new(VecDeque::from([stored.clone()])),
            events: EventLog::new(node_id, revision),
            last_error: Mutex::new(None),
        }
    }

    /// The text last applied or written (the watcher skips a file equal to it).
    /// Whether the file is still the one the store last wrote (then the
    /// watcher's event was for that write, and there is nothing to read).
    pub fn is_own_write(&self, path: &Path) -> bool {
        let written = self.state.lock().ok().and_then(|s| s.written);
        written.is_some() && written == FileId::of(path)
    }

    pub fn applied_text(&self) -> String {
        self.state.lock().map(|s| s.text.clone()).unwrap_or_default()
    }

    pub fn revision(&self) -> i64 {
        self.current().revision
    }

    /// A change of the file by something else than the gateway, read at
    /// `base` and compiled: applied as the next revision unless the store
    /// wrote since (then the file holds our write, which replaced it).
    pub fn external_change(&self, base: i64, text: String, snapshot: Snapshot) -> bool {
        let Ok(mut state) = self.state.lock() else { return false };
        if state.stored.revision != base || state.text == text {
            return false;
        }
        let config = snapshot.config.clone();
        let revision = base + 1;
        let changes = changes(&state.stored.config, &config);
        let metas = next_metas(&state.stored.metas, &changes, revision, None);
        let stored = Arc::new(Stored {
            hash: json::config_hash(&config),
            config,
            revision,
            metas,
            applied_time: SystemTime::now(),
        });
        if let Err(e) = self.write_sidecar(&stored, &text) {
            log::warn!("file store: cannot write {}: {e}", sidecar_path(&self.path).display());
        }
        self.live.store(snapshot);
        state.stored = stored.clone();
        state.text = text;
        self.remember(stored);
        self.events.record(revision, &changes);
        crate::admin::metrics::revision().set(revision);
        true
    }

    /// Records a change that was rejected (for GetStatus).
    pub fn set_error(&self, error: String) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some((error, SystemTime::now()));
        }
    }

    fn remember(&self, stored: Arc<Stored>) {
        if let Ok(mut h) = self.history.lock() {
            h.push_back(stored);
            while h.len() > HISTORY {
                h.pop_front();
            }
        }
    }

    fn sidecar_bytes(stored: &Stored, text: &str) -> std::io::Result<Vec<u8>> {
        let sidecar = Sidecar {
            revision: stored.revision,
            file_hash: json::sha256(text.as_bytes()),
            resources: ResourcesOut(&stored.metas),
        };
        serde_json::to_vec_pretty(&sidecar).map_err(std::io::Error::other)
    }

    fn write_sidecar(&self, stored: &Stored, text: &str) -> std::io::Result<()> {
        write_atomic_in(&temp_dir(&self.path), &sidecar_path(&self.path), &Self::sidecar_bytes(stored, text)?)
    }

    /// Writes the file (keeping the one it replaces) and the sidecar: both
    /// written to temporary files and synced, renamed in that order, then
    /// one sync of the directory (three syncs, not four). A crash between
    /// the renames leaves a sidecar that does not match the file, which the
    /// next start handles (it derives the revisions).
    fn persist(
        &self,
        old_revision: i64,
        stored: &Stored,
        text: &str,
        versions: &mut Option<VecDeque<i64>>,
    ) -> std::io::Result<Option<FileId>> {
        if self.keep_versions > 0 && self.path.exists() {
            let dir = versions_dir(&self.path);
            std::fs::create_dir_all(&dir)?;
            let kept = dir.join(format!("{old_revision}.yaml"));
            let _ = std::fs::remove_file(&kept);
            if std::fs::hard_link(&self.path, &kept).is_err() {
                std::fs::copy(&self.path, &kept)?;
            }
            let kept = versions.get_or_insert_with(|| kept_versions(&dir));
            kept.retain(|r| *r != old_revision);
            kept.push_back(old_revision);
            while kept.len() > self.keep_versions as usize {
                if let Some(r) = kept.pop_front() {
                    let _ = std::fs::remove_file(dir.join(format!("{r}.yaml")));
                }
            }
        }
        let tmp_dir = temp_dir(&self.path);
        let config_tmp = write_temp(&tmp_dir, &self.path, text.as_bytes())?;
        // The rename keeps the inode, size and modification time.
        let written = FileId::of(&config_tmp);
        // The config is what matters: a sidecar that cannot be written must
        // not turn the write into an error (the next start derives the
        // revisions).
        let sidecar = sidecar_path(&self.path);
        let sidecar_tmp = match Self::sidecar_bytes(stored, text).and_then(|b| write_temp(&tmp_dir, &sidecar, &b)) {
            Ok(t) => Some(t),
            Err(e) => {
                log::warn!("file store: cannot write {}: {e}", sidecar.display());
                None
            }
        };
        if let Err(e) = std::fs::rename(&config_tmp, &self.path) {
            let _ = std::fs::remove_file(&config_tmp);
            if let Some(t) = sidecar_tmp {
                let _ = std::fs::remove_file(t);
            }
            return Err(e);
        }
        if let Some(t) = sidecar_tmp
            && let Err(e) = std::fs::rename(&t, &sidecar)
        {
            let _ = std::fs::remove_file(t);
            log::warn!("file store: cannot write {}: {e}", sidecar.display());
        }
        sync_dir(&self.path)?;
        Ok(written)
    }
}

#[tonic::async_trait]
impl ConfigStore for Arc<FileConfigStore> {
    fn kind(&self) -> v1::store_status::Kind {
        v1::store_status::Kind::File
    }

    fn endpoint(&self) -> String {
        self.path.display().to_string()
    }

    fn connected(&self) -> bool {
        true
    }

    fn current(&self) -> Arc<Stored> {
        FileConfigStore::current(self)
    }

    fn at(&self, revision: i64) -> Option<Arc<Stored>> {
        self.history.lock().ok()?.iter().find(|s| s.revision == revision).cloned()
    }

    async fn commit(&self, base: i64, batch: Batch, snapshot: Snapshot) -> Vec<Result<Committed, CommitError>> {
        let this = self.clone();
        let n = batch.writes.len();
        tokio::task::spawn_blocking(move || this.commit_now(base, batch, snapshot))
            .await
            .unwrap_or_else(|e| vec![Err(CommitError::Io(e.to_string())); n])
    }

    fn commit_here(&self, base: i64, batch: Batch, snapshot: Snapshot) -> CommitHere {
        CommitHere::Done(self.commit_now(base, batch, snapshot))
    }

    fn events(&self) -> &EventLog {
        &self.events
    }

    fn last_error(&self) -> Option<(String, SystemTime)> {
        self.last_error.lock().ok()?.clone()
    }
}

impl FileConfigStore {
    pub fn current(&self) -> Arc<Stored> {
        match self.state.lock() {
            Ok(s) => s.stored.clone(),
            Err(poisoned) => poisoned.into_inner().stored.clone(),
        }
    }

    /// [`Self::commit_blocking`], one result per write.
    fn commit_now(&self, base: i64, batch: Batch, snapshot: Snapshot) -> Vec<Result<Committed, CommitError>> {
        let n = batch.writes.len();
        match self.commit_blocking(base, batch, snapshot) {
            Ok(committed) => committed.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e); n],
        }
    }

    /// Group commit: the batch is persisted as one file write (the last
    /// config, the sidecar at the last revision), then each revision is
    /// recorded with its own events. The revisions and metadata were
    /// computed by the writer from `base`, which is checked here. Only the
    /// last revision's config is kept for paging.
    fn commit_blocking(&self, base: i64, batch: Batch, snapshot: Snapshot) -> Result<Vec<Committed>, CommitError> {
        let mut state = self.state.lock().map_err(|_| CommitError::Io("the store lock is poisoned".into()))?;
        if state.stored.revision != base {
            return Err(CommitError::Stale { current: state.stored.revision });
        }
        if batch.writes.is_empty() {
            return Ok(Vec::new());
        }
        let last = batch.last;
        let text = state.yaml.render(&last.config, &last.metas);
        // Set before the rename: the watcher then sees our own text and skips it.
        let old_text = std::mem::replace(&mut state.text, text.clone());
        let state = &mut *state;
        match self.persist(base, &last, &text, &mut state.versions) {
            Ok(written) => state.written = written,
            Err(e) => {
                state.text = old_text;
                return Err(CommitError::Io(format!("cannot write {}: {e}", self.path.display())));
            }
        }
        self.live.store(snapshot);
        state.stored = last.clone();
        self.remember(last.clone());
        let mut out = Vec::with_capacity(batch.writes.len());
        let mut before = base;
        for p in batch.writes {
            self.events.record(p.revision, &p.changes);
            out.push(Committed { before, revision: p.revision, metas: p.metas });
            before = p.revision;
        }
        crate::admin::metrics::revision().set(last.revision);
        Ok(out)
    }
}

fn sidecar_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".state.json");
    PathBuf::from(p)
}

fn versions_dir(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".versions");
    PathBuf::from(p)
}

/// Removes the temporary files a crash in the middle of a write left (in
/// the temporary directory, and beside the file where earlier versions
/// wrote them).
fn remove_stale_temp_files(path: &Path) {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else { return };
    let prefixes = [format!(".{name}.tmp-"), format!(".{name}.state.json.tmp-")];
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.filter_map(|e| e.ok()) {
            let file = e.file_name().to_string_lossy().into_owned();
            if prefixes.iter().any(|p| file.starts_with(p.as_str())) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(temp_dir(path)) {
        for e in entries.filter_map(|e| e.ok()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The revisions of the `<revision>.yaml` files of `dir`, oldest first.
fn kept_versions(dir: &Path) -> VecDeque<i64> {
    let Ok(entries) = std::fs::read_dir(dir) else { return VecDeque::new() };
    let mut found: Vec<i64> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_string_lossy().strip_suffix(".yaml")?.parse().ok())
        .collect();
    found.sort();
    found.into()
}

/// Replaces `path` with `bytes` so that a crash leaves the old or the new
/// content: temporary file in a directory beside it, fsync, rename, fsync of
/// the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_in(&temp_dir(path), path, bytes)
}

/// [`write_atomic`] with the temporary file in `dir`.
fn write_atomic_in(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = write_temp(dir, path, bytes)?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(path)
}

/// Where the temporary files of writes to `path` go: a directory of their
/// own beside it (`.<name>.tmp/`), so that writing them raises no event in
/// the directory the file store watches; only the renames into place do.
fn temp_dir(path: &Path) -> PathBuf {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dir.join(format!(".{name}.tmp"))
}

/// `bytes` in a temporary file for `path` in `dir` (a [`temp_dir`], on the
/// same file system, so the rename into place is atomic), synced: its path.
fn write_temp(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!("{name}-{}", std::process::id()));
    let result = (|| {
        let mut f = match std::fs::File::create(&tmp) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir)?;
                std::fs::File::create(&tmp)?
            }
            other => other?,
        };
        f.write_all(bytes)?;
        f.sync_all()
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Syncs the directory holding `path` (its renames).
fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Timeouts;

    fn config(weight: u32, extra: bool) -> v1::Config {
        let mut text =
            format!("upstreams:\n  - {{ id: a, nodes: [{{ host: 127.0.0.1, port: 1, weight: {weight} }}] }}\n");
        if extra {
            text.push_str("  - { id: b, nodes: [{ host: 127.0.0.1, port: 2 }] }\n");
        }
        match pingora_config::load_str::<v1::Config>(&text, "test") {
            Ok((c, _)) => c,
            Err(e) => panic!("{e}"),
        }
    }

    fn snapshot(c: &v1::Config) -> Snapshot {
        match Snapshot::build(Arc::new(c.clone().into()), Timeouts::DEFAULT, None) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn the_sidecar_reads_back_as_the_metadata_it_was_written_from() {
        use v1::resource::Kind;
        let meta = |revision, update_time: Option<(i64, i32)>, hash: &str| Meta {
            revision,
            create_revision: revision - 1,
            update_time,
            hash: hash.into(),
        };
        let metas: Metas = [
            ((Kind::Route, "r1".to_string()), meta(7, Some((1_700_000_000, 5)), "sha256:aa")),
            ((Kind::Upstream, "u-\"x\"".to_string()), meta(3, None, "sha256:bb")),
        ]
        .into_iter()
        .collect();
        let stored = Stored {
            config: Arc::default(),
            revision: 7,
            metas: metas.clone(),
            hash: String::new(),
            applied_time: SystemTime::now(),
        };
        let bytes = match FileConfigStore::sidecar_bytes(&stored, "text") {
            Ok(b) => b,
            Err(e) => panic!("{e}"),
        };
        let read: Sidecar = match serde_json::from_slice(&bytes) {
            Ok(s) => s,
            Err(e) => panic!("{e}: {}", String::from_utf8_lossy(&bytes)),
        };
        assert_eq!(read.revision, 7);
        assert_eq!(read.file_hash, json::sha256(b"text"));
        let back: Vec<_> = read
            .resources
            .into_iter()
            .map(|(k, m)| (k, m.revision, m.create_revision, m.update_time, m.hash))
            .collect();
        let want: Vec<_> = metas
            .iter()
            .map(|(k, m)| (sidecar_key(k), (m.revision, m.create_revision, m.update_time, m.hash.clone())))
            .collect::<BTreeMap<_, _>>()
            .into_iter()
            .map(|(k, (r, c, u, h))| (k, r, c, u, h))
            .collect();
        assert_eq!(back, want);
    }

    fn open(path: &Path) -> Arc<FileConfigStore> {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let c = match pingora_config::load_str::<v1::Config>(&text, "test") {
            Ok((c, _)) => c,
            Err(e) => panic!("{e}"),
        };
        let live = Arc::new(Live::new(snapshot(&c)));
        Arc::new(FileConfigStore::open(path.to_path_buf(), 2, live, text, Arc::new(c.into()), "n".into()))
    }

    #[tokio::test]
    async fn revisions_follow_the_file_across_restarts_and_versions_are_pruned() {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, json::to_yaml(&config(1, true))).unwrap_or_else(|e| panic!("{e}"));
        // Temporary files a crash left, where this version and earlier ones
        // write them.
        std::fs::write(dir.path().join(".config.yaml.tmp-999"), "half a write").unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(dir.path().join(".config.yaml.tmp")).unwrap_or_else(|e| panic!("{e}"));
        let stale = dir.path().join(".config.yaml.tmp/config.yaml.state.json-999");
        std::fs::write(&stale, "half a write").unwrap_or_else(|e| panic!("{e}"));
        let store = open(&path);
        assert_eq!(store.revision(), 1);
        assert!(!dir.path().join(".config.yaml.tmp-999").exists());
        assert!(!stale.exists());
        let writer = crate::admin::write::Writer::new(Arc::new(store.clone()), store.live.clone(), Timeouts::DEFAULT);
        for w in 2..=5 {
            let c = config(w, true);
            assert!(writer.write(move |_| Ok(c.clone().into())).await.is_ok());
        }
        // A commit from an older revision is refused.
        let c = config(9, true);
        let stored = Stored {
            revision: 2,
            metas: Metas::new(),
            hash: json::config_hash(&c.clone().into()),
            config: Arc::new(c.clone().into()),
            applied_time: SystemTime::now(),
        };
        let writes = vec![Proposed { revision: 2, metas: Metas::new(), changes: Vec::new() }];
        let stale = ConfigStore::commit(&store, 1, Batch { writes, last: Arc::new(stored) }, snapshot(&c)).await;
        assert!(matches!(stale.as_slice(), [Err(CommitError::Stale { current: 5 })]));
        let kept = || {
            let mut names: Vec<String> = std::fs::read_dir(versions_dir(&path))
                .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            names.sort();
            names
        };
        assert_eq!(kept(), ["3.yaml", "4.yaml"]);
        let a = (v1::resource::Kind::Upstream, "a".to_owned());
        let b = (v1::resource::Kind::Upstream, "b".to_owned());
        let before = store.current().metas.clone();
        assert_eq!((before[&a].revision, before[&b].revision, before[&a].create_revision), (5, 1, 1));

        // Same files: same revisions.
        let again = open(&path);
        assert_eq!((again.revision(), &again.current().metas), (5, &before));

        // Edited while stopped: one new revision, for what changed only.
        std::fs::write(&path, json::to_yaml(&config(5, false))).unwrap_or_else(|e| panic!("{e}"));
        let edited = open(&path);
        let metas = edited.current().metas.clone();
        assert_eq!(edited.revision(), 6);
        assert_eq!(metas[&a], before[&a]);
        assert!(!metas.contains_key(&b));

        // The versions kept before the restart are pruned after it.
        let writer = crate::admin::write::Writer::new(Arc::new(edited.clone()), edited.live.clone(), Timeouts::DEFAULT);
        for w in 7..=8 {
            let c = config(w, false);
            assert!(writer.write(move |_| Ok(c.clone().into())).await.is_ok());
        }
        assert_eq!(edited.revision(), 8);
        assert_eq!(kept(), ["6.yaml", "7.yaml"]);
    }
}
