//! The transaction coordinator's state machine for one transactional id: Kafka's
//! `TransactionMetadata` transitions, pure (no I/O, no clock: `now_ms` is handed in, and a
//! producer id the controller allocated is handed in when a transition needs one).
//!
//! A transition never changes the metadata it is computed from: it returns the next metadata,
//! which the coordinator writes to `__transaction_state` and installs once it is committed
//! (`pending` marks the id busy meanwhile, and every other request on it is told
//! CONCURRENT_TRANSACTIONS).

use std::collections::BTreeSet;

use crate::types::TopicPartition;

pub const NO_PRODUCER_ID: i64 = -1;
pub const NO_PRODUCER_EPOCH: i16 = -1;

/// Kafka's TransactionState, with its ids as written in TransactionLogValue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnState {
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    pub fn id(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    pub fn from_id(id: i8) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.id() == id)
    }

    /// The name DescribeTransactions and ListTransactions report.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub fn from_name(name: &str) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The states a transition into `self` may start from (Kafka's validPreviousStates).
    pub fn valid_previous(self) -> &'static [TxnState] {
        use TxnState::*;
        match self {
            Empty => &[Empty, CompleteCommit, CompleteAbort],
            Ongoing => &[Ongoing, Empty, CompleteCommit, CompleteAbort],
            PrepareCommit => &[Ongoing],
            PrepareAbort => &[Ongoing, PrepareEpochFence],
            CompleteCommit => &[PrepareCommit],
            CompleteAbort => &[PrepareAbort],
            Dead => &[Empty, CompleteAbort, CompleteCommit],
            PrepareEpochFence => &[Ongoing],
        }
    }

    /// An id in this state has no transaction in flight and may expire.
    pub fn expiration_allowed(self) -> bool {
        matches!(
            self,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        )
    }
}

/// Why a transition is refused. The server edge turns these into Kafka error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    #[error("another transition of this transactional id is in progress")]
    Concurrent,
    #[error("the producer epoch is stale: a newer instance fenced this one")]
    Fenced,
    #[error("the producer id does not belong to this transactional id")]
    InvalidMapping,
    #[error("the request is not valid in the transaction's state")]
    InvalidState,
    #[error("the transaction timeout exceeds transaction.max.timeout.ms")]
    InvalidTimeout,
    #[error("the request is malformed")]
    InvalidRequest,
    #[error("this node does not coordinate the transactional id")]
    NotCoordinator,
    #[error("the coordinator is loading its transactions")]
    LoadInProgress,
    #[error("the coordinator cannot write its log")]
    NotAvailable,
    #[error("the partition is not part of the transaction")]
    Abortable,
    #[error("no such transactional id")]
    NotFound,
}

/// Everything the coordinator knows of one transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    pub prev_producer_id: i64,
    /// Set when the epoch ran out at the end of a transaction (transactions v2): the id the
    /// producer continues with once the transaction completes.
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump, so a retried InitProducerId gets the same answer.
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<TopicPartition>,
    pub start_ms: i64,
    pub last_update_ms: i64,
    /// Kafka's transaction.version of the client: 2 bumps the epoch at every transaction end.
    pub client_version: i16,
    /// The state being written, while a transition is in flight (not persisted).
    pub pending: Option<TxnState>,
}

/// The highest epoch is kept for fencing: an epoch at or past it is exhausted.
pub fn epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// A producer's claim on an id: (producer id, epoch) as a request carries them.
pub type ProducerIdEpoch = (i64, i16);

/// What InitProducerId does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitStep {
    /// Write this and answer with its producer id and epoch.
    Write(TxnMetadata),
    /// The id has a transaction in flight: write this abort (the epoch bumped, fencing the
    /// old instance), answer CONCURRENT_TRANSACTIONS so the producer retries.
    FenceAndAbort(TxnMetadata),
}

/// What EndTxn does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndStep {
    /// Already done (a retry): answer at once with this producer id and epoch.
    Done(ProducerIdEpoch),
    /// Write this PrepareCommit/PrepareAbort; markers follow.
    Write(TxnMetadata),
}

impl TxnMetadata {
    /// A transactional id seen for the first time, with the producer id it gets.
    pub fn new(id: &str, producer_id: i64, timeout_ms: i32, now_ms: i64) -> TxnMetadata {
        TxnMetadata {
            transactional_id: id.to_string(),
            producer_id,
            prev_producer_id: NO_PRODUCER_ID,
            next_producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now_ms,
            client_version: 0,
            pending: None,
        }
    }

    fn transit(&self, to: TxnState, now_ms: i64) -> TxnMetadata {
        assert!(
            to.valid_previous().contains(&self.state),
            "transactional id {}: transition {:?} -> {to:?} is not valid",
            self.transactional_id,
            self.state
        );
        let mut next = self.clone();
        next.state = to;
        next.last_update_ms = now_ms;
        next.pending = None;
        next
    }

    /// Whether InitProducerId on this id needs a fresh producer id from the controller.
    pub fn init_needs_producer_id(
        meta: Option<&TxnMetadata>,
        expected: Option<ProducerIdEpoch>,
    ) -> bool {
        match meta {
            None => true,
            Some(m) => {
                m.state.expiration_allowed()
                    && epoch_exhausted(m.producer_epoch)
                    && expected.is_none_or(|(_, e)| e == m.producer_epoch)
            }
        }
    }

    /// InitProducerId (Kafka's prepareInitProducerIdTransit). `fresh_id` is a producer id from
    /// the controller when [`TxnMetadata::init_needs_producer_id`] said one is needed.
    pub fn init(
        &self,
        timeout_ms: i32,
        expected: Option<ProducerIdEpoch>,
        fresh_id: Option<i64>,
        now_ms: i64,
    ) -> Result<InitStep, TxnError> {
        if self.pending.is_some() {
            return Err(TxnError::Concurrent);
        }
        // A producer may present its old id and epoch (KIP-360): it must be this id's, or the
        // previous one with its epoch exhausted (a retried rotation), or the id is brand new.
        let valid = |(pid, epoch): ProducerIdEpoch| {
            self.producer_epoch == NO_PRODUCER_EPOCH
                || pid == self.producer_id
                || (pid == self.prev_producer_id && epoch_exhausted(epoch))
        };
        if !expected.is_none_or(valid) {
            return Err(TxnError::Fenced);
        }
        match self.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => Err(TxnError::Concurrent),
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let rotate = epoch_exhausted(self.producer_epoch)
                    && expected.is_none_or(|(_, e)| e == self.producer_epoch);
                match (rotate, fresh_id) {
                    (true, Some(id)) => Ok(InitStep::Write(self.rotate(
                        id,
                        timeout_ms,
                        expected.is_some(),
                        now_ms,
                    ))),
                    (true, None) => Err(TxnError::NotAvailable),
                    (false, _) => self.bump(timeout_ms, expected, now_ms).map(InitStep::Write),
                }
            }
            TxnState::Ongoing => Ok(InitStep::FenceAndAbort(self.fence_and_abort(now_ms))),
            TxnState::Dead | TxnState::PrepareEpochFence => panic!(
                "transactional id {} is in state {:?}, which is never kept",
                self.transactional_id, self.state
            ),
        }
    }

    /// Kafka's prepareIncrementProducerEpoch: the next epoch, or the same answer again for a
    /// retry of the bump that produced the current epoch.
    fn bump(
        &self,
        timeout_ms: i32,
        expected_epoch: Option<ProducerIdEpoch>,
        now_ms: i64,
    ) -> Result<TxnMetadata, TxnError> {
        let bumped = self.producer_epoch + 1;
        let (epoch, last) = match expected_epoch.map(|(_, e)| e) {
            None => (bumped, NO_PRODUCER_EPOCH),
            Some(e) if self.producer_epoch == NO_PRODUCER_EPOCH || e == self.producer_epoch => {
                (bumped, self.producer_epoch)
            }
            Some(e) if e == self.last_producer_epoch => {
                (self.producer_epoch, self.last_producer_epoch)
            }
            Some(_) => return Err(TxnError::Fenced),
        };
        let mut next = self.transit(TxnState::Empty, now_ms);
        next.producer_epoch = epoch;
        next.last_producer_epoch = last;
        next.timeout_ms = timeout_ms;
        next.partitions.clear();
        next.start_ms = -1;
        Ok(next)
    }

    /// Kafka's prepareProducerIdRotation: a new producer id at epoch 0.
    fn rotate(&self, id: i64, timeout_ms: i32, record_last: bool, now_ms: i64) -> TxnMetadata {
        let mut next = self.transit(TxnState::Empty, now_ms);
        next.prev_producer_id = self.producer_id;
        next.producer_id = id;
        next.producer_epoch = 0;
        next.last_producer_epoch = if record_last {
            self.producer_epoch
        } else {
            NO_PRODUCER_EPOCH
        };
        next.timeout_ms = timeout_ms;
        next.partitions.clear();
        next.start_ms = -1;
        next
    }

    /// Fences the producer (epoch + 1, Kafka's PrepareEpochFence, never written) and aborts its
    /// transaction at the bumped epoch: what a new InitProducerId and a timeout both do.
    pub fn fence_and_abort(&self, now_ms: i64) -> TxnMetadata {
        let fenced = self.transit(TxnState::PrepareEpochFence, now_ms);
        let mut next = fenced.transit(TxnState::PrepareAbort, now_ms);
        if self.producer_epoch < i16::MAX {
            next.producer_epoch = self.producer_epoch + 1;
        }
        next.last_producer_epoch = NO_PRODUCER_EPOCH;
        next
    }

    fn check_producer(&self, producer_id: i64, epoch: i16) -> Result<(), TxnError> {
        if self.producer_id != producer_id {
            Err(TxnError::InvalidMapping)
        } else if self.producer_epoch != epoch {
            Err(TxnError::Fenced)
        } else if self.pending.is_some()
            || matches!(self.state, TxnState::PrepareCommit | TxnState::PrepareAbort)
        {
            Err(TxnError::Concurrent)
        } else {
            Ok(())
        }
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn): None when every partition is in already.
    pub fn add_partitions(
        &self,
        producer_id: i64,
        epoch: i16,
        partitions: &[TopicPartition],
        now_ms: i64,
    ) -> Result<Option<TxnMetadata>, TxnError> {
        self.check_producer(producer_id, epoch)?;
        if self.state == TxnState::Ongoing && partitions.iter().all(|p| self.partitions.contains(p))
        {
            return Ok(None);
        }
        let mut next = self.transit(TxnState::Ongoing, now_ms);
        if self.state != TxnState::Ongoing {
            next.start_ms = now_ms;
        }
        next.partitions.extend(partitions.iter().cloned());
        Ok(Some(next))
    }

    /// AddPartitionsToTxn verify_only (KIP-890): per partition, whether it is in the
    /// transaction (TRANSACTION_ABORTABLE when not).
    pub fn verify(
        &self,
        producer_id: i64,
        epoch: i16,
        partitions: &[TopicPartition],
    ) -> Result<Vec<Option<TxnError>>, TxnError> {
        if self.producer_id != producer_id {
            return Err(TxnError::InvalidMapping);
        }
        if self.producer_epoch != epoch {
            return Err(TxnError::Fenced);
        }
        if matches!(self.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
            return Err(TxnError::Concurrent);
        }
        Ok(partitions
            .iter()
            .map(|p| (!self.partitions.contains(p)).then_some(TxnError::Abortable))
            .collect())
    }

    /// Whether EndTxn needs a fresh producer id (transactions v2 with the epoch exhausted).
    pub fn end_needs_producer_id(&self, client_version: i16) -> bool {
        client_version >= 2
            && self.state == TxnState::Ongoing
            && epoch_exhausted(self.producer_epoch)
    }

    /// EndTxn from the client (Kafka's endTransaction). `client_version` 2 (EndTxn v5+) bumps
    /// the epoch at the end of every transaction.
    pub fn end(
        &self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        client_version: i16,
        fresh_id: Option<i64>,
        now_ms: i64,
    ) -> Result<EndStep, TxnError> {
        let v2 = self.client_version >= 2;
        // A retry of an end whose answer was lost: the epoch was bumped by that end.
        let retry_after_bump = v2 && self.producer_epoch == epoch.wrapping_add(1);
        let retry_on_overflow = v2
            && self.prev_producer_id == producer_id
            && epoch == i16::MAX - 1
            && self.producer_epoch == 0;
        let valid_epoch = if v2 {
            match self.state {
                TxnState::PrepareCommit | TxnState::PrepareAbort => retry_after_bump,
                TxnState::CompleteCommit | TxnState::CompleteAbort => {
                    retry_after_bump || retry_on_overflow
                }
                _ => epoch == self.producer_epoch,
            }
        } else {
            epoch == self.producer_epoch
        };
        if self.producer_id != producer_id && !retry_on_overflow {
            return Err(TxnError::InvalidMapping);
        }
        if !valid_epoch {
            return Err(TxnError::Fenced);
        }
        if self.pending.is_some() {
            return Err(TxnError::Concurrent);
        }
        let done = || Ok(EndStep::Done((self.producer_id, self.producer_epoch)));
        match (self.state, commit) {
            (TxnState::Ongoing, _) => {
                let to = if commit {
                    TxnState::PrepareCommit
                } else {
                    TxnState::PrepareAbort
                };
                let mut next = self.transit(to, now_ms);
                next.client_version = client_version;
                if client_version >= 2 {
                    if epoch_exhausted(self.producer_epoch) {
                        next.next_producer_id = fresh_id.ok_or(TxnError::NotAvailable)?;
                    }
                    next.last_producer_epoch = self.producer_epoch;
                    next.producer_epoch = self.producer_epoch.saturating_add(1);
                }
                Ok(EndStep::Write(next))
            }
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => done(),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                Err(TxnError::Concurrent)
            }
            (TxnState::Dead | TxnState::PrepareEpochFence, _) => panic!(
                "transactional id {} is in state {:?}, which is never kept",
                self.transactional_id, self.state
            ),
            _ => Err(TxnError::InvalidState),
        }
    }

    /// The producer id and epoch EndTxn answers with once its PrepareX is written.
    pub fn answer_after_end(&self) -> ProducerIdEpoch {
        if self.next_producer_id != NO_PRODUCER_ID {
            (self.next_producer_id, 0)
        } else {
            (self.producer_id, self.producer_epoch)
        }
    }

    /// The markers are written: PrepareCommit -> CompleteCommit, PrepareAbort -> CompleteAbort
    /// (Kafka's prepareComplete), moving to the next producer id if the epoch ran out.
    pub fn complete(&self, now_ms: i64) -> TxnMetadata {
        let to = match self.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            other => panic!(
                "transactional id {}: completing a transaction in state {other:?}",
                self.transactional_id
            ),
        };
        let mut next = self.transit(to, now_ms);
        if self.next_producer_id != NO_PRODUCER_ID {
            next.prev_producer_id = self.producer_id;
            next.producer_id = self.next_producer_id;
            next.producer_epoch = 0;
            next.next_producer_id = NO_PRODUCER_ID;
        }
        next.partitions.clear();
        next
    }

    /// Whether the coordinator should abort this transaction: it has run past its timeout.
    pub fn timed_out(&self, now_ms: i64) -> bool {
        self.state == TxnState::Ongoing
            && self.pending.is_none()
            && self.start_ms >= 0
            && now_ms - self.start_ms > self.timeout_ms as i64
    }

    /// Whether this id has been idle past `transactional.id.expiration.ms` and may be
    /// forgotten (a tombstone is written).
    pub fn expired(&self, now_ms: i64, expiration_ms: i64) -> bool {
        self.state.expiration_allowed()
            && self.pending.is_none()
            && now_ms - self.last_update_ms >= expiration_ms
    }
}

#[cfg(test)]
mod tests;
