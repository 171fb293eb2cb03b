//! A small blocking Kafka protocol client used by the client tools.
