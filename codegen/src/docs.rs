//! The Markdown config reference (`docs/reference.md`), from the proto
//! comments and rules, rendered with askama.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use askama::Template;
use pingora_config_rules::{FieldKind, FieldModel, FieldRules, Label, Model, ScalarKind, formats};

use crate::{Error, Outputs};

const PACKAGE: &str = "pingora_config.v1";

#[derive(Template)]
#[template(path = "reference.md", escape = "none")]
struct Reference {
    header: String,
    messages: Vec<MessageDoc>,
    services: Vec<ServiceDoc>,
}

struct MessageDoc {
    name: String,
    comment: String,
    notes: Vec<String>,
    fields: Vec<FieldDoc>,
}

struct FieldDoc {
    name: String,
    ty: String,
    rules: String,
    description: String,
}

struct ServiceDoc {
    name: String,
    comment: String,
    methods: Vec<MethodDoc>,
}

struct MethodDoc {
    name: String,
    input: String,
    output: String,
    description: String,
}

pub fn generate(model: &Model, out: &mut Outputs) -> Result<(), Error> {
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    for root in ["Config", "Bootstrap"] {
        let i = model.index(&format!("{PACKAGE}.{root}")).ok_or_else(|| Error::Other(format!("no message {root}")))?;
        visit(model, i, &mut seen, &mut order);
    }
    let messages = order.iter().map(|&i| message_doc(model, i)).collect();
    let page = Reference {
        header: crate::header("", "proto/pingora_config/v1/*.proto").trim().to_owned(),
        messages,
        services: services(model),
    };
    let mut text = page.render().map_err(|e| Error::Other(format!("rendering the reference: {e}")))?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    out.insert(PathBuf::from("docs/reference.md"), text.into_bytes());
    Ok(())
}

/// Depth-first, in field order: a message is followed by the messages it
/// introduces, so the page reads top-down.
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

fn short(full: &str) -> &str {
    full.strip_prefix("pingora_config.v1.").unwrap_or(full)
}

fn anchor(name: &str) -> String {
    name.to_ascii_lowercase().replace('.', "")
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace("\n\n", "<br><br>").replace('\n', " ")
}

fn message_doc(model: &Model, i: usize) -> MessageDoc {
    let m = &model.messages[i];
    let mut notes = Vec::new();
    for o in &m.oneofs {
        let names: Vec<String> = o.fields.iter().map(|&f| format!("`{}`", m.fields[f].name)).collect();
        let how = if o.required { "Exactly one" } else { "At most one" };
        notes.push(format!("{how} of {} (`{}`).", names.join(", "), o.name));
    }
    let list = |fields: &[String]| fields.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ");
    for g in &m.rules.one_of {
        notes.push(format!("{} of {}.", if g.required { "Exactly one" } else { "At most one" }, list(&g.fields)));
    }
    for g in &m.rules.any_of {
        notes.push(format!("At least one of {}.", list(&g.fields)));
    }
    for g in &m.rules.requires {
        if let Some((first, rest)) = g.fields.split_first() {
            notes.push(format!("`{first}` requires {}.", list(rest)));
        }
    }
    for w in &m.rules.required_when {
        notes.push(format!("`{}` is required when `{}` is {}.", w.field, w.when, w.equals.join(" or ")));
    }
    for c in &m.rules.compare {
        notes.push(format!("`{}` must be {} `{}`.", c.lhs, c.op.symbol(), c.rhs));
    }
    MessageDoc {
        name: short(&m.full_name).to_owned(),
        comment: m.comment.clone(),
        notes,
        fields: m.fields.iter().map(|f| field_doc(model, f)).collect(),
    }
}

fn kind_name(model: &Model, kind: &FieldKind) -> String {
    match kind {
        FieldKind::Message(j) => {
            let n = short(&model.messages[*j].full_name);
            format!("[{n}](#{})", anchor(n))
        }
        FieldKind::Duration => "duration".into(),
        FieldKind::Timestamp => "timestamp".into(),
        FieldKind::Enum { values, .. } => {
            let v: Vec<String> = values.iter().filter(|(_, n)| *n != 0).map(|(s, _)| format!("`{s}`")).collect();
            format!("enum: {}", v.join(", "))
        }
        FieldKind::Scalar(s) => scalar_name(*s).into(),
    }
}

fn scalar_name(s: ScalarKind) -> &'static str {
    match s {
        ScalarKind::Bool => "bool",
        ScalarKind::String => "string",
        ScalarKind::Bytes => "bytes (base64)",
        ScalarKind::I32 => "int32",
        ScalarKind::I64 => "int64",
        ScalarKind::U32 => "uint32",
        ScalarKind::U64 => "uint64",
        ScalarKind::F32 => "float",
        ScalarKind::F64 => "double",
    }
}

fn field_doc(model: &Model, f: &FieldModel) -> FieldDoc {
    let base = kind_name(model, &f.kind);
    let ty = match &f.label {
        Label::Repeated => format!("list of {base}"),
        Label::Map(k) => format!("map of {} to {base}", scalar_name(*k)),
        _ => base,
    };
    let mut rules = rule_words(&f.rules);
    if let Some(items) = &f.rules.items {
        let inner = rule_words(items);
        if !inner.is_empty() {
            rules.push(format!("each: {}", inner.join(", ")));
        }
    }
    if let Some(keys) = &f.rules.keys {
        let inner = rule_words(keys);
        if !inner.is_empty() {
            rules.push(format!("keys: {}", inner.join(", ")));
        }
    }
    if let Some(values) = &f.rules.values {
        let inner = rule_words(values);
        if !inner.is_empty() {
            rules.push(format!("values: {}", inner.join(", ")));
        }
    }
    FieldDoc { name: f.name.clone(), ty: cell(&ty), rules: cell(&rules.join(", ")), description: cell(&f.comment) }
}

fn rule_words(r: &FieldRules) -> Vec<String> {
    let mut w = Vec::new();
    if r.required {
        w.push("**required**".to_owned());
    }
    match (r.min_len, r.max_len) {
        (Some(a), Some(b)) => w.push(format!("length {a}–{b}")),
        (Some(a), None) => w.push(format!("length ≥ {a}")),
        (None, Some(b)) => w.push(format!("length ≤ {b}")),
        _ => {}
    }
    if let Some((p, _)) = &r.pattern {
        w.push(format!("pattern `{p}`"));
    }
    if !r.r#in.is_empty() {
        w.push(format!("one of {}", r.r#in.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")));
    }
    if !r.int_in.is_empty() {
        w.push(format!("one of {}", r.int_in.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ")));
    }
    if r.format != 0 {
        w.push(formats::describe(r.format).to_owned());
    }
    let num = |v: f64| if v.fract() == 0.0 { format!("{}", v as i64) } else { format!("{v}") };
    for (b, op) in [(r.gte, "≥"), (r.gt, ">"), (r.lte, "≤"), (r.lt, "<")] {
        if let Some(v) = b {
            w.push(format!("{op} {}", num(v)));
        }
    }
    if let Some((t, _)) = &r.duration_gte {
        w.push(format!("≥ {t}"));
    }
    if let Some((t, _)) = &r.duration_lte {
        w.push(format!("≤ {t}"));
    }
    match (r.min_items, r.max_items) {
        (Some(a), Some(b)) => w.push(format!("{a}–{b} items")),
        (Some(a), None) => w.push(format!("≥ {a} items")),
        (None, Some(b)) => w.push(format!("≤ {b} items")),
        _ => {}
    }
    if r.unique {
        w.push("unique".into());
    }
    if let Some(k) = &r.unique_by {
        w.push(format!("unique `{k}`"));
    }
    if let Some(c) = &r.r#ref {
        w.push(format!("refers to `{c}`"));
    }
    if r.secret {
        w.push("secret".into());
    }
    w
}

fn services(model: &Model) -> Vec<ServiceDoc> {
    let mut comments: HashMap<(String, Vec<i32>), String> = HashMap::new();
    for file in model.pool.files() {
        if let Some(info) = &file.file_descriptor_proto().source_code_info {
            for loc in &info.location {
                if let Some(c) = &loc.leading_comments {
                    let text =
                        c.lines().map(|l| l.strip_prefix(' ').unwrap_or(l).trim_end()).collect::<Vec<_>>().join("\n");
                    comments.insert((file.name().to_owned(), loc.path.clone()), text.trim().to_owned());
                }
            }
        }
    }
    let get = |file: &str, path: &[i32]| comments.get(&(file.to_owned(), path.to_vec())).cloned().unwrap_or_default();
    let mut out: Vec<ServiceDoc> = model
        .pool
        .services()
        .filter(|s| s.package_name() == PACKAGE)
        .map(|s| ServiceDoc {
            name: s.name().to_owned(),
            comment: get(s.parent_file().name(), s.path()),
            methods: s
                .methods()
                .map(|m| MethodDoc {
                    name: m.name().to_owned(),
                    input: short(m.input().full_name()).to_owned(),
                    output: format!(
                        "{}`{}`",
                        if m.is_server_streaming() { "stream of " } else { "" },
                        short(m.output().full_name())
                    ),
                    description: cell(&get(s.parent_file().name(), m.path())),
                })
                .collect(),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
