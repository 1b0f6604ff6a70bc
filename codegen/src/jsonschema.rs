//! JSON Schema (draft 2020-12) for each config document and resource,
//! derived from the descriptors and their rules.
//!
//! The schema describes exactly the proto-JSON shape the loader accepts:
//! snake_case keys, `additionalProperties: false`, enum names as strings
//! (never the `*_UNSPECIFIED` value), Durations as `"1.5s"`, 64-bit integers
//! as integers or numeric strings, oneofs and message rules as
//! `oneOf`/`anyOf`/`if`-`then`. "Set" follows proto3 presence: a zero scalar
//! or an empty list counts as unset, as in the loader. What JSON Schema
//! cannot say (references between resources, duration bounds, `compare`,
//! `unique_by`) is stated in the `description` and checked by the loader.

use std::collections::BTreeSet;
use std::path::PathBuf;

use pingora_config_rules::{FieldKind, FieldModel, FieldRules, Label, MessageModel, Model, ScalarKind, formats};
use serde_json::{Map, Value, json};

use crate::{Error, Outputs};

const PACKAGE: &str = "pingora_config.v1";

/// (message, file stem, title) of each schema written.
pub const DOCUMENTS: [(&str, &str, &str); 9] = [
    ("Config", "config", "pingora-config resources (the config file)"),
    ("Bootstrap", "bootstrap", "pingora-config gateway bootstrap settings"),
    ("Route", "route", "A route"),
    ("Service", "service", "A service"),
    ("Upstream", "upstream", "An upstream"),
    ("Consumer", "consumer", "A consumer"),
    ("Ssl", "ssl", "An SSL certificate"),
    ("GlobalRule", "global_rule", "A global rule"),
    ("PluginConfig", "plugin_config", "A plugin config"),
];

pub fn generate(model: &Model, out: &mut Outputs) -> Result<(), Error> {
    for (message, stem, title) in DOCUMENTS {
        let full = format!("{PACKAGE}.{message}");
        let index = model.index(&full).ok_or_else(|| Error::Other(format!("no message {full}")))?;
        let schema = document(model, index, title);
        let mut text = serde_json::to_string_pretty(&schema).map_err(|e| Error::Other(e.to_string()))?;
        text.push('\n');
        out.insert(PathBuf::from(format!("schema/{stem}.schema.json")), text.into_bytes());
    }
    Ok(())
}

fn def_name(model: &Model, index: usize) -> String {
    let full = &model.messages[index].full_name;
    full.strip_prefix(&format!("{PACKAGE}.")).unwrap_or(full).to_owned()
}

fn document(model: &Model, root: usize, title: &str) -> Value {
    // Every message reachable from the root, in a stable order.
    let mut reachable = BTreeSet::new();
    let mut stack = vec![root];
    while let Some(i) = stack.pop() {
        if reachable.insert(def_name(model, i)) {
            for f in &model.messages[i].fields {
                if let FieldKind::Message(j) = f.kind {
                    stack.push(j);
                }
            }
        }
    }
    let mut defs = Map::new();
    for name in &reachable {
        let i = model.index(&format!("{PACKAGE}.{name}")).unwrap_or(root);
        defs.insert(name.clone(), message(model, &model.messages[i]));
    }
    json!({
        "$comment": crate::header("", "proto/pingora_config/v1/*.proto").trim(),
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "$ref": format!("#/$defs/{}", def_name(model, root)),
        "$defs": defs,
    })
}

fn message(model: &Model, m: &MessageModel) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    let mut all_of = Vec::new();
    let mut notes = Vec::new();
    for f in &m.fields {
        properties.insert(f.name.clone(), field(model, f, &mut notes));
        // proto3 has no absent list: a list with min_items must be written.
        let min_items = matches!(f.label, Label::Repeated) && f.rules.min_items.is_some_and(|n| n > 0);
        if min_items && !f.rules.required {
            required.push(Value::String(f.name.clone()));
        }
        if f.rules.required {
            required.push(Value::String(f.name.clone()));
            all_of.push(set_schema(f));
        }
    }
    for o in &m.oneofs {
        let members: Vec<&FieldModel> = o.fields.iter().map(|&i| &m.fields[i]).collect();
        if o.required {
            all_of.push(json!({ "oneOf": members.iter().map(|f| json!({"required": [f.name]})).collect::<Vec<_>>() }));
        } else if members.len() > 1 {
            all_of.push(json!({ "not": { "anyOf": pairs(&members).iter().map(|(a, b)| json!({"required": [a.name, b.name]})).collect::<Vec<_>>() } }));
        }
    }
    let by = |name: &str| set_path_schema(model, m, name);
    for g in &m.rules.one_of {
        let members: Vec<Value> = g.fields.iter().map(|n| by(n)).collect();
        if g.required {
            all_of.push(json!({ "oneOf": members }));
        } else {
            let mut both = Vec::new();
            for (i, a) in members.iter().enumerate() {
                for b in &members[i + 1..] {
                    both.push(json!({"allOf": [a, b]}));
                }
            }
            all_of.push(json!({ "not": { "anyOf": both } }));
        }
    }
    for g in &m.rules.any_of {
        all_of.push(json!({ "anyOf": g.fields.iter().map(|n| by(n)).collect::<Vec<_>>() }));
    }
    for g in &m.rules.requires {
        if let Some((first, rest)) = g.fields.split_first() {
            all_of
                .push(json!({ "if": by(first), "then": { "allOf": rest.iter().map(|n| by(n)).collect::<Vec<_>>() } }));
        }
    }
    for w in &m.rules.required_when {
        all_of.push(json!({
            "if": { "required": [w.when], "properties": { w.when.clone(): { "enum": w.equals } } },
            "then": by(&w.field),
        }));
    }
    for c in &m.rules.compare {
        notes.push(format!("`{}` must be {} `{}` (checked by the loader).", c.lhs, c.op.symbol(), c.rhs));
    }
    let mut description = m.comment.clone();
    for n in notes {
        description.push_str("\n\n");
        description.push_str(&n);
    }
    let mut schema = Map::new();
    schema.insert("type".into(), json!("object"));
    if !description.is_empty() {
        schema.insert("description".into(), json!(description));
    }
    schema.insert("additionalProperties".into(), json!(false));
    schema.insert("properties".into(), Value::Object(properties));
    if !required.is_empty() {
        schema.insert("required".into(), Value::Array(required));
    }
    if !all_of.is_empty() {
        schema.insert("allOf".into(), Value::Array(all_of));
    }
    Value::Object(schema)
}

fn pairs<'a>(members: &[&'a FieldModel]) -> Vec<(&'a FieldModel, &'a FieldModel)> {
    let mut out = Vec::new();
    for (i, a) in members.iter().enumerate() {
        for b in &members[i + 1..] {
            out.push((*a, *b));
        }
    }
    out
}

/// "This (possibly dotted) field is set": `plugins.mock` is set when
/// `plugins` is and has `mock` set.
fn set_path_schema(model: &Model, m: &MessageModel, path: &str) -> Value {
    let fields = model.resolve_path(m, path).expect("rule targets are checked by the model");
    let mut schema = set_schema(fields[fields.len() - 1]);
    for f in fields[..fields.len() - 1].iter().rev() {
        schema = json!({ "required": [f.name], "properties": { f.name.clone(): schema } });
    }
    schema
}

/// "This field is set", with the loader's proto3 presence semantics.
fn set_schema(f: &FieldModel) -> Value {
    let value = match (&f.label, &f.kind) {
        (Label::Repeated, _) => json!({"minItems": 1}),
        (Label::Map(_), _) => json!({"minProperties": 1}),
        (Label::Optional, _) | (_, FieldKind::Message(_)) => json!(true),
        (Label::Single, FieldKind::Scalar(ScalarKind::String | ScalarKind::Bytes)) => json!({"minLength": 1}),
        (Label::Single, FieldKind::Scalar(ScalarKind::Bool)) => json!({"const": true}),
        (Label::Single, FieldKind::Scalar(_)) => json!({"not": {"const": 0}}),
        (Label::Single, _) => json!(true),
    };
    json!({ "required": [f.name], "properties": { f.name.clone(): value } })
}

fn field(model: &Model, f: &FieldModel, notes: &mut Vec<String>) -> Value {
    let rules = &f.rules;
    let mut schema = match &f.label {
        Label::Repeated => {
            let mut item = value(model, &f.kind, rules.items.as_deref(), notes, &f.name);
            if let (Some(key), FieldKind::Message(_)) = (&rules.unique_by, &f.kind) {
                if let Value::Object(o) = &mut item {
                    o.insert("required".into(), json!([key]));
                    o.insert("properties".into(), json!({ key.clone(): {"minLength": 1} }));
                }
                notes.push(format!("`{}`: no two items may have the same `{key}` (checked by the loader).", f.name));
            }
            let mut s = Map::new();
            s.insert("type".into(), json!("array"));
            s.insert("items".into(), item);
            if let Some(n) = rules.min_items {
                s.insert("minItems".into(), json!(n));
            }
            if let Some(n) = rules.max_items {
                s.insert("maxItems".into(), json!(n));
            }
            if rules.unique {
                s.insert("uniqueItems".into(), json!(true));
            }
            Value::Object(s)
        }
        Label::Map(key) => {
            let key_schema = value(model, &FieldKind::Scalar(*key), rules.keys.as_deref(), notes, &f.name);
            let mut key_schema = key_schema.as_object().cloned().unwrap_or_default();
            key_schema.remove("type");
            json!({
                "type": "object",
                "propertyNames": key_schema,
                "additionalProperties": value(model, &f.kind, rules.values.as_deref(), notes, &f.name),
            })
        }
        Label::Single | Label::Optional => value(model, &f.kind, Some(rules), notes, &f.name),
    };
    if let (Value::Object(o), false) = (&mut schema, f.comment.is_empty()) {
        o.insert("description".into(), json!(f.comment));
    }
    schema
}

fn value(model: &Model, kind: &FieldKind, rules: Option<&FieldRules>, notes: &mut Vec<String>, field: &str) -> Value {
    let none = FieldRules::default();
    let r = rules.unwrap_or(&none);
    let mut s = Map::new();
    match kind {
        FieldKind::Message(i) => {
            s.insert("$ref".into(), json!(format!("#/$defs/{}", def_name(model, *i))));
        }
        FieldKind::Duration => {
            s.insert("type".into(), json!("string"));
            s.insert("pattern".into(), json!(formats::DURATION_PATTERN));
            if let Some((t, _)) = &r.duration_gte {
                notes.push(format!("`{field}` must be at least {t} (checked by the loader)."));
            }
            if let Some((t, _)) = &r.duration_lte {
                notes.push(format!("`{field}` must be at most {t} (checked by the loader)."));
            }
        }
        FieldKind::Timestamp => {
            s.insert("type".into(), json!("string"));
            s.insert(
                "pattern".into(),
                json!(
                    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$"
                ),
            );
        }
        FieldKind::Enum { values, .. } => {
            s.insert("type".into(), json!("string"));
            s.insert("enum".into(), json!(values.iter().filter(|(_, n)| *n != 0).map(|(v, _)| v).collect::<Vec<_>>()));
        }
        FieldKind::Scalar(k) => scalar(*k, r, &mut s),
    }
    if r.r#ref.is_some() {
        notes.push(format!(
            "`{field}` must name an existing resource in `{}` (checked by the loader).",
            r.r#ref.as_deref().unwrap_or_default()
        ));
    }
    Value::Object(s)
}

fn scalar(k: ScalarKind, r: &FieldRules, s: &mut Map<String, Value>) {
    match k {
        ScalarKind::Bool => {
            s.insert("type".into(), json!("boolean"));
        }
        ScalarKind::String | ScalarKind::Bytes => {
            s.insert("type".into(), json!("string"));
            if let Some(n) = r.min_len {
                s.insert("minLength".into(), json!(n));
            }
            let max = match (r.max_len, formats::max_len(r.format)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if let Some(n) = max {
                s.insert("maxLength".into(), json!(n));
            }
            let mut patterns: Vec<String> = r.pattern.iter().map(|(p, _)| p.clone()).collect();
            if let Some(p) = formats::pattern(r.format) {
                patterns.push(p);
            }
            match patterns.len() {
                0 => {}
                1 => {
                    s.insert("pattern".into(), json!(patterns[0]));
                }
                _ => {
                    s.insert("allOf".into(), json!(patterns.iter().map(|p| json!({"pattern": p})).collect::<Vec<_>>()));
                }
            }
            if r.format == 9 {
                s.insert("format".into(), json!("regex"));
            }
            if !r.r#in.is_empty() {
                s.insert("enum".into(), json!(r.r#in));
            }
        }
        ScalarKind::F32 | ScalarKind::F64 => {
            s.insert("type".into(), json!("number"));
            bounds(r, None, s);
        }
        ScalarKind::I32 | ScalarKind::U32 | ScalarKind::I64 | ScalarKind::U64 => {
            let range = k.int_range();
            if matches!(k, ScalarKind::I64 | ScalarKind::U64) {
                let mut int = Map::new();
                int.insert("type".into(), json!("integer"));
                bounds(r, range, &mut int);
                s.insert("anyOf".into(), json!([int, {"type": "string", "pattern": "^-?[0-9]+$"}]));
            } else {
                s.insert("type".into(), json!("integer"));
                bounds(r, range, s);
            }
            if !r.int_in.is_empty() {
                s.insert("enum".into(), json!(r.int_in));
            }
        }
    }
}

fn bounds(r: &FieldRules, range: Option<(i128, i128)>, s: &mut Map<String, Value>) {
    let num = |v: f64| -> Value { if v.fract() == 0.0 && v.abs() < 9.0e15 { json!(v as i64) } else { json!(v) } };
    let lo = match (r.gte, range) {
        (Some(g), Some((l, _))) => Some(g.max(l as f64)),
        (g, Some((l, _))) => g.or(Some(l as f64)),
        (g, None) => g,
    };
    let hi = match (r.lte, range) {
        (Some(g), Some((_, h))) => Some(g.min(h as f64)),
        (g, Some((_, h))) => g.or(Some(h as f64)),
        (g, None) => g,
    };
    if let Some(v) = lo {
        s.insert("minimum".into(), num(v));
    }
    if let Some(v) = hi {
        s.insert("maximum".into(), num(v));
    }
    if let Some(v) = r.gt {
        s.insert("exclusiveMinimum".into(), num(v));
    }
    if let Some(v) = r.lt {
        s.insert("exclusiveMaximum".into(), num(v));
    }
}
