//! The config as proto-JSON values: secrets redacted and restored (driven by
//! the `secret` rule of the schema), field-level diffs, the YAML the file
//! store writes, and fingerprints.

use pingora_config::v1;
use pingora_config_rules::{FieldKind, Label, MessageModel};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::admin::store::{Key, Metas};
use crate::shared::SharedConfig;

/// What a secret reads as in every response and event.
pub const REDACTED: &str = "<redacted>";

/// A message as proto-JSON (proto field names, as the loader reads them).
pub fn to_json<T: Serialize>(message: &T) -> Value {
    serde_json::to_value(message).unwrap_or(Value::Null)
}

pub fn from_json<T: DeserializeOwned>(value: Value) -> Result<T, String> {
    serde_json::from_value(value).map_err(|e| e.to_string())
}

fn message_model(full_name: &str) -> Option<&'static MessageModel> {
    pingora_config::model().message(full_name)
}

/// `message` with every secret field replaced by [`REDACTED`].
pub fn redact<T: prost::Name + Serialize + DeserializeOwned + Clone>(message: &T) -> T {
    let mut value = to_json(message);
    if let Some(m) = message_model(&T::full_name()) {
        redact_value(m, &mut value);
    }
    from_json(value).unwrap_or_else(|_| message.clone())
}

/// Redacts a proto-JSON value of message `m` in place.
pub fn redact_value(m: &MessageModel, value: &mut Value) {
    let Value::Object(map) = value else { return };
    for (key, v) in map.iter_mut() {
        let Some(field) = m.field(key) else { continue };
        if field.rules.secret {
            match v {
                Value::String(s) if !s.is_empty() => *s = REDACTED.to_owned(),
                Value::Array(items) => {
                    for item in items {
                        if let Value::String(s) = item {
                            *s = REDACTED.to_owned();
                        }
                    }
                }
                _ => {}
            }
            continue;
        }
        let FieldKind::Message(index) = field.kind else { continue };
        let sub = &pingora_config::model().messages[index];
        match (&field.label, v) {
            (Label::Repeated, Value::Array(items)) => items.iter_mut().for_each(|i| redact_value(sub, i)),
            (Label::Map(_), Value::Object(entries)) => entries.values_mut().for_each(|i| redact_value(sub, i)),
            (_, v) => redact_value(sub, v),
        }
    }
}

/// Replaces each secret sent as [`REDACTED`] in `new` by the value stored at
/// the same place of `old`. Returns the paths of markers with nothing stored.
pub fn restore<T: prost::Name + Serialize + DeserializeOwned>(
    new: &T,
    old: Option<&T>,
    prefix: &str,
) -> Result<(T, Vec<String>), String> {
    let mut value = to_json(new);
    let old = old.map(to_json);
    let mut missing = Vec::new();
    if let Some(m) = message_model(&T::full_name()) {
        restore_value(m, &mut value, old.as_ref(), prefix, &mut missing);
    }
    Ok((from_json(value)?, missing))
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() { key.to_owned() } else { format!("{prefix}.{key}") }
}

fn restore_value(m: &MessageModel, value: &mut Value, old: Option<&Value>, path: &str, missing: &mut Vec<String>) {
    let Value::Object(map) = value else { return };
    for (key, v) in map.iter_mut() {
        let Some(field) = m.field(key) else { continue };
        let here = join(path, key);
        let old_v = old.and_then(|o| o.get(key));
        if field.rules.secret {
            match v {
                Value::String(s) if s == REDACTED => match old_v {
                    Some(Value::String(o)) if o != REDACTED => *s = o.clone(),
                    _ => missing.push(here),
                },
                Value::Array(items) => {
                    for (i, item) in items.iter_mut().enumerate() {
                        if let Value::String(s) = item
                            && s == REDACTED
                        {
                            match old_v.and_then(|o| o.get(i)) {
                                Some(Value::String(o)) if o != REDACTED => *s = o.clone(),
                                _ => missing.push(format!("{here}[{i}]")),
                            }
                        }
                    }
                }
                _ => {}
            }
            continue;
        }
        let FieldKind::Message(index) = field.kind else { continue };
        let sub = &pingora_config::model().messages[index];
        match (&field.label, v) {
            (Label::Repeated, Value::Array(items)) => {
                for (i, item) in items.iter_mut().enumerate() {
                    restore_value(sub, item, old_v.and_then(|o| o.get(i)), &format!("{here}[{i}]"), missing);
                }
            }
            (Label::Map(_), Value::Object(entries)) => {
                for (k, item) in entries.iter_mut() {
                    restore_value(sub, item, old_v.and_then(|o| o.get(k)), &join(&here, k), missing);
                }
            }
            (_, v) => restore_value(sub, v, old_v, &here, missing),
        }
    }
}

/// The fields that differ between two resources: paths from `clear` values
/// (so a changed secret is a change), printed from the redacted ones.
pub fn diff<T: prost::Name + Serialize + DeserializeOwned + Clone>(old: &T, new: &T) -> Vec<v1::FieldChange> {
    let (old_clear, new_clear) = (to_json(old), to_json(new));
    let (old_red, new_red) = (to_json(&redact(old)), to_json(&redact(new)));
    let mut out = Vec::new();
    diff_value(Some(&old_clear), Some(&new_clear), Some(&old_red), Some(&new_red), "", &mut out);
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

fn show(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(v) => v.to_string(),
    }
}

fn diff_value(
    old: Option<&Value>,
    new: Option<&Value>,
    old_red: Option<&Value>,
    new_red: Option<&Value>,
    path: &str,
    out: &mut Vec<v1::FieldChange>,
) {
    if old == new {
        return;
    }
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                diff_value(
                    a.get(k),
                    b.get(k),
                    old_red.and_then(|r| r.get(k)),
                    new_red.and_then(|r| r.get(k)),
                    &join(path, k),
                    out,
                );
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) if a.len() == b.len() => {
            for i in 0..a.len() {
                diff_value(
                    a.get(i),
                    b.get(i),
                    old_red.and_then(|r| r.get(i)),
                    new_red.and_then(|r| r.get(i)),
                    &format!("{path}[{i}]"),
                    out,
                );
            }
        }
        _ => out.push(v1::FieldChange { path: path.to_owned(), old_value: show(old_red), new_value: show(new_red) }),
    }
}

/// `sha256:` and the hex digest of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Fingerprint of a config (over its encoding, secrets in clear).
pub fn config_hash(config: &crate::shared::SharedConfig) -> String {
    sha256(&config.encode_to_vec())
}

/// The config as the YAML the file store writes: block style, strings
/// double-quoted (JSON escapes are YAML escapes), multi-line strings (PEM)
/// as literal blocks. The text is read back before it is used: should it
/// not load as the same config, the proto-JSON (which is YAML too) is
/// written instead.
pub fn to_yaml(config: &v1::Config) -> String {
    let yaml = render_yaml(config);
    match pingora_config::load_str::<v1::Config>(&yaml, "rendered") {
        Ok((back, _)) if back == *config => yaml,
        _ => {
            log::warn!("file store: the YAML rendering of the config does not read back the same; writing JSON");
            serde_json::to_string_pretty(&to_json(config)).unwrap_or_default() + "\n"
        }
    }
}

const YAML_HEADER: &str = "# Written by the gateway's management API; edits by hand are picked up too.\n";

/// Renders the file store's YAML a resource at a time, as [`to_yaml`]
/// does for the whole config: each resource's block is rendered and read
/// back once, then reused while the resource's hash stays the same. A
/// write then costs the resources it changes, not the size of the config
/// (30 routes: 174 us for the whole config against a few us).
#[derive(Default)]
pub struct YamlRenderer {
    /// Each resource's block, and the hash of the resource it renders.
    blocks: std::collections::HashMap<Key, (String, std::sync::Arc<str>)>,
}

impl YamlRenderer {
    /// The text of `config`, whose resources' hashes are in `metas`; the
    /// same as [`to_yaml`].
    pub fn render(&mut self, config: &SharedConfig, metas: &Metas) -> String {
        use v1::resource::Kind;
        let mut blocks = std::collections::HashMap::with_capacity(self.blocks.len());
        let mut out = String::from(YAML_HEADER);
        let ok = self.section(&mut out, &mut blocks, metas, "routes", Kind::Route, &config.routes, |r| &r.id)
            && self.section(&mut out, &mut blocks, metas, "services", Kind::Service, &config.services, |r| &r.id)
            && self.section(&mut out, &mut blocks, metas, "upstreams", Kind::Upstream, &config.upstreams, |r| &r.id)
            && self
                .section(&mut out, &mut blocks, metas, "consumers", Kind::Consumer, &config.consumers, |r| &r.username)
            && self.section(&mut out, &mut blocks, metas, "ssls", Kind::Ssl, &config.ssls, |r| &r.id)
            && self.section(
                &mut out,
                &mut blocks,
                metas,
                "global_rules",
                Kind::GlobalRule,
                &config.global_rules,
                |r| &r.id,
            )
            && self.section(
                &mut out,
                &mut blocks,
                metas,
                "plugin_configs",
                Kind::PluginConfig,
                &config.plugin_configs,
                |r| &r.id,
            );
        if !ok {
            // A resource that does not read back the same: the whole
            // config goes through to_yaml (and its JSON fallback).
            self.blocks.clear();
            return to_yaml(&config.to_proto());
        }
        if config.is_empty() {
            out.push_str("{}\n");
        }
        self.blocks = blocks;
        out
    }

    /// Appends one collection (`name:` and its items' blocks) to `out`;
    /// false when an item does not read back the same.
    #[allow(clippy::too_many_arguments)]
    fn section<T: pingora_config::Document + PartialEq>(
        &self,
        out: &mut String,
        blocks: &mut std::collections::HashMap<Key, (String, std::sync::Arc<str>)>,
        metas: &Metas,
        name: &str,
        kind: v1::resource::Kind,
        items: &[std::sync::Arc<T>],
        id: fn(&T) -> &String,
    ) -> bool {
        if items.is_empty() {
            return true;
        }
        out.push_str(name);
        out.push_str(":\n");
        for item in items {
            let key = (kind, id(item).clone());
            let hash = metas.get(&key).map(|m| m.hash.as_str());
            let block = match (self.blocks.get(&key), hash) {
                (Some((h, block)), Some(hash)) if h == hash => block.clone(),
                _ => {
                    // As the whole config's rendering writes it: the item as
                    // a mapping at indent 2, its first two columns "- ".
                    // Read back as the item alone (the same mapping at
                    // indent 0), it must give the item.
                    let mut nested = String::new();
                    emit(&to_json(&**item), 2, &mut nested);
                    let alone: String =
                        nested.split_inclusive('\n').map(|l| l.strip_prefix("  ").unwrap_or(l)).collect();
                    match pingora_config::load_str::<T>(&alone, "rendered") {
                        Ok((back, _)) if back == **item => {}
                        _ => return false,
                    }
                    std::sync::Arc::from(format!("- {}", nested.get(2..).unwrap_or("")))
                }
            };
            out.push_str(&block);
            if let Some(hash) = hash {
                blocks.insert(key, (hash.to_owned(), block));
            }
        }
        true
    }
}

fn render_yaml(config: &v1::Config) -> String {
    let mut out = String::from(YAML_HEADER);
    let value = to_json(config);
    match &value {
        Value::Object(m) if m.is_empty() => out.push_str("{}\n"),
        _ => emit(&value, 0, &mut out),
    }
    out
}

fn plain_key(k: &str) -> bool {
    let mut chars = k.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        && !matches!(k, "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n")
}

fn key(k: &str) -> String {
    if plain_key(k) { k.to_owned() } else { Value::String(k.to_owned()).to_string() }
}

/// A scalar or empty collection written inline, or `None` for a block.
fn inline(v: &Value, indent: usize) -> Option<String> {
    match v {
        Value::Object(m) if m.is_empty() => Some("{}".into()),
        Value::Array(a) if a.is_empty() => Some("[]".into()),
        Value::Object(_) | Value::Array(_) => None,
        Value::String(s) if literal_block_safe(s) => {
            let chomp = if s.ends_with("\n\n") {
                "+"
            } else if s.ends_with('\n') {
                ""
            } else {
                "-"
            };
            let pad = " ".repeat(indent + 2);
            let mut block = format!("|{chomp}\n");
            let body = s.strip_suffix('\n').unwrap_or(s);
            for line in body.split('\n') {
                if line.is_empty() {
                    block.push('\n');
                } else {
                    block.push_str(&pad);
                    block.push_str(line);
                    block.push('\n');
                }
            }
            // The caller adds the newline after an inline value.
            block.pop();
            Some(block)
        }
        other => Some(other.to_string()),
    }
}

/// Whether `s` reads back the same from a literal block (`|`): several
/// lines, printable, none with leading or trailing blanks (PEM, scripts).
fn literal_block_safe(s: &str) -> bool {
    s.contains('\n')
        && !s.starts_with('\n')
        && s.chars().all(|c| c == '\n' || !c.is_control())
        && s.split('\n').all(|l| l.is_empty() || (!l.starts_with([' ', '\t']) && !l.ends_with([' ', '\t'])))
}

fn emit(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) => {
            for (k, item) in m {
                match inline(item, indent) {
                    Some(s) => out.push_str(&format!("{pad}{}: {s}\n", key(k))),
                    None => {
                        out.push_str(&format!("{pad}{}:\n", key(k)));
                        let child = if item.is_array() { indent } else { indent + 2 };
                        emit(item, child, out);
                    }
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                match inline(item, indent + 2) {
                    Some(s) => out.push_str(&format!("{pad}- {s}\n")),
                    None => {
                        // The first line of the nested block goes after the dash.
                        let mut nested = String::new();
                        emit(item, indent + 2, &mut nested);
                        let trimmed = nested.get(indent + 2..).unwrap_or("");
                        out.push_str(&format!("{pad}- {trimmed}"));
                    }
                }
            }
        }
        other => {
            out.push_str(&pad);
            out.push_str(&other.to_string());
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> v1::Config {
        match pingora_config::load_str::<v1::Config>(text, "test") {
            Ok((c, _)) => c,
            Err(e) => panic!("{e}\n{text}"),
        }
    }

    #[test]
    fn the_yaml_written_reads_back_as_the_same_config() {
        for file in ["full.yaml", "every_plugin.yaml", "map_keys_with_dots_and_slashes.yaml", "empty.yaml"] {
            let path = format!("{}/../proto/testdata/config/valid/{file}", env!("CARGO_MANIFEST_DIR"));
            let config = load(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")));
            let yaml = render_yaml(&config);
            assert_eq!(load(&yaml), config, "{file}:\n{yaml}");
        }
    }

    #[test]
    fn rendering_a_resource_at_a_time_writes_what_the_whole_config_rendering_writes() {
        use crate::admin::store::{changes, next_metas};
        let mut renderer = YamlRenderer::default();
        let mut previous = SharedConfig::default();
        let mut metas = Metas::new();
        let mut check = |config: v1::Config, what: &str| {
            let shared = SharedConfig::from(config.clone());
            metas = next_metas(&metas, &changes(&previous, &shared), 1, None);
            assert_eq!(renderer.render(&shared, &metas), to_yaml(&config), "{what}");
            previous = shared;
        };
        for file in ["full.yaml", "every_plugin.yaml", "map_keys_with_dots_and_slashes.yaml", "empty.yaml"] {
            let path = format!("{}/../proto/testdata/config/valid/{file}", env!("CARGO_MANIFEST_DIR"));
            let config = load(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")));
            check(config.clone(), file);
            // Again from the blocks kept, then with one resource changed,
            // one added before it and one removed.
            check(config.clone(), file);
            let mut changed = config.clone();
            if let Some(r) = changed.routes.first_mut() {
                r.priority += 1;
            }
            changed.routes.insert(0, v1::Route { id: "new".into(), uris: vec!["/new".into()], ..Default::default() });
            changed.upstreams.pop();
            changed.ssls.push(v1::Ssl {
                id: "pem".into(),
                cert: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
                ..Default::default()
            });
            check(changed, file);
        }
    }

    #[test]
    fn pem_is_a_literal_block_and_odd_strings_stay_quoted() {
        let mut config = v1::Config::default();
        let mut ssl = v1::Ssl { id: "a".into(), ..Default::default() };
        ssl.cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into();
        ssl.labels.insert("yes".into(), "  padded \n line ".into());
        ssl.labels.insert("a b:c".into(), "no".into());
        config.ssls.push(ssl);
        let yaml = render_yaml(&config);
        assert!(yaml.contains("  cert: |\n    -----BEGIN CERTIFICATE-----\n    MIIB\n"), "{yaml}");
        let back: v1::Config = match pingora_config_rules::parse_yaml(&yaml) {
            Ok(tree) => serde::Deserialize::deserialize(&tree).unwrap_or_else(|e| panic!("{e}\n{yaml}")),
            Err(e) => panic!("{e:?}\n{yaml}"),
        };
        assert_eq!(back, config, "{yaml}");
    }

    #[test]
    fn diffs_name_the_deepest_field_and_redact_secrets() {
        let old = v1::Consumer {
            username: "a".into(),
            credentials: Some(v1::Credentials {
                key_auth: Some(v1::KeyAuthCredential { key: "old-secret-key".into() }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut new = old.clone();
        if let Some(k) = new.credentials.as_mut().and_then(|c| c.key_auth.as_mut()) {
            k.key = "new-secret-key".into();
        }
        new.labels.insert("team".into(), "x".into());
        let d = diff(&old, &new);
        let paths: Vec<_> = d.iter().map(|f| (f.path.as_str(), f.old_value.as_str(), f.new_value.as_str())).collect();
        assert_eq!(
            paths,
            [("credentials.key_auth.key", "\"<redacted>\"", "\"<redacted>\""), ("labels", "", "{\"team\":\"x\"}")]
        );
    }
}
