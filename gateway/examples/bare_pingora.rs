//! The floor under the gateway: a bare Pingora reverse proxy with one fixed
//! upstream and nothing else (no routing, no config, no plugins, no headers
//! added), on the same server settings as the gateway (one single-threaded
//! runtime, `work_stealing: false`) and the same allocator. `bench/run.sh`
//! runs it beside nginx and the gateway, so every benchmark run shows how
//! much of the gap to nginx is Pingora's own request path and how much is
//! ours.
//!
//! ```text
//! cargo run --profile production -p pingora-config-gateway --example bare_pingora -- 127.0.0.1:8080 127.0.0.1:8081
//! ```

use async_trait::async_trait;
use pingora_core::server::Server;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::Result;
use pingora_proxy::{ProxyHttp, Session};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Bare {
    upstream: std::net::SocketAddr,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: bare_pingora LISTEN_ADDR UPSTREAM_ADDR");
        std::process::exit(2);
    };
    let Ok(upstream) = upstream.parse() else {
        eprintln!("bare_pingora: {upstream} is not an address:port");
        std::process::exit(2);
    };
    let pid = std::env::temp_dir().join(format!("bare-pingora-{}.pid", std::process::id()));
    let conf = ServerConf {
        threads: 1,
        work_stealing: false,
        pid_file: pid.display().to_string(),
        upgrade_sock: pid.with_extension("sock").display().to_string(),
        // Exit soon after SIGTERM, as the gateway does in the benchmark
        // (Pingora's default waits a minute): bench/run.sh stops it with
        // SIGKILL after 5 s, and a profiling build writes its profile only
        // when it exits.
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let mut service = pingora_proxy::http_proxy_service(&server.configuration, Bare { upstream });
    service.add_tcp(&listen);
    server.add_service(service);
    server.run_forever();
}
