//! The local metadata log: one JSON record per line, each prefixed by its CRC-32C.
//!
//! Metadata changes are rare, so the file is written with plain blocking I/O and synced after
//! every record: a record is durable before any shard sees its effect. A torn or corrupt last
//! line (a crash mid-write) is cut off on load; nothing after a bad line is trusted.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use super::state::Record;

pub struct MetadataLog {
    path: PathBuf,
    file: File,
}

fn io_err(path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn parse_line(line: &str) -> Option<Record> {
    let (crc, json) = line.split_once(' ')?;
    let crc = u32::from_str_radix(crc, 16).ok()?;
    if crc32c::crc32c(json.as_bytes()) != crc {
        return None;
    }
    serde_json::from_str(json).ok()
}

impl MetadataLog {
    /// Opens (or creates) the log in `dir` and returns it with every valid record in order.
    pub fn open(dir: &Path) -> std::io::Result<(MetadataLog, Vec<Record>)> {
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
    pub fn append(&mut self, records: &[Record]) -> std::io::Result<()> {
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
    use std::collections::BTreeMap;

    fn created(name: &str) -> Record {
        Record::TopicCreated {
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
