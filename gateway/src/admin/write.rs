//! The one write path of the management API: a change is applied to a copy
//! of the whole stored config, which is validated with the loader's rules
//! (schema and references between resources) and compiled into a snapshot
//! exactly as a file reload would be; only then is it stored and swapped
//! in. Writes are serialized, so two writers never lose an update, and each
//! is a compare-and-swap on the store revision.

use std::sync::Arc;

use bytes::Bytes;
use pingora_config::v1;
use prost::Message;
use tonic::{Code, Status};

use crate::Live;
use crate::admin::store::{CommitError, ConfigStore, Stored};
use crate::snapshot::{Snapshot, Timeouts};

/// Serializes the writes to one store.
pub struct Writer {
    pub store: Arc<dyn ConfigStore>,
    pub live: Arc<Live>,
    pub defaults: Timeouts,
    lock: tokio::sync::Mutex<()>,
}

/// The outcome of a write: the config before and after.
pub struct Written {
    pub before: Arc<Stored>,
    pub after: Arc<Stored>,
}

impl Writer {
    pub fn new(store: Arc<dyn ConfigStore>, live: Arc<Live>, defaults: Timeouts) -> Writer {
        Writer { store, live, defaults, lock: tokio::sync::Mutex::new(()) }
    }

    /// Applies `change` to the current config and stores the result. `change`
    /// gets the stored config and returns the whole new one, or an error
    /// (stale revision, not found) that leaves everything as it was.
    pub async fn write<F>(&self, change: F) -> Result<Written, Status>
    where
        F: FnOnce(&Stored) -> Result<v1::Config, Status>,
    {
        let result = self.write_serialized(change).await;
        let outcome = match &result {
            Ok(w) if w.before.revision == w.after.revision => "unchanged",
            Ok(_) => "applied",
            Err(s) if s.code() == Code::Aborted => "aborted",
            Err(s) if matches!(s.code(), Code::InvalidArgument | Code::FailedPrecondition) => "rejected",
            Err(s) if matches!(s.code(), Code::NotFound | Code::AlreadyExists) => "rejected",
            Err(_) => "failed",
        };
        crate::admin::metrics::writes().with_label_values(&[outcome]).inc();
        result
    }

    async fn write_serialized<F>(&self, change: F) -> Result<Written, Status>
    where
        F: FnOnce(&Stored) -> Result<v1::Config, Status>,
    {
        let _serial = self.lock.lock().await;
        let before = self.store.current();
        let config = change(&before)?;
        if config == *before.config {
            return Ok(Written { after: before.clone(), before });
        }
        let snapshot = self.check_against(config, Some(before.config.clone())).await?;
        let config = (*snapshot.config).clone();
        match self.store.commit(before.revision, config, snapshot).await {
            Ok(after) => Ok(Written { before, after }),
            Err(CommitError::Stale { current }) => Err(Status::aborted(format!(
                "the config changed since revision {} (now {current}): read it again and retry",
                before.revision
            ))),
            Err(CommitError::Io(e)) => Err(Status::unavailable(e)),
        }
    }

    /// Validates a whole config and compiles it, off the async workers.
    pub async fn check(&self, config: v1::Config) -> Result<Snapshot, Status> {
        self.check_against(config, None).await
    }

    /// [`Writer::check`] for a change of `before`: a reference left dangling
    /// by removing its target is told apart from a new reference to
    /// something that does not exist.
    async fn check_against(&self, config: v1::Config, before: Option<Arc<v1::Config>>) -> Result<Snapshot, Status> {
        let previous = self.live.load();
        let defaults = self.defaults;
        tokio::task::spawn_blocking(move || {
            if let Err(report) = pingora_config::validate_message(&config, "grpc") {
                return Err(rejected_change(&config, before.as_deref(), &violations(&report)));
            }
            Snapshot::build(config, defaults, Some(&previous)).map_err(|e| {
                let v =
                    e.0.iter()
                        .map(|m| v1::Violation { path: String::new(), rule: "build".into(), message: m.clone() })
                        .collect::<Vec<_>>();
                error(Code::InvalidArgument, &v, None)
            })
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
    }
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
pub fn rejected(config: &v1::Config, violations: &[v1::Violation]) -> Status {
    if !violations.is_empty() && violations.iter().all(|v| v.rule == "ref") {
        let referrers: Vec<String> = violations.iter().map(|v| referrer(config, &v.path)).collect();
        error(Code::FailedPrecondition, violations, Some(referrers))
    } else {
        error(Code::InvalidArgument, violations, None)
    }
}

/// [`rejected`] for a change of `before`. When the resources holding the
/// dangling references are unchanged, the change removed what they refer
/// to: "still referred to by ...". When the change itself wrote a
/// reference to something missing, the message is that violation's
/// ("upstream `x` does not exist").
pub fn rejected_change(config: &v1::Config, before: Option<&v1::Config>, violations: &[v1::Violation]) -> Status {
    let Some(before) = before else { return rejected(config, violations) };
    if violations.is_empty() || !violations.iter().all(|v| v.rule == "ref") {
        return error(Code::InvalidArgument, violations, None);
    }
    let old = super::store::resources(before);
    let new = super::store::resources(config);
    let unchanged =
        |path: &str| resource_key(config, path).is_some_and(|k| old.contains_key(&k) && old.get(&k) == new.get(&k));
    if violations.iter().all(|v| unchanged(&v.path)) {
        rejected(config, violations)
    } else {
        error(Code::FailedPrecondition, violations, None)
    }
}

/// The resource a violation path is in: `routes[2].upstream_id` -> (Route, id).
fn resource_key(config: &v1::Config, path: &str) -> Option<super::store::Key> {
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
fn referrer(config: &v1::Config, path: &str) -> String {
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
