//! `codegen breaking --against <git-ref>`: the wire and JSON breaking
//! changes between the protos of a git ref and the working tree, in the
//! spirit of buf's WIRE_JSON category.
//!
//! Checked, per message/enum/service of the old schema: a message, enum,
//! service or RPC removed; a field removed without reserving its number and
//! name; a field's type, label (singular/repeated/map, optional) or
//! oneof membership changed; a field renamed (its proto name is its YAML key
//! and JSON name); a JSON name changed; an enum value removed without
//! reserving its number and name, or renamed; an RPC's request, response or
//! streaming changed.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use prost_reflect::{DescriptorPool, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor};

use crate::Error;

/// One breaking change.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Breaking {
    /// The element, for example `pingora_config.v1.Route.uris`.
    pub element: String,
    /// The rule, in buf's names: `FIELD_NO_DELETE`, `FIELD_SAME_TYPE`, ...
    pub rule: &'static str,
    pub message: String,
}

impl std::fmt::Display for Breaking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} [{}]", self.element, self.message, self.rule)
    }
}

/// Compiles `proto/` as it is at `git_ref` (read with `git show`).
pub fn pool_at_ref(root: &Path, git_ref: &str) -> Result<DescriptorPool, Error> {
    let git = |args: &[&str]| -> Result<Vec<u8>, Error> {
        let out = Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .map_err(crate::io(format!("running git {}", args.join(" "))))?;
        if !out.status.success() {
            return Err(Error::Other(format!(
                "git {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(out.stdout)
    };
    let listing = git(&["ls-tree", "-r", "--name-only", git_ref, "--", "proto/"])?;
    let dir = tempfile::tempdir().map_err(crate::io("creating a temp dir"))?;
    for path in String::from_utf8_lossy(&listing).lines().filter(|p| p.ends_with(".proto")) {
        let text = git(&["show", &format!("{git_ref}:{path}")])?;
        let dest = dir.path().join(path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(crate::io(parent.display().to_string()))?;
        }
        std::fs::write(&dest, text).map_err(crate::io(dest.display().to_string()))?;
    }
    pool_at(dir.path())
}

/// Compiles `proto/` under `root`.
pub fn pool_at(root: &Path) -> Result<DescriptorPool, Error> {
    let (encoded, _) = crate::compile(root)?;
    Ok(DescriptorPool::decode(encoded.as_slice())?)
}

/// The breaking changes from `old` to `new`, sorted.
pub fn compare(old: &DescriptorPool, new: &DescriptorPool) -> Vec<Breaking> {
    let mut out = Vec::new();
    let own = |name: &str| !name.starts_with("google.protobuf.");
    for m in old.all_messages().filter(|m| own(m.full_name()) && !m.is_map_entry()) {
        match new.get_message_by_name(m.full_name()) {
            Some(n) => message(&m, &n, &mut out),
            None => push(&mut out, m.full_name(), "MESSAGE_NO_DELETE", "message removed".into()),
        }
    }
    for e in old.all_enums().filter(|e| own(e.full_name())) {
        match new.get_enum_by_name(e.full_name()) {
            Some(n) => enumeration(&e, &n, &mut out),
            None => push(&mut out, e.full_name(), "ENUM_NO_DELETE", "enum removed".into()),
        }
    }
    for s in old.services().filter(|s| own(s.full_name())) {
        let Some(n) = new.get_service_by_name(s.full_name()) else {
            push(&mut out, s.full_name(), "SERVICE_NO_DELETE", "service removed".into());
            continue;
        };
        for m in s.methods() {
            let Some(nm) = n.methods().find(|x| x.name() == m.name()) else {
                push(&mut out, m.full_name(), "RPC_NO_DELETE", "RPC removed".into());
                continue;
            };
            if m.input().full_name() != nm.input().full_name() {
                push(
                    &mut out,
                    m.full_name(),
                    "RPC_SAME_REQUEST_TYPE",
                    changed(m.input().full_name(), nm.input().full_name()),
                );
            }
            if m.output().full_name() != nm.output().full_name() {
                push(
                    &mut out,
                    m.full_name(),
                    "RPC_SAME_RESPONSE_TYPE",
                    changed(m.output().full_name(), nm.output().full_name()),
                );
            }
            if m.is_client_streaming() != nm.is_client_streaming() {
                push(&mut out, m.full_name(), "RPC_SAME_CLIENT_STREAMING", "client streaming changed".into());
            }
            if m.is_server_streaming() != nm.is_server_streaming() {
                push(&mut out, m.full_name(), "RPC_SAME_SERVER_STREAMING", "server streaming changed".into());
            }
        }
    }
    out.sort();
    out
}

fn push(out: &mut Vec<Breaking>, element: &str, rule: &'static str, message: String) {
    out.push(Breaking { element: element.to_owned(), rule, message });
}

fn changed(old: impl std::fmt::Display, new: impl std::fmt::Display) -> String {
    format!("changed from `{old}` to `{new}`")
}

fn reserved(m: &MessageDescriptor, number: u32, name: &str) -> (bool, bool) {
    let proto = m.descriptor_proto();
    let number_ok = proto
        .reserved_range
        .iter()
        .any(|r| r.start.is_some_and(|s| s as u32 <= number) && r.end.is_some_and(|e| number < e as u32));
    let name_ok = proto.reserved_name.iter().any(|n| n == name);
    (number_ok, name_ok)
}

fn type_name(f: &FieldDescriptor) -> String {
    match f.kind() {
        Kind::Message(m) => m.full_name().to_owned(),
        Kind::Enum(e) => e.full_name().to_owned(),
        k => format!("{k:?}").to_ascii_lowercase(),
    }
}

fn label(f: &FieldDescriptor) -> &'static str {
    if f.is_map() {
        "map"
    } else if f.is_list() {
        "repeated"
    } else if f.supports_presence()
        && f.containing_oneof().is_none_or(|o| o.is_synthetic())
        && !matches!(f.kind(), Kind::Message(_))
    {
        "optional"
    } else {
        "singular"
    }
}

fn oneof_name(f: &FieldDescriptor) -> Option<String> {
    f.containing_oneof().filter(|o| !o.is_synthetic()).map(|o| o.name().to_owned())
}

fn message(old: &MessageDescriptor, new: &MessageDescriptor, out: &mut Vec<Breaking>) {
    for f in old.fields() {
        let element = f.full_name().to_owned();
        let Some(n) = new.get_field(f.number()) else {
            let (number_ok, name_ok) = reserved(new, f.number(), f.name());
            if !number_ok || !name_ok {
                let missing = match (number_ok, name_ok) {
                    (false, false) => format!("reserve {} and \"{}\"", f.number(), f.name()),
                    (false, true) => format!("reserve {}", f.number()),
                    _ => format!("reserve \"{}\"", f.name()),
                };
                push(
                    out,
                    &element,
                    "FIELD_NO_DELETE_UNLESS_RESERVED",
                    format!("field {} removed; {missing}", f.number()),
                );
            }
            continue;
        };
        if f.name() != n.name() {
            push(out, &element, "FIELD_SAME_NAME", format!("field {} renamed to `{}`", f.number(), n.name()));
        }
        if f.json_name() != n.json_name() {
            push(out, &element, "FIELD_SAME_JSON_NAME", changed(f.json_name(), n.json_name()));
        }
        if type_name(&f) != type_name(&n) {
            push(out, &element, "FIELD_SAME_TYPE", changed(type_name(&f), type_name(&n)));
        }
        if label(&f) != label(&n) {
            push(out, &element, "FIELD_SAME_LABEL", changed(label(&f), label(&n)));
        }
        if oneof_name(&f) != oneof_name(&n) {
            let show = |o: Option<String>| o.unwrap_or_else(|| "no oneof".into());
            push(out, &element, "FIELD_SAME_ONEOF", changed(show(oneof_name(&f)), show(oneof_name(&n))));
        }
    }
}

fn enumeration(old: &EnumDescriptor, new: &EnumDescriptor, out: &mut Vec<Breaking>) {
    let proto = new.enum_descriptor_proto();
    for v in old.values() {
        let element = format!("{}.{}", old.full_name(), v.name());
        match new.get_value(v.number()) {
            Some(n) if n.name() != v.name() => {
                push(out, &element, "ENUM_VALUE_SAME_NAME", format!("value {} renamed to `{}`", v.number(), n.name()));
            }
            Some(_) => {}
            None => {
                let number_ok = proto
                    .reserved_range
                    .iter()
                    .any(|r| r.start.is_some_and(|s| s <= v.number()) && r.end.is_some_and(|e| v.number() <= e));
                let name_ok = proto.reserved_name.iter().any(|n| n == v.name());
                if !number_ok || !name_ok {
                    push(
                        out,
                        &element,
                        "ENUM_VALUE_NO_DELETE_UNLESS_RESERVED",
                        format!("value {} removed; reserve its number and name", v.number()),
                    );
                }
            }
        }
    }
}

/// The distinct rules of a list of changes (for tests).
pub fn rules(changes: &[Breaking]) -> BTreeSet<&'static str> {
    changes.iter().map(|c| c.rule).collect()
}
