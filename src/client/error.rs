//! The client's error type and Kafka error-code naming.
//!
//! Broker-reported failures keep the numeric Kafka code and its protocol name
//! (`UNKNOWN_TOPIC_OR_PARTITION`), so tools can print what `kafka-topics.sh` would.

use std::io;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ClientError {
    // The io::Error is shown in the message, not chained as a `source`, so it prints once.
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: io::Error },
    #[error("I/O error talking to {addr}: {reason}")]
    Io { addr: String, reason: io::Error },
    #[error("cannot encode {api:?} v{version}: {message}")]
    Encode {
        api: ApiKey,
        version: i16,
        message: String,
    },
    #[error("cannot decode {api:?} v{version} response: {message}")]
    Decode {
        api: ApiKey,
        version: i16,
        message: String,
    },
    #[error("response correlation id {got} does not match request {sent}")]
    CorrelationMismatch { sent: i32, got: i32 },
    #[error("response frame of {size} bytes is outside 0..={max}")]
    FrameSize { size: i64, max: usize },
    #[error("broker does not offer {api:?}")]
    ApiNotOffered { api: ApiKey },
    #[error(
        "no common version for {api:?}: client {client_min}..={client_max}, \
         broker {broker_min}..={broker_max}"
    )]
    NoCommonVersion {
        api: ApiKey,
        client_min: i16,
        client_max: i16,
        broker_min: i16,
        broker_max: i16,
    },
    #[error("unknown API key {key}")]
    UnknownApiKey { key: i16 },
    /// The broker answered with a non-zero Kafka error code.
    #[error("{context}: {name} (code {code}){}", message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    Kafka {
        context: String,
        code: i16,
        name: String,
        message: Option<String>,
    },
    /// The response was well-formed but does not answer what was asked.
    #[error("unexpected response: {0}")]
    Unexpected(String),
    #[error("record batch: {0}")]
    Records(String),
}

impl ClientError {
    /// The Kafka error code, when the broker reported one.
    pub fn kafka_code(&self) -> Option<i16> {
        match self {
            ClientError::Kafka { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Kafka's protocol name for an error code, e.g. 3 -> `UNKNOWN_TOPIC_OR_PARTITION`.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_string(),
        Some(ResponseError::Unknown(c)) => format!("UNKNOWN_ERROR_CODE_{c}"),
        // kafka-protocol names variants in CamelCase after Kafka's SCREAMING_SNAKE names.
        Some(e) => camel_to_screaming_snake(&e.to_string()),
    }
}

fn camel_to_screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// `Ok` for code 0, otherwise a [`ClientError::Kafka`] naming the code.
pub fn check_code(
    code: i16,
    message: Option<&str>,
    context: impl FnOnce() -> String,
) -> Result<(), ClientError> {
    if code == 0 {
        return Ok(());
    }
    Err(ClientError::Kafka {
        context: context(),
        code,
        name: error_name(code),
        message: message.filter(|m| !m.is_empty()).map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_match_kafka() {
        let cases = [
            (0, "NONE"),
            (-1, "UNKNOWN_SERVER_ERROR"),
            (3, "UNKNOWN_TOPIC_OR_PARTITION"),
            (6, "NOT_LEADER_OR_FOLLOWER"),
            (35, "UNSUPPORTED_VERSION"),
            (36, "TOPIC_ALREADY_EXISTS"),
            (37, "INVALID_PARTITIONS"),
            (9999, "UNKNOWN_ERROR_CODE_9999"),
        ];
        for (code, name) in cases {
            assert_eq!(error_name(code), name, "code {code}");
        }
    }

    #[test]
    fn check_code_carries_name_and_message() {
        assert!(check_code(0, None, || "x".into()).is_ok());
        let e = check_code(36, Some("exists"), || "create t".into()).unwrap_err();
        assert_eq!(e.kafka_code(), Some(36));
        assert_eq!(
            e.to_string(),
            "create t: TOPIC_ALREADY_EXISTS (code 36): exists"
        );
    }
}
