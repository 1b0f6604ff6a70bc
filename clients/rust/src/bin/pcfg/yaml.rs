//! Proto-JSON values written as block YAML, in the shape of a config file.
//!
//! A small emitter rather than a YAML serializer crate: the values are plain
//! JSON trees, and the output only has to read back through the loader
//! (`pingora_config::load_str`) to the same message, which the tests check.

use serde_json::Value;

/// `value` as a YAML document (block style, two-space indents).
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(m) if !m.is_empty() => block(&mut out, value, 0),
        Value::Array(a) if !a.is_empty() => block(&mut out, value, 0),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

/// A non-empty map or list, every line starting at `indent`.
fn block(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(m) => {
            for (k, v) in m {
                pad(out, indent);
                out.push_str(&string(k));
                out.push(':');
                after_key(out, v, indent);
            }
        }
        Value::Array(a) => {
            for item in a {
                pad(out, indent);
                out.push('-');
                match item {
                    Value::Object(m) if !m.is_empty() => {
                        // The first key on the dash's line, the others under it.
                        let mut inner = String::new();
                        block(&mut inner, item, indent + 2);
                        out.push(' ');
                        out.push_str(&inner[indent + 2..]);
                    }
                    Value::Array(l) if !l.is_empty() => {
                        out.push('\n');
                        block(out, item, indent + 2);
                    }
                    _ => after_key(out, item, indent),
                }
            }
        }
        other => {
            pad(out, indent);
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

/// The value of a key (or of a list item), after its `:` (or `-`).
fn after_key(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            block(out, v, indent + 2);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            block(out, v, indent + 2);
        }
        Value::String(s) if literal_block(s) => {
            let (indicator, body) = match s.strip_suffix('\n') {
                Some(body) => ("|", body),
                None => ("|-", s.as_str()),
            };
            out.push(' ');
            out.push_str(indicator);
            out.push('\n');
            for line in body.split('\n') {
                if !line.is_empty() {
                    pad(out, indent + 2);
                    out.push_str(line);
                }
                out.push('\n');
            }
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

/// Multi-line text (certificates, keys) reads best as a literal block, when
/// it can be one without loss.
fn literal_block(s: &str) -> bool {
    let body = s.strip_suffix('\n').unwrap_or(s);
    body.contains('\n')
        && !body.ends_with('\n')
        && !body.starts_with([' ', '\t'])
        && !s.contains(['\r', '\t'])
        && s.chars().all(|c| !c.is_control() || c == '\n')
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
    }
}

/// A string plain when YAML cannot read it as anything else, else
/// double-quoted (JSON's escapes are YAML's).
fn string(s: &str) -> String {
    const WORDS: [&str; 11] = ["true", "false", "null", "yes", "no", "on", "off", "y", "n", "~", ""];
    let numeric = s.parse::<f64>().is_ok() || s.starts_with("0x") || s.starts_with("0o");
    let plain = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '/')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "_./@+-*".contains(c))
        && !numeric
        && !WORDS.contains(&s.to_ascii_lowercase().as_str());
    if plain { s.to_owned() } else { serde_json::Value::String(s.to_owned()).to_string() }
}

fn pad(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_config::v1;
    use serde_json::json;

    #[test]
    fn nested_maps_and_lists_are_written_in_block_style() {
        let v = json!({
            "routes": [{ "id": "hello", "uris": ["/hello", "/hi/*"], "methods": ["GET"], "priority": 3,
                         "plugins": { "mock": { "status": 200, "body": "hi there\n" } } }],
            "upstreams": [{ "id": "u", "nodes": [{ "host": "127.0.0.1", "port": 8080 }], "labels": {} }]
        });
        let expected = "\
routes:
  - id: hello
    uris:
      - /hello
      - /hi/*
    methods:
      - GET
    priority: 3
    plugins:
      mock:
        status: 200
        body: \"hi there\\n\"
upstreams:
  - id: u
    nodes:
      - host: 127.0.0.1
        port: 8080
    labels: {}
";
        assert_eq!(to_yaml(&v), expected);
    }

    #[test]
    fn strings_yaml_would_read_as_something_else_are_quoted() {
        for (s, out) in [
            ("true", "\"true\""),
            ("8080", "\"8080\""),
            ("1.5", "\"1.5\""),
            ("1e3", "\"1e3\""),
            ("0x1F", "\"0x1F\""),
            ("1.5s", "1.5s"),
            ("127.0.0.1", "127.0.0.1"),
            ("a: b", "\"a: b\""),
            ("*.example.com", "\"*.example.com\""),
            ("", "\"\""),
            ("orders-api", "orders-api"),
            ("/api/*", "/api/*"),
        ] {
            assert_eq!(string(s), out, "{s}");
        }
    }

    /// Every example config and valid corpus document, through proto-JSON and this emitter, loads
    /// back to the same message.
    #[test]
    fn every_example_config_reads_back_through_the_loader_unchanged() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
        let dirs = [format!("{root}/examples"), format!("{root}/proto/testdata/config/valid")];
        let mut checked = 0;
        for entry in dirs.iter().flat_map(|d| std::fs::read_dir(d).expect("a test data dir")).flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            let Ok(config) = pingora_config::load_file::<v1::Config>(&path) else { continue };
            let yaml = to_yaml(&serde_json::to_value(&config).expect("json"));
            let again = pingora_config::load_str::<v1::Config>(&yaml, "emitted").map(|(c, _)| c);
            let err = again.as_ref().err().map(ToString::to_string);
            assert_eq!(again.ok(), Some(config), "{}:\n{yaml}\n{err:?}", path.display());
            checked += 1;
        }
        assert!(checked >= 10, "only {checked} configs");
    }

    #[test]
    fn multi_line_text_is_a_literal_block_that_reads_back() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\nAbC=\n-----END CERTIFICATE-----\n";
        let yaml = to_yaml(&json!({ "ssls": [{ "id": "a", "cert": pem, "key": "x\ny" }] }));
        assert!(yaml.contains("cert: |\n      -----BEGIN"), "{yaml}");
        let back = pingora_config_rules::parse_yaml(&yaml).map(|n| n.to_json()).ok();
        assert_eq!(back, Some(json!({ "ssls": [{ "id": "a", "cert": pem, "key": "x\ny" }] })));
    }
}
