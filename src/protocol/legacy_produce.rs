//! Produce v0-v2: advertised (see [`super::SUPPORTED`]) but refused, as Kafka 4 does.
//!
//! The kafka-protocol codecs stop at v3, so the few fields needed to answer are read here by
//! hand: every partition gets UNSUPPORTED_VERSION in a response of the version asked for, and
//! nothing is written. A request that does not parse closes the connection like any other.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;

fn get_string(b: &mut Bytes) -> Option<Bytes> {
    if b.remaining() < 2 {
        return None;
    }
    let len = b.get_i16();
    if len < 0 || b.remaining() < len as usize {
        return None;
    }
    Some(b.split_to(len as usize))
}

fn get_count(b: &mut Bytes) -> Option<usize> {
    if b.remaining() < 4 {
        return None;
    }
    let n = b.get_i32();
    // Each element is at least 4 bytes: a count beyond what is left is a lie.
    (n >= 0 && (n as usize) <= b.remaining() / 4).then_some(n as usize)
}

/// Topics and partition indexes of a v0-v2 produce body, or None if it is malformed.
fn parse(mut body: Bytes) -> Option<Vec<(Bytes, Vec<i32>)>> {
    if body.remaining() < 6 {
        return None;
    }
    body.advance(6); // acks, timeout
    let topics = get_count(&mut body)?;
    let mut out = Vec::with_capacity(topics);
    for _ in 0..topics {
        let name = get_string(&mut body)?;
        let parts = get_count(&mut body)?;
        let mut indexes = Vec::with_capacity(parts);
        for _ in 0..parts {
            if body.remaining() < 8 {
                return None;
            }
            indexes.push(body.get_i32());
            let len = body.get_i32();
            if len > 0 {
                if body.remaining() < len as usize {
                    return None;
                }
                body.advance(len as usize);
            }
        }
        out.push((name, indexes));
    }
    (!body.has_remaining()).then_some(out)
}

/// The framed UNSUPPORTED_VERSION answer to a produce v0-v2 body, or None to close.
pub fn refuse(correlation_id: i32, version: i16, body: Bytes) -> Option<Bytes> {
    let topics = parse(body)?;
    let code = ResponseError::UnsupportedVersion.code();
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    buf.put_i32(correlation_id);
    buf.put_i32(topics.len() as i32);
    for (name, parts) in topics {
        buf.put_i16(name.len() as i16);
        buf.put_slice(&name);
        buf.put_i32(parts.len() as i32);
        for p in parts {
            buf.put_i32(p);
            buf.put_i16(code);
            buf.put_i64(-1); // base offset
            if version >= 2 {
                buf.put_i64(-1); // log append time
            }
        }
    }
    if version >= 1 {
        buf.put_i32(0); // throttle time
    }
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Some(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(topics: &[(&str, &[i32])]) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(1);
        b.put_i32(1000);
        b.put_i32(topics.len() as i32);
        for (name, parts) in topics {
            b.put_i16(name.len() as i16);
            b.put_slice(name.as_bytes());
            b.put_i32(parts.len() as i32);
            for p in *parts {
                b.put_i32(*p);
                b.put_i32(3);
                b.put_slice(b"abc");
            }
        }
        b.freeze()
    }

    #[test]
    fn every_partition_is_refused_in_the_version_asked() {
        let frame = refuse(9, 2, body(&[("t", &[0, 1])])).unwrap();
        let mut f = frame.clone();
        assert_eq!(f.get_i32() as usize, frame.len() - 4);
        assert_eq!(f.get_i32(), 9);
        assert_eq!(f.get_i32(), 1);
        assert_eq!(f.get_i16(), 1);
        assert_eq!(f.get_u8(), b't');
        assert_eq!(f.get_i32(), 2);
        for p in 0..2 {
            assert_eq!(f.get_i32(), p);
            assert_eq!(f.get_i16(), 35);
            assert_eq!(f.get_i64(), -1);
            assert_eq!(f.get_i64(), -1);
        }
        assert_eq!(f.get_i32(), 0);
        assert!(!f.has_remaining());
        let v0 = refuse(1, 0, body(&[("t", &[0])])).unwrap();
        assert_eq!(v0.len(), 4 + 4 + 4 + 3 + 4 + 4 + 2 + 8);
    }

    #[test]
    fn malformed_bodies_close() {
        let good = body(&[("topic", &[0])]);
        for cut in 0..good.len() {
            assert!(refuse(1, 2, good.slice(..cut)).is_none(), "cut at {cut}");
        }
        let mut huge = BytesMut::from(&good[..6]);
        huge.put_i32(i32::MAX);
        assert!(refuse(1, 2, huge.freeze()).is_none());
    }
}
