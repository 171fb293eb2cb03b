//! Size-prefixed frames over a byte stream, with few syscalls and no copies.
//!
//! Reading: one `recv` takes as many bytes as the socket has, and every whole frame among them
//! is split off without another call; a client pipelining small requests costs one syscall per
//! burst, not two per request. Writing: responses that are ready together leave in one
//! `sendmsg`, their buffers handed to the kernel as they are, and records held in segment files
//! go from the page cache to the socket with `sendfile`.
//!
//! A connection that holds nothing reads into its shard's receive arena ([`Arena`]): blocks
//! shared by all the shard's connections, from which whole frames are handed out as they lie,
//! with no copy. A frame that a read leaves incomplete gets a buffer of the connection's own,
//! which the rest of its bytes are read straight into; only the part already received is
//! copied. A plain socket is read with `recv(2)` straight into the buffers' unused capacity
//! ([`SocketRecv`]), so nothing is zeroed or copied ahead of the kernel's own copy; other
//! streams (TLS) go through a scratch buffer ([`StreamRecv`]).
//!
//! Memory per connection does not depend on what the client claims. An idle connection holds no
//! buffer (the arena is borrowed only for the duration of a `recv` that completes at once; the
//! reader waits for readiness without one). What a connection keeps between reads is only the
//! bytes it received and has not handed out, with room for the next read: a length prefix is
//! checked against `socket.request.max.bytes`, and a large frame's buffer grows as its bytes
//! arrive (at most doubling, never past the frame); a partial frame is always moved out of a
//! buffer it shares, so a stalled client never pins an arena block or a burst. The one exception
//! keeps large requests to a single buffer: a frame may have its whole buffer made at once, ahead
//! of its bytes, while the shard's bytes so promised stay within [`RESERVE_AHEAD_MAX_BYTES`];
//! what prefixes claim beyond that is not reserved.

use std::cell::RefCell;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::Poll;

use bytes::{Buf, Bytes, BytesMut};
use futures::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::storage::{Chunk, FileRange};

/// Bytes of each receive arena block (and the most one read into the arena asks for).
pub const READ_CHUNK_BYTES: usize = 256 << 10;

/// A read into the arena wants at least this much room; a block with less is retired.
const ARENA_MIN_READ_BYTES: usize = 64 << 10;

/// Retired arena blocks kept for reuse once the frames cut from them are gone.
const ARENA_RETIRED_MAX: usize = 8;

/// The least a connection's own buffer grows by for a read.
const MIN_GROW_BYTES: usize = 512;

/// Buffer space a shard (thread) may hold for frames ahead of their bytes, so a large request
/// is received into its final buffer without growing it. Above this, buffers grow as bytes
/// arrive; hostile length prefixes can claim no more than this per shard.
pub const RESERVE_AHEAD_MAX_BYTES: usize = 64 << 20;

thread_local! {
    /// The receive arena of every connection on this thread.
    static ARENA: RefCell<Arena> = RefCell::new(Arena::default());
    /// What [`StreamRecv`] reads into before appending, one per thread.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Bytes this thread's readers hold reserved ahead of their frames' bytes.
    static RESERVED_AHEAD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A shard's receive arena. `free` is the unused capacity left in the current block: a read
/// lands there and is split off, and the frames in it are handed out as slices of the block. A
/// block with too little room left is retired; a retired block whose frames are all gone is
/// taken back whole.
#[derive(Default)]
struct Arena {
    free: BytesMut,
    retired: Vec<BytesMut>,
}

impl Arena {
    /// Room for the next read: at least [`ARENA_MIN_READ_BYTES`] of capacity, empty.
    fn room(&mut self) -> &mut BytesMut {
        if self.free.capacity() < ARENA_MIN_READ_BYTES {
            let old = std::mem::take(&mut self.free);
            if old.capacity() > 0 {
                if self.retired.len() == ARENA_RETIRED_MAX {
                    self.retired.remove(0);
                }
                self.retired.push(old);
            }
            let reusable = self
                .retired
                .iter_mut()
                .position(|b| b.try_reclaim(READ_CHUNK_BYTES));
            self.free = match reusable {
                Some(i) => self.retired.swap_remove(i),
                None => BytesMut::with_capacity(READ_CHUNK_BYTES),
            };
        }
        &mut self.free
    }
}

/// Where a [`FrameReader`]'s bytes come from.
pub trait Recv {
    /// Appends what the peer has sent, at most `buf`'s unused capacity (which is not zero);
    /// `Ok(0)` at the end of the stream.
    fn poll_recv(
        &mut self,
        cx: &mut std::task::Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<std::io::Result<usize>>;
}

/// A plain socket: bytes are received with `recv(2)` straight into the buffer's unused
/// capacity, which needs no zeroing first; `stream`, the same socket, is used only to wait for
/// bytes (and may hand over the first one).
pub struct SocketRecv<R> {
    stream: R,
    fd: RawFd,
}

impl<R> SocketRecv<R> {
    /// `fd` must be the descriptor of the socket `stream` reads, open while this lives, and
    /// `stream` must not read ahead of what it returns (glommio's unbuffered `TcpStream`).
    pub fn new(stream: R, fd: RawFd) -> Self {
        SocketRecv { stream, fd }
    }
}

impl<R: AsyncRead + Unpin> Recv for SocketRecv<R> {
    fn poll_recv(
        &mut self,
        cx: &mut std::task::Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<std::io::Result<usize>> {
        loop {
            let spare = buf.spare_capacity_mut();
            // SAFETY: the socket is open (see `new`), and recv writes at most `spare.len()`
            // bytes into the buffer's unused capacity, which `buf` owns and nothing reads.
            let n = unsafe {
                libc::recv(
                    self.fd,
                    spare.as_mut_ptr().cast(),
                    spare.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n >= 0 {
                // SAFETY: recv initialized the first n bytes of the unused capacity.
                unsafe { buf.set_len(buf.len() + n as usize) };
                return Poll::Ready(Ok(n as usize));
            }
            let e = std::io::Error::last_os_error();
            match e.kind() {
                std::io::ErrorKind::Interrupted => continue,
                std::io::ErrorKind::WouldBlock => break,
                _ => return Poll::Ready(Err(e)),
            }
        }
        // Nothing there yet: wait through the stream, which takes a byte once one arrives.
        let mut first = [0u8; 1];
        match Pin::new(&mut self.stream).poll_read(cx, &mut first) {
            Poll::Ready(Ok(n)) => {
                buf.extend_from_slice(&first[..n]);
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }
}

/// Any byte stream (TLS, tests): read into the thread's scratch buffer, then appended.
pub struct StreamRecv<R>(pub R);

impl<R: AsyncRead + Unpin> Recv for StreamRecv<R> {
    fn poll_recv(
        &mut self,
        cx: &mut std::task::Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<std::io::Result<usize>> {
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            if scratch.is_empty() {
                scratch.resize(READ_CHUNK_BYTES, 0);
            }
            let room = (buf.capacity() - buf.len()).min(scratch.len());
            match Pin::new(&mut self.0).poll_read(cx, &mut scratch[..room]) {
                Poll::Ready(Ok(n)) => {
                    buf.extend_from_slice(&scratch[..n]);
                    Poll::Ready(Ok(n))
                }
                other => other,
            }
        })
    }
}

/// Takes `n` bytes of this thread's reserve-ahead budget, if they are there.
fn take_ahead(n: usize) -> bool {
    RESERVED_AHEAD.with(|r| {
        let used = r.get();
        let ok = used + n <= RESERVE_AHEAD_MAX_BYTES;
        if ok {
            r.set(used + n);
        }
        ok
    })
}

fn give_back_ahead(n: usize) {
    RESERVED_AHEAD.with(|r| {
        let used = r.get();
        assert!(n <= used, "giving back {n} reserved-ahead bytes of {used}");
        r.set(used - n);
    })
}

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
    recv: R,
    /// Received bytes not yet handed out as frames; its unused capacity is room for the next
    /// read. Empty, with no buffer, between frames that end a read.
    buf: BytesMut,
    /// `buf` shares its allocation with frames handed out or with the arena, so what it holds
    /// moves to a buffer of its own before more is read.
    shared: bool,
    /// Bytes of `buf` reserved for the front frame ahead of its bytes, counted in the thread's
    /// [`RESERVE_AHEAD_MAX_BYTES`]; they count down as the bytes arrive.
    ahead: usize,
    max_bytes: u32,
}

impl<R> Drop for FrameReader<R> {
    fn drop(&mut self) {
        give_back_ahead(self.ahead);
    }
}

impl<R: Recv> FrameReader<R> {
    pub fn new(recv: R, max_bytes: u32) -> Self {
        FrameReader {
            recv,
            buf: BytesMut::new(),
            shared: false,
            ahead: 0,
            max_bytes,
        }
    }

    /// The next frame without its size prefix; `Ok(None)` when the peer closed between frames.
    /// Cancel-safe: a read either completes into the buffer or leaves everything as it was.
    pub async fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        loop {
            if let Some(frame) = self.split_frame()? {
                return Ok(Some(frame));
            }
            let n = self
                .fill()
                .await
                .map_err(|e| FrameError::Io(e.to_string()))?;
            if n == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(FrameError::Truncated {
                    have: self.buf.len(),
                    need: self.needed(),
                });
            }
        }
    }

    /// Bytes held for frames not yet complete, and the buffer space they pin.
    #[cfg(test)]
    fn held_bytes(&self) -> (usize, usize) {
        (self.buf.len(), self.buf.capacity())
    }

    /// One read: into the arena when nothing is held, else into the connection's own buffer
    /// behind the partial frame.
    async fn fill(&mut self) -> std::io::Result<usize> {
        if self.buf.is_empty() {
            return self.fill_from_arena().await;
        }
        if self.shared || self.buf.len() == self.buf.capacity() {
            self.move_to_own();
        }
        let n = futures::future::poll_fn(|cx| self.recv.poll_recv(cx, &mut self.buf)).await?;
        let arrived = n.min(self.ahead);
        self.ahead -= arrived;
        give_back_ahead(arrived);
        Ok(n)
    }

    /// A read into the shard's arena; what arrived becomes the held bytes, shared with it.
    async fn fill_from_arena(&mut self) -> std::io::Result<usize> {
        futures::future::poll_fn(|cx| {
            ARENA.with(|arena| {
                let mut arena = arena.borrow_mut();
                let free = arena.room();
                let n = match self.recv.poll_recv(cx, free) {
                    Poll::Ready(Ok(n)) => n,
                    other => return other,
                };
                if n > 0 {
                    self.buf = free.split_to(n);
                    self.shared = true;
                }
                Poll::Ready(Ok(n))
            })
        })
        .await
    }

    /// Moves the held bytes into a buffer of the connection's own with room to read into: the
    /// whole front frame, if the thread's reserve-ahead budget takes the bytes still to come;
    /// else room for what is missing, at most as much again as is held (and at least
    /// [`MIN_GROW_BYTES`]).
    fn move_to_own(&mut self) {
        let held = self.buf.len();
        let size = match self.room_ahead() {
            Some(total) => total,
            None => {
                let missing = front_total(&self.buf, self.max_bytes)
                    .map_or(MIN_GROW_BYTES, |total| total.saturating_sub(held));
                held + missing.min(held.max(MIN_GROW_BYTES))
            }
        };
        let mut own = BytesMut::with_capacity(size.max(held + 1));
        own.extend_from_slice(&self.buf);
        self.buf = own;
        self.shared = false;
    }

    /// The room to make at once for the incomplete frame at the front: the whole frame, if
    /// the thread's reserve-ahead budget takes the bytes still to come.
    fn room_ahead(&mut self) -> Option<usize> {
        let total = front_total(&self.buf, self.max_bytes)?;
        let missing = total.checked_sub(self.buf.len()).filter(|m| *m > 0)?;
        if self.ahead > 0 || !take_ahead(missing) {
            return None;
        }
        self.ahead = missing;
        Some(total)
    }

    /// The size prefix at the front, if it is all there.
    fn front_size(&self) -> Option<i32> {
        front_size(&self.buf)
    }

    /// Bytes the frame at the front needs, prefix included (4 while the prefix is incomplete).
    fn needed(&self) -> usize {
        self.front_size().map_or(4, |size| 4 + size.max(0) as usize)
    }

    fn split_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        let Some(size) = self.front_size() else {
            return Ok(None);
        };
        if size < 0 || size as u32 > self.max_bytes {
            return Err(FrameError::BadSize {
                size,
                max: self.max_bytes,
            });
        }
        if self.buf.len() < 4 + size as usize {
            return Ok(None);
        }
        debug_assert_eq!(
            self.ahead, 0,
            "a whole frame still has bytes reserved ahead"
        );
        self.buf.advance(4);
        let frame = self.buf.split_to(size as usize).freeze();
        if self.buf.is_empty() {
            // Let go of the buffer; the frames handed out keep it while they live.
            self.buf = BytesMut::new();
            self.shared = false;
        } else {
            self.shared = true;
        }
        Ok(Some(frame))
    }
}

/// The size prefix at the front of `held`, if it is all there.
fn front_size(held: &[u8]) -> Option<i32> {
    let p = held.get(..4)?;
    Some(i32::from_be_bytes([p[0], p[1], p[2], p[3]]))
}

/// Bytes of the frame at the front of `held`, prefix included, once its prefix is known and
/// within `max_bytes`.
fn front_total(held: &[u8], max_bytes: u32) -> Option<usize> {
    let size = front_size(held)?;
    (size >= 0 && size as u32 <= max_bytes).then(|| 4 + size as usize)
}

/// How a connection's writer is getting on, for the rule that cuts off clients that stop
/// reading their responses (see `server::limits`).
#[derive(Debug)]
pub struct SendProgress {
    /// Bytes of responses taken for writing that the socket has not accepted yet.
    pub unsent_bytes: std::cell::Cell<usize>,
    /// When the socket last accepted response bytes (or the writer last started a write).
    pub last_progress: std::cell::Cell<std::time::Instant>,
}

impl Default for SendProgress {
    fn default() -> Self {
        SendProgress {
            unsent_bytes: Default::default(),
            last_progress: std::cell::Cell::new(std::time::Instant::now()),
        }
    }
}

impl SendProgress {
    /// A write of `chunks` begins: all their bytes are unsent, and the clock starts now.
    fn starting(&self, chunks: &[Chunk]) {
        self.unsent_bytes
            .set(chunks.iter().map(Chunk::len).sum::<usize>());
        self.last_progress.set(std::time::Instant::now());
    }

    fn sent(&self, n: usize) {
        self.unsent_bytes
            .set(self.unsent_bytes.get().saturating_sub(n));
        self.last_progress.set(std::time::Instant::now());
    }
}

/// Writes `chunks` (whole response frames, in order) to the socket whose descriptor is `fd`,
/// and empties it. In-memory chunks leave in one `sendmsg` per run of up to [`IOV_MAX`] of them,
/// without being joined; file ranges go with `sendfile`, page cache to socket. The socket is
/// non-blocking: when it is full, the writer waits for room through `writer` and writes what
/// fits of the current chunk (for a file range, of a small piece of it read into memory).
/// `progress` follows every byte the socket accepts.
pub async fn write_chunks<W: AsyncWrite + Unpin>(
    writer: &mut W,
    fd: RawFd,
    chunks: &mut Vec<Chunk>,
    progress: &SendProgress,
) -> std::io::Result<()> {
    progress.starting(chunks);
    let mut at = Cursor { index: 0, skip: 0 };
    while at.index < chunks.len() {
        let n = match &chunks[at.index] {
            Chunk::Mem(_) | Chunk::Held(_) => match send_mem(fd, &chunks[at.index..], at.skip) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let piece = mem_pieces(&chunks[at.index], at.skip)
                        .into_iter()
                        .find(|p| !p.is_empty())
                        .unwrap_or_default();
                    match writer.write(piece).await? {
                        0 => return Err(std::io::ErrorKind::WriteZero.into()),
                        n => n,
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => 0,
                Err(e) => return Err(e),
            },
            Chunk::File(r) => send_file(writer, fd, r, at.skip).await?,
        };
        // Also steps over empty chunks when nothing was sent.
        at.advance(chunks, n);
        if n > 0 {
            progress.sent(n);
        }
    }
    chunks.clear();
    progress.unsent_bytes.set(0);
    Ok(())
}

/// Writes `chunks` through `writer` (a TLS stream, which must see every byte), and empties it:
/// memory chunks as they are, file ranges read into memory a piece at a time.
pub async fn write_chunks_through<W: AsyncWrite + Unpin>(
    writer: &mut W,
    chunks: &mut Vec<Chunk>,
    progress: &SendProgress,
) -> std::io::Result<()> {
    progress.starting(chunks);
    for chunk in chunks.drain(..) {
        match chunk {
            Chunk::Mem(b) => {
                writer.write_all(&b).await?;
                progress.sent(b.len());
            }
            Chunk::Held(b) => {
                writer.write_all(&b.head).await?;
                writer.write_all(&b.rest).await?;
                progress.sent(b.len());
            }
            Chunk::File(r) => {
                let mut done = 0;
                while done < r.len {
                    let piece = FileRange {
                        file: r.file.clone(),
                        position: r.position + done as u64,
                        len: (r.len - done).min(THROUGH_PIECE_BYTES),
                    };
                    writer.write_all(&piece.read_all()?).await?;
                    progress.sent(piece.len);
                    done += piece.len;
                }
            }
        }
    }
    writer.flush().await?;
    progress.unsent_bytes.set(0);
    Ok(())
}

/// What [`write_chunks_through`] reads of a file range at a time.
const THROUGH_PIECE_BYTES: usize = 256 << 10;

/// Sends what it can of a file range from `skip` on: `sendfile` while the socket has room,
/// else a small piece through memory once it has. Bytes sent (0 if interrupted).
async fn send_file<W: AsyncWrite + Unpin>(
    writer: &mut W,
    fd: RawFd,
    r: &FileRange,
    skip: usize,
) -> std::io::Result<usize> {
    let left = r.len - skip;
    let mut offset = (r.position + skip as u64) as libc::off_t;
    // SAFETY: both descriptors are open (the chunk holds the file; the caller's stream the
    // socket) and `offset` is a valid pointer for the call.
    let n = unsafe { libc::sendfile(fd, r.file.as_raw_fd(), &mut offset, left) };
    if n > 0 {
        return Ok(n as usize);
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
                position: r.position + skip as u64,
                len: left.min(BOUNCE_BYTES),
            };
            writer.write_all(&piece.read_all()?).await?;
            Ok(piece.len)
        }
        std::io::ErrorKind::Interrupted => Ok(0),
        _ => Err(e),
    }
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

/// The bytes of an in-memory chunk from `skip` on, in its (at most two) pieces; nothing for a
/// file range.
fn mem_pieces(c: &Chunk, skip: usize) -> [&[u8]; 2] {
    match c {
        Chunk::Mem(b) => [&b[skip..], &[]],
        Chunk::Held(b) if skip < b.head.len() => [&b.head[skip..], &b.rest[..]],
        Chunk::Held(b) => [&[], &b.rest[skip - b.head.len()..]],
        Chunk::File(_) => [&[], &[]],
    }
}

/// One non-blocking `sendmsg` of the in-memory chunks at the front of `chunks` (the first
/// without its first `skip` bytes).
fn send_mem(fd: RawFd, chunks: &[Chunk], skip: usize) -> std::io::Result<usize> {
    let mut iov: Vec<libc::iovec> = Vec::with_capacity(chunks.len().min(IOV_MAX));
    'chunks: for (i, c) in chunks.iter().enumerate() {
        if matches!(c, Chunk::File(_)) {
            break;
        }
        for b in mem_pieces(c, if i == 0 { skip } else { 0 }) {
            if b.is_empty() {
                continue;
            }
            if iov.len() == IOV_MAX {
                break 'chunks;
            }
            iov.push(libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            });
        }
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
    use futures::io::AsyncReadExt;
    use std::future::Future;
    use std::time::Duration;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as i32).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    fn read_all(input: Vec<u8>, max: u32) -> (Vec<Bytes>, Result<(), FrameError>) {
        futures::executor::block_on(async move {
            let mut r = FrameReader::new(StreamRecv(futures::io::Cursor::new(input)), max);
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

    /// A reader that hands out its input in the given pieces, one per read, then blocks
    /// (`Pending`) as a client that stalled.
    struct Pieces(std::collections::VecDeque<Vec<u8>>);

    impl AsyncRead for Pieces {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> Poll<std::io::Result<usize>> {
            let Some(mut piece) = self.0.pop_front() else {
                return Poll::Pending;
            };
            let n = piece.len().min(buf.len());
            buf[..n].copy_from_slice(&piece[..n]);
            if n < piece.len() {
                self.0.push_front(piece.split_off(n));
            }
            Poll::Ready(Ok(n))
        }
    }

    /// Reads frames until the reader stalls; the frames and what the reader then holds.
    fn until_stall(pieces: Vec<Vec<u8>>, max: u32) -> (Vec<Bytes>, (usize, usize)) {
        let (frames, r) = until_stall_max(pieces, max);
        (frames, r.held_bytes())
    }

    fn until_stall_reader(pieces: Vec<Vec<u8>>) -> (Vec<Bytes>, FrameReader<StreamRecv<Pieces>>) {
        until_stall_max(pieces, u32::MAX)
    }

    fn until_stall_max(
        pieces: Vec<Vec<u8>>,
        max: u32,
    ) -> (Vec<Bytes>, FrameReader<StreamRecv<Pieces>>) {
        let mut r = FrameReader::new(StreamRecv(Pieces(pieces.into())), max);
        let mut frames = Vec::new();
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        loop {
            let mut next = Box::pin(r.next_frame());
            match next.as_mut().poll(&mut cx) {
                Poll::Ready(Ok(Some(f))) => frames.push(f),
                Poll::Ready(other) => panic!("stream ended: {other:?}"),
                Poll::Pending => {
                    drop(next);
                    return (frames, r);
                }
            }
        }
    }

    #[test]
    fn a_length_prefix_over_the_budget_reserves_nothing() {
        // 100 MiB is more than a shard may reserve ahead of any bytes.
        let prefix = (100i32 << 20).to_be_bytes().to_vec();
        let (frames, (len, cap)) = until_stall(vec![prefix.clone()], u32::MAX);
        assert!(frames.is_empty());
        assert_eq!(len, 4);
        assert!(cap < 1024, "a 4-byte prefix pins {cap} bytes");
        // Part of the body: the buffer follows what arrived (at most doubling), not the prefix.
        let mut started = prefix;
        started.extend(vec![1u8; 300_000]);
        let pieces = started.chunks(10_000).map(<[u8]>::to_vec).collect();
        let (frames, (len, cap)) = until_stall(pieces, u32::MAX);
        assert!(frames.is_empty());
        assert_eq!(len, 300_004);
        assert!(cap <= 2 * len, "{len} bytes received pin {cap}");
    }

    #[test]
    fn a_large_frame_grows_to_its_size_and_no_further() {
        let body = vec![9u8; 1_000_000];
        let input = frame(&body);
        let pieces = input.chunks(70_000).map(<[u8]>::to_vec).collect();
        let mut r = FrameReader::new(StreamRecv(Pieces(pieces)), u32::MAX);
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        let mut most = 0;
        let got = loop {
            let mut next = Box::pin(r.next_frame());
            if let Poll::Ready(f) = next.as_mut().poll(&mut cx) {
                break f.unwrap().unwrap();
            }
            drop(next);
            most = most.max(r.held_bytes().1);
        };
        assert_eq!(got.len(), body.len());
        assert!(
            most <= input.len(),
            "grew to {most} for a {} byte frame",
            input.len()
        );
        assert_eq!(r.held_bytes(), (0, 0), "nothing held between frames");
    }

    fn reserved_ahead() -> usize {
        RESERVED_AHEAD.with(|r| r.get())
    }

    #[test]
    fn large_frames_get_their_whole_buffer_within_the_shards_budget() {
        let before = reserved_ahead();
        let prefix = |size: usize| {
            let mut v = (size as i32).to_be_bytes().to_vec();
            v.extend(vec![1u8; 1000]);
            v
        };
        // Within the budget, the whole frame's buffer is made once its prefix is seen, and
        // the bytes still to come are counted until they arrive.
        let (_, first) = until_stall_reader(vec![prefix(40 << 20)]);
        assert_eq!(first.held_bytes(), (1004, 4 + (40 << 20)));
        assert_eq!(reserved_ahead(), before + (40 << 20) - 1000);
        // The next one does not fit what is left: it grows as its bytes arrive.
        let (_, second) = until_stall_reader(vec![prefix(40 << 20)]);
        assert!(second.held_bytes().1 < 4096, "{:?}", second.held_bytes());
        drop(first);
        assert_eq!(
            reserved_ahead(),
            before,
            "a closed reader gives its reservation back"
        );
        // A frame that completes gives it back too, and is handed out whole.
        let body = vec![3u8; 3 << 20];
        let input = frame(&body);
        let pieces = input.chunks(100_000).map(<[u8]>::to_vec).collect();
        let (frames, r) = until_stall_reader(pieces);
        assert_eq!(frames.len(), 1);
        assert!(frames[0] == body);
        assert_eq!(reserved_ahead(), before);
        drop((r, second));
        assert_eq!(reserved_ahead(), before);
    }

    #[test]
    fn a_partial_frame_behind_a_burst_does_not_pin_the_burst() {
        // One read brings 200 small frames and the first 10 bytes of another; the client stalls.
        let mut burst = Vec::new();
        for i in 0..200u8 {
            burst.extend(frame(&[i; 1000]));
        }
        burst.extend(&frame(&[7; 50])[..10]);
        let (frames, held) = until_stall_reader(vec![burst]);
        assert_eq!(frames.len(), 200);
        assert_eq!(held.held_bytes().0, 10);
        // The tail was copied out: it does not sit right behind the last frame, in the burst's
        // buffer, which would live as long as the stalled connection.
        let last = frames.last().unwrap();
        let burst_tail = last.as_ptr() as usize + last.len();
        assert_ne!(held.buf.as_ptr() as usize, burst_tail);
    }

    #[test]
    fn whole_frames_are_handed_out_where_they_were_received() {
        let round = || {
            let mut burst = Vec::new();
            for i in 0..100u8 {
                burst.extend(frame(&[i; 1000]));
            }
            let (frames, r) = until_stall_reader(vec![burst]);
            assert_eq!(frames.len(), 100);
            assert_eq!(r.held_bytes(), (0, 0));
            // No copy: each frame sits right behind the previous one and its prefix, in the
            // block the read went into.
            for pair in frames.windows(2) {
                assert_eq!(pair[1].as_ptr() as usize, pair[0].as_ptr() as usize + 1004);
            }
            frames[0].as_ptr() as usize
        };
        let at: Vec<usize> = (0..5).map(|_| round()).collect();
        assert_eq!(at[1], at[0] + 100 * 1004, "the same block, further on");
        // The block is retired when a read finds too little room in it (here the stalled read
        // behind the second round, whose frames still live), and taken back whole once its
        // frames are all gone (at the read behind the fourth).
        assert_eq!(at[4], at[0], "the first block is reused");
        // A block with frames still alive is not.
        let mut burst = Vec::new();
        for _ in 0..100 {
            burst.extend(frame(&[1; 1000]));
        }
        let (kept, _) = until_stall_reader(vec![burst]);
        let kept_at = kept[0].as_ptr() as usize;
        for _ in 0..4 {
            let at = round();
            assert!(at < kept_at - 100 * 1004 || at >= kept_at + 100 * 1004);
        }
        drop(kept);
    }

    /// A non-blocking std socket as an `AsyncRead` that never reads ahead (what glommio's
    /// unbuffered stream is to `SocketRecv`).
    struct NonBlocking(std::net::TcpStream);

    impl AsyncRead for NonBlocking {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> Poll<std::io::Result<usize>> {
            use std::io::Read;
            match self.0.read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Poll::Pending,
                other => Poll::Ready(other),
            }
        }
    }

    #[test]
    fn a_socket_is_received_into_unused_capacity_byte_for_byte() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let fd = server.as_raw_fd();
        let bodies: Vec<Vec<u8>> = [0usize, 1, 700, 300_000, 5, 2_000_000, 64]
            .iter()
            .enumerate()
            .map(|(i, n)| (0..*n).map(|j| (i * 31 + j % 251) as u8).collect())
            .collect();
        let mut input = Vec::new();
        bodies.iter().for_each(|b| input.extend(frame(b)));
        let writer = std::thread::spawn(move || {
            // Odd-sized pieces with pauses, so reads end inside prefixes and bodies.
            for piece in input.chunks(77_777) {
                client.write_all(piece).unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let mut r = FrameReader::new(SocketRecv::new(NonBlocking(server), fd), u32::MAX);
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        let mut got = Vec::new();
        while got.len() < bodies.len() {
            let mut next = Box::pin(r.next_frame());
            match next.as_mut().poll(&mut cx) {
                Poll::Ready(f) => got.push(f.unwrap().expect("a frame")),
                Poll::Pending => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        writer.join().unwrap();
        for (i, (g, b)) in got.iter().zip(&bodies).enumerate() {
            assert!(g[..] == b[..], "frame {i} of {} bytes", b.len());
        }
        assert_eq!(r.held_bytes(), (0, 0));
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
                write_chunks(&mut w, fd, &mut chunks, &SendProgress::default())
                    .await
                    .unwrap();
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
        // A batch held as a stamped head and the rest (what the tail cache serves).
        let held = |len: usize, seed: u8| {
            let Chunk::Mem(b) = mem(len, seed) else {
                unreachable!()
            };
            Chunk::Held(crate::storage::HeldBatch {
                head: b.slice(..16),
                rest: b.slice(16..),
            })
        };
        let mut chunks = vec![mem(3, 1), mem(0, 2), range(10, 1_500_000), mem(70_000, 3)];
        chunks.extend((0..1500).map(|i| {
            if i % 3 == 0 {
                held(16 + i % 70, 11)
            } else {
                mem(i % 50, 5)
            }
        }));
        chunks.push(range(0, 0));
        chunks.push(held(300_000, 13));
        chunks.push(range(2_999_000, 1000));
        chunks.push(mem(1_000_000, 7));
        chunks.push(held(16, 17));
        let mut want = Vec::new();
        for c in &chunks {
            match c {
                Chunk::Mem(b) => want.extend_from_slice(b),
                Chunk::Held(b) => want.extend_from_slice(&b.contiguous()),
                Chunk::File(r) => want.extend(r.read_all().unwrap()),
            }
        }
        let got = through_socket(chunks);
        assert_eq!(got.len(), want.len());
        assert!(got == want, "bytes differ");
    }
}
