use std::collections::BTreeMap;

use super::*;
use crate::fuzz::Rng;
use bytes::Bytes;

struct View {
    version: u64,
    topics: BTreeMap<String, TopicInfo>,
}

impl View {
    fn new(topics: &[(&str, i32)]) -> View {
        let mut v = View {
            version: 1,
            topics: BTreeMap::new(),
        };
        for (n, p) in topics {
            v.add(n, *p);
        }
        v
    }

    fn add(&mut self, name: &str, partitions: i32) {
        let id = Uuid::from_u128(self.topics.len() as u128 + 1);
        self.topics.insert(
            name.to_string(),
            TopicInfo {
                id,
                partitions,
                racks: Vec::new(),
            },
        );
        self.version += 1;
    }

    fn id(&self, name: &str) -> Uuid {
        self.topics[name].id
    }
}

impl TopicView for View {
    fn version(&self) -> u64 {
        self.version
    }
    fn topic(&self, name: &str) -> Option<TopicInfo> {
        self.topics.get(name).cloned()
    }
    fn name_of(&self, id: &Uuid) -> Option<String> {
        self.topics
            .iter()
            .find(|(_, t)| t.id == *id)
            .map(|(n, _)| n.clone())
    }
    fn names(&self) -> Vec<String> {
        self.topics.keys().cloned().collect()
    }
}

fn settings() -> Settings {
    Settings {
        session_timeout_ms: 45_000,
        heartbeat_interval_ms: 5_000,
        assignors: vec!["uniform".into(), "range".into()],
        max_size: 100,
    }
}

/// A client as librdkafka behaves: it applies each assignment it gets at once (revoking what
/// is no longer there), reports what it owns, and starts over at epoch 0 when fenced.
#[derive(Debug, Clone)]
struct Client {
    id: String,
    instance: Option<String>,
    epoch: i32,
    owned: Assignment,
    topics: Vec<String>,
    /// After a lost answer the client sends a full request (librdkafka's
    /// SEND_FULL_REQUEST), so it learns its assignment again.
    full: bool,
}

impl Client {
    fn new(id: &str) -> Client {
        Client {
            id: id.to_string(),
            instance: None,
            epoch: 0,
            owned: Assignment::new(),
            topics: vec!["t".into()],
            full: false,
        }
    }

    fn request(&self) -> Heartbeat {
        let full = self.epoch == 0 || self.full;
        Heartbeat {
            member_id: self.id.clone(),
            member_epoch: self.epoch,
            instance_id: self.instance.clone(),
            rebalance_timeout_ms: if full { 30_000 } else { -1 },
            subscribed_topic_names: full.then(|| self.topics.clone()),
            owned: Some(self.owned.clone()),
            client_id: "sim".into(),
            client_host: "/127.0.0.1".into(),
            ..Heartbeat::default()
        }
    }

    fn apply(&mut self, r: &Result<(Reply, Vec<Record>), Error>) {
        self.full = false;
        match r {
            Ok((reply, _)) => {
                self.epoch = reply.member_epoch;
                if let Some(a) = &reply.assignment {
                    self.owned = a.clone();
                }
            }
            Err(Error::FencedMemberEpoch) | Err(Error::UnknownMemberId) => {
                self.epoch = 0;
                self.owned.clear();
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
}

fn beat(g: &mut ConsumerGroup, c: &mut Client, v: &View, now: i64) -> Vec<Record> {
    let r = g.heartbeat(c.request(), v, &settings(), now);
    c.apply(&r);
    r.map(|(_, recs)| recs).unwrap_or_default()
}

fn count(a: &Assignment) -> usize {
    a.values().map(|p| p.len()).sum()
}

fn assert_disjoint(clients: &[Client]) {
    let mut seen = BTreeMap::new();
    for c in clients {
        for tp in pairs(&c.owned) {
            if let Some(other) = seen.insert(tp, c.id.clone()) {
                panic!("{tp:?} owned by {other} and {}", c.id);
            }
        }
    }
}

/// Heartbeats every client in turn until nothing changes.
fn settle(g: &mut ConsumerGroup, clients: &mut [Client], v: &View, now: i64) {
    for _ in 0..20 {
        for c in clients.iter_mut() {
            beat(g, c, v, now);
        }
        assert_disjoint(clients);
    }
    assert_eq!(state_name(g), "Stable", "{g:#?}");
}

#[test]
fn a_fourth_member_gets_partitions_only_once_they_are_revoked() {
    let v = View::new(&[("t", 6)]);
    let mut g = ConsumerGroup::new("g", 0);
    let mut clients: Vec<Client> = ["a", "b", "c"].iter().map(|i| Client::new(i)).collect();
    settle(&mut g, &mut clients, &v, 0);
    assert!(clients.iter().all(|c| count(&c.owned) == 2));
    let epoch = g.epoch;

    let mut d = Client::new("d");
    beat(&mut g, &mut d, &v, 1);
    assert_eq!(g.epoch, epoch + 1, "a join bumps the group epoch");
    assert!(d.owned.is_empty(), "nothing is free yet");
    assert_eq!(
        g.members["d"].current.state,
        MemberState::UnreleasedPartitions
    );

    // The others learn what to give up; their epoch stays until they report it gone.
    let before: Vec<i32> = clients.iter().map(|c| c.epoch).collect();
    for c in clients.iter_mut() {
        beat(&mut g, c, &v, 2);
    }
    let revoking: Vec<&Client> = clients.iter().filter(|c| count(&c.owned) == 1).collect();
    assert_eq!(
        revoking.len(),
        1,
        "one member gives up one partition (6 over 4: 2, 2, 1, 1)"
    );
    for (c, e) in clients.iter().zip(&before) {
        if count(&c.owned) == 1 {
            assert_eq!(c.epoch, *e, "a revoking member keeps its epoch");
        }
    }
    let mut all = clients.clone();
    all.push(d.clone());
    assert_disjoint(&all);

    // They acknowledge; then the newcomer gets the released partitions.
    for c in clients.iter_mut() {
        beat(&mut g, c, &v, 3);
    }
    beat(&mut g, &mut d, &v, 3);
    assert_eq!(count(&d.owned), 1);
    all = clients.clone();
    all.push(d);
    settle(&mut g, &mut all, &v, 4);
    let mut counts: Vec<usize> = all.iter().map(|c| count(&c.owned)).collect();
    counts.sort_unstable();
    assert_eq!(counts, vec![1, 1, 2, 2]);
}

#[test]
fn epochs_are_checked_as_kafka_does() {
    let v = View::new(&[("t", 2)]);
    let mut g = ConsumerGroup::new("g", 0);
    let mut a = Client::new("a");
    settle(&mut g, std::slice::from_mut(&mut a), &v, 0);
    let epoch = a.epoch;
    assert!(epoch > 0);

    let mut hb = a.request();
    hb.member_epoch = epoch + 1;
    assert_eq!(
        g.heartbeat(hb, &v, &settings(), 1).unwrap_err(),
        Error::FencedMemberEpoch
    );
    let mut hb = a.request();
    hb.member_id = "nobody".into();
    assert_eq!(
        g.heartbeat(hb, &v, &settings(), 1).unwrap_err(),
        Error::UnknownMemberId
    );

    // Kafka's rule, directly: a smaller epoch passes only as the previous one, with owned
    // partitions within the assignment (the answer carrying the new epoch was lost).
    let t = v.id("t");
    let m = Member {
        id: "m".into(),
        meta: MemberMetadata::default(),
        current: CurrentAssignment {
            epoch: 5,
            previous_epoch: 4,
            state: MemberState::Stable,
            assigned: [(t, [0, 1].into())].into(),
            pending_revocation: Assignment::new(),
        },
    };
    let own = |ps: &[i32]| -> Assignment { [(t, ps.iter().copied().collect())].into() };
    assert_eq!(check_epoch(&m, 5, None), Ok(()));
    assert_eq!(
        check_epoch(&m, 6, Some(&own(&[0]))),
        Err(Error::FencedMemberEpoch)
    );
    assert_eq!(check_epoch(&m, 4, Some(&own(&[0]))), Ok(()));
    assert_eq!(
        check_epoch(&m, 4, Some(&own(&[2]))),
        Err(Error::FencedMemberEpoch)
    );
    assert_eq!(check_epoch(&m, 4, None), Err(Error::FencedMemberEpoch));
    assert_eq!(
        check_epoch(&m, 3, Some(&own(&[0]))),
        Err(Error::FencedMemberEpoch)
    );

    let mut b = Client::new("b");
    let mut both = vec![a, b.clone()];
    settle(&mut g, &mut both, &v, 2);
    b = both[1].clone();
    let _ = &b;

    // Offset commits: the member's epoch exactly.
    let e = g.members["b"].current.epoch;
    assert_eq!(g.check_member_epoch("b", e), Ok(()));
    assert_eq!(g.check_member_epoch("b", e - 1), Err(EpochCheck::Stale));
    assert_eq!(g.check_member_epoch("b", e + 1), Err(EpochCheck::Stale));
    assert_eq!(g.check_member_epoch("x", e), Err(EpochCheck::UnknownMember));
}

#[test]
fn bad_requests_are_refused() {
    let v = View::new(&[("t", 2)]);
    let mut g = ConsumerGroup::new("g", 0);
    let ok = Client::new("a").request();
    let cases: Vec<(Heartbeat, &str)> = vec![
        (
            Heartbeat {
                rebalance_timeout_ms: -1,
                ..ok.clone()
            },
            "RebalanceTimeoutMs",
        ),
        (
            Heartbeat {
                subscribed_topic_names: None,
                ..ok.clone()
            },
            "SubscribedTopicNames",
        ),
        (
            Heartbeat {
                owned: Some([(Uuid::nil(), [0].into())].into()),
                ..ok.clone()
            },
            "TopicPartitions",
        ),
        (
            Heartbeat {
                member_epoch: -3,
                ..ok.clone()
            },
            "MemberEpoch",
        ),
        (
            Heartbeat {
                instance_id: Some(String::new()),
                ..ok.clone()
            },
            "InstanceId",
        ),
        (
            Heartbeat {
                member_epoch: 3,
                member_id: String::new(),
                ..ok.clone()
            },
            "MemberId",
        ),
    ];
    for (hb, what) in cases {
        match g.heartbeat(hb, &v, &settings(), 0) {
            Err(Error::InvalidRequest(m)) => assert!(m.contains(what), "{m}"),
            other => panic!("{what}: {other:?}"),
        }
    }
    let hb = Heartbeat {
        server_assignor: Some("sticky".into()),
        ..ok.clone()
    };
    assert!(matches!(
        g.heartbeat(hb, &v, &settings(), 0),
        Err(Error::UnsupportedAssignor(_))
    ));
    let hb = Heartbeat {
        subscribed_topic_regex: Some("(".into()),
        ..ok.clone()
    };
    assert!(matches!(
        g.heartbeat(hb, &v, &settings(), 0),
        Err(Error::InvalidRegularExpression(_))
    ));
    assert!(g.members.is_empty(), "nothing refused joined");
    let mut full = settings();
    full.max_size = 1;
    g.heartbeat(ok, &v, &full, 0).unwrap();
    assert_eq!(
        g.heartbeat(Client::new("b").request(), &v, &full, 0)
            .unwrap_err(),
        Error::GroupMaxSizeReached
    );
}

#[test]
fn sessions_end_and_slow_revokers_are_removed() {
    let v = View::new(&[("t", 4)]);
    let mut g = ConsumerGroup::new("g", 0);
    let mut clients: Vec<Client> = ["a", "b"].iter().map(|i| Client::new(i)).collect();
    settle(&mut g, &mut clients, &v, 0);
    // "b" stops heartbeating: after the session timeout it is removed and "a" gets all.
    let (gone, records) = g.tick(&v, 45_000 - 1);
    assert!(gone.is_empty() && records.is_empty());
    beat(&mut g, &mut clients[0], &v, 30_000);
    let (gone, records) = g.tick(&v, 45_000);
    assert_eq!(gone, vec!["b".to_string()]);
    assert!(records.contains(&Record::Member("b".into(), None)));
    let mut a = vec![clients[0].clone()];
    settle(&mut g, &mut a, &v, 46_000);
    assert_eq!(count(&a[0].owned), 4);

    // A member that does not revoke within its rebalance timeout is removed too.
    let mut c = Client::new("c");
    beat(&mut g, &mut c, &v, 50_000);
    let mut stubborn = a[0].clone();
    let r = g.heartbeat(stubborn.request(), &v, &settings(), 50_001);
    let (reply, _) = r.as_ref().unwrap();
    assert_eq!(count(reply.assignment.as_ref().unwrap()), 2);
    // It keeps reporting all four.
    for t in [55_000, 60_000, 70_000] {
        let _ = g.heartbeat(stubborn.request(), &v, &settings(), t);
    }
    stubborn.epoch = g.members["a"].current.epoch;
    let (gone, _) = g.tick(&v, 50_001 + 30_000);
    assert_eq!(gone, vec!["a".to_string()]);
    beat(&mut g, &mut c, &v, 80_002);
    assert_eq!(count(&c.owned), 4);
}

#[test]
fn a_static_member_comes_back_to_its_partitions() {
    let v = View::new(&[("t", 4)]);
    let mut g = ConsumerGroup::new("g", 0);
    let mut a = Client::new("a1");
    a.instance = Some("A".into());
    let mut b = Client::new("b");
    let mut clients = vec![a, b.clone()];
    settle(&mut g, &mut clients, &v, 0);
    let owned = clients[0].owned.clone();
    let epoch = g.epoch;

    // Leaves for a while (epoch -2): keeps its partitions, nobody else gets them.
    let mut hb = clients[0].request();
    hb.member_epoch = STATIC_LEAVE_EPOCH;
    let (r, _) = g.heartbeat(hb, &v, &settings(), 1).unwrap();
    assert_eq!(r.member_epoch, STATIC_LEAVE_EPOCH);
    b = clients[1].clone();
    beat(&mut g, &mut b, &v, 2);
    assert_eq!(count(&b.owned), 2);
    assert_eq!(g.epoch, epoch, "a temporary leave changes nothing");

    // A second process with the same instance id while the first has not left: refused.
    let mut other = Client::new("a-other");
    other.instance = Some("A".into());
    let mut g2 = ConsumerGroup::new("g2", 0);
    let mut active = Client::new("x1");
    active.instance = Some("X".into());
    beat(&mut g2, &mut active, &v, 2);
    let mut dup = Client::new("x2");
    dup.instance = Some("X".into());
    assert_eq!(
        g2.heartbeat(dup.request(), &v, &settings(), 3).unwrap_err(),
        Error::UnreleasedInstanceId
    );

    // The restarted instance, under a new member id, gets its old partitions back.
    beat(&mut g, &mut other, &v, 3);
    assert_eq!(other.owned, owned);
    assert!(!g.members.contains_key("a1"));
    // And the old member id is fenced by the instance id.
    let mut stale = clients[0].clone();
    stale.epoch = 1;
    assert_eq!(
        g.heartbeat(stale.request(), &v, &settings(), 4)
            .unwrap_err(),
        Error::FencedInstanceId
    );
}

#[test]
fn regex_subscriptions_follow_new_topics() {
    let mut v = View::new(&[("orders-eu", 2), ("payments", 2)]);
    let mut g = ConsumerGroup::new("g", 0);
    let mut a = Client::new("a");
    a.topics = Vec::new();
    let mut hb = a.request();
    hb.subscribed_topic_names = Some(Vec::new());
    hb.subscribed_topic_regex = Some("orders-.*".into());
    let r = g.heartbeat(hb, &v, &settings(), 0);
    a.apply(&r);
    assert_eq!(a.owned.keys().collect::<Vec<_>>(), vec![&v.id("orders-eu")]);
    let epoch = g.epoch;
    v.add("orders-us", 3);
    v.add("xorders-us", 3);
    beat(&mut g, &mut a, &v, 1);
    assert_eq!(g.epoch, epoch + 1, "a new matching topic bumps the epoch");
    assert_eq!(count(&a.owned), 5);
    assert!(g.subscribes_to("orders-us") && !g.subscribes_to("payments"));
}

#[test]
fn random_interleavings_never_give_a_partition_two_owners() {
    let seed: u64 = std::env::var("GREGOR_CG_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("consumer group simulation seed {seed} (GREGOR_CG_SEED)");
    let mut rng = Rng::new(seed);
    for _round in 0..30 {
        let v = View::new(&[
            ("t", 1 + rng.below(11) as i32),
            ("u", 1 + rng.below(4) as i32),
        ]);
        let mut g = ConsumerGroup::new("g", 0);
        let mut clients: Vec<Client> = Vec::new();
        let mut records = Vec::new();
        let mut next_id = 0;
        let mut now = 0i64;
        for _step in 0..400 {
            now += rng.below(300) as i64;
            match rng.below(100) {
                0..=7 if clients.len() < 6 => {
                    let mut c = Client::new(&format!("m{next_id}"));
                    next_id += 1;
                    if rng.chance(2) {
                        c.topics = vec!["t".into(), "u".into()];
                    }
                    records.extend(beat(&mut g, &mut c, &v, now));
                    clients.push(c);
                }
                8..=10 if !clients.is_empty() => {
                    // Leaves cleanly.
                    let i = rng.below(clients.len());
                    let c = clients.remove(i);
                    let mut hb = c.request();
                    hb.member_epoch = LEAVE_EPOCH;
                    if let Ok((_, r)) = g.heartbeat(hb, &v, &settings(), now) {
                        records.extend(r);
                    }
                }
                11..=12 if !clients.is_empty() => {
                    // Dies: its partitions are gone with it; the session ends later.
                    // The living keep heartbeating meanwhile (a live member removed for
                    // silence would be a zombie, as in Kafka, until its next heartbeat).
                    clients.remove(rng.below(clients.len()));
                    for _ in 0..10 {
                        now += 4_500;
                        for c in clients.iter_mut() {
                            records.extend(beat(&mut g, c, &v, now));
                        }
                        records.extend(g.tick(&v, now).1);
                        assert_disjoint(&clients);
                    }
                }
                13..=20 if !clients.is_empty() => {
                    // A heartbeat whose answer is lost.
                    let i = rng.below(clients.len());
                    if let Ok((_, r)) = g.heartbeat(clients[i].request(), &v, &settings(), now) {
                        records.extend(r);
                    }
                    clients[i].full = true;
                }
                _ if !clients.is_empty() => {
                    let i = rng.below(clients.len());
                    records.extend(beat(&mut g, &mut clients[i], &v, now));
                }
                _ => {}
            }
            assert_disjoint(&clients);
        }
        if !clients.is_empty() {
            for _ in 0..20 {
                for c in clients.iter_mut() {
                    records.extend(beat(&mut g, c, &v, now));
                }
                assert_disjoint(&clients);
            }
            assert_eq!(state_name(&g), "Stable");
            let total: usize = clients.iter().map(|c| count(&c.owned)).sum();
            let subscribed_u = clients.iter().any(|c| c.topics.len() == 2);
            let expected = v.topics["t"].partitions
                + if subscribed_u {
                    v.topics["u"].partitions
                } else {
                    0
                };
            assert_eq!(total, expected as usize, "every partition has an owner");
        }
        // Replaying what was written gives the same group.
        let mut r = ConsumerGroup::new("g", 0);
        for rec in records {
            r.replay(rec);
        }
        assert_eq!(r.epoch, g.epoch);
        assert_eq!(r.assignment_epoch, g.assignment_epoch);
        assert_eq!(r.members, g.members);
        assert_eq!(r.target, g.target);
        assert_eq!(r.subscribed, g.subscribed);
        assert_eq!(r.owners, g.owners);
    }
}

/// A consumer protocol subscription blob (v1: topics, no user data, owned partitions).
fn subscription(topics: &[&str], owned: &[(&str, &[i32])]) -> Bytes {
    use bytes::BufMut;
    let mut b = bytes::BytesMut::new();
    b.put_i16(1);
    b.put_i32(topics.len() as i32);
    for t in topics {
        b.put_i16(t.len() as i16);
        b.put_slice(t.as_bytes());
    }
    b.put_i32(-1);
    b.put_i32(owned.len() as i32);
    for (t, ps) in owned {
        b.put_i16(t.len() as i16);
        b.put_slice(t.as_bytes());
        b.put_i32(ps.len() as i32);
        for p in *ps {
            b.put_i32(*p);
        }
    }
    b.freeze()
}

fn classic_join(id: &str, owned: &[(&str, &[i32])]) -> ClassicJoin {
    ClassicJoin {
        member_id: id.into(),
        new_member_id: format!("{id}-new"),
        client_id: "classic".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), subscription(&["t"], owned))],
        require_known_member_id: true,
        ..ClassicJoin::default()
    }
}

fn seed(id: &str, partitions: &[i32]) -> ClassicSeed {
    ClassicSeed {
        id: id.into(),
        instance_id: None,
        client_id: "classic".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        protocols: vec![("range".into(), subscription(&["t"], &[]))],
        assignment: codec::encode_assignment(1, &[("t".to_string(), partitions.to_vec())]),
    }
}

#[test]
fn a_classic_group_upgrades_online_and_downgrades_back() {
    let v = View::new(&[("t", 4)]);
    let s = settings();
    let t = v.id("t");
    // A stable classic group at generation 5: A owns 0-1, B owns 2-3.
    let (mut g, records) = ConsumerGroup::from_classic(
        "g",
        5,
        "range",
        vec![seed("A", &[0, 1]), seed("B", &[2, 3])],
        &v,
        &s,
        0,
    );
    assert_eq!((g.epoch, g.assignment_epoch), (5, 5));
    assert_eq!(g.members["A"].current.assigned, [(t, [0, 1].into())].into());
    assert!(records.contains(&Record::GroupEpoch(Some(5))));
    assert_eq!(g.classic_heartbeat("A", None, 5, &s, 1), Ok(()));

    // A consumer-protocol member joins: the epoch moves, classic members are told to rejoin,
    // and it gets nothing until they give partitions up.
    let mut c = Client::new("C");
    beat(&mut g, &mut c, &v, 2);
    assert_eq!(g.epoch, 6);
    assert!(c.owned.is_empty());
    assert_eq!(
        g.classic_heartbeat("A", None, 5, &s, 3),
        Err(Error::RebalanceInProgress)
    );
    assert_eq!(
        g.classic_heartbeat("A", None, 4, &s, 3),
        Err(Error::IllegalGeneration)
    );
    // An eager member rejoins owning nothing: what it must give up is released at once,
    // and its sync carries what it keeps.
    let (j, _) = g.classic_join(classic_join("A", &[]), &v, &s, 4).unwrap();
    assert_eq!(j.generation, 6);
    assert_eq!(j.protocol, "range");
    let (a_assigned, version, _) = g.classic_sync("A", None, 6, &s, 4).unwrap();
    assert_eq!(version, 1);
    // A cooperative member reports what it owns: revocation first, then the next epoch.
    let (jb, _) = g
        .classic_join(classic_join("B", &[("t", &[2, 3])]), &v, &s, 5)
        .unwrap();
    let (b_assigned, _, _) = g.classic_sync("B", None, jb.generation, &s, 5).unwrap();
    beat(&mut g, &mut c, &v, 6);
    let mut all = vec![a_assigned.clone(), b_assigned.clone(), c.owned.clone()];
    let total: usize = all.iter().map(count).sum();
    assert!(total <= 4);
    // B reports its revoked partition gone by rejoining with what it kept.
    let kept: Vec<i32> = b_assigned
        .get(&t)
        .map(|p| p.iter().copied().collect())
        .unwrap_or_default();
    let (jb, _) = g
        .classic_join(classic_join("B", &[("t", &kept)]), &v, &s, 7)
        .unwrap();
    let (b_assigned, _, _) = g.classic_sync("B", None, jb.generation, &s, 7).unwrap();
    for _ in 0..3 {
        beat(&mut g, &mut c, &v, 8);
    }
    all = vec![a_assigned, b_assigned, c.owned.clone()];
    let mut seen = std::collections::BTreeSet::new();
    for a in &all {
        for tp in pairs(a) {
            assert!(seen.insert(tp), "{tp:?} twice in {all:?}");
        }
    }
    assert_eq!(seen.len(), 4, "{all:?}");
    assert!(!g.all_classic());

    // Unknown members and protocol mismatches are refused as a classic group would.
    assert_eq!(
        g.classic_sync("nobody", None, 6, &s, 9).unwrap_err(),
        Error::UnknownMemberId
    );
    let mut bad = classic_join("", &[]);
    bad.protocol_type = "connect".into();
    assert_eq!(
        g.classic_join(bad, &v, &s, 9).unwrap_err(),
        Error::InconsistentGroupProtocol
    );
    assert_eq!(
        g.classic_join(classic_join("", &[]), &v, &s, 9)
            .unwrap_err(),
        Error::MemberIdRequired("-new".into())
    );

    // The consumer-protocol member leaves: only classic members remain, so the group turns
    // back into a classic group at its epoch, each keeping its current partitions.
    let mut hb = c.request();
    hb.member_epoch = LEAVE_EPOCH;
    g.heartbeat(hb, &v, &s, 10).unwrap();
    assert!(g.all_classic());
    let (generation, protocol, members) = g.classic_view(&v).unwrap();
    assert_eq!(generation, g.epoch);
    assert_eq!(protocol, "range");
    assert_eq!(members.len(), 2);
    let tombstones = g.all_tombstones();
    assert!(tombstones.contains(&Record::GroupEpoch(None)));
    assert!(tombstones.contains(&Record::Member("A".into(), None)));
    for m in &members {
        let named = codec::decode_assignment(&m.assignment).unwrap();
        let back = classic::by_name(&g.members[&m.id].current.assigned, &v);
        assert_eq!(named, back);
    }
}
