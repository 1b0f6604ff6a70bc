//! Where the config comes from: the file store (the embedded default).
//!
//! The YAML file is watched (the directory, so that editors that replace
//! the file are seen); a change is loaded through the one validation path,
//! compiled into a new snapshot off the request path, and swapped in. A file
//! that fails validation or cannot be served is logged with every error and
//! the running snapshot stays as it was.
//!
//! The same task keeps the active health checks running: one task per
//! upstream that configures them, started and stopped as snapshots change.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pingora_config::{Report, v1};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::Live;
use crate::snapshot::{BuildError, Snapshot, Timeouts};
use crate::upstream::Upstream;

/// Why a config file could not be applied.
#[derive(Debug)]
pub enum LoadError {
    /// The file breaks the schema's rules.
    Invalid(Report),
    /// Valid, but cannot be served (for example a node that does not resolve).
    Build(BuildError),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Invalid(r) => write!(f, "{r}"),
            LoadError::Build(e) => write!(f, "{e}"),
        }
    }
}

/// Reads, validates and compiles the config file.
pub fn load(path: &Path, defaults: Timeouts, previous: Option<&Snapshot>) -> Result<(Snapshot, String), LoadError> {
    let text = read(path)?;
    let snapshot = compile(path, &text, defaults, previous)?;
    Ok((snapshot, text))
}

fn read(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|e| {
        LoadError::Invalid(Report {
            origin: path.display().to_string(),
            violations: vec![pingora_config::Violation {
                path: String::new(),
                pos: None,
                rule: "io",
                message: format!("cannot read the file: {e}"),
            }],
        })
    })
}

/// Validates and compiles the text of the config file.
fn compile(path: &Path, text: &str, defaults: Timeouts, previous: Option<&Snapshot>) -> Result<Snapshot, LoadError> {
    let (config, _) =
        pingora_config::load_str::<v1::Config>(text, &path.display().to_string()).map_err(LoadError::Invalid)?;
    Snapshot::build(Arc::new(config.into()), defaults, previous).map_err(LoadError::Build)
}

/// The background task that watches the file and runs health checks.
pub struct FileStore {
    pub live: Arc<Live>,
    pub path: PathBuf,
    pub defaults: Timeouts,
    pub debounce: Duration,
    /// Whether to watch the file at all (`FileStore.watch`).
    pub watch: bool,
    /// Revisions, events and the text last applied or written by the
    /// management API (to skip events that change nothing, our own writes
    /// included).
    pub shared: Arc<crate::admin::store::FileConfigStore>,
}

#[async_trait::async_trait]
impl BackgroundService for FileStore {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        crate::server::control_plane_thread();
        let (tx, mut rx) = mpsc::channel::<()>(16);
        let name = self.path.file_name().map(|n| n.to_owned());
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // Only changes: reading the file ourselves raises open/access
            // events, and reacting to those would re-read it forever.
            if let Ok(e) = event
                && matches!(
                    e.kind,
                    notify::EventKind::Create(_)
                        | notify::EventKind::Modify(
                            notify::event::ModifyKind::Data(_)
                                | notify::event::ModifyKind::Name(_)
                                | notify::event::ModifyKind::Any
                        )
                        | notify::EventKind::Remove(_)
                        | notify::EventKind::Access(notify::event::AccessKind::Close(notify::event::AccessMode::Write))
                )
                && e.paths.iter().any(|p| p.file_name() == name.as_deref())
            {
                let _ = tx.try_send(());
            }
        });
        // Kept alive for the whole loop: dropping it stops the events.
        let _watcher = match watcher {
            Ok(mut w) if self.watch => {
                match notify::Watcher::watch(&mut w, &dir, notify::RecursiveMode::NonRecursive) {
                    Ok(()) => Some(w),
                    Err(e) => {
                        log::error!("file store: cannot watch {}: {e}; changes need a restart", dir.display());
                        None
                    }
                }
            }
            Ok(_) => None,
            Err(e) => {
                log::error!("file store: cannot watch {}: {e}; changes need a restart", self.path.display());
                None
            }
        };
        // A change made between the first load and the watch being set up
        // raised no event: look once (a no-op when the file is unchanged).
        if _watcher.is_some() {
            self.reload().await;
        }
        let mut checks = HealthChecks::default();
        checks.sync(&self.live.load());
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                Some(()) = rx.recv() => {
                    // Editors write in several steps: wait for the burst to end.
                    tokio::time::sleep(self.debounce).await;
                    while rx.try_recv().is_ok() {}
                    self.reload().await;
                    checks.sync(&self.live.load());
                }
            }
        }
        checks.stop_all();
    }
}

impl FileStore {
    async fn reload(&self) {
        // The event was for the management API's own write (one stat, no
        // read and no hand-off to a blocking thread).
        if self.shared.is_own_write(&self.path) {
            return;
        }
        let previous = self.live.load();
        let path = self.path.clone();
        let defaults = self.defaults;
        let base = self.shared.revision();
        let applied = self.shared.applied_text();
        let result = tokio::task::spawn_blocking(move || {
            let text = match read(&path) {
                Ok(t) if t == applied => return None,
                Ok(t) => t,
                Err(e) => return Some(Err(e)),
            };
            Some(compile(&path, &text, defaults, Some(&previous)).map(|s| (s, text)))
        })
        .await;
        match result {
            Ok(None) => {}
            Ok(Some(Ok((snapshot, text)))) => {
                let routes = snapshot.routes.len();
                if self.shared.external_change(base, text, snapshot) {
                    log::info!(
                        "config reloaded from {} ({routes} routes, revision {})",
                        self.path.display(),
                        self.shared.revision()
                    );
                }
            }
            Ok(Some(Err(e))) => {
                log::error!("config change rejected, still serving the previous config:\n{e}");
                self.shared.set_error(e.to_string());
            }
            Err(e) => log::error!("config reload failed: {e}"),
        }
    }
}

/// One task per upstream with active health checks.
#[derive(Default)]
pub struct HealthChecks {
    running: HashMap<usize, (Arc<Upstream>, Vec<JoinHandle<()>>)>,
}

impl HealthChecks {
    /// Starts checks for new upstreams and stops those no longer served.
    pub fn sync(&mut self, snapshot: &Snapshot) {
        let mut wanted: HashMap<usize, Arc<Upstream>> = HashMap::new();
        for u in snapshot.upstreams.values() {
            if !u.health_checks().is_empty() {
                wanted.insert(Arc::as_ptr(u) as usize, u.clone());
            }
        }
        self.running.retain(|key, (_, tasks)| {
            let keep = wanted.contains_key(key);
            if !keep {
                tasks.iter().for_each(JoinHandle::abort);
            }
            keep
        });
        for (key, upstream) in wanted {
            if self.running.contains_key(&key) {
                continue;
            }
            let tasks = upstream
                .health_checks()
                .into_iter()
                .map(|(target, interval)| {
                    tokio::spawn(async move {
                        loop {
                            target.backends().run_health_check(true).await;
                            tokio::time::sleep(interval).await;
                        }
                    })
                })
                .collect();
            self.running.insert(key, (upstream, tasks));
        }
    }

    pub fn stop_all(&mut self) {
        for (_, (_, tasks)) in self.running.drain() {
            tasks.iter().for_each(JoinHandle::abort);
        }
    }
}
