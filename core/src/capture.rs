//! Reading one output stream: keep a bounded tail, feed a listener, stop on a drain bound.

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use tokio::net::unix::pipe;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::decode::Utf8StreamDecoder;

/// Pipe capacity asked for (Linux's default is 64 KiB; 1 MiB is the unprivileged
/// maximum by default): fewer, larger reads and deliveries for chatty jobs.
const PIPE_SIZE: i32 = 1024 * 1024;
/// Spare room ensured before each read: a full pipe is read at once.
const READ_CHUNK: usize = PIPE_SIZE as usize;

/// Receives a stream's text as it arrives. Each delivery is awaited before the next
/// read, so a slow listener slows the child (through the pipe) instead of growing
/// memory, and deliveries keep their order.
pub trait OutputListener: Send + Sync + 'static {
    /// Why the listener failed; fails the job.
    type Error: Send + 'static;
    fn deliver(&self, text: String) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// What was kept of a stream: its last `max_buffer` bytes at most, starting on a
/// character boundary, and how many bytes before them were dropped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CapturedOutput {
    pub bytes: Vec<u8>,
    pub dropped: u64,
}

impl CapturedOutput {
    /// The text, invalid UTF-8 replaced by U+FFFD; no copy when it is valid.
    pub fn into_text(self) -> String {
        match String::from_utf8(self.bytes) {
            Ok(text) => text,
            Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
        }
    }
}

/// Keeps the most recent `max` bytes in one growing buffer. Old bytes are cut in
/// batches (once the excess reaches half of `max`) so that each byte is moved
/// a bounded number of times; memory stays below 1.5 x `max` + one read.
#[derive(Debug)]
struct TailBuffer {
    buf: Vec<u8>,
    max: usize,
    dropped: u64,
}

impl TailBuffer {
    fn new(max: usize) -> Self {
        TailBuffer {
            buf: Vec::new(),
            max,
            dropped: 0,
        }
    }

    fn trim_excess(&mut self) {
        let slack = (self.max / 2).max(READ_CHUNK);
        if self.buf.len() > self.max + slack {
            self.cut_front(self.buf.len() - self.max);
        }
    }

    fn cut_front(&mut self, n: usize) {
        self.buf.drain(..n);
        self.dropped += n as u64;
    }

    fn finish(mut self) -> CapturedOutput {
        if self.buf.len() > self.max {
            self.cut_front(self.buf.len() - self.max);
            // Do not start in the middle of a character.
            let partial = self
                .buf
                .iter()
                .take(3)
                .take_while(|&&b| b & 0xC0 == 0x80)
                .count();
            self.cut_front(partial);
        }
        CapturedOutput {
            bytes: self.buf,
            dropped: self.dropped,
        }
    }
}

/// Reads `pipe` until EOF, or until the drain deadline published on `drain` passes.
///
/// A listener error is sent on `failures` (once); reading goes on without
/// deliveries so that the partial output is kept.
pub async fn capture<L: OutputListener>(
    pipe: OwnedFd,
    max_buffer: usize,
    mut listener: Option<L>,
    mut drain: watch::Receiver<Option<Instant>>,
    failures: mpsc::Sender<L::Error>,
) -> CapturedOutput {
    let mut tail = TailBuffer::new(max_buffer);
    let mut decoder = Utf8StreamDecoder::new();
    // Best effort: a smaller pipe only means more reads.
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
    let receiver = match pipe::Receiver::from_owned_fd(pipe) {
        Ok(receiver) => receiver,
        Err(_) => return tail.finish(),
    };
    loop {
        let deadline = *drain.borrow_and_update();
        let read = tokio::select! {
            biased;
            read = read_some(&receiver, &mut tail.buf) => read,
            _ = sleep_until_opt(deadline) => break,
            changed = drain.changed(), if deadline.is_none() => {
                if changed.is_err() { break } else { continue }
            }
        };
        let Ok(Some(new)) = read else { break };
        if listener.is_some() {
            let text = decoder.decode(&tail.buf[tail.buf.len() - new..]);
            deliver(&mut listener, text, &failures).await;
        }
        tail.trim_excess();
    }
    if listener.is_some() {
        let text = decoder.finish();
        deliver(&mut listener, text, &failures).await;
    }
    tail.finish()
}

/// Hands `text` to the listener; on failure reports it and drops the listener.
async fn deliver<L: OutputListener>(
    listener: &mut Option<L>,
    text: String,
    failures: &mpsc::Sender<L::Error>,
) {
    if let Some(l) = listener
        && !text.is_empty()
        && let Err(err) = l.deliver(text).await
    {
        let _ = failures.try_send(err);
        *listener = None;
    }
}

/// Appends what the pipe has to `buf`: `Some(n)` bytes, or `None` at EOF.
async fn read_some(receiver: &pipe::Receiver, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
    loop {
        receiver.readable().await?;
        buf.reserve(READ_CHUNK);
        match receiver.try_read_buf(buf) {
            Ok(0) => return Ok(None),
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_buffer_keeps_the_last_bytes_on_a_char_boundary() {
        let mut tail = TailBuffer::new(4);
        tail.buf.extend_from_slice("abcdé€".as_bytes()); // 4 + 2 + 3 bytes
        let out = tail.finish();
        // The last 4 bytes start inside "é": its continuation byte is dropped too.
        assert_eq!(out.bytes, "€".as_bytes());
        assert_eq!(out.dropped, 6);
    }

    #[test]
    fn tail_buffer_trims_in_batches() {
        let mut tail = TailBuffer::new(10);
        tail.buf.resize(READ_CHUNK + 11, b'x');
        tail.trim_excess();
        assert_eq!(tail.buf.len(), 10);
        assert_eq!(tail.dropped, READ_CHUNK as u64 + 1);
    }

    #[test]
    fn zero_max_keeps_nothing() {
        let mut tail = TailBuffer::new(0);
        tail.buf.extend_from_slice(b"abc");
        assert_eq!(
            tail.finish(),
            CapturedOutput {
                bytes: vec![],
                dropped: 3
            }
        );
    }
}
