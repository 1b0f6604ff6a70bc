//! The Go and TypeScript clients.
//!
//! The message and service layers come from the official plugins
//! (`protoc-gen-go`, `protoc-gen-go-grpc`, `protoc-gen-es`), run through
//! [`crate::plugins`]. On top, an askama-rendered facade per language with the
//! same shape: dial with an API key and TLS options, one typed helper per RPC
//! of the management services (its parameters are the request's fields, read
//! from the descriptors), a pager per paginated listing, and a `watch` that
//! reconnects with backoff and resumes from the last revision it saw.

use std::collections::BTreeSet;
use std::path::PathBuf;

use askama::Template;
use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor};

use crate::plugins::{self, FileSet};
use crate::{Error, Outputs};

/// The proto package of the management API.
const PACKAGE: &str = "pingora_config.v1";
/// Services of the package that the gateway does not serve, so the client
/// does not call: `EventSinkService` is implemented by business systems (the
/// receiving end of a gRPC event sink).
const NOT_SERVED: [&str; 1] = ["EventSinkService"];
/// Go package name of the generated messages.
const GO_PKG: &str = "pingoraconfigv1";

/// Runs the plugins and renders the facades.
pub fn generate(root: &std::path::Path, encoded: &[u8], pool: &DescriptorPool, out: &mut Outputs) -> Result<(), Error> {
    let set = FileSet::new(encoded)?;
    let files = set.own_files();
    for plugin in [&plugins::GO, &plugins::GO_GRPC] {
        for (name, content) in plugin.run(root, &set, &files)? {
            out.insert(PathBuf::from("clients/go").join(name), content.into_bytes());
        }
    }
    for (name, content) in plugins::ES.run(root, &set, &files)? {
        let source = name.strip_suffix("_pb.ts").map(|s| format!("proto/{s}.proto")).unwrap_or_else(|| name.clone());
        let text = format!("{}{content}", crate::header("//", &format!("{source} by protoc-gen-es")));
        out.insert(PathBuf::from("clients/ts/src/gen").join(name), text.into_bytes());
    }

    let services = services(pool)?;
    let go = GoClient { header: crate::header("//", "proto/pingora_config/v1/admin.proto"), services: &services };
    out.insert(PathBuf::from("clients/go/pingoraconfig/client.go"), render(&go, "the Go client")?);
    let ts = TsClient {
        header: crate::header("//", "proto/pingora_config/v1/admin.proto"),
        imports: ts_imports(&services),
        services: &services,
    };
    out.insert(PathBuf::from("clients/ts/src/gen/client.ts"), render(&ts, "the TS client")?);
    Ok(())
}

fn render(t: &impl Template, what: &str) -> Result<Vec<u8>, Error> {
    let mut text = t.render().map_err(|e| Error::Other(format!("rendering {what}: {e}")))?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text.into_bytes())
}

#[derive(Template)]
#[template(path = "client.go", escape = "none")]
struct GoClient<'a> {
    header: String,
    services: &'a [Service],
}

#[derive(Template)]
#[template(path = "client.ts", escape = "none")]
struct TsClient<'a> {
    header: String,
    /// (module, names) to import, sorted.
    imports: Vec<(String, Vec<String>)>,
    services: &'a [Service],
}

/// A service of the management API.
struct Service {
    /// `ResourceService`.
    name: String,
    /// `resourceService`: the TS client property.
    ts_field: String,
    /// `pingora_config/v1/admin.proto`.
    file: String,
    methods: Vec<Method>,
}

/// One RPC and its helper.
struct Method {
    /// `GetRoute`.
    rpc: String,
    /// The helper's name: the RPC's, shortened for the config and status
    /// services (`Apply` for `ApplyConfig`, `Status` for `GetStatus`).
    helper: String,
    /// `getRoute`, `apply`.
    ts_helper: String,
    /// `getRoute`: the Connect-ES method name.
    ts_rpc: String,
    comment: Vec<String>,
    input: Msg,
    output: Msg,
    /// The request's fields as parameters; `None` when one of them has a
    /// type the helper does not spell (then the helper takes the request).
    params: Option<Vec<Param>>,
    server_streaming: bool,
    /// For a paginated listing: the pager.
    pager: Option<Pager>,
    /// For a watch (server streaming, `start_revision` in, `revision` out).
    watch: bool,
}

struct Msg {
    /// `RouteEntry` (Go: `Resource_Kind` for nested types).
    go: String,
    /// `RouteEntry`.
    ts: String,
    /// `./pingora_config/v1/admin_pb.js`.
    ts_module: String,
}

struct Param {
    /// Proto name, `expected_revision`.
    name: String,
    /// Go struct field, `ExpectedRevision`.
    go_field: String,
    /// Go parameter name, `expectedRevision`.
    go_param: String,
    go_type: String,
    /// TS property (and parameter) name, `expectedRevision`.
    ts_name: String,
    ts_type: String,
    /// (module, name) the TS type needs imported.
    ts_import: Option<(String, String)>,
}

struct Pager {
    /// `ListAllRoutes`, `listAllRoutes`.
    go_name: String,
    ts_name: String,
    /// The parameters other than page size and token.
    params: Vec<Param>,
    /// The element type of `items`.
    item: Msg,
}

fn services(pool: &DescriptorPool) -> Result<Vec<Service>, Error> {
    let mut out = Vec::new();
    for s in pool.services().filter(|s| s.package_name() == PACKAGE && !NOT_SERVED.contains(&s.name())) {
        let noun = s.name().strip_suffix("Service").unwrap_or(s.name()).to_owned();
        let mut methods = Vec::new();
        for m in s.methods() {
            methods.push(method(&m, &noun)?);
        }
        out.push(Service {
            name: s.name().to_owned(),
            ts_field: lower_first(s.name()),
            file: s.parent_file().name().to_owned(),
            methods,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn method(m: &MethodDescriptor, noun: &str) -> Result<Method, Error> {
    let rpc = m.name().to_owned();
    // ApplyConfig -> Apply, GetStatus -> Status; resource RPCs keep their names.
    let helper = if noun == "Resource" {
        rpc.clone()
    } else if rpc == format!("Get{noun}") {
        noun.to_owned()
    } else {
        match rpc.strip_suffix(noun) {
            Some(verb) if !verb.is_empty() => verb.to_owned(),
            _ => rpc.clone(),
        }
    };
    let input = m.input();
    let output = m.output();
    let params: Option<Vec<Param>> = input.fields().map(|f| param(&f)).collect();
    let has = |msg: &MessageDescriptor, name: &str| msg.get_field_by_name(name).is_some();
    let pager = match (&params, output.get_field_by_name("items")) {
        (Some(ps), Some(items))
            if has(&input, "page_token") && has(&output, "next_page_token") && has(&output, "revision") =>
        {
            match items.kind() {
                Kind::Message(item) if items.is_list() => Some(Pager {
                    go_name: rpc.replacen("List", "ListAll", 1),
                    ts_name: lower_first(&rpc.replacen("List", "ListAll", 1)),
                    params: ps
                        .iter()
                        .filter(|p| p.name != "page_token" && p.name != "page_size")
                        .map(Param::clone_param)
                        .collect(),
                    item: msg(&item),
                }),
                _ => None,
            }
        }
        _ => None,
    };
    let watch = m.is_server_streaming() && has(&input, "start_revision") && has(&output, "revision");
    if m.is_client_streaming() {
        return Err(Error::Other(format!("{}: client streaming RPCs have no client helper yet", m.full_name())));
    }
    Ok(Method {
        ts_helper: lower_first(&helper),
        ts_rpc: lower_first(&rpc),
        helper,
        rpc,
        comment: comment_lines(m),
        input: msg(&input),
        output: msg(&output),
        params,
        server_streaming: m.is_server_streaming(),
        pager,
        watch,
    })
}

impl Param {
    fn clone_param(&self) -> Param {
        Param {
            name: self.name.clone(),
            go_field: self.go_field.clone(),
            go_param: self.go_param.clone(),
            go_type: self.go_type.clone(),
            ts_name: self.ts_name.clone(),
            ts_type: self.ts_type.clone(),
            ts_import: self.ts_import.clone(),
        }
    }
}

fn comment_lines(m: &MethodDescriptor) -> Vec<String> {
    let file = m.parent_file();
    let path = m.path();
    let proto = file.file_descriptor_proto();
    let text = proto
        .source_code_info
        .as_ref()
        .and_then(|i| i.location.iter().find(|l| l.path == path))
        .and_then(|l| l.leading_comments.clone())
        .unwrap_or_default();
    text.lines().map(|l| l.strip_prefix(' ').unwrap_or(l).trim_end().to_owned()).filter(|l| !l.is_empty()).collect()
}

/// Names of a message type in the generated code.
fn msg(m: &MessageDescriptor) -> Msg {
    let local = m.full_name().strip_prefix(m.package_name()).unwrap_or(m.full_name()).trim_start_matches('.');
    let under = local.replace('.', "_");
    let file = m.parent_file().name().to_owned();
    Msg { go: under.clone(), ts: under, ts_module: ts_module(&file) }
}

fn ts_module(proto_file: &str) -> String {
    format!("./{}_pb.js", proto_file.strip_suffix(".proto").unwrap_or(proto_file))
}

/// A request field as a helper parameter, when its type is one we spell.
fn param(f: &FieldDescriptor) -> Option<Param> {
    let mut ts_import = None;
    let (go, ts) = match f.kind() {
        Kind::String => ("string".to_owned(), "string".to_owned()),
        Kind::Bool => ("bool".to_owned(), "boolean".to_owned()),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => ("int32".to_owned(), "number".to_owned()),
        Kind::Uint32 | Kind::Fixed32 => ("uint32".to_owned(), "number".to_owned()),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => ("int64".to_owned(), "bigint".to_owned()),
        Kind::Uint64 | Kind::Fixed64 => ("uint64".to_owned(), "bigint".to_owned()),
        Kind::Enum(e) if e.package_name() == PACKAGE => {
            let local = e.full_name().strip_prefix(PACKAGE).unwrap_or(e.full_name()).trim_start_matches('.');
            let name = local.replace('.', "_");
            ts_import = Some((ts_module(e.parent_file().name()), name.clone()));
            (format!("{GO_PKG}.{name}"), name)
        }
        Kind::Message(m) if m.package_name() == PACKAGE && !f.is_map() => {
            let n = msg(&m);
            ts_import = Some((n.ts_module.clone(), format!("{}Schema", n.ts)));
            (format!("*{GO_PKG}.{}", n.go), format!("MessageInitShape<typeof {}Schema>", n.ts))
        }
        _ => return None,
    };
    let (go_type, ts_type) = if f.is_list() { (format!("[]{go}"), format!("{ts}[]")) } else { (go, ts) };
    let camel = lower_camel(f.name());
    Some(Param {
        name: f.name().to_owned(),
        go_field: go_camel(f.name()),
        go_param: go_safe(&camel),
        go_type,
        ts_name: camel,
        ts_type,
        ts_import,
    })
}

/// protoc-gen-go's CamelCase for a field name (`expected_revision` ->
/// `ExpectedRevision`, `id` -> `Id`).
fn go_camel(name: &str) -> String {
    let mut out = String::new();
    let mut upper = true;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
        if c.is_ascii_digit() {
            upper = true;
        }
    }
    out
}

fn lower_camel(name: &str) -> String {
    lower_first(&go_camel(name))
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_ascii_lowercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

fn go_safe(name: &str) -> String {
    const KEYWORDS: [&str; 8] = ["type", "func", "range", "map", "chan", "default", "select", "ctx"];
    if KEYWORDS.contains(&name) { format!("{name}_") } else { name.to_owned() }
}

/// Every generated module the TS facade imports from, with the names.
fn ts_imports(services: &[Service]) -> Vec<(String, Vec<String>)> {
    let mut by_module: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    for s in services {
        by_module.entry(ts_module(&s.file)).or_default().insert(s.name.clone());
        for m in &s.methods {
            if m.params.is_none() || m.watch {
                by_module.entry(m.input.ts_module.clone()).or_default().insert(format!("{}Schema", m.input.ts));
            }
            for p in m.params.iter().flatten() {
                if let Some((module, name)) = &p.ts_import {
                    by_module.entry(module.clone()).or_default().insert(name.clone());
                }
            }
            by_module.entry(m.output.ts_module.clone()).or_default().insert(format!("type {}", m.output.ts));
            if let Some(p) = &m.pager {
                by_module.entry(p.item.ts_module.clone()).or_default().insert(format!("type {}", p.item.ts));
            }
        }
    }
    by_module.into_iter().map(|(k, v)| (k, v.into_iter().collect())).collect()
}

// Askama filters and helpers used by the templates.
impl Method {
    /// `id string, expectedRevision int64`.
    fn go_params(&self) -> String {
        match &self.params {
            Some(ps) => ps.iter().map(|p| format!("{} {}, ", p.go_param, p.go_type)).collect(),
            None => format!("req *{GO_PKG}.{}, ", self.input.go),
        }
    }

    /// `&pingoraconfigv1.GetRouteRequest{Id: id}`.
    fn go_request(&self) -> String {
        match &self.params {
            Some(ps) => format!(
                "&{GO_PKG}.{}{{{}}}",
                self.input.go,
                ps.iter().map(|p| format!("{}: {}", p.go_field, p.go_param)).collect::<Vec<_>>().join(", ")
            ),
            None => "req".to_owned(),
        }
    }

    fn ts_params(&self) -> String {
        match &self.params {
            Some(ps) => ps.iter().map(|p| format!("{}: {}, ", p.ts_name, p.ts_type)).collect::<String>(),
            None => format!("req: MessageInitShape<typeof {}Schema>, ", self.input.ts),
        }
    }

    fn ts_request(&self) -> String {
        match &self.params {
            Some(ps) if ps.is_empty() => "{}".to_owned(),
            Some(ps) => format!("{{ {} }}", ps.iter().map(|p| p.ts_name.as_str()).collect::<Vec<_>>().join(", ")),
            None => "req".to_owned(),
        }
    }
}

impl Pager {
    fn go_params(&self) -> String {
        self.params.iter().map(|p| format!("{} {}, ", p.go_param, p.go_type)).collect()
    }

    fn go_fields(&self) -> String {
        self.params.iter().map(|p| format!(", {}: {}", p.go_field, p.go_param)).collect()
    }

    /// A list parameter (the label selector) defaults to empty, so that
    /// `listAllRoutes()` lists everything.
    fn ts_params(&self) -> String {
        self.params
            .iter()
            .map(|p| {
                let default = if p.ts_type.ends_with("[]") { " = []" } else { "" };
                format!("{}: {}{default}, ", p.ts_name, p.ts_type)
            })
            .collect()
    }

    fn ts_fields(&self) -> String {
        self.params.iter().map(|p| format!("{}, ", p.ts_name)).collect()
    }
}
