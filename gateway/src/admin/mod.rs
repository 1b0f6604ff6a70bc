//! The management service, embedded in the gateway process: tonic gRPC and
//! grpc-web (`tonic-web`, CORS for `admin.cors_allowed_origins`) on the
//! bootstrap's admin listener, with gRPC health, server reflection and the
//! Prometheus metrics (`GET <metrics.path>`) on the same port.
//!
//! - [`resources`]: `ResourceService`, CRUD for every kind of resource;
//! - [`services`]: `ConfigService`, `StatusService`, `EventService`;
//! - [`write`]: the one write path (validate the whole config, build the
//!   snapshot, then store and swap);
//! - [`store`]: the [`store::ConfigStore`] seam, the file store's
//!   revisions, atomic writes and kept versions, the event history;
//! - [`auth`]: API keys and roles;
//! - [`json`]: secrets redaction, diffs, the YAML written.
//!
//! The listener runs as a Pingora background service with its own tokio
//! listener. It stops on Pingora's shutdown, and also as soon as a graceful
//! upgrade starts handing the listeners over (SIGQUIT), so that the new
//! process, which retries binding the admin address, takes it over.

pub mod auth;
pub mod edit;
pub mod etcd;
pub mod json;
pub mod resources;
pub mod services;
pub mod sinks;
pub mod store;
pub mod write;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use pingora_config::v1;
use pingora_core::server::{ExecutionPhase, ShutdownWatch};
use pingora_core::services::background::BackgroundService;
use tokio::sync::{broadcast, watch};

use crate::admin::auth::{AuthState, Keys};
use crate::admin::write::Writer;

/// The admin metrics, in the default registry ([`crate::metrics::render`]).
pub mod metrics {
    use std::sync::OnceLock;

    /// `pingora_config_store_revision`: the store revision this node applied.
    pub fn revision() -> &'static prometheus::IntGauge {
        static G: OnceLock<prometheus::IntGauge> = OnceLock::new();
        G.get_or_init(|| {
            let name = "pingora_config_store_revision";
            let help = "Store revision of the config this node runs.";
            prometheus::register_int_gauge!(name, help)
                .or_else(|_| prometheus::IntGauge::new(name, help))
                .unwrap_or_else(|_| unreachable!("a valid metric name"))
        })
    }

    /// `pingora_config_admin_write_batches_total`: batches of writes the
    /// committer stored (writes / batches is the mean batch size).
    pub fn batches() -> &'static prometheus::IntCounter {
        static C: OnceLock<prometheus::IntCounter> = OnceLock::new();
        C.get_or_init(|| {
            let name = "pingora_config_admin_write_batches_total";
            let help = "Batches of writes committed together (group commit).";
            prometheus::register_int_counter!(name, help)
                .or_else(|_| prometheus::IntCounter::new(name, help))
                .unwrap_or_else(|_| unreachable!("a valid metric name"))
        })
    }

    /// `pingora_config_admin_write_batches_raised_total`: batches that
    /// found no idle CPU within `write::IDLE_WAIT` and were raised to the
    /// control plane's priority.
    pub fn raised() -> &'static prometheus::IntCounter {
        static C: OnceLock<prometheus::IntCounter> = OnceLock::new();
        C.get_or_init(|| {
            let name = "pingora_config_admin_write_batches_raised_total";
            let help = "Batches of writes raised from idle CPU to the control plane's priority after waiting.";
            prometheus::register_int_counter!(name, help)
                .or_else(|_| prometheus::IntCounter::new(name, help))
                .unwrap_or_else(|_| unreachable!("a valid metric name"))
        })
    }

    /// `pingora_config_admin_writes_total{outcome}`: writes through the
    /// management API by outcome (`applied`, `unchanged`, `rejected`,
    /// `aborted`, `failed`).
    pub fn writes() -> &'static prometheus::IntCounterVec {
        static C: OnceLock<prometheus::IntCounterVec> = OnceLock::new();
        C.get_or_init(|| {
            let opts = prometheus::Opts::new(
                "pingora_config_admin_writes_total",
                "Writes through the management API, by outcome.",
            );
            prometheus::register_int_counter_vec!(opts.clone(), &["outcome"])
                .or_else(|_| prometheus::IntCounterVec::new(opts, &["outcome"]))
                .unwrap_or_else(|_| unreachable!("a valid metric name"))
        })
    }
}

/// The default admin address.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:9180";

/// The admin listener's settings, from the bootstrap.
pub struct Settings {
    pub address: SocketAddr,
    pub keys: Vec<v1::ApiKey>,
    pub cors_allowed_origins: Vec<String>,
    /// `None`: no metrics endpoint.
    pub metrics_path: Option<String>,
    pub node_id: String,
    /// `admin.tls`: the certificate served and the client CA (mutual TLS).
    pub tls: Option<tonic::transport::ServerTlsConfig>,
    /// The built web UI served at `/ui/`, when enabled and present.
    pub ui_dir: Option<std::path::PathBuf>,
}

impl Settings {
    /// Reads the bootstrap; refuses keyless access on a non-loopback address.
    pub fn from_bootstrap(bootstrap: &v1::Bootstrap) -> Result<Settings, String> {
        let admin = bootstrap.admin.clone().unwrap_or_default();
        let address = if admin.address.is_empty() { DEFAULT_ADDRESS.to_owned() } else { admin.address.clone() };
        let address: SocketAddr =
            address.parse().map_err(|e| format!("admin.address `{address}` is not an address and port: {e}"))?;
        if admin.api_keys.is_empty() && !address.ip().is_loopback() {
            return Err(format!(
                "admin.address {address} is not a loopback address and admin.api_keys is empty: anyone who can \
                 reach it could change the config. Add an API key, or listen on 127.0.0.1"
            ));
        }
        let tls = match &admin.tls {
            None => None,
            Some(t) => {
                let cert = t.certificate.clone().unwrap_or_default();
                let mut config = tonic::transport::ServerTlsConfig::new()
                    .identity(tonic::transport::Identity::from_pem(&cert.cert, &cert.key));
                if !t.client_ca.is_empty() {
                    config = config.client_ca_root(tonic::transport::Certificate::from_pem(&t.client_ca));
                }
                // Built once here so that a bad certificate fails the start.
                tonic::transport::Server::builder()
                    .tls_config(config.clone())
                    .map_err(|e| format!("admin.tls: {e}: {:?}", std::error::Error::source(&e)))?;
                Some(config)
            }
        };
        let metrics = bootstrap.metrics.clone().unwrap_or_default();
        let metrics_path = if metrics.enabled.unwrap_or(true) {
            Some(if metrics.path.is_empty() { "/metrics".to_owned() } else { metrics.path })
        } else {
            None
        };
        let node_id = if bootstrap.node_id.is_empty() { hostname() } else { bootstrap.node_id.clone() };
        let ui_dir = if admin.serve_ui.unwrap_or(true) {
            let dir =
                std::path::PathBuf::from(if admin.ui_dir.is_empty() { "web/dist" } else { admin.ui_dir.as_str() });
            if dir.join("index.html").is_file() {
                Some(dir)
            } else {
                log::info!("admin: no web UI at {} (build it with `make web`); serving the API alone", dir.display());
                None
            }
        } else {
            None
        };
        Ok(Settings {
            ui_dir,
            address,
            keys: admin.api_keys,
            cors_allowed_origins: admin.cors_allowed_origins,
            metrics_path,
            node_id,
            tls,
        })
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gateway".into())
}

/// The admin listener as a Pingora background service.
pub struct Admin {
    pub settings: Settings,
    pub writer: Arc<Writer>,
    /// Bound at start (so that a taken port fails the start); `None` during
    /// a graceful upgrade, where the old process still holds it.
    listener: Mutex<Option<std::net::TcpListener>>,
    phases: Mutex<Option<broadcast::Receiver<ExecutionPhase>>>,
}

impl Admin {
    /// Binds the admin address now unless `upgrade` (then it is bound once
    /// the old process lets it go).
    pub fn new(
        settings: Settings,
        writer: Arc<Writer>,
        upgrade: bool,
        phases: broadcast::Receiver<ExecutionPhase>,
    ) -> Result<Admin, String> {
        let listener = if upgrade {
            None
        } else {
            Some(bind(settings.address).map_err(|e| format!("admin listener {}: {e}", settings.address))?)
        };
        Ok(Admin { settings, writer, listener: Mutex::new(listener), phases: Mutex::new(Some(phases)) })
    }

    fn router(&self, shutdown: watch::Receiver<bool>) -> Result<tonic::service::Routes, String> {
        use pingora_config::v1::config_service_server::ConfigServiceServer;
        use pingora_config::v1::event_service_server::EventServiceServer;
        use pingora_config::v1::resource_service_server::ResourceServiceServer;
        use pingora_config::v1::status_service_server::StatusServiceServer;

        let node = Arc::new(services::Node { id: self.settings.node_id.clone(), start: SystemTime::now() });
        let (health_reporter, health) = tonic_health::server::health_reporter();
        tokio::spawn(async move {
            health_reporter.set_serving::<ResourceServiceServer<resources::Resources>>().await;
            health_reporter.set_serving::<ConfigServiceServer<services::Configs>>().await;
            health_reporter.set_serving::<EventServiceServer<services::Events>>().await;
            health_reporter.set_serving::<StatusServiceServer<services::Statuses>>().await;
        });
        let mut builder = tonic::service::Routes::builder();
        builder
            .add_service(ResourceServiceServer::new(resources::Resources { writer: self.writer.clone() }))
            .add_service(ConfigServiceServer::new(services::Configs { writer: self.writer.clone() }))
            .add_service(EventServiceServer::new(services::Events { writer: self.writer.clone(), shutdown }))
            .add_service(StatusServiceServer::new(services::Statuses { writer: self.writer.clone(), node }))
            .add_service(health);
        match tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pingora_config::DESCRIPTOR_SET)
            .build_v1()
        {
            Ok(reflection) => {
                builder.add_service(reflection);
            }
            Err(e) => log::warn!("admin: no server reflection: {e}"),
        }
        match tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pingora_config::DESCRIPTOR_SET)
            .build_v1alpha()
        {
            Ok(reflection) => {
                builder.add_service(reflection);
            }
            Err(e) => log::warn!("admin: no server reflection (v1alpha): {e}"),
        }
        let auth = Arc::new(AuthState {
            keys: Keys::new(&self.settings.keys),
            metrics_path: self.settings.metrics_path.clone().unwrap_or_default(),
        });
        let grpc = builder
            .routes()
            .prepare()
            .into_axum_router()
            .layer(axum::middleware::from_fn_with_state(auth, auth::middleware));
        // grpc-web wraps the gRPC services only: it answers any other
        // HTTP/1.1 request with 400, so plain routes go around it.
        let grpc = tower::Layer::layer(&tonic_web::GrpcWebLayer::new(), tonic::service::Routes::from(grpc));
        let mut router = axum::Router::new().fallback_service(grpc);
        if let Some(path) = &self.settings.metrics_path {
            router = router.route(
                path,
                axum::routing::get(|| async {
                    ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::metrics::render())
                }),
            );
        }
        if let Some(dir) = &self.settings.ui_dir {
            // A path the UI routes itself gets index.html.
            let files = tower_http::services::ServeDir::new(dir)
                .fallback(tower_http::services::ServeFile::new(dir.join("index.html")));
            router = router
                .nest_service("/ui/", files)
                .route("/ui", axum::routing::get(|| async { axum::response::Redirect::permanent("/ui/") }))
                .route("/", axum::routing::get(|| async { axum::response::Redirect::temporary("/ui/") }))
                // Browsers ask for it on every page; without this the
                // grpc-web layer would answer 400.
                .route("/favicon.ico", axum::routing::get(|| async { http::StatusCode::NO_CONTENT }));
        }
        Ok(tonic::service::Routes::from(router))
    }

    fn cors(&self) -> tower_http::cors::CorsLayer {
        use tower_http::cors::{AllowOrigin, CorsLayer};
        let origins: Vec<http::HeaderValue> =
            self.settings.cors_allowed_origins.iter().filter_map(|o| o.parse().ok()).collect();
        let headers = [
            "authorization",
            "content-type",
            "x-grpc-web",
            "x-user-agent",
            "grpc-timeout",
            "connect-protocol-version",
            "connect-timeout-ms",
        ]
        .map(http::HeaderName::from_static);
        let exposed = ["grpc-status", "grpc-message", "grpc-status-details-bin"].map(http::HeaderName::from_static);
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([http::Method::POST, http::Method::GET, http::Method::OPTIONS])
            .allow_headers(headers)
            .expose_headers(exposed)
            .max_age(Duration::from_secs(24 * 3600))
    }
}

fn bind(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(address)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

#[async_trait::async_trait]
impl BackgroundService for Admin {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        crate::server::control_plane_thread();
        // Stop on shutdown, or when a graceful upgrade starts handing over.
        let (stop_tx, stop_rx) = watch::channel(false);
        let phases = self.phases.lock().ok().and_then(|mut p| p.take());
        tokio::spawn(async move {
            let mut phases = phases;
            loop {
                let phase = async {
                    match phases.as_mut() {
                        Some(p) => p.recv().await.ok(),
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    r = shutdown.changed() => {
                        if r.is_err() || *shutdown.borrow() {
                            break;
                        }
                    }
                    p = phase => match p {
                        Some(ExecutionPhase::GracefulUpgradeTransferringFds) => break,
                        Some(_) => {}
                        None => phases = None,
                    }
                }
            }
            let _ = stop_tx.send(true);
        });
        tokio::spawn(reap(self.writer.live.clone(), stop_rx.clone()));

        let taken = self.listener.lock().ok().and_then(|mut l| l.take());
        let listener = match taken {
            Some(l) => l,
            None => {
                // Upgrade: the old process lets the address go when it
                // starts handing over.
                let mut stop = stop_rx.clone();
                let since = std::time::Instant::now();
                let mut warned = false;
                loop {
                    match bind(self.settings.address) {
                        Ok(l) => break l,
                        Err(_) if *stop.borrow() => return,
                        Err(e) => {
                            if !warned && since.elapsed() > Duration::from_secs(10) {
                                warned = true;
                                log::warn!(
                                    "admin listener {}: still cannot bind ({e}); retrying",
                                    self.settings.address
                                );
                            }
                            tokio::select! {
                                _ = stop.changed() => return,
                                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                            }
                        }
                    }
                }
            }
        };
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                log::error!("admin listener {}: {e}", self.settings.address);
                return;
            }
        };
        let routes = match self.router(stop_rx.clone()) {
            Ok(r) => r,
            Err(e) => {
                log::error!("admin listener: {e}");
                return;
            }
        };
        tokio::spawn(services::watch_health(self.writer.clone(), stop_rx.clone()));
        let mut stop = stop_rx;
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let mut server = tonic::transport::Server::builder();
        if let Some(tls) = &self.settings.tls {
            server = match server.tls_config(tls.clone()) {
                Ok(s) => s,
                Err(e) => {
                    log::error!("admin listener: TLS: {e}");
                    return;
                }
            };
        }
        let scheme = if self.settings.tls.is_some() { "https" } else { "http" };
        log::info!("admin API (gRPC, grpc-web) at {scheme}://{}", self.settings.address);
        let served = server
            .accept_http1(true)
            .layer(self.cors())
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        match served {
            Ok(()) => log::info!("admin API stopped"),
            Err(e) => log::error!("admin API: {e}"),
        }
    }
}

/// Frees, every second, the replaced snapshots that requests held when they
/// were replaced (see [`Live::reap`]), here on the control plane.
async fn reap(live: Arc<crate::Live>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        live.reap();
    }
}
