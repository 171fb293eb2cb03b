//! One connection's SASL authentication (SaslHandshake v1, then SaslAuthenticate frames), as a
//! state machine: PLAIN against the listener's JAAS users, SCRAM-SHA-256/512 against the
//! credentials in the metadata log. KIP-368 re-authentication runs the same steps again on an
//! authenticated connection and must name the same user.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::scram::{ScramCredential, ScramMechanism, ScramServer};

/// Why an authentication failed; the text goes to the client, as Kafka's does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// UNSUPPORTED_SASL_MECHANISM; the connection is closed after the answer.
    #[error("Unsupported SASL mechanism {0}")]
    UnsupportedMechanism(String),
    /// ILLEGAL_SASL_STATE: a request out of order.
    #[error("{0}")]
    IllegalState(String),
    /// SASL_AUTHENTICATION_FAILED; the connection is closed after the answer.
    #[error("Authentication failed: {0}")]
    Failed(String),
}

/// What a listener's SASL offers.
#[derive(Debug, Clone, Default)]
pub struct SaslSettings {
    /// Enabled mechanisms, in the configured order.
    pub mechanisms: Vec<String>,
    /// PLAIN users and passwords (from the listener's JAAS config).
    pub plain_users: BTreeMap<String, String>,
}

/// The next step of an exchange.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send these bytes back; more are expected.
    Challenge(Vec<u8>),
    /// Authenticated as `user`; send these bytes back (empty for PLAIN).
    Done { user: String, reply: Vec<u8> },
}

enum State {
    /// Waiting for SaslHandshake.
    Start,
    /// A mechanism was chosen; waiting for the first SaslAuthenticate.
    Chosen(String),
    /// SCRAM's first message was answered.
    Scram(Box<ScramServer>),
}

pub struct Authenticator {
    settings: Arc<SaslSettings>,
    state: State,
    /// The user of the session, once authenticated (re-authentication must keep it).
    user: Option<String>,
}

impl Authenticator {
    pub fn new(settings: Arc<SaslSettings>) -> Authenticator {
        Authenticator {
            settings,
            state: State::Start,
            user: None,
        }
    }

    pub fn mechanisms(&self) -> &[String] {
        &self.settings.mechanisms
    }

    /// The authenticated user, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Whether a SaslAuthenticate is expected next (the exchange is under way).
    pub fn in_exchange(&self) -> bool {
        !matches!(self.state, State::Start)
    }

    /// SaslHandshake: the client names its mechanism.
    pub fn handshake(&mut self, mechanism: &str) -> Result<(), SaslError> {
        if !matches!(self.state, State::Start) {
            return Err(SaslError::IllegalState(
                "Unexpected SaslHandshake during an exchange".into(),
            ));
        }
        if !self.settings.mechanisms.iter().any(|m| m == mechanism) {
            return Err(SaslError::UnsupportedMechanism(mechanism.to_string()));
        }
        self.state = State::Chosen(mechanism.to_string());
        Ok(())
    }

    /// SaslAuthenticate: one message of the exchange. `scram` finds a user's credential.
    pub fn authenticate(
        &mut self,
        message: &[u8],
        scram: impl FnOnce(&str, ScramMechanism) -> Option<ScramCredential>,
    ) -> Result<Step, SaslError> {
        let state = std::mem::replace(&mut self.state, State::Start);
        let step = match state {
            State::Start => {
                return Err(SaslError::IllegalState(
                    "SaslAuthenticate before SaslHandshake".into(),
                ))
            }
            State::Chosen(m) if m == "PLAIN" => Step::Done {
                user: self.plain(message)?,
                reply: Vec::new(),
            },
            State::Chosen(m) => {
                let mechanism = ScramMechanism::from_name(&m)
                    .ok_or_else(|| SaslError::UnsupportedMechanism(m.clone()))?;
                let mut server = ScramServer::new(mechanism, super::scram::nonce());
                let first = server
                    .client_first(message, |user| scram(user, mechanism))
                    .map_err(|e| SaslError::Failed(e.to_string()))?;
                self.state = State::Scram(Box::new(server));
                Step::Challenge(first)
            }
            State::Scram(mut server) => {
                let (reply, user) = server
                    .client_final(message)
                    .map_err(|e| SaslError::Failed(e.to_string()))?;
                Step::Done { user, reply }
            }
        };
        if let Step::Done { user, .. } = &step {
            if let Some(before) = &self.user {
                if before != user {
                    return Err(SaslError::Failed(format!(
                        "cannot change the principal from User:{before} to User:{user} when re-authenticating"
                    )));
                }
            }
            self.user = Some(user.clone());
        }
        Ok(step)
    }

    /// PLAIN (RFC 4616): `[authzid] NUL user NUL password`.
    fn plain(&self, message: &[u8]) -> Result<String, SaslError> {
        let text = std::str::from_utf8(message)
            .map_err(|_| SaslError::Failed("Invalid SASL/PLAIN request: not UTF-8".into()))?;
        let mut parts = text.split('\0');
        let (Some(authzid), Some(user), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SaslError::Failed(
                "Invalid SASL/PLAIN request: expected 3 tokens".into(),
            ));
        };
        if user.is_empty() {
            return Err(SaslError::Failed(
                "Authentication failed: username not specified".into(),
            ));
        }
        if !authzid.is_empty() && authzid != user {
            return Err(SaslError::Failed(
                "Client requested an authorization id that is different from username".into(),
            ));
        }
        let known = self.settings.plain_users.get(user);
        let matches = known.is_some_and(|p| constant_time_eq(p.as_bytes(), password.as_bytes()));
        if !matches {
            return Err(SaslError::Failed("Invalid username or password".into()));
        }
        Ok(user.to_string())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Arc<SaslSettings> {
        Arc::new(SaslSettings {
            mechanisms: vec!["PLAIN".into(), "SCRAM-SHA-512".into()],
            plain_users: [("alice".to_string(), "alice-secret".to_string())].into(),
        })
    }

    #[test]
    fn plain_accepts_known_users_only() {
        let mut a = Authenticator::new(settings());
        assert!(matches!(
            a.authenticate(b"\0alice\0alice-secret", |_, _| None),
            Err(SaslError::IllegalState(_))
        ));
        assert_eq!(
            a.handshake("GSSAPI"),
            Err(SaslError::UnsupportedMechanism("GSSAPI".into()))
        );
        a.handshake("PLAIN").unwrap();
        assert_eq!(
            a.authenticate(b"\0alice\0alice-secret", |_, _| None),
            Ok(Step::Done {
                user: "alice".into(),
                reply: vec![]
            })
        );
        assert_eq!(a.user(), Some("alice"));
        for bad in [
            &b"\0alice\0wrong"[..],
            b"\0bob\0alice-secret",
            b"alice\0alice-secret",
            b"bob\0alice\0alice-secret",
            b"\0\0",
            b"\xff\0alice\0alice-secret",
        ] {
            let mut a = Authenticator::new(settings());
            a.handshake("PLAIN").unwrap();
            assert!(
                matches!(a.authenticate(bad, |_, _| None), Err(SaslError::Failed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn scram_round_trip_and_reauthentication_keeps_the_user() {
        let cred = ScramCredential::from_password(ScramMechanism::Sha512, "pw", b"salt-salt", 4096);
        let lookup = |user: &str, m: ScramMechanism| {
            (m == ScramMechanism::Sha512 && (user == "bob" || user == "eve")).then(|| cred.clone())
        };
        let mut a = Authenticator::new(settings());
        for (user, ok) in [("bob", true), ("bob", true), ("eve", false)] {
            a.handshake("SCRAM-SHA-512").unwrap();
            let mut client = super::super::scram::ScramClient::new(
                ScramMechanism::Sha512,
                user,
                "pw",
                super::super::scram::nonce(),
            );
            let Step::Challenge(first) = a.authenticate(&client.client_first(), lookup).unwrap()
            else {
                panic!("SCRAM answers its first message with a challenge");
            };
            let fin = client.client_final(&first).unwrap();
            let r = a.authenticate(&fin, lookup);
            match r {
                Ok(Step::Done { user: u, reply }) => {
                    assert!(ok);
                    assert_eq!(u, user);
                    client.verify_server_final(&reply).unwrap();
                }
                Err(SaslError::Failed(why)) => {
                    assert!(!ok);
                    assert!(why.contains("principal"), "{why}");
                }
                other => panic!("{other:?}"),
            }
        }
        let mut a = Authenticator::new(settings());
        a.handshake("SCRAM-SHA-512").unwrap();
        let client = super::super::scram::ScramClient::new(
            ScramMechanism::Sha512,
            "nobody",
            "pw",
            "n".into(),
        );
        assert!(matches!(
            a.authenticate(&client.client_first(), lookup),
            Err(SaslError::Failed(_))
        ));
    }
}
