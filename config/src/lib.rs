//! pingora-config's resource types and the one path that loads and validates
//! every config document.
//!
//! - [`v1`]: the messages, tonic stubs and proto-JSON serde impls generated
//!   from `proto/pingora_config/v1` (`make gen`; never edit `src/gen/`).
//! - [`load_str`] / [`load_file`]: YAML (or JSON) text to a validated
//!   message, with every violation reported at once with its line, column
//!   and path.
//! - [`validate_message`]: the same rules for a message that arrived decoded
//!   (a gRPC write, an etcd value).

pub mod check;
mod load;

pub use load::{DESCRIPTOR_SET, Document, load_file, load_str, model, validate_message};
pub use pingora_config_rules::{Pos, Reference, Report, Violation};

/// The config resources, the bootstrap settings and the management API.
#[allow(clippy::all, clippy::unwrap_used, missing_docs, rustdoc::all)]
pub mod v1 {
    include!("gen/pingora_config.v1.rs");
    include!("gen/pingora_config.v1.serde.rs");
}

/// The validation-rule options read by the schema engine.
pub mod validate {
    #[allow(clippy::all, clippy::unwrap_used, missing_docs, rustdoc::all)]
    pub mod v1 {
        include!("gen/pingora_config.validate.v1.rs");
        include!("gen/pingora_config.validate.v1.serde.rs");
    }
}
