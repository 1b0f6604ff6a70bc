//! `jwt_auth`: identifies the consumer by a JSON Web Token signed with the
//! consumer's secret or key (HS256/384/512, RS256/384/512, ES256/384).

use std::collections::HashSet;
use std::sync::Arc;

use http::{HeaderName, header};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use pingora_config::v1;
use pingora_proxy::Session;

use super::{Auth, BuildCx, Consumers, Hooks, Plugin, Response};
use crate::upstream::duration;

pub struct JwtAuth {
    header: HeaderName,
    query: String,
    cookie: String,
    key_claim: String,
    hide: bool,
    leeway: u64,
    verify_exp: bool,
    verify_nbf: bool,
    required: Vec<String>,
    issuers: Vec<String>,
    audiences: Vec<String>,
    consumers: Arc<Consumers>,
}

pub fn build(cfg: &v1::JwtAuthPlugin, cx: &mut BuildCx<'_>) -> Result<JwtAuth, String> {
    let or = |s: &str, d: &str| if s.is_empty() { d.to_owned() } else { s.to_owned() };
    Ok(JwtAuth {
        header: HeaderName::try_from(or(&cfg.header, "authorization")).map_err(|e| format!("header: {e}"))?,
        query: or(&cfg.query, "jwt"),
        cookie: or(&cfg.cookie, "jwt"),
        key_claim: or(&cfg.key_claim_name, "key"),
        hide: cfg.hide_credentials.unwrap_or(true),
        leeway: cfg.leeway.as_ref().map(duration).map(|d| d.as_secs()).unwrap_or(0),
        verify_exp: cfg.verify_exp.unwrap_or(true),
        verify_nbf: cfg.verify_nbf.unwrap_or(true),
        required: cfg.required_claims.clone(),
        issuers: cfg.issuers.clone(),
        audiences: cfg.audiences.clone(),
        consumers: cx.consumers.clone(),
    })
}

/// The verification key of a consumer's credential, built when the config
/// is loaded (a public key that does not parse rejects the config).
pub fn decoding_key(cred: &v1::JwtAuthCredential) -> Result<(DecodingKey, Algorithm), String> {
    use v1::jwt_auth_credential::Algorithm as A;
    let alg = match cred.algorithm() {
        A::Hs256 | A::Unspecified => Algorithm::HS256,
        A::Hs384 => Algorithm::HS384,
        A::Hs512 => Algorithm::HS512,
        A::Rs256 => Algorithm::RS256,
        A::Rs384 => Algorithm::RS384,
        A::Rs512 => Algorithm::RS512,
        A::Es256 => Algorithm::ES256,
        A::Es384 => Algorithm::ES384,
    };
    let key = match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            if cred.secret.is_empty() {
                return Err(format!("algorithm {alg:?} needs `secret`"));
            }
            DecodingKey::from_secret(cred.secret.as_bytes())
        }
        Algorithm::ES256 | Algorithm::ES384 => {
            DecodingKey::from_ec_pem(cred.public_key.as_bytes()).map_err(|e| format!("public_key: {e}"))?
        }
        _ => DecodingKey::from_rsa_pem(cred.public_key.as_bytes()).map_err(|e| format!("public_key: {e}"))?,
    };
    Ok((key, alg))
}

enum Source {
    Header,
    Query,
    Cookie,
}

impl JwtAuth {
    fn token(&self, session: &Session) -> Option<(String, Source)> {
        let req = session.req_header();
        if let Some(v) = req.headers.get(&self.header).and_then(|v| v.to_str().ok()) {
            let t = v.trim();
            let t = if t.len() > 7 && t[..7].eq_ignore_ascii_case("bearer ") { t[7..].trim() } else { t };
            return Some((t.to_owned(), Source::Header));
        }
        if let Some(v) = crate::router::query_value(req.uri.query(), &self.query) {
            return Some((String::from_utf8_lossy(&v).into_owned(), Source::Query));
        }
        crate::router::cookie_value(&req.headers, &self.cookie)
            .map(|v| (String::from_utf8_lossy(v).into_owned(), Source::Cookie))
    }

    fn verify(&self, token: &str) -> Result<Arc<super::Consumer>, &'static str> {
        // The key claim is read before the signature is checked only to
        // choose whose key checks it; nothing else is trusted until then.
        let claims = insecure_claims(token).ok_or("JWT is malformed")?;
        let key = claims.get(&self.key_claim).and_then(|v| v.as_str()).ok_or("JWT lacks the key claim")?;
        let consumer = self.consumers.by_jwt_key(key).ok_or("JWT key is not known")?;
        let (dk, alg) = consumer.jwt_key.as_ref().ok_or("JWT key is not known")?;
        let mut v = Validation::new(*alg);
        v.leeway = self.leeway;
        v.validate_exp = self.verify_exp;
        v.validate_nbf = self.verify_nbf;
        v.required_spec_claims = self.required.iter().cloned().collect::<HashSet<_>>();
        if !self.issuers.is_empty() {
            v.set_issuer(&self.issuers);
        }
        if self.audiences.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&self.audiences);
        }
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, dk, &v).map_err(|e| {
            match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "JWT has expired",
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => "JWT is not valid yet",
                jsonwebtoken::errors::ErrorKind::InvalidIssuer => "JWT issuer is not accepted",
                jsonwebtoken::errors::ErrorKind::InvalidAudience => "JWT audience is not accepted",
                jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(_) => "JWT lacks a required claim",
                _ => "JWT signature is invalid",
            }
        })?;
        drop(data);
        Ok(consumer.clone())
    }
}

/// The claims of a token without checking it.
fn insecure_claims(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&raw).ok()
}

#[async_trait::async_trait]
impl Plugin for JwtAuth {
    fn hooks(&self) -> Hooks {
        Hooks::REQUEST
    }

    fn is_auth(&self) -> bool {
        true
    }

    fn authenticate(&self, session: &mut Session) -> Auth {
        let Some((token, source)) = self.token(session) else { return Auth::Absent };
        let verdict = self.verify(&token);
        if self.hide {
            let req = session.req_header_mut();
            match source {
                Source::Header => {
                    req.remove_header(&self.header);
                }
                Source::Query => super::remove_query_arg(req, &self.query),
                Source::Cookie => remove_cookie(req, &self.cookie),
            }
        }
        match verdict {
            Ok(c) => Auth::Consumer(c),
            Err(why) => Auth::Reject(Response::error(401, why)),
        }
    }

    fn missing_credential(&self) -> Response {
        Response::error(401, "Missing JWT token in request")
    }
}

fn remove_cookie(req: &mut pingora_http::RequestHeader, name: &str) {
    let kept: Vec<String> = req
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| pair.split('=').next() != Some(name) && !pair.is_empty())
        .map(str::to_owned)
        .collect();
    req.remove_header(&header::COOKIE);
    if !kept.is_empty() {
        let _ = req.insert_header(header::COOKIE, kept.join("; "));
    }
}
