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

/// The value of `name="value"` in a JAAS line (quotes required, backslash escapes the quote).
fn jaas_option(jaas: &str, name: &str) -> Option<String> {
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
    fn jaas_options() {
        let jaas = "x.PlainLoginModule required username=\"alice\" password = \"s3=cr;t\";";
        assert_eq!(jaas_option(jaas, "username").as_deref(), Some("alice"));
        assert_eq!(jaas_option(jaas, "password").as_deref(), Some("s3=cr;t"));
        assert_eq!(jaas_option(jaas, "user"), None);
        assert_eq!(jaas_option("myusername=\"x\"", "username"), None);
    }
}
