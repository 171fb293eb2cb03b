use super::*;

const ID: &str = "txn-a";
const PID: i64 = 1000;

fn tp(p: i32) -> TopicPartition {
    TopicPartition::new("t", p)
}

fn meta(state: TxnState, epoch: i16) -> TxnMetadata {
    let mut m = TxnMetadata::new(ID, PID, 60_000, 0);
    m.state = state;
    m.producer_epoch = epoch;
    if !matches!(state, TxnState::Empty) && !state.expiration_allowed() {
        m.partitions.insert(tp(0));
        m.start_ms = 10;
    }
    m
}

#[test]
fn state_ids_and_names_are_kafkas() {
    let table = [
        (TxnState::Empty, 0, "Empty"),
        (TxnState::Ongoing, 1, "Ongoing"),
        (TxnState::PrepareCommit, 2, "PrepareCommit"),
        (TxnState::PrepareAbort, 3, "PrepareAbort"),
        (TxnState::CompleteCommit, 4, "CompleteCommit"),
        (TxnState::CompleteAbort, 5, "CompleteAbort"),
        (TxnState::Dead, 6, "Dead"),
        (TxnState::PrepareEpochFence, 7, "PrepareEpochFence"),
    ];
    for (s, id, name) in table {
        assert_eq!(s.id(), id);
        assert_eq!(TxnState::from_id(id), Some(s));
        assert_eq!(s.name(), name);
        assert_eq!(TxnState::from_name(name), Some(s));
    }
    assert_eq!(TxnState::from_id(8), None);
}

#[test]
fn init_of_a_new_id_gives_epoch_zero() {
    assert!(TxnMetadata::init_needs_producer_id(None, None));
    let m = TxnMetadata::new(ID, PID, 5000, 7);
    let InitStep::Write(next) = m.init(5000, None, None, 8).unwrap() else {
        panic!("a new id is written");
    };
    assert_eq!((next.producer_id, next.producer_epoch), (PID, 0));
    assert_eq!(next.state, TxnState::Empty);
    assert_eq!(next.timeout_ms, 5000);
}

/// InitProducerId from every state: (state, expected id/epoch, fresh id, outcome).
#[test]
fn init_from_every_state() {
    enum Want {
        Epoch(i64, i16),
        Fence(i16),
        Err(TxnError),
    }
    use TxnState::*;
    type Row = (TxnState, i16, Option<ProducerIdEpoch>, Option<i64>, Want);
    let table: Vec<Row> = vec![
        (Empty, 3, None, None, Want::Epoch(PID, 4)),
        (CompleteCommit, 3, None, None, Want::Epoch(PID, 4)),
        (CompleteAbort, 3, None, None, Want::Epoch(PID, 4)),
        (CompleteAbort, 3, Some((PID, 3)), None, Want::Epoch(PID, 4)),
        // KIP-360: a stale epoch that is not the previous one is fenced.
        (Empty, 3, Some((PID, 1)), None, Want::Err(TxnError::Fenced)),
        // Another producer id: fenced.
        (
            Empty,
            3,
            Some((PID + 1, 3)),
            None,
            Want::Err(TxnError::Fenced),
        ),
        // Exhausted epoch: a new producer id at epoch 0.
        (Empty, i16::MAX - 1, None, Some(7), Want::Epoch(7, 0)),
        (
            Empty,
            i16::MAX - 1,
            None,
            None,
            Want::Err(TxnError::NotAvailable),
        ),
        (
            PrepareCommit,
            3,
            None,
            None,
            Want::Err(TxnError::Concurrent),
        ),
        (PrepareAbort, 3, None, None, Want::Err(TxnError::Concurrent)),
        // An open transaction is aborted at a bumped epoch first.
        (Ongoing, 3, None, None, Want::Fence(4)),
    ];
    for (i, (state, epoch, expected, fresh, want)) in table.into_iter().enumerate() {
        let m = meta(state, epoch);
        let got = m.init(1000, expected, fresh, 50);
        match (want, got) {
            (Want::Epoch(pid, e), Ok(InitStep::Write(n))) => {
                assert_eq!((n.producer_id, n.producer_epoch), (pid, e), "row {i}");
                assert_eq!(n.state, Empty, "row {i}");
                assert!(n.partitions.is_empty(), "row {i}");
            }
            (Want::Fence(e), Ok(InitStep::FenceAndAbort(n))) => {
                assert_eq!(n.state, PrepareAbort, "row {i}");
                assert_eq!(n.producer_epoch, e, "row {i}");
                assert_eq!(n.partitions, m.partitions, "row {i}: the abort covers them");
            }
            (Want::Err(e), Err(got)) => assert_eq!(e, got, "row {i}"),
            (_, got) => panic!("row {i}: unexpected {got:?}"),
        }
    }
}

#[test]
fn init_retry_after_lost_answer_gets_the_same_epoch() {
    let m = meta(TxnState::Empty, 3);
    let InitStep::Write(first) = m.init(1000, Some((PID, 3)), None, 1).unwrap() else {
        panic!()
    };
    assert_eq!((first.producer_epoch, first.last_producer_epoch), (4, 3));
    let InitStep::Write(again) = first.init(1000, Some((PID, 3)), None, 2).unwrap() else {
        panic!()
    };
    assert_eq!(
        again.producer_epoch, 4,
        "the retry is answered, not bumped twice"
    );
}

#[test]
fn pending_transition_refuses_everything() {
    let mut m = meta(TxnState::Ongoing, 1);
    m.pending = Some(TxnState::PrepareCommit);
    assert_eq!(m.init(1000, None, None, 1), Err(TxnError::Concurrent));
    assert_eq!(
        m.add_partitions(PID, 1, &[tp(1)], 1),
        Err(TxnError::Concurrent)
    );
    assert_eq!(m.end(PID, 1, true, 0, None, 1), Err(TxnError::Concurrent));
    assert!(!m.timed_out(i64::MAX / 2));
}

#[test]
fn add_partitions_starts_and_extends_a_transaction() {
    use TxnState::*;
    for from in [Empty, CompleteCommit, CompleteAbort] {
        let m = meta(from, 2);
        let next = m
            .add_partitions(PID, 2, &[tp(0), tp(1)], 500)
            .unwrap()
            .unwrap();
        assert_eq!(next.state, Ongoing);
        assert_eq!(next.start_ms, 500, "the transaction starts now");
        assert_eq!(next.partitions.len(), 2);
        let more = next.add_partitions(PID, 2, &[tp(2)], 900).unwrap().unwrap();
        assert_eq!(more.start_ms, 500, "adding keeps the start");
        assert_eq!(more.partitions.len(), 3);
        assert_eq!(more.add_partitions(PID, 2, &[tp(1)], 950), Ok(None));
    }
    let ongoing = meta(Ongoing, 2);
    assert_eq!(
        ongoing.add_partitions(PID + 1, 2, &[tp(0)], 1),
        Err(TxnError::InvalidMapping)
    );
    assert_eq!(
        ongoing.add_partitions(PID, 1, &[tp(0)], 1),
        Err(TxnError::Fenced)
    );
    for busy in [PrepareCommit, PrepareAbort] {
        assert_eq!(
            meta(busy, 2).add_partitions(PID, 2, &[tp(0)], 1),
            Err(TxnError::Concurrent)
        );
    }
}

#[test]
fn verify_reports_partitions_outside_the_transaction() {
    let m = meta(TxnState::Ongoing, 2);
    assert_eq!(
        m.verify(PID, 2, &[tp(0), tp(5)]),
        Ok(vec![None, Some(TxnError::Abortable)])
    );
    assert_eq!(m.verify(PID, 1, &[tp(0)]), Err(TxnError::Fenced));
    assert_eq!(m.verify(9, 2, &[tp(0)]), Err(TxnError::InvalidMapping));
    assert_eq!(
        meta(TxnState::PrepareAbort, 2).verify(PID, 2, &[tp(0)]),
        Err(TxnError::Concurrent)
    );
}

/// EndTxn with the v1 protocol (no epoch bump) from every state and outcome.
#[test]
fn end_from_every_state() {
    use TxnState::*;
    enum Want {
        Write(TxnState),
        Done,
        Err(TxnError),
    }
    let table = [
        (Ongoing, true, Want::Write(PrepareCommit)),
        (Ongoing, false, Want::Write(PrepareAbort)),
        (CompleteCommit, true, Want::Done),
        (CompleteAbort, false, Want::Done),
        (CompleteCommit, false, Want::Err(TxnError::InvalidState)),
        (CompleteAbort, true, Want::Err(TxnError::InvalidState)),
        (PrepareCommit, true, Want::Err(TxnError::Concurrent)),
        (PrepareAbort, false, Want::Err(TxnError::Concurrent)),
        (PrepareCommit, false, Want::Err(TxnError::InvalidState)),
        (PrepareAbort, true, Want::Err(TxnError::InvalidState)),
        (Empty, true, Want::Err(TxnError::InvalidState)),
        (Empty, false, Want::Err(TxnError::InvalidState)),
    ];
    for (i, (state, commit, want)) in table.into_iter().enumerate() {
        let m = meta(state, 4);
        match (want, m.end(PID, 4, commit, 0, None, 99)) {
            (Want::Write(s), Ok(EndStep::Write(n))) => {
                assert_eq!(n.state, s, "row {i}");
                assert_eq!(n.producer_epoch, 4, "row {i}: v1 keeps the epoch");
                assert_eq!(n.partitions, m.partitions, "row {i}");
            }
            (Want::Done, Ok(EndStep::Done(pe))) => assert_eq!(pe, (PID, 4), "row {i}"),
            (Want::Err(e), Err(got)) => assert_eq!(e, got, "row {i}"),
            (_, got) => panic!("row {i}: unexpected {got:?}"),
        }
    }
}

#[test]
fn end_with_a_stale_epoch_or_another_id_is_refused() {
    let m = meta(TxnState::Ongoing, 4);
    assert_eq!(m.end(PID, 3, true, 0, None, 1), Err(TxnError::Fenced));
    assert_eq!(m.end(PID, 5, true, 0, None, 1), Err(TxnError::Fenced));
    assert_eq!(
        m.end(PID + 1, 4, true, 0, None, 1),
        Err(TxnError::InvalidMapping)
    );
}

#[test]
fn end_v2_bumps_the_epoch_and_accepts_its_retry() {
    let m = meta(TxnState::Ongoing, 4);
    let EndStep::Write(prepared) = m.end(PID, 4, true, 2, None, 10).unwrap() else {
        panic!()
    };
    assert_eq!(prepared.producer_epoch, 5);
    assert_eq!(prepared.answer_after_end(), (PID, 5));
    // The client lost the answer and retries with its old epoch while markers are out.
    assert_eq!(
        prepared.end(PID, 4, true, 2, None, 11),
        Err(TxnError::Concurrent)
    );
    let done = prepared.complete(20);
    assert_eq!(done.state, TxnState::CompleteCommit);
    assert_eq!(
        done.end(PID, 4, true, 2, None, 21),
        Ok(EndStep::Done((PID, 5)))
    );
    // The old epoch after that cannot start anything.
    assert_eq!(
        done.add_partitions(PID, 4, &[tp(0)], 22),
        Err(TxnError::Fenced)
    );
}

#[test]
fn end_v2_with_an_exhausted_epoch_moves_to_a_new_producer_id() {
    let m = meta(TxnState::Ongoing, i16::MAX - 1);
    assert!(m.end_needs_producer_id(2));
    assert!(!m.end_needs_producer_id(0));
    assert_eq!(
        m.end(PID, i16::MAX - 1, false, 2, None, 1),
        Err(TxnError::NotAvailable)
    );
    let EndStep::Write(prepared) = m.end(PID, i16::MAX - 1, false, 2, Some(77), 1).unwrap() else {
        panic!()
    };
    assert_eq!(prepared.answer_after_end(), (77, 0));
    let done = prepared.complete(2);
    assert_eq!((done.producer_id, done.producer_epoch), (77, 0));
    assert_eq!(done.prev_producer_id, PID);
    // A retry with the old id and epoch is recognised.
    assert_eq!(
        done.end(PID, i16::MAX - 1, false, 2, None, 3),
        Ok(EndStep::Done((77, 0)))
    );
}

#[test]
fn complete_follows_prepare() {
    let c = meta(TxnState::PrepareCommit, 1).complete(5);
    assert_eq!(c.state, TxnState::CompleteCommit);
    assert!(c.partitions.is_empty());
    let a = meta(TxnState::PrepareAbort, 1).complete(5);
    assert_eq!(a.state, TxnState::CompleteAbort);
    for s in [TxnState::Empty, TxnState::Ongoing, TxnState::CompleteAbort] {
        let m = meta(s, 1);
        let r = std::panic::catch_unwind(|| m.complete(5));
        assert!(r.is_err(), "{s:?} cannot complete");
    }
}

#[test]
fn fence_and_abort_bumps_the_epoch() {
    let m = meta(TxnState::Ongoing, 9);
    let f = m.fence_and_abort(100);
    assert_eq!(f.state, TxnState::PrepareAbort);
    assert_eq!(f.producer_epoch, 10);
    assert_eq!(f.last_producer_epoch, NO_PRODUCER_EPOCH);
    // The old instance is fenced from then on.
    let done = f.complete(101);
    assert_eq!(
        done.add_partitions(PID, 9, &[tp(0)], 102),
        Err(TxnError::Fenced)
    );
    assert_eq!(done.end(PID, 9, false, 0, None, 102), Err(TxnError::Fenced));
}

#[test]
fn timeouts_and_expiry() {
    let mut m = meta(TxnState::Ongoing, 1);
    m.start_ms = 1000;
    m.timeout_ms = 500;
    assert!(!m.timed_out(1500));
    assert!(m.timed_out(1501));
    assert!(!meta(TxnState::PrepareCommit, 1).timed_out(i64::MAX / 2));
    let mut idle = meta(TxnState::CompleteCommit, 1);
    idle.last_update_ms = 100;
    assert!(!idle.expired(199, 100));
    assert!(idle.expired(200, 100));
    assert!(
        !m.expired(i64::MAX / 2, 100),
        "an open transaction never expires"
    );
}

#[test]
fn every_transition_checks_its_previous_state() {
    use TxnState::*;
    let allowed = |to: TxnState, from: TxnState| to.valid_previous().contains(&from);
    assert!(allowed(Ongoing, Empty) && allowed(Ongoing, Ongoing));
    assert!(!allowed(PrepareCommit, Empty));
    assert!(!allowed(CompleteAbort, PrepareCommit));
    assert!(allowed(PrepareAbort, PrepareEpochFence));
    assert!(!allowed(Dead, Ongoing));
    for to in TxnState::ALL {
        for from in TxnState::ALL {
            let m = meta(from, 1);
            let r = std::panic::catch_unwind(|| m.transit(to, 1));
            assert_eq!(r.is_ok(), allowed(to, from), "{from:?} -> {to:?}");
        }
    }
}
