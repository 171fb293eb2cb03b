//! Size-prefixed frames over a byte stream, with few syscalls.
//!
//! Reading: one `recv` fills a fixed scratch buffer with as many bytes as the socket has, and
//! every whole frame in it is split off without another call; a client pipelining small
//! requests costs one syscall per burst, not two per request. Writing: responses that are
//! ready together leave in one `sendmsg`, their buffers handed to the kernel as they are, and
//! records held in segment files go from the page cache to the socket with `sendfile`.
//!
//! Input is not trusted: a length is checked against the configured maximum before anything
//! is reserved for it.

use std::os::fd::{AsRawFd, RawFd};

use bytes::{Buf, Bytes, BytesMut};
use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::storage::{Chunk, FileRange};

/// Bytes asked of the socket per read.
pub const READ_CHUNK_BYTES: usize = 256 << 10;

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

/// Writes `chunks` (whole response frames, in order) to the socket whose descriptor is `fd`,
/// and empties it. In-memory chunks leave in one `sendmsg` per run of up to [`IOV_MAX`] of them,
/// without being joined; file ranges go with `sendfile`, page cache to socket. The socket is
/// non-blocking: when it is full, the rest of the current chunk (for a file range, a small
/// piece of it read into memory) is written through `writer`, which waits for room.
pub async fn write_chunks<W: AsyncWrite + Unpin>(
    writer: &mut W,
    fd: RawFd,
    chunks: &mut Vec<Chunk>,
) -> std::io::Result<()> {
    let mut at = Cursor { index: 0, skip: 0 };
    while at.index < chunks.len() {
        match &chunks[at.index] {
            Chunk::Mem(_) => match send_mem(fd, &chunks[at.index..], at.skip) {
                Ok(n) => at.advance(chunks, n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if let Chunk::Mem(b) = &chunks[at.index] {
                        writer.write_all(&b[at.skip..]).await?;
                    }
                    at.next_chunk();
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            },
            Chunk::File(r) => {
                let left = r.len - at.skip;
                let mut offset = (r.position + at.skip as u64) as libc::off_t;
                // SAFETY: both descriptors are open (the chunk holds the file; the caller's
                // stream the socket) and `offset` is a valid pointer for the call.
                let n = unsafe { libc::sendfile(fd, r.file.as_raw_fd(), &mut offset, left) };
                if n > 0 {
                    at.advance(chunks, n as usize);
                    continue;
                }
                if n == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("segment file ended {left} bytes before the range"),
                    ));
                }
                let e = std::io::Error::last_os_error();
                match e.kind() {
                    std::io::ErrorKind::WouldBlock => {
                        let piece = FileRange {
                            file: r.file.clone(),
                            position: r.position + at.skip as u64,
                            len: left.min(BOUNCE_BYTES),
                        };
                        writer.write_all(&piece.read_all()?).await?;
                        at.advance(chunks, piece.len);
                    }
                    std::io::ErrorKind::Interrupted => {}
                    _ => return Err(e),
                }
            }
        }
    }
    chunks.clear();
    Ok(())
}

/// Most iovecs one `sendmsg` takes (Linux's UIO_MAXIOV).
pub const IOV_MAX: usize = 1024;
/// What a full socket gets of a file range through memory, to wait for room.
const BOUNCE_BYTES: usize = 16 << 10;

/// Where a write stands: the chunk being sent and how much of it is gone.
struct Cursor {
    index: usize,
    skip: usize,
}

impl Cursor {
    fn advance(&mut self, chunks: &[Chunk], mut n: usize) {
        while n > 0 {
            let left = chunks[self.index].len() - self.skip;
            if n < left {
                self.skip += n;
                return;
            }
            n -= left;
            self.next_chunk();
        }
        while self.index < chunks.len() && chunks[self.index].len() == self.skip {
            self.next_chunk();
        }
    }

    fn next_chunk(&mut self) {
        self.index += 1;
        self.skip = 0;
    }
}

/// One non-blocking `sendmsg` of the in-memory chunks at the front of `chunks` (the first
/// without its first `skip` bytes).
fn send_mem(fd: RawFd, chunks: &[Chunk], skip: usize) -> std::io::Result<usize> {
    let mut iov: Vec<libc::iovec> = Vec::with_capacity(chunks.len().min(IOV_MAX));
    for (i, c) in chunks.iter().enumerate() {
        let Chunk::Mem(b) = c else { break };
        if iov.len() == IOV_MAX {
            break;
        }
        let b = if i == 0 { &b[skip..] } else { &b[..] };
        iov.push(libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        });
    }
    // SAFETY: every iovec points into a `Bytes` that `chunks` keeps alive for the call, and
    // msghdr is zero-initialised apart from the vector.
    let n = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = iov.len() as _;
        libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Makes the socket non-blocking, which `sendfile` needs to return instead of waiting for
/// room (the stream's own reads and writes already ask per call).
pub fn set_nonblocking(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: plain fcntl calls on a descriptor the caller owns.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
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

    /// Writes `chunks` through a real socket to a reader that drains slowly, so the socket
    /// fills and both fallbacks (memory and file range) run; returns what the reader got.
    fn through_socket(chunks: Vec<Chunk>) -> Vec<u8> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            use std::io::Read;
            rx.recv().unwrap();
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            let mut got = Vec::new();
            let mut buf = vec![0u8; 4096];
            loop {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    return got;
                }
                got.extend_from_slice(&buf[..n]);
                if got.len() % 7 == 0 {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
        });
        glommio::LocalExecutorBuilder::default()
            .make()
            .unwrap()
            .run(async move {
                let listener = glommio::net::TcpListener::bind(addr).unwrap();
                tx.send(()).unwrap();
                let stream = listener.accept().await.unwrap();
                let fd = stream.as_raw_fd();
                set_nonblocking(fd).unwrap();
                let small: libc::c_int = 4096;
                // SAFETY: setsockopt on the accepted socket with a valid int option.
                unsafe {
                    libc::setsockopt(
                        fd,
                        libc::SOL_SOCKET,
                        libc::SO_SNDBUF,
                        &small as *const _ as *const libc::c_void,
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    );
                }
                let (_r, mut w) = stream.split();
                let mut chunks = chunks;
                write_chunks(&mut w, fd, &mut chunks).await.unwrap();
                assert!(chunks.is_empty());
                w.close().await.unwrap();
            });
        reader.join().unwrap()
    }

    #[test]
    fn chunks_arrive_whole_and_in_order_through_a_full_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment");
        let file_bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &file_bytes).unwrap();
        let file = std::sync::Arc::new(std::fs::File::open(&path).unwrap());
        let range = |position: usize, len: usize| {
            Chunk::File(FileRange {
                file: file.clone(),
                position: position as u64,
                len,
            })
        };
        let mem = |len: usize, seed: u8| {
            Chunk::Mem(Bytes::from(
                (0..len)
                    .map(|i| (i as u8).wrapping_mul(seed))
                    .collect::<Vec<u8>>(),
            ))
        };
        let mut chunks = vec![mem(3, 1), mem(0, 2), range(10, 1_500_000), mem(70_000, 3)];
        chunks.extend((0..1500).map(|i| mem(i % 50, 5)));
        chunks.push(range(0, 0));
        chunks.push(range(2_999_000, 1000));
        chunks.push(mem(1_000_000, 7));
        let mut want = Vec::new();
        for c in &chunks {
            match c {
                Chunk::Mem(b) => want.extend_from_slice(b),
                Chunk::File(r) => want.extend(r.read_all().unwrap()),
            }
        }
        let got = through_socket(chunks);
        assert_eq!(got.len(), want.len());
        assert!(got == want, "bytes differ");
    }
}
