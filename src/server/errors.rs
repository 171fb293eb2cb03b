//! The one place where domain errors become Kafka error codes.

use kafka_protocol::error::ResponseError;

use crate::compression::CodecError;
use crate::metadata::MetadataError;
use crate::producer::ProducerError;
use crate::record::BatchError;
use crate::security::acl::AclError;
use crate::shard::ShardError;
use crate::storage::StorageError;

pub fn storage(e: &StorageError) -> ResponseError {
    match e {
        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        // A closed log is one being deleted or shut down: the client should refresh metadata.
        StorageError::Closed(_) | StorageError::LeadershipLost { .. } => {
            ResponseError::NotLeaderOrFollower
        }
        StorageError::Io { .. } | StorageError::Corrupt { .. } => ResponseError::KafkaStorageError,
        StorageError::Producer(e) => producer(e),
    }
}

/// Producer state's refusals, as Kafka's ProducerAppendInfo reports them.
pub fn producer(e: &ProducerError) -> ResponseError {
    match e {
        ProducerError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        ProducerError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        ProducerError::InvalidTxnState { .. } => ResponseError::InvalidTxnState,
        ProducerError::CoordinatorFenced { .. } => ResponseError::TransactionCoordinatorFenced,
    }
}

/// Kafka's produce validation: a wrong magic or batch count is INVALID_RECORD (the request
/// shape is wrong); bytes that do not check out are CORRUPT_MESSAGE.
pub fn batch(e: &BatchError) -> ResponseError {
    match e {
        BatchError::BadMagic { .. } | BatchError::BadCount { .. } => ResponseError::InvalidRecord,
        BatchError::TooShort { .. }
        | BatchError::LengthMismatch { .. }
        | BatchError::BadCrc { .. }
        | BatchError::BadCompression { .. } => ResponseError::CorruptMessage,
    }
}

/// Records that do not decompress are CORRUPT_MESSAGE; ones that expand past the broker's
/// bound are refused as INVALID_RECORD.
pub fn codec(e: &CodecError) -> ResponseError {
    match e {
        CodecError::Corrupt { .. } | CodecError::Unknown(_) => ResponseError::CorruptMessage,
        CodecError::TooLarge => ResponseError::InvalidRecord,
    }
}

/// A binding or filter CreateAcls/DescribeAcls/DeleteAcls refuses: Kafka answers every one
/// with INVALID_REQUEST (its AclApis and the controller's validateNewAcl/validateFilter throw
/// InvalidRequestException).
pub fn acl(_: &AclError) -> ResponseError {
    ResponseError::InvalidRequest
}

pub fn metadata(e: &MetadataError) -> ResponseError {
    match e {
        MetadataError::InvalidTopic(_) => ResponseError::InvalidTopicException,
        MetadataError::TopicExists(_) => ResponseError::TopicAlreadyExists,
        MetadataError::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
        MetadataError::UnknownTopicId(_) => ResponseError::UnknownTopicId,
        MetadataError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        MetadataError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
        MetadataError::InvalidConfig(_) => ResponseError::InvalidConfig,
        MetadataError::InvalidRequest(_) => ResponseError::InvalidRequest,
        MetadataError::NotController(_) => ResponseError::NotController,
        MetadataError::FencedLeaderEpoch(_) => ResponseError::FencedLeaderEpoch,
        MetadataError::InvalidUpdateVersion(_) => ResponseError::InvalidUpdateVersion,
        MetadataError::IneligibleReplica(_) => ResponseError::IneligibleReplica,
        MetadataError::Io(_) => ResponseError::KafkaStorageError,
    }
}

/// A shard that stopped mid-request: only happens during shutdown.
pub fn shard(_: &ShardError) -> ResponseError {
    ResponseError::NotLeaderOrFollower
}

/// Transaction coordinator refusals.
pub fn txn(e: crate::txn::state::TxnError) -> ResponseError {
    use crate::txn::state::TxnError;
    match e {
        TxnError::Concurrent => ResponseError::ConcurrentTransactions,
        TxnError::Fenced => ResponseError::ProducerFenced,
        TxnError::InvalidMapping => ResponseError::InvalidProducerIdMapping,
        TxnError::InvalidState => ResponseError::InvalidTxnState,
        TxnError::InvalidTimeout => ResponseError::InvalidTransactionTimeout,
        TxnError::InvalidRequest => ResponseError::InvalidRequest,
        TxnError::NotCoordinator => ResponseError::NotCoordinator,
        TxnError::LoadInProgress => ResponseError::CoordinatorLoadInProgress,
        TxnError::NotAvailable => ResponseError::CoordinatorNotAvailable,
        TxnError::Abortable => ResponseError::TransactionAbortable,
        TxnError::NotFound => ResponseError::TransactionalIdNotFound,
    }
}

/// A consumer group's refusal of a heartbeat (KIP-848), with the message Kafka sends.
pub fn consumer_group(e: &crate::group::consumer::Error) -> (ResponseError, Option<String>) {
    use crate::group::consumer::Error;
    let message = match e {
        Error::InvalidRequest(m)
        | Error::UnsupportedAssignor(m)
        | Error::InvalidRegularExpression(m) => Some(m.clone()),
        _ => None,
    };
    (crate::group::coordinator::consumer::kafka_error(e), message)
}
