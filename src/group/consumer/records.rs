//! The records of consumer groups in `__consumer_offsets`, in Kafka's schemas, so the topic
//! reads the same as Kafka's: keys 3 to 8 (ConsumerGroupMetadata, PartitionMetadata,
//! MemberMetadata, TargetAssignmentMetadata, TargetAssignmentMember, CurrentMemberAssignment),
//! each an i16 version then the fields; values at version 0, in the flexible encoding (compact
//! strings and arrays, tagged fields). A null value is a tombstone.

use bytes::{BufMut, Bytes, BytesMut};

use super::{
    Assignment, ClassicMember, CurrentAssignment, MemberMetadata, MemberState, Record,
    SubscribedTopic,
};
use crate::group::codec::{
    get_compact_len, get_compact_opt_str, get_compact_str, get_i16, get_i32, get_i8, get_str,
    get_uuid, get_uvarint, need, put_compact_len, put_compact_opt_str, put_compact_str,
    put_no_tags, put_str, put_uvarint, skip_tags, DecodeError,
};

const GROUP_EPOCH: i16 = 3;
const SUBSCRIPTION: i16 = 4;
const MEMBER: i16 = 5;
const TARGET_EPOCH: i16 = 6;
const TARGET: i16 = 7;
const CURRENT: i16 = 8;

/// Whether a key version is one of these records'.
pub fn is_consumer_key(version: i16) -> bool {
    (GROUP_EPOCH..=CURRENT).contains(&version)
}

fn key(version: i16, group: &str, member: Option<&str>) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(version);
    put_str(&mut b, group);
    if let Some(m) = member {
        put_str(&mut b, m);
    }
    b.freeze()
}

fn value(fill: impl FnOnce(&mut BytesMut)) -> Bytes {
    value_with_tag(fill, None)
}

/// A value whose tagged-field section holds tag 0 when `tag0` is given.
fn value_with_tag(fill: impl FnOnce(&mut BytesMut), tag0: Option<Bytes>) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    fill(&mut b);
    match tag0 {
        None => put_no_tags(&mut b),
        Some(t) => {
            put_uvarint(&mut b, 1);
            put_uvarint(&mut b, 0);
            put_uvarint(&mut b, t.len() as u64);
            b.put_slice(&t);
        }
    }
    b.freeze()
}

/// ClassicMemberMetadata (the member record's tagged field 0).
fn classic_bytes(c: &ClassicMember) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i32(c.session_timeout_ms);
    put_compact_len(&mut b, c.protocols.len());
    for (name, metadata) in &c.protocols {
        put_compact_str(&mut b, name);
        put_uvarint(&mut b, metadata.len() as u64 + 1);
        b.put_slice(metadata);
        put_no_tags(&mut b);
    }
    put_no_tags(&mut b);
    b.freeze()
}

fn get_classic(b: &mut Bytes) -> Result<ClassicMember, DecodeError> {
    let session_timeout_ms = get_i32(b)?;
    let mut protocols = Vec::new();
    for _ in 0..get_compact_len(b)? {
        let name = get_compact_str(b)?;
        let len = get_uvarint(b)?.saturating_sub(1) as usize;
        need(b, len, "protocol metadata")?;
        let metadata = b.split_to(len);
        skip_tags(b)?;
        protocols.push((name, metadata));
    }
    skip_tags(b)?;
    Ok(ClassicMember {
        session_timeout_ms,
        protocols,
    })
}

/// The member value's tagged fields: tag 0 is the classic metadata, others are skipped.
fn get_member_tags(b: &mut Bytes) -> Result<Option<ClassicMember>, DecodeError> {
    let mut classic = None;
    for _ in 0..get_uvarint(b)? {
        let tag = get_uvarint(b)?;
        let size = get_uvarint(b)? as usize;
        need(b, size, "tagged field")?;
        let mut field = b.split_to(size);
        if tag == 0 {
            classic = Some(get_classic(&mut field)?);
        }
    }
    Ok(classic)
}

fn put_assignment(b: &mut BytesMut, a: &Assignment) {
    put_compact_len(b, a.len());
    for (t, ps) in a {
        b.put_slice(t.as_bytes());
        put_compact_len(b, ps.len());
        for p in ps {
            b.put_i32(*p);
        }
        put_no_tags(b);
    }
}

/// The key and value (None: tombstone) of a record of `group`.
pub fn encode(group: &str, r: &Record) -> (Bytes, Option<Bytes>) {
    match r {
        Record::GroupEpoch(e) => (
            key(GROUP_EPOCH, group, None),
            e.map(|e| value(|b| b.put_i32(e))),
        ),
        Record::Subscription(topics) => (
            key(SUBSCRIPTION, group, None),
            topics.as_ref().map(|topics| {
                value(|b| {
                    put_compact_len(b, topics.len());
                    for t in topics {
                        b.put_slice(t.id.as_bytes());
                        put_compact_str(b, &t.name);
                        b.put_i32(t.partitions);
                        put_compact_len(b, 0);
                        put_no_tags(b);
                    }
                })
            }),
        ),
        Record::Member(id, meta) => (
            key(MEMBER, group, Some(id)),
            meta.as_ref().map(|m| {
                value_with_tag(
                    |b| {
                        put_compact_opt_str(b, m.instance_id.as_deref());
                        put_compact_opt_str(b, m.rack_id.as_deref());
                        put_compact_str(b, &m.client_id);
                        put_compact_str(b, &m.client_host);
                        put_compact_len(b, m.subscribed_topic_names.len());
                        for t in &m.subscribed_topic_names {
                            put_compact_str(b, t);
                        }
                        put_compact_opt_str(b, m.subscribed_topic_regex.as_deref());
                        b.put_i32(m.rebalance_timeout_ms);
                        put_compact_opt_str(b, m.server_assignor.as_deref());
                    },
                    m.classic.as_ref().map(classic_bytes),
                )
            }),
        ),
        Record::TargetEpoch(e) => (
            key(TARGET_EPOCH, group, None),
            e.map(|e| value(|b| b.put_i32(e))),
        ),
        Record::Target(id, a) => (
            key(TARGET, group, Some(id)),
            a.as_ref().map(|a| value(|b| put_assignment(b, a))),
        ),
        Record::Current(id, c) => (
            key(CURRENT, group, Some(id)),
            c.as_ref().map(|c| {
                value(|b| {
                    b.put_i32(c.epoch);
                    b.put_i32(c.previous_epoch);
                    b.put_i8(c.state.code());
                    put_assignment(b, &c.assigned);
                    put_assignment(b, &c.pending_revocation);
                })
            }),
        ),
    }
}

fn get_assignment(b: &mut Bytes) -> Result<Assignment, DecodeError> {
    let mut a = Assignment::new();
    for _ in 0..get_compact_len(b)? {
        let t = get_uuid(b)?;
        let n = get_compact_len(b)?;
        let ps = a.entry(t).or_default();
        for _ in 0..n {
            ps.insert(get_i32(b)?);
        }
        skip_tags(b)?;
    }
    a.retain(|_, ps| !ps.is_empty());
    Ok(a)
}

/// Decodes a record whose key version is one of [`is_consumer_key`] (`k` is the key after
/// its version). Returns the group id and the record.
pub fn decode(
    version: i16,
    mut k: Bytes,
    value: Option<Bytes>,
) -> Result<(String, Record), DecodeError> {
    let group = get_str(&mut k)?;
    let member = match version {
        MEMBER | TARGET | CURRENT => Some(get_str(&mut k)?),
        _ => None,
    };
    let mut v = match value {
        None => None,
        Some(mut v) => {
            let vv = get_i16(&mut v)?;
            if vv < 0 {
                return Err(DecodeError(format!("bad value version {vv}")));
            }
            Some(v)
        }
    };
    let member_id = || member.clone().unwrap_or_default();
    let record = match (version, v.as_mut()) {
        (GROUP_EPOCH, b) => Record::GroupEpoch(b.map(get_i32).transpose()?),
        (SUBSCRIPTION, None) => Record::Subscription(None),
        (SUBSCRIPTION, Some(b)) => {
            let mut topics = Vec::new();
            for _ in 0..get_compact_len(b)? {
                let id = get_uuid(b)?;
                let name = get_compact_str(b)?;
                let partitions = get_i32(b)?;
                for _ in 0..get_compact_len(b)? {
                    get_i32(b)?;
                    for _ in 0..get_compact_len(b)? {
                        get_compact_str(b)?;
                    }
                    skip_tags(b)?;
                }
                skip_tags(b)?;
                topics.push(SubscribedTopic {
                    id,
                    name,
                    partitions,
                });
            }
            Record::Subscription(Some(topics))
        }
        (MEMBER, None) => Record::Member(member_id(), None),
        (MEMBER, Some(b)) => {
            let instance_id = get_compact_opt_str(b)?;
            let rack_id = get_compact_opt_str(b)?;
            let client_id = get_compact_str(b)?;
            let client_host = get_compact_str(b)?;
            let mut subscribed_topic_names = Vec::new();
            for _ in 0..get_compact_len(b)? {
                subscribed_topic_names.push(get_compact_str(b)?);
            }
            let meta = MemberMetadata {
                instance_id,
                rack_id,
                client_id,
                client_host,
                subscribed_topic_names,
                subscribed_topic_regex: get_compact_opt_str(b)?,
                rebalance_timeout_ms: get_i32(b)?,
                server_assignor: get_compact_opt_str(b)?,
                classic: get_member_tags(b)?,
            };
            return Ok((group, Record::Member(member_id(), Some(meta))));
        }
        (TARGET_EPOCH, b) => Record::TargetEpoch(b.map(get_i32).transpose()?),
        (TARGET, None) => Record::Target(member_id(), None),
        (TARGET, Some(b)) => Record::Target(member_id(), Some(get_assignment(b)?)),
        (CURRENT, None) => Record::Current(member_id(), None),
        (CURRENT, Some(b)) => {
            let epoch = get_i32(b)?;
            let previous_epoch = get_i32(b)?;
            let state = MemberState::from_code(get_i8(b)?);
            let assigned = get_assignment(b)?;
            let pending_revocation = get_assignment(b)?;
            Record::Current(
                member_id(),
                Some(CurrentAssignment {
                    epoch,
                    previous_epoch,
                    state,
                    assigned,
                    pending_revocation,
                }),
            )
        }
        (v, _) => return Err(DecodeError(format!("not a consumer group key: {v}"))),
    };
    if let Some(b) = v.as_mut() {
        // Fields of later versions come as tagged fields; they are not used here.
        skip_tags(b)?;
    }
    Ok((group, record))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use uuid::Uuid;

    /// One record of every kind, values and tombstones (also the fuzz corpus).
    pub(crate) fn samples() -> Vec<Record> {
        let t = Uuid::from_u128(0x1234_5678_9abc_def0_1122_3344_5566_7788);
        let a: Assignment = [(t, [0, 3, 5].into())].into();
        vec![
            Record::GroupEpoch(Some(7)),
            Record::GroupEpoch(None),
            Record::Subscription(Some(vec![SubscribedTopic {
                id: t,
                name: "orders".into(),
                partitions: 6,
            }])),
            Record::Member(
                "m-1".into(),
                Some(MemberMetadata {
                    instance_id: Some("i".into()),
                    rack_id: None,
                    client_id: "rdkafka".into(),
                    client_host: "/127.0.0.1".into(),
                    subscribed_topic_names: vec!["orders".into(), "x".into()],
                    subscribed_topic_regex: Some("o.*".into()),
                    rebalance_timeout_ms: 30_000,
                    server_assignor: Some("range".into()),
                    classic: None,
                }),
            ),
            Record::Member(
                "m-2".into(),
                Some(MemberMetadata {
                    client_id: "classic".into(),
                    subscribed_topic_names: vec!["orders".into()],
                    rebalance_timeout_ms: 30_000,
                    classic: Some(ClassicMember {
                        session_timeout_ms: 10_000,
                        protocols: vec![
                            ("range".into(), Bytes::from_static(b"\x00\x01sub")),
                            ("roundrobin".into(), Bytes::new()),
                        ],
                    }),
                    ..MemberMetadata::default()
                }),
            ),
            Record::Member("m-1".into(), None),
            Record::TargetEpoch(Some(7)),
            Record::Target("m-1".into(), Some(a.clone())),
            Record::Target("m-1".into(), None),
            Record::Current(
                "m-1".into(),
                Some(CurrentAssignment {
                    epoch: 7,
                    previous_epoch: 6,
                    state: MemberState::UnrevokedPartitions,
                    assigned: a.clone(),
                    pending_revocation: [(t, [1].into())].into(),
                }),
            ),
            Record::Current("m-1".into(), None),
        ]
    }

    fn round_trip(r: &Record) -> Result<(String, Record), DecodeError> {
        let (mut k, v) = encode("g", r);
        let version = get_i16(&mut k)?;
        assert!(is_consumer_key(version));
        decode(version, k, v)
    }

    #[test]
    fn records_round_trip() {
        for r in samples() {
            assert_eq!(round_trip(&r).unwrap(), ("g".to_string(), r));
        }
    }

    #[test]
    fn the_epoch_record_is_kafkas_bytes() {
        // ConsumerGroupMetadataKey v3 "g"; value v0: epoch 7, no tagged fields.
        let (k, v) = encode("g", &Record::GroupEpoch(Some(7)));
        assert_eq!(&k[..], &[0, 3, 0, 1, b'g']);
        assert_eq!(&v.unwrap()[..], &[0, 0, 0, 0, 0, 7, 0]);
    }

    #[test]
    fn damaged_values_are_errors_not_panics() {
        for r in samples() {
            let (mut k, v) = encode("g", &r);
            let version = get_i16(&mut k).unwrap();
            let Some(v) = v else { continue };
            for cut in 0..v.len() {
                let _ = decode(version, k.clone(), Some(v.slice(..cut)));
            }
            assert!(decode(version, k.clone(), Some(v.slice(..v.len() - 1))).is_err());
        }
    }
}
