//! How the client reaches a secured listener: TLS and SASL (PLAIN, SCRAM-SHA-256/512), from the
//! client properties Kafka's tools read with `--command-config` (Java names) or librdkafka's
//! names for the same settings.
//!
//! ```text
//! security.protocol=SASL_SSL
//! sasl.mechanism=SCRAM-SHA-512
//! sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="admin-secret";
//! ssl.truststore.location=/etc/gregor/ca.pem
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::SecurityProtocol;

/// A SASL login: mechanism (upper case), user and password.
#[derive(Clone)]
pub struct SaslLogin {
    pub mechanism: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for SaslLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslLogin")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// One SASL exchange as the client runs it: tokens to send in SaslAuthenticate requests, each
/// answering the server's last reply, until the server's proof checks out (SCRAM) or the
/// one token was accepted (PLAIN).
pub enum SaslExchange {
    Plain,
    Scram(Box<crate::security::scram::ScramClient>, ScramStage),
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ScramStage {
    SentFirst,
    SentFinal,
}

impl SaslLogin {
    /// Starts the exchange: it and the first token.
    pub fn start(&self) -> (SaslExchange, Vec<u8>) {
        use crate::security::scram::{nonce, ScramClient, ScramMechanism};
        match ScramMechanism::from_name(&self.mechanism) {
            None => {
                let token = format!("\0{}\0{}", self.username, self.password);
                (SaslExchange::Plain, token.into_bytes())
            }
            Some(m) => {
                let scram = ScramClient::new(m, &self.username, &self.password, nonce());
                let first = scram.client_first();
                (
                    SaslExchange::Scram(Box::new(scram), ScramStage::SentFirst),
                    first,
                )
            }
        }
    }
}

impl SaslExchange {
    /// The server accepted the last token and answered `reply`: the next token to send, or
    /// `None` when authentication is complete.
    pub fn next(&mut self, reply: &[u8]) -> Result<Option<Vec<u8>>, String> {
        match self {
            SaslExchange::Plain => Ok(None),
            SaslExchange::Scram(scram, stage @ ScramStage::SentFirst) => {
                let token = scram.client_final(reply).map_err(|e| e.to_string())?;
                *stage = ScramStage::SentFinal;
                Ok(Some(token))
            }
            SaslExchange::Scram(scram, ScramStage::SentFinal) => {
                scram
                    .verify_server_final(reply)
                    .map_err(|e| e.to_string())?;
                Ok(None)
            }
        }
    }
}

/// What a connection does before its first request: TLS, then SASL, as the protocol says.
#[derive(Clone, Debug)]
pub struct ClientSecurity {
    pub protocol: SecurityProtocol,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub sasl: Option<SaslLogin>,
}

impl Default for ClientSecurity {
    fn default() -> Self {
        ClientSecurity::plaintext()
    }
}

impl ClientSecurity {
    pub fn plaintext() -> ClientSecurity {
        ClientSecurity {
            protocol: SecurityProtocol::Plaintext,
            tls: None,
            sasl: None,
        }
    }

    /// Reads a properties file (`name=value` lines, `#` and `!` comments).
    pub fn from_file(path: &str) -> Result<ClientSecurity, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        ClientSecurity::from_properties(&text).map_err(|e| format!("{path}: {e}"))
    }

    pub fn from_properties(text: &str) -> Result<ClientSecurity, String> {
        let props: BTreeMap<&str, &str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
            .filter_map(|l| l.split_once('=').or_else(|| l.split_once(':')))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        let get = |names: &[&str]| names.iter().find_map(|n| props.get(n).copied());
        let protocol = match get(&["security.protocol"]) {
            None => SecurityProtocol::Plaintext,
            Some(p) => SecurityProtocol::parse(p).ok_or_else(|| {
                format!("security.protocol={p}: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
            })?,
        };
        let tls = if protocol.is_tls() {
            let ca = get(&["ssl.truststore.location", "ssl.ca.location"])
                .ok_or("TLS needs ssl.truststore.location (a PEM file of CA certificates)")?;
            let identity = match (
                get(&["ssl.certificate.location"]),
                get(&["ssl.key.location"]),
                get(&["ssl.keystore.location"]),
            ) {
                (Some(cert), Some(key), _) => Some((cert, key)),
                (None, None, Some(both)) => Some((both, both)),
                (None, None, None) => None,
                _ => {
                    return Err(
                        "give ssl.certificate.location and ssl.key.location together".into(),
                    )
                }
            };
            let password = get(&["ssl.key.password"]);
            Some(crate::security::tls::client_config(ca, identity, password)?)
        } else {
            None
        };
        let sasl = if protocol.is_sasl() {
            let mechanism = get(&["sasl.mechanism", "sasl.mechanisms"])
                .unwrap_or("PLAIN")
                .to_ascii_uppercase();
            if !["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].contains(&mechanism.as_str()) {
                return Err(format!(
                    "sasl.mechanism={mechanism}: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
                ));
            }
            let jaas = get(&["sasl.jaas.config"]).unwrap_or("");
            let username = get(&["sasl.username"])
                .map(str::to_string)
                .or_else(|| jaas_option(jaas, "username"))
                .ok_or("SASL needs sasl.username or a sasl.jaas.config with username=\"...\"")?;
            let password = get(&["sasl.password"])
                .map(str::to_string)
                .or_else(|| jaas_option(jaas, "password"))
                .ok_or("SASL needs sasl.password or a sasl.jaas.config with password=\"...\"")?;
            Some(SaslLogin {
                mechanism,
                username,
                password,
            })
        } else {
            None
        };
        Ok(ClientSecurity {
            protocol,
            tls,
            sasl,
        })
    }
}

impl ClientSecurity {
    /// How this broker reaches the others: over the inter-broker listener's protocol, trusting
    /// its trust store and presenting its own key store (for `ssl.client.auth`), and logging
    /// in with `sasl.mechanism.inter.broker.protocol` as the `username`/`password` of that
    /// mechanism's JAAS config on the listener (Kafka's settings for the same).
    pub fn inter_broker(config: &crate::config::Config) -> Result<ClientSecurity, String> {
        let Some(listener) = config.client_listeners().into_iter().next() else {
            return Ok(ClientSecurity::plaintext());
        };
        let security = &config.security;
        let name = listener.name.as_str();
        let setting = |s: &str| security.value(Some(name), s);
        let tls = if listener.protocol.is_tls() {
            let ca = setting("ssl.truststore.location").ok_or_else(|| {
                format!("inter-broker listener {name}: ssl.truststore.location is not set (brokers check each other's certificates against it)")
            })?;
            let keystore = setting("ssl.keystore.location");
            let password = setting("ssl.key.password").filter(|p| !p.is_empty());
            let identity = keystore.as_deref().map(|k| (k, k));
            Some(
                crate::security::tls::client_config(&ca, identity, password.as_deref())
                    .map_err(|e| format!("inter-broker listener {name}: {e}"))?,
            )
        } else {
            None
        };
        let sasl = if listener.protocol.is_sasl() {
            let mechanism = setting("sasl.mechanism.inter.broker.protocol")
                .unwrap_or_else(|| "PLAIN".to_string())
                .to_ascii_uppercase();
            let jaas_setting = format!("{}.sasl.jaas.config", mechanism.to_ascii_lowercase());
            let jaas = setting(&jaas_setting).unwrap_or_default();
            let missing = |option: &str| {
                format!(
                    "inter-broker listener {name}: listener.name.{}.{jaas_setting} has no \
                     {option}=\"...\" for this broker to log in with",
                    name.to_ascii_lowercase()
                )
            };
            Some(SaslLogin {
                username: jaas_option(&jaas, "username").ok_or_else(|| missing("username"))?,
                password: jaas_option(&jaas, "password").ok_or_else(|| missing("password"))?,
                mechanism,
            })
        } else {
            None
        };
        Ok(ClientSecurity {
            protocol: listener.protocol,
            tls,
            sasl,
        })
    }
}

/// The name a TLS client checks the server's certificate against: the host of `addr`
/// (`host:port`, an IPv6 host in brackets), an IP address or a DNS name.
pub fn server_name(addr: &str) -> Result<rustls_pki_types::ServerName<'static>, String> {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    rustls_pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("TLS server name {host}: {e}"))
}

/// The value of `name="value"` in a JAAS line (quotes required, backslash escapes the quote).
pub fn jaas_option(jaas: &str, name: &str) -> Option<String> {
    let mut rest = jaas;
    while let Some(at) = rest.find(name) {
        let before_ok = at == 0 || rest[..at].ends_with(|c: char| c.is_whitespace());
        let after = rest[at + name.len()..].trim_start();
        rest = &rest[at + name.len()..];
        let Some(value) = after.strip_prefix('=').map(str::trim_start) else {
            continue;
        };
        let Some(quoted) = value.strip_prefix('"') else {
            continue;
        };
        if !before_ok {
            continue;
        }
        let mut out = String::new();
        let mut chars = quoted.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.extend(chars.next()),
                '"' => return Some(out),
                c => out.push(c),
            }
        }
        return None;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_in_java_and_librdkafka_names() {
        let s = ClientSecurity::from_properties(
            "# admin\nsecurity.protocol=SASL_PLAINTEXT\nsasl.mechanism=scram-sha-512\n\
             sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \
             username=\"admin\" password=\"p\\\"w\";\n",
        )
        .unwrap();
        assert_eq!(s.protocol, SecurityProtocol::SaslPlaintext);
        let login = s.sasl.unwrap();
        assert_eq!(
            (
                login.mechanism.as_str(),
                login.username.as_str(),
                login.password.as_str()
            ),
            ("SCRAM-SHA-512", "admin", "p\"w")
        );
        let s = ClientSecurity::from_properties(
            "security.protocol=sasl_plaintext\nsasl.mechanisms=PLAIN\nsasl.username=a\nsasl.password=b",
        )
        .unwrap();
        let login = s.sasl.unwrap();
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("a", "b")
        );
        assert!(ClientSecurity::from_properties("").unwrap().sasl.is_none());
        assert!(ClientSecurity::from_properties("security.protocol=SASL_PLAINTEXT").is_err());
        assert!(ClientSecurity::from_properties("security.protocol=SSL").is_err());
        assert!(ClientSecurity::from_properties(
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=GSSAPI\nsasl.username=a\nsasl.password=b"
        )
        .is_err());
    }

    #[test]
    fn sasl_exchanges_run_against_the_server_side() {
        use crate::security::scram::{nonce, ScramCredential, ScramMechanism, ScramServer};
        let login = |mechanism: &str, password: &str| SaslLogin {
            mechanism: mechanism.to_string(),
            username: "bob".to_string(),
            password: password.to_string(),
        };
        let (mut plain, token) = login("PLAIN", "pw").start();
        assert_eq!(token, b"\0bob\0pw");
        assert_eq!(plain.next(b""), Ok(None));

        let m = ScramMechanism::Sha512;
        let credential = ScramCredential::from_password(m, "pw", b"salt-salt", 4096);
        for (password, accepted) in [("pw", true), ("wrong", false)] {
            let (mut client, first) = login("SCRAM-SHA-512", password).start();
            let mut server = ScramServer::new(m, nonce());
            let server_first = server
                .client_first(&first, |user| (user == "bob").then(|| credential.clone()))
                .unwrap();
            let last = client.next(&server_first).unwrap().expect("client-final");
            match server.client_final(&last) {
                Ok((server_final, user)) => {
                    assert!(accepted);
                    assert_eq!(user, "bob");
                    assert_eq!(client.next(&server_final), Ok(None));
                }
                Err(_) => assert!(!accepted, "the right password was refused"),
            }
        }
        // A server that cannot prove it knows the credential is refused.
        let (mut client, first) = login("SCRAM-SHA-512", "pw").start();
        let mut server = ScramServer::new(m, nonce());
        let server_first = server
            .client_first(&first, |_| Some(credential.clone()))
            .unwrap();
        client.next(&server_first).unwrap();
        assert!(client.next(b"v=AAAA").is_err());
    }

    #[test]
    fn jaas_options() {
        let jaas = "x.PlainLoginModule required username=\"alice\" password = \"s3=cr;t\";";
        assert_eq!(jaas_option(jaas, "username").as_deref(), Some("alice"));
        assert_eq!(jaas_option(jaas, "password").as_deref(), Some("s3=cr;t"));
        assert_eq!(jaas_option(jaas, "user"), None);
        assert_eq!(jaas_option("myusername=\"x\"", "username"), None);
    }
}
