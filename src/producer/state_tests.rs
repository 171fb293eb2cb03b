use super::*;
use crate::record::tests::make_batch;

fn header(pid: i64, epoch: i16, seq: i32, count: i32) -> BatchHeader {
    let mut h = BatchHeader::parse(&make_batch(0, count, 1)).unwrap();
    h.producer_id = pid;
    h.producer_epoch = epoch;
    h.base_sequence = seq;
    h
}

fn at(mut h: BatchHeader, offset: i64) -> BatchHeader {
    h.base_offset = offset;
    h
}

fn txn(pid: i64, epoch: i16, seq: i32, count: i32, offset: i64) -> BatchHeader {
    let mut h = at(header(pid, epoch, seq, count), offset);
    h.attributes |= 0x10;
    h
}

fn marker_header(pid: i64, epoch: i16, offset: i64) -> BatchHeader {
    let mut h = at(header(pid, epoch, -1, 1), offset);
    h.attributes |= 0x30;
    h
}

fn commit(ce: i32) -> Option<Marker> {
    Some(Marker {
        commit: true,
        coordinator_epoch: ce,
    })
}

fn abort(ce: i32) -> Option<Marker> {
    Some(Marker {
        commit: false,
        coordinator_epoch: ce,
    })
}

fn out_of_order(pid: i64, seq: i32) -> Check {
    Check::Reject(ProducerError::OutOfOrderSequence {
        producer_id: pid,
        sequence: seq,
    })
}

#[test]
fn sequences_are_checked_as_kafka_does() {
    let mut s = PartitionProducers::default();
    let first = at(header(7, 0, 0, 3), 100);
    assert_eq!(s.check(&first), Check::Append);
    s.appended(&first, None);
    let table = [
        ("next in sequence", header(7, 0, 3, 2), Check::Append),
        (
            "retry of the first",
            header(7, 0, 0, 3),
            Check::Duplicate {
                base_offset: 100,
                last_offset: 102,
            },
        ),
        ("gap", header(7, 0, 5, 1), out_of_order(7, 5)),
        (
            "older epoch",
            header(7, -1, 3, 1),
            Check::Reject(ProducerError::InvalidProducerEpoch {
                producer_id: 7,
                epoch: -1,
                current: 0,
            }),
        ),
        ("new epoch from zero", header(7, 1, 0, 1), Check::Append),
        (
            "new epoch not from zero",
            header(7, 1, 4, 1),
            out_of_order(7, 4),
        ),
        ("unknown producer", header(8, 0, 42, 1), Check::Append),
        ("not idempotent", header(-1, -1, -1, 1), Check::Append),
    ];
    for (name, h, want) in table {
        assert_eq!(s.check(&h), want, "{name}");
    }
}

#[test]
fn only_the_last_five_batches_are_remembered() {
    let mut s = PartitionProducers::default();
    for i in 0..7 {
        let h = at(header(1, 0, i, 1), i as i64 * 10);
        assert_eq!(s.check(&h), Check::Append, "batch {i}");
        s.appended(&h, None);
    }
    assert!(matches!(
        s.check(&header(1, 0, 6, 1)),
        Check::Duplicate {
            base_offset: 60,
            ..
        }
    ));
    assert!(matches!(
        s.check(&header(1, 0, 2, 1)),
        Check::Duplicate { .. }
    ));
    assert_eq!(s.check(&header(1, 0, 1, 1)), out_of_order(1, 1));
}

#[test]
fn sequences_wrap_at_the_maximum() {
    let mut s = PartitionProducers::default();
    s.appended(&header(3, 0, i32::MAX - 1, 2), None);
    assert_eq!(s.check(&header(3, 0, 0, 1)), Check::Append);
    assert_eq!(add_seq(i32::MAX, 1), 0);
    assert_eq!(add_seq(0, -1), i32::MAX);
}

/// The transaction state machine, step by step: (what happens, the LSO under HW 1000 after it).
#[test]
fn transactions_start_end_and_hold_the_lso() {
    let mut s = PartitionProducers::default();
    let hw = 1000;
    assert_eq!(s.last_stable_offset(hw), hw, "no transaction");
    let t1 = txn(1, 0, 0, 2, 10);
    assert!(s.starts_transaction(&t1));
    assert_eq!(s.check(&t1), Check::Append);
    assert_eq!(s.appended(&t1, None), None);
    assert_eq!(s.last_stable_offset(hw), 10, "open at 10");
    assert_eq!(s.last_stable_offset(5), 5, "capped by the HW");
    let t1b = txn(1, 0, 2, 1, 12);
    assert!(!s.starts_transaction(&t1b), "already open");
    s.appended(&t1b, None);
    assert_eq!(s.last_stable_offset(hw), 10, "still open at 10");
    assert_eq!(
        s.check(&at(header(1, 0, 3, 1), 13)),
        Check::Reject(ProducerError::InvalidTxnState { producer_id: 1 }),
        "plain batch inside the transaction"
    );
    let t2 = txn(2, 0, 0, 1, 13);
    s.appended(&t2, None);
    assert_eq!(s.last_stable_offset(hw), 10);
    let done = s.appended(&marker_header(1, 0, 14), commit(3));
    assert_eq!(
        done,
        Some(CompletedTxn {
            producer_id: 1,
            first_offset: 10,
            last_offset: 14,
            aborted: false
        })
    );
    assert_eq!(
        s.last_stable_offset(14),
        10,
        "1's marker not yet below the HW"
    );
    assert_eq!(
        s.last_stable_offset(15),
        13,
        "1's marker below the HW, 2 open"
    );
    assert_eq!(s.last_stable_offset(hw), 13, "2 still open");
    let done = s.appended(&marker_header(2, 0, 15), abort(3)).unwrap();
    assert!(done.aborted);
    assert_eq!(s.stable_offset_after(&done), 16);
    assert_eq!(
        s.last_stable_offset(15),
        13,
        "2's marker not yet replicated"
    );
    assert_eq!(s.last_stable_offset(16), 16, "both markers below the HW");
    s.high_watermark_moved(16);
    assert_eq!(s.last_stable_offset(15), 15);
    assert_eq!(
        s.appended(&marker_header(1, 0, 17), commit(3)),
        None,
        "a marker with nothing open completes nothing"
    );
    assert!(
        s.starts_transaction(&txn(1, 0, 3, 1, 18)),
        "a new transaction"
    );
}

#[test]
fn fencing_of_producer_and_coordinator_epochs() {
    let mut s = PartitionProducers::default();
    s.appended(&txn(5, 2, 0, 1, 0), None);
    s.appended(&marker_header(5, 2, 1), commit(4));
    let table = [
        ("current epochs", 2, 4, Ok(())),
        ("newer coordinator", 2, 5, Ok(())),
        ("bumped producer epoch", 3, 4, Ok(())),
        (
            "stale coordinator",
            2,
            3,
            Err(ProducerError::CoordinatorFenced {
                producer_id: 5,
                epoch: 3,
                current: 4,
            }),
        ),
        (
            "stale producer epoch",
            1,
            4,
            Err(ProducerError::InvalidProducerEpoch {
                producer_id: 5,
                epoch: 1,
                current: 2,
            }),
        ),
    ];
    for (name, epoch, ce, want) in table {
        assert_eq!(s.check_marker(5, epoch, ce), want, "{name}");
    }
    assert_eq!(s.check_marker(99, 0, 0), Ok(()), "unknown producer");
    assert!(matches!(
        s.check(&txn(5, 1, 1, 1, 2)),
        Check::Reject(ProducerError::InvalidProducerEpoch { .. })
    ));
}

#[test]
fn producers_expire_unless_a_transaction_is_open() {
    let mut s = PartitionProducers::default();
    let mut old = header(1, 0, 0, 1);
    old.max_timestamp = 1_000;
    s.appended(&old, None);
    let mut open = txn(2, 0, 0, 1, 1);
    open.max_timestamp = 1_000;
    s.appended(&open, None);
    let mut recent = at(header(3, 0, 0, 1), 2);
    recent.max_timestamp = 90_000;
    s.appended(&recent, None);
    assert_eq!(s.expire(100_000, 50_000), 1);
    assert_eq!(s.len(), 2);
    assert_eq!(s.check(&header(1, 0, 9, 1)), Check::Append, "1 forgotten");
    assert_eq!(s.last_stable_offset(100), 1, "2's transaction kept");
    assert_eq!(s.expire(200_000, 50_000), 1, "3 goes later, 2 never");
}

/// Appends a one-record batch of producer `pid` at `offset` with timestamp `ts`, then applies
/// the count bound as the partition log does after every append.
fn produce(s: &mut PartitionProducers, pid: i64, seq: i32, offset: i64, ts: i64, max: usize) {
    let mut h = at(header(pid, 0, seq, 1), offset);
    h.max_timestamp = ts;
    s.appended(&h, None);
    s.evict_idle(max, pid);
}

#[test]
fn the_map_is_bounded_by_evicting_the_idlest() {
    const MAX: usize = 100;
    let mut s = PartitionProducers::default();
    let mut open = txn(0, 0, 0, 1, 0);
    open.max_timestamp = 0;
    s.appended(&open, None);
    for pid in 1..MAX as i64 {
        produce(&mut s, pid, 0, pid, pid, MAX);
    }
    assert_eq!(s.len(), MAX);
    assert_eq!(s.evicted(), 0, "at the bound, not past it");
    produce(&mut s, 1_000_000, 0, 1_000, 1_000_000, MAX);
    assert_eq!(s.len(), MAX * 9 / 10, "one pass down to 9/10 of the bound");
    assert_eq!(s.evicted(), (MAX + 1 - MAX * 9 / 10) as u64);
    assert_eq!(s.last_stable_offset(i64::MAX), 0, "open transaction kept");
    assert!(s.views().iter().any(|v| v.producer_id == 0));
    assert!(
        s.views().iter().any(|v| v.producer_id == 1_000_000),
        "the new one kept"
    );
    assert_eq!(s.check(&header(1, 0, 7, 1)), Check::Append, "idlest gone");
    let newest = MAX as i64 - 1;
    assert_eq!(
        s.check(&header(newest, 0, 7, 1)),
        out_of_order(newest, 7),
        "recent kept"
    );
    // The next pass comes only once the bound is passed again.
    let before = s.evicted();
    for pid in 0..(MAX - MAX * 9 / 10) as i64 {
        produce(
            &mut s,
            2_000_000 + pid,
            0,
            2_000 + pid,
            2_000_000 + pid,
            MAX,
        );
    }
    assert_eq!(s.len(), MAX);
    assert_eq!(s.evicted(), before);
}

#[test]
fn the_producer_just_appended_is_kept_whatever_its_timestamp() {
    let mut s = PartitionProducers::default();
    for pid in 1..=10 {
        produce(&mut s, pid, 0, pid, 1_000 + pid, 10);
    }
    // A producer whose clock is far behind: the idlest by timestamp, yet it just wrote.
    produce(&mut s, 99, 0, 11, 5, 10);
    assert_eq!(s.len(), 9);
    assert_eq!(s.check(&header(99, 0, 1, 1)), Check::Append);
    assert_eq!(
        s.check(&header(99, 0, 7, 1)),
        out_of_order(99, 7),
        "99 kept"
    );
    assert_eq!(s.check(&header(1, 0, 7, 1)), Check::Append, "1 went");
}

#[test]
fn producers_with_open_transactions_are_never_evicted() {
    let mut s = PartitionProducers::default();
    for pid in 0..20 {
        let mut h = txn(pid, 0, 0, 1, pid);
        h.max_timestamp = pid;
        s.appended(&h, None);
    }
    assert_eq!(s.evict_idle(10, -1), 0);
    assert_eq!(s.len(), 20);
    assert_eq!(s.last_stable_offset(i64::MAX), 0);
    // One plain producer among them: only it can go.
    produce(&mut s, 100, 0, 20, 0, 10);
    assert_eq!(s.evict_idle(10, -1), 1);
    assert_eq!(s.len(), 20);
    assert_eq!(s.evicted(), 1);
}

/// Two states with the same history; producer 1 is forgotten by expiry in one, by the count
/// bound in the other. Its next batches must be treated the same way (Kafka's
/// `checkSequence`: an entry with no epoch takes any sequence).
#[test]
fn an_evicted_producer_continues_as_after_expiry() {
    let history = |s: &mut PartitionProducers, max: usize| {
        produce(s, 1, 0, 0, 1_000, max);
        produce(s, 1, 1, 1, 1_000, max);
        let mut bumped = at(header(1, 3, 0, 1), 2);
        bumped.max_timestamp = 1_000;
        s.appended(&bumped, None);
        for pid in 2..=5 {
            produce(s, pid, 0, pid + 1, 100_000, max);
        }
    };
    let mut expired = PartitionProducers::default();
    history(&mut expired, usize::MAX);
    assert_eq!(expired.expire(100_000, 50_000), 1);
    let mut evicted = PartitionProducers::default();
    history(&mut evicted, 4);
    assert!(evicted.evicted() >= 1);
    for s in [&mut expired, &mut evicted] {
        assert!(s.views().iter().all(|v| v.producer_id != 1), "1 forgotten");
        // A sequence far from its last one, and an epoch older than its last: both taken.
        assert_eq!(s.check(&header(1, 3, 7, 1)), Check::Append);
        assert_eq!(s.check(&header(1, 0, 9, 1)), Check::Append);
        assert!(s.starts_transaction(&txn(1, 3, 7, 1, 10)));
        assert_eq!(s.check_marker(1, 0, 0), Ok(()));
        // From its next batch on it is tracked again.
        s.appended(&at(header(1, 3, 7, 1), 10), None);
        assert_eq!(s.check(&header(1, 3, 8, 1)), Check::Append);
        assert_eq!(
            s.check(&header(1, 3, 7, 1)),
            Check::Duplicate {
                base_offset: 10,
                last_offset: 10
            }
        );
        assert_eq!(s.check(&header(1, 3, 9, 1)), out_of_order(1, 9));
    }
}

#[test]
fn snapshots_follow_evictions() {
    let mut s = PartitionProducers::default();
    s.appended(&txn(0, 0, 0, 1, 0), None);
    for pid in 1..=20 {
        produce(&mut s, pid, 0, pid, pid, 10);
    }
    let entries = s.snapshot_entries();
    assert_eq!(entries.len(), s.len());
    assert!(entries.len() <= 10);
    assert!(entries
        .iter()
        .any(|e| e.producer_id == 0 && e.txn_first_offset == 0));
    assert!(
        entries.iter().all(|e| e.producer_id != 1),
        "evicted ones are not written"
    );
    let mut back = PartitionProducers::from_snapshot(&entries);
    assert_eq!(back.snapshot_entries(), entries);
    assert_eq!(back.check(&header(1, 0, 7, 1)), Check::Append);
    assert_eq!(back.check(&header(20, 0, 7, 1)), out_of_order(20, 7));
    // A bound lowered between runs applies at the next append after loading.
    produce(&mut back, 21, 0, 21, 21, 4);
    assert_eq!(back.len(), 3);
    assert!(
        back.views().iter().any(|v| v.producer_id == 0),
        "open transaction kept"
    );
    assert!(back.views().iter().any(|v| v.producer_id == 21));
}

#[test]
fn a_snapshot_keeps_the_last_batch_and_open_transactions() {
    let mut s = PartitionProducers::default();
    s.appended(&at(header(7, 1, 0, 2), 10), None);
    s.appended(&at(header(7, 1, 2, 3), 12), None);
    s.appended(&txn(8, 0, 0, 1, 15), None);
    s.appended(&marker_header(9, 4, 16), commit(2));
    let entries = s.snapshot_entries();
    let back = PartitionProducers::from_snapshot(&entries);
    assert_eq!(back.snapshot_entries(), entries);
    assert_eq!(
        back.check(&header(7, 1, 2, 3)),
        Check::Duplicate {
            base_offset: 12,
            last_offset: 14
        }
    );
    assert_eq!(back.check(&header(7, 1, 5, 1)), Check::Append);
    assert_eq!(back.last_stable_offset(100), 15);
    assert_eq!(
        back.check_marker(9, 4, 1),
        Err(ProducerError::CoordinatorFenced {
            producer_id: 9,
            epoch: 1,
            current: 2
        })
    );
}

#[test]
fn log_start_moves_forget_producers_wholly_below_it() {
    let mut s = PartitionProducers::default();
    s.appended(&at(header(1, 0, 0, 1), 0), None);
    s.appended(&txn(2, 0, 0, 1, 1), None);
    s.appended(&at(header(3, 0, 0, 1), 5), None);
    s.log_start_moved(3);
    assert_eq!(s.len(), 2);
    assert_eq!(s.check(&header(1, 0, 4, 1)), Check::Append);
}
