//! The pingora-config gateway binary.
//!
//! - `gateway run --config config.yaml [--bootstrap gateway.yaml]` serves
//!   the config, reloading it when the file changes.
//! - `gateway validate FILE...` checks config (or bootstrap) files with the
//!   same rules the running gateway applies, prints every error with its
//!   file, line, column and YAML path, and exits 0 when all are valid, 1
//!   otherwise.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// glibc's malloc took about a quarter of the gateway's user CPU per
/// request under load (perf); mimalloc's thread-local free lists make the
/// per-request allocations of the proxy path cheap. `no_thp` keeps its
/// arenas out of transparent huge pages, which otherwise added ~28 MB of
/// RSS at start.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use pingora_config::v1;

#[derive(Parser)]
#[command(name = "gateway", version, about = "The pingora-config API gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        /// The gateway's own settings (listeners, threads, store). Default:
        /// HTTP on 127.0.0.1:9080 serving `--config`.
        #[arg(long, short)]
        bootstrap: Option<PathBuf>,
        /// The config file (routes, upstreams, ...). Default: the bootstrap's
        /// file store path.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Take the listeners over from a running gateway (graceful upgrade:
        /// send the old one SIGQUIT).
        #[arg(long)]
        upgrade: bool,
        /// Where to write the process id. Default: /tmp/pingora-config-<first listener>.pid
        #[arg(long)]
        pid_file: Option<String>,
        /// The socket used to hand listeners over on upgrade.
        #[arg(long)]
        upgrade_sock: Option<String>,
        /// Address of the management API (gRPC, grpc-web, metrics), instead
        /// of the bootstrap's `admin.address` (default 127.0.0.1:9180).
        #[arg(long)]
        admin_address: Option<String>,
    },
    /// Check config files; print "ok" or every error, exit 0 or 1.
    Validate {
        /// Which document the files are.
        #[arg(long, value_enum, default_value_t = Kind::Config)]
        kind: Kind,
        /// The files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    /// The resources file (routes, upstreams, ...).
    Config,
    /// The gateway's bootstrap settings.
    Bootstrap,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Validate { kind, files } => validate(kind, &files),
        Command::Run { bootstrap, config, upgrade, pid_file, upgrade_sock, admin_address } => {
            run(bootstrap, config, upgrade, pid_file, upgrade_sock, admin_address)
        }
    }
}

fn run(
    bootstrap: Option<PathBuf>,
    config: Option<PathBuf>,
    upgrade: bool,
    pid_file: Option<String>,
    upgrade_sock: Option<String>,
    admin_address: Option<String>,
) -> ExitCode {
    let boot = match &bootstrap {
        Some(path) => match pingora_config::load_file::<v1::Bootstrap>(path) {
            Ok(b) => Some(b),
            Err(report) => {
                eprintln!("{report}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let level = boot.as_ref().and_then(|b| b.logging.as_ref()).map(|l| l.level().as_str_name().to_ascii_lowercase());
    let level = level.filter(|l| !l.ends_with("unspecified")).unwrap_or_else(|| "info".into());
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    let from_store =
        boot.as_ref().and_then(|b| b.store.as_ref()).and_then(|s| s.backend.as_ref()).and_then(|b| match b {
            v1::store::Backend::File(f) => Some(PathBuf::from(&f.path)),
            _ => None,
        });
    // A relative store path is relative to the bootstrap file.
    let from_store = from_store.map(|p| match (&bootstrap, p.is_relative()) {
        (Some(b), true) => b.parent().map(|d| d.join(&p)).unwrap_or(p),
        _ => p,
    });
    let etcd = boot
        .as_ref()
        .and_then(|b| b.store.as_ref())
        .is_some_and(|s| matches!(s.backend, Some(v1::store::Backend::Etcd(_))));
    let Some(config) = config.or(from_store).or_else(|| etcd.then(PathBuf::new)) else {
        eprintln!("gateway run: give --config, or a bootstrap whose store is a file");
        return ExitCode::FAILURE;
    };
    let mut boot = boot.unwrap_or_else(|| gateway::server::default_bootstrap(&config));
    if let Some(address) = admin_address {
        boot.admin.get_or_insert_with(Default::default).address = address;
    }
    let options = gateway::server::RunOptions { config, upgrade, pid_file, upgrade_sock };
    match gateway::server::run(boot, options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

fn validate(kind: Kind, files: &[PathBuf]) -> ExitCode {
    let kind = match kind {
        Kind::Config => pingora_config::check::DocumentKind::Config,
        Kind::Bootstrap => pingora_config::check::DocumentKind::Bootstrap,
    };
    if pingora_config::check::validate_files(kind, files) { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
