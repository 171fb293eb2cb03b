//! The records the coordinator keeps in `__consumer_offsets`, in Kafka's own schemas, so the
//! topic reads the same as Kafka's (OffsetCommitKey v1 / OffsetCommitValue v3, GroupMetadataKey
//! v2 / GroupMetadataValue v3; a null value is a tombstone).
//!
//! Decoding never trusts the bytes: every length is checked and a bad record is an error, so a
//! damaged log cannot panic the loader.

use bytes::{BufMut, Bytes, BytesMut};

pub use super::codec::DecodeError;
use super::codec::{
    get_bytes, get_i16, get_i32, get_i64, get_opt_str, get_str, put_bytes, put_opt_str, put_str,
};
use super::state::{Group, Member};

const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;

/// A committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_ms: i64,
}

/// A record of `__consumer_offsets`, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreRecord {
    Offset {
        group: String,
        topic: String,
        partition: i32,
        /// None: the offset was deleted.
        value: Option<CommittedOffset>,
    },
    Group {
        group: String,
        /// None: the group was deleted.
        value: Option<GroupValue>,
    },
    /// A record of a consumer group (KIP-848).
    Consumer {
        group: String,
        record: super::consumer::Record,
    },
    /// A share-partition's state (KIP-932).
    ShareState {
        group: String,
        topic_id: uuid::Uuid,
        partition: i32,
        /// None: the state was deleted.
        value: Option<crate::share::partition::Persisted>,
    },
}

/// The key type of a share-partition's state. Kafka keeps these in `__share_group_state`
/// (ShareSnapshotKey: group, topic id, partition); gregor keeps them beside the group's other
/// records, under a key type of its own that Kafka's types (0-16) do not use. The value is
/// [`crate::share::store::encode`]'s (the fields of Kafka's ShareSnapshotValue).
pub const SHARE_STATE_KEY_VERSION: i16 = 0x7E00;

pub fn share_state_key(group: &str, topic_id: uuid::Uuid, partition: i32) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(SHARE_STATE_KEY_VERSION);
    put_str(&mut b, group);
    b.put_slice(topic_id.as_bytes());
    b.put_i32(partition);
    b.freeze()
}

/// The durable part of a group.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_since_ms: i64,
    pub members: Vec<Member>,
}

pub fn offset_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(OFFSET_KEY_VERSION);
    put_str(&mut b, group);
    put_str(&mut b, topic);
    b.put_i32(partition);
    b.freeze()
}

pub fn offset_value(v: &CommittedOffset) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(OFFSET_VALUE_VERSION);
    b.put_i64(v.offset);
    b.put_i32(v.leader_epoch);
    put_str(&mut b, &v.metadata);
    b.put_i64(v.commit_ms);
    b.freeze()
}

pub fn group_key(group: &str) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(GROUP_KEY_VERSION);
    put_str(&mut b, group);
    b.freeze()
}

pub fn group_value(g: &Group) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(GROUP_VALUE_VERSION);
    put_str(&mut b, g.protocol_type.as_deref().unwrap_or(""));
    b.put_i32(g.generation);
    put_opt_str(&mut b, g.protocol.as_deref());
    put_opt_str(&mut b, g.leader.as_deref());
    b.put_i64(g.state_since_ms);
    b.put_i32(g.members.len() as i32);
    let protocol = g.protocol.clone().unwrap_or_default();
    for m in g.members.values() {
        put_str(&mut b, &m.id);
        put_opt_str(&mut b, m.instance_id.as_deref());
        put_str(&mut b, &m.client_id);
        put_str(&mut b, &m.client_host);
        b.put_i32(m.rebalance_timeout_ms);
        b.put_i32(m.session_timeout_ms);
        put_bytes(&mut b, &m.metadata(&protocol));
        put_bytes(&mut b, &m.assignment);
    }
    b.freeze()
}

/// Decodes one record of the topic from its key and value.
pub fn decode(key: Option<Bytes>, value: Option<Bytes>) -> Result<StoreRecord, DecodeError> {
    let mut k = key.ok_or_else(|| DecodeError("record without a key".into()))?;
    match get_i16(&mut k)? {
        0 | 1 => {
            let group = get_str(&mut k)?;
            let topic = get_str(&mut k)?;
            let partition = get_i32(&mut k)?;
            let value = value.map(decode_offset_value).transpose()?;
            Ok(StoreRecord::Offset {
                group,
                topic,
                partition,
                value,
            })
        }
        2 => {
            let group = get_str(&mut k)?;
            let value = value.map(decode_group_value).transpose()?;
            Ok(StoreRecord::Group { group, value })
        }
        v if super::consumer::records::is_consumer_key(v) => {
            let (group, record) = super::consumer::records::decode(v, k, value)?;
            Ok(StoreRecord::Consumer { group, record })
        }
        SHARE_STATE_KEY_VERSION => {
            let group = get_str(&mut k)?;
            let id = get_i64(&mut k)? as u64;
            let id2 = get_i64(&mut k)? as u64;
            let topic_id = uuid::Uuid::from_u64_pair(id, id2);
            let partition = get_i32(&mut k)?;
            let value = value
                .map(|v| crate::share::store::decode(&v).map_err(DecodeError))
                .transpose()?;
            Ok(StoreRecord::ShareState {
                group,
                topic_id,
                partition,
                value,
            })
        }
        v => Err(DecodeError(format!("unknown key version {v}"))),
    }
}

fn decode_offset_value(mut v: Bytes) -> Result<CommittedOffset, DecodeError> {
    let version = get_i16(&mut v)?;
    let offset = get_i64(&mut v)?;
    let leader_epoch = if version >= 3 { get_i32(&mut v)? } else { -1 };
    let metadata = get_str(&mut v)?;
    let commit_ms = get_i64(&mut v)?;
    Ok(CommittedOffset {
        offset,
        leader_epoch,
        metadata,
        commit_ms,
    })
}

fn decode_group_value(mut v: Bytes) -> Result<GroupValue, DecodeError> {
    let version = get_i16(&mut v)?;
    if !(0..=3).contains(&version) {
        return Err(DecodeError(format!(
            "unknown group value version {version}"
        )));
    }
    let protocol_type = get_str(&mut v)?;
    let generation = get_i32(&mut v)?;
    let protocol = get_opt_str(&mut v)?;
    let leader = get_opt_str(&mut v)?;
    let state_since_ms = if version >= 2 { get_i64(&mut v)? } else { -1 };
    let count = get_i32(&mut v)?.max(0) as usize;
    let mut members = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let id = get_str(&mut v)?;
        let instance_id = if version >= 3 {
            get_opt_str(&mut v)?
        } else {
            None
        };
        let client_id = get_str(&mut v)?;
        let client_host = get_str(&mut v)?;
        let rebalance_timeout_ms = if version >= 1 { get_i32(&mut v)? } else { 0 };
        let session_timeout_ms = get_i32(&mut v)?;
        let subscription = get_bytes(&mut v)?;
        let assignment = get_bytes(&mut v)?;
        let protocols = protocol
            .clone()
            .map(|p| vec![(p, subscription)])
            .unwrap_or_default();
        members.push(Group::persisted_member(
            id,
            instance_id,
            client_id,
            client_host,
            session_timeout_ms,
            rebalance_timeout_ms.max(session_timeout_ms),
            protocols,
            assignment,
        ));
    }
    Ok(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        state_since_ms,
        members,
    })
}

/// Kafka's placement of a group on a `__consumer_offsets` partition: Java's
/// `Utils.abs(groupId.hashCode()) % partitions`.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for unit in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(unit as i32);
    }
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_states_round_trip_and_tombstones_decode() {
        let state = crate::share::partition::Persisted {
            state_epoch: 2,
            start: 5,
            runs: vec![(5, 7, 0, 1), (8, 8, 2, 1)],
        };
        let id = uuid::Uuid::from_u128(0xabcdef);
        let key = share_state_key("g", id, 4);
        let value = Bytes::from(crate::share::store::encode(&state));
        let want = |value| StoreRecord::ShareState {
            group: "g".into(),
            topic_id: id,
            partition: 4,
            value,
        };
        assert_eq!(
            decode(Some(key.clone()), Some(value.clone())).unwrap(),
            want(Some(state))
        );
        assert_eq!(decode(Some(key.clone()), None).unwrap(), want(None));
        assert!(decode(Some(key), Some(value.slice(1..))).is_err());
    }

    #[test]
    fn offsets_round_trip_and_tombstones_decode() {
        let v = CommittedOffset {
            offset: 42,
            leader_epoch: 0,
            metadata: "m".into(),
            commit_ms: 7,
        };
        let r = decode(Some(offset_key("g", "t", 3)), Some(offset_value(&v))).unwrap();
        assert_eq!(
            r,
            StoreRecord::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 3,
                value: Some(v)
            }
        );
        let t = decode(Some(offset_key("g", "t", 3)), None).unwrap();
        assert!(matches!(t, StoreRecord::Offset { value: None, .. }));
    }

    #[test]
    fn group_metadata_round_trips() {
        let mut g = Group::new("g", 5);
        g.generation = 4;
        g.protocol_type = Some("consumer".into());
        g.protocol = Some("range".into());
        g.leader = Some("m1".into());
        g.members.insert(
            "m1".into(),
            Group::persisted_member(
                "m1".into(),
                Some("i1".into()),
                "c".into(),
                "/127.0.0.1".into(),
                10_000,
                30_000,
                vec![("range".into(), Bytes::from_static(b"sub"))],
                Bytes::from_static(b"asg"),
            ),
        );
        let r = decode(Some(group_key("g")), Some(group_value(&g))).unwrap();
        let StoreRecord::Group { value: Some(v), .. } = r else {
            panic!("{r:?}")
        };
        assert_eq!(v.generation, 4);
        assert_eq!(v.leader.as_deref(), Some("m1"));
        let m = &v.members[0];
        assert_eq!(m.instance_id.as_deref(), Some("i1"));
        assert_eq!(m.assignment, Bytes::from_static(b"asg"));
        assert_eq!(m.metadata("range"), Bytes::from_static(b"sub"));
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let good = offset_value(&CommittedOffset {
            offset: 1,
            leader_epoch: 0,
            metadata: "xyz".into(),
            commit_ms: 1,
        });
        for cut in 0..good.len() {
            assert!(decode(Some(offset_key("g", "t", 0)), Some(good.slice(..cut))).is_err());
        }
        assert!(decode(None, None).is_err());
        assert!(decode(Some(Bytes::from_static(&[0, 9, 0, 1, b'g'])), None).is_err());
        assert!(decode(Some(Bytes::from_static(&[0, 1, 0, 50])), None).is_err());
    }

    #[test]
    fn placement_matches_java_string_hash() {
        // "foo".hashCode() == 101574; Integer.MIN_VALUE hashes map to partition 0.
        assert_eq!(partition_for("foo", 50), 101574 % 50);
        assert_eq!(partition_for("", 50), 0);
        for g in ["group-a", "click-analytics", "Ω"] {
            assert!((0..50).contains(&partition_for(g, 50)));
        }
    }
}
