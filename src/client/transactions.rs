//! Transaction calls on [`Client`], as the transactions tool needs them: FindCoordinator for a
//! transactional id, ListTransactions, DescribeTransactions, DescribeProducers, and the
//! WriteTxnMarkers an operator's abort sends to a partition leader (Admin.abortTransaction).

use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::describe_producers_response::ProducerState;
use kafka_protocol::messages::describe_transactions_response::TransactionState;
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    ApiKey, DescribeProducersRequest, DescribeTransactionsRequest, FindCoordinatorRequest,
    ListTransactionsRequest, ProducerId, TopicName, TransactionalId, WriteTxnMarkersRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::error::{check_code, ClientError};
use super::groups::CoordinatorAddr;
use super::Client;

/// FindCoordinator key type of a transactional id.
const KEY_TYPE_TRANSACTION: i8 = 1;

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

/// A transaction as ListTransactions reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedTransaction {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: String,
}

/// The marker an operator writes to end a hanging transaction in one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbortSpec {
    pub topic: String,
    pub partition: i32,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub coordinator_epoch: i32,
}

impl Client {
    /// The coordinator of transactional id `id`.
    pub fn find_txn_coordinator(&mut self, id: &str) -> Result<CoordinatorAddr, ClientError> {
        let version = self.version_for(ApiKey::FindCoordinator)?.max(4);
        let req = FindCoordinatorRequest::default()
            .with_key_type(KEY_TYPE_TRANSACTION)
            .with_coordinator_keys(vec![s(id)]);
        let resp = self.send_version(&req, version)?;
        let c = resp
            .coordinators
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::Unexpected(format!("no coordinator for {id}")))?;
        check_code(c.error_code, c.error_message.as_deref(), || {
            format!("find coordinator of transactional id {id}")
        })?;
        Ok(CoordinatorAddr {
            node_id: c.node_id.0,
            host: c.host.to_string(),
            port: c.port,
        })
    }

    /// The transactions this broker coordinates, filtered by state names and producer ids
    /// (empty: all) and by running at least `min_duration_ms` (negative: any).
    pub fn list_transactions(
        &mut self,
        states: &[String],
        producer_ids: &[i64],
        min_duration_ms: i64,
    ) -> Result<Vec<ListedTransaction>, ClientError> {
        let req = ListTransactionsRequest::default()
            .with_state_filters(states.iter().map(|x| s(x)).collect())
            .with_producer_id_filters(producer_ids.iter().map(|p| ProducerId(*p)).collect())
            .with_duration_filter(min_duration_ms);
        let resp = self.send(&req)?;
        check_code(resp.error_code, None, || "list transactions".to_string())?;
        Ok(resp
            .transaction_states
            .into_iter()
            .map(|t| ListedTransaction {
                transactional_id: t.transactional_id.0.to_string(),
                producer_id: t.producer_id.0,
                state: t.transaction_state.to_string(),
            })
            .collect())
    }

    /// One transactional id as its coordinator (this broker) knows it.
    pub fn describe_transaction(&mut self, id: &str) -> Result<TransactionState, ClientError> {
        let req = DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(s(id))]);
        let resp = self.send(&req)?;
        let t = resp
            .transaction_states
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::Unexpected(format!("no state for {id}")))?;
        check_code(t.error_code, None, || format!("describe transaction {id}"))?;
        Ok(t)
    }

    /// The producers with state in a partition this broker leads.
    pub fn describe_producers(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> Result<Vec<ProducerState>, ClientError> {
        let req = DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
            .with_name(TopicName(s(topic)))
            .with_partition_indexes(vec![partition])]);
        let resp = self.send(&req)?;
        let p = resp
            .topics
            .into_iter()
            .flat_map(|t| t.partitions)
            .find(|p| p.partition_index == partition)
            .ok_or_else(|| ClientError::Unexpected(format!("no answer for {topic}-{partition}")))?;
        check_code(p.error_code, p.error_message.as_deref(), || {
            format!("describe producers of {topic}-{partition}")
        })?;
        Ok(p.active_producers)
    }

    /// Writes an abort marker for `spec` (this broker must lead the partition).
    pub fn write_abort_marker(&mut self, spec: &AbortSpec) -> Result<(), ClientError> {
        let marker = WritableTxnMarker::default()
            .with_producer_id(ProducerId(spec.producer_id))
            .with_producer_epoch(spec.producer_epoch)
            .with_transaction_result(false)
            .with_coordinator_epoch(spec.coordinator_epoch)
            .with_topics(vec![WritableTxnMarkerTopic::default()
                .with_name(TopicName(s(&spec.topic)))
                .with_partition_indexes(vec![spec.partition])]);
        let req = WriteTxnMarkersRequest::default().with_markers(vec![marker]);
        let resp = self.send_version(&req, 1)?;
        let code = resp
            .markers
            .iter()
            .flat_map(|m| m.topics.iter())
            .flat_map(|t| t.partitions.iter())
            .map(|p| p.error_code)
            .next()
            .ok_or_else(|| ClientError::Unexpected("empty WriteTxnMarkers answer".into()))?;
        check_code(code, None, || {
            format!("abort transaction in {}-{}", spec.topic, spec.partition)
        })
    }
}
