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
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SharedConfig {
    pub routes: Vec<Arc<v1::Route>>,
    pub services: Vec<Arc<v1::Service>>,
    pub upstreams: Vec<Arc<v1::Upstream>>,
    pub consumers: Vec<Arc<v1::Consumer>>,
    pub ssls: Vec<Arc<v1::Ssl>>,
    pub global_rules: Vec<Arc<v1::GlobalRule>>,
    pub plugin_configs: Vec<Arc<v1::PluginConfig>>,
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
        let copy = shared.clone();
        assert!(Arc::ptr_eq(&copy.routes[1], &shared.routes[1]), "a copy shares the resources");
        assert!(!shared.is_empty() && SharedConfig::default().is_empty());
    }
}
