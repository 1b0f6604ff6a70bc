//! Violations: what is wrong, where, and which rule says so.

use std::fmt;

use crate::tree::Pos;

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Path of the offending value, for example `routes[0].upstream_id`
    /// (empty for the document itself).
    pub path: String,
    /// Where it was written, when the document came from a file.
    pub pos: Option<Pos>,
    /// The rule broken, as named in the schema: `required`, `min_len`,
    /// `unknown_field`, `ref`, `syntax`, ...
    pub rule: &'static str,
    /// What is wrong and, where we can tell, what to write instead.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(pos) = self.pos {
            write!(f, "{pos}: ")?;
        }
        let path = if self.path.is_empty() { "(document)" } else { &self.path };
        write!(f, "{path}: {} [{}]", self.message, self.rule)
    }
}

/// Every violation of one document, in document order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Where the document came from (a file name, `grpc`, `etcd:/key`).
    pub origin: String,
    pub violations: Vec<Violation>,
}

impl Report {
    pub fn is_empty(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.violations.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if self.origin.is_empty() {
                write!(f, "{v}")?;
            } else if v.pos.is_some() {
                write!(f, "{}:{v}", self.origin)?;
            } else {
                write!(f, "{}: {v}", self.origin)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Report {}
