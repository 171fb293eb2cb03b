//! Bytes a reader hands to the network without copying them: batches already in memory (the
//! tail cache), and ranges of segment files that the kernel sends straight from the page cache.

use std::fs::File;
use std::sync::Arc;

use bytes::Bytes;

/// A run of whole batches as stored.
#[derive(Debug, Clone)]
pub enum Chunk {
    Mem(Bytes),
    File(FileRange),
}

impl Chunk {
    pub fn len(&self) -> usize {
        match self {
            Chunk::Mem(b) => b.len(),
            Chunk::File(r) => r.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `len` bytes of a segment file from `position`, read through the page cache (the segment's
/// own descriptor is opened for direct I/O, which the kernel cannot splice from). Shared by
/// `Arc` because a fetch may be answered on another shard than the one that read it.
#[derive(Debug, Clone)]
pub struct FileRange {
    pub file: Arc<File>,
    pub position: u64,
    pub len: usize,
}

impl FileRange {
    /// The bytes, read into memory: for tests and for the rare path that must copy them.
    pub fn read_all(&self) -> std::io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; self.len];
        self.file.read_exact_at(&mut buf, self.position)?;
        Ok(buf)
    }
}
