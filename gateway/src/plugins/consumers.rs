//! Consumers, indexed for the auth plugins.
//!
//! Secrets are never used as map keys: an API key is found by its SHA-256
//! digest and then compared in full in constant time; a Basic password is
//! found by user name and compared in constant time. Nothing here logs a
//! credential.

use std::collections::HashMap;
use std::sync::Arc;

use pingora_config::v1;
use subtle::ConstantTimeEq;

use super::{BuildCx, PluginChain, build_scope};

/// A consumer, compiled.
pub struct Consumer {
    pub username: Arc<str>,
    /// The value of `X-Consumer-Username` sent upstream.
    pub header: http::HeaderValue,
    /// The consumer's own plugins (they take precedence over the route's
    /// after authentication).
    pub plugins: PluginChain,
    key: Option<Box<[u8]>>,
    basic_password: Option<Box<[u8]>>,
    /// The key verifying this consumer's tokens (jwt_auth).
    pub jwt_key: Option<(jsonwebtoken::DecodingKey, jsonwebtoken::Algorithm)>,
}

impl Consumer {
    /// Whether `key` is this consumer's API key (constant time).
    pub fn key_matches(&self, key: &[u8]) -> bool {
        self.key.as_deref().is_some_and(|k| bool::from(k.ct_eq(key)))
    }

    /// Whether `password` is this consumer's Basic password (constant time).
    pub fn password_matches(&self, password: &[u8]) -> bool {
        self.basic_password.as_deref().is_some_and(|p| bool::from(p.ct_eq(password)))
    }
}

/// Every consumer, indexed by credential.
#[derive(Default)]
pub struct Consumers {
    by_key_digest: HashMap<[u8; 32], Arc<Consumer>>,
    by_basic_user: HashMap<String, Arc<Consumer>>,
    by_jwt_key: HashMap<String, Arc<Consumer>>,
}

impl Consumers {
    /// Indexes the consumers. Their plugins are built here too (with an
    /// empty consumer index: a consumer's auth plugins never run).
    pub fn build(consumers: &[Arc<v1::Consumer>], cx: &mut BuildCx<'_>, errors: &mut Vec<String>) -> Consumers {
        let mut out = Consumers::default();
        for (i, c) in consumers.iter().enumerate() {
            let scope = format!("consumers[{i}] ({})", c.username);
            let plugins = match &c.plugins {
                Some(p) => {
                    let saved = std::mem::replace(&mut cx.scope, scope.clone());
                    let built = build_scope(p, cx);
                    cx.scope = saved;
                    match built {
                        Ok(scope_plugins) => {
                            let disabled = scope_plugins.iter().filter(|(_, e)| e.is_none()).map(|(n, _)| *n).collect();
                            PluginChain::from_entries(
                                scope_plugins.into_iter().filter_map(|(_, e)| e).collect(),
                                disabled,
                            )
                        }
                        Err(es) => {
                            errors.extend(es.into_iter().map(|e| format!("{scope}: {e}")));
                            PluginChain::default()
                        }
                    }
                }
                None => PluginChain::default(),
            };
            let Ok(header) = http::HeaderValue::try_from(c.username.as_str()) else {
                errors.push(format!("{scope}: username is not a valid header value"));
                continue;
            };
            let creds = c.credentials.clone().unwrap_or_default();
            let jwt_key = match creds.jwt_auth.as_ref().map(super::jwt_auth::decoding_key) {
                Some(Ok(k)) => Some(k),
                Some(Err(e)) => {
                    errors.push(format!("{scope}: credentials.jwt_auth.{e}"));
                    None
                }
                None => None,
            };
            let consumer = Arc::new(Consumer {
                username: c.username.as_str().into(),
                header,
                plugins,
                key: creds.key_auth.as_ref().map(|k| k.key.as_bytes().into()),
                basic_password: creds.basic_auth.as_ref().map(|b| b.password.as_bytes().into()),
                jwt_key,
            });
            if let Some(k) = &creds.key_auth {
                let digest = key_digest(k.key.as_bytes());
                if out.by_key_digest.insert(digest, consumer.clone()).is_some() {
                    errors.push(format!("{scope}: credentials.key_auth.key: the same key is used by another consumer"));
                }
            }
            if let Some(b) = &creds.basic_auth
                && out.by_basic_user.insert(b.username.clone(), consumer.clone()).is_some()
            {
                errors.push(format!(
                    "{scope}: credentials.basic_auth.username: {:?} is used by another consumer",
                    b.username
                ));
            }
            if let Some(j) = &creds.jwt_auth
                && out.by_jwt_key.insert(j.key.clone(), consumer.clone()).is_some()
            {
                errors.push(format!("{scope}: credentials.jwt_auth.key: {:?} is used by another consumer", j.key));
            }
        }
        out
    }

    /// The consumer whose API key is `key`.
    pub fn by_key(&self, key: &[u8]) -> Option<&Arc<Consumer>> {
        let digest = key_digest(key);
        self.by_key_digest.get(&digest).filter(|c| c.key_matches(key))
    }

    /// The consumer with this Basic user name and password.
    pub fn by_basic(&self, user: &str, password: &[u8]) -> Option<&Arc<Consumer>> {
        // Compare a password even for an unknown user, so that timing does
        // not tell which user names exist.
        match self.by_basic_user.get(user) {
            Some(c) if c.password_matches(password) => Some(c),
            Some(_) => None,
            None => {
                let _ = password.ct_eq(password);
                None
            }
        }
    }

    /// The consumer whose `jwt_auth.key` is `key`.
    pub fn by_jwt_key(&self, key: &str) -> Option<&Arc<Consumer>> {
        self.by_jwt_key.get(key)
    }

    pub fn is_empty(&self) -> bool {
        self.by_key_digest.is_empty() && self.by_basic_user.is_empty() && self.by_jwt_key.is_empty()
    }
}

/// The SHA-256 of an API key, its index in [`Consumers`]. The `sha2`
/// crate's (SHA-NI where the CPU has it) rather than OpenSSL's one-shot
/// `SHA256()`, which in OpenSSL 3 looks up its implementation in the
/// provider tables on every call: measured at about 2% of the gateway's CPU
/// per request with key_auth on.
fn key_digest(key: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(key).into()
}
