//! A document tree that remembers where each value was written.

use std::fmt;

pub use compact_str::CompactString as Text;

/// A position in a source document: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One value of a document and where it was written (`None` for documents
/// that came from JSON or from a decoded message).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Option<Pos>,
}

/// The value of a [`Node`], in the YAML 1.2 core schema.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    /// Short strings (most keys and values) are stored inline.
    Str(Text),
    Seq(Vec<Node>),
    /// Entries in document order: (key, key position, value).
    Map(Vec<(Text, Option<Pos>, Node)>),
}

impl Node {
    pub fn new(value: Value, pos: Option<Pos>) -> Node {
        Node { value, pos }
    }

    /// What the value is, as said in error messages ("a string", "a list").
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// Converts a JSON value (for example a decoded message serialised with
    /// its proto-JSON serde impl) into a tree without positions.
    pub fn from_json(v: &serde_json::Value) -> Node {
        let value = match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i128::from(i)),
                None => match n.as_u64() {
                    Some(u) => Value::Int(i128::from(u)),
                    None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
                },
            },
            serde_json::Value::String(s) => Value::Str(Text::from(s.as_str())),
            serde_json::Value::Array(a) => Value::Seq(a.iter().map(Node::from_json).collect()),
            serde_json::Value::Object(o) => {
                Value::Map(o.iter().map(|(k, v)| (Text::from(k.as_str()), None, Node::from_json(v))).collect())
            }
        };
        Node::new(value, None)
    }

    /// Converts the tree into JSON. Integers outside the range of JSON
    /// numbers become strings (proto-JSON's form for large 64-bit values).
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => {
                if let Ok(v) = i64::try_from(*i) {
                    v.into()
                } else if let Ok(v) = u64::try_from(*i) {
                    v.into()
                } else {
                    serde_json::Value::String(i.to_string())
                }
            }
            // An integral float is written as an integer: proto-JSON
            // decoders of integer fields expect one.
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => serde_json::Value::from(*f as i64),
            Value::Float(f) => {
                serde_json::Number::from_f64(*f).map(serde_json::Value::Number).unwrap_or(serde_json::Value::Null)
            }
            Value::Str(s) => serde_json::Value::String(s.to_string()),
            Value::Seq(items) => serde_json::Value::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => {
                serde_json::Value::Object(entries.iter().map(|(k, _, v)| (k.to_string(), v.to_json())).collect())
            }
        }
    }
}
