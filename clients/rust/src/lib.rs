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
//!
//! ```no_run
//! # async fn demo() -> Result<(), pingora_config_client::Error> {
//! use pingora_config_client::{Client, ConnectOptions, Kind};
//!
//! let options = ConnectOptions {
//!     addr: "127.0.0.1:9180".into(),
//!     api_key: Some("editor-key-0123456789abcdef".into()),
//!     ..Default::default()
//! };
//! let mut client = Client::connect(&options).await?;
//! for route in client.list(Kind::Route, &[], 0).await?.entries {
//!     println!("{} at revision {}", route.id(), route.meta.revision);
//! }
//! // Refused while a route refers to it: `Error::referrers` names them.
//! client.delete(Kind::Upstream, "orders", None).await?;
//! # Ok(())
//! # }
//! ```

mod connect;
mod error;
mod kind;
mod watch;

pub use connect::{ApiKeyInterceptor, Client, ConnectOptions, TlsOptions, Transport};
pub use error::Error;
pub use kind::{Entry, Kind, Listing, id_of, resource_json};
pub use pingora_config::v1;
pub use watch::{Backoff, Watch, WatchItem};
