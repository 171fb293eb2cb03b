//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka speaks them: the stored
//! credential, the server side of one exchange as a state machine, and a client for tests and
//! tools. Pure: no I/O, no clock; the server nonce and the credential lookup are handed in, so
//! the connection edge decides where randomness and credentials come from.
//!
//! Kafka's dialect of RFC 5802: only the `n` and `y` GS2 flags (no channel binding), an
//! authorization id is accepted only when it names the authenticating user, iterations are at
//! least 4096, and the salted password is plain PBKDF2 over the UTF-8 password (no SASLprep).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use std::fmt;

/// Kafka's upper bound on SCRAM iterations (ScramMechanism / ScramControlManager): more would
/// let one credential make every login arbitrarily slow.
pub const MAX_ITERATIONS: u32 = 16384;

/// The two SCRAM mechanisms Kafka supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    /// The SASL mechanism name clients ask for in SaslHandshake.
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism a SASL mechanism name stands for; names are case-sensitive as in Kafka.
    pub fn from_name(name: &str) -> Option<ScramMechanism> {
        match name {
            "SCRAM-SHA-256" => Some(ScramMechanism::Sha256),
            "SCRAM-SHA-512" => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    /// The `mechanism` code of AlterUserScramCredentials / DescribeUserScramCredentials.
    pub fn code(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    /// The mechanism for a wire code; 0 (UNKNOWN) and anything else are `None`.
    pub fn from_code(code: i8) -> Option<ScramMechanism> {
        match code {
            1 => Some(ScramMechanism::Sha256),
            2 => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    /// RFC 7677's (and Kafka's) lower bound on iterations.
    pub fn min_iterations(self) -> u32 {
        4096
    }

    /// Kafka's upper bound on iterations, the same for both mechanisms.
    pub fn max_iterations(self) -> u32 {
        MAX_ITERATIONS
    }

    /// Checks an iteration count as Kafka's controller does for AlterUserScramCredentials.
    pub fn check_iterations(self, iterations: u32) -> Result<(), ScramError> {
        if iterations < self.min_iterations() {
            return Err(ScramError::TooFewIterations {
                iterations,
                min: self.min_iterations(),
            });
        }
        if iterations > self.max_iterations() {
            return Err(ScramError::TooManyIterations {
                iterations,
                max: self.max_iterations(),
            });
        }
        Ok(())
    }

    /// Length in bytes of the mechanism's hash, and so of every key and proof.
    pub fn digest_len(self) -> usize {
        match self {
            ScramMechanism::Sha256 => 32,
            ScramMechanism::Sha512 => 64,
        }
    }

    /// H(data) of RFC 5802.
    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
            ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// HMAC(key, data) of RFC 5802.
    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length (longer ones are hashed), so new_from_slice cannot fail.
        match self {
            ScramMechanism::Sha256 => {
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
                    .expect("HMAC accepts keys of any length");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
            ScramMechanism::Sha512 => {
                let mut mac = <Hmac<Sha512> as Mac>::new_from_slice(key)
                    .expect("HMAC accepts keys of any length");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    /// Hi(password, salt, i) of RFC 5802: PBKDF2 with the mechanism's HMAC, one block. Tools
    /// salt a password with it before AlterUserScramCredentials, as Kafka's AdminClient does.
    pub fn salted_password(self, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.digest_len()];
        match self {
            ScramMechanism::Sha256 => {
                pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out)
            }
            ScramMechanism::Sha512 => {
                pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), salt, iterations, &mut out)
            }
        }
        out
    }
}

impl fmt::Display for ScramMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a SCRAM exchange (or a credential) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("SCRAM message is not valid UTF-8")]
    NotUtf8,
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding is not supported")]
    ChannelBindingUnsupported,
    #[error("unsupported SCRAM extension '{0}'")]
    UnsupportedExtension(String),
    #[error("invalid username encoding")]
    InvalidUsername,
    #[error("Authentication failed: Invalid user credentials")]
    UnknownUser,
    #[error(
        "Authentication failed: Client requested an authorization id that is different from username"
    )]
    AuthorizationIdMismatch,
    #[error("Iterations {iterations} is less than the minimum {min}")]
    TooFewIterations { iterations: u32, min: u32 },
    #[error("Iterations {iterations} is more than the maximum {max}")]
    TooManyIterations { iterations: u32, max: u32 },
    #[error("server nonce is not printable ASCII without commas")]
    InvalidServerNonce,
    #[error("Invalid nonce in the final message")]
    NonceMismatch,
    #[error("channel binding does not match the GS2 header")]
    ChannelBindingMismatch,
    #[error("Authentication failed: Invalid client credentials")]
    InvalidProof,
    #[error("Invalid server signature in the server final message")]
    InvalidServerSignature,
    #[error("server reported SCRAM error '{0}'")]
    ServerError(String),
    #[error("SCRAM message received out of order")]
    OutOfOrder,
}

/// What the broker stores per user and mechanism: never the password, only what is needed to
/// verify a proof (StoredKey) and to prove itself back (ServerKey).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: u32,
}

impl ScramCredential {
    /// The credential for a clear-text password (tools, tests, static configuration).
    pub fn from_password(
        mechanism: ScramMechanism,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> ScramCredential {
        let salted = mechanism.salted_password(password, salt, iterations);
        ScramCredential::from_salted_password(mechanism, salt, &salted, iterations)
    }

    /// The credential for an already salted password, which is what AlterUserScramCredentials
    /// carries so that the password never reaches the broker.
    pub fn from_salted_password(
        mechanism: ScramMechanism,
        salt: &[u8],
        salted_password: &[u8],
        iterations: u32,
    ) -> ScramCredential {
        let client_key = mechanism.hmac(salted_password, b"Client Key");
        ScramCredential {
            salt: salt.to_vec(),
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted_password, b"Server Key"),
            iterations,
        }
    }
}

/// A fresh nonce: 64 hex digits from two random (getrandom-backed) v4 UUIDs, which is
/// printable, comma-free and carries 244 random bits.
pub fn nonce() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Compares two byte strings in time independent of where they differ, so a proof check does
/// not leak how many leading bytes of the stored key an attacker guessed.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

/// RFC 5802's printable: ASCII 0x21..=0x7E except ','.
fn is_printable_nonce(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Decodes an RFC 5802 saslname: `=2C` is ',', `=3D` is '=', any other '=' (and a raw ',' or
/// NUL) is invalid. The result is never empty.
fn decode_saslname(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        match c {
            '=' if rest.starts_with("=2C") => {
                out.push(',');
                rest = &rest[3..];
            }
            '=' if rest.starts_with("=3D") => {
                out.push('=');
                rest = &rest[3..];
            }
            '=' | ',' | '\0' => return Err(ScramError::InvalidUsername),
            _ => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    if out.is_empty() {
        return Err(ScramError::InvalidUsername);
    }
    Ok(out)
}

/// Encodes a user name as an RFC 5802 saslname.
pub fn encode_saslname(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

fn utf8(msg: &[u8]) -> Result<&str, ScramError> {
    std::str::from_utf8(msg).map_err(|_| ScramError::NotUtf8)
}

fn decode_base64(s: &str, what: &'static str) -> Result<Vec<u8>, ScramError> {
    BASE64.decode(s).map_err(|_| ScramError::Malformed(what))
}

/// Takes the value of attribute `name` (e.g. "r") from `field` ("r=...").
fn attribute<'a>(
    field: Option<&'a str>,
    name: char,
    missing: &'static str,
) -> Result<&'a str, ScramError> {
    let field = field.ok_or(ScramError::Malformed(missing))?;
    let mut chars = field.chars();
    if chars.next() == Some(name) && chars.next() == Some('=') {
        Ok(&field[2..])
    } else {
        Err(ScramError::Malformed(missing))
    }
}

/// Refuses whatever attributes follow the ones we understand: Kafka's only extension is
/// `tokenauth` (delegation tokens), which this broker does not support.
fn refuse_extensions<'a>(mut rest: impl Iterator<Item = &'a str>) -> Result<(), ScramError> {
    match rest.next() {
        None => Ok(()),
        Some(ext) => {
            let key = ext.split('=').next().unwrap_or_default();
            Err(ScramError::UnsupportedExtension(key.to_string()))
        }
    }
}

/// The parts of a client-first message the rest of the exchange needs.
struct ClientFirst {
    gs2_header: String,
    bare: String,
    user: String,
    nonce: String,
}

/// Parses `gs2-header client-first-message-bare`, refusing channel binding, mandatory (`m=`)
/// and other extensions, and an authorization id other than the user.
fn parse_client_first(msg: &[u8]) -> Result<ClientFirst, ScramError> {
    let text = utf8(msg)?;
    let (gs2_header, bare) = split_gs2_header(text)?;
    let mut fields = bare.split(',');
    let first = fields.next().unwrap_or_default();
    if first.starts_with("m=") {
        return Err(ScramError::UnsupportedExtension("m".to_string()));
    }
    let user = decode_saslname(attribute(Some(first), 'n', "expected n=username")?)?;
    let nonce = attribute(fields.next(), 'r', "expected r=nonce")?;
    if !is_printable_nonce(nonce) {
        return Err(ScramError::Malformed("client nonce is not printable"));
    }
    refuse_extensions(fields)?;
    let authzid = authzid_of(gs2_header)?;
    if authzid.as_ref().is_some_and(|a| *a != user) {
        return Err(ScramError::AuthorizationIdMismatch);
    }
    Ok(ClientFirst {
        gs2_header: gs2_header.to_string(),
        bare: bare.to_string(),
        user,
        nonce: nonce.to_string(),
    })
}

/// Splits `n,[a=authzid],rest` into the GS2 header (with its trailing comma) and the rest.
fn split_gs2_header(text: &str) -> Result<(&str, &str), ScramError> {
    match text.as_bytes().first() {
        Some(b'n') | Some(b'y') => {}
        Some(b'p') => return Err(ScramError::ChannelBindingUnsupported),
        _ => return Err(ScramError::Malformed("expected GS2 header 'n,' or 'y,'")),
    }
    if text.as_bytes().get(1) != Some(&b',') {
        return Err(ScramError::Malformed("expected GS2 header 'n,' or 'y,'"));
    }
    let authzid_end = text[2..]
        .find(',')
        .ok_or(ScramError::Malformed("GS2 header is not terminated"))?;
    let header_len = 2 + authzid_end + 1;
    Ok((&text[..header_len], &text[header_len..]))
}

/// The authorization id in a GS2 header (`n,a=name,`), if any.
fn authzid_of(gs2_header: &str) -> Result<Option<String>, ScramError> {
    let inner = &gs2_header[2..gs2_header.len() - 1];
    if inner.is_empty() {
        return Ok(None);
    }
    let encoded = attribute(Some(inner), 'a', "expected a=authzid in GS2 header")?;
    decode_saslname(encoded).map(Some)
}

/// The parts of a client-final message.
struct ClientFinal<'a> {
    channel_binding: Vec<u8>,
    nonce: &'a str,
    without_proof: &'a str,
    proof: Vec<u8>,
}

/// Parses `c=...,r=...,p=...`; extensions between nonce and proof are refused.
fn parse_client_final(text: &str) -> Result<ClientFinal<'_>, ScramError> {
    let proof_at = text
        .rfind(",p=")
        .ok_or(ScramError::Malformed("expected p=proof"))?;
    let without_proof = &text[..proof_at];
    let proof = decode_base64(&text[proof_at + 3..], "proof is not base64")?;
    let mut fields = without_proof.split(',');
    let channel = attribute(fields.next(), 'c', "expected c=channel-binding")?;
    let channel_binding = decode_base64(channel, "channel binding is not base64")?;
    let nonce = attribute(fields.next(), 'r', "expected r=nonce")?;
    refuse_extensions(fields)?;
    Ok(ClientFinal {
        channel_binding,
        nonce,
        without_proof,
        proof,
    })
}

/// Where the server is in its exchange.
enum ServerState {
    AwaitClientFirst,
    AwaitClientFinal {
        client_first: ClientFirst,
        server_first: String,
        credential: ScramCredential,
    },
    Complete,
    Failed,
}

/// The server side of one SCRAM exchange: client-first in, server-first out, client-final in,
/// server-final and the authenticated user out. Any error ends the exchange (like Kafka's
/// FAILED state); every later call is `OutOfOrder`.
pub struct ScramServer {
    mechanism: ScramMechanism,
    server_nonce: String,
    state: ServerState,
}

impl ScramServer {
    /// A server for one exchange; `server_nonce` should come from [`nonce`].
    pub fn new(mechanism: ScramMechanism, server_nonce: String) -> ScramServer {
        ScramServer {
            mechanism,
            server_nonce,
            state: ServerState::AwaitClientFirst,
        }
    }

    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    /// True once the client's proof was verified and the server-final message produced.
    pub fn is_complete(&self) -> bool {
        matches!(self.state, ServerState::Complete)
    }

    /// Handles client-first: looks the user up (an unknown user fails here, as in Kafka) and
    /// answers with server-first.
    pub fn client_first(
        &mut self,
        msg: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<Vec<u8>, ScramError> {
        if !matches!(self.state, ServerState::AwaitClientFirst) {
            self.state = ServerState::Failed;
            return Err(ScramError::OutOfOrder);
        }
        self.state = ServerState::Failed;
        let client_first = parse_client_first(msg)?;
        if !is_printable_nonce(&self.server_nonce) {
            return Err(ScramError::InvalidServerNonce);
        }
        let credential = lookup(&client_first.user).ok_or(ScramError::UnknownUser)?;
        if credential.iterations < self.mechanism.min_iterations() {
            return Err(ScramError::TooFewIterations {
                iterations: credential.iterations,
                min: self.mechanism.min_iterations(),
            });
        }
        let server_first = format!(
            "r={}{},s={},i={}",
            client_first.nonce,
            self.server_nonce,
            BASE64.encode(&credential.salt),
            credential.iterations
        );
        let reply = server_first.clone().into_bytes();
        self.state = ServerState::AwaitClientFinal {
            client_first,
            server_first,
            credential,
        };
        Ok(reply)
    }

    /// Handles client-final: checks channel binding and nonce, verifies the proof, and answers
    /// with server-final and the authenticated user.
    pub fn client_final(&mut self, msg: &[u8]) -> Result<(Vec<u8>, String), ScramError> {
        let state = std::mem::replace(&mut self.state, ServerState::Failed);
        let ServerState::AwaitClientFinal {
            client_first,
            server_first,
            credential,
        } = state
        else {
            return Err(ScramError::OutOfOrder);
        };
        let text = utf8(msg)?;
        let final_msg = parse_client_final(text)?;
        if final_msg.channel_binding != client_first.gs2_header.as_bytes() {
            return Err(ScramError::ChannelBindingMismatch);
        }
        // Kafka's rule (ScramSaslServer): the nonce must end with the one the server sent.
        // librdkafka before 2.1 sends its own nonce again in front of it, and Kafka serves it.
        let expected_nonce = format!("{}{}", client_first.nonce, self.server_nonce);
        if !final_msg.nonce.ends_with(&expected_nonce) {
            return Err(ScramError::NonceMismatch);
        }
        let auth_message = format!(
            "{},{},{}",
            client_first.bare, server_first, final_msg.without_proof
        );
        self.verify_proof(&credential, auth_message.as_bytes(), &final_msg.proof)?;
        let signature = self
            .mechanism
            .hmac(&credential.server_key, auth_message.as_bytes());
        self.state = ServerState::Complete;
        let reply = format!("v={}", BASE64.encode(signature)).into_bytes();
        Ok((reply, client_first.user))
    }

    /// ClientKey = proof XOR HMAC(StoredKey, AuthMessage); the proof is good if
    /// H(ClientKey) = StoredKey, compared in constant time.
    fn verify_proof(
        &self,
        credential: &ScramCredential,
        auth_message: &[u8],
        proof: &[u8],
    ) -> Result<(), ScramError> {
        if proof.len() != self.mechanism.digest_len() {
            return Err(ScramError::InvalidProof);
        }
        let client_signature = self.mechanism.hmac(&credential.stored_key, auth_message);
        let client_key = xor(proof, &client_signature);
        let computed = self.mechanism.hash(&client_key);
        if constant_time_eq(&computed, &credential.stored_key) {
            Ok(())
        } else {
            Err(ScramError::InvalidProof)
        }
    }
}

/// The GS2 header every client message of ours carries: no channel binding, no authzid.
const CLIENT_GS2_HEADER: &str = "n,,";

/// The client side of one exchange, for tests and command-line tools.
pub struct ScramClient {
    mechanism: ScramMechanism,
    password: String,
    client_nonce: String,
    client_first_bare: String,
    expected_server_signature: Option<Vec<u8>>,
}

impl ScramClient {
    pub fn new(
        mechanism: ScramMechanism,
        user: &str,
        password: &str,
        client_nonce: String,
    ) -> ScramClient {
        let client_first_bare = format!("n={},r={}", encode_saslname(user), client_nonce);
        ScramClient {
            mechanism,
            password: password.to_string(),
            client_nonce,
            client_first_bare,
            expected_server_signature: None,
        }
    }

    /// The client-first message: `n,,n=<user>,r=<nonce>`.
    pub fn client_first(&self) -> Vec<u8> {
        format!("{CLIENT_GS2_HEADER}{}", self.client_first_bare).into_bytes()
    }

    /// Answers server-first with client-final, carrying the proof. Refuses a nonce that does
    /// not extend ours and an iteration count outside Kafka's bounds (a hostile server could
    /// otherwise make us spin on billions of PBKDF2 rounds).
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ScramError> {
        if self.expected_server_signature.is_some() {
            return Err(ScramError::OutOfOrder);
        }
        let server_first = utf8(server_first)?;
        let (nonce, salt, iterations) = parse_server_first(server_first)?;
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err(ScramError::NonceMismatch);
        }
        self.mechanism.check_iterations(iterations)?;
        let salted = self
            .mechanism
            .salted_password(&self.password, &salt, iterations);
        let without_proof = format!("c={},r={}", BASE64.encode(CLIENT_GS2_HEADER), nonce);
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, server_first, without_proof
        );
        let client_key = self.mechanism.hmac(&salted, b"Client Key");
        let stored_key = self.mechanism.hash(&client_key);
        let client_signature = self.mechanism.hmac(&stored_key, auth_message.as_bytes());
        let proof = xor(&client_key, &client_signature);
        let server_key = self.mechanism.hmac(&salted, b"Server Key");
        self.expected_server_signature =
            Some(self.mechanism.hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes())
    }

    /// Checks server-final: the server proves it knew our ServerKey.
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let expected = self
            .expected_server_signature
            .as_ref()
            .ok_or(ScramError::OutOfOrder)?;
        let text = utf8(server_final)?;
        if let Some(error) = text.strip_prefix("e=") {
            return Err(ScramError::ServerError(error.to_string()));
        }
        let mut fields = text.split(',');
        let signature = attribute(fields.next(), 'v', "expected v=signature")?;
        refuse_extensions(fields)?;
        let signature = decode_base64(signature, "server signature is not base64")?;
        if constant_time_eq(&signature, expected) {
            Ok(())
        } else {
            Err(ScramError::InvalidServerSignature)
        }
    }
}

/// Parses `r=<nonce>,s=<salt>,i=<iterations>`.
fn parse_server_first(text: &str) -> Result<(&str, Vec<u8>, u32), ScramError> {
    let mut fields = text.split(',');
    let first = fields.next().unwrap_or_default();
    if first.starts_with("m=") {
        return Err(ScramError::UnsupportedExtension("m".to_string()));
    }
    let nonce = attribute(Some(first), 'r', "expected r=nonce")?;
    if !is_printable_nonce(nonce) {
        return Err(ScramError::Malformed("server nonce is not printable"));
    }
    let salt = decode_base64(
        attribute(fields.next(), 's', "expected s=salt")?,
        "salt is not base64",
    )?;
    let iterations = attribute(fields.next(), 'i', "expected i=iterations")?
        .parse::<u32>()
        .map_err(|_| ScramError::Malformed("iterations is not a number"))?;
    refuse_extensions(fields)?;
    Ok((nonce, salt, iterations))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const RFC_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const RFC_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";

    fn rfc_credential() -> ScramCredential {
        let salt = BASE64.decode(RFC_SALT).unwrap();
        ScramCredential::from_password(ScramMechanism::Sha256, "pencil", &salt, 4096)
    }

    fn lookup_user(
        name: &'static str,
        cred: ScramCredential,
    ) -> impl FnOnce(&str) -> Option<ScramCredential> {
        move |u: &str| (u == name).then_some(cred)
    }

    /// Runs a whole exchange; returns the authenticated user.
    fn exchange(
        mechanism: ScramMechanism,
        stored_user: &'static str,
        stored_password: &str,
        user: &str,
        password: &str,
    ) -> Result<String, ScramError> {
        let cred = ScramCredential::from_password(mechanism, stored_password, b"salty", 4096);
        let mut server = ScramServer::new(mechanism, nonce());
        let mut client = ScramClient::new(mechanism, user, password, nonce());
        let server_first =
            server.client_first(&client.client_first(), lookup_user(stored_user, cred))?;
        let client_final = client.client_final(&server_first)?;
        let (server_final, user) = server.client_final(&client_final)?;
        client.verify_server_final(&server_final)?;
        assert!(server.is_complete());
        Ok(user)
    }

    #[test]
    fn rfc7677_example_end_to_end() {
        let mut client = ScramClient::new(
            ScramMechanism::Sha256,
            "user",
            "pencil",
            RFC_CLIENT_NONCE.to_string(),
        );
        let client_first = client.client_first();
        assert_eq!(client_first, b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let mut server = ScramServer::new(ScramMechanism::Sha256, RFC_SERVER_NONCE.to_string());
        let server_first = server
            .client_first(&client_first, lookup_user("user", rfc_credential()))
            .unwrap();
        assert_eq!(
            server_first,
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let client_final = client.client_final(&server_first).unwrap();
        assert_eq!(
            String::from_utf8(client_final.clone()).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        let (server_final, user) = server.client_final(&client_final).unwrap();
        assert_eq!(
            String::from_utf8(server_final.clone()).unwrap(),
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        assert_eq!(user, "user");
        client.verify_server_final(&server_final).unwrap();
    }

    #[test]
    fn round_trip_both_mechanisms() {
        for mechanism in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            let user = exchange(mechanism, "alice", "secret", "alice", "secret").unwrap();
            assert_eq!(user, "alice");
        }
    }

    #[test]
    fn wrong_password_fails() {
        for mechanism in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            let err = exchange(mechanism, "alice", "secret", "alice", "guess").unwrap_err();
            assert_eq!(err, ScramError::InvalidProof);
        }
    }

    #[test]
    fn unknown_user_fails_at_client_first() {
        let err = exchange(ScramMechanism::Sha256, "alice", "secret", "bob", "secret").unwrap_err();
        assert_eq!(err, ScramError::UnknownUser);
    }

    #[test]
    fn mechanism_mismatch_fails() {
        let cred = ScramCredential::from_password(ScramMechanism::Sha512, "pw", b"s", 4096);
        let mut server = ScramServer::new(ScramMechanism::Sha256, nonce());
        let mut client = ScramClient::new(ScramMechanism::Sha256, "u", "pw", nonce());
        let sf = server
            .client_first(&client.client_first(), lookup_user("u", cred))
            .unwrap();
        let cf = client.client_final(&sf).unwrap();
        assert_eq!(
            server.client_final(&cf).unwrap_err(),
            ScramError::InvalidProof
        );
    }

    #[test]
    fn escaped_usernames() {
        assert_eq!(encode_saslname("a,b=c"), "a=2Cb=3Dc");
        assert_eq!(decode_saslname("a=2Cb=3Dc").unwrap(), "a,b=c");
        assert_eq!(decode_saslname("a=2cb"), Err(ScramError::InvalidUsername));
        assert_eq!(
            decode_saslname("a=").unwrap_err(),
            ScramError::InvalidUsername
        );
        assert_eq!(
            decode_saslname("a=4").unwrap_err(),
            ScramError::InvalidUsername
        );
        assert_eq!(
            decode_saslname("").unwrap_err(),
            ScramError::InvalidUsername
        );
        assert_eq!(decode_saslname("é=3D").unwrap(), "é=");
        for name in ["a,b", "x=y", "=,=", "plain"] {
            let cred = ScramCredential::from_password(ScramMechanism::Sha256, "pw", b"s", 4096);
            let mut server = ScramServer::new(ScramMechanism::Sha256, nonce());
            let mut client = ScramClient::new(ScramMechanism::Sha256, name, "pw", nonce());
            let mut seen = None;
            let sf = server
                .client_first(&client.client_first(), |u| {
                    seen = Some(u.to_string());
                    Some(cred)
                })
                .unwrap();
            assert_eq!(seen.as_deref(), Some(name));
            let cf = client.client_final(&sf).unwrap();
            let (_, user) = server.client_final(&cf).unwrap();
            assert_eq!(user, name);
        }
    }

    #[test]
    fn from_salted_password_equals_from_password() {
        for mechanism in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            let salted = mechanism.salted_password("pencil", b"salt", 4096);
            assert_eq!(salted.len(), mechanism.digest_len());
            assert_eq!(
                ScramCredential::from_salted_password(mechanism, b"salt", &salted, 4096),
                ScramCredential::from_password(mechanism, "pencil", b"salt", 4096)
            );
        }
    }

    #[test]
    fn credential_serde_round_trip() {
        let cred = rfc_credential();
        let json = serde_json::to_string(&cred).unwrap();
        assert_eq!(
            serde_json::from_str::<ScramCredential>(&json).unwrap(),
            cred
        );
    }

    #[test]
    fn mechanism_names_and_codes() {
        for m in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            assert_eq!(ScramMechanism::from_name(m.name()), Some(m));
            assert_eq!(ScramMechanism::from_code(m.code()), Some(m));
            assert_eq!(m.to_string(), m.name());
            assert_eq!(m.min_iterations(), 4096);
            assert_eq!(m.max_iterations(), MAX_ITERATIONS);
        }
        assert_eq!(ScramMechanism::Sha256.code(), 1);
        assert_eq!(ScramMechanism::Sha512.code(), 2);
        assert_eq!(ScramMechanism::from_code(0), None);
        assert_eq!(ScramMechanism::from_code(3), None);
        assert_eq!(ScramMechanism::from_name("scram-sha-256"), None);
        assert_eq!(ScramMechanism::from_name("PLAIN"), None);
    }

    #[test]
    fn iteration_bounds() {
        let m = ScramMechanism::Sha256;
        assert!(m.check_iterations(4096).is_ok());
        assert!(m.check_iterations(16384).is_ok());
        assert!(matches!(
            m.check_iterations(4095),
            Err(ScramError::TooFewIterations { .. })
        ));
        assert!(matches!(
            m.check_iterations(16385),
            Err(ScramError::TooManyIterations { .. })
        ));
    }

    #[test]
    fn server_refuses_credential_below_min_iterations() {
        let cred = ScramCredential::from_password(ScramMechanism::Sha256, "pw", b"s", 100);
        let mut server = ScramServer::new(ScramMechanism::Sha256, nonce());
        let err = server
            .client_first(b"n,,n=u,r=abc", lookup_user("u", cred))
            .unwrap_err();
        assert!(matches!(err, ScramError::TooFewIterations { .. }));
    }

    #[test]
    fn client_refuses_bad_server_first() {
        let mut client = ScramClient::new(ScramMechanism::Sha256, "u", "pw", "abc".to_string());
        let cases: [&[u8]; 9] = [
            b"r=xyzdef,s=c2FsdA==,i=4096",      // nonce does not extend ours
            b"r=abc,s=c2FsdA==,i=4096",         // server added nothing
            b"r=abcdef,s=c2FsdA==,i=4095",      // too few iterations
            b"r=abcdef,s=c2FsdA==,i=999999999", // too many
            b"r=abcdef,s=!!,i=4096",
            b"r=abcdef,s=c2FsdA==,i=-1",
            b"r=abcdef,s=c2FsdA==",
            b"m=x,r=abcdef,s=c2FsdA==,i=4096",
            b"\xff\xfe",
        ];
        for case in cases {
            assert!(client.client_final(case).is_err(), "{case:?}");
        }
        assert_eq!(
            client.verify_server_final(b"v=AAAA"),
            Err(ScramError::OutOfOrder)
        );
    }

    #[test]
    fn client_detects_bad_server_signature_and_server_error() {
        let mut client = ScramClient::new(
            ScramMechanism::Sha256,
            "user",
            "pencil",
            RFC_CLIENT_NONCE.into(),
        );
        let mut server = ScramServer::new(ScramMechanism::Sha256, RFC_SERVER_NONCE.into());
        let sf = server
            .client_first(
                &client.client_first(),
                lookup_user("user", rfc_credential()),
            )
            .unwrap();
        client.client_final(&sf).unwrap();
        assert_eq!(
            client.verify_server_final(b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            Err(ScramError::InvalidServerSignature)
        );
        assert_eq!(
            client.verify_server_final(b"e=invalid-proof"),
            Err(ScramError::ServerError("invalid-proof".into()))
        );
        assert!(client.verify_server_final(b"garbage").is_err());
        assert_eq!(client.client_final(&sf), Err(ScramError::OutOfOrder));
    }

    /// Drives a server through client-first with the RFC user, then returns it.
    fn server_after_first() -> (ScramServer, ScramClient, Vec<u8>) {
        let mut client = ScramClient::new(
            ScramMechanism::Sha256,
            "user",
            "pencil",
            RFC_CLIENT_NONCE.into(),
        );
        let mut server = ScramServer::new(ScramMechanism::Sha256, RFC_SERVER_NONCE.into());
        let sf = server
            .client_first(
                &client.client_first(),
                lookup_user("user", rfc_credential()),
            )
            .unwrap();
        let cf = client.client_final(&sf).unwrap();
        (server, client, cf)
    }

    #[test]
    fn tampered_nonce_fails() {
        let (mut server, _, cf) = server_after_first();
        let tampered = String::from_utf8(cf).unwrap().replace("k0,p=", "k1,p=");
        assert_eq!(
            server.client_final(tampered.as_bytes()).unwrap_err(),
            ScramError::NonceMismatch
        );
        let (mut server, _, cf) = server_after_first();
        let shortened = String::from_utf8(cf)
            .unwrap()
            .replace("rOprNGfwEbeRWgbNEkqO%", "%");
        assert_eq!(
            server.client_final(shortened.as_bytes()).unwrap_err(),
            ScramError::NonceMismatch
        );
    }

    #[test]
    fn bad_channel_binding_fails() {
        let (mut server, _, cf) = server_after_first();
        // "eSws" is base64 of "y,," while the client sent "n,,".
        let tampered = String::from_utf8(cf).unwrap().replace("c=biws", "c=eSws");
        assert_eq!(
            server.client_final(tampered.as_bytes()).unwrap_err(),
            ScramError::ChannelBindingMismatch
        );
    }

    #[test]
    fn tampered_proof_fails() {
        let (mut server, _, cf) = server_after_first();
        let tampered = String::from_utf8(cf).unwrap().replace("p=dHzb", "p=dHzc");
        assert_eq!(
            server.client_final(tampered.as_bytes()).unwrap_err(),
            ScramError::InvalidProof
        );
        let (mut server, _, _) = server_after_first();
        let short = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AAAA";
        assert_eq!(
            server.client_final(short.as_bytes()).unwrap_err(),
            ScramError::InvalidProof
        );
    }

    #[test]
    fn y_flag_and_matching_authzid_accepted() {
        let mut server = ScramServer::new(ScramMechanism::Sha256, RFC_SERVER_NONCE.into());
        let sf = server
            .client_first(
                b"y,a=user,n=user,r=abc",
                lookup_user("user", rfc_credential()),
            )
            .unwrap();
        assert!(sf.starts_with(b"r=abc%hvY"));
        // The final message must bind the same header: "y,a=user,".
        let bad = format!("c=biws,r=abc{RFC_SERVER_NONCE},p=AAAA");
        assert_eq!(
            server.client_final(bad.as_bytes()).unwrap_err(),
            ScramError::ChannelBindingMismatch
        );
    }

    #[test]
    fn client_first_refusals() {
        let cases: [(&[u8], ScramError); 10] = [
            (
                b"p=tls-unique,,n=user,r=abc",
                ScramError::ChannelBindingUnsupported,
            ),
            (
                b"n,a=other,n=user,r=abc",
                ScramError::AuthorizationIdMismatch,
            ),
            (
                b"n,,n=user,r=abc,tokenauth=true",
                ScramError::UnsupportedExtension("tokenauth".into()),
            ),
            (
                b"n,,n=user,r=abc,x=1",
                ScramError::UnsupportedExtension("x".into()),
            ),
            (
                b"n,,m=ext,n=user,r=abc",
                ScramError::UnsupportedExtension("m".into()),
            ),
            (b"n,,n=us=er,r=abc", ScramError::InvalidUsername),
            (b"n,,n=,r=abc", ScramError::InvalidUsername),
            (b"\xff\x00", ScramError::NotUtf8),
            (
                b"n,,n=user,r=a b",
                ScramError::Malformed("client nonce is not printable"),
            ),
            (
                b"n,,n=user,r=",
                ScramError::Malformed("client nonce is not printable"),
            ),
        ];
        for (msg, expected) in cases {
            let mut server = ScramServer::new(ScramMechanism::Sha256, nonce());
            let got = server.client_first(msg, lookup_user("user", rfc_credential()));
            assert_eq!(
                got.unwrap_err(),
                expected,
                "{:?}",
                String::from_utf8_lossy(msg)
            );
        }
    }

    #[test]
    fn garbage_and_truncated_messages_never_panic() {
        let full = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO".to_vec();
        for len in 0..full.len() {
            let mut server = ScramServer::new(ScramMechanism::Sha256, nonce());
            let _ = server.client_first(&full[..len], lookup_user("user", rfc_credential()));
        }
        let (_, _, cf) = server_after_first();
        for len in 0..cf.len() {
            let (mut server, _, _) = server_after_first();
            assert!(server.client_final(&cf[..len]).is_err());
        }
        let garbage: [&[u8]; 12] = [
            b"",
            b",",
            b",,,",
            b"n",
            b"n,",
            b"n,,",
            b"y,,n",
            b"n,a,n=u,r=x",
            b"=,=,=",
            b"\xc3",
            b"n,,n=\xc3\xa9,r=\x80",
            b"c=,r=,p=",
        ];
        for g in garbage {
            let mut server = ScramServer::new(ScramMechanism::Sha256, nonce());
            assert!(server
                .client_first(g, lookup_user("user", rfc_credential()))
                .is_err());
            let (mut server, _, _) = server_after_first();
            assert!(server.client_final(g).is_err());
            let mut client = ScramClient::new(ScramMechanism::Sha256, "u", "p", "n".into());
            assert!(client.client_final(g).is_err());
        }
    }

    #[test]
    fn out_of_order_calls_fail() {
        let mut server = ScramServer::new(ScramMechanism::Sha256, nonce());
        assert_eq!(
            server.client_final(b"c=biws,r=x,p=AAAA").unwrap_err(),
            ScramError::OutOfOrder
        );
        // The failed call ends the exchange.
        let first = server.client_first(b"n,,n=user,r=abc", lookup_user("user", rfc_credential()));
        assert_eq!(first.unwrap_err(), ScramError::OutOfOrder);

        let (mut server, _, cf) = server_after_first();
        let again = server.client_first(b"n,,n=user,r=abc", lookup_user("user", rfc_credential()));
        assert_eq!(again.unwrap_err(), ScramError::OutOfOrder);
        assert_eq!(
            server.client_final(&cf).unwrap_err(),
            ScramError::OutOfOrder
        );

        let (mut server, _, cf) = server_after_first();
        server.client_final(&cf).unwrap();
        assert!(server.is_complete());
        assert_eq!(
            server.client_final(&cf).unwrap_err(),
            ScramError::OutOfOrder
        );
        assert!(!server.is_complete());
    }

    #[test]
    fn failed_proof_ends_exchange() {
        let (mut server, _, cf) = server_after_first();
        let tampered = String::from_utf8(cf.clone())
            .unwrap()
            .replace("p=dHzb", "p=dHzc");
        assert!(server.client_final(tampered.as_bytes()).is_err());
        assert_eq!(
            server.client_final(&cf).unwrap_err(),
            ScramError::OutOfOrder
        );
    }

    #[test]
    fn server_rejects_unusable_server_nonce() {
        let mut server = ScramServer::new(ScramMechanism::Sha256, "a,b".into());
        let err = server.client_first(b"n,,n=user,r=abc", lookup_user("user", rfc_credential()));
        assert_eq!(err.unwrap_err(), ScramError::InvalidServerNonce);
    }

    #[test]
    fn nonces_are_printable_and_fresh() {
        let a = nonce();
        let b = nonce();
        assert_eq!(a.len(), 64);
        assert!(is_printable_nonce(&a));
        assert_ne!(a, b);
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
