//! Kafka's security model: listeners with security protocols, TLS, SASL authentication and
//! the authorizer. Pure logic lives here; the connection edge (`server::connection`) drives it.

pub mod acl;
pub mod acl_wire;
pub mod principal;
pub mod sasl;
pub mod scram;
pub mod tls;
