//! One share-partition (KIP-932): the records of one topic partition as one share group
//! consumes them. A pure state machine; the time is handed in.
//!
//! The partition keeps a window of in-flight offsets from the share-partition start offset
//! (SPSO, `start`) up to the end offset (SPEO, `end`): each offset there is available (not
//! delivered now), acquired by a member until its lock expires, acknowledged, or archived.
//! Offsets from `end` on were never delivered. Delivering a record acquires it for a member and
//! counts a delivery; the member accepts, releases or rejects it. A record released (or whose
//! lock expired) after `delivery_limit` deliveries is archived instead of delivered again. The
//! start moves past every offset acknowledged or archived at the front of the window.

use std::collections::BTreeMap;

/// Kafka's acknowledge types (ShareFetch and ShareAcknowledge `AcknowledgeTypes`).
pub const ACK_GAP: i8 = 0;
pub const ACK_ACCEPT: i8 = 1;
pub const ACK_RELEASE: i8 = 2;
pub const ACK_REJECT: i8 = 3;

/// The group's settings for its share-partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// `group.share.record.lock.duration.ms`.
    pub lock_ms: i64,
    /// `group.share.delivery.count.limit`.
    pub delivery_limit: i16,
    /// `group.share.partition.max.record.locks`: the most offsets in flight.
    pub max_in_flight: i64,
}

/// Where an offset of the window stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Available,
    Acquired { member: String, deadline: i64 },
    Acknowledged,
    Archived,
}

impl State {
    /// Kafka's persisted delivery state codes (an acquired record is stored as available:
    /// its lock does not outlive the broker).
    pub fn code(&self) -> u8 {
        match self {
            State::Available | State::Acquired { .. } => 0,
            State::Acknowledged => 2,
            State::Archived => 4,
        }
    }

    fn done(&self) -> bool {
        matches!(self, State::Acknowledged | State::Archived)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub state: State,
    pub deliveries: i16,
}

/// Why an acknowledgement was refused (Kafka's codes at the edge).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckError {
    /// INVALID_RECORD_STATE: an offset not acquired by this member.
    InvalidRecordState(String),
    /// INVALID_REQUEST: a malformed batch.
    InvalidRequest(String),
}

/// One acknowledgement batch as the request carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub first: i64,
    pub last: i64,
    /// One type for the whole range, or one per offset.
    pub types: Vec<i8>,
}

/// A range of offsets acquired in one go with the same delivery count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acquired {
    pub first: i64,
    pub last: i64,
    pub deliveries: i16,
}

/// The durable part of a share-partition: the window as runs of equal (state code,
/// deliveries), acquired records as available.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Persisted {
    pub state_epoch: i32,
    pub start: i64,
    /// (first, last, state code, deliveries), covering [start, end) in order.
    pub runs: Vec<(i64, i64, u8, i16)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharePartition {
    pub state_epoch: i32,
    start: i64,
    end: i64,
    window: BTreeMap<i64, Entry>,
}

impl SharePartition {
    /// A share-partition nobody consumed yet, starting at `start`.
    pub fn new(start: i64) -> Self {
        SharePartition {
            state_epoch: 0,
            start,
            end: start,
            window: BTreeMap::new(),
        }
    }

    pub fn start(&self) -> i64 {
        self.start
    }

    pub fn end(&self) -> i64 {
        self.end
    }

    pub fn entry(&self, offset: i64) -> Option<&Entry> {
        self.window.get(&offset)
    }

    /// The first offset a fetch should read from: the first available one in the window, else
    /// the end (when the window has room).
    pub fn next_to_read(&self, s: &Settings) -> Option<i64> {
        if let Some((o, _)) = self
            .window
            .iter()
            .find(|(_, e)| e.state == State::Available)
        {
            return Some(*o);
        }
        (self.end - self.start < s.max_in_flight).then_some(self.end)
    }

    /// The soonest lock deadline, if any record is acquired.
    pub fn next_deadline(&self) -> Option<i64> {
        self.window
            .values()
            .filter_map(|e| match &e.state {
                State::Acquired { deadline, .. } => Some(*deadline),
                _ => None,
            })
            .min()
    }

    /// Whether any record is acquired by anyone.
    pub fn has_acquired(&self) -> bool {
        self.next_deadline().is_some()
    }

    /// Records behind the log start are gone: the window starts there at the earliest.
    pub fn follow_log_start(&mut self, log_start: i64) {
        if log_start <= self.start {
            return;
        }
        self.window = self.window.split_off(&log_start);
        self.start = log_start;
        self.end = self.end.max(log_start);
    }

    /// A released record (or one whose lock ended): delivered again, unless it was delivered
    /// as often as the limit allows.
    fn release(e: &mut Entry, s: &Settings) {
        e.state = if e.deliveries >= s.delivery_limit {
            State::Archived
        } else {
            State::Available
        };
    }

    /// Ends the locks that expired by `now`. Returns whether anything changed.
    pub fn expire(&mut self, now: i64, s: &Settings) -> bool {
        let mut changed = false;
        for e in self.window.values_mut() {
            if matches!(e.state, State::Acquired { deadline, .. } if deadline <= now) {
                Self::release(e, s);
                changed = true;
            }
        }
        if changed {
            self.advance();
        }
        changed
    }

    /// Releases every record `member` holds (its share session closed).
    pub fn release_member(&mut self, member: &str, s: &Settings) -> bool {
        let mut changed = false;
        for e in self.window.values_mut() {
            if matches!(&e.state, State::Acquired { member: m, .. } if m == member) {
                Self::release(e, s);
                changed = true;
            }
        }
        if changed {
            self.advance();
        }
        changed
    }

    /// Acquires for `member` what it may take of the batches read from the log, each given as
    /// (base offset, last offset, is a control batch), up to `max_records` records. Control
    /// batches are archived, never delivered. Offsets between batches (compacted away) are
    /// archived. Returns the ranges acquired.
    pub fn acquire(
        &mut self,
        member: &str,
        batches: &[(i64, i64, bool)],
        max_records: usize,
        now: i64,
        s: &Settings,
    ) -> Vec<Acquired> {
        let mut out: Vec<Acquired> = Vec::new();
        let mut taken = 0usize;
        let deadline = now + s.lock_ms;
        'batches: for &(base, last, control) in batches {
            for offset in base.max(self.start)..=last {
                if taken >= max_records {
                    break 'batches;
                }
                if offset >= self.end {
                    if self.end - self.start >= s.max_in_flight {
                        break 'batches;
                    }
                    // Offsets the log skipped before this batch.
                    while self.end < offset {
                        self.window.insert(
                            self.end,
                            Entry {
                                state: State::Archived,
                                deliveries: 0,
                            },
                        );
                        self.end += 1;
                    }
                    self.window.insert(
                        offset,
                        Entry {
                            state: State::Available,
                            deliveries: 0,
                        },
                    );
                    self.end = offset + 1;
                }
                let Some(e) = self.window.get_mut(&offset) else {
                    continue;
                };
                if e.state != State::Available {
                    continue;
                }
                if control {
                    e.state = State::Archived;
                    continue;
                }
                e.deliveries = e.deliveries.saturating_add(1);
                e.state = State::Acquired {
                    member: member.to_string(),
                    deadline,
                };
                taken += 1;
                match out.last_mut() {
                    Some(r) if r.last + 1 == offset && r.deliveries == e.deliveries => {
                        r.last = offset
                    }
                    _ => out.push(Acquired {
                        first: offset,
                        last: offset,
                        deliveries: e.deliveries,
                    }),
                }
            }
        }
        self.advance();
        out
    }

    /// Applies a member's acknowledgements, each batch whole or not at all. Returns the first
    /// refusal; batches before it stay applied (as Kafka does, per batch).
    pub fn acknowledge(
        &mut self,
        member: &str,
        acks: &[Ack],
        s: &Settings,
    ) -> Result<(), AckError> {
        let mut result = Ok(());
        for ack in acks {
            if let Err(e) = self.acknowledge_one(member, ack, s) {
                result = Err(e);
                break;
            }
        }
        self.advance();
        result
    }

    fn acknowledge_one(&mut self, member: &str, ack: &Ack, s: &Settings) -> Result<(), AckError> {
        if ack.last < ack.first {
            return Err(AckError::InvalidRequest(format!(
                "last offset {} is before first offset {}",
                ack.last, ack.first
            )));
        }
        let len = ack.last - ack.first + 1;
        if ack.types.len() != 1 && ack.types.len() as i64 != len {
            return Err(AckError::InvalidRequest(
                "the acknowledge types do not match the offsets".into(),
            ));
        }
        if let Some(t) = ack
            .types
            .iter()
            .find(|t| !(ACK_GAP..=ACK_REJECT).contains(*t))
        {
            return Err(AckError::InvalidRequest(format!(
                "unknown acknowledge type {t}"
            )));
        }
        for offset in ack.first..=ack.last {
            match self.window.get(&offset).map(|e| &e.state) {
                Some(State::Acquired { member: m, .. }) if m == member => {}
                _ => {
                    return Err(AckError::InvalidRecordState(format!(
                        "offset {offset} is not acquired by member {member}"
                    )))
                }
            }
        }
        for (i, offset) in (ack.first..=ack.last).enumerate() {
            let t = if ack.types.len() == 1 {
                ack.types[0]
            } else {
                ack.types[i]
            };
            let e = self.window.get_mut(&offset).expect("checked above");
            match t {
                ACK_ACCEPT => e.state = State::Acknowledged,
                ACK_RELEASE => Self::release(e, s),
                _ => e.state = State::Archived,
            }
        }
        Ok(())
    }

    /// Moves the start past the acknowledged and archived offsets at the front.
    fn advance(&mut self) {
        while let Some(e) = self.window.first_entry() {
            if !e.get().state.done() {
                break;
            }
            e.remove();
            self.start += 1;
        }
        if self.window.is_empty() {
            self.start = self.end.max(self.start);
            self.end = self.start;
        }
    }

    /// Starts over at `offset`, forgetting the window (AlterShareGroupOffsets).
    pub fn reset(&mut self, offset: i64) {
        self.window.clear();
        self.start = offset;
        self.end = offset;
        self.state_epoch += 1;
    }

    /// What is stored.
    pub fn persisted(&self) -> Persisted {
        let mut runs: Vec<(i64, i64, u8, i16)> = Vec::new();
        for (&o, e) in &self.window {
            let code = e.state.code();
            match runs.last_mut() {
                Some(r) if r.1 + 1 == o && r.2 == code && r.3 == e.deliveries => r.1 = o,
                _ => runs.push((o, o, code, e.deliveries)),
            }
        }
        Persisted {
            state_epoch: self.state_epoch,
            start: self.start,
            runs,
        }
    }

    /// The share-partition as stored: acquired records come back available.
    pub fn restore(p: &Persisted) -> Self {
        let mut sp = SharePartition::new(p.start);
        sp.state_epoch = p.state_epoch;
        for &(first, last, code, deliveries) in &p.runs {
            for o in first.max(p.start)..=last {
                let state = match code {
                    2 => State::Acknowledged,
                    4 => State::Archived,
                    _ => State::Available,
                };
                sp.window.insert(o, Entry { state, deliveries });
                sp.end = sp.end.max(o + 1);
            }
        }
        sp.advance();
        sp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Settings = Settings {
        lock_ms: 1000,
        delivery_limit: 3,
        max_in_flight: 100,
    };

    fn ack(first: i64, last: i64, t: i8) -> Ack {
        Ack {
            first,
            last,
            types: vec![t],
        }
    }

    #[test]
    fn two_members_get_distinct_records_and_accepting_moves_the_start() {
        let mut sp = SharePartition::new(0);
        let a = sp.acquire("a", &[(0, 4, false)], 3, 0, &S);
        assert_eq!(
            a,
            vec![Acquired {
                first: 0,
                last: 2,
                deliveries: 1
            }]
        );
        let b = sp.acquire("b", &[(0, 4, false), (5, 9, false)], 100, 0, &S);
        assert_eq!(
            b,
            vec![Acquired {
                first: 3,
                last: 9,
                deliveries: 1
            }]
        );
        assert_eq!(sp.acquire("c", &[(0, 9, false)], 100, 0, &S), vec![]);
        // b cannot acknowledge a's records.
        assert!(matches!(
            sp.acknowledge("b", &[ack(0, 0, ACK_ACCEPT)], &S),
            Err(AckError::InvalidRecordState(_))
        ));
        sp.acknowledge("b", &[ack(3, 9, ACK_ACCEPT)], &S).unwrap();
        assert_eq!(sp.start(), 0, "a still holds 0..=2");
        sp.acknowledge("a", &[ack(0, 2, ACK_ACCEPT)], &S).unwrap();
        assert_eq!((sp.start(), sp.end()), (10, 10));
    }

    #[test]
    fn an_expired_lock_makes_the_record_available_again_with_one_more_delivery() {
        let mut sp = SharePartition::new(0);
        sp.acquire("a", &[(0, 1, false)], 100, 0, &S);
        assert!(!sp.expire(999, &S));
        assert_eq!(sp.next_deadline(), Some(1000));
        assert!(sp.expire(1000, &S));
        assert_eq!(sp.next_to_read(&S), Some(0));
        let b = sp.acquire("b", &[(0, 1, false)], 100, 1000, &S);
        assert_eq!(
            b,
            vec![Acquired {
                first: 0,
                last: 1,
                deliveries: 2
            }]
        );
        // a's lock is gone: its late acknowledgement is refused.
        assert!(sp.acknowledge("a", &[ack(0, 1, ACK_ACCEPT)], &S).is_err());
    }

    #[test]
    fn a_record_released_as_often_as_the_limit_is_archived() {
        let mut sp = SharePartition::new(0);
        let first = sp.acquire("a", &[(0, 1, false)], 100, 0, &S);
        assert_eq!(
            first,
            vec![Acquired {
                first: 0,
                last: 1,
                deliveries: 1
            }]
        );
        let mixed = Ack {
            first: 0,
            last: 1,
            types: vec![ACK_RELEASE, ACK_ACCEPT],
        };
        sp.acknowledge("a", &[mixed], &S).unwrap();
        for round in 2..=3 {
            assert_eq!(sp.start(), 0);
            let got = sp.acquire("b", &[(0, 1, false)], 100, 0, &S);
            assert_eq!(
                got,
                vec![Acquired {
                    first: 0,
                    last: 0,
                    deliveries: round
                }]
            );
            sp.acknowledge("b", &[ack(0, 0, ACK_RELEASE)], &S).unwrap();
        }
        // Offset 0 was delivered 3 times and released: archived; offset 1 accepted.
        assert_eq!((sp.start(), sp.end()), (2, 2));
        assert_eq!(sp.acquire("a", &[(0, 1, false)], 100, 0, &S), vec![]);
    }

    #[test]
    fn reject_and_gap_archive_and_bad_batches_are_refused_whole() {
        let mut sp = SharePartition::new(10);
        sp.acquire("a", &[(10, 14, false)], 100, 0, &S);
        let bad = Ack {
            first: 10,
            last: 14,
            types: vec![ACK_ACCEPT, ACK_ACCEPT],
        };
        assert!(matches!(
            sp.acknowledge("a", &[bad], &S),
            Err(AckError::InvalidRequest(_))
        ));
        assert!(sp.acknowledge("a", &[ack(10, 15, ACK_ACCEPT)], &S).is_err());
        assert_eq!(sp.start(), 10, "nothing of a refused batch applies");
        sp.acknowledge("a", &[ack(10, 11, ACK_REJECT), ack(12, 14, ACK_GAP)], &S)
            .unwrap();
        assert_eq!(sp.start(), 15);
        assert!(sp.acknowledge("a", &[ack(10, 10, 9)], &S).is_err());
    }

    #[test]
    fn control_batches_and_skipped_offsets_are_archived_not_delivered() {
        let mut sp = SharePartition::new(0);
        let got = sp.acquire(
            "a",
            &[(0, 1, false), (2, 2, true), (5, 6, false)],
            100,
            0,
            &S,
        );
        assert_eq!(
            got,
            vec![
                Acquired {
                    first: 0,
                    last: 1,
                    deliveries: 1
                },
                Acquired {
                    first: 5,
                    last: 6,
                    deliveries: 1
                }
            ]
        );
        sp.acknowledge("a", &[ack(0, 1, ACK_ACCEPT), ack(5, 6, ACK_ACCEPT)], &S)
            .unwrap();
        assert_eq!((sp.start(), sp.end()), (7, 7));
    }

    #[test]
    fn the_window_is_bounded_and_follows_the_log_start() {
        let s = Settings {
            max_in_flight: 4,
            ..S
        };
        let mut sp = SharePartition::new(0);
        let got = sp.acquire("a", &[(0, 9, false)], 100, 0, &s);
        assert_eq!(
            got,
            vec![Acquired {
                first: 0,
                last: 3,
                deliveries: 1
            }]
        );
        assert_eq!(sp.next_to_read(&s), None);
        sp.follow_log_start(2);
        assert_eq!((sp.start(), sp.end()), (2, 4));
        sp.release_member("a", &s);
        assert_eq!(sp.next_to_read(&s), Some(2));
    }

    #[test]
    fn the_stored_form_restores_everything_but_the_locks() {
        let mut sp = SharePartition::new(0);
        sp.acquire("a", &[(0, 9, false)], 100, 0, &S);
        sp.acknowledge(
            "a",
            &[
                ack(0, 3, ACK_ACCEPT),
                ack(5, 5, ACK_REJECT),
                ack(6, 6, ACK_RELEASE),
            ],
            &S,
        )
        .unwrap();
        let p = sp.persisted();
        assert_eq!(p.start, 4);
        assert_eq!(p.runs, vec![(4, 4, 0, 1), (5, 5, 4, 1), (6, 9, 0, 1)],);
        let back = SharePartition::restore(&p);
        assert_eq!((back.start(), back.end()), (4, 10));
        assert_eq!(back.persisted(), p);
        assert_eq!(back.entry(4).unwrap().state, State::Available);
        assert_eq!(back.entry(4).unwrap().deliveries, 1);
    }
}
