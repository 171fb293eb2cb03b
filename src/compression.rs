//! Broker-side recompression: a topic whose `compression.type` names a codec stores every batch
//! with that codec, whatever the producer used, as Kafka's LogValidator does. Only the record
//! section is decompressed and compressed again; the records themselves are not decoded, and a
//! batch already in the topic's codec is stored as it came.
//!
//! Decompression is bounded ([`DECOMPRESSED_BYTES_MAX`]): a small batch that would expand past
//! it is refused instead of exhausting memory.

use std::io::{Read, Write};

use bytes::{Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Decompressor, Snappy};
use thiserror::Error;

use crate::config::{CompressionType, LogConfig};
use crate::record::{self, BatchHeader, HEADER_BYTES};

/// The most a batch's records may expand to when the broker decompresses them.
pub const DECOMPRESSED_BYTES_MAX: usize = 256 << 20;

const NONE: i16 = 0;
const GZIP: i16 = 1;
const SNAPPY: i16 = 2;
const LZ4: i16 = 3;
const ZSTD: i16 = 4;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("records do not decompress with codec {codec}: {why}")]
    Corrupt { codec: i16, why: String },
    #[error("records expand past {DECOMPRESSED_BYTES_MAX} bytes")]
    TooLarge,
    #[error("unknown codec {0}")]
    Unknown(i16),
}

/// The batch as the topic stores it: `None` when it is already in the topic's codec (or the
/// topic keeps the producer's), otherwise the recompressed batch.
pub fn for_topic(batch: &[u8], config: &LogConfig) -> Result<Option<Bytes>, CodecError> {
    let Some(target) = config.compression_type.attribute() else {
        return Ok(None);
    };
    let Ok(header) = BatchHeader::parse(batch) else {
        return Ok(None);
    };
    if header.compression() == target {
        return Ok(None);
    }
    let raw = decompress(header.compression(), &batch[HEADER_BYTES..])?;
    let packed = compress(target, &raw, config)?;
    Ok(Some(record::rebuild(batch, target, &packed).into()))
}

fn corrupt(codec: i16, e: impl std::fmt::Display) -> CodecError {
    CodecError::Corrupt {
        codec,
        why: e.to_string(),
    }
}

/// Reads all of `r`, failing once it yields more than the bound.
fn read_bounded(codec: i16, r: impl Read) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    r.take(DECOMPRESSED_BYTES_MAX as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| corrupt(codec, e))?;
    if out.len() > DECOMPRESSED_BYTES_MAX {
        return Err(CodecError::TooLarge);
    }
    Ok(out)
}

pub fn decompress(codec: i16, data: &[u8]) -> Result<Vec<u8>, CodecError> {
    match codec {
        NONE => Ok(data.to_vec()),
        GZIP => read_bounded(codec, flate2::read::GzDecoder::new(data)),
        ZSTD => read_bounded(
            codec,
            zstd::stream::read::Decoder::new(data).map_err(|e| corrupt(codec, e))?,
        ),
        LZ4 => read_bounded(
            codec,
            lz4::Decoder::new(data).map_err(|e| corrupt(codec, e))?,
        ),
        SNAPPY => {
            // Snappy cannot expand a block by more than its format allows (a few dozen times),
            // so the whole-output decoder is bounded by the input it was given.
            let mut input = Bytes::copy_from_slice(data);
            let out = <Snappy as Decompressor<Bytes>>::decompress(&mut input, |b| Ok(b.to_vec()))
                .map_err(|e| corrupt(codec, e))?;
            if out.len() > DECOMPRESSED_BYTES_MAX {
                return Err(CodecError::TooLarge);
            }
            Ok(out)
        }
        other => Err(CodecError::Unknown(other)),
    }
}

pub fn compress(codec: i16, raw: &[u8], config: &LogConfig) -> Result<Vec<u8>, CodecError> {
    match codec {
        NONE => Ok(raw.to_vec()),
        GZIP => {
            let level = match config.compression_gzip_level {
                -1 => flate2::Compression::default(),
                l => flate2::Compression::new(l as u32),
            };
            let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
            e.write_all(raw).map_err(|e| corrupt(codec, e))?;
            e.finish().map_err(|e| corrupt(codec, e))
        }
        ZSTD => {
            zstd::bulk::compress(raw, config.compression_zstd_level).map_err(|e| corrupt(codec, e))
        }
        LZ4 => {
            let mut e = lz4::EncoderBuilder::new()
                .level(config.compression_lz4_level as u32)
                .block_mode(lz4::BlockMode::Independent)
                .build(Vec::new())
                .map_err(|e| corrupt(codec, e))?;
            e.write_all(raw).map_err(|e| corrupt(codec, e))?;
            let (out, result) = e.finish();
            result.map_err(|e| corrupt(codec, e))?;
            Ok(out)
        }
        SNAPPY => {
            let mut out = BytesMut::new();
            <Snappy as Compressor<BytesMut>>::compress(&mut out, |b| {
                b.extend_from_slice(raw);
                Ok(())
            })
            .map_err(|e| corrupt(codec, e))?;
            Ok(out.to_vec())
        }
        other => Err(CodecError::Unknown(other)),
    }
}

/// The codec a batch would be stored with under `config` (for tests and tools).
pub fn stored_codec(producer_codec: i16, config: &LogConfig) -> i16 {
    match config.compression_type {
        CompressionType::Producer => producer_codec,
        other => other.attribute().unwrap_or(producer_codec),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::batch::{decode_batch, encode_batch, Codec, ProducerRecord};

    fn records(n: usize) -> Vec<ProducerRecord> {
        (0..n)
            .map(|i| ProducerRecord {
                key: Some(Bytes::from(format!("key-{}", i % 7))),
                value: Some(Bytes::from(format!("value {i} ").repeat(20))),
                headers: vec![("h".to_string(), Some(Bytes::from_static(b"v")))],
            })
            .collect()
    }

    #[test]
    fn every_codec_recompresses_to_every_other_keeping_the_records() {
        let codecs = [
            Codec::None,
            Codec::Gzip,
            Codec::Snappy,
            Codec::Lz4,
            Codec::Zstd,
        ];
        let targets = [
            ("uncompressed", NONE),
            ("gzip", GZIP),
            ("snappy", SNAPPY),
            ("lz4", LZ4),
            ("zstd", ZSTD),
        ];
        let input = records(50);
        for from in codecs {
            let batch = encode_batch(&input, 1_700_000_000_000, from.compression()).unwrap();
            let want = decode_batch(batch.clone()).unwrap();
            for (name, code) in targets {
                let mut config = LogConfig::default();
                config.set_topic("compression.type", name).unwrap();
                let stored = match for_topic(&batch, &config).unwrap() {
                    Some(b) => b,
                    None => batch.clone(),
                };
                let h = record::validate(&stored).expect("valid batch, CRC included");
                assert_eq!(h.compression(), code, "{from:?} -> {name}");
                assert_eq!(h.record_count, 50);
                let got = decode_batch(stored).unwrap();
                assert_eq!(got.len(), want.len());
                for (g, w) in got.iter().zip(&want) {
                    assert_eq!(
                        (&g.key, &g.value, &g.headers),
                        (&w.key, &w.value, &w.headers)
                    );
                    assert_eq!((g.offset, g.timestamp), (w.offset, w.timestamp));
                }
            }
        }
    }

    #[test]
    fn producer_keeps_the_batch_and_same_codec_is_untouched() {
        let batch = encode_batch(&records(3), 1, Codec::Lz4.compression()).unwrap();
        assert_eq!(for_topic(&batch, &LogConfig::default()).unwrap(), None);
        let mut config = LogConfig::default();
        config.set_topic("compression.type", "lz4").unwrap();
        assert_eq!(for_topic(&batch, &config).unwrap(), None);
        assert_eq!(stored_codec(ZSTD, &LogConfig::default()), ZSTD);
        assert_eq!(stored_codec(ZSTD, &config), LZ4);
    }

    #[test]
    fn garbage_and_bombs_are_refused() {
        let batch = encode_batch(&records(3), 1, Codec::Gzip.compression()).unwrap();
        let mut broken = batch.to_vec();
        let at = HEADER_BYTES + 12;
        broken[at] ^= 0xff;
        let mut config = LogConfig::default();
        config.set_topic("compression.type", "zstd").unwrap();
        assert!(matches!(
            for_topic(&broken, &config),
            Err(CodecError::Corrupt { codec: GZIP, .. })
        ));
        let zeros = vec![0u8; DECOMPRESSED_BYTES_MAX + 10];
        let bomb = zstd::bulk::compress(&zeros, 3).unwrap();
        assert!(bomb.len() < 1 << 20);
        assert_eq!(decompress(ZSTD, &bomb), Err(CodecError::TooLarge));
    }
}
