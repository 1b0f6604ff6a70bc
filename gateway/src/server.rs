//! Assembles the Pingora server from the bootstrap settings: one proxy
//! service per listener (HTTP/1.1 and h2c, or TLS with certificates by SNI
//! and HTTP/2 by ALPN), and the file store's background task.
//!
//! Signals are Pingora's: SIGTERM stops accepting, drains the requests in
//! flight and exits (graceful shutdown), SIGQUIT first hands the listeners
//! to a new process started with `--upgrade` (graceful upgrade), SIGINT
//! exits at once. Pingora alone would wait the whole grace period even
//! when nothing is in flight; [`Drain`] exits as soon as the last request
//! has finished, and Pingora's grace period stays the upper bound.
//!
//! Pingora also drops, the moment its listeners stop, every connection
//! waiting for a request, even one accepted a moment before whose request
//! is on the wire. [`Lingering`] holds that back for [`LINGER`], so a
//! request already sent is answered (with `Connection: close`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pingora_config::v1;
use pingora_core::apps::{HttpServerOptions, ServerApp};
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::protocols::Stream;
use pingora_core::server::Server;
use pingora_core::server::ShutdownWatch;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::services::background::{BackgroundService, background_service};
use pingora_core::services::listening::Service;

use crate::Live;
use crate::proxy::Gateway;
use crate::snapshot::Timeouts;
use crate::store::{self, FileStore};
use crate::tls::{CertifiedKey, SniCallback};
use crate::upstream::duration;

/// How to run.
pub struct RunOptions {
    /// The config file (the file store).
    pub config: PathBuf,
    /// Take the listeners over from a running gateway (graceful upgrade).
    pub upgrade: bool,
    pub pid_file: Option<String>,
    pub upgrade_sock: Option<String>,
}

/// The default bootstrap: HTTP on 127.0.0.1:9080, file store.
pub fn default_bootstrap(config: &std::path::Path) -> v1::Bootstrap {
    v1::Bootstrap {
        listeners: vec![v1::Listener { name: "http".into(), address: "127.0.0.1:9080".into(), ..Default::default() }],
        store: Some(v1::Store {
            backend: Some(v1::store::Backend::File(v1::FileStore {
                path: config.display().to_string(),
                ..Default::default()
            })),
        }),
        ..Default::default()
    }
}

/// Starts the gateway; returns only on a startup error.
pub fn run(bootstrap: v1::Bootstrap, options: RunOptions) -> Result<(), String> {
    let defaults = Timeouts::DEFAULT;
    let defaults = match bootstrap.upstream_defaults.as_ref().and_then(|d| d.timeouts.as_ref()) {
        Some(t) => Timeouts {
            connect: t.connect.as_ref().map(duration).unwrap_or(defaults.connect),
            send: t.send.as_ref().map(duration).unwrap_or(defaults.send),
            read: t.read.as_ref().map(duration).unwrap_or(defaults.read),
        },
        None => defaults,
    };
    let admin_settings = crate::admin::Settings::from_bootstrap(&bootstrap)?;
    let etcd_opts = match bootstrap.store.as_ref().and_then(|s| s.backend.as_ref()) {
        Some(v1::store::Backend::Etcd(e)) => Some(e.clone()),
        _ => None,
    };
    // The file store loads its file here; the etcd store its keys (or its
    // cache while etcd is unreachable).
    let (live, source) = match etcd_opts {
        Some(e) => {
            let settings = crate::admin::etcd::Settings::from_bootstrap(
                &e,
                admin_settings.node_id.clone(),
                admin_settings.address.to_string(),
            );
            let (store, live) = crate::admin::etcd::EtcdConfigStore::open(settings, defaults)?;
            (live, Source::Etcd(store))
        }
        None => {
            let (snapshot, text) = store::load(&options.config, defaults, None).map_err(|e| e.to_string())?;
            log::info!("loaded {} ({} routes)", options.config.display(), snapshot.routes.len());
            let config = snapshot.config.clone();
            (Arc::new(Live::new(snapshot)), Source::File(text, config))
        }
    };
    let in_flight = Arc::new(AtomicUsize::new(0));
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let file_opts = match bootstrap.store.as_ref().and_then(|s| s.backend.as_ref()) {
        Some(v1::store::Backend::File(f)) => Some(f.clone()),
        _ => None,
    };
    let first = bootstrap.listeners.first().map(|l| l.address.replace([':', '[', ']'], "_")).unwrap_or_default();
    let grace = bootstrap
        .shutdown
        .as_ref()
        .and_then(|s| s.graceful_timeout.as_ref())
        .map(duration)
        .unwrap_or(Duration::from_secs(30));
    let conf = ServerConf {
        threads: bootstrap
            .threads
            .map(|t| t as usize)
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
            .max(1),
        pid_file: options.pid_file.unwrap_or_else(|| format!("/tmp/pingora-config-{first}.pid")),
        upgrade_sock: options.upgrade_sock.unwrap_or_else(|| format!("/tmp/pingora-config-{first}.sock")),
        grace_period_seconds: Some(grace.as_secs().max(1)),
        graceful_shutdown_timeout_seconds: Some(grace.as_secs().max(1)),
        // One single-threaded runtime per thread: measured 33 -> 28.5 us of
        // CPU per proxied request against the work-stealing default.
        work_stealing: false,
        ..ServerConf::default()
    };
    let opt = Opt { upgrade: options.upgrade, ..Default::default() };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    for listener in &bootstrap.listeners {
        let mut proxy = pingora_proxy::http_proxy(
            &server.configuration,
            Gateway { live: live.clone(), in_flight: in_flight.clone(), draining: draining.clone() },
        );
        // Default: HTTP/2 by ALPN on TLS, HTTP/1.1 only on plaintext (h2c is opt-in).
        let http2 = listener.http2.unwrap_or(listener.tls.is_some());
        if http2 && listener.tls.is_none() {
            let mut o = HttpServerOptions::default();
            o.h2c = true;
            proxy.server_options = Some(o);
        }
        let mut service = Service::new(format!("listener {}", listener.name), Lingering(Arc::new(proxy)));
        match &listener.tls {
            None => {
                service.add_tcp(&listener.address);
            }
            Some(tls) => {
                let default = match &tls.default_certificate {
                    Some(c) => Some(
                        CertifiedKey::from_pem(&c.cert, &c.key)
                            .map_err(|e| format!("listener {}: {e}", listener.name))?,
                    ),
                    None => None,
                };
                let mut settings = TlsSettings::with_callbacks(Box::new(SniCallback { live: live.clone(), default }))
                    .map_err(|e| format!("listener {}: {e}", listener.name))?;
                let min = match tls.min_version() {
                    v1::listener_tls::TlsVersion::Tls13 => pingora_core::tls::ssl::SslVersion::TLS1_3,
                    _ => pingora_core::tls::ssl::SslVersion::TLS1_2,
                };
                settings.set_min_proto_version(Some(min)).map_err(|e| format!("listener {}: {e}", listener.name))?;
                if http2 {
                    settings.enable_h2();
                }
                service.add_tls_with_settings(&listener.address, None, settings);
            }
        }
        server.add_service(service);
    }
    let sinks = crate::admin::sinks::Sinks::start(&bootstrap.event_sinks);
    let (writer, background): (_, AddService) = match source {
        Source::Etcd(shared) => {
            let writer = Arc::new(crate::admin::write::Writer::new(Arc::new(shared), live.clone(), defaults));
            let checks = crate::admin::etcd::HealthCheckService { live: live.clone() };
            (
                writer,
                Box::new(move |server: &mut Server| {
                    server.add_service(background_service("health checks", checks));
                }),
            )
        }
        Source::File(text, config) => {
            let debounce = file_opts
                .as_ref()
                .and_then(|f| f.watch_debounce.as_ref())
                .map(duration)
                .unwrap_or(Duration::from_millis(100));
            let watch = file_opts.as_ref().and_then(|f| f.watch).unwrap_or(true);
            let keep_versions = file_opts.as_ref().and_then(|f| f.keep_versions).unwrap_or(10);
            let shared = Arc::new(crate::admin::store::FileConfigStore::open(
                options.config.clone(),
                keep_versions,
                live.clone(),
                text,
                config,
                admin_settings.node_id.clone(),
            ));
            let writer = Arc::new(crate::admin::write::Writer::new(Arc::new(shared.clone()), live.clone(), defaults));
            let store =
                FileStore { live: live.clone(), path: options.config.clone(), defaults, debounce, watch, shared };
            (
                writer,
                Box::new(move |server: &mut Server| {
                    server.add_service(background_service("file store", store));
                }),
            )
        }
    };
    if let Some(sinks) = sinks {
        server.add_service(background_service("event sinks", sinks.service(writer.clone())));
    }
    let admin = crate::admin::Admin::new(admin_settings, writer, options.upgrade, server.watch_execution_phase())?;
    server.add_service(background_service("admin", admin));
    background(&mut server);
    let phases = std::sync::Mutex::new(Some(server.watch_execution_phase()));
    server.add_service(background_service("drain", Drain { in_flight, draining, phases }));
    server.run_forever()
}

/// How long connections waiting for a request are kept once the listeners
/// have stopped (see [`Lingering`]). [`Drain`] waits this long too.
const LINGER: Duration = Duration::from_millis(500);

/// A listener's proxy, whose connections waiting for a request are closed
/// [`LINGER`] after its listeners stop rather than at once.
///
/// Pingora's cleanup wakes every connection parked on reading a request and
/// drops it. That is right for an idle pooled connection, but a connection
/// accepted just before the listener stopped (its request still on the
/// wire), or a pooled one the client reused just then, would be cut with
/// the request sent: the graceful upgrade test caught one such connection
/// in 8,470 requests. Until the cleanup runs, such requests are served as
/// usual, with `Connection: close` since shutdown has begun.
struct Lingering<A>(Arc<A>);

#[async_trait::async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Lingering<A> {
    // Written out as `async_trait` would expand it, to hand the proxy's
    // own boxed future back rather than box and poll it once more (a
    // connection's every wake-up goes through here).
    fn process_new<'life0, 'life1, 'async_trait>(
        self: &'life0 Arc<Self>,
        session: Stream,
        shutdown: &'life1 ShutdownWatch,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Stream>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.0.process_new(session, shutdown)
    }

    async fn cleanup(&self) {
        tokio::time::sleep(LINGER).await;
        self.0.cleanup().await;
    }
}

/// Adds the store's background service.
type AddService = Box<dyn FnOnce(&mut Server)>;

/// Where the config comes from.
enum Source {
    File(String, Arc<crate::shared::SharedConfig>),
    Etcd(Arc<crate::admin::etcd::EtcdConfigStore>),
}

/// Exits the process once shutdown has begun and no request is in flight.
struct Drain {
    in_flight: Arc<AtomicUsize>,
    draining: Arc<std::sync::atomic::AtomicBool>,
    phases: std::sync::Mutex<Option<tokio::sync::broadcast::Receiver<pingora_core::server::ExecutionPhase>>>,
}

#[async_trait::async_trait]
impl BackgroundService for Drain {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let phases = self.phases.lock().ok().and_then(|mut p| p.take());
        if let Some(mut phases) = phases {
            let draining = self.draining.clone();
            tokio::spawn(async move {
                use pingora_core::server::ExecutionPhase as P;
                use tokio::sync::broadcast::error::RecvError;
                loop {
                    match phases.recv().await {
                        Ok(
                            P::GracefulUpgradeTransferringFds | P::GracefulUpgradeCloseTimeout | P::GracefulTerminate,
                        ) => draining.store(true, Ordering::Relaxed),
                        Ok(_) | Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed) => return,
                    }
                }
            });
        }
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
        log::info!("shutting down: draining {} request(s) in flight", self.in_flight.load(Ordering::Relaxed));
        // Connections accepted just before the listeners stopped get the
        // listeners' LINGER to send their request (which then counts as in
        // flight), and a little more for it to be read.
        tokio::time::sleep(LINGER + Duration::from_millis(100)).await;
        while self.in_flight.load(Ordering::Relaxed) > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        log::info!("drained; exiting");
        std::process::exit(0);
    }
}

/// Makes the calling thread a control-plane thread: the admin API, the
/// stores, the event sinks and the health checks call it as they start,
/// and every thread they start later (tokio's blocking pool, the file
/// watcher) inherits it.
///
/// Such threads run under `SCHED_BATCH`, so that waking up (a write
/// arriving, an fsync completing) never preempts a worker in the middle of
/// requests, and at nice 5, so that under full load they get about a
/// quarter of a contended CPU, not half. Measured with `make
/// bench-propagation`: see bench/README.md. Where the OS refuses (or is not
/// Linux), the thread stays as it was.
pub fn control_plane_thread() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy};
        // thread-priority maps 0..=99 onto nice 19..=-20 for the normal
        // policies: 35 is nice 5 (checked by a test).
        let priority = ThreadPriority::Crossplatform(CONTROL_PLANE_PRIORITY.try_into().unwrap_or_default());
        let policy = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch);
        if let Err(e) =
            thread_priority::set_thread_priority_and_policy(thread_priority::thread_native_id(), priority, policy)
        {
            log::debug!("control plane: cannot lower this thread's priority: {e:?}");
        }
    }
}

/// See [`control_plane_thread`]: nice 5.
const CONTROL_PLANE_PRIORITY: u8 = 35;
#[cfg(target_os = "linux")]
const CONTROL_PLANE_NICE: i32 = 5;

/// A control-plane thread lowered to `SCHED_IDLE` by [`idle_thread`]
/// until this is dropped.
pub struct IdleThread {
    id: Option<NativeThread>,
}

/// A thread as the OS knows it, to raise it from another thread.
#[cfg(target_os = "linux")]
pub type NativeThread = thread_priority::ThreadId;
#[cfg(not(target_os = "linux"))]
pub type NativeThread = ();

/// Lowers the calling control-plane thread to `SCHED_IDLE` until the guard
/// is dropped (then it is a [`control_plane_thread`] again): it runs only
/// on CPU that no other thread wants, and any worker waking up takes the
/// CPU from it at once. The write path's heavy work (planning, persisting,
/// compiling a batch) runs so: on a loaded 2-CPU machine it then fills the
/// gaps the data plane leaves instead of taking its turn between requests
/// (measured in bench/README.md, "Propagation"). It could starve on a
/// machine with no idle CPU: [`raise_to_control_plane`] bounds that.
pub fn idle_thread() -> IdleThread {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy};
        let id = thread_priority::thread_native_id();
        let policy = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        match thread_priority::set_thread_priority_and_policy(id, ThreadPriority::Min, policy) {
            Ok(()) => {
                // Setting the policy set nice 0; the nice value is kept
                // (though unused) while idle, and is 5 again once raised.
                let _ = rustix::process::setpriority_process(None, CONTROL_PLANE_NICE);
                IdleThread { id: Some(id) }
            }
            Err(e) => {
                log::debug!("control plane: cannot make this thread idle: {e:?}");
                IdleThread { id: None }
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    IdleThread { id: None }
}

impl IdleThread {
    /// The thread, when it was made idle.
    pub fn id(&self) -> Option<NativeThread> {
        self.id
    }
}

impl Drop for IdleThread {
    fn drop(&mut self) {
        if self.id.is_some() {
            control_plane_thread();
        }
    }
}

/// Raises a thread made idle by [`idle_thread`] back to `SCHED_BATCH`
/// (its nice value, 5, was kept while it was idle). Called from another
/// control-plane thread: `thread-priority` sets the policy of `thread`
/// and the nice value of the calling thread, which is already 5.
pub fn raise_to_control_plane(thread: NativeThread) {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy};
        let priority = ThreadPriority::Crossplatform(CONTROL_PLANE_PRIORITY.try_into().unwrap_or_default());
        let policy = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch);
        if let Err(e) = thread_priority::set_thread_priority_and_policy(thread, priority, policy) {
            log::debug!("control plane: cannot raise an idle thread: {e:?}");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = thread;
}

#[cfg(all(test, target_os = "linux"))]
pub(crate) mod tests {
    /// (policy, nice) of the calling thread, from /proc.
    pub(crate) fn scheduling() -> (u64, i64) {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_else(|e| panic!("{e}"));
        // The fields after the command name, which is in parentheses:
        // nice is field 19 and the policy field 41, counted from 1 with the
        // pid and the command name first.
        let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse().ok()).unwrap_or_else(|| panic!("{stat}"));
        (field(41) as u64, field(19))
    }

    #[test]
    fn a_control_plane_thread_runs_as_batch_at_nice_5_and_the_threads_it_starts_inherit_that() {
        const SCHED_BATCH: u64 = 3;
        let (own, child) = std::thread::spawn(|| {
            super::control_plane_thread();
            let child = std::thread::spawn(scheduling).join();
            (scheduling(), child)
        })
        .join()
        .unwrap_or_else(|_| panic!("the test thread panicked"));
        assert_eq!(own, (SCHED_BATCH, 5));
        assert_eq!(child.unwrap_or_else(|_| panic!("the child thread panicked")), (SCHED_BATCH, 5));
    }

    #[test]
    fn an_idle_thread_is_raised_from_another_thread_and_is_a_control_plane_thread_again_after() {
        const SCHED_BATCH: u64 = 3;
        const SCHED_IDLE: u64 = 5;
        let (to_main, from_thread) = std::sync::mpsc::channel();
        let (to_thread, from_main) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            super::control_plane_thread();
            let idle = super::idle_thread();
            let _ = to_main.send((idle.id(), scheduling()));
            let _ = from_main.recv();
            let raised = scheduling();
            drop(idle);
            (raised, scheduling())
        });
        let (id, idle) = from_thread.recv().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(idle.0, SCHED_IDLE);
        // Raised by a control-plane thread (nice 5, as the caller's nice is set too).
        std::thread::spawn(move || {
            super::control_plane_thread();
            super::raise_to_control_plane(id.unwrap_or_else(|| panic!("not made idle")));
        })
        .join()
        .unwrap_or_else(|_| panic!("the raising thread panicked"));
        let _ = to_thread.send(());
        let (raised, after) = thread.join().unwrap_or_else(|_| panic!("the test thread panicked"));
        assert_eq!(raised, (SCHED_BATCH, 5));
        assert_eq!(after, (SCHED_BATCH, 5));
    }
}
