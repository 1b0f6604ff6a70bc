//! Every kind of resource behind one type, for code that gets, lists and
//! deletes them the same way.

use std::fmt;

use crate::v1;
use crate::v1::resource::Value;
use crate::{Client, Error};

/// A kind of resource: one collection of `Config`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `routes`
    Route,
    /// `services`
    Service,
    /// `upstreams`
    Upstream,
    /// `consumers` (keyed by `username`)
    Consumer,
    /// `ssls`
    Ssl,
    /// `global_rules`
    GlobalRule,
    /// `plugin_configs`
    PluginConfig,
}

impl Kind {
    /// Every kind, in the order of `Config`.
    pub const ALL: [Kind; 7] =
        [Kind::Route, Kind::Service, Kind::Upstream, Kind::Consumer, Kind::Ssl, Kind::GlobalRule, Kind::PluginConfig];

    /// The singular name, as written on the command line: `route`,
    /// `global-rule`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Route => "route",
            Kind::Service => "service",
            Kind::Upstream => "upstream",
            Kind::Consumer => "consumer",
            Kind::Ssl => "ssl",
            Kind::GlobalRule => "global-rule",
            Kind::PluginConfig => "plugin-config",
        }
    }

    /// The field of `Config` that holds this kind: `routes`, `global_rules`.
    pub fn collection(self) -> &'static str {
        match self {
            Kind::Route => "routes",
            Kind::Service => "services",
            Kind::Upstream => "upstreams",
            Kind::Consumer => "consumers",
            Kind::Ssl => "ssls",
            Kind::GlobalRule => "global_rules",
            Kind::PluginConfig => "plugin_configs",
        }
    }

    /// The field that identifies a resource of this kind.
    pub fn key_field(self) -> &'static str {
        if self == Kind::Consumer { "username" } else { "id" }
    }

    /// Reads a kind written singular or plural, with `-` or `_`, in any
    /// case: `route`, `routes`, `global_rules`, `GLOBAL_RULE`, `ssls`.
    pub fn parse(s: &str) -> Option<Kind> {
        let s = s.to_ascii_lowercase().replace('_', "-");
        Kind::ALL.into_iter().find(|k| {
            let plural = k.collection().replace('_', "-");
            s == k.name() || s == plural
        })
    }

    /// The API's enum value.
    pub fn proto(self) -> v1::resource::Kind {
        match self {
            Kind::Route => v1::resource::Kind::Route,
            Kind::Service => v1::resource::Kind::Service,
            Kind::Upstream => v1::resource::Kind::Upstream,
            Kind::Consumer => v1::resource::Kind::Consumer,
            Kind::Ssl => v1::resource::Kind::Ssl,
            Kind::GlobalRule => v1::resource::Kind::GlobalRule,
            Kind::PluginConfig => v1::resource::Kind::PluginConfig,
        }
    }

    /// From the API's enum value (as an `i32` on the wire).
    pub fn from_proto(k: i32) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.proto() as i32 == k)
    }

    /// The kind of a resource.
    pub fn of(value: &Value) -> Kind {
        match value {
            Value::Route(_) => Kind::Route,
            Value::Service(_) => Kind::Service,
            Value::Upstream(_) => Kind::Upstream,
            Value::Consumer(_) => Kind::Consumer,
            Value::Ssl(_) => Kind::Ssl,
            Value::GlobalRule(_) => Kind::GlobalRule,
            Value::PluginConfig(_) => Kind::PluginConfig,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One stored resource and its metadata (`<Kind>Entry` of the API).
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The resource, secrets redacted.
    pub resource: Value,
    /// Its revision and change time.
    pub meta: v1::ResourceMeta,
}

impl Entry {
    fn new(resource: Option<Value>, meta: Option<v1::ResourceMeta>) -> Result<Entry, Error> {
        let resource = resource.ok_or_else(|| Error::Status(tonic::Status::internal("the entry has no resource")))?;
        Ok(Entry { resource, meta: meta.unwrap_or_default() })
    }

    /// Its kind.
    pub fn kind(&self) -> Kind {
        Kind::of(&self.resource)
    }

    /// Its id (a consumer's `username`).
    pub fn id(&self) -> &str {
        id_of(&self.resource)
    }

    /// The resource in proto-JSON, as written in a config file (proto field
    /// names, enums by name, durations as `"1.5s"`).
    pub fn to_json(&self) -> serde_json::Value {
        resource_json(&self.resource)
    }
}

/// The id of a resource (a consumer's `username`).
pub fn id_of(value: &Value) -> &str {
    match value {
        Value::Route(r) => &r.id,
        Value::Service(r) => &r.id,
        Value::Upstream(r) => &r.id,
        Value::Consumer(r) => &r.username,
        Value::Ssl(r) => &r.id,
        Value::GlobalRule(r) => &r.id,
        Value::PluginConfig(r) => &r.id,
    }
}

/// A resource in proto-JSON.
pub fn resource_json(value: &Value) -> serde_json::Value {
    let json = match value {
        Value::Route(r) => serde_json::to_value(r),
        Value::Service(r) => serde_json::to_value(r),
        Value::Upstream(r) => serde_json::to_value(r),
        Value::Consumer(r) => serde_json::to_value(r),
        Value::Ssl(r) => serde_json::to_value(r),
        Value::GlobalRule(r) => serde_json::to_value(r),
        Value::PluginConfig(r) => serde_json::to_value(r),
    };
    // The generated serializers only fail on maps with non-string keys, which
    // the schema has none of.
    json.unwrap_or(serde_json::Value::Null)
}

/// Every resource of a kind, and the store revision the listing was read at.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    /// The resources, ordered by id.
    pub entries: Vec<Entry>,
    /// The store revision of every page.
    pub revision: i64,
}

/// `Get<Kind>`: the call and the field of the entry that holds the resource.
macro_rules! get {
    ($c:expr, $method:ident, $req:expr, $field:ident, $variant:ident) => {{
        let e = $c.resources.$method($req).await?.into_inner();
        Entry::new(e.$field.map(Value::$variant), e.meta)
    }};
}

/// `List<Kinds>`, every page.
macro_rules! list {
    ($c:expr, $method:ident, $Req:ident, $field:ident, $variant:ident, $sel:expr, $size:expr) => {{
        let mut listing = Listing::default();
        let mut token = String::new();
        loop {
            let req = v1::$Req { page_size: $size, page_token: token, label_selector: $sel.clone() };
            let page = $c.resources.$method(req).await?.into_inner();
            for e in page.items {
                listing.entries.push(Entry::new(e.$field.map(Value::$variant), e.meta)?);
            }
            listing.revision = page.revision;
            if page.next_page_token.is_empty() {
                break listing;
            }
            token = page.next_page_token;
        }
    }};
}

impl Client {
    /// Returns one resource. `NOT_FOUND` if there is none.
    pub async fn get(&mut self, kind: Kind, id: &str) -> Result<Entry, Error> {
        let id = id.to_owned();
        match kind {
            Kind::Route => get!(self, get_route, v1::GetRouteRequest { id }, route, Route),
            Kind::Service => get!(self, get_service, v1::GetServiceRequest { id }, service, Service),
            Kind::Upstream => get!(self, get_upstream, v1::GetUpstreamRequest { id }, upstream, Upstream),
            Kind::Consumer => {
                get!(self, get_consumer, v1::GetConsumerRequest { username: id }, consumer, Consumer)
            }
            Kind::Ssl => get!(self, get_ssl, v1::GetSslRequest { id }, ssl, Ssl),
            Kind::GlobalRule => get!(self, get_global_rule, v1::GetGlobalRuleRequest { id }, global_rule, GlobalRule),
            Kind::PluginConfig => {
                get!(self, get_plugin_config, v1::GetPluginConfigRequest { id }, plugin_config, PluginConfig)
            }
        }
    }

    /// Lists every resource of a kind whose labels match `selector`, reading
    /// `page_size` per call (0: the server's default).
    pub async fn list(&mut self, kind: Kind, selector: &[v1::LabelMatch], page_size: i32) -> Result<Listing, Error> {
        let sel = selector.to_vec();
        Ok(match kind {
            Kind::Route => list!(self, list_routes, ListRoutesRequest, route, Route, sel, page_size),
            Kind::Service => list!(self, list_services, ListServicesRequest, service, Service, sel, page_size),
            Kind::Upstream => list!(self, list_upstreams, ListUpstreamsRequest, upstream, Upstream, sel, page_size),
            Kind::Consumer => list!(self, list_consumers, ListConsumersRequest, consumer, Consumer, sel, page_size),
            Kind::Ssl => list!(self, list_ssls, ListSslsRequest, ssl, Ssl, sel, page_size),
            Kind::GlobalRule => {
                list!(self, list_global_rules, ListGlobalRulesRequest, global_rule, GlobalRule, sel, page_size)
            }
            Kind::PluginConfig => {
                list!(self, list_plugin_configs, ListPluginConfigsRequest, plugin_config, PluginConfig, sel, page_size)
            }
        })
    }

    /// Deletes a resource if it is still at `expected_revision`; `None`
    /// reads its current revision first. Returns the store revision of the
    /// deletion. `ABORTED` if it changed since, `FAILED_PRECONDITION` while
    /// other resources refer to it ([`Error::referrers`] names them).
    pub async fn delete(&mut self, kind: Kind, id: &str, expected_revision: Option<i64>) -> Result<i64, Error> {
        let expected_revision = match expected_revision {
            Some(r) => r,
            None => self.get(kind, id).await?.meta.revision,
        };
        let id = id.to_owned();
        let r = &mut self.resources;
        Ok(match kind {
            Kind::Route => {
                r.delete_route(v1::DeleteRouteRequest { id, expected_revision }).await?.into_inner().revision
            }
            Kind::Service => {
                r.delete_service(v1::DeleteServiceRequest { id, expected_revision }).await?.into_inner().revision
            }
            Kind::Upstream => {
                r.delete_upstream(v1::DeleteUpstreamRequest { id, expected_revision }).await?.into_inner().revision
            }
            Kind::Consumer => {
                let req = v1::DeleteConsumerRequest { username: id, expected_revision };
                r.delete_consumer(req).await?.into_inner().revision
            }
            Kind::Ssl => r.delete_ssl(v1::DeleteSslRequest { id, expected_revision }).await?.into_inner().revision,
            Kind::GlobalRule => {
                let req = v1::DeleteGlobalRuleRequest { id, expected_revision };
                r.delete_global_rule(req).await?.into_inner().revision
            }
            Kind::PluginConfig => {
                let req = v1::DeletePluginConfigRequest { id, expected_revision };
                r.delete_plugin_config(req).await?.into_inner().revision
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_read_singular_plural_dashed_or_underscored() {
        assert_eq!(Kind::parse("routes"), Some(Kind::Route));
        assert_eq!(Kind::parse("global_rule"), Some(Kind::GlobalRule));
        assert_eq!(Kind::parse("plugin-configs"), Some(Kind::PluginConfig));
        assert_eq!(Kind::parse("SSL"), Some(Kind::Ssl));
        assert_eq!(Kind::parse("rout"), None);
        for k in Kind::ALL {
            assert_eq!(Kind::from_proto(k.proto() as i32), Some(k));
        }
    }
}
