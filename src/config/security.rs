//! Listener security settings with Kafka's names: which security protocol each listener speaks
//! (`listener.security.protocol.map`), its TLS key material and client authentication
//! (`ssl.*`), and its SASL mechanisms and PLAIN users (`sasl.enabled.mechanisms`,
//! `listener.name.<listener>.plain.sasl.jaas.config`). As in Kafka, any `ssl.*` or SASL setting
//! may be given for one listener only with the prefix `listener.name.<listener, lower case>.`,
//! which wins over the unprefixed setting.

use std::collections::BTreeMap;

use super::{invalid, parse_min, ConfigError};

/// A listener's security protocol (Kafka's SecurityProtocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn parse(s: &str) -> Option<SecurityProtocol> {
        Some(match s.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => SecurityProtocol::Plaintext,
            "SSL" => SecurityProtocol::Ssl,
            "SASL_PLAINTEXT" => SecurityProtocol::SaslPlaintext,
            "SASL_SSL" => SecurityProtocol::SaslSsl,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    pub fn is_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn is_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Requested,
    Required,
}

/// The SASL mechanisms gregor serves.
pub const SASL_MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// Names handled here, in the order DescribeConfigs lists them.
pub const SECURITY_CONFIGS: &[&str] = &[
    "listener.security.protocol.map",
    "inter.broker.listener.name",
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.key.password",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.client.auth",
    "ssl.principal.mapping.rules",
    "ssl.enabled.protocols",
    "sasl.enabled.mechanisms",
    "sasl.mechanism.inter.broker.protocol",
    "connections.max.reauth.ms",
    "connection.failed.authentication.delay.ms",
    "authorizer.class.name",
    "super.users",
    "allow.everyone.if.no.acl.found",
];

/// The authorizer Kafka 4 ships (KRaft's StandardAuthorizer); gregor's is the same model.
pub const STANDARD_AUTHORIZER: &str = "org.apache.kafka.metadata.authorizer.StandardAuthorizer";

/// Settings whose values DescribeConfigs never shows (Kafka's PASSWORD type).
pub fn is_sensitive(name: &str) -> bool {
    let base = listener_setting(name).map_or(name, |(_, rest)| rest);
    base == "ssl.key.password"
        || base == "ssl.keystore.password"
        || base == "ssl.truststore.password"
        || base.ends_with("sasl.jaas.config")
}

/// `listener.name.<listener>.<setting>` split into the listener (lower case) and the setting.
fn listener_setting(name: &str) -> Option<(&str, &str)> {
    name.strip_prefix("listener.name.")?.split_once('.')
}

/// Settings that may be given per listener with `listener.name.<l>.`: every `ssl.*` one,
/// `sasl.enabled.mechanisms` and `<mechanism>.sasl.jaas.config`.
fn per_listener(setting: &str) -> bool {
    (SECURITY_CONFIGS.contains(&setting) && setting.starts_with("ssl."))
        || setting == "sasl.enabled.mechanisms"
        || setting.ends_with(".sasl.jaas.config")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityConfig {
    /// `listener.security.protocol.map`, upper-case listener names.
    protocol_map: BTreeMap<String, SecurityProtocol>,
    /// `inter.broker.listener.name`: the listener other brokers reach this one on.
    pub inter_broker_listener_name: Option<String>,
    /// Every other setting of this module as given (full names, prefixed ones included).
    values: BTreeMap<String, String>,
    /// `connections.max.reauth.ms` (KIP-368): 0 means sessions never expire.
    pub connections_max_reauth_ms: i64,
    /// `connection.failed.authentication.delay.ms`: a failed authentication is answered (and
    /// its connection closed) this much later, to slow down password guessing.
    pub failed_authentication_delay_ms: u64,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            protocol_map: default_protocol_map(),
            inter_broker_listener_name: None,
            values: BTreeMap::new(),
            connections_max_reauth_ms: 0,
            failed_authentication_delay_ms: 100,
        }
    }
}

/// Kafka's default map: each protocol's name maps to itself; and gregor maps a listener named
/// CONTROLLER to PLAINTEXT as Kafka 4 does for controller listeners missing from the map.
fn default_protocol_map() -> BTreeMap<String, SecurityProtocol> {
    let mut m: BTreeMap<String, SecurityProtocol> = [
        SecurityProtocol::Plaintext,
        SecurityProtocol::Ssl,
        SecurityProtocol::SaslPlaintext,
        SecurityProtocol::SaslSsl,
    ]
    .into_iter()
    .map(|p| (p.name().to_string(), p))
    .collect();
    m.insert("CONTROLLER".to_string(), SecurityProtocol::Plaintext);
    m
}

const DEFAULTS: &[(&str, &str)] = &[
    ("ssl.keystore.type", "PEM"),
    ("ssl.truststore.type", "PEM"),
    ("ssl.client.auth", "none"),
    ("ssl.principal.mapping.rules", "DEFAULT"),
    ("ssl.enabled.protocols", "TLSv1.2,TLSv1.3"),
    (
        "sasl.enabled.mechanisms",
        "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
    ),
    ("sasl.mechanism.inter.broker.protocol", "PLAIN"),
];

impl SecurityConfig {
    /// Takes the setting if it is one of this module's; `Ok(false)` if not.
    pub fn set(&mut self, name: &str, value: &str) -> Result<bool, ConfigError> {
        let setting = match listener_setting(name) {
            Some((_, rest)) if per_listener(rest) => rest,
            Some(_) => return Ok(false),
            None if SECURITY_CONFIGS.contains(&name) => name,
            None => return Ok(false),
        };
        match setting {
            "listener.security.protocol.map" => self.protocol_map = parse_map(name, value)?,
            "inter.broker.listener.name" => {
                let v = value.trim();
                self.inter_broker_listener_name = (!v.is_empty()).then(|| v.to_ascii_uppercase());
            }
            "connections.max.reauth.ms" => {
                self.connections_max_reauth_ms = parse_min(name, value, 0)?
            }
            "connection.failed.authentication.delay.ms" => {
                self.failed_authentication_delay_ms = parse_min(name, value, 0)?
            }
            _ => {
                check_value(name, setting, value)?;
                self.values
                    .insert(name.to_string(), value.trim().to_string());
            }
        }
        Ok(true)
    }

    pub fn get(&self, name: &str) -> Option<String> {
        Some(match name {
            "listener.security.protocol.map" => self
                .protocol_map
                .iter()
                .map(|(l, p)| format!("{l}:{}", p.name()))
                .collect::<Vec<_>>()
                .join(","),
            "inter.broker.listener.name" => {
                self.inter_broker_listener_name.clone().unwrap_or_default()
            }
            "connections.max.reauth.ms" => self.connections_max_reauth_ms.to_string(),
            "connection.failed.authentication.delay.ms" => {
                self.failed_authentication_delay_ms.to_string()
            }
            _ if SECURITY_CONFIGS.contains(&name) => self.value(None, name).unwrap_or_default(),
            _ => return self.values.get(name).cloned(),
        })
    }

    /// The security protocol of listener `name`.
    pub fn protocol_of(&self, name: &str) -> Option<SecurityProtocol> {
        self.protocol_map.get(&name.to_ascii_uppercase()).copied()
    }

    /// A setting as it applies to `listener`: its `listener.name.` override, the broker-wide
    /// value, or the default.
    pub fn value(&self, listener: Option<&str>, setting: &str) -> Option<String> {
        listener
            .and_then(|l| {
                self.values.get(&format!(
                    "listener.name.{}.{setting}",
                    l.to_ascii_lowercase()
                ))
            })
            .or_else(|| self.values.get(setting))
            .cloned()
            .or_else(|| {
                DEFAULTS
                    .iter()
                    .find(|(n, _)| *n == setting)
                    .map(|(_, v)| v.to_string())
            })
    }

    pub fn client_auth(&self, listener: &str) -> ClientAuth {
        match self.value(Some(listener), "ssl.client.auth").as_deref() {
            Some("required") => ClientAuth::Required,
            Some("requested") => ClientAuth::Requested,
            _ => ClientAuth::None,
        }
    }

    /// The SASL mechanisms `listener` offers, in the configured order.
    pub fn sasl_mechanisms(&self, listener: &str) -> Vec<String> {
        self.value(Some(listener), "sasl.enabled.mechanisms")
            .unwrap_or_default()
            .split(',')
            .map(|m| m.trim().to_ascii_uppercase())
            .filter(|m| !m.is_empty())
            .collect()
    }

    /// Whether `authorizer.class.name` names the authorizer: ACLs are then enforced.
    pub fn authorizer_enabled(&self) -> bool {
        self.value(None, "authorizer.class.name")
            .is_some_and(|v| !v.is_empty())
    }

    /// `super.users`: principals separated by semicolons, as Kafka writes them.
    pub fn super_users(&self) -> Vec<String> {
        self.value(None, "super.users")
            .unwrap_or_default()
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect()
    }

    pub fn allow_everyone_if_no_acl_found(&self) -> bool {
        self.value(None, "allow.everyone.if.no.acl.found")
            .as_deref()
            == Some("true")
    }

    /// The PLAIN users of `listener` from its JAAS config: `user_<name>="<password>"` options
    /// of Kafka's PlainLoginModule.
    pub fn plain_users(&self, listener: &str) -> Result<BTreeMap<String, String>, ConfigError> {
        let setting = "plain.sasl.jaas.config";
        match self.value(Some(listener), setting) {
            Some(jaas) => parse_jaas_users(setting, &jaas),
            None => Ok(BTreeMap::new()),
        }
    }
}

/// `NAME:PROTOCOL,...`.
fn parse_map(name: &str, value: &str) -> Result<BTreeMap<String, SecurityProtocol>, ConfigError> {
    let mut out = BTreeMap::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (listener, protocol) = entry
            .split_once(':')
            .ok_or_else(|| invalid(name, value, "expected LISTENER:PROTOCOL pairs"))?;
        let protocol = SecurityProtocol::parse(protocol).ok_or_else(|| {
            invalid(
                name,
                value,
                format!("unknown security protocol {protocol}: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"),
            )
        })?;
        if out
            .insert(listener.trim().to_ascii_uppercase(), protocol)
            .is_some()
        {
            return Err(invalid(name, value, "a listener is mapped twice"));
        }
    }
    Ok(out)
}

fn check_value(name: &str, setting: &str, value: &str) -> Result<(), ConfigError> {
    let v = value.trim();
    match setting {
        "ssl.keystore.type" | "ssl.truststore.type" if !v.eq_ignore_ascii_case("PEM") => {
            Err(invalid(
                name,
                value,
                "only PEM stores are supported (JKS and PKCS12 are not)",
            ))
        }
        "ssl.client.auth" if !["none", "requested", "required"].contains(&v) => {
            Err(invalid(name, value, "expected none, requested or required"))
        }
        "ssl.enabled.protocols" => {
            for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                if p != "TLSv1.2" && p != "TLSv1.3" {
                    return Err(invalid(name, value, "TLSv1.2 and TLSv1.3 only"));
                }
            }
            Ok(())
        }
        "sasl.mechanism.inter.broker.protocol"
            if !SASL_MECHANISMS.contains(&v.to_ascii_uppercase().as_str()) =>
        {
            Err(invalid(
                name,
                value,
                "expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
            ))
        }
        "sasl.enabled.mechanisms" => {
            for m in v.split(',').map(str::trim).filter(|m| !m.is_empty()) {
                if !SASL_MECHANISMS.contains(&m.to_ascii_uppercase().as_str()) {
                    return Err(invalid(
                        name,
                        value,
                        format!(
                            "mechanism {m} is not supported: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"
                        ),
                    ));
                }
            }
            Ok(())
        }
        "authorizer.class.name" if !v.is_empty() && v != STANDARD_AUTHORIZER => Err(invalid(
            name,
            value,
            format!("the only authorizer is {STANDARD_AUTHORIZER}"),
        )),
        "allow.everyone.if.no.acl.found" if v != "true" && v != "false" => {
            Err(invalid(name, value, "expected true or false"))
        }
        "super.users" => {
            for p in v.split(';').map(str::trim).filter(|p| !p.is_empty()) {
                if !p
                    .split_once(':')
                    .is_some_and(|(t, n)| !t.is_empty() && !n.is_empty())
                {
                    return Err(invalid(
                        name,
                        value,
                        format!("{p} is not a principal: expected Type:name, e.g. User:admin"),
                    ));
                }
            }
            Ok(())
        }
        s if s.ends_with(".sasl.jaas.config") => {
            if s == "plain.sasl.jaas.config" {
                parse_jaas_users(name, v)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The `user_<name>="<password>"` options of a JAAS line such as
/// `org.apache.kafka.common.security.plain.PlainLoginModule required username="admin"
/// password="admin-secret" user_admin="admin-secret" user_alice="alice-secret";`.
fn parse_jaas_users(name: &str, jaas: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let bad = |why: &str| invalid(name, "(hidden)", why);
    let body = jaas.trim().trim_end_matches(';');
    let mut rest = body
        .split_once(char::is_whitespace)
        .map(|(_, r)| r.trim_start())
        .ok_or_else(|| bad("expected `LoginModule flag options;`"))?;
    // The control flag (required, requisite, sufficient, optional).
    rest = rest
        .split_once(char::is_whitespace)
        .map_or("", |(_, r)| r.trim_start());
    let mut users = BTreeMap::new();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once('=')
            .ok_or_else(|| bad("expected key=\"value\" options"))?;
        let after = after.trim_start();
        let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted
                .find('"')
                .ok_or_else(|| bad("an option's quoted value does not end"))?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            after.split_once(char::is_whitespace).unwrap_or((after, ""))
        };
        if let Some(user) = key.trim().strip_prefix("user_") {
            users.insert(user.to_string(), value.to_string());
        }
        rest = tail.trim_start();
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_map_and_per_listener_settings() {
        let mut c = SecurityConfig::default();
        assert_eq!(c.protocol_of("sasl_ssl"), Some(SecurityProtocol::SaslSsl));
        assert_eq!(
            c.protocol_of("CONTROLLER"),
            Some(SecurityProtocol::Plaintext)
        );
        assert_eq!(c.protocol_of("INTERNAL"), None);
        c.set(
            "listener.security.protocol.map",
            "INTERNAL:SASL_SSL, EXTERNAL:SSL",
        )
        .unwrap();
        assert_eq!(c.protocol_of("internal"), Some(SecurityProtocol::SaslSsl));
        assert_eq!(c.protocol_of("PLAINTEXT"), None);
        assert!(c.set("listener.security.protocol.map", "A:TLS").is_err());
        assert!(c
            .set("listener.security.protocol.map", "A:SSL,a:SSL")
            .is_err());

        assert_eq!(c.client_auth("EXTERNAL"), ClientAuth::None);
        c.set("ssl.client.auth", "requested").unwrap();
        c.set("listener.name.external.ssl.client.auth", "required")
            .unwrap();
        assert_eq!(c.client_auth("EXTERNAL"), ClientAuth::Required);
        assert_eq!(c.client_auth("INTERNAL"), ClientAuth::Requested);
        assert!(c.set("ssl.client.auth", "always").is_err());
        assert!(c.set("ssl.keystore.type", "JKS").is_err());
        assert!(c.set("sasl.enabled.mechanisms", "GSSAPI").is_err());
        assert!(!c.set("listener.name.x.log.retention.ms", "1").unwrap());
        assert_eq!(
            c.sasl_mechanisms("INTERNAL"),
            vec!["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
        );
        c.set(
            "listener.name.internal.sasl.enabled.mechanisms",
            "scram-sha-512",
        )
        .unwrap();
        assert_eq!(c.sasl_mechanisms("INTERNAL"), vec!["SCRAM-SHA-512"]);
        assert!(is_sensitive(
            "listener.name.internal.plain.sasl.jaas.config"
        ));
        assert!(is_sensitive("ssl.key.password"));
        assert!(!is_sensitive("ssl.keystore.location"));
    }

    #[test]
    fn authorizer_settings() {
        let mut c = SecurityConfig::default();
        assert!(!c.authorizer_enabled());
        assert!(c.super_users().is_empty());
        assert!(!c.allow_everyone_if_no_acl_found());
        c.set("authorizer.class.name", STANDARD_AUTHORIZER).unwrap();
        c.set("super.users", "User:admin; User:CN=broker,O=x")
            .unwrap();
        c.set("allow.everyone.if.no.acl.found", "true").unwrap();
        assert!(c.authorizer_enabled());
        assert_eq!(c.super_users(), vec!["User:admin", "User:CN=broker,O=x"]);
        assert!(c.allow_everyone_if_no_acl_found());
        assert!(c
            .set(
                "authorizer.class.name",
                "kafka.security.authorizer.AclAuthorizer"
            )
            .is_err());
        assert!(c.set("super.users", "admin").is_err());
        assert!(c.set("allow.everyone.if.no.acl.found", "yes").is_err());
        c.set("authorizer.class.name", "").unwrap();
        assert!(!c.authorizer_enabled());
    }

    #[test]
    fn plain_users_come_from_the_jaas_config() {
        let mut c = SecurityConfig::default();
        c.set(
            "listener.name.sasl_ssl.plain.sasl.jaas.config",
            "org.apache.kafka.common.security.plain.PlainLoginModule required \
             username=\"admin\" password=\"admin-secret\" user_admin=\"admin-secret\" \
             user_alice=\"a l=ice\";",
        )
        .unwrap();
        let users = c.plain_users("SASL_SSL").unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users["alice"], "a l=ice");
        assert_eq!(users["admin"], "admin-secret");
        assert!(c.plain_users("SASL_PLAINTEXT").unwrap().is_empty());
        assert!(c
            .set(
                "listener.name.x.plain.sasl.jaas.config",
                "M required user_a=\"open"
            )
            .is_err());
    }
}
