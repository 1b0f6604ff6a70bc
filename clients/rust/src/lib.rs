//! The Rust client of the pingora-config management API (the gRPC services
//! of `proto/pingora_config/v1/admin.proto`, served on the gateway's admin
//! listener), and the library under the `pcfg` command-line tool.
//!
//! - [`ConnectOptions`] / [`Client`]: dial an admin listener (address, API
//!   key sent as `authorization: Bearer <key>`, TLS, timeouts) and call the
//!   generated tonic clients, or the typed helpers over them.
//! - [`Kind`] / [`Entry`]: one resource of any kind with its metadata, for
//!   code that handles every kind the same way (get, list, delete).
//! - [`Watch`]: the event stream, resumed from the last revision seen after
//!   a reconnection, with backoff.
//! - [`Error`]: what went wrong, with the server's field violations and the
//!   resources that still refer to a deleted one.
//!
//! The messages are `pingora_config::v1`, the ones the gateway uses.

mod connect;
mod error;
mod kind;
mod watch;

pub use connect::{ApiKeyInterceptor, Client, ConnectOptions, TlsOptions, Transport};
pub use error::Error;
pub use kind::{Entry, Kind, Listing, id_of, resource_json};
pub use pingora_config::v1;
pub use watch::{Backoff, Watch, WatchItem};
