//! What a call can fail with, and how to say it to a person.

use tonic::Code;
use tonic_types::StatusExt;

/// An error of the client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The address, API key or TLS settings cannot be used.
    #[error("{0}")]
    Options(String),
    /// A file named by the options cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// No connection to the admin listener.
    #[error("cannot connect to {addr}: {detail}")]
    Connect {
        /// The address dialled.
        addr: String,
        /// Why, with the transport's causes.
        detail: String,
    },
    /// The gateway answered with an error status.
    #[error("{}", describe(.0))]
    Status(tonic::Status),
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Self {
        Error::Status(s)
    }
}

impl Error {
    /// The gRPC code of a status error; `Unavailable` for a connection
    /// failure; `None` for an error of the options.
    pub fn code(&self) -> Option<Code> {
        match self {
            Error::Status(s) => Some(s.code()),
            Error::Connect { .. } => Some(Code::Unavailable),
            Error::Options(_) | Error::Io { .. } => None,
        }
    }

    /// The field violations of a rejected write (`google.rpc.BadRequest`),
    /// as `(path, description)`.
    pub fn field_violations(&self) -> Vec<(String, String)> {
        let Error::Status(s) = self else { return Vec::new() };
        let details = s.get_error_details();
        details
            .bad_request()
            .map(|b| b.field_violations.iter().map(|v| (v.field.clone(), v.description.clone())).collect())
            .unwrap_or_default()
    }

    /// The resources that prevent a deletion or refer to a missing one
    /// (`google.rpc.PreconditionFailure` subjects), for example
    /// ``route `orders` (routes[0].upstream_id)``.
    pub fn referrers(&self) -> Vec<String> {
        let Error::Status(s) = self else { return Vec::new() };
        let details = s.get_error_details();
        details
            .precondition_failure()
            .map(|p| p.violations.iter().map(|v| v.subject.clone()).collect())
            .unwrap_or_default()
    }
}

/// A status in words: what kind of failure, the server's message, then one
/// line per field violation (`path: description`) and per referrer.
fn describe(s: &tonic::Status) -> String {
    let what = match s.code() {
        Code::Unauthenticated => "authentication failed",
        Code::PermissionDenied => "permission denied",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::Aborted => "conflict",
        Code::FailedPrecondition => "refused",
        Code::InvalidArgument => "invalid",
        Code::Unavailable => "the gateway is unavailable",
        Code::DeadlineExceeded => "timed out",
        Code::Unimplemented => "not supported by this gateway",
        _ => "the gateway failed",
    };
    let mut out = format!("{what}: {}", s.message());
    if s.message().is_empty() {
        out = format!("{what} ({:?})", s.code());
    }
    let err = Error::Status(s.clone());
    let violations = err.field_violations();
    // A single violation is already the message; list them when there are more.
    if violations.len() > 1 || (violations.len() == 1 && !s.message().contains(&violations[0].0)) {
        for (path, description) in violations {
            if path.is_empty() {
                out.push_str(&format!("\n  {description}"));
            } else {
                out.push_str(&format!("\n  {path}: {description}"));
            }
        }
    }
    for r in err.referrers().into_iter().filter(|r| !s.message().contains(r.as_str())) {
        out.push_str(&format!("\n  referred to by {r}"));
    }
    if s.code() == Code::Unauthenticated {
        out.push_str("\n  (give an API key with --api-key, PCFG_API_KEY or `api_key` in the config file)");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::{ErrorDetails, FieldViolation, PreconditionViolation};

    #[test]
    fn field_violations_are_printed_as_path_colon_description() {
        let details = ErrorDetails::with_bad_request(vec![
            FieldViolation::new("routes[0].uris[0]", "must start with `/` [pattern]"),
            FieldViolation::new("upstreams[1].nodes", "at least 1 item [min_items]"),
        ]);
        let s =
            tonic::Status::with_error_details(Code::InvalidArgument, "routes[0].uris[0]: ... (and 1 more)", details);
        assert_eq!(
            Error::Status(s).to_string(),
            "invalid: routes[0].uris[0]: ... (and 1 more)\n  routes[0].uris[0]: must start with `/` [pattern]\n  upstreams[1].nodes: at least 1 item [min_items]"
        );
    }

    #[test]
    fn referrers_of_a_refused_deletion_are_listed() {
        let details = ErrorDetails::with_precondition_failure(vec![PreconditionViolation::new(
            "REFERENCED",
            "route `api` (routes[0].upstream_id)",
            "refers to it",
        )]);
        let s = tonic::Status::with_error_details(Code::FailedPrecondition, "still referred to by 1", details);
        let e = Error::Status(s);
        assert_eq!(e.referrers(), ["route `api` (routes[0].upstream_id)"]);
        assert_eq!(
            e.to_string(),
            "refused: still referred to by 1\n  referred to by route `api` (routes[0].upstream_id)"
        );
    }

    #[test]
    fn a_missing_key_says_where_to_give_one() {
        let e = Error::Status(tonic::Status::unauthenticated("unknown API key"));
        assert!(e.to_string().starts_with("authentication failed: unknown API key\n  (give an API key"));
        assert_eq!(e.code(), Some(Code::Unauthenticated));
    }
}
