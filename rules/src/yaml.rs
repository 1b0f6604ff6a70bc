//! YAML text to a [`Node`] tree, keeping the line and column of every value.
//!
//! Built on `saphyr-parser`'s event stream (a maintained YAML 1.2 parser),
//! resolving plain scalars with the YAML 1.2 core schema: `yes`/`no`/`on` are
//! strings, not booleans. Duplicate keys and several documents in one file
//! are errors, not silently merged.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use crate::error::Violation;
use crate::tree::{Node, Pos, Text, Value};

fn pos(span: &Span) -> Pos {
    Pos { line: span.start.line() as u32, column: span.start.col() as u32 + 1 }
}

enum Frame {
    Seq { items: Vec<Node>, pos: Pos, anchor: usize },
    Map { entries: Vec<(Text, Option<Pos>, Node)>, key: Option<(Text, Pos)>, pos: Pos, anchor: usize },
}

/// Parses one YAML document. An empty document is an empty mapping.
/// Returns every structural problem found (syntax errors stop the parse).
pub fn parse_yaml(src: &str) -> Result<Node, Vec<Violation>> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut root: Option<Node> = None;
    let mut errors = Vec::new();
    let mut documents = 0;

    for event in Parser::new_from_str(src) {
        let (event, span) = match event {
            Ok(e) => e,
            Err(e) => {
                errors.push(Violation {
                    path: String::new(),
                    pos: Some(Pos { line: e.marker().line() as u32, column: e.marker().col() as u32 + 1 }),
                    rule: "syntax",
                    message: format!("invalid YAML: {}", e.info()),
                });
                return Err(errors);
            }
        };
        let here = pos(&span);
        let node = match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    errors.push(Violation {
                        path: String::new(),
                        pos: Some(here),
                        rule: "syntax",
                        message: "a config file holds one YAML document; remove the second `---`".into(),
                    });
                    return Err(errors);
                }
                continue;
            }
            Event::SequenceStart(anchor, _) => {
                stack.push(Frame::Seq { items: Vec::new(), pos: here, anchor });
                continue;
            }
            Event::MappingStart(anchor, _) => {
                stack.push(Frame::Map { entries: Vec::new(), key: None, pos: here, anchor });
                continue;
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq { mut items, pos, anchor }) => {
                    items.shrink_to_fit();
                    remember(&mut anchors, anchor, Node::new(Value::Seq(items), Some(pos)))
                }
                _ => continue,
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map { mut entries, pos, anchor, .. }) => {
                    entries.shrink_to_fit();
                    remember(&mut anchors, anchor, Node::new(Value::Map(entries), Some(pos)))
                }
                _ => continue,
            },
            Event::Scalar(text, style, anchor, tag) => {
                let forced_string = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let value = if style == ScalarStyle::Plain && !forced_string {
                    resolve_plain(&text)
                } else {
                    Value::Str(Text::from(text.as_ref()))
                };
                remember(&mut anchors, anchor, Node::new(value, Some(here)))
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some(n) => Node::new(n.value.clone(), Some(here)),
                None => Node::new(Value::Null, Some(here)),
            },
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => continue,
        };
        // Attach the finished node to its parent.
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => {
                    let k = match &node.value {
                        Value::Str(s) => s.clone(),
                        Value::Int(i) => Text::from(i.to_string()),
                        Value::Bool(b) => Text::from(b.to_string()),
                        Value::Float(f) => Text::from(f.to_string()),
                        Value::Null => Text::default(),
                        Value::Seq(_) | Value::Map(_) => {
                            errors.push(Violation {
                                path: String::new(),
                                pos: node.pos,
                                rule: "syntax",
                                message: "mapping keys must be plain strings".into(),
                            });
                            Text::default()
                        }
                    };
                    let kpos = node.pos.unwrap_or(here);
                    if entries.iter().any(|(existing, _, _)| *existing == k) {
                        errors.push(Violation {
                            path: String::new(),
                            pos: Some(kpos),
                            rule: "syntax",
                            message: format!("duplicate key `{k}`"),
                        });
                    }
                    *key = Some((k, kpos));
                }
                Some((k, kpos)) => entries.push((k, Some(kpos), node)),
            },
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(match root {
        Some(Node { value: Value::Null, pos }) | Some(Node { value: Value::Str(_), pos }) if is_empty_doc(src) => {
            Node::new(Value::Map(Vec::new()), pos)
        }
        Some(n) => n,
        None => Node::new(Value::Map(Vec::new()), Some(Pos { line: 1, column: 1 })),
    })
}

fn is_empty_doc(src: &str) -> bool {
    src.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---" || t == "..."
    })
}

fn remember(anchors: &mut HashMap<usize, Node>, anchor: usize, node: Node) -> Node {
    if anchor > 0 {
        anchors.insert(anchor, node.clone());
    }
    node
}

/// Resolves a plain (unquoted) scalar with the YAML 1.2 core schema.
fn resolve_plain(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Value::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    if let Some(hex) = s.strip_prefix("0x")
        && let Ok(i) = i128::from_str_radix(hex, 16)
    {
        return Value::Int(i);
    }
    if let Some(oct) = s.strip_prefix("0o")
        && let Ok(i) = i128::from_str_radix(oct, 8)
    {
        return Value::Int(i);
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && let Ok(i) = s.parse::<i128>()
    {
        return Value::Int(i);
    }
    if is_core_float(digits)
        && let Ok(f) = s.parse::<f64>()
    {
        return Value::Float(f);
    }
    Value::Str(Text::from(s))
}

/// `[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?` or `\.[0-9]+(...)?`, sign stripped.
fn is_core_float(s: &str) -> bool {
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((a, b)) => {
            (!a.is_empty() || !b.is_empty())
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        }
        None => !mantissa.is_empty() && mantissa.bytes().all(|c| c.is_ascii_digit()),
    };
    let exp_ok = exp.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && e.bytes().all(|c| c.is_ascii_digit())
    });
    mantissa_ok && exp_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_scalars_follow_the_yaml_1_2_core_schema() {
        assert_eq!(resolve_plain("yes"), Value::Str("yes".into()));
        assert_eq!(resolve_plain("on"), Value::Str("on".into()));
        assert_eq!(resolve_plain("true"), Value::Bool(true));
        assert_eq!(resolve_plain("8080"), Value::Int(8080));
        assert_eq!(resolve_plain("-3"), Value::Int(-3));
        assert_eq!(resolve_plain("1.5"), Value::Float(1.5));
        assert_eq!(resolve_plain("1.5s"), Value::Str("1.5s".into()));
        assert_eq!(resolve_plain("127.0.0.1"), Value::Str("127.0.0.1".into()));
        assert_eq!(resolve_plain("~"), Value::Null);
    }

    #[test]
    fn values_keep_their_line_and_column() {
        let n = parse_yaml("routes:\n  - id: a\n    uris: [\"/x\"]\n").expect("parses");
        let Value::Map(entries) = &n.value else { panic!("not a map") };
        assert_eq!(entries[0].1, Some(Pos { line: 1, column: 1 }));
        let Value::Seq(routes) = &entries[0].2.value else { panic!("not a seq") };
        let Value::Map(route) = &routes[0].value else { panic!("not a map") };
        assert_eq!(route[1].1, Some(Pos { line: 3, column: 5 }));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let errs = parse_yaml("a: 1\nb: 2\na: 3\n").expect_err("duplicate");
        assert_eq!(errs[0].pos, Some(Pos { line: 3, column: 1 }));
        assert!(errs[0].message.contains("duplicate key `a`"));
    }

    #[test]
    fn syntax_errors_say_where() {
        let errs = parse_yaml("a: [1, 2\nb: 3\n").expect_err("unclosed");
        assert_eq!(errs[0].rule, "syntax");
        assert!(errs[0].pos.is_some());
    }

    #[test]
    fn an_empty_document_is_an_empty_mapping() {
        assert_eq!(parse_yaml("# nothing\n").expect("parses").value, Value::Map(Vec::new()));
    }

    #[test]
    fn anchors_and_aliases_are_resolved() {
        let n = parse_yaml("a: &x {k: 1}\nb: *x\n").expect("parses");
        let Value::Map(e) = &n.value else { panic!() };
        assert_eq!(e[0].2.value, e[1].2.value);
    }
}
