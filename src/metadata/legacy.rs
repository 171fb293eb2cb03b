//! The single-node metadata log of earlier versions (`<log.dirs>/metadata.log`: one JSON record
//! per line, each prefixed by its CRC-32C), read once to migrate a data directory to the raft
//! metadata log: its records become the first snapshot of the quorum, and the file is renamed
//! `metadata.log.migrated`. A torn or corrupt last line is cut off on load as it always was.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::image::{Record, Snapshot};
use crate::config::LogConfig;
use crate::types::NodeId;

/// The records of the old log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum LegacyRecord {
    ClusterCreated {
        cluster_id: String,
    },
    TopicCreated {
        name: String,
        id: Uuid,
        partitions: i32,
        configs: BTreeMap<String, String>,
    },
    PartitionsAdded {
        name: String,
        partitions: i32,
    },
    TopicDeleted {
        name: String,
    },
    ProducerIdsAllocated {
        start: i64,
        end: i64,
    },
}

/// Reads `<dir>/metadata.log` if there is one and returns the image it describes, every
/// partition on `node` (the only broker it knew); the file is renamed so this happens once.
pub fn migrate(
    dir: &Path,
    node: NodeId,
    defaults: &LogConfig,
) -> std::io::Result<Option<Snapshot>> {
    let path = dir.join("metadata.log");
    if !path.exists() {
        return Ok(None);
    }
    let (_, records) = MetadataLog::open(dir)?;
    let mut image = Snapshot::default();
    for r in records {
        let converted = match r {
            LegacyRecord::ClusterCreated { cluster_id } => Record::ClusterCreated { cluster_id },
            LegacyRecord::TopicCreated {
                name,
                id,
                partitions,
                configs,
            } => Record::TopicCreated {
                name,
                id,
                configs,
                assignments: vec![vec![node]; partitions.max(0) as usize],
            },
            LegacyRecord::PartitionsAdded { name, partitions } => {
                let have = image.topic(&name).map_or(0, |t| t.partitions);
                Record::PartitionsAdded {
                    name,
                    assignments: vec![vec![node]; (partitions - have).max(0) as usize],
                }
            }
            LegacyRecord::TopicDeleted { name } => Record::TopicDeleted { name },
            LegacyRecord::ProducerIdsAllocated { start, end } => {
                Record::ProducerIdsAllocated { node, start, end }
            }
        };
        image.apply(converted, defaults);
    }
    let done = dir.join("metadata.log.migrated");
    std::fs::rename(&path, &done).map_err(|e| io_err(&path, e))?;
    tracing::info!(
        topics = image.topics.len(),
        "migrated metadata.log to the raft metadata log"
    );
    Ok(Some(image))
}

pub struct MetadataLog {
    path: PathBuf,
    file: File,
}

fn io_err(path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn parse_line(line: &str) -> Option<LegacyRecord> {
    let (crc, json) = line.split_once(' ')?;
    let crc = u32::from_str_radix(crc, 16).ok()?;
    if crc32c::crc32c(json.as_bytes()) != crc {
        return None;
    }
    serde_json::from_str(json).ok()
}

impl MetadataLog {
    /// Opens (or creates) the log in `dir` and returns it with every valid record in order.
    pub fn open(dir: &Path) -> std::io::Result<(MetadataLog, Vec<LegacyRecord>)> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let path = dir.join("metadata.log");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        let mut records = Vec::new();
        let mut valid_len = 0u64;
        let mut reader = BufReader::new(&file);
        let mut line = String::new();
        loop {
            line.clear();
            let n = match reader.read_line(&mut line) {
                Ok(n) => n,
                Err(_) => break, // not UTF-8: a torn write
            };
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            match parse_line(line.trim_end_matches('\n')) {
                Some(r) => records.push(r),
                None => break,
            }
            valid_len += n as u64;
        }
        let len = file.metadata().map_err(|e| io_err(&path, e))?.len();
        if len != valid_len {
            tracing::warn!(path = %path.display(), len, valid_len, "cutting torn metadata log tail");
            file.set_len(valid_len).map_err(|e| io_err(&path, e))?;
            file.sync_all().map_err(|e| io_err(&path, e))?;
        }
        let mut log = MetadataLog { path, file };
        log.seek_end()?;
        Ok((log, records))
    }

    fn seek_end(&mut self) -> std::io::Result<()> {
        use std::io::Seek;
        self.file
            .seek(std::io::SeekFrom::End(0))
            .map(|_| ())
            .map_err(|e| io_err(&self.path, e))
    }

    /// Appends records and syncs; they are durable when this returns.
    pub fn append(&mut self, records: &[LegacyRecord]) -> std::io::Result<()> {
        let mut text = String::new();
        for r in records {
            let json = serde_json::to_string(r).map_err(std::io::Error::other)?;
            text.push_str(&format!("{:08x} {json}\n", crc32c::crc32c(json.as_bytes())));
        }
        self.file
            .write_all(text.as_bytes())
            .and_then(|_| self.file.sync_data())
            .map_err(|e| io_err(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(name: &str) -> LegacyRecord {
        LegacyRecord::TopicCreated {
            name: name.to_string(),
            id: uuid::Uuid::new_v4(),
            partitions: 3,
            configs: BTreeMap::new(),
        }
    }

    #[test]
    fn records_survive_reopen_and_torn_tails_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, recs) = MetadataLog::open(dir.path()).unwrap();
        assert!(recs.is_empty());
        log.append(&[created("a"), created("b")]).unwrap();
        drop(log);
        let path = dir.path().join("metadata.log");
        let good_len = std::fs::metadata(&path).unwrap().len();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"0000beef {\"type\":\"Torn").unwrap();
        drop(f);
        let (mut log, recs) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len);
        log.append(&[created("c")]).unwrap();
        drop(log);
        let (_, recs) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(recs.len(), 3);
    }

    #[test]
    fn a_corrupt_line_ends_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = MetadataLog::open(dir.path()).unwrap();
        log.append(&[created("a"), created("b")]).unwrap();
        drop(log);
        let path = dir.path().join("metadata.log");
        let mut text = std::fs::read_to_string(&path).unwrap();
        let second = text.find('\n').unwrap() + 1;
        text.replace_range(second + 9..second + 10, "X");
        std::fs::write(&path, text).unwrap();
        let (_, recs) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(recs.len(), 1);
    }
}

#[cfg(test)]
mod migration_tests {
    use super::*;

    #[test]
    fn an_old_log_becomes_an_image_once() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = MetadataLog::open(dir.path()).unwrap();
        let id = Uuid::new_v4();
        log.append(&[
            LegacyRecord::ClusterCreated {
                cluster_id: "old".into(),
            },
            LegacyRecord::TopicCreated {
                name: "t".into(),
                id,
                partitions: 2,
                configs: BTreeMap::new(),
            },
            LegacyRecord::PartitionsAdded {
                name: "t".into(),
                partitions: 5,
            },
            LegacyRecord::ProducerIdsAllocated {
                start: 0,
                end: 1000,
            },
        ])
        .unwrap();
        drop(log);
        let image = migrate(dir.path(), 7, &LogConfig::default())
            .unwrap()
            .unwrap();
        assert_eq!(image.cluster_id, "old");
        let t = image.topic("t").unwrap();
        assert_eq!((t.id, t.partitions), (id, 5));
        assert_eq!(t.partition(4).unwrap().replicas, vec![7]);
        assert_eq!(image.producer_ids_end, 1000);
        assert!(migrate(dir.path(), 7, &LogConfig::default())
            .unwrap()
            .is_none());
    }
}

#[cfg(test)]
mod fuzz_tests {
    use super::*;

    fn line(r: &LegacyRecord) -> Vec<u8> {
        let json = serde_json::to_string(r).unwrap();
        format!("{:08x} {json}", crc32c::crc32c(json.as_bytes())).into_bytes()
    }

    /// A line of the old metadata log, and the same line with its CRC recomputed so the JSON
    /// behind it is reached: parsing never panics, and what parses writes back the same.
    fn check(b: &[u8]) {
        let text = String::from_utf8_lossy(b);
        let fixed = match text.split_once(' ') {
            Some((_, json)) => format!("{:08x} {json}", crc32c::crc32c(json.as_bytes())),
            None => text.to_string(),
        };
        for l in [&text[..], &fixed[..]] {
            if let Some(r) = parse_line(l) {
                assert_eq!(parse_line(&String::from_utf8(line(&r)).unwrap()), Some(r));
            }
        }
    }

    #[test]
    fn fuzz_legacy_metadata_lines() {
        let corpus = vec![
            line(&LegacyRecord::ClusterCreated {
                cluster_id: "c1".to_string(),
            }),
            line(&LegacyRecord::TopicCreated {
                name: "orders".to_string(),
                id: Uuid::nil(),
                partitions: 3,
                configs: BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]),
            }),
            line(&LegacyRecord::PartitionsAdded {
                name: "orders".to_string(),
                partitions: 6,
            }),
            line(&LegacyRecord::ProducerIdsAllocated {
                start: 0,
                end: 1000,
            }),
        ];
        crate::fuzz::run("legacy_metadata_lines", 100_000, &corpus, check);
    }
}
