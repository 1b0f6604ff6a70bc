//! The plugin pipeline.
//!
//! A plugin is built once per snapshot from its typed config message and
//! runs on the request. For the same plugin configured in several places,
//! the route's config beats the plugin config's, which beats the service's.
//!
//! Adding a plugin: its message in `proto/pingora_config/v1/plugins.proto`,
//! one file here implementing [`Plugin`], one line in [`build`].
//!
//! This build runs `mock`. A config that uses a plugin this build does not
//! run yet is rejected when it is loaded (never silently ignored: an
//! ignored auth plugin would open the route).

mod mock;

use std::sync::Arc;

use pingora_config::v1;
use pingora_proxy::Session;

/// What the request phase decided.
pub enum Flow {
    /// Go on with the next plugin, then the upstream.
    Continue,
    /// The plugin sent the response; nothing else runs but logging.
    Responded,
}

/// A plugin built from its config.
#[async_trait::async_trait]
pub trait Plugin: Send + Sync {
    /// Runs after routing, before any upstream is chosen. Returning
    /// [`Flow::Responded`] means the plugin wrote the whole response.
    async fn request(&self, session: &mut Session) -> pingora_error::Result<Flow>;

    /// Whether this plugin always answers by itself (a route with it needs no
    /// upstream).
    fn responds(&self) -> bool {
        false
    }
}

/// The plugins of one route, in execution order.
#[derive(Default, Clone)]
pub struct PluginChain {
    plugins: Vec<Arc<dyn Plugin>>,
}

/// The plugin configs that apply to a route, lowest precedence first.
pub struct Layers<'a> {
    pub service: Option<&'a v1::Plugins>,
    pub plugin_config: Option<&'a v1::Plugins>,
    pub route: Option<&'a v1::Plugins>,
}

impl PluginChain {
    pub fn build(layers: &Layers<'_>) -> Result<PluginChain, String> {
        // Merge by plugin name; a later layer replaces an earlier one.
        let mut merged: Vec<(String, serde_json::Value)> = Vec::new();
        for layer in [layers.service, layers.plugin_config, layers.route].into_iter().flatten() {
            let serde_json::Value::Object(map) = serde_json::to_value(layer).map_err(|e| e.to_string())? else {
                continue;
            };
            for (name, value) in map {
                merged.retain(|(n, _)| *n != name);
                merged.push((name, value));
            }
        }
        let mut plugins = Vec::new();
        let mut unsupported = Vec::new();
        for (name, value) in merged {
            if value.get("disable").and_then(serde_json::Value::as_bool) == Some(true) {
                continue;
            }
            match build(&name, value)? {
                Some(p) => plugins.push(p),
                None => unsupported.push(name),
            }
        }
        if !unsupported.is_empty() {
            return Err(format!("plugin(s) not supported by this gateway build yet: {}", unsupported.join(", ")));
        }
        Ok(PluginChain { plugins })
    }

    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }

    /// Whether a plugin of the chain answers every request by itself.
    pub fn responds(&self) -> bool {
        self.plugins.iter().any(|p| p.responds())
    }

    /// Runs the request phase of every plugin, in order.
    pub async fn request(&self, session: &mut Session) -> pingora_error::Result<Flow> {
        for p in &self.plugins {
            if let Flow::Responded = p.request(session).await? {
                return Ok(Flow::Responded);
            }
        }
        Ok(Flow::Continue)
    }
}

fn typed<T: serde::de::DeserializeOwned>(name: &str, value: serde_json::Value) -> Result<T, String> {
    serde_json::from_value(value).map_err(|e| format!("plugin {name}: {e}"))
}

/// The registry: builds a plugin by name, `None` if this build lacks it.
fn build(name: &str, value: serde_json::Value) -> Result<Option<Arc<dyn Plugin>>, String> {
    Ok(Some(match name {
        "mock" => Arc::new(mock::Mock::new(typed(name, value)?)?),
        _ => return Ok(None),
    }))
}
