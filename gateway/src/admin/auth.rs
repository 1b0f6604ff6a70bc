//! API keys: `authorization: Bearer <key>` on every call, compared in
//! constant time. VIEWER keys read, EDITOR keys also write. Without any key
//! configured every caller is an editor, which the gateway allows only on a
//! loopback address (checked at start).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use pingora_config::v1;
use pingora_config::v1::api_key::Role;
use subtle::ConstantTimeEq;
use tonic::Status;

/// The keys accepted.
pub struct Keys {
    keys: Vec<(String, Vec<u8>, Role)>,
}

/// Who called: the key's name and role, in the request extensions.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

impl Keys {
    pub fn new(keys: &[v1::ApiKey]) -> Keys {
        Keys { keys: keys.iter().map(|k| (k.name.clone(), k.key.as_bytes().to_vec(), k.role())).collect() }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The caller presenting `header` (the `authorization` value).
    fn authenticate(&self, header: Option<&str>) -> Result<Caller, Status> {
        if self.keys.is_empty() {
            return Ok(Caller { name: "anonymous".into(), role: Role::Editor });
        }
        let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer "))) else {
            return Err(Status::unauthenticated("this call needs the metadata `authorization: Bearer <api key>`"));
        };
        let given = given.trim().as_bytes();
        // Compare with every key, whatever matches, so timing tells nothing.
        let mut found = None;
        for (name, key, role) in &self.keys {
            if bool::from(key.as_slice().ct_eq(given)) {
                found = Some(Caller { name: name.clone(), role: *role });
            }
        }
        found.ok_or_else(|| Status::unauthenticated("unknown API key"))
    }
}

/// Whether a gRPC method always writes (ApplyConfig decides on `dry_run`).
fn writes(path: &str) -> bool {
    let Some(method) = path.strip_prefix("/pingora_config.v1.ResourceService/") else { return false };
    method.starts_with("Create") || method.starts_with("Update") || method.starts_with("Delete")
}

/// Paths served without a key: health checks and the metrics.
fn open(path: &str, metrics_path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/") || path == metrics_path
}

/// Shared state of the auth middleware.
pub struct AuthState {
    pub keys: Keys,
    pub metrics_path: String,
}

/// The middleware in front of every service of the admin listener.
pub async fn middleware(State(state): State<Arc<AuthState>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if open(&path, &state.metrics_path) || req.method() == http::Method::OPTIONS {
        return next.run(req).await;
    }
    let header = req.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let caller = match state.keys.authenticate(header) {
        Ok(c) => c,
        Err(status) => return grpc_error(status),
    };
    if writes(&path) && caller.role != Role::Editor {
        return grpc_error(Status::permission_denied(format!(
            "key `{}` is a VIEWER key: this call needs EDITOR",
            caller.name
        )));
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

fn grpc_error(status: Status) -> Response {
    status.into_http::<Body>().into_response()
}

/// In a handler: the caller must be an editor.
pub fn require_editor<T>(req: &tonic::Request<T>) -> Result<(), Status> {
    match req.extensions().get::<Caller>() {
        Some(c) if c.role == Role::Editor => Ok(()),
        Some(c) => Err(Status::permission_denied(format!("key `{}` is a VIEWER key: this call needs EDITOR", c.name))),
        None => Err(Status::unauthenticated("no caller")),
    }
}
