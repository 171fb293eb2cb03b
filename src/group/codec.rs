//! The primitive encodings of Kafka's group records and the consumer protocol's subscription
//! (big-endian integers, i16-length strings, i32-length bytes). Decoding never trusts the
//! bytes: every length is checked, and a short or malformed input is an error.

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub fn put_str(b: &mut BytesMut, s: &str) {
    b.put_i16(s.len() as i16);
    b.put_slice(s.as_bytes());
}

pub fn put_opt_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

pub fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(v.len() as i32);
    b.put_slice(v);
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad __consumer_offsets record: {0}")]
pub struct DecodeError(pub String);

pub fn need(b: &Bytes, n: usize, what: &str) -> Result<(), DecodeError> {
    if b.remaining() < n {
        return Err(DecodeError(format!(
            "{what}: need {n} bytes, have {}",
            b.remaining()
        )));
    }
    Ok(())
}

pub fn get_i16(b: &mut Bytes) -> Result<i16, DecodeError> {
    need(b, 2, "i16")?;
    Ok(b.get_i16())
}
pub fn get_i32(b: &mut Bytes) -> Result<i32, DecodeError> {
    need(b, 4, "i32")?;
    Ok(b.get_i32())
}
pub fn get_i64(b: &mut Bytes) -> Result<i64, DecodeError> {
    need(b, 8, "i64")?;
    Ok(b.get_i64())
}

pub fn get_opt_str(b: &mut Bytes) -> Result<Option<String>, DecodeError> {
    let len = get_i16(b)?;
    if len < 0 {
        return Ok(None);
    }
    need(b, len as usize, "string")?;
    let raw = b.split_to(len as usize);
    String::from_utf8(raw.to_vec())
        .map(Some)
        .map_err(|_| DecodeError("string is not UTF-8".into()))
}

pub fn get_str(b: &mut Bytes) -> Result<String, DecodeError> {
    get_opt_str(b)?.ok_or_else(|| DecodeError("null string".into()))
}

pub fn get_bytes(b: &mut Bytes) -> Result<Bytes, DecodeError> {
    let len = get_i32(b)?;
    if len < 0 {
        return Ok(Bytes::new());
    }
    need(b, len as usize, "bytes")?;
    Ok(b.split_to(len as usize))
}

// Flexible versions (the values of the consumer group records): unsigned varint lengths plus
// one, compact arrays, UUIDs, and a tagged-field section at the end of each struct.

pub fn put_uvarint(b: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        b.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    b.put_u8(v as u8);
}

pub fn put_compact_str(b: &mut BytesMut, s: &str) {
    put_uvarint(b, s.len() as u64 + 1);
    b.put_slice(s.as_bytes());
}

pub fn put_compact_opt_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_compact_str(b, s),
        None => put_uvarint(b, 0),
    }
}

/// The length prefix of a compact array of `n` elements.
pub fn put_compact_len(b: &mut BytesMut, n: usize) {
    put_uvarint(b, n as u64 + 1);
}

/// An empty tagged-field section.
pub fn put_no_tags(b: &mut BytesMut) {
    put_uvarint(b, 0);
}

pub fn get_uvarint(b: &mut Bytes) -> Result<u64, DecodeError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        need(b, 1, "varint")?;
        let byte = b.get_u8();
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(DecodeError("varint too long".into()))
}

pub fn get_compact_opt_str(b: &mut Bytes) -> Result<Option<String>, DecodeError> {
    let n = get_uvarint(b)?;
    if n == 0 {
        return Ok(None);
    }
    let len = (n - 1) as usize;
    need(b, len, "compact string")?;
    let raw = b.split_to(len);
    String::from_utf8(raw.to_vec())
        .map(Some)
        .map_err(|_| DecodeError("string is not UTF-8".into()))
}

pub fn get_compact_str(b: &mut Bytes) -> Result<String, DecodeError> {
    get_compact_opt_str(b)?.ok_or_else(|| DecodeError("null string".into()))
}

/// The element count of a compact array (a null array reads as empty). A count larger than
/// the bytes left is an error, so a damaged length cannot make the reader reserve memory.
pub fn get_compact_len(b: &mut Bytes) -> Result<usize, DecodeError> {
    let n = get_uvarint(b)?;
    let len = n.saturating_sub(1) as usize;
    if len > b.remaining() {
        return Err(DecodeError(format!(
            "array of {len} in {} bytes",
            b.remaining()
        )));
    }
    Ok(len)
}

/// Skips a tagged-field section (fields this version does not use).
pub fn skip_tags(b: &mut Bytes) -> Result<(), DecodeError> {
    let n = get_uvarint(b)?;
    for _ in 0..n {
        get_uvarint(b)?;
        let size = get_uvarint(b)? as usize;
        need(b, size, "tagged field")?;
        b.advance(size);
    }
    Ok(())
}

pub fn get_i8(b: &mut Bytes) -> Result<i8, DecodeError> {
    need(b, 1, "i8")?;
    Ok(b.get_i8())
}

pub fn get_uuid(b: &mut Bytes) -> Result<uuid::Uuid, DecodeError> {
    need(b, 16, "uuid")?;
    let mut raw = [0u8; 16];
    b.copy_to_slice(&mut raw);
    Ok(uuid::Uuid::from_bytes(raw))
}

/// The topics a consumer-protocol subscription names (ConsumerProtocolSubscription: version,
/// then the topic array). Anything unreadable names no topics.
pub fn subscription_topics(metadata: &Bytes) -> Vec<String> {
    let mut b = metadata.clone();
    let read = |b: &mut Bytes| -> Result<Vec<String>, DecodeError> {
        get_i16(b)?;
        let n = get_i32(b)?;
        let mut out = Vec::new();
        for _ in 0..n.max(0) {
            out.push(get_str(b)?);
        }
        Ok(out)
    };
    read(&mut b).unwrap_or_default()
}

/// A consumer protocol subscription (ConsumerProtocolSubscription v0-v3), as a classic
/// consumer sends it in JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscription {
    pub topics: Vec<String>,
    /// Partitions the member owns now (v1+; cooperative members list them).
    pub owned: Vec<(String, Vec<i32>)>,
    pub rack: Option<String>,
}

fn get_partitions(b: &mut Bytes) -> Result<Vec<(String, Vec<i32>)>, DecodeError> {
    let n = get_i32(b)?.max(0) as usize;
    if n > b.remaining() {
        return Err(DecodeError("partition array longer than its bytes".into()));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let topic = get_str(b)?;
        let k = get_i32(b)?.max(0) as usize;
        need(b, k * 4, "partitions")?;
        out.push((topic, (0..k).map(|_| b.get_i32()).collect()));
    }
    Ok(out)
}

/// Decodes a subscription; None when the bytes are not one.
pub fn decode_subscription(metadata: &Bytes) -> Option<Subscription> {
    let mut b = metadata.clone();
    let read = |b: &mut Bytes| -> Result<Subscription, DecodeError> {
        let version = get_i16(b)?;
        let n = get_i32(b)?.max(0) as usize;
        if n > b.remaining() {
            return Err(DecodeError("topic array longer than its bytes".into()));
        }
        let mut s = Subscription::default();
        for _ in 0..n {
            s.topics.push(get_str(b)?);
        }
        get_bytes(b)?; // user data
        if version >= 1 {
            s.owned = get_partitions(b)?;
        }
        if version >= 2 {
            get_i32(b)?; // generation
        }
        if version >= 3 {
            s.rack = get_opt_str(b)?;
        }
        Ok(s)
    };
    read(&mut b).ok()
}

/// The version a consumer protocol blob starts with (0 when unreadable), capped at 3.
pub fn protocol_version(metadata: &Bytes) -> i16 {
    let mut b = metadata.clone();
    get_i16(&mut b).unwrap_or(0).clamp(0, 3)
}

/// Decodes a consumer protocol assignment (ConsumerProtocolAssignment v0-v3); None when the
/// bytes are not one.
pub fn decode_assignment(assignment: &Bytes) -> Option<Vec<(String, Vec<i32>)>> {
    let mut b = assignment.clone();
    let read = |b: &mut Bytes| -> Result<Vec<(String, Vec<i32>)>, DecodeError> {
        get_i16(b)?;
        get_partitions(b)
    };
    read(&mut b).ok()
}

/// Encodes a consumer protocol assignment at `version`, without user data.
pub fn encode_assignment(version: i16, partitions: &[(String, Vec<i32>)]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(version);
    b.put_i32(partitions.len() as i32);
    for (t, ps) in partitions {
        put_str(&mut b, t);
        b.put_i32(ps.len() as i32);
        for p in ps {
            b.put_i32(*p);
        }
    }
    b.put_i32(-1);
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_and_assignments_decode_at_every_version() {
        for version in 0..=3i16 {
            let mut b = BytesMut::new();
            b.put_i16(version);
            b.put_i32(1);
            put_str(&mut b, "orders");
            b.put_i32(-1);
            if version >= 1 {
                b.put_i32(1);
                put_str(&mut b, "orders");
                b.put_i32(2);
                b.put_i32(0);
                b.put_i32(3);
            }
            if version >= 2 {
                b.put_i32(7);
            }
            if version >= 3 {
                put_opt_str(&mut b, Some("r1"));
            }
            let s = decode_subscription(&b.freeze()).unwrap();
            assert_eq!(s.topics, vec!["orders"]);
            assert_eq!(s.owned.is_empty(), version == 0);
            assert_eq!(s.rack.is_some(), version == 3);
            let a = vec![("orders".to_string(), vec![1, 2])];
            let enc = encode_assignment(version, &a);
            assert_eq!(protocol_version(&enc), version);
            assert_eq!(decode_assignment(&enc).unwrap(), a);
        }
        assert!(decode_subscription(&Bytes::from_static(b"\x00\x01\x7f\xff\xff\xff")).is_none());
    }

    #[test]
    fn subscription_topics_are_read_from_consumer_metadata() {
        let mut b = BytesMut::new();
        b.put_i16(1);
        b.put_i32(2);
        put_str(&mut b, "a");
        put_str(&mut b, "b");
        b.put_i32(-1);
        assert_eq!(subscription_topics(&b.freeze()), vec!["a", "b"]);
        assert!(subscription_topics(&Bytes::from_static(b"\x00")).is_empty());
    }
}
