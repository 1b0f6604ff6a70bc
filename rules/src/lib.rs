//! The schema engine of pingora-config.
//!
//! The proto descriptors are the single source of truth. This crate reads the
//! validation rules written on them (`pingora_config.validate.v1` options)
//! into a [`Model`], and checks a document tree ([`Node`], parsed from YAML
//! with line/column, or converted from JSON) against it, reporting every
//! violation at once with its path and position.
//!
//! Why descriptor-driven rather than generated per-type validators: the same
//! model also drives the JSON Schema generator (so the schema and the loader
//! cannot drift), the Go/TS clients and the web forms read the very same
//! options, and walking the document tree (not the decoded Rust value) is what
//! lets every error carry the YAML line and column.

mod check;
mod de;
mod error;
pub mod formats;
mod model;
mod tree;
mod yaml;

pub use check::{Checked, Reference, check};
pub use de::DecodeError;
pub use error::{Report, Violation};
pub use model::{
    Compare, CompareOp, FieldGroup, FieldKind, FieldModel, FieldRules, Label, MessageModel, MessageRules, Model,
    ModelError, RequiredWhen, ScalarKind,
};
pub use tree::{Node, Pos, Text, Value};
pub use yaml::parse_yaml;
