//! Dialling the admin listener: address, API key, TLS and timeouts.

use std::path::PathBuf;
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::Error;
use crate::v1;
use crate::v1::config_service_client::ConfigServiceClient;
use crate::v1::event_service_client::EventServiceClient;
use crate::v1::resource_service_client::ResourceServiceClient;
use crate::v1::status_service_client::StatusServiceClient;

/// How to reach a gateway's admin listener.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// `host:port` (plaintext HTTP/2, as the admin listener serves by
    /// default), `http://host:port`, or `https://host:port` (TLS).
    pub addr: String,
    /// Sent on every call as `authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// TLS settings; set, the connection uses TLS whatever the scheme.
    pub tls: Option<TlsOptions>,
    /// Longest wait for the connection. Default 5 s.
    pub connect_timeout: Duration,
    /// Longest wait for a unary call's answer (not applied to Watch).
    /// Default 30 s.
    pub timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            addr: "127.0.0.1:9180".into(),
            api_key: None,
            tls: None,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
        }
    }
}

/// TLS to the admin listener (`Bootstrap.admin.tls`).
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// CA certificates (PEM) the server's certificate must chain to, besides
    /// the public web roots.
    pub ca_file: Option<PathBuf>,
    /// Name to check the server's certificate against. Default: the host of
    /// the address.
    pub server_name: Option<String>,
    /// Client certificate and key (PEM), for an admin listener that asks for
    /// one (`AdminTls.client_ca`).
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// The transport every generated client of [`Client`] runs on.
pub type Transport = InterceptedService<Channel, ApiKeyInterceptor>;

/// Adds `authorization: Bearer <key>` to every call.
#[derive(Clone)]
pub struct ApiKeyInterceptor(Option<MetadataValue<Ascii>>);

impl Interceptor for ApiKeyInterceptor {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(k) = &self.0 {
            req.metadata_mut().insert("authorization", k.clone());
        }
        Ok(req)
    }
}

/// A client of one gateway's management API: the generated tonic clients of
/// its four services, and typed helpers over them.
#[derive(Clone)]
pub struct Client {
    /// `pingora_config.v1.ResourceService`.
    pub resources: ResourceServiceClient<Transport>,
    /// `pingora_config.v1.ConfigService`.
    pub config: ConfigServiceClient<Transport>,
    /// `pingora_config.v1.EventService`.
    pub events: EventServiceClient<Transport>,
    /// `pingora_config.v1.StatusService`.
    pub status: StatusServiceClient<Transport>,
    addr: String,
}

impl Client {
    /// Connects now: an unreachable gateway is an [`Error::Connect`].
    pub async fn connect(options: &ConnectOptions) -> Result<Client, Error> {
        let endpoint = endpoint(options)?;
        let channel =
            endpoint.connect().await.map_err(|e| Error::Connect { addr: options.addr.clone(), detail: causes(&e) })?;
        Self::over(channel, options)
    }

    /// Connects at the first call, and again after the connection is lost
    /// (for a long-running watch).
    pub fn connect_lazy(options: &ConnectOptions) -> Result<Client, Error> {
        let channel = endpoint(options)?.connect_lazy();
        Self::over(channel, options)
    }

    fn over(channel: Channel, options: &ConnectOptions) -> Result<Client, Error> {
        let key = match &options.api_key {
            Some(k) => Some(
                format!("Bearer {k}")
                    .parse::<MetadataValue<Ascii>>()
                    .map_err(|_| Error::Options("the API key must be printable ASCII".into()))?,
            ),
            None => None,
        };
        let auth = ApiKeyInterceptor(key);
        Ok(Client {
            resources: ResourceServiceClient::with_interceptor(channel.clone(), auth.clone()),
            config: ConfigServiceClient::with_interceptor(channel.clone(), auth.clone()),
            events: EventServiceClient::with_interceptor(channel.clone(), auth.clone()),
            status: StatusServiceClient::with_interceptor(channel, auth),
            addr: options.addr.clone(),
        })
    }

    /// The address this client dials.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `ConfigService.ApplyConfig`: the diff, and with `dry_run` false the
    /// write. `expected_revision` 0 applies over whatever is stored.
    pub async fn apply(
        &mut self,
        config: v1::Config,
        expected_revision: i64,
        dry_run: bool,
    ) -> Result<v1::ApplyConfigResponse, Error> {
        let req = v1::ApplyConfigRequest { config: Some(config), expected_revision, dry_run };
        Ok(self.config.apply_config(req).await?.into_inner())
    }

    /// `ConfigService.ExportConfig`: the stored config, secrets redacted.
    pub async fn export(&mut self) -> Result<v1::ExportConfigResponse, Error> {
        Ok(self.config.export_config(v1::ExportConfigRequest {}).await?.into_inner())
    }

    /// `ConfigService.ValidateConfig`: every violation of a config, checked
    /// by the gateway.
    pub async fn validate(&mut self, config: v1::Config) -> Result<v1::ValidateConfigResponse, Error> {
        Ok(self.config.validate_config(v1::ValidateConfigRequest { config: Some(config) }).await?.into_inner())
    }

    /// `StatusService.GetStatus`: the state of the node that answers.
    pub async fn node_status(&mut self) -> Result<v1::NodeStatus, Error> {
        Ok(self.status.get_status(v1::GetStatusRequest {}).await?.into_inner())
    }
}

/// Parses the address and applies the TLS settings and timeouts.
fn endpoint(options: &ConnectOptions) -> Result<Endpoint, Error> {
    let addr = options.addr.trim();
    if addr.is_empty() {
        return Err(Error::Options("no address: give --addr, PCFG_ADDR or `addr` in the config file".into()));
    }
    let (url, tls_by_scheme) = if addr.starts_with("https://") {
        (addr.to_owned(), true)
    } else if addr.starts_with("http://") {
        (addr.to_owned(), false)
    } else if addr.contains("://") {
        return Err(Error::Options(format!("address `{addr}`: the scheme must be http:// or https://")));
    } else {
        (format!("http://{addr}"), false)
    };
    let use_tls = tls_by_scheme || options.tls.is_some();
    let url = if use_tls && !tls_by_scheme { url.replacen("http://", "https://", 1) } else { url };
    let mut endpoint = Endpoint::from_shared(url)
        .map_err(|e| Error::Options(format!("address `{addr}` is not host:port or a URL: {e}")))?
        .connect_timeout(options.connect_timeout)
        .timeout(options.timeout);
    if use_tls {
        endpoint = endpoint
            .tls_config(tls_config(options.tls.as_ref().cloned().unwrap_or_default())?)
            .map_err(|e| Error::Options(format!("TLS settings: {}", causes(&e))))?;
    }
    Ok(endpoint)
}

fn tls_config(tls: TlsOptions) -> Result<ClientTlsConfig, Error> {
    let read = |p: &PathBuf| std::fs::read(p).map_err(|source| Error::Io { path: p.display().to_string(), source });
    let mut config = ClientTlsConfig::new().with_webpki_roots();
    if let Some(ca) = &tls.ca_file {
        config = config.ca_certificate(Certificate::from_pem(read(ca)?));
    }
    if let Some(name) = tls.server_name {
        config = config.domain_name(name);
    }
    if let Some((cert, key)) = &tls.client_cert {
        config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(config)
}

/// An error and its sources, `a: b: c` (tonic's transport errors say little
/// at the top).
pub(crate) fn causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_address_is_plaintext_and_https_or_tls_options_mean_tls() {
        let plain = ConnectOptions { addr: "127.0.0.1:9180".into(), ..Default::default() };
        assert_eq!(endpoint(&plain).map(|e| e.uri().to_string()).ok(), Some("http://127.0.0.1:9180/".into()));
        let tls = ConnectOptions { addr: "gw:9180".into(), tls: Some(TlsOptions::default()), ..Default::default() };
        assert_eq!(endpoint(&tls).map(|e| e.uri().to_string()).ok(), Some("https://gw:9180/".into()));
        let bad = ConnectOptions { addr: "ftp://gw".into(), ..Default::default() };
        assert!(matches!(endpoint(&bad), Err(Error::Options(_))));
    }
}
