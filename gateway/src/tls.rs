//! TLS on the listeners: the certificate is chosen by SNI from the SSL
//! resources of the live config (exact name first, then the longest
//! wildcard), falling back to the listener's default certificate. The
//! choice reads the current snapshot at each handshake, so certificate
//! changes are live without a restart.

use std::collections::HashMap;
use std::sync::Arc;

use pingora_config::v1;
use pingora_core::listeners::TlsAccept;
use pingora_core::protocols::tls::TlsRef;
use pingora_core::tls::ext;
use pingora_core::tls::pkey::{PKey, Private};
use pingora_core::tls::ssl::NameType;
use pingora_core::tls::x509::X509;

use crate::Live;

/// A parsed certificate chain (leaf first) and its key.
pub struct CertifiedKey {
    chain: Vec<X509>,
    key: PKey<Private>,
}

impl CertifiedKey {
    pub fn from_pem(cert: &str, key: &str) -> Result<CertifiedKey, String> {
        let chain = X509::stack_from_pem(cert.as_bytes()).map_err(|e| format!("certificate: {e}"))?;
        if chain.is_empty() {
            return Err("certificate: no certificate in the PEM text".into());
        }
        let key = PKey::private_key_from_pem(key.as_bytes()).map_err(|e| format!("key: {e}"))?;
        let leaf_key = chain[0].public_key().map_err(|e| format!("certificate: {e}"))?;
        if !leaf_key.public_eq(&key) {
            return Err("the key does not belong to the certificate".into());
        }
        Ok(CertifiedKey { chain, key })
    }

    fn install(&self, ssl: &mut TlsRef) {
        let result = ext::ssl_use_certificate(ssl, &self.chain[0])
            .and_then(|_| ext::ssl_use_private_key(ssl, &self.key))
            .and_then(|_| self.chain[1..].iter().try_for_each(|c| ext::ssl_add_chain_cert(ssl, c)));
        if let Err(e) = result {
            log::error!("tls: cannot install the certificate: {e}");
        }
    }
}

/// The SSL resources of one snapshot, indexed by server name.
#[derive(Default)]
pub struct Certificates {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By the suffix after `*.` (`example.com` for `*.example.com`).
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// Each SSL resource and its parsed key, by the resource's address:
    /// the next snapshot takes the parsed key of a resource it shares
    /// rather than parse the PEM again (the `Arc` held keeps the address
    /// unique).
    parsed: HashMap<usize, (Arc<v1::Ssl>, Arc<CertifiedKey>)>,
}

impl Certificates {
    /// Parses and indexes the SSL resources; a resource `previous` shares
    /// (unchanged since that snapshot) keeps its parsed key, so that a
    /// write pays for the certificates it changed, not for every one.
    pub fn build(ssls: &[Arc<v1::Ssl>], previous: Option<&Certificates>) -> Result<Certificates, String> {
        let mut out = Certificates::default();
        for (i, ssl) in ssls.iter().enumerate() {
            let address = Arc::as_ptr(ssl) as usize;
            let ck = match previous.and_then(|p| p.parsed.get(&address)) {
                Some((_, ck)) => ck.clone(),
                None => Arc::new(
                    CertifiedKey::from_pem(&ssl.cert, &ssl.key).map_err(|e| format!("ssls[{i}] ({}): {e}", ssl.id))?,
                ),
            };
            out.parsed.insert(address, (ssl.clone(), ck.clone()));
            for sni in &ssl.snis {
                let sni = sni.to_ascii_lowercase();
                match sni.strip_prefix("*.") {
                    Some(suffix) => out.wildcard.insert(suffix.to_owned(), ck.clone()),
                    None => out.exact.insert(sni, ck.clone()),
                };
            }
        }
        Ok(out)
    }

    /// The certificate for a server name: exact, then the longest wildcard.
    pub fn find(&self, name: &str) -> Option<&Arc<CertifiedKey>> {
        let name = name.to_ascii_lowercase();
        if let Some(c) = self.exact.get(&name) {
            return Some(c);
        }
        let mut rest = name.as_str();
        while let Some((_, suffix)) = rest.split_once('.') {
            if let Some(c) = self.wildcard.get(suffix) {
                return Some(c);
            }
            rest = suffix;
        }
        None
    }
}

/// The handshake callback of a TLS listener.
pub struct SniCallback {
    pub live: Arc<Live>,
    pub default: Option<CertifiedKey>,
}

#[async_trait::async_trait]
impl TlsAccept for SniCallback {
    async fn certificate_callback(&self, ssl: &mut TlsRef) {
        let name = ssl.servername(NameType::HOST_NAME).map(str::to_owned);
        let snapshot = self.live.load();
        match name.as_deref().and_then(|n| snapshot.certificates.find(n)) {
            Some(c) => c.install(ssl),
            None => match &self.default {
                Some(c) => c.install(ssl),
                None => log::debug!("tls: no certificate for server name {name:?}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssl(id: &str, name: &str) -> Arc<v1::Ssl> {
        let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap_or_else(|e| panic!("{e}"));
        let cert = params.self_signed(&key).unwrap_or_else(|e| panic!("{e}"));
        Arc::new(v1::Ssl {
            id: id.into(),
            cert: cert.pem(),
            key: key.serialize_pem(),
            snis: vec![name.to_owned()],
            ..Default::default()
        })
    }

    fn build(ssls: &[Arc<v1::Ssl>], previous: Option<&Certificates>) -> Certificates {
        Certificates::build(ssls, previous).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A certificate the next snapshot shares is not parsed again; one
    /// written anew is, even with the same text.
    #[test]
    fn a_snapshot_takes_the_parsed_keys_of_the_certificates_it_shares() {
        let (a, b) = (ssl("a", "a.example"), ssl("b", "*.b.example"));
        let first = build(&[a.clone(), b.clone()], None);
        let same = |x: &Certificates, y: &Certificates, name: &str| match (x.find(name), y.find(name)) {
            (Some(x), Some(y)) => Arc::ptr_eq(x, y),
            _ => panic!("no certificate for {name}"),
        };
        let b_again = Arc::new(v1::Ssl::clone(&b));
        let second = build(&[a.clone(), b_again], Some(&first));
        assert!(same(&first, &second, "a.example"));
        assert!(!same(&first, &second, "x.b.example"), "a new resource is parsed");
        let third = build(&[a], Some(&second));
        assert!(same(&first, &third, "a.example"));
        assert!(third.find("x.b.example").is_none());
    }
}
