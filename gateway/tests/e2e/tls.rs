//! TLS listeners: which certificate a client is served for its SNI, which
//! protocol versions it may speak, HTTP/2 by ALPN, and certificates changed
//! in the config without a restart.
//!
//! Each leaf certificate has its own subject common name, so the raw
//! OpenSSL client below can tell which one the gateway chose.

use std::net::TcpStream;
use std::time::Duration;

use openssl::nid::Nid;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode, SslVersion};
use openssl::x509::X509;

use crate::harness::{Gateway, Options, Pki, client, free_port, tls_listener, wait_listening, yaml_block};

/// What a client learns from a handshake.
#[derive(Debug)]
struct Handshake {
    /// The common name of the certificate served.
    served: String,
    /// `TLSv1.2`, `TLSv1.3`.
    version: String,
    /// The protocol chosen by ALPN, if any.
    alpn: Option<String>,
}

/// How the client handshakes.
#[derive(Default)]
struct Hello<'a> {
    sni: Option<&'a str>,
    /// Offer only this version.
    version: Option<SslVersion>,
    /// ALPN protocols offered, in wire format.
    alpn: Option<&'a [u8]>,
}

/// Handshakes with the TLS listener on `port`; the served chain must verify
/// against `ca` (the name is not checked: the default certificate is served
/// for names it does not cover).
fn handshake(port: u16, ca: &str, hello: Hello) -> Result<Handshake, String> {
    let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(|e| e.to_string())?;
    b.cert_store_mut().add_cert(X509::from_pem(ca.as_bytes()).expect("CA")).expect("trust the CA");
    b.set_verify(SslVerifyMode::PEER);
    if let Some(v) = hello.version {
        b.set_min_proto_version(Some(v)).map_err(|e| e.to_string())?;
        b.set_max_proto_version(Some(v)).map_err(|e| e.to_string())?;
        if v == SslVersion::TLS1_1 {
            // OpenSSL 3 disables TLS 1.1 at the default security level:
            // lower it so this client really offers it.
            b.set_security_level(0);
            b.set_cipher_list("DEFAULT:@SECLEVEL=0").map_err(|e| e.to_string())?;
        }
    }
    if let Some(p) = hello.alpn {
        b.set_alpn_protos(p).map_err(|e| e.to_string())?;
    }
    let config = b
        .build()
        .configure()
        .map_err(|e| e.to_string())?
        .use_server_name_indication(hello.sni.is_some())
        .verify_hostname(false);
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    let tls = config.connect(hello.sni.unwrap_or("no-sni.invalid"), tcp).map_err(|e| e.to_string())?;
    let cert = tls.ssl().peer_certificate().ok_or("no certificate served")?;
    let served = cert
        .subject_name()
        .entries_by_nid(Nid::COMMONNAME)
        .next()
        .map(|e| String::from_utf8_lossy(e.data().as_slice()).into_owned())
        .unwrap_or_default();
    Ok(Handshake {
        served,
        version: tls.ssl().version_str().to_owned(),
        alpn: tls.ssl().selected_alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned()),
    })
}

/// The certificate served for `sni` (panics when the handshake fails).
fn served(port: u16, pki: &Pki, sni: Option<&str>) -> String {
    handshake(port, &pki.ca, Hello { sni, ..Hello::default() })
        .unwrap_or_else(|e| panic!("handshake with SNI {sni:?}: {e}"))
        .served
}

/// An `ssls` entry.
fn ssl(id: &str, snis: &[&str], pair: &(String, String)) -> String {
    let snis: Vec<String> = snis.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "  - id: {id}\n    snis: [{}]\n    cert: {}    key: {}",
        snis.join(", "),
        yaml_block(&pair.0, 6),
        yaml_block(&pair.1, 6)
    )
}

/// A config whose one route answers `secure` on every path, with these
/// `ssls` entries.
fn config(ssls: &[String]) -> String {
    let ssls = if ssls.is_empty() { String::new() } else { format!("ssls:\n{}", ssls.concat()) };
    format!(
        "routes:\n  - id: any\n    uris: [\"/*\"]\n    plugins: {{ mock: {{ body: secure, content_type: text/plain }} }}\n{ssls}"
    )
}

/// The certificates of the usual setup: `api.test` (and
/// `special.wild.test`), `*.wild.test`, and the listener's default.
struct Certs {
    pki: Pki,
    api: (String, String),
    wild: (String, String),
    default: (String, String),
}

impl Certs {
    fn new() -> Certs {
        let pki = Pki::new();
        Certs {
            api: pki.leaf("api cert", &["api.test", "special.wild.test"]),
            wild: pki.leaf("wildcard cert", &["*.wild.test"]),
            default: pki.leaf("default cert", &["default.test"]),
            pki,
        }
    }

    fn ssls(&self) -> Vec<String> {
        vec![ssl("api", &["api.test", "special.wild.test"], &self.api), ssl("wild", &["*.wild.test"], &self.wild)]
    }
}

/// A gateway with a TLS listener (the returned port) serving `config`.
fn tls_gateway(certs: &Certs, config: &str, tls_extra: &str) -> (Gateway, u16) {
    let port = free_port();
    let gw = Gateway::start_with(
        config,
        Options { extra_listeners: tls_listener("https", port, &certs.default, tls_extra), ..Options::default() },
    );
    wait_listening(&gw, port);
    (gw, port)
}

#[test]
fn an_exact_sni_beats_a_wildcard_and_a_wildcard_covers_one_label() {
    let certs = Certs::new();
    let (_gw, port) = tls_gateway(&certs, &config(&certs.ssls()), "");
    assert_eq!(served(port, &certs.pki, Some("api.test")), "api cert");
    assert_eq!(served(port, &certs.pki, Some("special.wild.test")), "api cert");
    assert_eq!(served(port, &certs.pki, Some("a.wild.test")), "wildcard cert");
    assert_eq!(served(port, &certs.pki, Some("A.Wild.Test")), "wildcard cert");
}

#[test]
fn an_unknown_or_missing_sni_gets_the_listeners_default_certificate() {
    let certs = Certs::new();
    let (_gw, port) = tls_gateway(&certs, &config(&certs.ssls()), "");
    assert_eq!(served(port, &certs.pki, Some("nobody.test")), "default cert");
    assert_eq!(served(port, &certs.pki, Some("wild.test")), "default cert");
    assert_eq!(served(port, &certs.pki, None), "default cert");
}

#[test]
fn a_client_that_trusts_the_ca_reaches_the_routes_by_name_over_http2() {
    let certs = Certs::new();
    let (_gw, port) = tls_gateway(&certs, &config(&certs.ssls()), "");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let c = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(certs.pki.ca.as_bytes()).expect("CA"))
        .resolve("api.test", addr)
        .resolve("a.wild.test", addr)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    for host in ["api.test", "a.wild.test"] {
        let r = c.get(format!("https://{host}:{port}/x")).send().unwrap_or_else(|e| panic!("{host}: {e:?}"));
        assert_eq!(r.status(), 200, "{host}");
        assert_eq!(r.version(), reqwest::Version::HTTP_2, "{host}: h2 not chosen by ALPN");
        assert_eq!(r.text().expect("body"), "secure");
    }
}

#[test]
fn alpn_offers_h2_and_still_serves_http1_clients() {
    let certs = Certs::new();
    let (_gw, port) = tls_gateway(&certs, &config(&certs.ssls()), "");
    let hello = |alpn: &'static [u8]| Hello { sni: Some("api.test"), alpn: Some(alpn), ..Hello::default() };
    let h2 = handshake(port, &certs.pki.ca, hello(b"\x02h2\x08http/1.1")).expect("h2 handshake");
    assert_eq!(h2.alpn.as_deref(), Some("h2"));
    let h1 = handshake(port, &certs.pki.ca, hello(b"\x08http/1.1")).expect("http/1.1 handshake");
    assert_eq!(h1.alpn.as_deref(), Some("http/1.1"));
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let c = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(certs.pki.ca.as_bytes()).expect("CA"))
        .resolve("api.test", addr)
        .http1_only()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let r = c.get(format!("https://api.test:{port}/x")).send().expect("HTTP/1.1 over TLS");
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    assert_eq!(r.text().expect("body"), "secure");
}

#[test]
fn tls_1_2_and_1_3_are_negotiated_and_tls_1_1_is_refused() {
    let certs = Certs::new();
    let (_gw, port) = tls_gateway(&certs, &config(&certs.ssls()), "");
    let hello = |v: SslVersion| Hello { sni: Some("api.test"), version: Some(v), ..Hello::default() };
    let v12 = handshake(port, &certs.pki.ca, hello(SslVersion::TLS1_2)).expect("TLS 1.2");
    assert_eq!((v12.version.as_str(), v12.served.as_str()), ("TLSv1.2", "api cert"));
    let v13 = handshake(port, &certs.pki.ca, hello(SslVersion::TLS1_3)).expect("TLS 1.3");
    assert_eq!((v13.version.as_str(), v13.served.as_str()), ("TLSv1.3", "api cert"));
    let v11 = handshake(port, &certs.pki.ca, hello(SslVersion::TLS1_1));
    let err = v11.expect_err("a TLS 1.1 handshake succeeded");
    // The refusal comes from the gateway: its protocol_version alert.
    assert!(err.contains("alert protocol version"), "{err}");
}

#[test]
fn a_listener_with_min_version_tls1_3_refuses_tls_1_2() {
    let certs = Certs::new();
    let (_gw, port) = tls_gateway(&certs, &config(&certs.ssls()), "      min_version: TLS1_3\n");
    let hello = |v: SslVersion| Hello { sni: Some("api.test"), version: Some(v), ..Hello::default() };
    assert_eq!(handshake(port, &certs.pki.ca, hello(SslVersion::TLS1_3)).expect("TLS 1.3").version, "TLSv1.3");
    let err = handshake(port, &certs.pki.ca, hello(SslVersion::TLS1_2)).expect_err("a TLS 1.2 handshake succeeded");
    assert!(err.contains("alert protocol version"), "{err}");
}

#[test]
fn a_certificate_added_to_the_config_is_served_without_restart() {
    let certs = Certs::new();
    let (gw, port) = tls_gateway(&certs, &config(&certs.ssls()), "");
    assert_eq!(served(port, &certs.pki, Some("new.test")), "default cert");
    let fresh = certs.pki.leaf("new cert", &["new.test"]);
    let mut ssls = certs.ssls();
    ssls.push(ssl("new", &["new.test"], &fresh));
    gw.write_config(&config(&ssls));
    gw.wait_for("the new certificate served", Duration::from_secs(5), || {
        served(port, &certs.pki, Some("new.test")) == "new cert"
    });
    // The other names keep their certificates, and plain HTTP still answers.
    assert_eq!(served(port, &certs.pki, Some("api.test")), "api cert");
    assert_eq!(served(port, &certs.pki, Some("a.wild.test")), "wildcard cert");
    assert_eq!(crate::harness::get(&client(), &gw.url("/x"), &[]).body, "secure");
}
