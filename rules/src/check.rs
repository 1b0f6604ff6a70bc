//! Checks a document tree against the model and reports every violation.
//!
//! The walk follows the schema: unknown keys (with the closest valid name),
//! value types, field rules, oneofs, message rules, uniqueness and, on a
//! document that holds the referenced collections, cross-resource
//! references. It never stops at the first error.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use regex::Regex;

use crate::error::Violation;
use crate::formats;
use crate::model::{CompareOp, FieldKind, FieldModel, FieldRules, Label, MessageModel, Model, ScalarKind};
use crate::tree::{Node, Pos, Text, Value};

/// A reference from one resource to another (`upstream_id: web`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The collection of the referenced resource, for example `upstreams`.
    pub collection: String,
    /// The referenced id.
    pub id: String,
    /// Where the reference is written, for example `routes[2].upstream_id`.
    pub path: String,
    pub pos: Option<Pos>,
}

/// The outcome of [`check`].
#[derive(Debug, Default)]
pub struct Checked {
    /// Every violation, in document order.
    pub violations: Vec<Violation>,
    /// Every reference found. Those into collections of the checked document
    /// have been resolved (a dangling one is a violation); the others are
    /// left to the caller, which knows the rest of the config.
    pub references: Vec<Reference>,
}

/// Checks `root` as a message of type `message` (a full name, for example
/// `pingora_config.v1.Config`). Panics if the model has no such message: the
/// caller names a type from the same schema.
pub fn check(model: &Model, message: &str, root: &Node) -> Checked {
    let index = model.index(message).unwrap_or_else(|| panic!("the schema has no message {message}"));
    let mut walk = Walk { model, path: Vec::new(), out: Checked::default(), ids: HashMap::new() };
    walk.message(index, root);
    walk.resolve_references(&model.messages[index]);
    walk.out.violations.sort_by_key(|v| v.pos.map(|p| (p.line, p.column)).unwrap_or((u32::MAX, u32::MAX)));
    walk.out
}

enum Seg<'a> {
    Field(&'a str),
    Index(usize),
    Key(Text),
}

struct Walk<'m> {
    model: &'m Model,
    path: Vec<Seg<'m>>,
    out: Checked,
    /// Ids of the top-level collections (`unique_by`), by collection name.
    ids: HashMap<String, HashSet<String>>,
}

fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_') && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl<'m> Walk<'m> {
    fn path_string(&self) -> String {
        let mut s = String::new();
        for seg in &self.path {
            match seg {
                Seg::Field(f) => {
                    if !s.is_empty() {
                        s.push('.');
                    }
                    s.push_str(f);
                }
                Seg::Index(i) => {
                    let _ = write!(s, "[{i}]");
                }
                Seg::Key(k) if is_ident(k) => {
                    if !s.is_empty() {
                        s.push('.');
                    }
                    s.push_str(k);
                }
                Seg::Key(k) => {
                    let _ = write!(s, "[{k:?}]");
                }
            }
        }
        s
    }

    fn report(&mut self, pos: Option<Pos>, rule: &'static str, message: String) {
        let path = self.path_string();
        self.out.violations.push(Violation { path, pos, rule, message });
    }

    /// Reports at `path.field`.
    fn report_at(&mut self, field: &'m str, pos: Option<Pos>, rule: &'static str, message: String) {
        self.path.push(Seg::Field(field));
        self.report(pos, rule, message);
        self.path.pop();
    }

    fn message(&mut self, index: usize, node: &Node) {
        let model: &'m Model = self.model;
        let msg = &model.messages[index];
        let entries: &[(Text, Option<Pos>, Node)] = match &node.value {
            Value::Map(e) => e,
            Value::Null => {
                self.report(
                    node.pos,
                    "type",
                    format!(
                        "expected a mapping of {} fields, found nothing; write `{{}}` to use the defaults",
                        msg.name()
                    ),
                );
                return;
            }
            _ => {
                self.report(
                    node.pos,
                    "type",
                    format!("expected a mapping of {} fields, found {}", msg.name(), node.type_name()),
                );
                return;
            }
        };
        // The value of each known field, by field index.
        let mut present: Vec<Option<&Node>> = vec![None; msg.fields.len()];
        let mut key_pos: Vec<Option<Pos>> = vec![None; msg.fields.len()];
        // Fields whose value was already reported: rules about their
        // presence would only repeat the same mistake.
        let mut reported: Vec<bool> = vec![false; msg.fields.len()];
        for (key, kpos, value) in entries {
            match msg.by_name.get(key.as_str()) {
                Some(&i) => {
                    present[i] = Some(value);
                    key_pos[i] = *kpos;
                    let field = &msg.fields[i];
                    let before = self.out.violations.len();
                    self.path.push(Seg::Field(&field.name));
                    self.field(field, value);
                    self.path.pop();
                    reported[i] = self.out.violations.len() > before;
                }
                None => {
                    let hint = suggest(key, msg.fields.iter().map(|f| f.name.as_str()))
                        .map(|s| format!("; did you mean `{s}`?"))
                        .unwrap_or_else(|| {
                            let names: Vec<&str> = msg.fields.iter().map(|f| f.name.as_str()).collect();
                            format!("; {} fields are: {}", msg.name(), names.join(", "))
                        });
                    self.path.push(Seg::Key(key.clone()));
                    self.report(*kpos, "unknown_field", format!("unknown field `{key}`{hint}"));
                    self.path.pop();
                }
            }
        }
        let set: Vec<bool> = msg.fields.iter().zip(&present).map(|(f, v)| v.is_some_and(|v| is_set(f, v))).collect();
        let is = |name: &str| match name.split_once('.') {
            None => msg.by_name.get(name).is_some_and(|&i| set[i]),
            Some((head, rest)) => msg
                .by_name
                .get(head)
                .is_some_and(|&i| set[i] && present[i].is_some_and(|n| nested_is_set(model, &msg.fields[i], n, rest))),
        };
        let pos_of =
            |name: &str| msg.by_name.get(name.split('.').next().unwrap_or(name)).and_then(|&i| key_pos[i]).or(node.pos);
        let any_reported = |names: &[String]| {
            names.iter().any(|n| msg.by_name.get(n.split('.').next().unwrap_or(n)).is_some_and(|&i| reported[i]))
        };

        for (i, f) in msg.fields.iter().enumerate() {
            if reported[i] {
                continue;
            }
            // proto3 has no absent list: a missing list is an empty one.
            if let (Label::Repeated, None, Some(min)) = (&f.label, present[i], f.rules.min_items)
                && min > 0
                && !f.rules.required
            {
                self.report_at(
                    &f.name,
                    node.pos,
                    "min_items",
                    format!("missing `{}`: needs at least {min} item{}", f.name, plural(min)),
                );
                continue;
            }
            if f.rules.required && !set[i] {
                let what = match present[i] {
                    Some(_) => format!("`{}` is required and must not be empty", f.name),
                    None => format!("missing required field `{}`", f.name),
                };
                self.report_at(&f.name, key_pos[i].or(node.pos), "required", what);
            }
        }
        for o in &msg.oneofs {
            let members: Vec<&str> = o.fields.iter().map(|&i| msg.fields[i].name.as_str()).collect();
            let chosen: Vec<usize> = o.fields.iter().copied().filter(|&i| present[i].is_some()).collect();
            if chosen.len() > 1 {
                let second = chosen[1];
                self.report_at(
                    &msg.fields[second].name,
                    key_pos[second],
                    "oneof",
                    format!("only one of {} may be set", quote_list(&members)),
                );
            } else if chosen.is_empty() && o.required && !o.fields.iter().any(|&i| reported[i]) {
                self.report(node.pos, "oneof_required", format!("exactly one of {} is required", quote_list(&members)));
            }
        }
        let r = &msg.rules;
        for g in r.one_of.iter().filter(|g| !any_reported(&g.fields)) {
            let names: Vec<&str> = g.fields.iter().map(String::as_str).collect();
            let chosen: Vec<&str> = names.iter().copied().filter(|n| is(n)).collect();
            if chosen.len() > 1 {
                self.report_at(
                    field_name(msg, chosen[1]),
                    pos_of(chosen[1]),
                    "one_of",
                    format!("only one of {} may be set", quote_list(&names)),
                );
            } else if chosen.is_empty() && g.required {
                self.report(node.pos, "one_of", format!("exactly one of {} is required", quote_list(&names)));
            }
        }
        for g in r.any_of.iter().filter(|g| !any_reported(&g.fields)) {
            if !g.fields.iter().any(|n| is(n)) {
                let names: Vec<&str> = g.fields.iter().map(String::as_str).collect();
                self.report(node.pos, "any_of", format!("at least one of {} must be set", quote_list(&names)));
            }
        }
        for g in &r.requires {
            if let Some((first, rest)) = g.fields.split_first()
                && is(first)
            {
                for other in rest.iter().filter(|o| !is(o)) {
                    self.report_at(
                        field_name(msg, other),
                        pos_of(first),
                        "requires",
                        format!("`{other}` is required when `{first}` is set"),
                    );
                }
            }
        }
        for w in &r.required_when {
            let when_value = msg.by_name.get(w.when.as_str()).and_then(|&i| present[i]).and_then(|n| match &n.value {
                Value::Str(s) => Some(s.as_str()),
                _ => None,
            });
            if let Some(v) = when_value
                && w.equals.iter().any(|e| e == v)
                && !is(&w.field)
            {
                self.report_at(
                    field_name(msg, &w.field),
                    pos_of(&w.when),
                    "required_when",
                    format!("`{}` is required when `{}` is {v}", w.field, w.when),
                );
            }
        }
        for c in &r.compare {
            let value = |name: &str| msg.by_name.get(name).and_then(|&i| present[i]).and_then(comparable);
            if let (Some(l), Some(rv)) = (value(&c.lhs), value(&c.rhs)) {
                let ok = match c.op {
                    CompareOp::Lt => l < rv,
                    CompareOp::Lte => l <= rv,
                    CompareOp::Gt => l > rv,
                    CompareOp::Gte => l >= rv,
                };
                if !ok {
                    self.report_at(
                        field_name(msg, &c.lhs),
                        pos_of(&c.lhs),
                        "compare",
                        format!("`{}` must be {} `{}`", c.lhs, c.op.symbol(), c.rhs),
                    );
                }
            }
        }
    }

    fn field(&mut self, field: &'m FieldModel, node: &Node) {
        let rules = &field.rules;
        match &field.label {
            Label::Repeated => {
                let Value::Seq(items) = &node.value else {
                    self.report(node.pos, "type", format!("expected a list, found {}", node.type_name()));
                    return;
                };
                self.list_rules(field, rules, items, node.pos);
                let item_rules = rules.items.as_deref();
                for (i, item) in items.iter().enumerate() {
                    self.path.push(Seg::Index(i));
                    self.value(&field.kind, item_rules, item);
                    self.path.pop();
                }
            }
            Label::Map(key_kind) => {
                let Value::Map(entries) = &node.value else {
                    self.report(node.pos, "type", format!("expected a mapping, found {}", node.type_name()));
                    return;
                };
                let key_kind = FieldKind::Scalar(*key_kind);
                for (k, kpos, v) in entries {
                    self.path.push(Seg::Key(k.clone()));
                    let key_node = Node::new(key_value(&key_kind, k), *kpos);
                    self.value(&key_kind, rules.keys.as_deref(), &key_node);
                    self.value(&field.kind, rules.values.as_deref(), v);
                    self.path.pop();
                }
            }
            Label::Single | Label::Optional => self.value(&field.kind, Some(rules), node),
        }
    }

    fn list_rules(&mut self, field: &'m FieldModel, rules: &FieldRules, items: &[Node], pos: Option<Pos>) {
        let n = items.len() as u32;
        if let Some(min) = rules.min_items
            && n < min
        {
            self.report(pos, "min_items", format!("needs at least {min} item{}, has {n}", plural(min)));
        }
        if let Some(max) = rules.max_items
            && n > max
        {
            self.report(pos, "max_items", format!("allows at most {max} item{}, has {n}", plural(max)));
        }
        if rules.unique {
            let mut seen: HashMap<String, usize> = HashMap::new();
            for (i, item) in items.iter().enumerate() {
                let key = match &item.value {
                    Value::Str(s) => format!("{s:?}"),
                    Value::Int(v) => v.to_string(),
                    _ => item.to_json().to_string(),
                };
                if let Some(first) = seen.get(&key) {
                    self.path.push(Seg::Index(i));
                    self.report(item.pos, "unique", format!("duplicate value {key}, already at [{first}]"));
                    self.path.pop();
                } else {
                    seen.insert(key, i);
                }
            }
        }
        if let Some(key) = &rules.unique_by {
            // When the key field is itself `required`, the item's own check
            // reports it missing; do not say it twice.
            let key_required = match &field.kind {
                FieldKind::Message(i) => self.model.messages[*i].field(key).is_some_and(|f| f.rules.required),
                _ => false,
            };
            let mut seen: HashMap<&str, usize> = HashMap::new();
            for (i, item) in items.iter().enumerate() {
                let Value::Map(entries) = &item.value else { continue };
                self.path.push(Seg::Index(i));
                match entries.iter().find(|(k, _, _)| k == key) {
                    Some((_, kpos, Node { value: Value::Str(id), .. })) if !id.is_empty() => {
                        if let Some(first) = seen.get(id.as_str()) {
                            self.report_at(
                                field_name_of(field, key),
                                *kpos,
                                "unique_by",
                                format!("duplicate {key} `{id}`, already used by {}[{first}]", field.name),
                            );
                        } else {
                            seen.insert(id, i);
                        }
                    }
                    Some((_, _, Node { value: Value::Str(_), .. })) | None if key_required => {}
                    Some((_, kpos, Node { value: Value::Str(_), .. })) => {
                        self.report_at(
                            field_name_of(field, key),
                            *kpos,
                            "required",
                            format!("`{key}` must not be empty (every item of `{}` needs a unique {key})", field.name),
                        );
                    }
                    None => {
                        self.report_at(
                            field_name_of(field, key),
                            item.pos,
                            "required",
                            format!(
                                "missing required field `{key}` (every item of `{}` needs a unique {key})",
                                field.name
                            ),
                        );
                    }
                    Some(_) => {} // wrong type: reported by the item's own check
                }
                self.path.pop();
            }
            if self.path.len() == 1 {
                self.ids.insert(field.name.clone(), seen.keys().map(|s| (*s).to_owned()).collect());
            }
        }
    }

    fn value(&mut self, kind: &FieldKind, rules: Option<&FieldRules>, node: &Node) {
        let none = FieldRules::default();
        let rules = rules.unwrap_or(&none);
        match kind {
            FieldKind::Message(i) => self.message(*i, node),
            FieldKind::Duration => {
                let Value::Str(s) = &node.value else {
                    self.report(
                        node.pos,
                        "type",
                        format!("expected a duration such as \"1.5s\", found {}", node.type_name()),
                    );
                    return;
                };
                if formats::parse_duration(s).is_none() && duration_re().is_match(s) {
                    self.report(
                        node.pos,
                        "duration_range",
                        format!("`{s}` is out of range: a duration is at most 315576000000s (10,000 years)"),
                    );
                    return;
                }
                let Some(nanos) = formats::parse_duration(s) else {
                    let hint =
                        formats::suggest_duration(s).map(|d| format!("; did you mean \"{d}\"?")).unwrap_or_default();
                    self.report(
                        node.pos,
                        "duration",
                        format!(
                            "`{s}` is not a duration: write seconds with an `s`, such as \"1.5s\" or \"0.250s\"{hint}"
                        ),
                    );
                    return;
                };
                if let Some((text, min)) = &rules.duration_gte
                    && nanos < *min
                {
                    self.report(node.pos, "duration_gte", format!("must be at least {text}, is {s}"));
                }
                if let Some((text, max)) = &rules.duration_lte
                    && nanos > *max
                {
                    self.report(node.pos, "duration_lte", format!("must be at most {text}, is {s}"));
                }
            }
            FieldKind::Timestamp => {
                let ok = matches!(&node.value, Value::Str(s) if timestamp_re().is_match(s));
                if !ok {
                    self.report(
                        node.pos,
                        "type",
                        "expected an RFC 3339 timestamp such as \"2026-01-02T03:04:05Z\"".into(),
                    );
                }
            }
            FieldKind::Enum { values, .. } => {
                let Value::Str(s) = &node.value else {
                    let names: Vec<&str> = values.iter().filter(|(_, n)| *n != 0).map(|(s, _)| s.as_str()).collect();
                    self.report(
                        node.pos,
                        "type",
                        format!("expected one of {}, found {}", quote_list(&names), node.type_name()),
                    );
                    return;
                };
                match values.iter().find(|(name, _)| name == s) {
                    Some((_, 0)) => self.report(
                        node.pos,
                        "enum",
                        format!("`{s}` is the unset value; leave the field out to get the default"),
                    ),
                    Some(_) => {}
                    None => {
                        let names: Vec<&str> =
                            values.iter().filter(|(_, n)| *n != 0).map(|(s, _)| s.as_str()).collect();
                        let hint = names
                            .iter()
                            .find(|n| n.eq_ignore_ascii_case(s))
                            .copied()
                            .or_else(|| suggest(s, names.iter().copied()))
                            .map(|n| format!("did you mean `{n}`? "))
                            .unwrap_or_default();
                        self.report(
                            node.pos,
                            "enum",
                            format!("unknown value `{s}`; {hint}allowed: {}", names.join(", ")),
                        );
                    }
                }
            }
            FieldKind::Scalar(s) => self.scalar(*s, rules, node),
        }
    }

    fn scalar(&mut self, kind: ScalarKind, rules: &FieldRules, node: &Node) {
        match kind {
            ScalarKind::Bool => {
                if !matches!(node.value, Value::Bool(_)) {
                    let hint = match &node.value {
                        Value::Str(s)
                            if ["yes", "no", "on", "off", "y", "n"].contains(&s.to_ascii_lowercase().as_str()) =>
                        {
                            " (write `true` or `false`)"
                        }
                        _ => "",
                    };
                    self.report(node.pos, "type", format!("expected true or false, found {}{hint}", node.type_name()));
                }
            }
            ScalarKind::String | ScalarKind::Bytes => match &node.value {
                Value::Str(s) => self.string(rules, s, node.pos),
                Value::Int(_) | Value::Float(_) | Value::Bool(_) => {
                    self.report(node.pos, "type", format!("expected a string, found {}; quote it", node.type_name()));
                }
                _ => self.report(node.pos, "type", format!("expected a string, found {}", node.type_name())),
            },
            ScalarKind::I32 | ScalarKind::I64 | ScalarKind::U32 | ScalarKind::U64 => {
                let wide = matches!(kind, ScalarKind::I64 | ScalarKind::U64);
                let v = match &node.value {
                    Value::Int(i) => Some(*i),
                    // proto-JSON (and JSON Schema's `integer`) accept 1.0 and 8e1.
                    Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i128),
                    Value::Str(s) if wide && is_int_text(s) => s.parse::<i128>().ok(),
                    _ => None,
                };
                let Some(v) = v else {
                    self.report(node.pos, "type", format!("expected an integer, found {}", node.type_name()));
                    return;
                };
                let (lo, hi) = kind.int_range().unwrap_or((i128::MIN, i128::MAX));
                if v < lo || v > hi {
                    self.report(node.pos, "type", format!("{v} is out of range {lo}..={hi}"));
                    return;
                }
                if !rules.int_in.is_empty() && !rules.int_in.iter().any(|&a| i128::from(a) == v) {
                    let allowed: Vec<String> = rules.int_in.iter().map(|a| a.to_string()).collect();
                    self.report(node.pos, "int_in", format!("{v} is not allowed; allowed: {}", allowed.join(", ")));
                }
                self.range(rules, v as f64, node.pos);
            }
            ScalarKind::F32 | ScalarKind::F64 => {
                let v = match node.value {
                    Value::Int(i) => i as f64,
                    Value::Float(f) if f.is_finite() => f,
                    _ => {
                        self.report(node.pos, "type", format!("expected a finite number, found {}", node.type_name()));
                        return;
                    }
                };
                self.range(rules, v, node.pos);
            }
        }
    }

    fn range(&mut self, rules: &FieldRules, v: f64, pos: Option<Pos>) {
        let checks = [
            (rules.gte, "gte", ">=", v >= rules.gte.unwrap_or(f64::NEG_INFINITY)),
            (rules.lte, "lte", "<=", v <= rules.lte.unwrap_or(f64::INFINITY)),
            (rules.gt, "gt", ">", v > rules.gt.unwrap_or(f64::NEG_INFINITY)),
            (rules.lt, "lt", "<", v < rules.lt.unwrap_or(f64::INFINITY)),
        ];
        for (bound, rule, op, ok) in checks {
            if let (Some(b), false) = (bound, ok) {
                self.report(pos, rule, format!("must be {op} {b}, is {v}"));
            }
        }
    }

    fn string(&mut self, rules: &FieldRules, s: &str, pos: Option<Pos>) {
        // A secret's value is never echoed into an error message or a log.
        let shown = if rules.secret { "the secret".to_owned() } else { format!("`{}`", shorten(s)) };
        let len = s.chars().count() as u32;
        if let Some(min) = rules.min_len
            && len < min
        {
            self.report(pos, "min_len", format!("must be at least {min} character{} long, is {len}", plural(min)));
        }
        if let Some(max) = rules.max_len
            && len > max
        {
            self.report(pos, "max_len", format!("must be at most {max} character{} long, is {len}", plural(max)));
        }
        if let Some((text, re)) = &rules.pattern
            && !re.is_match(s)
        {
            self.report(pos, "pattern", format!("{shown} does not match the pattern {text}"));
        }
        if !rules.r#in.is_empty() && !rules.r#in.iter().any(|a| a == s) {
            let allowed: Vec<&str> = rules.r#in.iter().map(String::as_str).collect();
            let hint = suggest(s, allowed.iter().copied()).map(|h| format!("did you mean `{h}`? ")).unwrap_or_default();
            self.report(pos, "in", format!("{shown} is not allowed; {hint}allowed: {}", allowed.join(", ")));
        }
        if rules.format != 0 && !formats::matches(rules.format, s) {
            self.report(pos, "format", format!("{shown} is not {}", formats::describe(rules.format)));
        }
        if let Some(collection) = &rules.r#ref
            && !s.is_empty()
        {
            let path = self.path_string();
            self.out.references.push(Reference { collection: collection.clone(), id: s.to_owned(), path, pos });
        }
    }

    /// Resolves the references into collections that the root message holds.
    fn resolve_references(&mut self, root: &MessageModel) {
        let mut dangling = Vec::new();
        for r in &self.out.references {
            if root.field(&r.collection).is_none() {
                continue;
            }
            let known = self.ids.get(&r.collection).is_some_and(|ids| ids.contains(&r.id));
            if !known {
                let hint = self
                    .ids
                    .get(&r.collection)
                    .and_then(|ids| suggest(&r.id, ids.iter().map(String::as_str)))
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                let kind = r.collection.trim_end_matches('s');
                dangling.push(Violation {
                    path: r.path.clone(),
                    pos: r.pos,
                    rule: "ref",
                    message: format!("{kind} `{}` does not exist in `{}`{hint}", r.id, r.collection),
                });
            }
        }
        self.out.violations.extend(dangling);
    }
}

fn field_name<'m>(msg: &'m MessageModel, name: &str) -> &'m str {
    msg.head(name).map(|f| f.name.as_str()).unwrap_or("")
}

/// Whether the dotted `rest` is set inside the message value `node` of `field`.
fn nested_is_set(model: &Model, field: &FieldModel, node: &Node, rest: &str) -> bool {
    let (FieldKind::Message(i), Value::Map(entries)) = (&field.kind, &node.value) else { return false };
    let inner = &model.messages[*i];
    let (head, tail) = match rest.split_once('.') {
        Some((h, t)) => (h, Some(t)),
        None => (rest, None),
    };
    let Some(f) = inner.field(head) else { return false };
    let Some((_, _, value)) = entries.iter().find(|(k, _, _)| k == head) else { return false };
    is_set(f, value) && tail.is_none_or(|t| nested_is_set(model, f, value, t))
}

fn field_name_of<'m>(field: &'m FieldModel, _key: &str) -> &'m str {
    // The id field's name as a static-enough &str: stored in the rules.
    field.rules.unique_by.as_deref().unwrap_or("")
}

/// Whether a present value counts as "set": proto3 presence semantics, so a
/// zero scalar or an empty list is unset, while a message or an `optional`
/// scalar is set as soon as it is written (null is never a value).
fn is_set(field: &FieldModel, node: &Node) -> bool {
    match (&field.label, &node.value) {
        (_, Value::Null) => false,
        (Label::Repeated, Value::Seq(items)) => !items.is_empty(),
        (Label::Map(_), Value::Map(entries)) => !entries.is_empty(),
        (Label::Optional, _) => true,
        (_, Value::Str(s)) => match &field.kind {
            FieldKind::Enum { values, .. } => values.iter().any(|(n, v)| n == s && *v != 0),
            _ => !s.is_empty(),
        },
        (_, Value::Int(i)) => *i != 0,
        (_, Value::Float(f)) => *f != 0.0,
        (_, Value::Bool(b)) => *b,
        _ => true,
    }
}

/// A number or a duration (in nanoseconds) for `compare`.
fn comparable(node: &Node) -> Option<f64> {
    match &node.value {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        Value::Str(s) => formats::parse_duration(s).map(|n| n as f64),
        _ => None,
    }
}

fn key_value(kind: &FieldKind, key: &str) -> Value {
    match kind {
        FieldKind::Scalar(ScalarKind::String) => Value::Str(Text::from(key)),
        FieldKind::Scalar(ScalarKind::Bool) => match key {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::Str(Text::from(key)),
        },
        _ => key.parse::<i128>().map(Value::Int).unwrap_or_else(|_| Value::Str(Text::from(key))),
    }
}

fn is_int_text(s: &str) -> bool {
    let d = s.strip_prefix('-').unwrap_or(s);
    !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())
}

fn duration_re() -> &'static Regex {
    static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| Regex::new(formats::DURATION_PATTERN).expect("the duration pattern compiles"))
}

fn timestamp_re() -> &'static Regex {
    static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$")
            .expect("timestamp pattern compiles")
    })
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn quote_list(names: &[&str]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 60 { format!("{}...", s.chars().take(57).collect::<String>()) } else { s.to_owned() }
}

/// The candidate closest to `wrong`, when it is close enough to be what the
/// author meant (a typo, a different case, camelCase for snake_case).
pub(crate) fn suggest<'a>(wrong: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let normal = |s: &str| s.to_ascii_lowercase().replace(['_', '-'], "");
    let w = normal(wrong);
    let mut best: Option<(&str, f64)> = None;
    for c in candidates {
        let score = if normal(c) == w { 2.0 } else { strsim::jaro_winkler(&w, &normal(c)) };
        if best.is_none_or(|(_, b)| score > b) {
            best = Some((c, score));
        }
    }
    best.filter(|(_, s)| *s >= 0.85).map(|(c, _)| c)
}

#[cfg(test)]
mod tests {
    use super::suggest;

    #[test]
    fn suggestions_catch_typos_and_camel_case() {
        let fields = ["upstream_id", "service_id", "uris", "hosts"];
        assert_eq!(suggest("upsteam_id", fields.iter().copied()), Some("upstream_id"));
        assert_eq!(suggest("upstreamId", fields.iter().copied()), Some("upstream_id"));
        assert_eq!(suggest("uri", fields.iter().copied()), Some("uris"));
        assert_eq!(suggest("banana", fields.iter().copied()), None);
    }
}
