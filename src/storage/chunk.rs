//! Bytes a reader hands to the network without copying them: batches already in memory (the
//! tail cache), and ranges of segment files that the kernel sends straight from the page cache.

use std::fs::File;
use std::sync::Arc;

use bytes::Bytes;

/// A run of whole batches as stored.
#[derive(Debug, Clone)]
pub enum Chunk {
    Mem(Bytes),
    /// One batch in two pieces, as the log holds it in memory ([`HeldBatch`]).
    Held(HeldBatch),
    File(FileRange),
}

impl Chunk {
    pub fn len(&self) -> usize {
        match self {
            Chunk::Mem(b) => b.len(),
            Chunk::Held(b) => b.len(),
            Chunk::File(r) => r.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A batch as the log holds it in memory: `head`, then `rest`. A batch the log stamped with its
/// base offset and leader epoch keeps those first [`STAMP_BYTES`] as stamped in `head` and the
/// rest as it was received in `rest`, not copied; any other batch is all in `rest`.
#[derive(Debug, Clone, Default)]
pub struct HeldBatch {
    pub head: Bytes,
    pub rest: Bytes,
}

/// The bytes of a batch that stamping changes: base offset, length, partition leader epoch.
pub const STAMP_BYTES: usize = 16;

impl HeldBatch {
    /// A batch held as one piece.
    pub fn whole(bytes: Bytes) -> Self {
        HeldBatch {
            head: Bytes::new(),
            rest: bytes,
        }
    }

    /// `batch` with its base offset and partition leader epoch replaced: only the first
    /// [`STAMP_BYTES`] are copied. The CRC does not cover them.
    pub fn stamped(batch: &Bytes, base_offset: i64, leader_epoch: i32) -> Self {
        let mut head = batch[..STAMP_BYTES].to_vec();
        crate::record::set_base_offset(&mut head, base_offset);
        crate::record::set_partition_leader_epoch(&mut head, leader_epoch);
        HeldBatch {
            head: Bytes::from(head),
            rest: batch.slice(STAMP_BYTES..),
        }
    }

    pub fn len(&self) -> usize {
        self.head.len() + self.rest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The batch in one piece: shared when it is held so, else copied.
    pub fn contiguous(&self) -> Bytes {
        if self.head.is_empty() {
            return self.rest.clone();
        }
        let mut whole = Vec::with_capacity(self.len());
        whole.extend_from_slice(&self.head);
        whole.extend_from_slice(&self.rest);
        Bytes::from(whole)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamped_batch_reads_as_the_batch_with_its_offset_and_epoch_written_in() {
        let batch = Bytes::from(crate::record::tests::make_batch(0, 3, 1_000));
        let held = HeldBatch::stamped(&batch, 4_242, 7);
        let mut want = batch.to_vec();
        crate::record::set_base_offset(&mut want, 4_242);
        crate::record::set_partition_leader_epoch(&mut want, 7);
        assert_eq!(&held.contiguous()[..], &want[..]);
        assert_eq!(held.len(), batch.len());
        // The rest is the received batch itself, not a copy.
        assert_eq!(held.rest.as_ptr(), batch[STAMP_BYTES..].as_ptr());
        crate::record::validate(&held.contiguous()).expect("the CRC still holds");
        assert_eq!(HeldBatch::whole(batch.clone()).contiguous(), batch);
    }
}
