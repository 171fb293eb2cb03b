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

#[cfg(test)]
mod tests {
    use super::*;

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
