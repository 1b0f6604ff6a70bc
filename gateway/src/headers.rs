//! Header names the gateway adds to requests and responses.
//!
//! Pingora keeps, beside each header map, the name as written on the wire
//! (HTTP/1 keeps the case). Given an [`http::HeaderName`], its
//! `insert_header` copies the name into new bytes for that wire form, then
//! parses them back into a `HeaderName` (a second copy for a non-standard
//! name): two allocations per header, on every request. A [`Name`] keeps the
//! wire form built once (with the case as configured) and hands Pingora a
//! shared `Bytes` instead, which leaves one.

use bytes::Bytes;
use http::{HeaderName, HeaderValue};

/// A header name with its wire form.
#[derive(Clone, Debug)]
pub struct Name {
    /// For lookups and comparisons (lower case).
    pub name: HeaderName,
    /// `None` for a standard name: Pingora writes those title-cased from
    /// a static table, without copying.
    wire: Option<Bytes>,
}

impl Name {
    /// A name written in the config: sent with the case as written.
    pub fn parse(text: &str) -> Result<Name, http::header::InvalidHeaderName> {
        Ok(Name { name: HeaderName::try_from(text)?, wire: Some(Bytes::copy_from_slice(text.as_bytes())) })
    }

    /// A fixed name, `wire` as it is sent (`X-Forwarded-For`).
    pub const fn from_static(lower: &'static str, wire: &'static str) -> Name {
        Name { name: HeaderName::from_static(lower), wire: Some(Bytes::from_static(wire.as_bytes())) }
    }
}

impl From<HeaderName> for Name {
    /// For standard names (`Content-Type`, `Vary`); a custom one is sent
    /// in lower case.
    fn from(name: HeaderName) -> Name {
        Name { name, wire: None }
    }
}

impl PartialEq<HeaderName> for Name {
    fn eq(&self, other: &HeaderName) -> bool {
        self.name == *other
    }
}

/// A request or response header the gateway changes.
pub trait HeaderTarget {
    fn remove(&mut self, name: &Name);
    fn insert(&mut self, name: &Name, value: HeaderValue) -> pingora_error::Result<()>;
    fn append(&mut self, name: &Name, value: HeaderValue) -> pingora_error::Result<()>;
}

macro_rules! header_target {
    ($t:ty) => {
        impl HeaderTarget for $t {
            fn remove(&mut self, name: &Name) {
                self.remove_header(&name.name);
            }
            fn insert(&mut self, name: &Name, value: HeaderValue) -> pingora_error::Result<()> {
                match &name.wire {
                    Some(wire) => self.insert_header(wire.clone(), value),
                    None => self.insert_header(name.name.clone(), value),
                }
            }
            fn append(&mut self, name: &Name, value: HeaderValue) -> pingora_error::Result<()> {
                match &name.wire {
                    Some(wire) => self.append_header(wire.clone(), value),
                    None => self.append_header(name.name.clone(), value),
                }
                .map(|_| ())
            }
        }
    };
}

header_target!(pingora_http::RequestHeader);
header_target!(pingora_http::ResponseHeader);

pub static X_FORWARDED_FOR: Name = Name::from_static("x-forwarded-for", "X-Forwarded-For");
pub static X_FORWARDED_PROTO: Name = Name::from_static("x-forwarded-proto", "X-Forwarded-Proto");
pub static X_CONSUMER_USERNAME: Name = Name::from_static("x-consumer-username", "X-Consumer-Username");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_case_is_what_goes_on_the_wire() {
        let mut req = pingora_http::RequestHeader::build("GET", b"/", None).expect("request");
        let n = Name::parse("X-Bench-Id").expect("name");
        req.insert(&n, HeaderValue::from_static("1")).expect("insert");
        req.insert(&X_FORWARDED_FOR, HeaderValue::from_static("127.0.0.1")).expect("insert");
        req.append(&Name::from(http::header::VARY), HeaderValue::from_static("origin")).expect("insert");
        assert_eq!(req.headers.get("x-bench-id").map(|v| v.as_bytes()), Some(&b"1"[..]));
        let mut wire = bytes::BytesMut::new();
        req.header_to_h1_wire(&mut wire);
        let text = String::from_utf8(wire.to_vec()).expect("insert");
        assert!(text.contains("X-Bench-Id: 1\r\n"), "{text}");
        assert!(text.contains("X-Forwarded-For: 127.0.0.1\r\n"), "{text}");
        assert!(text.to_lowercase().contains("vary: origin\r\n"), "{text}");
        assert!(n == HeaderName::from_static("x-bench-id"));
    }
}
