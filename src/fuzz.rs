//! Fuzzing on stable Rust, as ordinary tests: a seeded mutation engine over corpora of valid
//! encoded inputs that each target builds itself, and the targets whose code is reachable from
//! here (request decoding, RecordBatch checks, the group, transaction and producer-snapshot
//! codecs). Targets for private parsers live beside them and use this engine.
//!
//! Knobs: `GREGOR_FUZZ_ITERS` (inputs per target; the default keeps `cargo test` short) and
//! `GREGOR_FUZZ_SEED` (u64; default from the clock). Every target prints its seed and count;
//! a failure names the seed, the iteration and the input, and iteration `i` of seed `s` is
//! always the same input, so it replays with `GREGOR_FUZZ_SEED=s`.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// xorshift64* seeded through splitmix64: fast, deterministic, good enough to pick mutations.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// The seed and iteration count of one run of `target`, printed so a failure can be replayed.
pub fn budget(target: &str, default_iters: u64) -> (u64, u64) {
    let iters = std::env::var("GREGOR_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default_iters);
    let seed = std::env::var("GREGOR_FUZZ_SEED")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            t ^ (std::process::id() as u64).rotate_left(32)
        });
    eprintln!("fuzz target={target} seed={seed} iters={iters}");
    (seed, iters)
}

/// At most `max` bytes of `b` in hex, with the full length.
pub fn hex(b: &[u8], max: usize) -> String {
    let mut s: String = b[..b.len().min(max)]
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect();
    if b.len() > max {
        s.push_str(&format!("... ({} bytes)", b.len()));
    }
    s
}

/// Values that break length and count fields: zero, minus one, the signed extremes and the
/// lengths just past them.
const BOUNDARY: &[i64] = &[
    0,
    -1,
    1,
    -2,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0x8000,
    0xffff,
    0x7fff_ffff,
    -0x8000_0000,
    0x8000_0000,
    0xffff_ffff,
    i64::MAX,
    i64::MIN,
    1_000_000,
    1_000_001,
    10_001,
];

/// An unsigned varint of `v` (as the wire writes lengths and counts in flexible versions).
fn uvarint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// One random change to `b`; `others` supplies bytes to splice in.
pub fn mutate_once(rng: &mut Rng, b: &mut Vec<u8>, others: &[Vec<u8>]) {
    let at = |rng: &mut Rng, len: usize| if len == 0 { 0 } else { rng.below(len) };
    match rng.below(12) {
        0 if !b.is_empty() => {
            let i = at(rng, b.len());
            b[i] ^= 1 << rng.below(8);
        }
        1 if !b.is_empty() => {
            let i = at(rng, b.len());
            b[i] = [0u8, 0xff, 0x7f, 0x80, 1][rng.below(5)];
        }
        2 if !b.is_empty() => {
            let i = at(rng, b.len());
            b[i] = rng.next_u64() as u8;
        }
        3 => {
            // Truncation, often near the end (torn writes, short frames).
            let keep = if rng.chance(2) {
                b.len().saturating_sub(1 + rng.below(16))
            } else {
                at(rng, b.len() + 1)
            };
            b.truncate(keep);
        }
        4 => {
            // A garbage or zero tail.
            let n = 1 + rng.below(32);
            let zero = rng.chance(3);
            for _ in 0..n {
                b.push(if zero { 0 } else { rng.next_u64() as u8 });
            }
        }
        5 | 6 if b.len() >= 2 => {
            // A 1/2/4/8-byte big-endian field set to a boundary value (lengths, counts).
            let width = [1usize, 2, 4, 8][rng.below(4)].min(b.len());
            let i = at(rng, b.len() - width + 1);
            let v = BOUNDARY[rng.below(BOUNDARY.len())].to_be_bytes();
            b[i..i + width].copy_from_slice(&v[8 - width..]);
        }
        7 if !b.is_empty() => {
            // A huge or overlong varint written over (or into) the bytes.
            let mut v = Vec::new();
            match rng.below(4) {
                0 => v.extend_from_slice(&[0xff; 10]),
                1 => v.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]),
                2 => uvarint(rng.next_u64(), &mut v),
                _ => uvarint(BOUNDARY[rng.below(BOUNDARY.len())] as u64, &mut v),
            }
            let i = at(rng, b.len());
            if rng.chance(2) {
                let end = (i + v.len()).min(b.len());
                b.splice(i..end, v);
            } else {
                b.splice(i..i, v);
            }
        }
        8 if !others.is_empty() => {
            // Splice: a piece of another valid input.
            let o = &others[rng.below(others.len())];
            if !o.is_empty() {
                let from = rng.below(o.len());
                let len = 1 + rng.below(o.len() - from);
                let i = at(rng, b.len() + 1);
                if rng.chance(2) {
                    b.truncate(i);
                }
                b.splice(i..i, o[from..from + len].iter().copied());
            }
        }
        9 if b.len() >= 2 => {
            // Delete or duplicate a range.
            let i = at(rng, b.len());
            let n = 1 + rng.below((b.len() - i).min(16));
            if rng.chance(2) {
                b.drain(i..i + n);
            } else {
                let dup: Vec<u8> = b[i..i + n].to_vec();
                b.splice(i..i, dup);
            }
        }
        10 if !b.is_empty() => {
            // A run of one byte.
            let i = at(rng, b.len());
            let n = (1 + rng.below(8)).min(b.len() - i);
            let v = rng.next_u64() as u8;
            b[i..i + n].fill(v);
        }
        _ => {
            if !b.is_empty() {
                let i = at(rng, b.len());
                b[i] = b[i].wrapping_add(1 + rng.below(3) as u8);
            }
        }
    }
}

/// The input of iteration `iter` of `seed`: a corpus entry, maybe unchanged, usually with one
/// to eight mutations.
pub fn input(seed: u64, iter: u64, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut rng = Rng::new(seed ^ iter.wrapping_mul(0xA24B_AED4_963E_E407));
    let mut b = corpus[rng.below(corpus.len())].clone();
    if !rng.chance(16) {
        for _ in 0..1 + rng.below(8) {
            mutate_once(&mut rng, &mut b, corpus);
        }
    }
    b
}

/// Runs `check` on mutated corpus inputs; a panic in it fails the test with the seed, the
/// iteration and the input. Returns how many inputs ran.
pub fn run(target: &str, default_iters: u64, corpus: &[Vec<u8>], check: impl Fn(&[u8])) -> u64 {
    assert!(!corpus.is_empty(), "{target}: empty corpus");
    let (seed, iters) = budget(target, default_iters);
    for i in 0..iters {
        let b = input(seed, i, corpus);
        if catch_unwind(AssertUnwindSafe(|| check(&b))).is_err() {
            panic!(
                "fuzz target {target} failed: GREGOR_FUZZ_SEED={seed} iteration {i} input {}",
                hex(&b, 512)
            );
        }
    }
    eprintln!("fuzz target={target} seed={seed} inputs={iters} crashes=0");
    iters
}

pub mod requests;
#[cfg(test)]
mod targets;
