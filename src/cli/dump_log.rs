//! `gregor dump-log FILE`: prints a segment `.log` file batch by batch (and record by record
//! with `--print-data-log`) in kafka-dump-log.sh's layout, or the entries of a `.index` /
//! `.timeindex` file. Reads the file directly; no broker is involved.
//!
//! Batch headers and CRCs are checked with `crate::record`; records are decoded with
//! kafka-protocol (any codec). The walk stops at zero padding (an active segment written with
//! direct I/O is padded to a block) and reports a torn or corrupt tail after printing every
//! good batch; that report makes the command exit non-zero.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use bytes::Bytes;
use kafka_protocol::records::Record;

use crate::client::batch::{decode_batch, split_batches, RawBatch, Tail};
use crate::record::BatchHeader;

#[derive(clap::Args, Debug)]
pub struct DumpLogArgs {
    /// A segment `.log`, offset `.index` or `.timeindex` file; its name is its base offset.
    file: PathBuf,
    /// Also print every record of every batch.
    #[arg(long)]
    print_data_log: bool,
}

const OFFSET_ENTRY_BYTES: usize = 8;
const TIME_ENTRY_BYTES: usize = 12;

pub fn run(args: DumpLogArgs) -> anyhow::Result<()> {
    let data =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let data = Bytes::from(data);
    let ext = args.file.extension().and_then(|e| e.to_str()).unwrap_or("");
    let mut out = BufWriter::new(std::io::stdout().lock());
    writeln!(out, "Dumping {}", args.file.display())?;
    let result = match ext {
        "log" => {
            if let Ok(base) = base_offset_of(&args.file) {
                writeln!(out, "Log starting offset: {base}")?;
            }
            dump_segment(&data, args.print_data_log, &mut out)
        }
        "index" => dump_offset_index(&data, base_offset_of(&args.file)?, &mut out),
        "timeindex" => dump_time_index(&data, base_offset_of(&args.file)?, &mut out),
        other => Err(anyhow!(
            "don't know how to dump a .{other} file (expected .log, .index or .timeindex)"
        )),
    };
    let result = result.and_then(|()| out.flush().map_err(anyhow::Error::from));
    match result {
        // The reader went away (`| head`): not a failure of the dump.
        Err(e) if is_broken_pipe(&e) => Ok(()),
        other => other,
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Segment and index files are named by their base offset: `00000000000000000042.log`.
fn base_offset_of(path: &Path) -> anyhow::Result<i64> {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    stem.parse::<i64>()
        .map_err(|_| anyhow!("file name {stem:?} is not a base offset"))
}

fn codec_name(codec: i16) -> &'static str {
    match codec {
        0 => "none",
        1 => "gzip",
        2 => "snappy",
        3 => "lz4",
        4 => "zstd",
        _ => "unknown",
    }
}

fn timestamp_label(h: &BatchHeader) -> &'static str {
    if h.is_log_append_time() {
        "LogAppendTime"
    } else {
        "CreateTime"
    }
}

/// Java's sequence arithmetic: none without a base sequence, else wrapping at i32::MAX.
fn sequence_at(base_sequence: i32, delta: i32) -> i32 {
    if base_sequence < 0 {
        return -1;
    }
    let next = base_sequence as i64 + delta as i64;
    if next > i32::MAX as i64 {
        (next - i32::MAX as i64 - 1) as i32
    } else {
        next as i32
    }
}

fn batch_line(b: &RawBatch) -> String {
    let h = &b.header;
    format!(
        "baseOffset: {} lastOffset: {} count: {} baseSequence: {} lastSequence: {} \
         producerId: {} producerEpoch: {} partitionLeaderEpoch: {} isTransactional: {} \
         isControl: {} position: {} {}: {} size: {} magic: {} compresscodec: {} crc: {} \
         isvalid: true",
        h.base_offset,
        h.last_offset(),
        h.record_count,
        h.base_sequence,
        sequence_at(h.base_sequence, h.last_offset_delta),
        h.producer_id,
        h.producer_epoch,
        h.partition_leader_epoch,
        h.is_transactional(),
        h.is_control(),
        b.position,
        timestamp_label(h),
        h.max_timestamp,
        h.total_bytes(),
        h.magic,
        codec_name(h.compression()),
        h.crc,
    )
}

fn record_line(h: &BatchHeader, r: &Record) -> String {
    let header_keys: Vec<&str> = r.headers.keys().map(|k| k.as_str()).collect();
    let mut s = format!(
        "| offset: {} {}: {} keySize: {} valueSize: {} sequence: {} headerKeys: [{}]",
        r.offset,
        timestamp_label(h),
        r.timestamp,
        r.key.as_ref().map_or(-1, |k| k.len() as i64),
        r.value.as_ref().map_or(-1, |v| v.len() as i64),
        sequence_at(h.base_sequence, (r.offset - h.base_offset) as i32),
        header_keys.join(","),
    );
    if h.is_control() {
        s.push_str(&control_fields(r));
        return s;
    }
    if let Some(k) = &r.key {
        s.push_str(&format!(" key: {}", String::from_utf8_lossy(k)));
    }
    if let Some(v) = &r.value {
        s.push_str(&format!(" payload: {}", String::from_utf8_lossy(v)));
    }
    s
}

/// A transaction marker: key `version i16, type i16`, value `version i16, coordinatorEpoch i32`.
fn control_fields(r: &Record) -> String {
    let kind = r
        .key
        .as_ref()
        .filter(|k| k.len() >= 4)
        .map(|k| i16::from_be_bytes([k[2], k[3]]));
    let epoch = r
        .value
        .as_ref()
        .filter(|v| v.len() >= 6)
        .map(|v| i32::from_be_bytes([v[2], v[3], v[4], v[5]]));
    match (kind, epoch) {
        (Some(0), Some(e)) => format!(" endTxnMarker: ABORT coordinatorEpoch: {e}"),
        (Some(1), Some(e)) => format!(" endTxnMarker: COMMIT coordinatorEpoch: {e}"),
        (k, _) => format!(
            " controlType: {}",
            k.map_or("unknown".to_string(), |k| k.to_string())
        ),
    }
}

/// Prints every batch of a segment; an `Err` after the output when the tail is torn or corrupt.
fn dump_segment(data: &Bytes, print_data: bool, out: &mut impl Write) -> anyhow::Result<()> {
    let (batches, tail) = split_batches(data);
    let mut end = 0;
    for b in &batches {
        writeln!(out, "{}", batch_line(b))?;
        end = b.position + b.header.total_bytes();
        if !print_data {
            continue;
        }
        match decode_batch(b.bytes.clone()) {
            Ok(records) => {
                for r in &records {
                    writeln!(out, "{}", record_line(&b.header, r))?;
                }
            }
            Err(e) => writeln!(out, "| records could not be decoded: {e}")?,
        }
    }
    match tail {
        Tail::Clean => check_padding(data, end, out),
        Tail::Incomplete { position, needed } => {
            let present = data.len() - position;
            writeln!(
                out,
                "Found torn tail at position {position}: batch needs {needed} bytes, \
                 {present} present"
            )?;
            Err(anyhow!("torn tail at position {position}"))
        }
        Tail::Corrupt { position, error } => {
            writeln!(
                out,
                "Found corrupt batch at position {position}: {error} ({} bytes not read)",
                data.len() - position
            )?;
            Err(anyhow!("corrupt batch at position {position}: {error}"))
        }
    }
}

/// After the last batch only zeros may follow; anything else is reported.
fn check_padding(data: &Bytes, end: usize, out: &mut impl Write) -> anyhow::Result<()> {
    let rest = &data[end..];
    if rest.is_empty() {
        return Ok(());
    }
    match rest.iter().position(|b| *b != 0) {
        None => {
            writeln!(
                out,
                "Zero padding: {} bytes from position {end}",
                rest.len()
            )?;
            Ok(())
        }
        Some(at) => {
            let position = end + at;
            writeln!(
                out,
                "Found non-zero bytes at position {position} after zero padding"
            )?;
            Err(anyhow!(
                "non-zero bytes after zero padding at position {position}"
            ))
        }
    }
}

fn u32_at(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Entries of a `.index` file; stops where Kafka's preallocated, zero-filled area begins (a
/// relative offset of 0 after the first entry). Like kafka-dump-log.sh, an all-zero file still
/// shows its first entry, which cannot be told apart from a real (0, 0) entry.
fn dump_offset_index(data: &[u8], base: i64, out: &mut impl Write) -> anyhow::Result<()> {
    for (i, e) in data.chunks_exact(OFFSET_ENTRY_BYTES).enumerate() {
        let (relative, position) = (u32_at(&e[..4]), u32_at(&e[4..]));
        if relative == 0 && i > 0 {
            return Ok(());
        }
        writeln!(
            out,
            "offset: {} position: {position}",
            base + relative as i64
        )?;
    }
    trailing_bytes(data.len() % OFFSET_ENTRY_BYTES, out)
}

/// Entries of a `.timeindex` file, with the same stop rule as [`dump_offset_index`].
fn dump_time_index(data: &[u8], base: i64, out: &mut impl Write) -> anyhow::Result<()> {
    for (i, e) in data.chunks_exact(TIME_ENTRY_BYTES).enumerate() {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&e[..8]);
        let timestamp = i64::from_be_bytes(ts);
        let relative = u32_at(&e[8..]);
        if relative == 0 && (i > 0 || timestamp == 0) {
            return Ok(());
        }
        writeln!(
            out,
            "timestamp: {timestamp} offset: {}",
            base + relative as i64
        )?;
    }
    trailing_bytes(data.len() % TIME_ENTRY_BYTES, out)
}

fn trailing_bytes(n: usize, out: &mut impl Write) -> anyhow::Result<()> {
    if n == 0 {
        return Ok(());
    }
    writeln!(
        out,
        "Found {n} trailing bytes that do not form a whole entry"
    )?;
    Err(anyhow!("{n} trailing bytes in index file"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::batch::{encode_batch, ProducerRecord};
    use crate::record::set_base_offset;
    use kafka_protocol::records::Compression;

    fn batch(base: i64, n: usize, codec: Compression) -> Vec<u8> {
        let records: Vec<ProducerRecord> = (0..n)
            .map(|i| ProducerRecord {
                key: (i == 0).then(|| Bytes::from("k")),
                value: Some(Bytes::from(format!("v{}", base + i as i64))),
                headers: vec![("h1".into(), None), ("h2".into(), Some(Bytes::from("x")))],
            })
            .collect();
        let mut b = encode_batch(&records, 1_000, codec).unwrap().to_vec();
        set_base_offset(&mut b, base);
        b
    }

    fn segment() -> (Vec<u8>, usize, usize) {
        let mut seg = batch(0, 2, Compression::None);
        let first = seg.len();
        seg.extend(batch(2, 3, Compression::Zstd));
        let second = seg.len() - first;
        (seg, first, second)
    }

    fn dump(data: Vec<u8>, print_data: bool) -> (String, anyhow::Result<()>) {
        let mut out = Vec::new();
        let r = dump_segment(&Bytes::from(data), print_data, &mut out);
        (String::from_utf8(out).unwrap(), r)
    }

    #[test]
    fn prints_batches_and_records_then_stops_at_zero_padding() {
        let (mut seg, first, second) = segment();
        seg.extend(vec![0u8; 4096 - seg.len() % 4096]);
        let (text, r) = dump(seg, true);
        r.unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2 + 2 + 3 + 1, "{text}");
        assert!(
            lines[0].starts_with(
                "baseOffset: 0 lastOffset: 1 count: 2 baseSequence: -1 lastSequence: -1 \
             producerId: -1 producerEpoch: -1 partitionLeaderEpoch: -1 isTransactional: false \
             isControl: false position: 0 CreateTime: 1000 "
            ),
            "{}",
            lines[0]
        );
        assert!(lines[0].contains(&format!(
            " size: {first} magic: 2 compresscodec: none crc: "
        )));
        assert!(lines[0].ends_with(" isvalid: true"));
        assert_eq!(
            lines[1],
            "| offset: 0 CreateTime: 1000 keySize: 1 valueSize: 2 sequence: -1 \
             headerKeys: [h1,h2] key: k payload: v0"
        );
        assert_eq!(
            lines[2],
            "| offset: 1 CreateTime: 1000 keySize: -1 valueSize: 2 sequence: -1 \
             headerKeys: [h1,h2] payload: v1"
        );
        assert!(lines[3].starts_with("baseOffset: 2 lastOffset: 4 count: 3 "));
        assert!(lines[3].contains(&format!(" position: {first} ")));
        assert!(lines[3].contains(&format!(" size: {second} magic: 2 compresscodec: zstd ")));
        assert!(lines[6].ends_with("payload: v4"));
        assert!(lines[7].starts_with("Zero padding: "));
    }

    #[test]
    fn torn_tail_is_reported_after_good_batches() {
        let (mut seg, first, _) = segment();
        seg.truncate(seg.len() - 5);
        let (text, r) = dump(seg, false);
        assert!(r.is_err());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("baseOffset: 0 "));
        assert!(lines[1].starts_with(&format!("Found torn tail at position {first}")));
    }

    #[test]
    fn corrupt_batch_and_garbage_after_padding_are_reported() {
        let (mut seg, first, _) = segment();
        let at = first + 40;
        seg[at] ^= 0xff;
        let (text, r) = dump(seg, true);
        assert!(r.is_err());
        assert!(text.contains(&format!(
            "Found corrupt batch at position {first}: CRC mismatch"
        )));

        let (mut seg, _, _) = segment();
        let end = seg.len();
        seg.extend(vec![0u8; 100]);
        seg.push(7);
        let (text, r) = dump(seg, false);
        assert!(r.is_err());
        assert!(text.contains(&format!("non-zero bytes at position {}", end + 100)));
    }

    #[test]
    fn empty_and_all_zero_segments_are_clean() {
        assert!(dump(Vec::new(), true).1.is_ok());
        let (text, r) = dump(vec![0u8; 8192], true);
        r.unwrap();
        assert_eq!(text, "Zero padding: 8192 bytes from position 0\n");
    }

    #[test]
    fn index_files_print_entries_until_preallocated_zeros() {
        let mut ix = Vec::new();
        for (rel, pos) in [(0u32, 0u32), (10, 4096), (25, 9000)] {
            ix.extend(rel.to_be_bytes());
            ix.extend(pos.to_be_bytes());
        }
        ix.extend(vec![0u8; 80]);
        let mut out = Vec::new();
        dump_offset_index(&ix, 100, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "offset: 100 position: 0\noffset: 110 position: 4096\noffset: 125 position: 9000\n"
        );

        let mut tix = Vec::new();
        for (ts, rel) in [(1_000i64, 3u32), (2_000, 9)] {
            tix.extend(ts.to_be_bytes());
            tix.extend(rel.to_be_bytes());
        }
        tix.extend(vec![0u8; 24]);
        let mut out = Vec::new();
        dump_time_index(&tix, 100, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "timestamp: 1000 offset: 103\ntimestamp: 2000 offset: 109\n"
        );

        let mut out = Vec::new();
        assert!(dump_offset_index(&[0, 0, 0, 5, 0, 0, 0, 1, 9], 0, &mut out).is_err());
        let mut out = Vec::new();
        dump_offset_index(&[0u8; 64], 0, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "offset: 0 position: 0\n");
    }

    #[test]
    fn base_offset_comes_from_the_file_name() {
        assert_eq!(
            base_offset_of(Path::new("/d/t-0/00000000000000000042.index")).unwrap(),
            42
        );
        assert!(base_offset_of(Path::new("foo.index")).is_err());
    }

    #[test]
    fn sequences_follow_java_arithmetic() {
        assert_eq!(sequence_at(-1, 5), -1);
        assert_eq!(sequence_at(10, 5), 15);
        assert_eq!(sequence_at(i32::MAX, 1), 0);
    }
}
