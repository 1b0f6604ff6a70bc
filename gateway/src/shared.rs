//! The config as the gateway holds it: `v1::Config` with each resource
//! behind its own `Arc`, so that revisions share the resources they have in
//! common.
//!
//! A write changes one resource or a few, but a revision is a whole config
//! that the store, the live snapshot and the last revisions (paging, the
//! history) all hold at once. With `v1::Config`, starting a batch of writes
//! from the current config copied every resource, and replacing a revision
//! freed every resource of the one before: both in proportion to the size
//! of the config, per batch (at 200 routes, a fifth of the control plane's
//! CPU under 200 writes/s; bench/README.md, "Session 15"). Here a copy is a
//! pointer per resource, and only the resources a write replaced are freed.
//!
//! The proto type stays the wire and file form: [`SharedConfig::from`] and
//! [`SharedConfig::to_proto`] convert, and [`SharedConfig::hash`] is the
//! fingerprint of the proto's encoding.

use std::sync::Arc;

use pingora_config::v1;

/// `v1::Config`, each resource shared (see the module).
#[derive(Debug, Clone, Default)]
pub struct SharedConfig {
    pub routes: Vec<Arc<v1::Route>>,
    pub services: Vec<Arc<v1::Service>>,
    pub upstreams: Vec<Arc<v1::Upstream>>,
    pub consumers: Vec<Arc<v1::Consumer>>,
    pub ssls: Vec<Arc<v1::Ssl>>,
    pub global_rules: Vec<Arc<v1::GlobalRule>>,
    pub plugin_configs: Vec<Arc<v1::PluginConfig>>,
}

/// Serialized as `v1::Config` is (proto-JSON: proto field names, empty
/// collections left out), from the shared resources.
impl serde::Serialize for SharedConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        struct Items<'a, T>(&'a [Arc<T>]);
        impl<T: serde::Serialize> serde::Serialize for Items<'_, T> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_seq(self.0.iter().map(|i| &**i))
            }
        }
        fn field<T: serde::Serialize, S: SerializeStruct>(
            out: &mut S,
            name: &'static str,
            items: &[Arc<T>],
        ) -> Result<(), S::Error> {
            if items.is_empty() { Ok(()) } else { out.serialize_field(name, &Items(items)) }
        }
        let len = [
            self.routes.is_empty(),
            self.services.is_empty(),
            self.upstreams.is_empty(),
            self.consumers.is_empty(),
            self.ssls.is_empty(),
            self.global_rules.is_empty(),
            self.plugin_configs.is_empty(),
        ]
        .iter()
        .filter(|empty| !**empty)
        .count();
        let mut out = serializer.serialize_struct("pingora_config.v1.Config", len)?;
        field(&mut out, "routes", &self.routes)?;
        field(&mut out, "services", &self.services)?;
        field(&mut out, "upstreams", &self.upstreams)?;
        field(&mut out, "consumers", &self.consumers)?;
        field(&mut out, "ssls", &self.ssls)?;
        field(&mut out, "global_rules", &self.global_rules)?;
        field(&mut out, "plugin_configs", &self.plugin_configs)?;
        out.end()
    }
}

/// Equal resources, a resource compared with itself at a pointer's cost.
fn same<T: PartialEq>(a: &[Arc<T>], b: &[Arc<T>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| Arc::ptr_eq(x, y) || x == y)
}

impl PartialEq for SharedConfig {
    fn eq(&self, o: &SharedConfig) -> bool {
        same(&self.routes, &o.routes)
            && same(&self.services, &o.services)
            && same(&self.upstreams, &o.upstreams)
            && same(&self.consumers, &o.consumers)
            && same(&self.ssls, &o.ssls)
            && same(&self.global_rules, &o.global_rules)
            && same(&self.plugin_configs, &o.plugin_configs)
    }
}

/// One resource as a [`SharedConfig`] holds it: the `Resource` oneof, its
/// value shared (what the etcd store keeps per key, so that the config
/// built from its keys shares every resource with the one before).
#[derive(Debug, Clone)]
pub enum SharedResource {
    Route(Arc<v1::Route>),
    Service(Arc<v1::Service>),
    Upstream(Arc<v1::Upstream>),
    Consumer(Arc<v1::Consumer>),
    Ssl(Arc<v1::Ssl>),
    GlobalRule(Arc<v1::GlobalRule>),
    PluginConfig(Arc<v1::PluginConfig>),
}

impl From<v1::resource::Value> for SharedResource {
    fn from(v: v1::resource::Value) -> SharedResource {
        use v1::resource::Value as V;
        match v {
            V::Route(r) => SharedResource::Route(Arc::new(r)),
            V::Service(r) => SharedResource::Service(Arc::new(r)),
            V::Upstream(r) => SharedResource::Upstream(Arc::new(r)),
            V::Consumer(r) => SharedResource::Consumer(Arc::new(r)),
            V::Ssl(r) => SharedResource::Ssl(Arc::new(r)),
            V::GlobalRule(r) => SharedResource::GlobalRule(Arc::new(r)),
            V::PluginConfig(r) => SharedResource::PluginConfig(Arc::new(r)),
        }
    }
}

impl PartialEq for SharedResource {
    fn eq(&self, o: &SharedResource) -> bool {
        fn eq<T: PartialEq>(a: &Arc<T>, b: &Arc<T>) -> bool {
            Arc::ptr_eq(a, b) || a == b
        }
        use SharedResource as S;
        match (self, o) {
            (S::Route(a), S::Route(b)) => eq(a, b),
            (S::Service(a), S::Service(b)) => eq(a, b),
            (S::Upstream(a), S::Upstream(b)) => eq(a, b),
            (S::Consumer(a), S::Consumer(b)) => eq(a, b),
            (S::Ssl(a), S::Ssl(b)) => eq(a, b),
            (S::GlobalRule(a), S::GlobalRule(b)) => eq(a, b),
            (S::PluginConfig(a), S::PluginConfig(b)) => eq(a, b),
            _ => false,
        }
    }
}

impl SharedResource {
    /// Whether this is the resource `r` holds.
    pub fn is(&self, r: &v1::resource::Value) -> bool {
        use v1::resource::Value as V;
        match (self, r) {
            (SharedResource::Route(a), V::Route(b)) => **a == *b,
            (SharedResource::Service(a), V::Service(b)) => **a == *b,
            (SharedResource::Upstream(a), V::Upstream(b)) => **a == *b,
            (SharedResource::Consumer(a), V::Consumer(b)) => **a == *b,
            (SharedResource::Ssl(a), V::Ssl(b)) => **a == *b,
            (SharedResource::GlobalRule(a), V::GlobalRule(b)) => **a == *b,
            (SharedResource::PluginConfig(a), V::PluginConfig(b)) => **a == *b,
            _ => false,
        }
    }

    /// The proto resource (a copy).
    pub fn to_resource(&self) -> v1::Resource {
        use v1::resource::Value as V;
        let value = match self {
            SharedResource::Route(r) => V::Route(v1::Route::clone(r)),
            SharedResource::Service(r) => V::Service(v1::Service::clone(r)),
            SharedResource::Upstream(r) => V::Upstream(v1::Upstream::clone(r)),
            SharedResource::Consumer(r) => V::Consumer(v1::Consumer::clone(r)),
            SharedResource::Ssl(r) => V::Ssl(v1::Ssl::clone(r)),
            SharedResource::GlobalRule(r) => V::GlobalRule(v1::GlobalRule::clone(r)),
            SharedResource::PluginConfig(r) => V::PluginConfig(v1::PluginConfig::clone(r)),
        };
        v1::Resource { value: Some(value) }
    }
}

impl SharedConfig {
    /// The config holding `resources`, each collection in the order given.
    pub fn from_resources<'a>(resources: impl Iterator<Item = &'a SharedResource>) -> SharedConfig {
        let mut c = SharedConfig::default();
        for r in resources {
            match r.clone() {
                SharedResource::Route(x) => c.routes.push(x),
                SharedResource::Service(x) => c.services.push(x),
                SharedResource::Upstream(x) => c.upstreams.push(x),
                SharedResource::Consumer(x) => c.consumers.push(x),
                SharedResource::Ssl(x) => c.ssls.push(x),
                SharedResource::GlobalRule(x) => c.global_rules.push(x),
                SharedResource::PluginConfig(x) => c.plugin_configs.push(x),
            }
        }
        c
    }

    /// The resource of this config equal to `r` (with its id), shared.
    pub fn find(&self, r: &SharedResource) -> Option<SharedResource> {
        fn find<T: PartialEq>(items: &[Arc<T>], r: &Arc<T>, id: fn(&T) -> &str) -> Option<Arc<T>> {
            items.iter().find(|x| id(x) == id(r)).filter(|x| **x == *r).cloned()
        }
        Some(match r {
            SharedResource::Route(r) => SharedResource::Route(find(&self.routes, r, |x| &x.id)?),
            SharedResource::Service(r) => SharedResource::Service(find(&self.services, r, |x| &x.id)?),
            SharedResource::Upstream(r) => SharedResource::Upstream(find(&self.upstreams, r, |x| &x.id)?),
            SharedResource::Consumer(r) => SharedResource::Consumer(find(&self.consumers, r, |x| &x.username)?),
            SharedResource::Ssl(r) => SharedResource::Ssl(find(&self.ssls, r, |x| &x.id)?),
            SharedResource::GlobalRule(r) => SharedResource::GlobalRule(find(&self.global_rules, r, |x| &x.id)?),
            SharedResource::PluginConfig(r) => SharedResource::PluginConfig(find(&self.plugin_configs, r, |x| &x.id)?),
        })
    }

    /// Every resource, shared, with its kind and id (collections in field
    /// order, each in its order).
    pub fn resources(&self) -> impl Iterator<Item = (v1::resource::Kind, &str, SharedResource)> + '_ {
        use v1::resource::Kind as K;
        let routes = self.routes.iter().map(|r| (K::Route, r.id.as_str(), SharedResource::Route(r.clone())));
        let services = self.services.iter().map(|r| (K::Service, r.id.as_str(), SharedResource::Service(r.clone())));
        let upstreams =
            self.upstreams.iter().map(|r| (K::Upstream, r.id.as_str(), SharedResource::Upstream(r.clone())));
        let consumers =
            self.consumers.iter().map(|r| (K::Consumer, r.username.as_str(), SharedResource::Consumer(r.clone())));
        let ssls = self.ssls.iter().map(|r| (K::Ssl, r.id.as_str(), SharedResource::Ssl(r.clone())));
        let global_rules =
            self.global_rules.iter().map(|r| (K::GlobalRule, r.id.as_str(), SharedResource::GlobalRule(r.clone())));
        let plugin_configs = self
            .plugin_configs
            .iter()
            .map(|r| (K::PluginConfig, r.id.as_str(), SharedResource::PluginConfig(r.clone())));
        routes.chain(services).chain(upstreams).chain(consumers).chain(ssls).chain(global_rules).chain(plugin_configs)
    }
}

fn shared<T>(items: Vec<T>) -> Vec<Arc<T>> {
    items.into_iter().map(Arc::new).collect()
}

fn owned<T: Clone>(items: &[Arc<T>]) -> Vec<T> {
    items.iter().map(|i| T::clone(i)).collect()
}

impl From<v1::Config> for SharedConfig {
    fn from(c: v1::Config) -> SharedConfig {
        SharedConfig {
            routes: shared(c.routes),
            services: shared(c.services),
            upstreams: shared(c.upstreams),
            consumers: shared(c.consumers),
            ssls: shared(c.ssls),
            global_rules: shared(c.global_rules),
            plugin_configs: shared(c.plugin_configs),
        }
    }
}

impl SharedConfig {
    /// The proto config (a copy of every resource: for export, the file's
    /// text and the validation of a whole config, not per write).
    pub fn to_proto(&self) -> v1::Config {
        v1::Config {
            routes: owned(&self.routes),
            services: owned(&self.services),
            upstreams: owned(&self.upstreams),
            consumers: owned(&self.consumers),
            ssls: owned(&self.ssls),
            global_rules: owned(&self.global_rules),
            plugin_configs: owned(&self.plugin_configs),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
            && self.services.is_empty()
            && self.upstreams.is_empty()
            && self.consumers.is_empty()
            && self.ssls.is_empty()
            && self.global_rules.is_empty()
            && self.plugin_configs.is_empty()
    }

    /// The encoding of [`SharedConfig::to_proto`], written from the shared
    /// resources (no copy): each collection's items as its field, in field
    /// order, as prost encodes `v1::Config`.
    pub fn encode_to_vec(&self) -> Vec<u8> {
        use prost::encoding::message;
        fn field<M: prost::Message>(tag: u32, items: &[Arc<M>], buf: &mut Vec<u8>) {
            for i in items {
                message::encode(tag, &**i, buf);
            }
        }
        let mut buf = Vec::new();
        field(1, &self.routes, &mut buf);
        field(2, &self.services, &mut buf);
        field(3, &self.upstreams, &mut buf);
        field(4, &self.consumers, &mut buf);
        field(5, &self.ssls, &mut buf);
        field(6, &self.global_rules, &mut buf);
        field(7, &self.plugin_configs, &mut buf);
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The field numbers written by `encode_to_vec` are the proto's: the
    /// encoding is the proto config's, byte for byte, and the conversions
    /// give back the config.
    #[test]
    fn the_shared_config_encodes_and_converts_as_the_proto_config() {
        let text = "routes:\n  - { id: r1, uris: [/a], upstream_id: u }\n  - { id: r2, uris: [/b], upstream_id: u }\n\
                    services:\n  - { id: s, upstream_id: u }\n\
                    upstreams:\n  - { id: u, nodes: [{ host: 127.0.0.1, port: 1 }] }\n\
                    global_rules:\n  - { id: g, plugins: { cors: {} } }\n\
                    plugin_configs:\n  - { id: p, plugins: { cors: {} } }\n";
        let config = match pingora_config::load_str::<v1::Config>(text, "test") {
            Ok((c, _)) => c,
            Err(e) => panic!("{e}"),
        };
        let mut config = config;
        // Not valid alone (credentials, a certificate): pushed as is.
        config.consumers.push(v1::Consumer { username: "c".into(), ..Default::default() });
        config.ssls.push(v1::Ssl { id: "t".into(), ..Default::default() });
        let shared = SharedConfig::from(config.clone());
        assert_eq!(shared.encode_to_vec(), prost::Message::encode_to_vec(&config));
        assert_eq!(shared.to_proto(), config);
        let json = |v: Result<String, serde_json::Error>| v.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(json(serde_json::to_string(&shared)), json(serde_json::to_string(&config)), "as the proto config");
        let empty = json(serde_json::to_string(&SharedConfig::default()));
        assert_eq!(empty, json(serde_json::to_string(&v1::Config::default())));
        let copy = shared.clone();
        assert!(Arc::ptr_eq(&copy.routes[1], &shared.routes[1]), "a copy shares the resources");
        assert!(!shared.is_empty() && SharedConfig::default().is_empty());
        // By resource, as the etcd store keeps it: the same config, the
        // same resources.
        let resources: Vec<SharedResource> = shared.resources().map(|(_, _, r)| r).collect();
        let again = SharedConfig::from_resources(resources.iter());
        assert_eq!(again, shared);
        assert!(Arc::ptr_eq(&again.upstreams[0], &shared.upstreams[0]));
        let ids: Vec<&str> = shared.resources().map(|(_, id, _)| id).collect();
        assert_eq!(ids, ["r1", "r2", "s", "u", "c", "t", "g", "p"]);
        // `find` gives the config's own resource for an equal one.
        let copy = SharedResource::from(v1::resource::Value::Route(v1::Route::clone(&shared.routes[1])));
        assert!(matches!(shared.find(&copy), Some(SharedResource::Route(r)) if Arc::ptr_eq(&r, &shared.routes[1])));
        let mut other = v1::Route::clone(&shared.routes[1]);
        other.priority += 1;
        assert!(shared.find(&SharedResource::from(v1::resource::Value::Route(other))).is_none());
    }
}
