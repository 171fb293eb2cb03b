//! The records of `__transaction_state`, in Kafka's TransactionLog schemas so the topic reads
//! the same as Kafka's: key TransactionLogKey v0 (the transactional id), value
//! TransactionLogValue v0, or v1 (flexible, with the tagged previous/next producer ids and
//! client transaction version) for producers on transactions v2. A null value is a tombstone.
//!
//! Decoding never trusts the bytes: every length is checked, a bad record is an error.

use std::collections::BTreeSet;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::state::{TxnMetadata, TxnState, NO_PRODUCER_ID};
use crate::types::TopicPartition;

const KEY_VERSION: i16 = 0;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad __transaction_state record: {0}")]
pub struct LogDecodeError(pub String);

fn err(why: impl Into<String>) -> LogDecodeError {
    LogDecodeError(why.into())
}

pub fn key(transactional_id: &str) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(KEY_VERSION);
    b.put_i16(transactional_id.len() as i16);
    b.put_slice(transactional_id.as_bytes());
    b.freeze()
}

/// The transactional id a key names.
pub fn decode_key(mut k: Bytes) -> Result<String, LogDecodeError> {
    let version = get_i16(&mut k)?;
    if version != KEY_VERSION {
        return Err(err(format!("key version {version}")));
    }
    let len = get_i16(&mut k)?;
    get_string(&mut k, len as i64)
}

/// The value of `m`: v1 when its producer is on transactions v2, v0 otherwise.
pub fn value(m: &TxnMetadata) -> Bytes {
    let flexible = m.client_version >= 2;
    let mut b = BytesMut::new();
    b.put_i16(if flexible { 1 } else { 0 });
    b.put_i64(m.producer_id);
    b.put_i16(m.producer_epoch);
    b.put_i32(m.timeout_ms);
    b.put_i8(m.state.id());
    let by_topic = group_partitions(&m.partitions);
    let null = m.state == TxnState::Empty;
    match (null, flexible) {
        (true, false) => b.put_i32(-1),
        (true, true) => put_uvarint(&mut b, 0),
        (false, false) => b.put_i32(by_topic.len() as i32),
        (false, true) => put_uvarint(&mut b, by_topic.len() as u64 + 1),
    }
    if !null {
        for (topic, parts) in &by_topic {
            if flexible {
                put_uvarint(&mut b, topic.len() as u64 + 1);
                b.put_slice(topic.as_bytes());
                put_uvarint(&mut b, parts.len() as u64 + 1);
            } else {
                b.put_i16(topic.len() as i16);
                b.put_slice(topic.as_bytes());
                b.put_i32(parts.len() as i32);
            }
            for p in parts {
                b.put_i32(*p);
            }
            if flexible {
                put_uvarint(&mut b, 0);
            }
        }
    }
    b.put_i64(m.last_update_ms);
    b.put_i64(m.start_ms);
    if flexible {
        let mut tags: Vec<(u64, Vec<u8>)> = Vec::new();
        if m.prev_producer_id != NO_PRODUCER_ID {
            tags.push((0, m.prev_producer_id.to_be_bytes().to_vec()));
        }
        if m.next_producer_id != NO_PRODUCER_ID {
            tags.push((1, m.next_producer_id.to_be_bytes().to_vec()));
        }
        if m.client_version != 0 {
            tags.push((2, m.client_version.to_be_bytes().to_vec()));
        }
        put_uvarint(&mut b, tags.len() as u64);
        for (tag, data) in tags {
            put_uvarint(&mut b, tag);
            put_uvarint(&mut b, data.len() as u64);
            b.put_slice(&data);
        }
    }
    b.freeze()
}

fn group_partitions(parts: &BTreeSet<TopicPartition>) -> Vec<(String, Vec<i32>)> {
    let mut out: Vec<(String, Vec<i32>)> = Vec::new();
    for tp in parts {
        match out.last_mut() {
            Some((t, ps)) if *t == tp.topic => ps.push(tp.partition),
            _ => out.push((tp.topic.clone(), vec![tp.partition])),
        }
    }
    out
}

/// Decodes a value back into the metadata of `transactional_id`.
pub fn decode_value(transactional_id: &str, mut v: Bytes) -> Result<TxnMetadata, LogDecodeError> {
    let version = get_i16(&mut v)?;
    let flexible = match version {
        0 => false,
        1 => true,
        other => return Err(err(format!("value version {other}"))),
    };
    let mut m = TxnMetadata::new(transactional_id, get_i64(&mut v)?, 0, 0);
    m.producer_epoch = get_i16(&mut v)?;
    m.timeout_ms = get_i32(&mut v)?;
    need(&v, 1)?;
    let status = v.get_i8();
    m.state = TxnState::from_id(status).ok_or_else(|| err(format!("state id {status}")))?;
    let topics = get_len(&mut v, flexible)?;
    for _ in 0..topics.max(0) {
        let len = if flexible {
            get_uvarint(&mut v)? as i64 - 1
        } else {
            get_i16(&mut v)? as i64
        };
        let topic = get_string(&mut v, len)?;
        let n = get_len(&mut v, flexible)?;
        for _ in 0..n.max(0) {
            m.partitions
                .insert(TopicPartition::new(topic.clone(), get_i32(&mut v)?));
        }
        if flexible {
            skip_tags(&mut v, |_, _| Ok(()))?;
        }
    }
    if m.state == TxnState::Empty {
        m.partitions.clear();
    }
    m.last_update_ms = get_i64(&mut v)?;
    m.start_ms = get_i64(&mut v)?;
    if flexible {
        let mut tagged = (NO_PRODUCER_ID, NO_PRODUCER_ID, 0i16);
        skip_tags(&mut v, |tag, mut data| {
            match tag {
                0 => tagged.0 = get_i64(&mut data)?,
                1 => tagged.1 = get_i64(&mut data)?,
                2 => tagged.2 = get_i16(&mut data)?,
                _ => {}
            }
            Ok(())
        })?;
        (m.prev_producer_id, m.next_producer_id, m.client_version) = tagged;
    }
    Ok(m)
}

fn need(b: &Bytes, n: usize) -> Result<(), LogDecodeError> {
    if b.remaining() < n {
        return Err(err(format!("need {n} bytes, have {}", b.remaining())));
    }
    Ok(())
}

fn get_i16(b: &mut Bytes) -> Result<i16, LogDecodeError> {
    need(b, 2)?;
    Ok(b.get_i16())
}

fn get_i32(b: &mut Bytes) -> Result<i32, LogDecodeError> {
    need(b, 4)?;
    Ok(b.get_i32())
}

fn get_i64(b: &mut Bytes) -> Result<i64, LogDecodeError> {
    need(b, 8)?;
    Ok(b.get_i64())
}

fn get_string(b: &mut Bytes, len: i64) -> Result<String, LogDecodeError> {
    if len < 0 {
        return Err(err("null string"));
    }
    need(b, len as usize)?;
    String::from_utf8(b.split_to(len as usize).to_vec()).map_err(|_| err("string is not UTF-8"))
}

/// An array length: i32 (-1 is null) or, flexible, an unsigned varint of length + 1.
fn get_len(b: &mut Bytes, flexible: bool) -> Result<i64, LogDecodeError> {
    let n = if flexible {
        get_uvarint(b)? as i64 - 1
    } else {
        get_i32(b)? as i64
    };
    // Every element takes at least 4 bytes: a count past what is left is a lie.
    if n > b.remaining() as i64 {
        return Err(err(format!("array of {n} in {} bytes", b.remaining())));
    }
    Ok(n)
}

fn put_uvarint(b: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        b.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    b.put_u8(v as u8);
}

fn get_uvarint(b: &mut Bytes) -> Result<u64, LogDecodeError> {
    let mut v = 0u64;
    for shift in (0..35).step_by(7) {
        need(b, 1)?;
        let byte = b.get_u8();
        v |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(err("varint too long"))
}

/// Reads a tagged-field section, handing each field's bytes to `f`.
fn skip_tags(
    b: &mut Bytes,
    mut f: impl FnMut(u64, Bytes) -> Result<(), LogDecodeError>,
) -> Result<(), LogDecodeError> {
    let n = get_uvarint(b)?;
    for _ in 0..n {
        let tag = get_uvarint(b)?;
        let size = get_uvarint(b)? as usize;
        need(b, size)?;
        f(tag, b.split_to(size))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ongoing() -> TxnMetadata {
        let mut m = TxnMetadata::new("tx", 4242, 60_000, 0);
        m.producer_epoch = 3;
        m.state = TxnState::Ongoing;
        m.partitions.insert(TopicPartition::new("a", 1));
        m.partitions.insert(TopicPartition::new("a", 0));
        m.partitions.insert(TopicPartition::new("b", 7));
        m.start_ms = 1_000;
        m.last_update_ms = 2_000;
        m
    }

    #[test]
    fn key_bytes_are_kafkas() {
        assert_eq!(&key("tx")[..], &[0, 0, 0, 2, b't', b'x']);
        assert_eq!(decode_key(key("tx")).unwrap(), "tx");
        assert!(decode_key(Bytes::from_static(&[0, 1, 0, 1, b'x'])).is_err());
        assert!(decode_key(Bytes::from_static(&[0, 0, 0, 9, b'x'])).is_err());
    }

    #[test]
    fn value_v0_bytes_are_kafkas() {
        let m = ongoing();
        let mut want = vec![0, 0]; // version 0
        want.extend_from_slice(&4242i64.to_be_bytes());
        want.extend_from_slice(&3i16.to_be_bytes());
        want.extend_from_slice(&60_000i32.to_be_bytes());
        want.push(1); // Ongoing
        want.extend_from_slice(&2i32.to_be_bytes()); // two topics
        want.extend_from_slice(&[0, 1, b'a', 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1]);
        want.extend_from_slice(&[0, 1, b'b', 0, 0, 0, 1, 0, 0, 0, 7]);
        want.extend_from_slice(&2_000i64.to_be_bytes());
        want.extend_from_slice(&1_000i64.to_be_bytes());
        assert_eq!(&value(&m)[..], &want[..]);
        assert_eq!(decode_value("tx", value(&m)).unwrap(), m);
    }

    #[test]
    fn empty_state_writes_null_partitions() {
        let mut m = TxnMetadata::new("tx", 5, 100, 9);
        m.producer_epoch = 0;
        let v = value(&m);
        assert_eq!(&v[2 + 8 + 2 + 4 + 1..2 + 8 + 2 + 4 + 1 + 4], &[0xff; 4]);
        assert_eq!(decode_value("tx", v).unwrap(), m);
    }

    #[test]
    fn value_v1_bytes_are_kafkas() {
        let mut m = ongoing();
        m.partitions.retain(|tp| tp.topic == "b");
        m.client_version = 2;
        m.prev_producer_id = 7;
        let mut want = vec![0, 1]; // version 1
        want.extend_from_slice(&4242i64.to_be_bytes());
        want.extend_from_slice(&3i16.to_be_bytes());
        want.extend_from_slice(&60_000i32.to_be_bytes());
        want.push(1);
        // compact array of 1, compact string "b", compact array of 1 partition, no tags
        want.extend_from_slice(&[2, 2, b'b', 2, 0, 0, 0, 7, 0]);
        want.extend_from_slice(&2_000i64.to_be_bytes());
        want.extend_from_slice(&1_000i64.to_be_bytes());
        // two tagged fields: 0 = PreviousProducerId, 2 = ClientTransactionVersion
        want.extend_from_slice(&[2, 0, 8]);
        want.extend_from_slice(&7i64.to_be_bytes());
        want.extend_from_slice(&[2, 2, 0, 2]);
        assert_eq!(&value(&m)[..], &want[..]);
        assert_eq!(decode_value("tx", value(&m)).unwrap(), m);
    }

    #[test]
    fn every_state_round_trips_and_bad_bytes_are_errors() {
        for s in TxnState::ALL {
            let mut m = ongoing();
            m.state = s;
            if s == TxnState::Empty {
                m.partitions.clear();
            }
            for cv in [0, 2] {
                m.client_version = cv;
                m.next_producer_id = if cv == 2 { 99 } else { NO_PRODUCER_ID };
                let v = value(&m);
                assert_eq!(decode_value("tx", v.clone()).unwrap(), m, "{s:?} v{cv}");
                for cut in 0..v.len() {
                    assert!(
                        decode_value("tx", v.slice(..cut)).is_err(),
                        "{s:?} cut {cut}"
                    );
                }
            }
        }
        let mut bad = value(&ongoing()).to_vec();
        bad[16] = 42; // state id
        assert!(decode_value("tx", Bytes::from(bad)).is_err());
    }
}
