//! Form metadata for the web UI (`web/src/gen/schema.json`): every message
//! reachable from `Config`, with each field's proto and JSON names, kind,
//! cardinality, oneof, enum values, proto comment (the help text), the
//! default its comment documents and its validation rules.
//!
//! The UI renders its forms from this file alone, so a field added to a
//! proto shows up after `make gen` with no hand-written form code. Why a
//! file and not the TS descriptors at run time: protoc-gen-es embeds the
//! descriptors without `source_code_info`, so the comments (the help text
//! and the documented defaults) are not there; the rules are, and the UI
//! still checks values with `clients/ts` `validate.ts` over those
//! descriptors, so its messages are the gateway's.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use pingora_config_rules::{FieldKind, FieldModel, FieldRules, Label, MessageModel, Model, ScalarKind, formats};
use serde_json::{Map, Value, json};

use crate::{Error, Outputs};

const PACKAGE: &str = "pingora_config.v1";

/// The output file, relative to the repository root.
pub const PATH: &str = "web/src/gen/schema.json";

pub fn generate(model: &Model, out: &mut Outputs) -> Result<(), Error> {
    let root = model.index(&format!("{PACKAGE}.Config")).ok_or_else(|| Error::Other("no message Config".into()))?;
    let mut order = Vec::new();
    visit(model, root, &mut HashSet::new(), &mut order);
    let enum_comments = EnumComments::new(model);

    let mut messages = Map::new();
    let mut enums = Map::new();
    for &i in &order {
        let m = &model.messages[i];
        messages.insert(m.full_name.clone(), message(model, m, &enum_comments, &mut enums));
    }
    let doc = json!({
        "$comment": crate::header("", "proto/pingora_config/v1/*.proto").trim(),
        "root": format!("{PACKAGE}.Config"),
        "messages": messages,
        "enums": enums,
    });
    let mut text = serde_json::to_string_pretty(&doc).map_err(|e| Error::Other(e.to_string()))?;
    text.push('\n');
    out.insert(PathBuf::from(PATH), text.into_bytes());
    Ok(())
}

/// Depth-first in field order, so the file reads like the reference.
fn visit(model: &Model, i: usize, seen: &mut HashSet<usize>, order: &mut Vec<usize>) {
    if !seen.insert(i) {
        return;
    }
    order.push(i);
    for f in &model.messages[i].fields {
        if let FieldKind::Message(j) = f.kind {
            visit(model, j, seen, order);
        }
    }
}

fn message(model: &Model, m: &MessageModel, ec: &EnumComments, enums: &mut Map<String, Value>) -> Value {
    let desc = model.pool.get_message_by_name(&m.full_name);
    let formats = model.pool.get_enum_by_name("pingora_config.validate.v1.Format");
    let format_name = |n: i32| {
        formats.as_ref().and_then(|e| e.get_value(n)).map(|v| v.name().to_owned()).unwrap_or_else(|| n.to_string())
    };
    let json_name = |name: &str| {
        desc.as_ref()
            .and_then(|d| d.get_field_by_name(name))
            .map(|f| f.json_name().to_owned())
            .unwrap_or_else(|| name.to_owned())
    };
    let fields: Vec<Value> = m
        .fields
        .iter()
        .map(|f| {
            let mut o = Map::new();
            o.insert("name".into(), f.name.clone().into());
            o.insert("jsonName".into(), json_name(&f.name).into());
            o.insert("number".into(), f.number.into());
            o.insert("label".into(), label(&f.label).into());
            if let Label::Map(k) = &f.label {
                o.insert("mapKey".into(), scalar(*k).into());
            }
            kind(model, f, ec, enums, &mut o);
            if let Some(oneof) = f.oneof {
                o.insert("oneof".into(), m.oneofs[oneof].name.clone().into());
            }
            o.insert("comment".into(), f.comment.clone().into());
            if let Some(d) = documented_default(&f.comment) {
                o.insert("default".into(), d.into());
            }
            o.insert("rules".into(), rules(&f.rules, &format_name));
            Value::Object(o)
        })
        .collect();
    let oneofs: Vec<Value> = m
        .oneofs
        .iter()
        .map(|o| {
            json!({
                "name": o.name,
                "fields": o.fields.iter().map(|&i| m.fields[i].name.clone()).collect::<Vec<_>>(),
                "required": o.required,
                "comment": o.comment,
            })
        })
        .collect();
    let r = &m.rules;
    let groups = |gs: &[pingora_config_rules::FieldGroup]| -> Value {
        gs.iter().map(|g| json!({ "fields": g.fields, "required": g.required })).collect()
    };
    json!({
        "name": m.name(),
        "comment": m.comment,
        "fields": fields,
        "oneofs": oneofs,
        "rules": {
            "one_of": groups(&r.one_of),
            "any_of": groups(&r.any_of),
            "requires": groups(&r.requires),
            "compare": r.compare.iter().map(|c| json!({ "lhs": c.lhs, "op": c.op.symbol(), "rhs": c.rhs })).collect::<Vec<_>>(),
            "required_when": r.required_when.iter().map(|w| json!({ "field": w.field, "when": w.when, "equals": w.equals })).collect::<Vec<_>>(),
        },
    })
}

fn label(l: &Label) -> &'static str {
    match l {
        Label::Single => "single",
        Label::Optional => "optional",
        Label::Repeated => "repeated",
        Label::Map(_) => "map",
    }
}

fn scalar(s: ScalarKind) -> &'static str {
    match s {
        ScalarKind::Bool => "bool",
        ScalarKind::String => "string",
        ScalarKind::Bytes => "bytes",
        ScalarKind::I32 => "int32",
        ScalarKind::I64 => "int64",
        ScalarKind::U32 => "uint32",
        ScalarKind::U64 => "uint64",
        ScalarKind::F32 => "float",
        ScalarKind::F64 => "double",
    }
}

/// `kind` plus `scalar`, `enum` or `message`, for the field (or, for a list
/// or a map, its elements / values).
fn kind(model: &Model, f: &FieldModel, ec: &EnumComments, enums: &mut Map<String, Value>, o: &mut Map<String, Value>) {
    match &f.kind {
        FieldKind::Scalar(s) => {
            o.insert("kind".into(), "scalar".into());
            o.insert("scalar".into(), scalar(*s).into());
        }
        FieldKind::Enum { name, values } => {
            o.insert("kind".into(), "enum".into());
            o.insert("enum".into(), name.clone().into());
            if !enums.contains_key(name) {
                let vs: Vec<Value> = values
                    .iter()
                    .map(|(v, n)| json!({ "name": v, "number": n, "comment": ec.value(name, v) }))
                    .collect();
                enums.insert(name.clone(), json!({ "comment": ec.enum_comment(name), "values": vs }));
            }
        }
        FieldKind::Message(j) => {
            o.insert("kind".into(), "message".into());
            o.insert("message".into(), model.messages[*j].full_name.clone().into());
        }
        FieldKind::Duration => {
            o.insert("kind".into(), "duration".into());
        }
        FieldKind::Timestamp => {
            o.insert("kind".into(), "timestamp".into());
        }
    }
}

/// The default a comment documents: the text after `Default` up to the end
/// of its sentence, as in "Default 10; 0 keeps none." -> "10; 0 keeps none".
fn documented_default(comment: &str) -> Option<String> {
    let flat = comment.replace('\n', " ");
    let at = flat.find("Default ").or_else(|| flat.find("Default:"))?;
    let rest = flat[at + "Default".len()..].trim_start_matches(':').trim_start();
    let end = rest.find(". ").unwrap_or(rest.len());
    let text = rest[..end].trim_end_matches('.').trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// The rules that are set, named as in `validate.proto` (`format` by its
/// enum value name, with `format_text` saying it in words).
fn rules(r: &FieldRules, format_name: &dyn Fn(i32) -> String) -> Value {
    let mut o = Map::new();
    let mut put = |k: &str, v: Value| {
        o.insert(k.to_owned(), v);
    };
    if r.required {
        put("required", true.into());
    }
    if let Some(v) = r.min_len {
        put("min_len", v.into());
    }
    if let Some(v) = r.max_len {
        put("max_len", v.into());
    }
    if let Some((p, _)) = &r.pattern {
        put("pattern", p.clone().into());
    }
    if !r.r#in.is_empty() {
        put("in", r.r#in.clone().into());
    }
    if r.format != 0 {
        put("format", format_name(r.format).into());
        put("format_text", formats::describe(r.format).into());
    }
    if !r.int_in.is_empty() {
        put("int_in", r.int_in.clone().into());
    }
    for (k, v) in [("gte", r.gte), ("lte", r.lte), ("gt", r.gt), ("lt", r.lt)] {
        if let Some(v) = v {
            put(k, if v.fract() == 0.0 { json!(v as i64) } else { json!(v) });
        }
    }
    if let Some((t, _)) = &r.duration_gte {
        put("duration_gte", t.clone().into());
    }
    if let Some((t, _)) = &r.duration_lte {
        put("duration_lte", t.clone().into());
    }
    if let Some(v) = r.min_items {
        put("min_items", v.into());
    }
    if let Some(v) = r.max_items {
        put("max_items", v.into());
    }
    if r.unique {
        put("unique", true.into());
    }
    if let Some(k) = &r.unique_by {
        put("unique_by", k.clone().into());
    }
    if let Some(c) = &r.r#ref {
        put("ref", c.clone().into());
    }
    if r.secret {
        put("secret", true.into());
    }
    for (k, inner) in [("items", &r.items), ("keys", &r.keys), ("values", &r.values)] {
        if let Some(inner) = inner {
            let v = rules(inner, format_name);
            if v.as_object().is_some_and(|m| !m.is_empty()) {
                put(k, v);
            }
        }
    }
    Value::Object(o)
}

/// The comments of enums and their values (the model keeps only names).
struct EnumComments {
    by_name: HashMap<String, (String, HashMap<String, String>)>,
}

impl EnumComments {
    fn new(model: &Model) -> EnumComments {
        let mut text: HashMap<(String, Vec<i32>), String> = HashMap::new();
        for file in model.pool.files() {
            if let Some(info) = &file.file_descriptor_proto().source_code_info {
                for loc in &info.location {
                    if let Some(c) = &loc.leading_comments {
                        let c = c
                            .lines()
                            .map(|l| l.strip_prefix(' ').unwrap_or(l).trim_end())
                            .collect::<Vec<_>>()
                            .join("\n");
                        text.insert((file.name().to_owned(), loc.path.clone()), c.trim().to_owned());
                    }
                }
            }
        }
        let get = |file: &str, path: &[i32]| text.get(&(file.to_owned(), path.to_vec())).cloned().unwrap_or_default();
        let mut by_name = HashMap::new();
        for e in model.pool.all_enums() {
            let file = e.parent_file();
            let values = e.values().map(|v| (v.name().to_owned(), get(file.name(), v.path()))).collect();
            by_name.insert(e.full_name().to_owned(), (get(file.name(), e.path()), values));
        }
        EnumComments { by_name }
    }

    fn enum_comment(&self, name: &str) -> String {
        self.by_name.get(name).map(|(c, _)| c.clone()).unwrap_or_default()
    }

    fn value(&self, name: &str, value: &str) -> String {
        self.by_name.get(name).and_then(|(_, vs)| vs.get(value)).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::documented_default;

    #[test]
    fn the_default_is_the_sentence_after_default() {
        assert_eq!(documented_default("How many. Default 10; 0 keeps none.").as_deref(), Some("10; 0 keeps none"));
        assert_eq!(documented_default("Address. Default `127.0.0.1:9180`.").as_deref(), Some("`127.0.0.1:9180`"));
        assert_eq!(documented_default("Origins.\nDefault: none.").as_deref(), Some("none"));
        assert_eq!(documented_default("No default here."), None);
    }
}
