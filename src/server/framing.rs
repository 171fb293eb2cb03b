//! Size-prefixed frames over a byte stream, with few syscalls.
//!
//! Reading: one `recv` fills a fixed scratch buffer with as many bytes as the socket has, and
//! every whole frame in it is split off without another call; a client pipelining small
//! requests costs one syscall per burst, not two per request. Writing: responses that are
//! ready together leave in one `send`.
//!
//! Input is not trusted: a length is checked against the configured maximum before anything
//! is reserved for it.

use bytes::{Buf, Bytes, BytesMut};
use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes asked of the socket per read.
pub const READ_CHUNK_BYTES: usize = 256 << 10;
/// Ready responses up to this many bytes are joined into one write; larger ones go alone.
pub const COALESCE_BYTES: usize = 256 << 10;

/// Why a stream of frames ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The size prefix is negative or above the limit.
    BadSize {
        size: i32,
        max: u32,
    },
    /// The peer closed in the middle of a frame.
    Truncated {
        have: usize,
        need: usize,
    },
    Io(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::BadSize { size, max } => write!(
                f,
                "frame of {size} bytes exceeds socket.request.max.bytes ({max})"
            ),
            FrameError::Truncated { have, need } => {
                write!(f, "truncated frame: {have} of {need} bytes")
            }
            FrameError::Io(e) => write!(f, "read error: {e}"),
        }
    }
}

pub struct FrameReader<R> {
    reader: R,
    /// Bytes received and not yet handed out as frames.
    pending: BytesMut,
    /// Initialised once and reused: reads land here, then move to `pending`.
    scratch: Vec<u8>,
    max_bytes: u32,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(reader: R, max_bytes: u32) -> Self {
        FrameReader {
            reader,
            pending: BytesMut::new(),
            scratch: vec![0; READ_CHUNK_BYTES],
            max_bytes,
        }
    }

    /// The next frame without its size prefix; `Ok(None)` when the peer closed between frames.
    pub async fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        loop {
            if let Some(frame) = self.split_frame()? {
                return Ok(Some(frame));
            }
            let n = self
                .reader
                .read(&mut self.scratch)
                .await
                .map_err(|e| FrameError::Io(e.to_string()))?;
            if n == 0 {
                if self.pending.is_empty() {
                    return Ok(None);
                }
                return Err(FrameError::Truncated {
                    have: self.pending.len(),
                    need: self.needed(),
                });
            }
            self.pending.extend_from_slice(&self.scratch[..n]);
        }
    }

    /// Bytes the frame at the front needs, prefix included (4 while the prefix is incomplete).
    fn needed(&self) -> usize {
        if self.pending.len() < 4 {
            return 4;
        }
        let size = i32::from_be_bytes([
            self.pending[0],
            self.pending[1],
            self.pending[2],
            self.pending[3],
        ]);
        4 + size.max(0) as usize
    }

    fn split_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        if self.pending.len() < 4 {
            return Ok(None);
        }
        let size = i32::from_be_bytes([
            self.pending[0],
            self.pending[1],
            self.pending[2],
            self.pending[3],
        ]);
        if size < 0 || size as u32 > self.max_bytes {
            return Err(FrameError::BadSize {
                size,
                max: self.max_bytes,
            });
        }
        let total = 4 + size as usize;
        if self.pending.len() < total {
            // Reserve once for the whole frame (size already checked) so a large request is
            // not moved again and again as it arrives.
            self.pending.reserve(total - self.pending.len());
            return Ok(None);
        }
        self.pending.advance(4);
        Ok(Some(self.pending.split_to(size as usize).freeze()))
    }
}

/// Writes `frames` with as few syscalls as their sizes allow.
pub async fn write_frames<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frames: &mut Vec<Bytes>,
) -> std::io::Result<()> {
    let total: usize = frames.iter().map(|f| f.len()).sum();
    if frames.len() > 1 && total <= COALESCE_BYTES {
        let mut joined = BytesMut::with_capacity(total);
        for f in frames.iter() {
            joined.extend_from_slice(f);
        }
        writer.write_all(&joined).await?;
    } else {
        for f in frames.iter() {
            writer.write_all(f).await?;
        }
    }
    frames.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as i32).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    fn read_all(input: Vec<u8>, max: u32) -> (Vec<Bytes>, Result<(), FrameError>) {
        futures::executor::block_on(async move {
            let mut r = FrameReader::new(futures::io::Cursor::new(input), max);
            let mut out = Vec::new();
            loop {
                match r.next_frame().await {
                    Ok(Some(f)) => out.push(f),
                    Ok(None) => return (out, Ok(())),
                    Err(e) => return (out, Err(e)),
                }
            }
        })
    }

    #[test]
    fn frames_split_at_their_prefixes() {
        let mut input = frame(b"abc");
        input.extend(frame(b""));
        input.extend(frame(&vec![7u8; READ_CHUNK_BYTES * 2 + 5]));
        input.extend(frame(b"z"));
        let (frames, end) = read_all(input, u32::MAX);
        assert_eq!(end, Ok(()));
        let lens: Vec<usize> = frames.iter().map(|f| f.len()).collect();
        assert_eq!(lens, vec![3, 0, READ_CHUNK_BYTES * 2 + 5, 1]);
        assert_eq!(&frames[0][..], b"abc");
    }

    #[test]
    fn bad_sizes_and_truncation_end_the_stream() {
        let (_, end) = read_all(frame(&[1; 100]), 99);
        assert_eq!(end, Err(FrameError::BadSize { size: 100, max: 99 }));
        let (_, end) = read_all((-5i32).to_be_bytes().to_vec(), 99);
        assert!(matches!(end, Err(FrameError::BadSize { size: -5, .. })));
        let mut cut = frame(b"hello");
        cut.pop();
        let (frames, end) = read_all(cut, 99);
        assert!(frames.is_empty());
        assert_eq!(end, Err(FrameError::Truncated { have: 8, need: 9 }));
        let (_, end) = read_all(vec![0, 0], 99);
        assert_eq!(end, Err(FrameError::Truncated { have: 2, need: 4 }));
    }

    #[test]
    fn small_ready_frames_leave_in_one_write() {
        futures::executor::block_on(async {
            let mut out = futures::io::Cursor::new(Vec::new());
            let mut frames = vec![Bytes::from_static(b"ab"), Bytes::from_static(b"cd")];
            write_frames(&mut out, &mut frames).await.unwrap();
            assert!(frames.is_empty());
            let mut big = vec![
                Bytes::from(vec![1u8; COALESCE_BYTES]),
                Bytes::from_static(b"x"),
            ];
            write_frames(&mut out, &mut big).await.unwrap();
            let written = out.into_inner();
            assert_eq!(&written[..4], b"abcd");
            assert_eq!(written.len(), 4 + COALESCE_BYTES + 1);
        });
    }
}
