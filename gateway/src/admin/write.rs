//! The one write path of the management API: a change, an [`Edit`] of the
//! stored config (one resource put or removed, or a whole config), is
//! applied to the config, which is validated with the loader's rules
//! (schema and references between resources) and compiled into a snapshot
//! exactly as a file reload would be; only then is it stored and swapped
//! in. Each write is a compare-and-swap on the store revision, so two
//! writers never lose an update.
//!
//! # Group commit
//!
//! Writes are queued to one committer task, which takes every write queued
//! while it was busy as one batch (up to [`MAX_BATCH`]; while writes stream
//! in, it also waits for more, see [`LINGER`]):
//!
//! - each write's change runs against the config left by the writes before
//!   it in the batch and is validated on its own: a write that fails (a
//!   stale `expected_revision`, a rule broken) gets its own error and is
//!   left out, and the writes after it see the config without it;
//! - the edits are applied in place to one copy of the config per batch
//!   and yield the resources they change, so a write costs what it
//!   changes, not a copy and a comparison of the whole config;
//! - the snapshot is compiled once, for the config after the last write
//!   (should that fail, each write is compiled in turn to find the one that
//!   cannot be served, which alone is rejected);
//! - the store persists the batch (the file store: one file write and one
//!   set of fsyncs, each write getting its own revision; etcd: one
//!   transaction, whose revision the writes share) and each write gets its
//!   own events, in order;
//! - a write returns once it is durable and its change is live on this node.
//!
//! So a burst of writes costs one fsync and one compile, not one per write,
//! and throughput is no longer bounded by one fsync per write.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use pingora_config::v1;
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tonic::{Code, Status};

use crate::Live;
use crate::admin::edit::{self, Applied, Edit};
use crate::admin::json;
use crate::admin::store::{self, Batch, CommitError, Committed, ConfigStore, Head, Metas, Proposed, Stored};
use crate::shared::SharedConfig;
use crate::snapshot::{Snapshot, Timeouts};

/// The most writes committed together.
pub const MAX_BATCH: usize = 256;

/// A change: gets the config as the writes before it left it and returns
/// its edit, or an error (stale revision, not found) that leaves everything
/// as it was. It may run more than once (when a write of its batch cannot
/// be served, the batch is planned again without it), so it must not have
/// side effects.
pub type Change = Box<dyn Fn(&Head<'_>) -> Result<Edit, Status> + Send>;

struct Job {
    change: Change,
    reply: oneshot::Sender<Result<Written, Status>>,
}

/// The write path of one store: queues writes to its committer.
pub struct Writer {
    pub store: Arc<dyn ConfigStore>,
    pub live: Arc<Live>,
    pub defaults: Timeouts,
    /// To the committer task, started by the first write.
    queue: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    /// See [`LINGER`].
    linger: std::time::Duration,
    /// See [`IDLE_WAIT`].
    idle_wait: std::time::Duration,
    /// Batches taken by the committer so far.
    batches: Arc<AtomicU64>,
}

/// The outcome of a write.
pub struct Written {
    /// The store revision before it.
    pub before: i64,
    /// The store revision after it: `before` when it changed nothing.
    pub revision: i64,
    /// The resources it changed (key order): key, value before and after.
    pub changes: Vec<store::Change>,
    /// The metadata of every resource after it.
    pub metas: Metas,
    /// The resource it put, as stored (secrets sent as the marker
    /// restored), whether or not that changed anything.
    pub put: Option<v1::resource::Value>,
}

impl Writer {
    pub fn new(store: Arc<dyn ConfigStore>, live: Arc<Live>, defaults: Timeouts) -> Writer {
        Writer {
            store,
            live,
            defaults,
            queue: Mutex::new(None),
            linger: LINGER,
            idle_wait: IDLE_WAIT,
            batches: Arc::default(),
        }
    }

    /// The same writer with `linger` instead of [`LINGER`] between the
    /// starts of two commits while writes stream in; zero never waits.
    pub fn with_linger(mut self, linger: std::time::Duration) -> Writer {
        self.linger = linger;
        self
    }

    /// The same writer with `wait` instead of [`IDLE_WAIT`] before a batch
    /// without idle CPU is raised.
    pub fn with_idle_wait(mut self, wait: std::time::Duration) -> Writer {
        self.idle_wait = wait;
        self
    }

    /// How many batches the committer has taken so far (each counted
    /// before its writes are answered).
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Applies `change` to the current config (as left by the writes
    /// committed before it) and stores the result; see [`Change`].
    pub async fn write<F>(&self, change: F) -> Result<Written, Status>
    where
        F: Fn(&Head<'_>) -> Result<Edit, Status> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        self.submit(Job { change: Box::new(change), reply });
        // A write queued is committed even if this caller goes away.
        let result = rx.await.unwrap_or_else(|_| Err(Status::unavailable("the writer stopped before this write")));
        let outcome = match &result {
            Ok(w) if w.before == w.revision => "unchanged",
            Ok(_) => "applied",
            Err(s) if s.code() == Code::Aborted => "aborted",
            Err(s) if matches!(s.code(), Code::InvalidArgument | Code::FailedPrecondition) => "rejected",
            Err(s) if matches!(s.code(), Code::NotFound | Code::AlreadyExists) => "rejected",
            Err(_) => "failed",
        };
        crate::admin::metrics::writes().with_label_values(&[outcome]).inc();
        result
    }

    fn submit(&self, job: Job) {
        let mut queue = match self.queue.lock() {
            Ok(q) => q,
            Err(p) => p.into_inner(),
        };
        let job = match queue.as_ref() {
            Some(tx) => match tx.send(job) {
                Ok(()) => return,
                // The committer's runtime is gone: start another.
                Err(mpsc::error::SendError(job)) => job,
            },
            None => job,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(job);
        *queue = Some(tx);
        let committer = Committer {
            store: self.store.clone(),
            live: self.live.clone(),
            defaults: self.defaults,
            linger: self.linger,
            idle_wait: self.idle_wait,
            batches: self.batches.clone(),
        };
        tokio::spawn(committer.run(rx));
    }

    /// Validates a whole config and compiles it, off the async workers.
    pub async fn check(&self, config: v1::Config) -> Result<Snapshot, Status> {
        let previous = self.live.load();
        let defaults = self.defaults;
        tokio::task::spawn_blocking(move || {
            let report = pingora_config::validate_message(&config, "grpc");
            let config = SharedConfig::from(config);
            if let Err(report) = report {
                return Err(rejected(&config, &violations(&report)));
            }
            Snapshot::build(Arc::new(config), defaults, Some(&previous)).map_err(|e| build_error(&e))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
    }
}

fn build_error(e: &crate::snapshot::BuildError) -> Status {
    let v =
        e.0.iter()
            .map(|m| v1::Violation { path: String::new(), rule: "build".into(), message: m.clone() })
            .collect::<Vec<_>>();
    error(Code::InvalidArgument, &v, None)
}

/// While writes stream in, the shortest time from the start of one commit
/// to the start of the next (see [`Committer::run`]).
///
/// Each batch costs the same fsyncs, YAML render and snapshot compile
/// however many writes it holds, so when writes arrive faster than one per
/// commit, waiting a little lets several share them: at 200 writes/s on a
/// loaded node, several per batch instead of one or two (measured in
/// bench/README.md, "Propagation").
/// It only applies while writes are seen to stream in (the last batch had
/// more than one write, or more were queued when it was done), as
/// PostgreSQL's `commit_delay` applies only with `commit_siblings` open: a
/// client that waits for each write before sending the next is never made
/// to wait. And it counts from the start of the previous commit, so a store
/// whose commits take longer than that never waits: its batches grow by
/// themselves while it commits.
///
/// This is the least: the gap grows with what a commit costs, see
/// [`COMMIT_SHARE`].
pub const LINGER: std::time::Duration = std::time::Duration::from_millis(20);

/// While writes stream in, the gap from the start of one commit to the
/// start of the next is at least this many times the CPU the last batch's
/// planning, persisting and compiling took (at least [`LINGER`], at most
/// [`MAX_LINGER`]), so that streaming writes cost their node about a
/// twentieth of a CPU in commits until the cap. A commit's work is mostly
/// per batch (three fsyncs, the YAML, the compile; the copy and the
/// compile are O(config)), so a larger batch costs little more than a
/// small one. With 200 routes under load a commit's heavy part takes 1-3
/// ms, so batches start 20-30 ms apart (200 writes/s under wrk: more
/// writes per commit than the 4.4 of a fixed 20 ms); with 2,000 routes or
/// more, 30 ms apart. Measured in bench/README.md, "Propagation".
pub const COMMIT_SHARE: u32 = 20;

/// The longest gap between the starts of two commits that
/// [`COMMIT_SHARE`] asks for. It bounds what a write streaming in waits
/// before its commit starts, so that a client keeping a few writes in
/// flight keeps its rate: 8 writes in flight sustain 200 writes/s only
/// while a write takes under 40 ms, and a loaded node's commit takes 10 ms
/// or more from start to answer (`make bench-propagation`: with 40 ms,
/// its writers fell behind to 197/s once in two runs; with 100 ms, to
/// 192/s).
pub const MAX_LINGER: std::time::Duration = std::time::Duration::from_millis(30);

/// The gap from the start of a commit that took `cpu` to the start of the
/// next while writes stream in: see [`COMMIT_SHARE`]. A `least` of zero
/// (tests) never waits.
fn commit_gap(least: std::time::Duration, cpu: std::time::Duration) -> std::time::Duration {
    if least.is_zero() {
        return least;
    }
    (cpu * COMMIT_SHARE).clamp(least, MAX_LINGER.max(least))
}

/// CPU time the calling thread has used so far.
fn thread_cpu() -> std::time::Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    std::time::Duration::new(t.tv_sec.max(0) as u64, t.tv_nsec.clamp(0, 999_999_999) as u32)
}

/// The longest a batch runs in idle CPU only before it gets the control
/// plane's share (`SCHED_BATCH` at nice 5, see
/// [`crate::server::control_plane_thread`]).
///
/// A batch's planning, persisting and compiling run under `SCHED_IDLE`
/// ([`crate::server::idle_thread`]): any worker waking takes the CPU from
/// it at once, so on a loaded machine writes fill the gaps between
/// requests instead of taking turns with them. At 200 writes/s under wrk
/// on 2 CPUs that took the data plane's loss with the file store from
/// about 20-30% to about 7-15% (bench/README.md, "Propagation"). On a machine
/// with no idle CPU at all the batch would starve: after this long it is
/// raised, and the batches after it start raised for [`IDLE_RETRY`], so
/// writes wait a bounded time and progress at the share they had before.
pub const IDLE_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// After a batch was raised, how long the batches after it run at the
/// control plane's priority from the start before trying idle CPU again:
/// on a saturated machine one batch per this pays [`IDLE_WAIT`], not each.
pub const IDLE_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

fn take_queued(rx: &mut mpsc::UnboundedReceiver<Job>, jobs: &mut Vec<Job>) {
    while jobs.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(j) => jobs.push(j),
            Err(_) => break,
        }
    }
}

/// Adds the writes that arrive until `deadline` to `jobs`.
async fn linger(rx: &mut mpsc::UnboundedReceiver<Job>, jobs: &mut Vec<Job>, deadline: tokio::time::Instant) {
    while jobs.len() < MAX_BATCH && tokio::time::Instant::now() < deadline {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(j)) => {
                jobs.push(j);
                take_queued(rx, jobs);
            }
            Ok(None) | Err(_) => break,
        }
    }
}

/// Commits the queued writes, a batch at a time.
struct Committer {
    store: Arc<dyn ConfigStore>,
    live: Arc<Live>,
    defaults: Timeouts,
    linger: std::time::Duration,
    idle_wait: std::time::Duration,
    batches: Arc<AtomicU64>,
}

/// Where the blocking part of a batch stands as to idle CPU (see
/// [`IDLE_WAIT`]): decided under a lock, so that a batch whose wait ran out
/// before it started never goes idle unwatched.
enum IdleState {
    /// Not started.
    Pending,
    /// Running in idle CPU on this thread.
    Idle(crate::server::NativeThread),
    /// Running (or to run) at the control plane's priority.
    Raised,
}

/// What became of one write of a batch while planning it.
enum Planned {
    Failed(Status),
    /// Changes nothing: the revision and metadata it leaves are the ones
    /// before it.
    Unchanged {
        revision: i64,
        metas: Metas,
        put: Option<v1::resource::Value>,
    },
    /// The `n`th write to store, and the resources it changes.
    Store {
        n: usize,
        changes: Vec<store::Change>,
        put: Option<v1::resource::Value>,
    },
}

impl Committer {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<Job>) {
        // Whether writes are streaming in: the last batch had more than one
        // write, or writes were queued by the time it was committed.
        let mut streaming = false;
        let mut last_start = tokio::time::Instant::now();
        // Until when batches run at the control plane's priority from the
        // start, a batch having found no idle CPU (see [`IDLE_WAIT`]).
        let mut raised_until: Option<tokio::time::Instant> = None;
        // See [`COMMIT_SHARE`].
        let mut gap = self.linger;
        while let Some(first) = rx.recv().await {
            let mut jobs = vec![first];
            take_queued(&mut rx, &mut jobs);
            if streaming {
                linger(&mut rx, &mut jobs, last_start + gap).await;
            }
            last_start = tokio::time::Instant::now();
            let batch = jobs.len();
            // Counted before the writes are answered.
            self.batches.fetch_add(1, Ordering::Relaxed);
            crate::admin::metrics::batches().inc();
            let idle = raised_until.is_none_or(|t| last_start >= t);
            let (found_idle, cpu) = self.commit(jobs, idle).await;
            if !found_idle {
                raised_until = Some(tokio::time::Instant::now() + IDLE_RETRY);
            }
            gap = commit_gap(self.linger, cpu);
            streaming = batch > 1 || !rx.is_empty();
        }
    }

    /// Commits a batch, its heavy part in idle CPU when `idle`: whether it
    /// found idle CPU (`false` when it had to be raised), and the CPU its
    /// heavy part took.
    async fn commit(&self, jobs: Vec<Job>, idle: bool) -> (bool, std::time::Duration) {
        let before = self.store.current();
        let base = before.revision;
        let (previous, defaults, store) = (self.live.load(), self.defaults, self.store.clone());
        let (changes, replies): (Vec<Change>, Vec<_>) = jobs.into_iter().map(|j| (j.change, j.reply)).unzip();
        // Planned and, where the store can (the file store), committed on
        // one blocking thread, in CPU the data plane leaves idle (see
        // [`IDLE_WAIT`]).
        let state = Arc::new(Mutex::new(IdleState::Pending));
        let (shared, idle_cpu) = (state.clone(), idle);
        let mut task = tokio::task::spawn_blocking(move || {
            let start = thread_cpu();
            let _idle = idle_cpu
                .then(|| {
                    let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
                    if matches!(*s, IdleState::Raised) {
                        // Waited too long to start: no idle CPU to wait for.
                        return None;
                    }
                    let guard = crate::server::idle_thread();
                    *s = match guard.id() {
                        Some(id) => IdleState::Idle(id),
                        None => IdleState::Raised,
                    };
                    Some(guard)
                })
                .flatten();
            let (planned, batch) = plan(&before, &changes, store.ordered_by_id(), &previous, defaults);
            let committed = match batch {
                Some((batch, snapshot)) => store.commit_here(base, batch, snapshot),
                None => store::CommitHere::Done(Vec::new()),
            };
            // The config replaced is dropped here, not on the runtime.
            drop((before, previous));
            (planned, committed, thread_cpu().saturating_sub(start))
        });
        let mut found_idle = true;
        let planned = match tokio::time::timeout(self.idle_wait, &mut task).await {
            Ok(done) => done,
            Err(_) => {
                let waited = {
                    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                    let waited = match *s {
                        IdleState::Idle(id) => {
                            crate::server::raise_to_control_plane(id);
                            true
                        }
                        // Not started yet: it will not go idle.
                        IdleState::Pending => idle,
                        IdleState::Raised => false,
                    };
                    *s = IdleState::Raised;
                    waited
                };
                if waited {
                    crate::admin::metrics::raised().inc();
                    found_idle = false;
                }
                task.await
            }
        };
        let (planned, committed, cpu) = match planned {
            Ok(p) => p,
            Err(e) => {
                for r in replies {
                    let _ = r.send(Err(Status::internal(format!("the write failed: {e}"))));
                }
                return (found_idle, std::time::Duration::ZERO);
            }
        };
        let mut results: Vec<Option<Result<Committed, CommitError>>> = match committed {
            store::CommitHere::Done(results) => results,
            store::CommitHere::Later(batch, snapshot) => self.store.commit(base, batch, *snapshot).await,
        }
        .into_iter()
        .map(Some)
        .collect();
        // What a write that failed was planned on: the last revision stored
        // before it.
        let mut last_stored = base;
        for (planned, reply) in planned.into_iter().zip(replies) {
            let result = match planned {
                Planned::Failed(status) => Err(status),
                Planned::Unchanged { revision, metas, put } => {
                    Ok(Written { before: revision, revision, changes: Vec::new(), metas, put })
                }
                Planned::Store { n, changes, put } => match results.get_mut(n).and_then(Option::take) {
                    Some(Ok(c)) => {
                        last_stored = c.revision;
                        Ok(Written { before: c.before, revision: c.revision, changes, metas: c.metas, put })
                    }
                    Some(Err(CommitError::Stale { current })) => Err(Status::aborted(format!(
                        "the config changed since revision {last_stored} (now {current}): read it again and retry"
                    ))),
                    Some(Err(CommitError::Io(e))) => Err(Status::unavailable(e)),
                    Some(Err(CommitError::TooLarge(e))) => Err(Status::failed_precondition(e)),
                    None => Err(Status::internal("the store did not answer for this write")),
                },
            };
            let _ = reply.send(result);
        }
        (found_idle, cpu)
    }
}

/// The batch as planned so far: the config after the writes accepted, at
/// its revision, with its metadata.
struct Work {
    config: Arc<SharedConfig>,
    metas: Metas,
    revision: i64,
}

impl Work {
    fn from(stored: &Stored) -> Work {
        Work { config: stored.config.clone(), metas: stored.metas.clone(), revision: stored.revision }
    }

    /// Takes the next revision for a write whose edit was applied.
    fn accept(&mut self, changes: &[store::Change], time: (i64, i32)) {
        self.revision += 1;
        self.metas = store::next_metas(&self.metas, changes, self.revision, Some(time));
    }
}

/// What one write did to the batch.
enum Stepped {
    Unchanged(Option<v1::resource::Value>),
    Changed(Vec<store::Change>, Option<v1::resource::Value>),
}

/// Runs the changes of a batch in order from `before`, each on the config
/// left by the accepted ones before it, and validates each result; then
/// compiles the last config. When that cannot be served, finds the first
/// write whose config cannot, rejects it alone and plans again.
#[allow(clippy::type_complexity)]
fn plan(
    before: &Arc<Stored>,
    changes: &[Change],
    ordered: bool,
    previous: &Snapshot,
    defaults: Timeouts,
) -> (Vec<Planned>, Option<(Batch, Snapshot)>) {
    let mut unservable: Vec<Option<Status>> = vec![None; changes.len()];
    loop {
        let mut work = Work::from(before);
        let mut planned = Vec::with_capacity(changes.len());
        let mut writes: Vec<Proposed> = Vec::new();
        let mut owners = Vec::new();
        let time = store::now();
        for (i, change) in changes.iter().enumerate() {
            if let Some(status) = &unservable[i] {
                planned.push(Planned::Failed(status.clone()));
                continue;
            }
            match step(&mut work, change, ordered) {
                Err(status) => planned.push(Planned::Failed(status)),
                Ok(Stepped::Unchanged(put)) => {
                    planned.push(Planned::Unchanged { revision: work.revision, metas: work.metas.clone(), put })
                }
                Ok(Stepped::Changed(changes, put)) => {
                    work.accept(&changes, time);
                    planned.push(Planned::Store { n: writes.len(), changes: changes.clone(), put });
                    writes.push(Proposed { revision: work.revision, metas: work.metas.clone(), changes });
                    owners.push(i);
                }
            }
        }
        if writes.is_empty() {
            return (planned, None);
        }
        match Snapshot::build(work.config.clone(), defaults, Some(previous)) {
            Ok(snapshot) => {
                let last = Stored {
                    hash: json::config_hash(&work.config),
                    config: work.config,
                    revision: work.revision,
                    metas: work.metas,
                    applied_time: SystemTime::now(),
                };
                return (planned, Some((Batch { writes, last: Arc::new(last) }, snapshot)));
            }
            Err(e) if writes.len() == 1 => unservable[owners[0]] = Some(build_error(&e)),
            Err(e) => {
                let culprit = first_unservable(before, changes, &unservable, ordered, previous, defaults)
                    // Each alone compiles, only the whole does not: the last one is refused.
                    .unwrap_or_else(|| (owners[owners.len() - 1], build_error(&e)));
                unservable[culprit.0] = Some(culprit.1);
            }
        }
    }
}

/// The first write of a batch whose config cannot be served, and why: the
/// writes run again one at a time, each compiled (rare: a batch that
/// cannot be served).
fn first_unservable(
    before: &Stored,
    changes: &[Change],
    unservable: &[Option<Status>],
    ordered: bool,
    previous: &Snapshot,
    defaults: Timeouts,
) -> Option<(usize, Status)> {
    let mut work = Work::from(before);
    let time = store::now();
    for (i, change) in changes.iter().enumerate() {
        if unservable[i].is_some() {
            continue;
        }
        if let Ok(Stepped::Changed(changes, _)) = step(&mut work, change, ordered) {
            work.accept(&changes, time);
            if let Err(e) = Snapshot::build(work.config.clone(), defaults, Some(previous)) {
                return Some((i, build_error(&e)));
            }
        }
    }
    None
}

/// One write on `work`, applied to it when it is accepted.
fn step(work: &mut Work, change: &Change, ordered: bool) -> Result<Stepped, Status> {
    let edit = change(&Head { config: &work.config, metas: &work.metas, revision: work.revision })?;
    let is_put = matches!(edit, Edit::Put(_));
    // A put replaces the resource with its id or adds one with an id not
    // there; a remove removes: the ids stay unique.
    let ids_unique = !matches!(edit, Edit::Whole(_));
    let (changes, undo) = match edit::apply(&mut work.config, edit, ordered) {
        Applied::Unchanged(put) => return Ok(Stepped::Unchanged(put)),
        Applied::Changed(changes, undo) => (changes, undo),
    };
    if !valid_by_its_changes(&work.config, &changes, ids_unique)
        && let Err(report) = pingora_config::validate_message(&work.config.to_proto(), "grpc")
    {
        let status = rejected_change(&work.config, &changes, &violations(&report));
        edit::undo(&mut work.config, undo);
        return Err(status);
    }
    // A put changes its own resource only.
    let put = if is_put { changes.first().and_then(|(_, _, new)| new.as_ref()?.value.clone()) } else { None };
    Ok(Stepped::Changed(changes, put))
}

/// Whether `config`, made by `changes` from a valid config, is valid
/// without validating all of it: the rules that span resources are the
/// uniqueness of ids in each collection and the references, so when no
/// resource that something could refer to went away (a route, say: no rule
/// refers to routes) it is enough that each changed resource passes its
/// own rules, the ids are unique and the references of the changed
/// resources resolve. `ids_unique`: the caller knows the ids are unique
/// and not empty (puts and removes on a valid config keep them so), and
/// they are not checked again. At 210 routes: ~5 us against ~385 us for
/// the whole config (10,000 routes: ~27 ms). `false` means "validate it
/// all" (which also gives the report with the paths in the config), not
/// "invalid".
pub(crate) fn valid_by_its_changes(config: &SharedConfig, changes: &[store::Change], ids_unique: bool) -> bool {
    use std::collections::HashSet;
    use v1::resource::Value;
    let referable = |kind: v1::resource::Kind| referenced_collections().contains(store::collection(kind));
    if !config_rules_are_ids_and_references()
        || changes.iter().any(|((kind, _), _, new)| new.is_none() && referable(*kind))
    {
        return false;
    }
    // Unique and not empty (`unique_by`).
    fn unique<T>(items: &[Arc<T>], id: fn(&T) -> &str) -> bool {
        let mut set = HashSet::with_capacity(items.len());
        items.iter().all(|i| !id(i).is_empty() && set.insert(id(i)))
    }
    if !ids_unique
        && !(unique(&config.routes, |r| &r.id)
            && unique(&config.services, |r| &r.id)
            && unique(&config.upstreams, |r| &r.id)
            && unique(&config.consumers, |r| &r.username)
            && unique(&config.ssls, |r| &r.id)
            && unique(&config.global_rules, |r| &r.id)
            && unique(&config.plugin_configs, |r| &r.id))
    {
        return false;
    }
    // A reference's target, looked up in its collection (a few references
    // per change: a scan costs less than indexing every id).
    let exists = |collection: &str, id: &str| match collection {
        "routes" => config.routes.iter().any(|r| r.id == id),
        "services" => config.services.iter().any(|r| r.id == id),
        "upstreams" => config.upstreams.iter().any(|r| r.id == id),
        "consumers" => config.consumers.iter().any(|r| r.username == id),
        "ssls" => config.ssls.iter().any(|r| r.id == id),
        "global_rules" => config.global_rules.iter().any(|r| r.id == id),
        "plugin_configs" => config.plugin_configs.iter().any(|r| r.id == id),
        _ => false,
    };
    changes.iter().all(|(_, _, new)| {
        let Some(new) = new else { return true };
        let references = match new.value.as_ref() {
            Some(Value::Route(r)) => pingora_config::validate_message(r, "grpc"),
            Some(Value::Service(r)) => pingora_config::validate_message(r, "grpc"),
            Some(Value::Upstream(r)) => pingora_config::validate_message(r, "grpc"),
            Some(Value::Consumer(r)) => pingora_config::validate_message(r, "grpc"),
            Some(Value::Ssl(r)) => pingora_config::validate_message(r, "grpc"),
            Some(Value::GlobalRule(r)) => pingora_config::validate_message(r, "grpc"),
            Some(Value::PluginConfig(r)) => pingora_config::validate_message(r, "grpc"),
            None => return false,
        };
        references.is_ok_and(|refs| refs.iter().all(|r| exists(&r.collection, &r.id)))
    })
}

/// The collections that some rule of the schema refers into (`ref`, at any
/// depth: list items, map keys and values). Read from the schema, so that a
/// reference added to the protos later is seen here.
fn referenced_collections() -> &'static std::collections::HashSet<String> {
    use pingora_config_rules::FieldRules;
    fn walk(r: &FieldRules, out: &mut std::collections::HashSet<String>) {
        if let Some(c) = &r.r#ref {
            out.insert(c.clone());
        }
        for sub in [&r.items, &r.keys, &r.values].into_iter().flatten() {
            walk(sub, out);
        }
    }
    static SET: std::sync::OnceLock<std::collections::HashSet<String>> = std::sync::OnceLock::new();
    SET.get_or_init(|| {
        let mut out = std::collections::HashSet::new();
        for m in &pingora_config::model().messages {
            for f in &m.fields {
                walk(&f.rules, &mut out);
            }
        }
        out
    })
}

/// Whether the schema's rules on `Config` itself are still only the
/// collections' `unique_by` (what [`valid_by_its_changes`] checks): a rule
/// added there later turns the shortcut off instead of being skipped.
fn config_rules_are_ids_and_references() -> bool {
    static ONLY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ONLY.get_or_init(|| {
        let Some(m) = pingora_config::model().message("pingora_config.v1.Config") else { return false };
        let r = &m.rules;
        let known = ["routes", "services", "upstreams", "consumers", "ssls", "global_rules", "plugin_configs"];
        r.one_of.is_empty()
            && r.any_of.is_empty()
            && r.requires.is_empty()
            && r.compare.is_empty()
            && r.required_when.is_empty()
            && m.fields.len() == known.len()
            && m.fields.iter().all(|f| {
                let r = &f.rules;
                known.contains(&f.name.as_str())
                    && r.unique_by.is_some()
                    && !r.required
                    && r.min_items.is_none()
                    && r.max_items.is_none()
                    && !r.unique
                    && r.items.is_none()
            })
    })
}

/// The violations of a report, as the API carries them.
pub fn violations(report: &pingora_config::Report) -> Vec<v1::Violation> {
    report
        .violations
        .iter()
        .map(|v| v1::Violation { path: v.path.clone(), rule: v.rule.to_owned(), message: v.message.clone() })
        .collect()
}

/// The error of a rejected config: FAILED_PRECONDITION when every violation
/// is a reference to a resource that does not exist (naming the referrers),
/// INVALID_ARGUMENT otherwise.
pub fn rejected(config: &SharedConfig, violations: &[v1::Violation]) -> Status {
    if !violations.is_empty() && violations.iter().all(|v| v.rule == "ref") {
        let referrers: Vec<String> = violations.iter().map(|v| referrer(config, &v.path)).collect();
        error(Code::FailedPrecondition, violations, Some(referrers))
    } else {
        error(Code::InvalidArgument, violations, None)
    }
}

/// [`rejected`] for a config made by `changes`. When the resources holding
/// the dangling references are unchanged, the change removed what they
/// refer to: "still referred to by ...". When the change itself wrote a
/// reference to something missing, the message is that violation's
/// ("upstream `x` does not exist").
pub fn rejected_change(config: &SharedConfig, changes: &[store::Change], violations: &[v1::Violation]) -> Status {
    if violations.is_empty() || !violations.iter().all(|v| v.rule == "ref") {
        return error(Code::InvalidArgument, violations, None);
    }
    // In the config after the change and not changed by it: there before.
    let unchanged = |path: &str| {
        resource_key(config, path).is_some_and(|k| changes.binary_search_by(|(key, _, _)| key.cmp(&k)).is_err())
    };
    if violations.iter().all(|v| unchanged(&v.path)) {
        rejected(config, violations)
    } else {
        error(Code::FailedPrecondition, violations, None)
    }
}

/// The resource a violation path is in: `routes[2].upstream_id` -> (Route, id).
fn resource_key(config: &SharedConfig, path: &str) -> Option<super::store::Key> {
    use v1::resource::Kind;
    let head = path.split('.').next().unwrap_or(path);
    let (collection, index) = head.strip_suffix(']').and_then(|h| h.split_once('['))?;
    let i: usize = index.parse().ok()?;
    Some(match collection {
        "routes" => (Kind::Route, config.routes.get(i)?.id.clone()),
        "services" => (Kind::Service, config.services.get(i)?.id.clone()),
        "upstreams" => (Kind::Upstream, config.upstreams.get(i)?.id.clone()),
        "consumers" => (Kind::Consumer, config.consumers.get(i)?.username.clone()),
        "ssls" => (Kind::Ssl, config.ssls.get(i)?.id.clone()),
        "global_rules" => (Kind::GlobalRule, config.global_rules.get(i)?.id.clone()),
        "plugin_configs" => (Kind::PluginConfig, config.plugin_configs.get(i)?.id.clone()),
        _ => return None,
    })
}

/// `routes[2].upstream_id` -> `route "orders-api"`.
fn referrer(config: &SharedConfig, path: &str) -> String {
    let head = path.split('.').next().unwrap_or(path);
    let Some((collection, index)) = head.strip_suffix(']').and_then(|h| h.split_once('[')) else {
        return path.to_owned();
    };
    let i: usize = index.parse().unwrap_or(usize::MAX);
    let id = match collection {
        "routes" => config.routes.get(i).map(|r| ("route", r.id.clone())),
        "services" => config.services.get(i).map(|r| ("service", r.id.clone())),
        "upstreams" => config.upstreams.get(i).map(|r| ("upstream", r.id.clone())),
        "consumers" => config.consumers.get(i).map(|r| ("consumer", r.username.clone())),
        "ssls" => config.ssls.get(i).map(|r| ("ssl", r.id.clone())),
        "global_rules" => config.global_rules.get(i).map(|r| ("global rule", r.id.clone())),
        "plugin_configs" => config.plugin_configs.get(i).map(|r| ("plugin config", r.id.clone())),
        _ => None,
    };
    match id {
        Some((kind, id)) => format!("{kind} `{id}` ({path})"),
        None => path.to_owned(),
    }
}

/// A status whose details (`google.rpc.Status.details`) hold a
/// `google.rpc.BadRequest` (one field violation per violation), a
/// `google.rpc.PreconditionFailure` naming the referrers when there are
/// some, and the `ValidateConfigResponse` the API documents.
pub fn error(code: Code, violations: &[v1::Violation], referrers: Option<Vec<String>>) -> Status {
    let first = violations
        .first()
        .map(|v| if v.path.is_empty() { v.message.clone() } else { format!("{}: {} [{}]", v.path, v.message, v.rule) });
    let message = match (&referrers, first) {
        (Some(r), _) if !r.is_empty() => format!("still referred to by {}", r.join(", ")),
        (_, Some(first)) if violations.len() > 1 => format!("{first} (and {} more)", violations.len() - 1),
        (_, Some(first)) => first,
        _ => "rejected".to_owned(),
    };
    let mut details = Vec::new();
    let bad_request = tonic_types::pb::BadRequest {
        field_violations: violations
            .iter()
            .map(|v| tonic_types::pb::bad_request::FieldViolation {
                field: v.path.clone(),
                description: format!("{} [{}]", v.message, v.rule),
                ..Default::default()
            })
            .collect(),
    };
    details.push(any("google.rpc.BadRequest", bad_request.encode_to_vec()));
    if let Some(referrers) = referrers {
        let failure = tonic_types::pb::PreconditionFailure {
            violations: referrers
                .iter()
                .map(|r| tonic_types::pb::precondition_failure::Violation {
                    r#type: "REFERENCED".into(),
                    subject: r.clone(),
                    description: format!("{r} refers to it"),
                })
                .collect(),
        };
        details.push(any("google.rpc.PreconditionFailure", failure.encode_to_vec()));
    }
    let response = v1::ValidateConfigResponse { valid: false, violations: violations.to_vec() };
    details.push(any("pingora_config.v1.ValidateConfigResponse", response.encode_to_vec()));
    let status = tonic_types::pb::Status { code: code as i32, message: message.clone(), details };
    Status::with_details(code, message, Bytes::from(status.encode_to_vec()))
}

fn any(name: &str, value: Vec<u8>) -> prost_types::Any {
    prost_types::Any { type_url: format!("type.googleapis.com/{name}"), value }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::admin::store::FileConfigStore;

    fn load(text: &str) -> v1::Config {
        match pingora_config::load_str::<v1::Config>(text, "test") {
            Ok((c, _)) => c,
            Err(e) => panic!("{e}"),
        }
    }

    fn open(path: &Path) -> (Arc<FileConfigStore>, Arc<Writer>) {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let c = load(&text);
        let snapshot = match Snapshot::build(Arc::new(c.clone().into()), Timeouts::DEFAULT, None) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let live = Arc::new(Live::new(snapshot));
        let store =
            Arc::new(FileConfigStore::open(path.to_path_buf(), 2, live.clone(), text, Arc::new(c.into()), "n".into()));
        let writer = Arc::new(Writer::new(Arc::new(store.clone()), live, Timeouts::DEFAULT));
        (store, writer)
    }

    #[test]
    fn commits_streaming_in_are_spaced_by_what_the_last_one_cost() {
        let ms = std::time::Duration::from_millis;
        // Cheap commits: the least gap.
        assert_eq!(commit_gap(LINGER, std::time::Duration::from_micros(300)), LINGER);
        // Twenty times the CPU of the last one.
        assert_eq!(commit_gap(LINGER, std::time::Duration::from_micros(1_200)), ms(24));
        // Never more than the most a write waits.
        assert_eq!(commit_gap(LINGER, ms(40)), MAX_LINGER);
        // A writer told not to wait never waits.
        assert_eq!(commit_gap(std::time::Duration::ZERO, ms(40)), std::time::Duration::ZERO);
        // A least above the most is the gap.
        assert_eq!(commit_gap(ms(150), ms(1)), ms(150));
    }

    #[test]
    fn thread_cpu_counts_this_threads_work() {
        let before = thread_cpu();
        let mut x = 0u64;
        while thread_cpu() - before < std::time::Duration::from_millis(5) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(x > 0);
        // Sleeping costs no CPU.
        let slept = thread_cpu();
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert!(thread_cpu() - slept < std::time::Duration::from_millis(10));
    }

    fn upstream(id: &str, port: u32) -> v1::Upstream {
        let c = load(&format!("upstreams:\n  - {{ id: {id}, nodes: [{{ host: 127.0.0.1, port: {port} }}] }}\n"));
        c.upstreams.into_iter().next().unwrap_or_default()
    }

    fn route(id: &str, upstream: &str, plugins: &str) -> v1::Route {
        let c = load(&format!(
            "upstreams:\n  - {{ id: {upstream}, nodes: [{{ host: 127.0.0.1, port: 1 }}] }}\nroutes:\n  - {{ id: {id}, uris: [\"/{id}\"], upstream_id: {upstream}{plugins} }}\n"
        ));
        c.routes.into_iter().next().unwrap_or_default()
    }

    /// Runs the changes as concurrent writes queued before the committer
    /// runs (the test runtime has one thread), so they form one batch.
    async fn batch(writer: &Arc<Writer>, changes: Vec<Change>) -> Vec<Result<Written, Status>> {
        let tasks: Vec<_> = changes
            .into_iter()
            .map(|c| {
                let w = writer.clone();
                tokio::spawn(async move { w.write(move |s| c(s)).await })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            match t.await {
                Ok(r) => out.push(r),
                Err(e) => panic!("{e}"),
            }
        }
        out
    }

    fn revision(r: &Result<Written, Status>) -> Result<i64, Code> {
        r.as_ref().map(|w| w.revision).map_err(|s| s.code())
    }

    /// The shortcut never accepts what validating the whole config refuses,
    /// whatever the change: every field of every example config broken in
    /// turn, references dangling, ids duplicated (and told the ids are
    /// unique when they are, as puts and removes keep them).
    #[test]
    fn validating_only_the_changes_accepts_exactly_what_validating_all_accepts() {
        let shared = |c: &v1::Config| SharedConfig::from(c.clone());
        let resources = |c: &v1::Config| store::resources(&shared(c));
        let dir = format!("{}/../proto/testdata/config", env!("CARGO_MANIFEST_DIR"));
        let base = load(&std::fs::read_to_string(format!("{dir}/valid/full.yaml")).unwrap_or_else(|e| panic!("{e}")));
        let mut candidates: Vec<v1::Config> = Vec::new();
        // Each invalid example's resources put into the valid config one at
        // a time, in place of the one with the same id or added.
        for entry in std::fs::read_dir(format!("{dir}/invalid")).unwrap_or_else(|e| panic!("{e}")) {
            let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let Ok(tree) = pingora_config_rules::parse_yaml(&text) else { continue };
            let Ok(bad) = <v1::Config as serde::Deserialize>::deserialize(&tree) else { continue };
            for (key, _, new) in store::changes(&SharedConfig::default(), &shared(&bad)) {
                let Some(new) = new else { continue };
                let mut replace = resources(&base);
                replace.insert(key, new);
                let c = config_of(replace);
                candidates.push(c);
            }
        }
        // Dangling references and duplicate ids.
        let mut c = base.clone();
        if let Some(r) = c.routes.first_mut() {
            r.target = Some(v1::route::Target::UpstreamId("nowhere".into()));
        }
        candidates.push(c);
        let mut c = base.clone();
        if let Some(r) = c.routes.first().cloned() {
            c.routes.push(r);
        }
        candidates.push(c);
        let mut c = base.clone();
        c.upstreams.clear();
        candidates.push(c);
        // Every resource of the valid config deleted, one at a time: some
        // of these leave references dangling.
        for key in resources(&base).into_keys() {
            let mut replace = resources(&base);
            replace.remove(&key);
            candidates.push(config_of(replace));
        }
        assert!(candidates.len() > 20, "{} candidates", candidates.len());
        let mut accepted = 0;
        let (base_proto, base) = (base.clone(), shared(&base));
        for c in &candidates {
            let whole = pingora_config::validate_message(c, "test").is_ok();
            let count = c.routes.len()
                + c.services.len()
                + c.upstreams.len()
                + c.consumers.len()
                + c.ssls.len()
                + c.global_rules.len()
                + c.plugin_configs.len();
            let ids_unique = resources(c).len() == count && resources(c).keys().all(|(_, id)| !id.is_empty());
            let c = shared(c);
            let changes = store::changes(&base, &c);
            if valid_by_its_changes(&c, &changes, false) {
                assert!(whole, "accepted by its changes only: {changes:?}");
                accepted += 1;
            }
            if ids_unique && valid_by_its_changes(&c, &changes, true) {
                assert!(whole, "accepted by its changes only, the ids unique: {changes:?}");
            }
        }
        // And it does accept valid changes (else it would be no shortcut).
        let base_shared = base;
        let base = base_proto;
        let valid_by_its_changes = |c: &v1::Config| {
            let c = shared(c);
            valid_by_its_changes(&c, &store::changes(&base_shared, &c), true)
        };
        let mut c = base.clone();
        if let Some(r) = c.routes.first_mut() {
            r.priority += 1;
        }
        assert!(config_rules_are_ids_and_references());
        assert!(valid_by_its_changes(&c));
        // So does deleting a route (nothing refers to routes), but not an
        // upstream, which something may refer to.
        let mut c = base.clone();
        c.routes.pop();
        assert!(valid_by_its_changes(&c));
        let mut c = base.clone();
        c.upstreams.pop();
        assert!(!valid_by_its_changes(&c));
        let mut referable: Vec<&str> = referenced_collections().iter().map(String::as_str).collect();
        referable.sort();
        assert_eq!(referable, ["plugin_configs", "services", "upstreams"]);
        assert!(accepted < candidates.len());
    }

    fn config_of(resources: std::collections::BTreeMap<store::Key, v1::Resource>) -> v1::Config {
        use v1::resource::Value;
        let mut c = v1::Config::default();
        for r in resources.into_values().filter_map(|r| r.value) {
            match r {
                Value::Route(r) => c.routes.push(r),
                Value::Service(r) => c.services.push(r),
                Value::Upstream(r) => c.upstreams.push(r),
                Value::Consumer(r) => c.consumers.push(r),
                Value::Ssl(r) => c.ssls.push(r),
                Value::GlobalRule(r) => c.global_rules.push(r),
                Value::PluginConfig(r) => c.plugin_configs.push(r),
            }
        }
        c
    }

    #[tokio::test]
    async fn a_batch_commits_each_write_on_the_ones_before_it_and_a_bad_one_alone_fails() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, "upstreams:\n  - { id: a, nodes: [{ host: 127.0.0.1, port: 1 }] }\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let (store, writer) = open(&path);
        assert_eq!(store.revision(), 1);
        let (_, mut live_events) = store_events(&store);
        let a = (v1::resource::Kind::Upstream, "a".to_owned());
        use v1::resource::Value;
        // Edits of one resource and whole configs, mixed.
        let changes: Vec<Change> = vec![
            // 1: changes upstream a.
            Box::new(|_: &Head<'_>| Ok(Edit::Put(Value::Upstream(upstream("a", 2))))),
            // 2: breaks a rule (port 0): refused alone.
            Box::new(|s: &Head<'_>| {
                let mut c = s.config.to_proto();
                let mut bad = upstream("bad", 1);
                bad.nodes[0].port = 0;
                c.upstreams.push(bad);
                Ok(Edit::Whole(c))
            }),
            // 3: adds upstream c.
            Box::new(|_: &Head<'_>| Ok(Edit::Put(Value::Upstream(upstream("c", 3))))),
            // 4: expects upstream a as it was before write 1: a conflict.
            Box::new(move |s: &Head<'_>| {
                if s.metas.get(&a).map(|m| m.revision) != Some(1) {
                    return Err(Status::aborted("a changed"));
                }
                Ok(Edit::Whole(s.config.to_proto()))
            }),
            // 5: a route to c, which exists only thanks to write 3.
            Box::new(|s: &Head<'_>| {
                let mut c = s.config.to_proto();
                c.routes.push(route("r", "c", ""));
                Ok(Edit::Whole(c))
            }),
            // 6: valid, but cannot be served (CORS credentials with `*`).
            Box::new(|_: &Head<'_>| {
                Ok(Edit::Put(Value::Route(route("cors", "c", ", plugins: { cors: { allow_credentials: true } }"))))
            }),
            // 7: changes nothing.
            Box::new(|s: &Head<'_>| Ok(Edit::Whole(s.config.to_proto()))),
        ];
        let results = batch(&writer, changes).await;
        let got: Vec<_> = results.iter().map(revision).collect();
        assert_eq!(
            got,
            [Ok(2), Err(Code::InvalidArgument), Ok(3), Err(Code::Aborted), Ok(4), Err(Code::InvalidArgument), Ok(4)]
        );
        // Each write's own error and its own before/after.
        let bad = results[1].as_ref().err().map(|s| s.message().to_owned()).unwrap_or_default();
        assert!(bad.contains("upstreams[1]") && bad.contains("port"), "{bad}");
        let cors = results[5].as_ref().err().map(|s| s.message().to_owned()).unwrap_or_default();
        assert!(cors.contains("allow_credentials"), "{cors}");
        let befores: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).map(|w| w.before).collect();
        assert_eq!(befores, [1, 2, 3, 4]);
        // And its own changes.
        let changed: Vec<Vec<&str>> = results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|w| w.changes.iter().map(|((_, id), _, _)| id.as_str()).collect())
            .collect();
        assert_eq!(changed, [vec!["a"], vec!["c"], vec!["r"], vec![]]);

        // One event per change, at its own revision, in order.
        let mut events = Vec::new();
        while let Ok(e) = live_events.try_recv() {
            events.push((e.revision, e.id.clone()));
        }
        assert_eq!(events, [(2, "2/upstream/a".into()), (3, "3/upstream/c".into()), (4, "4/route/r".into())]);
        let current = store.current();
        assert_eq!(current.revision, 4);
        assert_eq!(current.config.upstreams.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(), ["a", "c"]);
        assert_eq!(writer.live.load().routes.len(), 1);

        // Durable: a restart reads the same config, revisions and metadata.
        let metas = current.metas.clone();
        drop((store, writer));
        let (again, _) = open(&path);
        assert_eq!(again.revision(), 4);
        assert_eq!(again.current().metas, metas);
        let revisions: Vec<_> = metas.iter().map(|((_, id), m)| (id.as_str(), m.revision)).collect();
        assert_eq!(revisions, [("r", 4), ("a", 2), ("c", 3)]);
        assert_eq!(*again.current().config, *current.config);
    }

    /// A change that sets the one upstream `a` to `port`.
    fn set_port(port: u32) -> impl Fn(&Head<'_>) -> Result<Edit, Status> + Send + 'static {
        move |_| Ok(Edit::Put(v1::resource::Value::Upstream(upstream("a", port))))
    }

    #[tokio::test]
    async fn writes_one_after_another_are_each_their_own_batch() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, "").unwrap_or_else(|e| panic!("{e}"));
        let (store, writer) = open(&path);
        for (i, port) in [5u32, 6, 7].into_iter().enumerate() {
            let w = writer.write(set_port(port)).await;
            assert_eq!(revision(&w), Ok(i as i64 + 2));
        }
        assert_eq!(store.current().config.upstreams[0].nodes[0].port, 7);
    }

    #[tokio::test]
    async fn while_writes_stream_in_the_committer_waits_for_more_and_a_lone_writer_never_waits() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, "").unwrap_or_else(|e| panic!("{e}"));
        let (_, writer) = open(&path);
        let linger = std::time::Duration::from_millis(1000);
        let writer = Arc::new(Arc::into_inner(writer).unwrap_or_else(|| unreachable!()).with_linger(linger));
        // A lone writer, one write at a time: never made to wait.
        let started = std::time::Instant::now();
        for port in 1..=3 {
            assert!(writer.write(set_port(port)).await.is_ok());
        }
        assert_eq!(writer.batches(), 3);
        assert!(started.elapsed() < linger, "{:?}", started.elapsed());
        // Two writes queued together: writes are streaming in.
        let (a, b) = tokio::join!(writer.write(set_port(4)), writer.write(set_port(5)));
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(writer.batches(), 4);
        // So the next write waits for the one sent 50 ms after it, and both
        // are committed together.
        let started = std::time::Instant::now();
        let w = writer.clone();
        let first = tokio::spawn(async move { w.write(set_port(6)).await });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let second = writer.write(set_port(7)).await;
        assert!(matches!(first.await, Ok(Ok(_))) && second.is_ok());
        assert_eq!(writer.batches(), 5);
        assert!(started.elapsed() >= linger / 2, "{:?}", started.elapsed());
        // That batch had two writes, so the next lone write waits once, no
        // one joins it, and the writes after it are not made to wait.
        assert!(writer.write(set_port(8)).await.is_ok());
        let started = std::time::Instant::now();
        for port in 9..=11 {
            assert!(writer.write(set_port(port)).await.is_ok());
        }
        assert_eq!(writer.batches(), 9);
        assert!(started.elapsed() < linger, "{:?}", started.elapsed());
    }

    /// A batch's changes run in idle CPU; one still running after the wait
    /// is raised, and the batch after it starts raised.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_batch_runs_in_idle_cpu_and_one_that_waits_too_long_is_raised() {
        const SCHED_BATCH: u64 = 3;
        const SCHED_IDLE: u64 = 5;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, "").unwrap_or_else(|e| panic!("{e}"));
        let (_, writer) = open(&path);
        let wait = std::time::Duration::from_millis(50);
        let writer = Arc::into_inner(writer).unwrap_or_else(|| unreachable!()).with_idle_wait(wait);
        let seen = Arc::new(Mutex::new(Vec::new()));
        for (port, slow) in [(1u32, false), (2, true), (3, false)] {
            let seen = seen.clone();
            let change = move |_: &Head<'_>| {
                if slow {
                    std::thread::sleep(wait * 4);
                }
                if let Ok(mut s) = seen.lock() {
                    s.push(crate::server::tests::scheduling().0);
                }
                Ok(Edit::Put(v1::resource::Value::Upstream(upstream("a", port))))
            };
            assert!(writer.write(change).await.is_ok());
        }
        let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
        assert_eq!(seen[..2], [SCHED_IDLE, SCHED_BATCH], "{seen:?}");
        assert_ne!(seen[2], SCHED_IDLE, "{seen:?}");
    }

    fn store_events(store: &Arc<FileConfigStore>) -> store::Subscription {
        match ConfigStore::events(store).subscribe(0) {
            Ok(s) => s,
            Err(e) => panic!("{e:?}"),
        }
    }
}
