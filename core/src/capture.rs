//! Reading one output stream: keep a bounded tail, feed a listener, stop on a drain bound.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::net::unix::pipe;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::decode::Utf8StreamDecoder;
use crate::pipe_size::{BUSY_PIPE_SIZE, PipeGrowth};

/// Most bytes taken per read without a listener: a full grown pipe.
const READ_CHUNK: usize = BUSY_PIPE_SIZE;
/// Most bytes taken per read with a listener, hence per delivery: large enough for
/// throughput, small enough that a few streams' deliveries do not hold the event
/// loop for long in one turn.
const DELIVERY_CHUNK: usize = 256 * 1024;
/// Most bytes still taken from a pipe after the drain deadline.
const LAST_PASS_MAX: usize = 4 * READ_CHUNK;
/// Deliveries queued and not yet consumed, per stream.
const MAX_IN_FLIGHT: usize = 2;

/// Receives a stream's text as it arrives.
///
/// `deliver` queues the text at once (deliveries keep their order) and returns a
/// future that resolves when the listener has consumed it. At most
/// `MAX_IN_FLIGHT` deliveries are outstanding: beyond that the reader waits, so a
/// slow listener slows the child (through the pipe) instead of growing memory,
/// while a fast one never leaves the pipe idle for a round trip.
pub trait OutputListener: Send + Sync + 'static {
    /// Why the listener failed; fails the job.
    type Error: Send + 'static;
    type Delivery: Future<Output = Result<(), Self::Error>> + Send + 'static;
    fn deliver(&self, text: String) -> Self::Delivery;
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
    let mut deliveries = Deliveries::<L> {
        queue: VecDeque::new(),
    };
    let read_limit = if listener.is_some() {
        DELIVERY_CHUNK
    } else {
        READ_CHUNK
    };
    // The pipe keeps the kernel's default size until its stream proves busy.
    let mut growth = PipeGrowth::default();
    let receiver = match pipe::Receiver::from_owned_fd(pipe) {
        Ok(receiver) => receiver,
        Err(_) => return tail.finish(),
    };
    // Set once the drain deadline has passed: what may still be taken, without waiting.
    let mut last_pass: Option<usize> = None;
    loop {
        let read = match last_pass {
            // Bytes already in the pipe are taken even if this task was not scheduled
            // before the deadline (a loaded machine); a process that escaped the group
            // and keeps writing is cut off after a bounded amount.
            Some(0) => break,
            Some(left) => read_now(&receiver, &mut tail.buf, read_limit.min(left)),
            None => {
                let deadline = *drain.borrow_and_update();
                tokio::select! {
                    biased;
                    // A consumed delivery may carry the listener's failure: act on it
                    // now, not when the stream ends.
                    result = deliveries.next_done(), if !deliveries.queue.is_empty() => {
                        settle(result, &mut listener, &failures);
                        continue;
                    }
                    read = read_some(&receiver, &mut tail.buf, read_limit) => read,
                    _ = sleep_until_opt(deadline) => {
                        last_pass = Some(LAST_PASS_MAX);
                        continue;
                    }
                    changed = drain.changed(), if deadline.is_none() => {
                        if changed.is_err() { break } else { continue }
                    }
                }
            }
        };
        // EOF, an error, or (in the last pass) an empty pipe.
        let Ok(Some(new)) = read else { break };
        growth.after_read(receiver.as_raw_fd(), new);
        if let Some(left) = &mut last_pass {
            *left = left.saturating_sub(new);
        }
        if listener.is_some() {
            let text = decoder.decode(&tail.buf[tail.buf.len() - new..]);
            deliveries.queue(&mut listener, text, &failures).await;
        }
        tail.trim_excess();
    }
    if listener.is_some() {
        let text = decoder.finish();
        deliveries.queue(&mut listener, text, &failures).await;
    }
    // Every delivery is consumed before the job reports: callbacks never run late.
    deliveries.drain(&mut listener, &failures).await;
    tail.finish()
}

/// A stream's outstanding deliveries, oldest first.
struct Deliveries<L: OutputListener> {
    queue: VecDeque<Pin<Box<L::Delivery>>>,
}

impl<L: OutputListener> Deliveries<L> {
    /// Hands `text` to the listener, then waits while too many are outstanding.
    async fn queue(
        &mut self,
        listener: &mut Option<L>,
        text: String,
        failures: &mpsc::Sender<L::Error>,
    ) {
        if let Some(l) = listener
            && !text.is_empty()
        {
            self.queue.push_back(Box::pin(l.deliver(text)));
        }
        self.collect_ready(listener, failures);
        while self.queue.len() >= MAX_IN_FLIGHT {
            let result = self.next_done().await;
            settle(result, listener, failures);
        }
    }

    /// Waits for the oldest delivery to be consumed (cancel-safe: it stays queued
    /// until it is done). The queue must not be empty.
    async fn next_done(&mut self) -> Result<(), L::Error> {
        let front = self.queue.front_mut().expect("a queued delivery");
        let result = std::future::poll_fn(|cx| front.as_mut().poll(cx)).await;
        self.queue.pop_front();
        result
    }

    /// Takes the consumed deliveries off the front, without waiting.
    fn collect_ready(&mut self, listener: &mut Option<L>, failures: &mpsc::Sender<L::Error>) {
        let mut context = Context::from_waker(Waker::noop());
        while let Some(front) = self.queue.front_mut() {
            let Poll::Ready(result) = front.as_mut().poll(&mut context) else {
                break;
            };
            self.queue.pop_front();
            settle(result, listener, failures);
        }
    }

    async fn drain(&mut self, listener: &mut Option<L>, failures: &mpsc::Sender<L::Error>) {
        while !self.queue.is_empty() {
            let result = self.next_done().await;
            settle(result, listener, failures);
        }
    }
}

/// On a listener's first failure: report it and stop delivering.
fn settle<L: OutputListener>(
    result: Result<(), L::Error>,
    listener: &mut Option<L>,
    failures: &mpsc::Sender<L::Error>,
) {
    if let Err(err) = result
        && listener.take().is_some()
    {
        let _ = failures.try_send(err);
    }
}

/// Appends what the pipe has, at most `limit` bytes, to `buf`: `Some(n)` bytes,
/// or `None` at EOF.
async fn read_some(
    receiver: &pipe::Receiver,
    buf: &mut Vec<u8>,
    limit: usize,
) -> io::Result<Option<usize>> {
    loop {
        receiver.readable().await?;
        match receiver.try_io(|| read_into(receiver.as_raw_fd(), buf, limit)) {
            Ok(0) => return Ok(None),
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Like `read_some`, without waiting for readiness: `Err(WouldBlock)` when empty.
fn read_now(
    receiver: &pipe::Receiver,
    buf: &mut Vec<u8>,
    limit: usize,
) -> io::Result<Option<usize>> {
    loop {
        match read_into(receiver.as_raw_fd(), buf, limit) {
            Ok(0) => return Ok(None),
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// One `read(2)` of at most `limit` bytes appended to `buf`.
fn read_into(fd: i32, buf: &mut Vec<u8>, limit: usize) -> io::Result<usize> {
    buf.reserve(limit);
    let spare = &mut buf.spare_capacity_mut()[..limit];
    // SAFETY: reads at most `spare.len()` bytes into memory `buf` owns.
    let n = unsafe { libc::read(fd, spare.as_mut_ptr().cast(), spare.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel initialized these `n` bytes.
    unsafe { buf.set_len(buf.len() + n as usize) };
    Ok(n as usize)
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
    use std::os::fd::FromRawFd;

    struct NoListener;
    impl OutputListener for NoListener {
        type Error = ();
        type Delivery = std::future::Ready<Result<(), ()>>;
        fn deliver(&self, _: String) -> Self::Delivery {
            std::future::ready(Ok(()))
        }
    }

    /// A pipe holding `data`, its write end closed.
    fn filled_pipe(data: &[u8]) -> OwnedFd {
        let mut fds = [0; 2];
        // SAFETY: plain syscalls on descriptors we own.
        unsafe {
            assert_eq!(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC), 0);
            assert_eq!(
                libc::write(fds[1], data.as_ptr().cast(), data.len()),
                data.len() as isize
            );
            libc::close(fds[1]);
            OwnedFd::from_raw_fd(fds[0])
        }
    }

    #[tokio::test]
    async fn output_waiting_in_the_pipe_is_kept_even_past_the_drain_deadline() {
        // The deadline passed before the reader ever ran (a loaded machine): what the
        // pipe already holds must still be read.
        let past = Instant::now() - std::time::Duration::from_millis(50);
        let (_tx, drain) = watch::channel(Some(past));
        let (failures, _) = mpsc::channel(1);
        let out =
            capture::<NoListener>(filled_pipe(b"job-167\n"), 1024, None, drain, failures).await;
        assert_eq!(out.bytes, b"job-167\n");
    }

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
