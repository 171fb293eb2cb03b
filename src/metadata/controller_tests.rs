//! Table tests of the controller's decisions, on images built from records.

use super::*;
use crate::config::alter::AlterOp;

fn settings() -> Settings {
    Settings {
        defaults: LogConfig::default(),
        default_replication_factor: 3,
        groups: crate::config::GroupConfig::default(),
    }
}

fn run(image: &mut Snapshot, cmd: Command) -> Result<Reply, MetadataError> {
    let (records, reply) = plan(image, &cmd, &settings())?;
    for r in records {
        image.apply(r, &LogConfig::default());
    }
    Ok(reply)
}

fn cluster(nodes: &[NodeId]) -> Snapshot {
    let mut s = Snapshot::default();
    for n in nodes {
        let incarnation = Uuid::new_v4();
        run(
            &mut s,
            Command::RegisterBroker {
                node: *n,
                host: "127.0.0.1".into(),
                port: 9000 + *n as u16,
                incarnation,
                rack: None,
                endpoints: Vec::new(),
            },
        )
        .unwrap();
        assert!(s.brokers[n].fenced, "a registration starts fenced");
        run(
            &mut s,
            Command::UnfenceBroker {
                node: *n,
                incarnation,
            },
        )
        .unwrap();
    }
    s
}

/// A broker restarts: a new incarnation registers, then serves.
fn rejoin(s: &mut Snapshot, node: NodeId) {
    let incarnation = Uuid::new_v4();
    let register = Command::RegisterBroker {
        node,
        host: "h".into(),
        port: 1,
        incarnation,
        rack: None,
        endpoints: Vec::new(),
    };
    run(s, register).unwrap();
    run(s, Command::UnfenceBroker { node, incarnation }).unwrap();
}

fn create(s: &mut Snapshot, name: &str, partitions: i32, rf: i16) -> Result<Reply, MetadataError> {
    run(
        s,
        Command::CreateTopic {
            name: name.into(),
            partitions,
            replication_factor: rf,
            configs: BTreeMap::new(),
            validate_only: false,
        },
    )
}

fn part(s: &Snapshot, t: &str, p: i32) -> PartitionMeta {
    s.partition(t, p).unwrap().clone()
}

#[test]
fn placement_spreads_replicas_and_leaders() {
    let mut s = cluster(&[1, 2, 3]);
    create(&mut s, "t", 6, -1).unwrap();
    let mut leaders = BTreeMap::new();
    for p in 0..6 {
        let m = part(&s, "t", p);
        let mut sorted = m.replicas.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![1, 2, 3], "partition {p}");
        assert_eq!(m.leader, m.replicas[0]);
        assert_eq!(m.isr, m.replicas);
        *leaders.entry(m.leader).or_insert(0) += 1;
    }
    assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
    let err = create(&mut s, "u", 1, 4).unwrap_err();
    assert!(
        err.to_string().contains("only 3 broker(s) are registered"),
        "{err}"
    );
}

#[test]
fn a_fenced_leader_hands_over_in_replica_order_and_the_last_member_stays() {
    let mut s = cluster(&[1, 2, 3]);
    create(&mut s, "t", 3, 3).unwrap();
    let p0 = part(&s, "t", 0);
    let first = p0.leader;
    run(&mut s, Command::FenceBroker { node: first }).unwrap();
    let after = part(&s, "t", 0);
    assert_eq!(after.leader, p0.replicas[1]);
    assert_eq!(after.leader_epoch, p0.leader_epoch + 1);
    assert!(!after.isr.contains(&first));
    assert_eq!(after.partition_epoch, p0.partition_epoch + 1);
    // Fence the other two: the last in-sync replica stays in the ISR, leaderless.
    for n in [p0.replicas[1], p0.replicas[2]] {
        run(&mut s, Command::FenceBroker { node: n }).unwrap();
    }
    let dead = part(&s, "t", 0);
    assert_eq!(dead.leader, NO_LEADER);
    assert_eq!(dead.isr, vec![p0.replicas[2]]);
    // The first one back is not in sync: no leader. The last member back leads again.
    rejoin(&mut s, first);
    assert_eq!(part(&s, "t", 0).leader, NO_LEADER);
    rejoin(&mut s, p0.replicas[2]);
    let back = part(&s, "t", 0);
    assert_eq!(back.leader, p0.replicas[2]);
    assert!(back.leader_epoch > dead.leader_epoch);
}

#[test]
fn a_restart_with_a_new_incarnation_fences_the_old_one_first() {
    let mut s = cluster(&[1, 2, 3]);
    create(&mut s, "t", 1, 3).unwrap();
    let p = part(&s, "t", 0);
    let leader = p.leader;
    let inc = s.brokers[&leader].incarnation;
    // The same registration again (a retry) changes nothing.
    let v = s.version;
    let same = Command::RegisterBroker {
        node: leader,
        host: "127.0.0.1".into(),
        port: 9000 + leader as u16,
        incarnation: inc,
        rack: None,
        endpoints: Vec::new(),
    };
    run(&mut s, same).unwrap();
    assert_eq!(s.version, v);
    let new_inc = Uuid::new_v4();
    let restarted = Command::RegisterBroker {
        node: leader,
        host: "127.0.0.1".into(),
        port: 9000 + leader as u16,
        incarnation: new_inc,
        rack: None,
        endpoints: Vec::new(),
    };
    run(&mut s, restarted).unwrap();
    let after = part(&s, "t", 0);
    assert_ne!(
        after.leader, leader,
        "leadership moved off the restarted broker"
    );
    assert!(!after.isr.contains(&leader), "it must catch up to rejoin");
    assert!(s.brokers[&leader].fenced, "fenced until it serves");
    // The old incarnation cannot unfence the new registration; the new one can.
    let v = s.version;
    run(
        &mut s,
        Command::UnfenceBroker {
            node: leader,
            incarnation: inc,
        },
    )
    .unwrap();
    assert_eq!((s.version, s.brokers[&leader].fenced), (v, true));
    run(
        &mut s,
        Command::UnfenceBroker {
            node: leader,
            incarnation: new_inc,
        },
    )
    .unwrap();
    assert!(!s.brokers[&leader].fenced, "serving again");
}

#[test]
fn a_leaderless_partition_waits_for_its_replica_to_serve() {
    let mut s = cluster(&[1]);
    create(&mut s, "t", 1, 1).unwrap();
    run(&mut s, Command::FenceBroker { node: 1 }).unwrap();
    assert_eq!(part(&s, "t", 0).leader, NO_LEADER);
    let inc = Uuid::new_v4();
    run(
        &mut s,
        Command::RegisterBroker {
            node: 1,
            host: "127.0.0.1".into(),
            port: 9001,
            incarnation: inc,
            rack: None,
            endpoints: Vec::new(),
        },
    )
    .unwrap();
    assert_eq!(
        part(&s, "t", 0).leader,
        NO_LEADER,
        "registered, still opening its logs: no leadership yet"
    );
    run(
        &mut s,
        Command::UnfenceBroker {
            node: 1,
            incarnation: inc,
        },
    )
    .unwrap();
    assert_eq!(part(&s, "t", 0).leader, 1);
}

#[test]
fn unclean_election_only_where_the_topic_allows_it() {
    let mut s = cluster(&[1, 2]);
    let mut configs = BTreeMap::new();
    configs.insert(
        "unclean.leader.election.enable".to_string(),
        "true".to_string(),
    );
    run(
        &mut s,
        Command::CreateTopic {
            name: "unclean".into(),
            partitions: 1,
            replication_factor: 2,
            configs,
            validate_only: false,
        },
    )
    .unwrap();
    create(&mut s, "clean", 1, 2).unwrap();
    // Shrink both ISRs to their leader, then fence the leader.
    for t in ["unclean", "clean"] {
        let p = part(&s, t, 0);
        run(
            &mut s,
            Command::AlterPartition {
                topic: t.into(),
                partition: 0,
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                isr: vec![p.leader],
            },
        )
        .unwrap();
    }
    let lead_u = part(&s, "unclean", 0).leader;
    run(&mut s, Command::FenceBroker { node: lead_u }).unwrap();
    let u = part(&s, "unclean", 0);
    assert_ne!(u.leader, NO_LEADER);
    assert_eq!(u.isr, vec![u.leader]);
    let c = part(&s, "clean", 0);
    if c.replicas[0] == lead_u {
        assert_eq!(c.leader, NO_LEADER, "{c:?}");
    }
}

#[test]
fn alter_partition_checks_leader_epochs_and_members() {
    let mut s = cluster(&[1, 2, 3]);
    create(&mut s, "t", 1, 3).unwrap();
    let p = part(&s, "t", 0);
    let ask = |leader, leader_epoch, partition_epoch, isr: Vec<NodeId>| Command::AlterPartition {
        topic: "t".into(),
        partition: 0,
        leader,
        leader_epoch,
        partition_epoch,
        isr,
    };
    let other = p.replicas[1];
    type Case = (Command, fn(&MetadataError) -> bool);
    let cases: Vec<Case> = vec![
        (
            ask(other, p.leader_epoch, p.partition_epoch, vec![other]),
            |e| matches!(e, MetadataError::FencedLeaderEpoch(_)),
        ),
        (
            ask(
                p.leader,
                p.leader_epoch,
                p.partition_epoch + 5,
                vec![p.leader],
            ),
            |e| matches!(e, MetadataError::InvalidUpdateVersion(_)),
        ),
        (
            ask(p.leader, p.leader_epoch, p.partition_epoch, vec![other]),
            |e| matches!(e, MetadataError::IneligibleReplica(_)),
        ),
        (
            ask(
                p.leader,
                p.leader_epoch,
                p.partition_epoch,
                vec![p.leader, 9],
            ),
            |e| matches!(e, MetadataError::IneligibleReplica(_)),
        ),
    ];
    for (cmd, check) in cases {
        let e = run(&mut s, cmd.clone()).unwrap_err();
        assert!(check(&e), "{cmd:?}: {e}");
    }
    let reply = run(
        &mut s,
        ask(p.leader, p.leader_epoch, p.partition_epoch, vec![p.leader]),
    )
    .unwrap();
    assert_eq!(
        reply,
        Reply::Partition {
            isr: vec![p.leader],
            partition_epoch: p.partition_epoch + 1
        }
    );
    assert_eq!(
        part(&s, "t", 0).leader_epoch,
        p.leader_epoch,
        "same leader, same epoch"
    );
}

#[test]
fn preferred_leaders_come_back() {
    let mut s = cluster(&[1, 2, 3]);
    create(&mut s, "t", 3, 3).unwrap();
    let before: Vec<NodeId> = (0..3).map(|p| part(&s, "t", p).leader).collect();
    run(&mut s, Command::FenceBroker { node: before[0] }).unwrap();
    assert_ne!(part(&s, "t", 0).leader, before[0]);
    // Back, and once in sync again, preferred election returns its partitions.
    rejoin(&mut s, before[0]);
    run(&mut s, Command::ElectPreferredLeaders).unwrap();
    assert_ne!(part(&s, "t", 0).leader, before[0], "not in sync yet");
    let p = part(&s, "t", 0);
    let mut isr = p.isr.clone();
    isr.push(before[0]);
    run(
        &mut s,
        Command::AlterPartition {
            topic: "t".into(),
            partition: 0,
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr,
        },
    )
    .unwrap();
    run(&mut s, Command::ElectPreferredLeaders).unwrap();
    let after: Vec<NodeId> = (0..3).map(|p| part(&s, "t", p).leader).collect();
    assert_eq!(after, before);
}

#[test]
fn topics_partitions_and_producer_ids() {
    let mut s = cluster(&[1]);
    create(&mut s, "t", 2, 1).unwrap();
    assert!(matches!(
        create(&mut s, "t", 1, 1),
        Err(MetadataError::TopicExists(_))
    ));
    assert!(matches!(
        create(&mut s, "t.x", 1, 1).and(create(&mut s, "t_x", 1, 1)),
        Err(MetadataError::InvalidTopic(_))
    ));
    run(
        &mut s,
        Command::CreatePartitions {
            name: "t".into(),
            total: 4,
            validate_only: false,
        },
    )
    .unwrap();
    assert_eq!(s.topics["t"].partitions, 4);
    assert_eq!(part(&s, "t", 3).replicas, vec![1]);
    let a = run(&mut s, Command::AllocateProducerIds { node: 1 }).unwrap();
    let b = run(&mut s, Command::AllocateProducerIds { node: 1 }).unwrap();
    assert_eq!(
        a,
        Reply::ProducerIds {
            start: 0,
            end: PRODUCER_ID_BLOCK
        }
    );
    assert_eq!(
        b,
        Reply::ProducerIds {
            start: PRODUCER_ID_BLOCK,
            end: 2 * PRODUCER_ID_BLOCK
        }
    );
    run(&mut s, Command::DeleteTopic { name: "t".into() }).unwrap();
    assert!(s.topic("t").is_none());
}

fn alter(
    s: &mut Snapshot,
    resource: ConfigResource,
    changes: Vec<ConfigChange>,
    replace: bool,
    validate_only: bool,
) -> Result<Reply, MetadataError> {
    run(
        s,
        Command::AlterConfigs {
            resource,
            changes,
            replace,
            validate_only,
        },
    )
}

fn topic(name: &str) -> ConfigResource {
    ConfigResource::Topic(name.to_string())
}

#[test]
fn topic_config_changes_are_validated_and_applied() {
    let mut s = cluster(&[1]);
    create(&mut s, "t", 1, 1).unwrap();
    let set = |n: &str, v: &str| ConfigChange::set(n, v);
    alter(
        &mut s,
        topic("t"),
        vec![set("retention.ms", "1000")],
        false,
        false,
    )
    .unwrap();
    assert_eq!(s.topics["t"].log_config.retention_ms, 1000);
    assert_eq!(s.topics["t"].configs["retention.ms"], "1000");

    // validate_only checks but changes nothing.
    alter(
        &mut s,
        topic("t"),
        vec![set("retention.ms", "5")],
        false,
        true,
    )
    .unwrap();
    assert_eq!(s.topics["t"].log_config.retention_ms, 1000);

    // Bad names and values: Kafka's messages, nothing applied.
    let e = alter(
        &mut s,
        topic("t"),
        vec![set("retention.ms", "x")],
        false,
        false,
    )
    .unwrap_err();
    assert!(matches!(e, MetadataError::InvalidConfig(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        "Invalid value x for configuration retention.ms: Not a number of type LONG"
    );
    let e = alter(&mut s, topic("t"), vec![set("no.such", "1")], false, false).unwrap_err();
    assert_eq!(e.to_string(), "Unknown topic config name: no.such");
    let e = alter(
        &mut s,
        topic("nope"),
        vec![set("retention.ms", "1")],
        false,
        false,
    )
    .unwrap_err();
    assert!(matches!(e, MetadataError::UnknownTopic(_)), "{e:?}");
    let append = ConfigChange {
        name: "retention.ms".into(),
        op: AlterOp::Append,
        value: Some("1".into()),
    };
    let e = alter(&mut s, topic("t"), vec![append], false, false).unwrap_err();
    assert!(matches!(e, MetadataError::InvalidConfig(_)), "{e:?}");
    let e = alter(
        &mut s,
        topic("t"),
        vec![set("retention.ms", "1"), set("retention.ms", "2")],
        false,
        false,
    )
    .unwrap_err();
    assert!(matches!(e, MetadataError::InvalidRequest(_)), "{e:?}");
    // min > max compaction lag only shows once both are known.
    let e = alter(
        &mut s,
        topic("t"),
        vec![
            set("min.compaction.lag.ms", "10"),
            set("max.compaction.lag.ms", "5"),
        ],
        false,
        false,
    )
    .unwrap_err();
    assert!(e.to_string().contains("min.compaction.lag.ms (10)"), "{e}");
    assert_eq!(s.topics["t"].log_config.retention_ms, 1000);

    // APPEND starts from the value in effect; DELETE returns to the default.
    let append = ConfigChange {
        name: "cleanup.policy".into(),
        op: AlterOp::Append,
        value: Some("compact".into()),
    };
    alter(&mut s, topic("t"), vec![append], false, false).unwrap();
    assert_eq!(s.topics["t"].log_config.cleanup_policy, "delete,compact");
    alter(
        &mut s,
        topic("t"),
        vec![ConfigChange::delete("retention.ms")],
        false,
        false,
    )
    .unwrap();
    assert_eq!(
        s.topics["t"].log_config.retention_ms,
        LogConfig::default().retention_ms
    );
    assert!(!s.topics["t"].configs.contains_key("retention.ms"));

    // The legacy AlterConfigs replaces the whole set of overrides.
    alter(
        &mut s,
        topic("t"),
        vec![set("segment.bytes", "4096")],
        true,
        false,
    )
    .unwrap();
    let t = &s.topics["t"];
    assert_eq!(t.configs.len(), 1, "{:?}", t.configs);
    assert_eq!(t.log_config.segment_bytes, 4096);
    assert_eq!(t.log_config.cleanup_policy, "delete");
}

#[test]
fn dynamic_broker_defaults_reach_topics_without_overrides() {
    let mut s = cluster(&[1, 2]);
    s.node = Some(1);
    create(&mut s, "plain", 1, 1).unwrap();
    run(
        &mut s,
        Command::CreateTopic {
            name: "own".into(),
            partitions: 1,
            replication_factor: 1,
            configs: [("retention.ms".to_string(), "7".to_string())].into(),
            validate_only: false,
        },
    )
    .unwrap();
    let default = ConfigResource::Broker(None);
    alter(
        &mut s,
        default.clone(),
        vec![ConfigChange::set("log.retention.ms", "5000")],
        false,
        false,
    )
    .unwrap();
    assert_eq!(s.topics["plain"].log_config.retention_ms, 5000);
    assert_eq!(s.topics["own"].log_config.retention_ms, 7);

    // This node's own value wins over the cluster default; another node's does not apply here.
    alter(
        &mut s,
        ConfigResource::Broker(Some(1)),
        vec![ConfigChange::set("log.retention.ms", "6000")],
        false,
        false,
    )
    .unwrap();
    alter(
        &mut s,
        ConfigResource::Broker(Some(2)),
        vec![ConfigChange::set("log.retention.ms", "9000")],
        false,
        false,
    )
    .unwrap();
    assert_eq!(s.topics["plain"].log_config.retention_ms, 6000);
    // Topics created later start from the dynamic defaults too.
    create(&mut s, "later", 1, 1).unwrap();
    assert_eq!(s.topics["later"].log_config.retention_ms, 6000);

    // A restored image resolves the same for the same node.
    let back = Snapshot::restore(&s.to_bytes(), &LogConfig::default(), Some(1)).unwrap();
    assert_eq!(back.topics["plain"].log_config.retention_ms, 6000);
    let other = Snapshot::restore(&s.to_bytes(), &LogConfig::default(), Some(2)).unwrap();
    assert_eq!(other.topics["plain"].log_config.retention_ms, 9000);

    // Deleting the dynamic values returns to the static default.
    for node in [None, Some(1), Some(2)] {
        alter(
            &mut s,
            ConfigResource::Broker(node),
            vec![ConfigChange::delete("log.retention.ms")],
            false,
            false,
        )
        .unwrap();
    }
    assert_eq!(
        s.topics["plain"].log_config.retention_ms,
        LogConfig::default().retention_ms
    );
    assert!(s.broker_configs.is_empty());

    // Settings that cannot change at run time, and bad values, are refused as Kafka does.
    let e = alter(
        &mut s,
        default.clone(),
        vec![ConfigChange::set("log.dirs", "/x")],
        false,
        false,
    )
    .unwrap_err();
    assert!(matches!(e, MetadataError::InvalidRequest(_)), "{e:?}");
    assert!(
        e.to_string()
            .contains("Cannot update these configs dynamically: Set(log.dirs)"),
        "{e}"
    );
    let e = alter(
        &mut s,
        default,
        vec![ConfigChange::set("log.segment.bytes", "3")],
        false,
        false,
    )
    .unwrap_err();
    assert!(matches!(e, MetadataError::InvalidRequest(_)), "{e:?}");
    assert!(
        e.to_string()
            .contains("Invalid value 3 for configuration log.segment.bytes"),
        "{e}"
    );
}

#[test]
fn acls_are_created_once_and_deleted_by_filter() {
    use crate::security::acl::{
        AclBinding, AclBindingFilter, AclOperation, AclPermissionType, PatternType, ResourceType,
    };
    let acl = |name: &str, principal: &str, op: AclOperation| AclBinding {
        resource_type: ResourceType::Topic,
        resource_name: name.to_string(),
        pattern_type: PatternType::Literal,
        principal: principal.to_string(),
        host: "*".to_string(),
        operation: op,
        permission: AclPermissionType::Allow,
    };
    let mut s = cluster(&[1]);
    let a = acl("orders", "User:alice", AclOperation::Write);
    let b = acl("orders", "User:bob", AclOperation::Read);
    let bindings = vec![a.clone(), a.clone(), b.clone()];
    assert_eq!(
        run(&mut s, Command::CreateAcls { bindings }).unwrap(),
        Reply::Done
    );
    assert_eq!(s.acls.len(), 2);
    // Again: nothing new.
    let bindings = vec![a.clone()];
    assert_eq!(
        run(&mut s, Command::CreateAcls { bindings }).unwrap(),
        Reply::Done
    );
    assert_eq!(s.acls.len(), 2);
    // Two filters matching alice's ACL both report it; it is removed once.
    let alice = AclBindingFilter {
        principal: Some("User:alice".to_string()),
        ..AclBindingFilter::any()
    };
    let writes = AclBindingFilter {
        operation: AclOperation::Write,
        ..AclBindingFilter::any()
    };
    let nobody = AclBindingFilter {
        principal: Some("User:carol".to_string()),
        ..AclBindingFilter::any()
    };
    let filters = vec![alice, writes, nobody];
    assert_eq!(
        run(&mut s, Command::DeleteAcls { filters }).unwrap(),
        Reply::AclsDeleted(vec![vec![a.clone()], vec![a], vec![]])
    );
    assert_eq!(s.acls.iter().collect::<Vec<_>>(), vec![&b]);
    // The image round-trips through its snapshot form with its ACLs.
    let back = Snapshot::restore(&s.to_bytes(), &LogConfig::default(), Some(1)).unwrap();
    assert_eq!(back.acls.iter().collect::<Vec<_>>(), vec![&b]);
}

#[test]
fn group_config_changes_are_validated_and_applied() {
    let mut s = cluster(&[1]);
    let g = || ConfigResource::Group("g".to_string());
    let set = |n: &str, v: &str| ConfigChange::set(n, v);
    alter(
        &mut s,
        g(),
        vec![
            set("share.auto.offset.reset", "earliest"),
            set("share.record.lock.duration.ms", "2000"),
        ],
        false,
        false,
    )
    .unwrap();
    assert_eq!(s.group_configs["g"]["share.auto.offset.reset"], "earliest");
    assert_eq!(
        s.group_configs["g"]["share.record.lock.duration.ms"],
        "2000"
    );

    // Refused with Kafka's messages; nothing applied.
    for (changes, message) in [
        (
            vec![set("share.auto.offset.rest", "earliest")],
            "Unknown group config name: share.auto.offset.rest",
        ),
        (
            vec![set("share.heartbeat.interval.ms", "50000")],
            "share.session.timeout.ms must be greater than share.heartbeat.interval.ms",
        ),
    ] {
        let e = alter(&mut s, g(), changes, false, false).unwrap_err();
        assert!(
            matches!(&e, MetadataError::InvalidConfig(m) if m == message),
            "{e:?}"
        );
    }
    let e = alter(
        &mut s,
        g(),
        vec![set("share.record.lock.duration.ms", "500")],
        false,
        false,
    )
    .unwrap_err();
    assert!(matches!(e, MetadataError::InvalidConfig(_)), "{e:?}");
    let mut append = set("share.auto.offset.reset", "latest");
    append.op = AlterOp::Append;
    assert!(alter(&mut s, g(), vec![append], false, false).is_err());
    assert_eq!(s.group_configs["g"].len(), 2);

    // The legacy AlterConfigs replaces them all; removing the last drops the group's entry.
    alter(
        &mut s,
        g(),
        vec![set("share.auto.offset.reset", "latest")],
        true,
        false,
    )
    .unwrap();
    assert_eq!(s.group_configs["g"].len(), 1);
    let delete = ConfigChange::delete("share.auto.offset.reset");
    alter(&mut s, g(), vec![delete], false, false).unwrap();
    assert!(!s.group_configs.contains_key("g"));
}
