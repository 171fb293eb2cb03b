//! The stored form of a share-partition's state, as the group coordinator writes it in its
//! `__consumer_offsets` record (see [`crate::group::store::SHARE_STATE_KEY_VERSION`]).
//!
//! Layout (big-endian): version u8 (0), state epoch i32, start offset i64, run count i32, then
//! per run first i64, last i64, state u8 (Kafka's codes: 0 available, 2 acknowledged,
//! 4 archived), deliveries i16; then the CRC-32C of everything before it, u32.

use super::partition::Persisted;

pub fn encode(p: &Persisted) -> Vec<u8> {
    let mut b = Vec::with_capacity(21 + p.runs.len() * 19);
    b.push(0u8);
    b.extend_from_slice(&p.state_epoch.to_be_bytes());
    b.extend_from_slice(&p.start.to_be_bytes());
    b.extend_from_slice(&(p.runs.len() as i32).to_be_bytes());
    for &(first, last, state, deliveries) in &p.runs {
        b.extend_from_slice(&first.to_be_bytes());
        b.extend_from_slice(&last.to_be_bytes());
        b.push(state);
        b.extend_from_slice(&deliveries.to_be_bytes());
    }
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_be_bytes());
    b
}

pub fn decode(b: &[u8]) -> Result<Persisted, String> {
    if b.len() < 21 {
        return Err(format!("{} bytes is too short", b.len()));
    }
    let (body, crc) = b.split_at(b.len() - 4);
    let want = u32::from_be_bytes(crc.try_into().expect("4 bytes"));
    if crc32c::crc32c(body) != want {
        return Err("checksum mismatch".into());
    }
    if body[0] != 0 {
        return Err(format!("unknown version {}", body[0]));
    }
    let i32_at = |at: usize| i32::from_be_bytes(body[at..at + 4].try_into().expect("4"));
    let i64_at = |at: usize| i64::from_be_bytes(body[at..at + 8].try_into().expect("8"));
    let state_epoch = i32_at(1);
    let start = i64_at(5);
    let count = i32_at(13);
    if count < 0 || body.len() != 17 + count as usize * 19 {
        return Err(format!("{count} runs do not fit {} bytes", body.len()));
    }
    let mut runs = Vec::with_capacity(count as usize);
    let mut at = 17;
    for _ in 0..count {
        let first = i64_at(at);
        let last = i64_at(at + 8);
        let state = body[at + 16];
        let deliveries = i16::from_be_bytes([body[at + 17], body[at + 18]]);
        if last < first || first < start || !matches!(state, 0 | 2 | 4) {
            return Err(format!("bad run {first}..={last} state {state}"));
        }
        runs.push((first, last, state, deliveries));
        at += 19;
    }
    Ok(Persisted {
        state_epoch,
        start,
        runs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_is_detected() {
        let p = Persisted {
            state_epoch: 3,
            start: 7,
            runs: vec![(7, 9, 0, 2), (10, 10, 4, 5), (11, 20, 2, 1)],
        };
        let b = encode(&p);
        assert_eq!(decode(&b).unwrap(), p);
        for i in 0..b.len() {
            let mut d = b.clone();
            d[i] ^= 0x40;
            assert!(decode(&d).is_err(), "flipped byte {i}");
        }
        assert!(decode(&b[..b.len() - 1]).is_err());
    }
}
