//! The rule model: every message, field and rule of the schema, read once
//! from a descriptor pool and compiled (patterns, durations) for checking.

use std::collections::HashMap;

use prost_reflect::{
    DescriptorPool, DynamicMessage, ExtensionDescriptor, FieldDescriptor, Kind, MessageDescriptor, Value as PValue,
};
use regex::Regex;

use crate::formats;

/// Package of the rule options.
const RULES_PACKAGE: &str = "pingora_config.validate.v1";

/// An error in the schema itself (a rule that names a missing field, a
/// pattern that does not compile). Found by `make gen`, never at run time.
#[derive(Debug, thiserror::Error)]
#[error("{element}: {message}")]
pub struct ModelError {
    pub element: String,
    pub message: String,
}

/// Scalar field types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarKind {
    Bool,
    String,
    Bytes,
    I32,
    I64,
    U32,
    U64,
    F32,
    F64,
}

impl ScalarKind {
    /// The inclusive range of an integer kind.
    pub fn int_range(self) -> Option<(i128, i128)> {
        match self {
            ScalarKind::I32 => Some((i128::from(i32::MIN), i128::from(i32::MAX))),
            ScalarKind::I64 => Some((i128::from(i64::MIN), i128::from(i64::MAX))),
            ScalarKind::U32 => Some((0, i128::from(u32::MAX))),
            ScalarKind::U64 => Some((0, i128::from(u64::MAX))),
            _ => None,
        }
    }
}

/// What a field (or a list element, or a map value) holds.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldKind {
    Scalar(ScalarKind),
    /// An enum: its full name and its values (name, number), in order.
    Enum {
        name: String,
        values: Vec<(String, i32)>,
    },
    /// A message of the model, by index in [`Model::messages`].
    Message(usize),
    /// `google.protobuf.Duration`, written `"1.5s"`.
    Duration,
    /// `google.protobuf.Timestamp`, written as RFC 3339.
    Timestamp,
}

/// Cardinality of a field.
#[derive(Debug, Clone, PartialEq)]
pub enum Label {
    /// A proto3 field without presence: its zero value means "unset".
    Single,
    /// A field with presence: a message, a proto3 `optional` scalar, or a
    /// oneof member.
    Optional,
    Repeated,
    /// A map with keys of this kind.
    Map(ScalarKind),
}

/// The rules on one field (see `validate.proto` for their meaning).
#[derive(Debug, Clone, Default)]
pub struct FieldRules {
    pub required: bool,
    pub min_len: Option<u32>,
    pub max_len: Option<u32>,
    pub pattern: Option<(String, Regex)>,
    pub r#in: Vec<String>,
    pub format: i32,
    pub int_in: Vec<i64>,
    pub gte: Option<f64>,
    pub lte: Option<f64>,
    pub gt: Option<f64>,
    pub lt: Option<f64>,
    /// Duration bounds, as written and in nanoseconds.
    pub duration_gte: Option<(String, i128)>,
    pub duration_lte: Option<(String, i128)>,
    pub min_items: Option<u32>,
    pub max_items: Option<u32>,
    pub unique: bool,
    pub unique_by: Option<String>,
    pub items: Option<Box<FieldRules>>,
    pub keys: Option<Box<FieldRules>>,
    pub values: Option<Box<FieldRules>>,
    pub r#ref: Option<String>,
    pub secret: bool,
}

/// A group of fields named by a message rule.
#[derive(Debug, Clone)]
pub struct FieldGroup {
    pub fields: Vec<String>,
    pub required: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Lt,
    Lte,
    Gt,
    Gte,
}

impl CompareOp {
    pub fn symbol(self) -> &'static str {
        match self {
            CompareOp::Lt => "<",
            CompareOp::Lte => "<=",
            CompareOp::Gt => ">",
            CompareOp::Gte => ">=",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Compare {
    pub lhs: String,
    pub op: CompareOp,
    pub rhs: String,
}

#[derive(Debug, Clone)]
pub struct RequiredWhen {
    pub field: String,
    pub when: String,
    pub equals: Vec<String>,
}

/// Rules across the fields of one message.
#[derive(Debug, Clone, Default)]
pub struct MessageRules {
    pub one_of: Vec<FieldGroup>,
    pub any_of: Vec<FieldGroup>,
    pub requires: Vec<FieldGroup>,
    pub compare: Vec<Compare>,
    pub required_when: Vec<RequiredWhen>,
}

/// One field of a message.
#[derive(Debug, Clone)]
pub struct FieldModel {
    /// The proto name, which is the YAML key.
    pub name: String,
    pub number: u32,
    pub label: Label,
    pub kind: FieldKind,
    /// Index into [`MessageModel::oneofs`] for a member of a (real) oneof.
    pub oneof: Option<usize>,
    pub rules: FieldRules,
    /// The leading comment in the proto source.
    pub comment: String,
}

/// A (real, not synthetic) oneof of a message.
#[derive(Debug, Clone)]
pub struct OneofModel {
    pub name: String,
    /// Indexes into [`MessageModel::fields`].
    pub fields: Vec<usize>,
    pub required: bool,
    pub comment: String,
}

/// One message of the schema.
#[derive(Debug, Clone)]
pub struct MessageModel {
    pub full_name: String,
    pub fields: Vec<FieldModel>,
    pub by_name: HashMap<String, usize>,
    pub oneofs: Vec<OneofModel>,
    pub rules: MessageRules,
    pub comment: String,
}

impl MessageModel {
    pub fn field(&self, name: &str) -> Option<&FieldModel> {
        self.by_name.get(name).map(|&i| &self.fields[i])
    }

    /// The first field of a (possibly dotted) name used in a message rule.
    pub fn head(&self, name: &str) -> Option<&FieldModel> {
        self.field(name.split('.').next().unwrap_or(name))
    }

    /// The short name, `Route` for `pingora_config.v1.Route`.
    pub fn name(&self) -> &str {
        self.full_name.rsplit('.').next().unwrap_or(&self.full_name)
    }
}

/// Every message of a descriptor pool with its rules.
#[derive(Debug)]
pub struct Model {
    pub pool: DescriptorPool,
    pub messages: Vec<MessageModel>,
    by_name: HashMap<String, usize>,
}

struct Extensions {
    field: Option<ExtensionDescriptor>,
    message: Option<ExtensionDescriptor>,
    oneof: Option<ExtensionDescriptor>,
}

impl Model {
    /// Reads every message of the pool. Fails on a rule that cannot hold
    /// (unknown field names, bad patterns or durations).
    pub fn new(pool: DescriptorPool) -> Result<Model, ModelError> {
        let ext = Extensions {
            field: pool.get_extension_by_name(&format!("{RULES_PACKAGE}.field")),
            message: pool.get_extension_by_name(&format!("{RULES_PACKAGE}.message")),
            oneof: pool.get_extension_by_name(&format!("{RULES_PACKAGE}.oneof")),
        };
        let descs: Vec<MessageDescriptor> =
            pool.all_messages().filter(|m| !m.is_map_entry() && !is_well_known(m.full_name())).collect();
        let by_name: HashMap<String, usize> =
            descs.iter().enumerate().map(|(i, m)| (m.full_name().to_owned(), i)).collect();
        let comments = Comments::new(&pool);
        let mut messages = Vec::with_capacity(descs.len());
        for m in &descs {
            messages.push(read_message(m, &by_name, &ext, &comments)?);
        }
        let model = Model { pool, messages, by_name };
        model.check_rule_targets()?;
        Ok(model)
    }

    pub fn message(&self, full_name: &str) -> Option<&MessageModel> {
        self.by_name.get(full_name).map(|&i| &self.messages[i])
    }

    pub fn index(&self, full_name: &str) -> Option<usize> {
        self.by_name.get(full_name).copied()
    }

    /// The fields along a dotted name (`plugins.mock`), from message `m`.
    pub fn resolve_path<'a>(&'a self, m: &'a MessageModel, path: &str) -> Option<Vec<&'a FieldModel>> {
        let mut out = Vec::new();
        let mut current = m;
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            let f = current.field(part)?;
            out.push(f);
            if parts.peek().is_some() {
                match (&f.kind, &f.label) {
                    (FieldKind::Message(i), Label::Single | Label::Optional) => current = &self.messages[*i],
                    _ => return None,
                }
            }
        }
        Some(out)
    }

    /// Every field and group named by a rule must exist.
    fn check_rule_targets(&self) -> Result<(), ModelError> {
        for m in &self.messages {
            let bad = |what: &str, f: &str| ModelError {
                element: m.full_name.clone(),
                message: format!("{what} names `{f}`, which is not a field of the message"),
            };
            let r = &m.rules;
            for g in r.one_of.iter().chain(&r.any_of).chain(&r.requires) {
                for f in &g.fields {
                    self.resolve_path(m, f).ok_or_else(|| bad("a field group", f))?;
                }
            }
            for c in &r.compare {
                m.field(&c.lhs).ok_or_else(|| bad("compare", &c.lhs))?;
                m.field(&c.rhs).ok_or_else(|| bad("compare", &c.rhs))?;
            }
            for w in &r.required_when {
                m.field(&w.field).ok_or_else(|| bad("required_when", &w.field))?;
                let when = m.field(&w.when).ok_or_else(|| bad("required_when", &w.when))?;
                if let FieldKind::Enum { values, .. } = &when.kind {
                    for e in &w.equals {
                        if !values.iter().any(|(n, _)| n == e) {
                            return Err(bad("required_when equals", e));
                        }
                    }
                }
            }
            for f in &m.fields {
                if let (Some(key), FieldKind::Message(i)) = (&f.rules.unique_by, &f.kind)
                    && self.messages[*i].field(key).is_none()
                {
                    return Err(ModelError {
                        element: format!("{}.{}", m.full_name, f.name),
                        message: format!(
                            "unique_by names `{key}`, which is not a field of {}",
                            self.messages[*i].full_name
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

fn is_well_known(name: &str) -> bool {
    name.starts_with("google.protobuf.")
}

fn read_message(
    m: &MessageDescriptor,
    by_name: &HashMap<String, usize>,
    ext: &Extensions,
    comments: &Comments,
) -> Result<MessageModel, ModelError> {
    let mut oneofs: Vec<OneofModel> = Vec::new();
    let mut oneof_index: HashMap<String, usize> = HashMap::new();
    for o in m.oneofs().filter(|o| !o.is_synthetic()) {
        let required = match &ext.oneof {
            Some(e) => extension(&o.options(), e).is_some_and(|r| bool_field(&r, "required")),
            None => false,
        };
        oneof_index.insert(o.name().to_owned(), oneofs.len());
        oneofs.push(OneofModel {
            name: o.name().to_owned(),
            fields: Vec::new(),
            required,
            comment: comments.get(o.parent_file().name(), o.path()),
        });
    }
    let mut fields = Vec::new();
    for f in m.fields() {
        let element = format!("{}.{}", m.full_name(), f.name());
        let kind = field_kind(&f, by_name, &element)?;
        let label =
            if f.is_map() {
                let key = match f.kind() {
                    Kind::Message(entry) => entry.map_entry_key_field().kind(),
                    _ => Kind::String,
                };
                Label::Map(scalar_kind(&key).ok_or_else(|| ModelError {
                    element: element.clone(),
                    message: "map keys must be scalars".into(),
                })?)
            } else if f.is_list() {
                Label::Repeated
            } else if f.supports_presence() {
                Label::Optional
            } else {
                Label::Single
            };
        let rules = match &ext.field {
            Some(e) => match extension(&f.options(), e) {
                Some(r) => read_field_rules(&r, &element)?,
                None => FieldRules::default(),
            },
            None => FieldRules::default(),
        };
        let oneof = f.containing_oneof().filter(|o| !o.is_synthetic()).and_then(|o| oneof_index.get(o.name()).copied());
        if let Some(i) = oneof {
            oneofs[i].fields.push(fields.len());
        }
        fields.push(FieldModel {
            name: f.name().to_owned(),
            number: f.number(),
            label,
            kind,
            oneof,
            rules,
            comment: comments.get(f.parent_file().name(), f.path()),
        });
    }
    let by_field: HashMap<String, usize> = fields.iter().enumerate().map(|(i, f)| (f.name.clone(), i)).collect();
    let rules = match &ext.message {
        Some(e) => match extension(&m.options(), e) {
            Some(r) => read_message_rules(&r, m.full_name())?,
            None => MessageRules::default(),
        },
        None => MessageRules::default(),
    };
    Ok(MessageModel {
        full_name: m.full_name().to_owned(),
        fields,
        by_name: by_field,
        oneofs,
        rules,
        comment: comments.get(m.parent_file().name(), m.path()),
    })
}

fn scalar_kind(k: &Kind) -> Option<ScalarKind> {
    Some(match k {
        Kind::Bool => ScalarKind::Bool,
        Kind::String => ScalarKind::String,
        Kind::Bytes => ScalarKind::Bytes,
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => ScalarKind::I32,
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => ScalarKind::I64,
        Kind::Uint32 | Kind::Fixed32 => ScalarKind::U32,
        Kind::Uint64 | Kind::Fixed64 => ScalarKind::U64,
        Kind::Float => ScalarKind::F32,
        Kind::Double => ScalarKind::F64,
        Kind::Message(_) | Kind::Enum(_) => return None,
    })
}

fn value_kind(kind: &Kind, by_name: &HashMap<String, usize>, element: &str) -> Result<FieldKind, ModelError> {
    if let Some(s) = scalar_kind(kind) {
        return Ok(FieldKind::Scalar(s));
    }
    match kind {
        Kind::Enum(e) => Ok(FieldKind::Enum {
            name: e.full_name().to_owned(),
            values: e.values().map(|v| (v.name().to_owned(), v.number())).collect(),
        }),
        Kind::Message(m) => match m.full_name() {
            "google.protobuf.Duration" => Ok(FieldKind::Duration),
            "google.protobuf.Timestamp" => Ok(FieldKind::Timestamp),
            name => by_name.get(name).map(|&i| FieldKind::Message(i)).ok_or_else(|| ModelError {
                element: element.to_owned(),
                message: format!("message type {name} is not supported in config documents"),
            }),
        },
        _ => unreachable!("scalars handled above"),
    }
}

fn field_kind(f: &FieldDescriptor, by_name: &HashMap<String, usize>, element: &str) -> Result<FieldKind, ModelError> {
    match f.kind() {
        Kind::Message(entry) if f.is_map() => value_kind(&entry.map_entry_value_field().kind(), by_name, element),
        k => value_kind(&k, by_name, element),
    }
}

fn extension(options: &DynamicMessage, ext: &ExtensionDescriptor) -> Option<DynamicMessage> {
    if !options.has_extension(ext) {
        return None;
    }
    match options.get_extension(ext).as_ref() {
        PValue::Message(m) => Some(m.clone()),
        _ => None,
    }
}

fn has(m: &DynamicMessage, name: &str) -> bool {
    m.has_field_by_name(name)
}

fn get(m: &DynamicMessage, name: &str) -> Option<PValue> {
    if has(m, name) { m.get_field_by_name(name).map(|v| v.into_owned()) } else { None }
}

fn bool_field(m: &DynamicMessage, name: &str) -> bool {
    matches!(get(m, name), Some(PValue::Bool(true)))
}

fn u32_field(m: &DynamicMessage, name: &str) -> Option<u32> {
    match get(m, name) {
        Some(PValue::U32(v)) => Some(v),
        _ => None,
    }
}

fn f64_field(m: &DynamicMessage, name: &str) -> Option<f64> {
    match get(m, name) {
        Some(PValue::F64(v)) => Some(v),
        _ => None,
    }
}

fn string_field(m: &DynamicMessage, name: &str) -> Option<String> {
    match get(m, name) {
        Some(PValue::String(v)) => Some(v),
        _ => None,
    }
}

fn strings_field(m: &DynamicMessage, name: &str) -> Vec<String> {
    match get(m, name) {
        Some(PValue::List(items)) => items.into_iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    }
}

fn message_field(m: &DynamicMessage, name: &str) -> Option<DynamicMessage> {
    match get(m, name) {
        Some(PValue::Message(v)) => Some(v),
        _ => None,
    }
}

fn messages_field(m: &DynamicMessage, name: &str) -> Vec<DynamicMessage> {
    match get(m, name) {
        Some(PValue::List(items)) => items.into_iter().filter_map(|v| v.as_message().cloned()).collect(),
        _ => Vec::new(),
    }
}

fn read_field_rules(m: &DynamicMessage, element: &str) -> Result<FieldRules, ModelError> {
    let err = |message: String| ModelError { element: element.to_owned(), message };
    let pattern = match string_field(m, "pattern") {
        Some(p) => {
            let re = Regex::new(&p).map_err(|e| err(format!("pattern does not compile: {e}")))?;
            Some((p, re))
        }
        None => None,
    };
    let duration = |name: &str| -> Result<Option<(String, i128)>, ModelError> {
        match string_field(m, name) {
            Some(s) => {
                let n = formats::parse_duration(&s)
                    .ok_or_else(|| err(format!("{name} `{s}` is not a duration like `1.5s`")))?;
                Ok(Some((s, n)))
            }
            None => Ok(None),
        }
    };
    let nested = |name: &str| -> Result<Option<Box<FieldRules>>, ModelError> {
        match message_field(m, name) {
            Some(r) => Ok(Some(Box::new(read_field_rules(&r, &format!("{element} ({name})"))?))),
            None => Ok(None),
        }
    };
    let format = match get(m, "format") {
        Some(PValue::EnumNumber(n)) => n,
        _ => 0,
    };
    Ok(FieldRules {
        required: bool_field(m, "required"),
        min_len: u32_field(m, "min_len"),
        max_len: u32_field(m, "max_len"),
        pattern,
        r#in: strings_field(m, "in"),
        format,
        int_in: match get(m, "int_in") {
            Some(PValue::List(items)) => items.into_iter().filter_map(|v| v.as_i64()).collect(),
            _ => Vec::new(),
        },
        gte: f64_field(m, "gte"),
        lte: f64_field(m, "lte"),
        gt: f64_field(m, "gt"),
        lt: f64_field(m, "lt"),
        duration_gte: duration("duration_gte")?,
        duration_lte: duration("duration_lte")?,
        min_items: u32_field(m, "min_items"),
        max_items: u32_field(m, "max_items"),
        unique: bool_field(m, "unique"),
        unique_by: string_field(m, "unique_by"),
        items: nested("items")?,
        keys: nested("keys")?,
        values: nested("values")?,
        r#ref: string_field(m, "ref"),
        secret: bool_field(m, "secret"),
    })
}

fn read_message_rules(m: &DynamicMessage, element: &str) -> Result<MessageRules, ModelError> {
    let groups = |name: &str| -> Vec<FieldGroup> {
        messages_field(m, name)
            .iter()
            .map(|g| FieldGroup { fields: strings_field(g, "fields"), required: bool_field(g, "required") })
            .collect()
    };
    let mut compare = Vec::new();
    for c in messages_field(m, "compare") {
        let op = match get(&c, "op") {
            Some(PValue::EnumNumber(1)) => CompareOp::Lt,
            Some(PValue::EnumNumber(2)) => CompareOp::Lte,
            Some(PValue::EnumNumber(3)) => CompareOp::Gt,
            Some(PValue::EnumNumber(4)) => CompareOp::Gte,
            _ => return Err(ModelError { element: element.to_owned(), message: "compare needs an op".into() }),
        };
        compare.push(Compare {
            lhs: string_field(&c, "lhs").unwrap_or_default(),
            op,
            rhs: string_field(&c, "rhs").unwrap_or_default(),
        });
    }
    Ok(MessageRules {
        one_of: groups("one_of"),
        any_of: groups("any_of"),
        requires: groups("requires"),
        compare,
        required_when: messages_field(m, "required_when")
            .iter()
            .map(|w| RequiredWhen {
                field: string_field(w, "field").unwrap_or_default(),
                when: string_field(w, "when").unwrap_or_default(),
                equals: strings_field(w, "equals"),
            })
            .collect(),
    })
}

/// Leading comments of every element, by file and source path.
struct Comments {
    by_file: HashMap<String, HashMap<Vec<i32>, String>>,
}

impl Comments {
    fn new(pool: &DescriptorPool) -> Comments {
        let mut by_file = HashMap::new();
        for file in pool.files() {
            let mut map = HashMap::new();
            if let Some(info) = &file.file_descriptor_proto().source_code_info {
                for loc in &info.location {
                    if let Some(c) = &loc.leading_comments {
                        map.insert(loc.path.clone(), clean_comment(c));
                    }
                }
            }
            by_file.insert(file.name().to_owned(), map);
        }
        Comments { by_file }
    }

    fn get(&self, file: &str, path: &[i32]) -> String {
        self.by_file.get(file).and_then(|m| m.get(path)).cloned().unwrap_or_default()
    }
}

/// Strips the one leading space protoc keeps on each comment line.
fn clean_comment(c: &str) -> String {
    c.lines().map(|l| l.strip_prefix(' ').unwrap_or(l).trim_end()).collect::<Vec<_>>().join("\n").trim().to_owned()
}
