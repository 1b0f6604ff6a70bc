//! `pcfg`: the command-line tool of the pingora-config management API.
//! Reads and writes a running gateway's config over gRPC, and checks config
//! files offline with the gateway's own rules.

mod local;
mod output;
mod settings;
mod yaml;

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use output::Style;
use pingora_config_client::{Client, ConnectOptions, Error, Kind, WatchItem, v1};
use tonic::Code;

const EXIT_CODES: &str = "\
Exit codes:
  0  success (for `apply --dry-run`, whether or not there are changes)
  1  invalid: a config file breaks a rule, the gateway refused a value
     (INVALID_ARGUMENT), a bad flag, or `apply` declined at the prompt
  2  conflict: the config or resource changed since the revision given
     (ABORTED), it already exists, or it is still referred to
     (FAILED_PRECONDITION)
  3  not found
  4  authentication or permission refused (UNAUTHENTICATED, PERMISSION_DENIED)
  5  the gateway cannot be reached or timed out (UNAVAILABLE, DEADLINE_EXCEEDED)
  6  any other error of the gateway (INTERNAL, UNIMPLEMENTED, ...)

Environment:
  PCFG_ADDR     the admin listener, when --addr is not given
  PCFG_API_KEY  the API key, when --api-key is not given
  Both override the config file (--config, default ~/.config/pcfg/config.yaml).";

/// What pcfg exits with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exit {
    Ok = 0,
    Invalid = 1,
    Conflict = 2,
    NotFound = 3,
    Auth = 4,
    Unavailable = 5,
    Failed = 6,
}

impl Exit {
    fn of(e: &Error) -> Exit {
        match e.code() {
            None | Some(Code::InvalidArgument | Code::OutOfRange) => Exit::Invalid,
            Some(Code::Aborted | Code::AlreadyExists | Code::FailedPrecondition) => Exit::Conflict,
            Some(Code::NotFound) => Exit::NotFound,
            Some(Code::Unauthenticated | Code::PermissionDenied) => Exit::Auth,
            Some(Code::Unavailable | Code::DeadlineExceeded) => Exit::Unavailable,
            Some(_) => Exit::Failed,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

#[derive(Parser)]
#[command(
    name = "pcfg",
    version,
    about = "Read and change a pingora-config gateway's config, and check config files",
    after_long_help = EXIT_CODES,
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(flatten)]
    conn: ConnFlags,
    /// Colour the diff: auto (when the output is a terminal and NO_COLOR is
    /// unset), always or never.
    #[arg(long, value_enum, default_value_t = When::Auto, global = true)]
    color: When,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct ConnFlags {
    /// The admin listener: host:port (plaintext), http://host:port or
    /// https://host:port. Default: PCFG_ADDR, the config file, or
    /// 127.0.0.1:9180.
    #[arg(long, global = true)]
    addr: Option<String>,
    /// API key, sent as `authorization: Bearer <key>`. Default: PCFG_API_KEY
    /// or the config file.
    #[arg(long, global = true)]
    api_key: Option<String>,
    /// The pcfg config file. Default: ~/.config/pcfg/config.yaml.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Use TLS (implied by https://, --ca-cert or --client-cert).
    #[arg(long, global = true)]
    tls: bool,
    /// CA certificate (PEM) the admin listener's certificate chains to.
    #[arg(long, global = true)]
    ca_cert: Option<PathBuf>,
    /// Name to check the admin listener's certificate against.
    #[arg(long, global = true)]
    tls_server_name: Option<String>,
    /// Client certificate (PEM), for an admin listener with mutual TLS.
    #[arg(long, global = true)]
    client_cert: Option<PathBuf>,
    /// Client key (PEM) of --client-cert.
    #[arg(long, global = true)]
    client_key: Option<PathBuf>,
    /// Longest wait for an answer, for example 30s (default) or 500ms.
    #[arg(long, global = true, value_parser = settings::parse_duration)]
    timeout: Option<Duration>,
    /// Longest wait for the connection (default 5s).
    #[arg(long, global = true, value_parser = settings::parse_duration)]
    connect_timeout: Option<Duration>,
}

#[derive(Clone, Copy, ValueEnum)]
enum When {
    Auto,
    Always,
    Never,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Format {
    Table,
    Yaml,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum DocFormat {
    Yaml,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum EventFormat {
    /// One line of text per event.
    Text,
    /// One proto-JSON object per line.
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum EventKind {
    Resource,
    Health,
    Node,
}

#[derive(Subcommand)]
enum Command {
    /// Show one resource: pcfg get route orders-api
    Get {
        /// route, service, upstream, consumer, ssl, global-rule or plugin-config.
        #[arg(value_parser = parse_kind)]
        kind: Kind,
        /// Its id (a consumer's username).
        id: String,
        /// table, or the resource as written in a config file (yaml, json).
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// List the resources of a kind: pcfg list routes --label team=payments
    List {
        /// routes, services, upstreams, consumers, ssls, global-rules or plugin-configs.
        #[arg(value_parser = parse_kind)]
        kind: Kind,
        /// Only resources with this label (key=value, or key for any value); repeatable.
        #[arg(long = "label", short = 'l', value_parser = parse_label)]
        labels: Vec<v1::LabelMatch>,
        /// Resources read per call (1-1000; default: the gateway's, 100).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i32).range(0..=1000))]
        page_size: i32,
        /// table, or a config document of them (yaml, json).
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Make the gateway's config the file's: check it here, show the diff,
    /// confirm, apply.
    Apply {
        /// The config file (YAML or JSON), as read by the gateway.
        #[arg(short, long)]
        file: PathBuf,
        /// Show the diff and stop.
        #[arg(long)]
        dry_run: bool,
        /// Apply without asking (needed when the input is not a terminal).
        #[arg(short, long)]
        yes: bool,
        /// Only if the stored config is still at this revision (from an
        /// earlier `export` or dry run). Default: the revision the diff was
        /// computed at.
        #[arg(long)]
        revision: Option<i64>,
    },
    /// Delete a resource; refused while others refer to it.
    Delete {
        #[arg(value_parser = parse_kind)]
        kind: Kind,
        id: String,
        /// Only if the resource is still at this revision. Default: its
        /// current one.
        #[arg(long)]
        revision: Option<i64>,
    },
    /// Check files offline with the gateway's rules, as `gateway validate`.
    Validate {
        /// Which document the files are.
        #[arg(long, value_enum, default_value_t = local::DocKind::Config)]
        kind: local::DocKind,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the stored config (secrets redacted); applying it back changes nothing.
    Export {
        #[arg(short, long, value_enum, default_value_t = DocFormat::Yaml)]
        output: DocFormat,
    },
    /// Print events as they happen, reconnecting and resuming where it left off.
    Watch {
        /// Only resource events of these kinds; repeatable.
        #[arg(long, value_parser = parse_kind)]
        kind: Vec<Kind>,
        /// Only these kinds of event; repeatable. Default: all.
        #[arg(long, value_enum)]
        events: Vec<EventKind>,
        /// Replay the config changes from this revision first.
        #[arg(long, default_value_t = 0)]
        from_revision: i64,
        #[arg(short, long, value_enum, default_value_t = EventFormat::Text)]
        output: EventFormat,
    },
    /// Show the answering node's config revision, store and upstream health.
    Status {
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Print a shell completion script: pcfg completions bash > /etc/bash_completion.d/pcfg
    Completions { shell: clap_complete::Shell },
}

fn parse_kind(s: &str) -> Result<Kind, String> {
    Kind::parse(s).ok_or_else(|| {
        let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
        format!("unknown kind `{s}`: one of {}", names.join(", "))
    })
}

fn parse_label(s: &str) -> Result<v1::LabelMatch, String> {
    let (key, value) = s.split_once('=').unwrap_or((s, ""));
    if key.is_empty() {
        return Err(format!("`{s}`: write key=value, or key"));
    }
    Ok(v1::LabelMatch { key: key.into(), value: value.into() })
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { Exit::Invalid.into() } else { Exit::Ok.into() };
        }
    };
    let style = Style {
        color: match cli.color {
            When::Always => true,
            When::Never => false,
            When::Auto => std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        },
    };
    match cli.command {
        Command::Validate { kind, files } => {
            return if local::validate(kind, &files) { Exit::Ok.into() } else { Exit::Invalid.into() };
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "pcfg", &mut std::io::stdout());
            return Exit::Ok.into();
        }
        _ => {}
    }
    let options = match connect_options(&cli.conn) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("pcfg: {e}");
            return Exit::Invalid.into();
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pcfg: {e}");
            return Exit::Failed.into();
        }
    };
    match runtime.block_on(run(cli.command, &options, style)) {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("pcfg: {e}");
            Exit::of(&e).into()
        }
    }
}

fn connect_options(flags: &ConnFlags) -> Result<ConnectOptions, String> {
    let env = |k: &str| std::env::var(k).ok();
    let file = match &flags.config {
        Some(path) => settings::read_file(path)?,
        None => match settings::default_path(&env) {
            Some(path) if path.exists() => settings::read_file(&path)?,
            _ => settings::FileSettings::default(),
        },
    };
    let flags = settings::Flags {
        addr: flags.addr.clone(),
        api_key: flags.api_key.clone(),
        tls: flags.tls,
        ca_cert: flags.ca_cert.clone(),
        tls_server_name: flags.tls_server_name.clone(),
        client_cert: flags.client_cert.clone(),
        client_key: flags.client_key.clone(),
        timeout: flags.timeout,
        connect_timeout: flags.connect_timeout,
    };
    settings::resolve(&flags, &env, &file)
}

async fn run(command: Command, options: &ConnectOptions, style: Style) -> Result<Exit, Error> {
    if let Command::Watch { kind, events, from_revision, output } = command {
        return watch(Client::connect_lazy(options)?, &kind, &events, from_revision, output).await;
    }
    let mut client = Client::connect(options).await?;
    match command {
        Command::Get { kind, id, output } => {
            let entry = client.get(kind, &id).await?;
            match output {
                Format::Table => print!("{}", output::table(kind, &[entry])),
                Format::Yaml => print!("{}", yaml::to_yaml(&entry.to_json())),
                Format::Json => println!("{}", pretty(&entry.to_json())),
            }
        }
        Command::List { kind, labels, page_size, output } => {
            let listing = client.list(kind, &labels, page_size).await?;
            match output {
                Format::Table => print!("{}", output::table(kind, &listing.entries)),
                Format::Yaml => print!("{}", yaml::to_yaml(&output::document(kind, &listing.entries))),
                Format::Json => println!("{}", pretty(&output::document(kind, &listing.entries))),
            }
        }
        Command::Apply { file, dry_run, yes, revision } => {
            return apply(&mut client, &file, dry_run, yes, revision, style).await;
        }
        Command::Delete { kind, id, revision } => {
            let rev = client.delete(kind, &id, revision).await?;
            println!("{kind} {id} deleted (revision {rev})");
        }
        Command::Export { output } => {
            let export = client.export().await?;
            let config = serde_json::to_value(export.config.unwrap_or_default()).unwrap_or_default();
            match output {
                DocFormat::Yaml => {
                    println!(
                        "# pcfg export of {}: revision {}, {}",
                        client.addr(),
                        export.revision,
                        export.config_hash
                    );
                    print!("{}", yaml::to_yaml(&config));
                }
                DocFormat::Json => println!("{}", pretty(&config)),
            }
        }
        Command::Status { output } => {
            let status = client.node_status().await?;
            match output {
                Format::Table => print!("{}", output::status(&status)),
                Format::Yaml => print!("{}", yaml::to_yaml(&serde_json::to_value(&status).unwrap_or_default())),
                Format::Json => println!("{}", pretty(&serde_json::to_value(&status).unwrap_or_default())),
            }
        }
        Command::Watch { .. } | Command::Validate { .. } | Command::Completions { .. } => {}
    }
    Ok(Exit::Ok)
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// Check locally, diff, confirm, apply at the revision the diff was computed
/// at (so a change made in between fails with ABORTED instead of being
/// overwritten unseen).
async fn apply(
    client: &mut Client,
    file: &std::path::Path,
    dry_run: bool,
    yes: bool,
    revision: Option<i64>,
    style: Style,
) -> Result<Exit, Error> {
    let config = match local::load_for_apply(file) {
        Ok(c) => c,
        Err(report) => {
            local::print_report(&report, file);
            return Ok(Exit::Invalid);
        }
    };
    let plan = client.apply(config.clone(), revision.unwrap_or(0), true).await?;
    let diff = plan.diff.unwrap_or_default();
    print!("{}", output::diff(&diff, style));
    if diff.changes.is_empty() {
        println!("{} is at revision {}.", client.addr(), plan.revision);
        return Ok(Exit::Ok);
    }
    if dry_run {
        println!("Dry run: nothing applied (revision {}).", plan.revision);
        return Ok(Exit::Ok);
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            eprintln!("pcfg: not applied: confirm with --yes when the input is not a terminal");
            return Ok(Exit::Invalid);
        }
        eprint!("Apply these changes to {}? [y/N] ", client.addr());
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            eprintln!("Not applied.");
            return Ok(Exit::Invalid);
        }
    }
    let done = client.apply(config, plan.revision, false).await.map_err(stale)?;
    println!("Applied: revision {}.", done.revision);
    Ok(Exit::Ok)
}

/// ABORTED on apply means someone else changed the config since the diff.
fn stale(e: Error) -> Error {
    match &e {
        Error::Status(s) if s.code() == Code::Aborted => Error::Status(tonic::Status::aborted(format!(
            "{}\n  the diff above is out of date: run `pcfg apply` again to review the new one",
            s.message()
        ))),
        _ => e,
    }
}

async fn watch(
    client: Client,
    kinds: &[Kind],
    events: &[EventKind],
    from_revision: i64,
    format: EventFormat,
) -> Result<Exit, Error> {
    let request = v1::WatchRequest {
        start_revision: from_revision,
        kinds: events
            .iter()
            .map(|e| match e {
                EventKind::Resource => v1::event::Kind::Resource as i32,
                EventKind::Health => v1::event::Kind::Health as i32,
                EventKind::Node => v1::event::Kind::Node as i32,
            })
            .collect(),
        resource_kinds: kinds.iter().map(|k| k.proto() as i32).collect(),
    };
    let mut watch = client.watch(request);
    let mut stdout = std::io::stdout();
    loop {
        match watch.next().await? {
            WatchItem::Event(e) => {
                let line = match format {
                    EventFormat::Text => output::event_line(&e),
                    EventFormat::Json => serde_json::to_string(&e).unwrap_or_default(),
                };
                // A closed pipe (`pcfg watch | head`) ends the watch.
                if writeln!(stdout, "{line}").and_then(|()| stdout.flush()).is_err() {
                    return Ok(Exit::Ok);
                }
            }
            WatchItem::Reconnecting { error, delay } => {
                eprintln!("pcfg: watch interrupted ({error}); reconnecting in {delay:.1?}");
            }
        }
    }
}
