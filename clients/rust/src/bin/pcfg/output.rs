//! What pcfg prints: resource tables, the diff of an apply, events and node
//! status. Every function returns text; colour is ANSI escapes, added only
//! when [`Style::color`] is on.

use pingora_config_client::{Entry, Kind, v1};
use serde_json::Value;

/// Whether to colour the output.
#[derive(Clone, Copy, Debug, Default)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(self, code: &str, s: &str) -> String {
        if self.color { format!("\x1b[{code}m{s}\x1b[0m") } else { s.to_owned() }
    }
    pub fn green(self, s: &str) -> String {
        self.paint("32", s)
    }
    pub fn red(self, s: &str) -> String {
        self.paint("31", s)
    }
    pub fn yellow(self, s: &str) -> String {
        self.paint("33", s)
    }
}

/// A table column: its header, and its cell from a resource's proto-JSON.
type Column = (&'static str, fn(&Value) -> String);

/// Columns shown by `list` and `get` in a table, per kind.
fn columns(kind: Kind) -> Vec<Column> {
    let id: Column =
        (if kind == Kind::Consumer { "USERNAME" } else { "ID" }, |v| text(v.get("id").or_else(|| v.get("username"))));
    let plugins: Column = ("PLUGINS", |v| keys(v.get("plugins")));
    let mut cols = vec![id];
    match kind {
        Kind::Route => {
            cols.push(("URIS", |v| text(v.get("uris"))));
            cols.push(("HOSTS", |v| text(v.get("hosts"))));
            cols.push(("METHODS", |v| text(v.get("methods"))));
            cols.push(("TARGET", target));
            cols.push(plugins);
        }
        Kind::Service => {
            cols.push(("HOSTS", |v| text(v.get("hosts"))));
            cols.push(("TARGET", target));
            cols.push(plugins);
        }
        Kind::Upstream => {
            cols.push(("NODES", |v| nodes(v.get("nodes"))));
            cols.push(("BALANCER", |v| text(v.pointer("/load_balancer/algorithm"))));
        }
        Kind::Consumer => {
            cols.push(("CREDENTIALS", |v| keys(v.get("credentials"))));
            cols.push(plugins);
        }
        Kind::Ssl => cols.push(("SNIS", |v| text(v.get("snis")))),
        Kind::GlobalRule | Kind::PluginConfig => cols.push(plugins),
    }
    cols
}

/// Where a route or service sends its traffic.
fn target(v: &Value) -> String {
    if let Some(Value::String(s)) = v.get("upstream_id") {
        format!("upstream/{s}")
    } else if let Some(Value::String(s)) = v.get("service_id") {
        format!("service/{s}")
    } else if let Some(u) = v.get("upstream") {
        format!("inline: {}", nodes(u.get("nodes")))
    } else {
        "-".into()
    }
}

fn nodes(v: Option<&Value>) -> String {
    let Some(Value::Array(nodes)) = v else { return "-".into() };
    let each = nodes.iter().map(|n| format!("{}:{}", text(n.get("host")), text(n.get("port"))));
    each.collect::<Vec<_>>().join(",")
}

fn keys(v: Option<&Value>) -> String {
    match v {
        Some(Value::Object(m)) if !m.is_empty() => m.keys().cloned().collect::<Vec<_>>().join(","),
        _ => "-".into(),
    }
}

fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) if a.is_empty() => "-".into(),
        Some(Value::Array(a)) => a.iter().map(|x| text(Some(x))).collect::<Vec<_>>().join(","),
        Some(other) => other.to_string(),
    }
}

/// Resources of one kind as an aligned table, with each one's revision.
pub fn table(kind: Kind, entries: &[Entry]) -> String {
    let cols = columns(kind);
    let mut rows = vec![cols.iter().map(|(h, _)| (*h).to_owned()).chain(["REVISION".to_owned()]).collect::<Vec<_>>()];
    for e in entries {
        let json = e.to_json();
        let mut row: Vec<String> = cols.iter().map(|(_, f)| f(&json)).collect();
        row.push(e.meta.revision.to_string());
        rows.push(row);
    }
    align(&rows)
}

/// Rows as columns separated by two spaces, the last one unpadded.
pub fn align(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..n).map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A config document holding `entries` (`routes: [...]`), in the shape of
/// a config file.
pub fn document(kind: Kind, entries: &[Entry]) -> Value {
    let items: Vec<Value> = entries.iter().map(Entry::to_json).collect();
    let mut doc = serde_json::Map::new();
    doc.insert(kind.collection().to_owned(), Value::Array(items));
    Value::Object(doc)
}

/// The changes of an apply, one block per resource, then the totals.
pub fn diff(d: &v1::ConfigDiff, style: Style) -> String {
    use v1::resource_change::Type;
    let mut out = String::new();
    let (mut added, mut changed, mut removed) = (0, 0, 0);
    for c in &d.changes {
        let kind = Kind::from_proto(c.kind).map(Kind::name).unwrap_or("resource");
        match c.r#type() {
            Type::Added => {
                added += 1;
                out.push_str(&style.green(&format!("+ {kind} {}", c.id)));
                out.push('\n');
            }
            Type::Removed => {
                removed += 1;
                out.push_str(&style.red(&format!("- {kind} {}", c.id)));
                out.push('\n');
            }
            Type::Changed | Type::Unspecified => {
                changed += 1;
                out.push_str(&style.yellow(&format!("~ {kind} {}", c.id)));
                out.push('\n');
                for f in &c.fields {
                    let old = if f.old_value.is_empty() { "(unset)" } else { &f.old_value };
                    let new = if f.new_value.is_empty() { "(unset)" } else { &f.new_value };
                    out.push_str(&format!("    {}: {} -> {}\n", f.path, style.red(old), style.green(new)));
                }
            }
        }
    }
    if d.changes.is_empty() {
        out.push_str("No changes.\n");
    } else {
        out.push_str(&format!("\n{added} to add, {changed} to change, {removed} to remove.\n"));
    }
    out
}

/// A timestamp in proto-JSON (RFC 3339).
fn time(t: &Option<pbjson_types::Timestamp>) -> String {
    t.as_ref()
        .and_then(|t| serde_json::to_value(t).ok())
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "-".into())
}

/// One event on one line.
pub fn event_line(e: &v1::Event) -> String {
    use v1::event::Payload;
    let what = match &e.payload {
        Some(Payload::Resource(r)) => {
            let kind = Kind::from_proto(r.kind).map(Kind::name).unwrap_or("resource");
            let action = match r.r#type() {
                v1::resource_event::Type::Delete => "deleted",
                _ if r.old_value.is_none() => "created",
                _ => "updated",
            };
            format!("{kind} {} {action}", r.id)
        }
        Some(Payload::Health(h)) => {
            let state = if h.healthy { "healthy" } else { "unhealthy" };
            format!("upstream {} node {} {state}: {}", h.upstream_id, h.node, h.reason)
        }
        Some(Payload::Node(n)) => {
            let action = if n.r#type() == v1::node_event::Type::Left { "left" } else { "joined" };
            format!("node {} {action} (version {})", n.node_id, n.version)
        }
        Some(Payload::ResyncRequired(r)) => format!(
            "resync required: history from revision {} is gone (current {}); changes in between were missed",
            r.oldest_revision, r.current_revision
        ),
        None => "unknown event".into(),
    };
    format!("{} rev={} node={} {what}", time(&e.time), e.revision, e.node_id)
}

/// A node's status as indented text.
pub fn status(s: &v1::NodeStatus) -> String {
    let uptime = s.uptime.as_ref().map(|d| human_duration(d.seconds)).unwrap_or_else(|| "-".into());
    let mut rows = vec![
        vec!["node".into(), format!("{} (version {}, up {uptime})", s.node_id, s.version)],
        vec!["config".into(), format!("revision {}, {}", s.applied_revision, s.config_hash)],
        vec!["applied".into(), time(&s.applied_time)],
    ];
    if !s.last_error.is_empty() {
        rows.push(vec!["last error".into(), format!("{} ({})", s.last_error, time(&s.last_error_time))]);
    }
    if let Some(st) = &s.store {
        let kind = st.kind().as_str_name().to_ascii_lowercase();
        let state = if st.connected { "connected" } else { "disconnected" };
        rows.push(vec!["store".into(), format!("{kind} {}, {state}, revision {}", st.endpoint, st.revision)]);
        if !st.last_error.is_empty() {
            rows.push(vec!["store error".into(), st.last_error.clone()]);
        }
    }
    let mut out = align(
        &rows
            .into_iter()
            .map(|mut r| {
                r[0].push(':');
                r
            })
            .collect::<Vec<_>>(),
    );
    if !s.upstreams.is_empty() {
        let mut rows = vec![vec!["UPSTREAM".to_owned(), "NODE".into(), "HEALTHY".into(), "REASON".into()]];
        for u in &s.upstreams {
            for n in &u.nodes {
                let reason = if n.reason.is_empty() { "-".into() } else { n.reason.clone() };
                rows.push(vec![u.upstream_id.clone(), n.address.clone(), n.healthy.to_string(), reason]);
            }
        }
        out.push('\n');
        out.push_str(&align(&rows));
    }
    out
}

fn human_duration(secs: i64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s}s"),
        (0, _, _) => format!("{h}h{m}m"),
        _ => format!("{d}d{h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_config_client::v1::resource::Value as R;

    fn entry(json: serde_json::Value, revision: i64) -> Entry {
        let route: v1::Route = serde_json::from_value(json).expect("route");
        Entry { resource: R::Route(route), meta: v1::ResourceMeta { revision, ..Default::default() } }
    }

    #[test]
    fn a_route_table_shows_what_it_matches_where_it_sends_and_its_revision() {
        let rows = [
            entry(serde_json::json!({"id": "api", "uris": ["/a/*", "/b"], "methods": ["GET"], "upstream_id": "u"}), 3),
            entry(serde_json::json!({"id": "hello", "uris": ["/hello"], "plugins": {"mock": {"status": 200}}}), 12),
        ];
        assert_eq!(
            table(Kind::Route, &rows),
            "\
ID     URIS     HOSTS  METHODS  TARGET      PLUGINS  REVISION
api    /a/*,/b  -      GET      upstream/u  -        3
hello  /hello   -      -        -           mock     12
"
        );
    }

    #[test]
    fn a_diff_lists_each_resource_and_its_changed_fields_coloured_only_on_request() {
        use v1::resource_change::Type;
        let change = |kind: v1::resource::Kind, id: &str, t: Type, fields: Vec<v1::FieldChange>| v1::ResourceChange {
            kind: kind as i32,
            id: id.into(),
            r#type: t as i32,
            fields,
        };
        let field =
            |p: &str, o: &str, n: &str| v1::FieldChange { path: p.into(), old_value: o.into(), new_value: n.into() };
        let d = v1::ConfigDiff {
            changes: vec![
                change(v1::resource::Kind::Route, "new", Type::Added, vec![]),
                change(v1::resource::Kind::Route, "old", Type::Removed, vec![]),
                change(
                    v1::resource::Kind::Upstream,
                    "u",
                    Type::Changed,
                    vec![field("nodes[0].weight", "1", "2"), field("labels.team", "", "\"a\"")],
                ),
            ],
        };
        assert_eq!(
            diff(&d, Style::default()),
            "\
+ route new
- route old
~ upstream u
    nodes[0].weight: 1 -> 2
    labels.team: (unset) -> \"a\"

1 to add, 1 to change, 1 to remove.
"
        );
        let coloured = diff(&d, Style { color: true });
        assert!(coloured.starts_with("\x1b[32m+ route new\x1b[0m\n\x1b[31m- route old\x1b[0m\n"), "{coloured:?}");
        assert_eq!(diff(&v1::ConfigDiff::default(), Style { color: true }), "No changes.\n");
    }

    #[test]
    fn an_event_is_one_line_with_its_revision_and_what_happened() {
        let e = v1::Event {
            id: "e1".into(),
            revision: 7,
            time: None,
            node_id: "gw-1".into(),
            payload: Some(v1::event::Payload::Resource(v1::ResourceEvent {
                kind: v1::resource::Kind::Upstream as i32,
                id: "orders".into(),
                r#type: v1::resource_event::Type::Delete as i32,
                ..Default::default()
            })),
        };
        assert_eq!(event_line(&e), "- rev=7 node=gw-1 upstream orders deleted");
    }
}
