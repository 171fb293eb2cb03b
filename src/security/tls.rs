//! TLS for SSL and SASL_SSL listeners, with rustls: the server configuration a listener's
//! `ssl.*` settings describe, and the principal a client certificate stands for.

use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::config::security::{ClientAuth, SecurityConfig};

/// Why a listener's TLS configuration cannot be built; names the setting and file.
#[derive(Debug, thiserror::Error)]
#[error("listener {listener}: {what}")]
pub struct TlsConfigError {
    listener: String,
    what: String,
}

/// The rustls server configuration of `listener` (upper case name).
pub fn server_config(
    security: &SecurityConfig,
    listener: &str,
) -> Result<Arc<rustls::ServerConfig>, TlsConfigError> {
    server_config_with(security, listener, security.client_auth(listener))
}

/// Mutual TLS for the links of an SSL controller listener: the server side requires a peer
/// certificate whatever `ssl.client.auth` says (only other nodes of the cluster may connect),
/// and the client side presents this node's key store and trusts its trust store.
pub fn controller_links(
    security: &SecurityConfig,
    listener: &str,
) -> Result<(Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>), TlsConfigError> {
    let server = server_config_with(security, listener, ClientAuth::Required)?;
    let setting = |name: &str| security.value(Some(listener), name);
    let fail = |what: String| TlsConfigError {
        listener: listener.to_string(),
        what,
    };
    let ca = setting("ssl.truststore.location")
        .ok_or_else(|| fail("ssl.truststore.location is not set".into()))?;
    let keystore = setting("ssl.keystore.location")
        .ok_or_else(|| fail("ssl.keystore.location is not set".into()))?;
    let password = setting("ssl.key.password").filter(|p| !p.is_empty());
    let client =
        client_config(&ca, Some((&keystore, &keystore)), password.as_deref()).map_err(fail)?;
    Ok((server, client))
}

fn server_config_with(
    security: &SecurityConfig,
    listener: &str,
    auth: ClientAuth,
) -> Result<Arc<rustls::ServerConfig>, TlsConfigError> {
    let fail = |what: String| TlsConfigError {
        listener: listener.to_string(),
        what,
    };
    let setting = |name: &str| security.value(Some(listener), name);
    let keystore = setting("ssl.keystore.location")
        .ok_or_else(|| fail("ssl.keystore.location is not set".into()))?;
    let pem = std::fs::read(&keystore)
        .map_err(|e| fail(format!("ssl.keystore.location {keystore}: {e}")))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| fail(format!("ssl.keystore.location {keystore}: {e}")))?;
    if chain.is_empty() {
        return Err(fail(format!(
            "ssl.keystore.location {keystore}: no CERTIFICATE in the file"
        )));
    }
    let password = setting("ssl.key.password").filter(|p| !p.is_empty());
    let key = private_key(&pem, password.as_deref())
        .map_err(|e| fail(format!("ssl.keystore.location {keystore}: {e}")))?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions = protocol_versions(&setting("ssl.enabled.protocols").unwrap_or_default());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| fail(format!("ssl.enabled.protocols: {e}")))?;
    let builder = match auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Requested | ClientAuth::Required => {
            let roots = trust_roots(&setting("ssl.truststore.location"))
                .map_err(|e| fail(format!("ssl.truststore.location: {e}")))?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| fail(format!("ssl.truststore.location: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| fail(format!("ssl.keystore.location {keystore}: {e}")))?;
    Ok(Arc::new(config))
}

/// A client's rustls configuration (the command-line tools): the CA certificates to trust
/// (`ca`, PEM), and optionally a PEM file holding the client's own key and certificate chain
/// (for brokers with `ssl.client.auth`), its key opened with `key_password` if encrypted.
pub fn client_config(
    ca: &str,
    identity: Option<(&str, &str)>,
    key_password: Option<&str>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let roots = trust_roots(&Some(ca.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((certificates, key)) => {
            let read = |path: &str| std::fs::read(path).map_err(|e| format!("{path}: {e}"));
            let pem = read(certificates)?;
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{certificates}: {e}"))?;
            if chain.is_empty() {
                return Err(format!("{certificates}: no CERTIFICATE in the file"));
            }
            let key = private_key(&read(key)?, key_password).map_err(|e| format!("{key}: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| e.to_string())?
        }
    };
    Ok(Arc::new(config))
}

/// The private key in a PEM file: PKCS#8, PKCS#1 (RSA) or SEC1 (EC), or an encrypted PKCS#8 key
/// opened with `password` (`ssl.key.password`).
fn private_key(pem: &[u8], password: Option<&str>) -> Result<PrivateKeyDer<'static>, String> {
    let text = std::str::from_utf8(pem).map_err(|_| "not a PEM text file".to_string())?;
    if let Some(start) = text.find("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        let end_marker = "-----END ENCRYPTED PRIVATE KEY-----";
        let end = text[start..]
            .find(end_marker)
            .ok_or("an ENCRYPTED PRIVATE KEY block does not end")?;
        let block = &text[start..start + end + end_marker.len()];
        let password =
            password.ok_or("the private key is encrypted and ssl.key.password is not set")?;
        let (_, doc) = pkcs8::SecretDocument::from_pem(block).map_err(|e| e.to_string())?;
        let encrypted =
            pkcs8::EncryptedPrivateKeyInfo::try_from(doc.as_bytes()).map_err(|e| e.to_string())?;
        let plain = encrypted
            .decrypt(password)
            .map_err(|_| "cannot decrypt the private key with ssl.key.password".to_string())?;
        return Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            plain.as_bytes().to_vec(),
        )));
    }
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => "no PRIVATE KEY in the file".to_string(),
        e => e.to_string(),
    })
}

/// The certificates of a PEM trust store.
fn trust_roots(location: &Option<String>) -> Result<RootCertStore, String> {
    let location = location
        .as_deref()
        .ok_or("not set, and client certificates are asked for (ssl.client.auth)")?;
    let pem = std::fs::read(location).map_err(|e| format!("{location}: {e}"))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("{location}: {e}"))?;
        roots.add(cert).map_err(|e| format!("{location}: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("{location}: no CERTIFICATE in the file"));
    }
    Ok(roots)
}

fn protocol_versions(enabled: &str) -> Vec<&'static rustls::SupportedProtocolVersion> {
    let mut out = Vec::new();
    for p in enabled.split(',').map(str::trim) {
        match p {
            "TLSv1.3" => out.push(&rustls::version::TLS13),
            "TLSv1.2" => out.push(&rustls::version::TLS12),
            _ => {}
        }
    }
    if out.is_empty() {
        out = vec![&rustls::version::TLS13, &rustls::version::TLS12];
    }
    out
}

/// A client certificate's subject as Java's X500Principal.getName() prints it (RFC 2253: the
/// last RDN first, joined with commas, special characters escaped), e.g.
/// `CN=alice,OU=eng,O=example`: what `ssl.principal.mapping.rules` maps to a user name.
pub fn certificate_subject(cert: &[u8]) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    let rdns: Vec<String> = parsed
        .subject()
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let oid = atv.attr_type();
                    let key = short_name(&oid.to_id_string());
                    let value = atv.as_str().map(rfc2253_escape).unwrap_or_else(|_| {
                        format!(
                            "#{}",
                            atv.attr_value()
                                .data
                                .iter()
                                .map(|b| format!("{b:02x}"))
                                .collect::<String>()
                        )
                    });
                    format!("{key}={value}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    Some(rdns.into_iter().rev().collect::<Vec<_>>().join(","))
}

/// The keywords X500Principal's RFC 2253 form uses; other attributes print as dotted OIDs.
fn short_name(oid: &str) -> String {
    match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        other => return other.to_string(),
    }
    .to_string()
}

fn rfc2253_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i + 1 == v.chars().count() && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_prints_as_java_does() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CountryName, "US");
        dn.push(rcgen::DnType::OrganizationName, "Example, Inc");
        dn.push(rcgen::DnType::CommonName, "alice");
        params.distinguished_name = dn;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            certificate_subject(cert.der()).unwrap(),
            "CN=alice,O=Example\\, Inc,C=US"
        );
        assert_eq!(certificate_subject(b"garbage"), None);
    }

    #[test]
    fn key_store_with_plain_and_encrypted_keys() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let plain = dir.path().join("plain.pem");
        std::fs::write(&plain, format!("{}{}", key.serialize_pem(), cert.pem())).unwrap();
        let mut c = SecurityConfig::default();
        c.set("ssl.keystore.location", plain.to_str().unwrap())
            .unwrap();
        assert!(server_config(&c, "SSL").is_ok());

        // The same key encrypted (PBES2, scrypt + AES-256-CBC) needs ssl.key.password.
        let der = pkcs8::PrivateKeyInfo::try_from(key.serialized_der()).unwrap();
        let encrypted = der
            .encrypt(pkcs8::rand_core::OsRng, "s3cret")
            .unwrap()
            .to_pem("ENCRYPTED PRIVATE KEY", pkcs8::LineEnding::LF)
            .unwrap();
        let enc = dir.path().join("enc.pem");
        std::fs::write(&enc, format!("{}{}", *encrypted, cert.pem())).unwrap();
        c.set("ssl.keystore.location", enc.to_str().unwrap())
            .unwrap();
        let err = server_config(&c, "SSL").unwrap_err().to_string();
        assert!(err.contains("ssl.key.password"), "{err}");
        c.set("ssl.key.password", "wrong").unwrap();
        assert!(server_config(&c, "SSL").is_err());
        c.set("ssl.key.password", "s3cret").unwrap();
        assert!(server_config(&c, "SSL").is_ok());

        c.set("ssl.client.auth", "required").unwrap();
        let err = server_config(&c, "SSL").unwrap_err().to_string();
        assert!(err.contains("ssl.truststore.location"), "{err}");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, cert.pem()).unwrap();
        c.set("ssl.truststore.location", ca.to_str().unwrap())
            .unwrap();
        assert!(server_config(&c, "SSL").is_ok());
    }
}
