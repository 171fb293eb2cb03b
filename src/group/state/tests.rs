//! Group state machine: every transition, and the invalid requests in each state.

use super::*;

const LIMITS: Limits = Limits {
    initial_rebalance_delay_ms: 0,
    min_session_timeout_ms: 6000,
    max_session_timeout_ms: 300_000,
    max_size: i32::MAX,
};

fn req(member_id: &str, instance: Option<&str>, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_string(),
        instance_id: instance.map(|s| s.to_string()),
        client_id: "c".to_string(),
        client_host: "/127.0.0.1".to_string(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 20_000,
        protocol_type: "consumer".to_string(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), Bytes::from(p.to_string())))
            .collect(),
        require_known_member_id: true,
    }
}

fn joins(effects: &[Effect]) -> Vec<(String, JoinResult)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Join { member_id, result } => Some((member_id.clone(), result.clone())),
            _ => None,
        })
        .collect()
}

fn syncs(effects: &[Effect]) -> Vec<(String, SyncResult)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Sync { member_id, result } => Some((member_id.clone(), result.clone())),
            _ => None,
        })
        .collect()
}

/// Joins a new dynamic member through MEMBER_ID_REQUIRED; returns its id and the effects of
/// the second join.
fn join_new(g: &mut Group, now: i64) -> (String, JoinReply, Vec<Effect>) {
    let (first, _) = g.join(req("", None, &["range"]), &LIMITS, now);
    let JoinReply::Now(r) = first else {
        panic!("{first:?}")
    };
    assert_eq!(r.error, Some(ResponseError::MemberIdRequired));
    let id = r.member_id;
    let (reply, effects) = g.join(req(&id, None, &["range"]), &LIMITS, now);
    (id, reply, effects)
}

/// A stable group of `n` dynamic members; returns their ids, leader first.
fn stable_group(n: usize) -> (Group, Vec<String>) {
    let mut g = Group::new("g", 0);
    let (first, _, effects) = join_new(&mut g, 0);
    assert_eq!(joins(&effects).len(), 1, "a lone member completes at once");
    let mut ids = vec![first.clone()];
    let (_, e) = g.sync(
        &first,
        None,
        g.generation,
        vec![(first.clone(), Bytes::from("a0"))],
        0,
    );
    assert_eq!(syncs(&e).len(), 1);
    for _ in 1..n {
        let (id, reply, _) = join_new(&mut g, 0);
        assert_eq!(reply, JoinReply::Parked(id.clone()));
        ids.push(id);
        // Everyone else rejoins.
        let (_, e) = g.join(req(&first, None, &["range"]), &LIMITS, 0);
        for other in ids.iter().skip(1).take(ids.len() - 2) {
            g.join(req(other, None, &["range"]), &LIMITS, 0);
        }
        let _ = e;
        let effects = g.tick(&LIMITS, 1);
        let _ = effects;
        let gen = g.generation;
        let assignments = ids
            .iter()
            .map(|m| (m.clone(), Bytes::from(format!("a-{m}"))))
            .collect();
        g.sync(&first, None, gen, assignments, 1);
    }
    assert_eq!(g.state, GroupState::Stable);
    (g, ids)
}

#[test]
fn a_first_member_needs_an_id_then_leads_generation_one() {
    let mut g = Group::new("g", 0);
    let (id, reply, effects) = join_new(&mut g, 0);
    assert_eq!(reply, JoinReply::Parked(id.clone()));
    let j = joins(&effects);
    assert_eq!(j.len(), 1);
    let r = &j[0].1;
    assert_eq!(
        (r.error, r.generation, r.leader.as_str()),
        (None, 1, id.as_str())
    );
    assert_eq!(r.protocol.as_deref(), Some("range"));
    assert_eq!(r.members.len(), 1, "the leader sees the members");
    assert_eq!(g.state, GroupState::CompletingRebalance);
    let (reply, e) = g.sync(&id, None, 1, vec![(id.clone(), Bytes::from("x"))], 0);
    assert_eq!(reply, SyncReply::Parked);
    assert_eq!(syncs(&e)[0].1.assignment, Bytes::from("x"));
    assert_eq!(g.state, GroupState::Stable);
}

#[test]
fn a_second_member_triggers_a_rebalance_both_must_rejoin() {
    let (mut g, ids) = stable_group(1);
    let leader = ids[0].clone();
    let (newcomer, reply, _) = join_new(&mut g, 10);
    assert_eq!(reply, JoinReply::Parked(newcomer.clone()));
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(&leader, None, 1, 10),
        Err(ResponseError::RebalanceInProgress)
    );
    let (reply, effects) = g.join(req(&leader, None, &["range"]), &LIMITS, 11);
    assert_eq!(reply, JoinReply::Parked(leader.clone()));
    let j = joins(&effects);
    assert_eq!(j.len(), 2);
    for (m, r) in &j {
        assert_eq!(r.generation, 2);
        assert_eq!(r.leader, leader);
        assert_eq!(r.members.len(), if *m == leader { 2 } else { 0 });
    }
    // The follower's sync waits for the leader's.
    let (reply, e) = g.sync(&newcomer, None, 2, vec![], 12);
    assert_eq!((reply, e.len()), (SyncReply::Parked, 0));
    let asg = vec![
        (leader.clone(), Bytes::from("L")),
        (newcomer.clone(), Bytes::from("N")),
    ];
    let (_, e) = g.sync(&leader, None, 2, asg, 12);
    let s = syncs(&e);
    assert_eq!(s.len(), 2);
    assert!(s.iter().any(|(m, r)| *m == newcomer && r.assignment == "N"));
}

#[test]
fn members_that_do_not_rejoin_are_dropped_at_the_deadline() {
    let (mut g, ids) = stable_group(1);
    let (newcomer, _, _) = join_new(&mut g, 100);
    // The old leader keeps heartbeating but never rejoins: the join phase ends at the
    // rebalance timeout without it.
    for t in [9_000, 18_000] {
        assert_eq!(
            g.heartbeat(&ids[0], None, 1, t),
            Err(ResponseError::RebalanceInProgress)
        );
    }
    assert!(joins(&g.tick(&LIMITS, 100 + 19_000)).is_empty());
    let j = joins(&g.tick(&LIMITS, 100 + 20_000));
    assert_eq!(j.len(), 1);
    assert_eq!(j[0].1.leader, newcomer);
    assert!(!g.members.contains_key(&ids[0]));
}

#[test]
fn heartbeats_keep_members_and_silence_expires_them() {
    let (mut g, ids) = stable_group(1);
    let m = ids[0].clone();
    assert_eq!(g.heartbeat(&m, None, 1, 9_000), Ok(()));
    assert!(g.tick(&LIMITS, 18_000).is_empty());
    let effects = g.tick(&LIMITS, 19_001);
    assert!(effects.contains(&Effect::Persist));
    assert!(g.members.is_empty());
    assert_eq!(g.state, GroupState::Empty);
    assert_eq!(g.generation, 2);
}

#[test]
fn invalid_requests_get_kafkas_errors() {
    let (mut g, ids) = stable_group(1);
    let m = ids[0].clone();
    let table: Vec<(&str, Result<(), ResponseError>)> = vec![
        ("unknown member", g.clone().heartbeat("nobody", None, 1, 1)),
        ("old generation", g.clone().heartbeat(&m, None, 0, 1)),
        ("good", g.clone().heartbeat(&m, None, 1, 1)),
    ];
    let want = [
        Err(ResponseError::UnknownMemberId),
        Err(ResponseError::IllegalGeneration),
        Ok(()),
    ];
    for ((name, got), want) in table.into_iter().zip(want) {
        assert_eq!(got, want, "{name}");
    }
    let (r, _) = g.clone().sync("nobody", None, 1, vec![], 1);
    assert_eq!(
        r,
        SyncReply::Now(SyncResult::error(ResponseError::UnknownMemberId))
    );
    let (r, _) = g.clone().sync(&m, None, 7, vec![], 1);
    assert_eq!(
        r,
        SyncReply::Now(SyncResult::error(ResponseError::IllegalGeneration))
    );
    let mut bad = req("", None, &["range"]);
    bad.session_timeout_ms = 10;
    let (r, _) = g.join(bad, &LIMITS, 1);
    assert!(matches!(
        r,
        JoinReply::Now(JoinResult {
            error: Some(ResponseError::InvalidSessionTimeout),
            ..
        })
    ));
    let (r, _) = g.join(req("", None, &["roundrobin"]), &LIMITS, 1);
    assert!(matches!(
        r,
        JoinReply::Now(JoinResult {
            error: Some(ResponseError::InconsistentGroupProtocol),
            ..
        })
    ));
    let (r, _) = g.join(req("ghost", None, &["range"]), &LIMITS, 1);
    assert!(matches!(
        r,
        JoinReply::Now(JoinResult {
            error: Some(ResponseError::UnknownMemberId),
            ..
        })
    ));
    let mut empty = Group::new("e", 0);
    assert_eq!(
        empty.heartbeat("x", None, 0, 0),
        Err(ResponseError::UnknownMemberId)
    );
}

#[test]
fn leaving_rebalances_the_rest_and_the_last_leaves_it_empty() {
    let (mut g, ids) = stable_group(2);
    let (r, _) = g.leave(&ids[1], None, &LIMITS, 5);
    assert_eq!(r, Ok(()));
    assert_eq!(g.state, GroupState::PreparingRebalance);
    let (_, effects) = g.join(req(&ids[0], None, &["range"]), &LIMITS, 6);
    assert_eq!(joins(&effects).len(), 1);
    let (r, _) = g.leave("nobody", None, &LIMITS, 7);
    assert_eq!(r, Err(ResponseError::UnknownMemberId));
    g.sync(&ids[0], None, g.generation, vec![], 7);
    assert_eq!(g.leave(&ids[0], None, &LIMITS, 8).0, Ok(()));
    g.tick(&LIMITS, 9);
    assert_eq!(g.state, GroupState::Empty);
}

#[test]
fn static_member_restart_keeps_its_assignment_without_a_rebalance() {
    let mut g = Group::new("g", 0);
    // Two static members: a leader and a follower.
    let (JoinReply::Parked(a), _) = g.join(req("", Some("ia"), &["range"]), &LIMITS, 0) else {
        panic!()
    };
    g.tick(&LIMITS, 1);
    let (JoinReply::Parked(b), _) = g.join(req("", Some("ib"), &["range"]), &LIMITS, 2) else {
        panic!()
    };
    let (_, effects) = g.join(req(&a, Some("ia"), &["range"]), &LIMITS, 3);
    assert_eq!(joins(&effects).len(), 2);
    let asg = vec![(a.clone(), Bytes::from("A")), (b.clone(), Bytes::from("B"))];
    g.sync(&a, Some("ia"), g.generation, asg, 4);
    let generation = g.generation;
    assert_eq!(g.state, GroupState::Stable);
    // The follower restarts: a new member id, same instance id, no rebalance.
    let (reply, _) = g.join(req("", Some("ib"), &["range"]), &LIMITS, 5);
    let JoinReply::Now(r) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!((r.error, r.generation), (None, generation));
    assert_ne!(r.member_id, b);
    assert_eq!(g.state, GroupState::Stable);
    let (s, _) = g.sync(&r.member_id, Some("ib"), generation, vec![], 6);
    assert_eq!(
        s,
        SyncReply::Now(SyncResult {
            error: None,
            protocol_type: Some("consumer".into()),
            protocol: Some("range".into()),
            assignment: Bytes::from("B")
        })
    );
    // The old incarnation is fenced.
    assert_eq!(
        g.heartbeat(&b, Some("ib"), generation, 7),
        Err(ResponseError::FencedInstanceId)
    );
    // The leader restarts too: still no rebalance, and it is told the old leader id so it
    // does not run the assignor; its assignment is kept.
    let (reply, _) = g.join(req("", Some("ia"), &["range"]), &LIMITS, 8);
    let JoinReply::Now(r) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(
        (r.error, r.generation, r.leader.as_str()),
        (None, generation, a.as_str())
    );
    assert!(r.members.is_empty());
    assert_eq!(g.state, GroupState::Stable);
    let (s, _) = g.sync(&r.member_id, Some("ia"), generation, vec![], 9);
    assert!(
        matches!(s, SyncReply::Now(SyncResult { error: None, ref assignment, .. }) if assignment == "A")
    );
}

#[test]
fn protocol_is_chosen_by_votes_among_common_ones() {
    let mut g = Group::new("g", 0);
    let (JoinReply::Now(r), _) =
        g.join(req("", None, &["cooperative-sticky", "range"]), &LIMITS, 0)
    else {
        panic!()
    };
    let (_, first) = g.join(
        req(&r.member_id, None, &["cooperative-sticky", "range"]),
        &LIMITS,
        0,
    );
    let j = joins(&first);
    assert_eq!(j[0].1.protocol.as_deref(), Some("cooperative-sticky"));
}

const TWO: Limits = Limits {
    max_size: 2,
    ..LIMITS
};

#[test]
fn a_full_group_refuses_one_more_member() {
    let (mut g, ids) = stable_group(2);
    let (reply, effects) = g.join(req("", None, &["range"]), &TWO, 10);
    let JoinReply::Now(r) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(r.error, Some(ResponseError::GroupMaxSizeReached));
    assert_eq!(r.member_id, "", "told no member id, as Kafka does");
    assert!(effects.is_empty());
    assert_eq!(g.pending_members(), 0, "no id handed out");
    assert_eq!(g.state, GroupState::Stable, "no rebalance for it");
    // Members already in are still served.
    let (reply, _) = g.join(req(&ids[1], None, &["range"]), &TWO, 10);
    assert!(matches!(
        reply,
        JoinReply::Now(JoinResult { error: None, .. })
    ));
    // An empty group takes a first member whatever the bound.
    let mut empty = Group::new("e", 0);
    let one = Limits {
        max_size: 1,
        ..LIMITS
    };
    let (first, _) = empty.join(req("", None, &["range"]), &one, 0);
    let JoinReply::Now(r) = first else {
        panic!("{first:?}")
    };
    assert_eq!(r.error, Some(ResponseError::MemberIdRequired));
}

#[test]
fn a_lowered_bound_sheds_the_last_member_to_rejoin() {
    let (mut g, ids) = stable_group(3);
    // The leader rejoins: a rebalance starts.
    let (reply, _) = g.join(req(&ids[0], None, &["range"]), &TWO, 10);
    assert_eq!(reply, JoinReply::Parked(ids[0].clone()));
    assert_eq!(g.state, GroupState::PreparingRebalance);
    let (reply, _) = g.join(req(&ids[1], None, &["range"]), &TWO, 11);
    assert_eq!(reply, JoinReply::Parked(ids[1].clone()));
    let (reply, effects) = g.join(req(&ids[2], None, &["range"]), &TWO, 12);
    let JoinReply::Now(r) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(r.error, Some(ResponseError::GroupMaxSizeReached));
    assert!(!g.members.contains_key(&ids[2]), "the third is out");
    // With it gone everyone left has rejoined: the generation completes with two.
    let j = joins(&effects);
    assert_eq!(j.len(), 2, "{effects:?}");
    assert_eq!(g.members.len(), 2);
    assert_eq!(g.state, GroupState::CompletingRebalance);
}

#[test]
fn a_static_member_taking_over_its_place_in_a_full_group_is_let_in() {
    let mut g = Group::new("g", 0);
    let (first, _) = g.join(req("", Some("i1"), &["range"]), &LIMITS, 0);
    let JoinReply::Parked(id) = first else {
        panic!("{first:?}")
    };
    g.sync(
        &id,
        Some("i1"),
        g.generation,
        vec![(id.clone(), Bytes::from("a"))],
        0,
    );
    assert_eq!(g.state, GroupState::Stable);
    let one = Limits {
        max_size: 1,
        ..LIMITS
    };
    let (reply, _) = g.join(req("", Some("i1"), &["range"]), &one, 5);
    assert!(
        matches!(reply, JoinReply::Now(JoinResult { error: None, .. })),
        "{reply:?}"
    );
    let (reply, _) = g.join(req("", Some("i2"), &["range"]), &one, 5);
    assert!(
        matches!(
            reply,
            JoinReply::Now(JoinResult {
                error: Some(ResponseError::GroupMaxSizeReached),
                ..
            })
        ),
        "{reply:?}"
    );
}

#[test]
fn member_ids_handed_out_and_never_used_expire_with_the_session() {
    let mut g = Group::new("g", 0);
    for _ in 0..100 {
        let (reply, _) = g.join(req("", None, &["range"]), &LIMITS, 0);
        assert!(matches!(
            reply,
            JoinReply::Now(JoinResult {
                error: Some(ResponseError::MemberIdRequired),
                ..
            })
        ));
    }
    assert_eq!(g.pending_members(), 100);
    // The session timeout of the requests is 10 s.
    g.tick(&LIMITS, 9_999);
    assert_eq!(g.pending_members(), 100);
    g.tick(&LIMITS, 10_000);
    assert_eq!(g.pending_members(), 0);
    assert!(g.is_empty());
    // An expired id no longer joins as a pending one.
    let (id, reply, _) = join_new(&mut g, 20_000);
    assert_eq!(reply, JoinReply::Parked(id));
}
