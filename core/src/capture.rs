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

use crate::decode::{Utf8Decoder, ascii_prefix};
use crate::pipe_size::{BUSY_PIPE_SIZE, PipeGrowth};
pub use crate::tail::CapturedOutput;
use crate::tail::{ByteTail, TextTail};
use crate::text::{PIECE_MAX_UTF8, Replacements, Text};

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

/// How a stream is returned: decoded as UTF-8 (text), or as raw bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Encoding {
    #[default]
    Utf8,
    Buffer,
}

/// What a stream's capture keeps, and in which form.
#[derive(Debug, Clone, Copy)]
pub struct CaptureMode {
    /// Most recent stream bytes kept; older ones are dropped and counted.
    pub max_buffer: usize,
    pub encoding: Encoding,
}

/// A piece of a stream for a listener, ready for JS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputChunk {
    /// Decoded text, to be handed over in pieces: `piece_ends` are the unit offsets where
    /// each piece ends (at most [`PIECE_MAX_UTF8`] bytes of UTF-8, whole characters).
    Text { text: Text, piece_ends: Vec<usize> },
    /// Raw bytes (`encoding: 'buffer'`).
    Bytes(Vec<u8>),
}

impl OutputChunk {
    /// The chunk as a Rust string (bytes decoded with replacement, for tests and logs).
    pub fn to_text(&self) -> String {
        match self {
            OutputChunk::Text { text, .. } => text.to_string_from(0),
            OutputChunk::Bytes(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        }
    }
}

/// Receives a stream's output as it arrives.
///
/// `deliver` queues the chunk at once (deliveries keep their order) and returns a
/// future that resolves when the listener has consumed it. At most
/// `MAX_IN_FLIGHT` deliveries are outstanding: beyond that the reader waits, so a
/// slow listener slows the child (through the pipe) instead of growing memory,
/// while a fast one never leaves the pipe idle for a round trip.
pub trait OutputListener: Send + Sync + 'static {
    /// Why the listener failed; fails the job.
    type Error: Send + 'static;
    type Delivery: Future<Output = Result<(), Self::Error>> + Send + 'static;
    fn deliver(&self, chunk: OutputChunk) -> Self::Delivery;
}

/// Where a stream's bytes go: kept raw, or decoded.
enum Keeper {
    Bytes(ByteTail),
    Text {
        tail: TextTail,
        /// Bytes read before decoding (when they cannot be read in place).
        scratch: Vec<u8>,
        /// A listener's own decoder: its text is delivered, then kept.
        decoder: Utf8Decoder,
    },
}

impl Keeper {
    fn finish(self) -> CapturedOutput {
        match self {
            Keeper::Bytes(tail) => tail.finish(),
            Keeper::Text { tail, .. } => tail.finish(),
        }
    }
}

/// Reads `pipe` until EOF, or until the drain deadline published on `drain` passes.
///
/// A listener error is sent on `failures` (once); reading goes on without
/// deliveries so that the partial output is kept.
pub async fn capture<L: OutputListener>(
    pipe: OwnedFd,
    mode: CaptureMode,
    mut listener: Option<L>,
    mut drain: watch::Receiver<Option<Instant>>,
    failures: mpsc::Sender<L::Error>,
) -> CapturedOutput {
    let mut keeper = match mode.encoding {
        Encoding::Buffer => Keeper::Bytes(ByteTail::new(mode.max_buffer)),
        Encoding::Utf8 => Keeper::Text {
            tail: TextTail::new(mode.max_buffer),
            scratch: Vec::new(),
            decoder: Utf8Decoder::new(),
        },
    };
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
        Err(_) => return keeper.finish(),
    };
    // Set once the drain deadline has passed: what may still be taken, without waiting.
    let mut last_pass: Option<usize> = None;
    // Fixed for the stream's life: after a listener fails, its decoder still holds the
    // start of a split character, so text keeps going through it (without deliveries).
    let listening = listener.is_some();
    loop {
        // Where this read goes: the kept bytes, the kept text itself (ASCII needs no
        // decoding), or a scratch buffer to decode from.
        let (target, in_place) = match &mut keeper {
            Keeper::Bytes(tail) => (&mut tail.buf, true),
            Keeper::Text { tail, scratch, .. } => match tail.in_place_target() {
                Some(text) if !listening => (text, true),
                _ => {
                    scratch.clear();
                    (scratch, false)
                }
            },
        };
        let read = match last_pass {
            // Bytes already in the pipe are taken even if this task was not scheduled
            // before the deadline (a loaded machine); a process that escaped the group
            // and keeps writing is cut off after a bounded amount.
            Some(0) => break,
            Some(left) => read_now(&receiver, target, read_limit.min(left)),
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
                    read = read_some(&receiver, target, read_limit) => read,
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
        let chunk = take_read(&mut keeper, new, in_place, listening, listener.is_some());
        if let Some(chunk) = chunk {
            deliveries.queue(&mut listener, chunk, &failures).await;
        }
    }
    if let Keeper::Text { tail, decoder, .. } = &mut keeper
        && listening
    {
        // The listener's decoder ends the stream; the tail's own holds nothing.
        let mut text = Text::default();
        let mut replacements = Replacements::default();
        let pending = decoder.pending() as u64;
        decoder.finish(&mut text, &mut replacements, 0);
        tail.append(&text, &replacements, pending);
        deliveries
            .queue(&mut listener, text_chunk(text), &failures)
            .await;
    }
    // Every delivery is consumed before the job reports: callbacks never run late.
    deliveries.drain(&mut listener, &failures).await;
    keeper.finish()
}

/// Accounts for `new` bytes just read into the keeper's read target; returns what to
/// deliver when `deliver` (a listener is there and has not failed). `listening`: the
/// stream had a listener, so its text goes through the listener's decoder.
fn take_read(
    keeper: &mut Keeper,
    new: usize,
    in_place: bool,
    listening: bool,
    deliver: bool,
) -> Option<OutputChunk> {
    match keeper {
        Keeper::Bytes(tail) => {
            let chunk =
                deliver.then(|| OutputChunk::Bytes(tail.buf[tail.buf.len() - new..].to_vec()));
            tail.trim_excess();
            chunk
        }
        Keeper::Text {
            tail,
            scratch,
            decoder,
        } => {
            if in_place {
                tail.accept_in_place(new, scratch);
                return None;
            }
            if !listening {
                tail.decode(scratch);
                return None;
            }
            // Decoded once, for the listener; the tail keeps a copy of the text.
            let mut replacements = Replacements::default();
            if decoder.pending() == 0 && ascii_prefix(scratch) == scratch.len() {
                // ASCII is its own Latin-1 text: the read buffer itself is delivered.
                let read = std::mem::replace(scratch, Vec::with_capacity(scratch.capacity()));
                let text = Text::Latin1(read);
                tail.append(&text, &replacements, new as u64);
                return deliver.then(|| text_chunk(text));
            }
            let mut text = Text::default();
            let before = decoder.pending() as u64;
            decoder.decode(scratch, &mut text, &mut replacements, 0);
            let raw = before + scratch.len() as u64 - decoder.pending() as u64;
            tail.append(&text, &replacements, raw);
            deliver.then(|| text_chunk(text))
        }
    }
}

fn text_chunk(text: Text) -> OutputChunk {
    let piece_ends = text.piece_ends(PIECE_MAX_UTF8);
    OutputChunk::Text { text, piece_ends }
}

/// A stream's outstanding deliveries, oldest first.
struct Deliveries<L: OutputListener> {
    queue: VecDeque<Pin<Box<L::Delivery>>>,
}

impl<L: OutputListener> Deliveries<L> {
    /// Hands `chunk` to the listener, then waits while too many are outstanding.
    async fn queue(
        &mut self,
        listener: &mut Option<L>,
        chunk: OutputChunk,
        failures: &mpsc::Sender<L::Error>,
    ) {
        let empty = match &chunk {
            OutputChunk::Text { text, .. } => text.is_empty(),
            OutputChunk::Bytes(bytes) => bytes.is_empty(),
        };
        if let Some(l) = listener
            && !empty
        {
            self.queue.push_back(Box::pin(l.deliver(chunk)));
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

/// One `read(2)` of at most `limit` bytes appended to `buf` (no copy through a stack
/// buffer).
pub(crate) fn read_into(fd: i32, buf: &mut Vec<u8>, limit: usize) -> io::Result<usize> {
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

    struct NoListener;
    impl OutputListener for NoListener {
        type Error = ();
        type Delivery = std::future::Ready<Result<(), ()>>;
        fn deliver(&self, _: OutputChunk) -> Self::Delivery {
            std::future::ready(Ok(()))
        }
    }

    /// Collects what it is given.
    #[derive(Clone, Default)]
    struct Collect(std::sync::Arc<std::sync::Mutex<Vec<OutputChunk>>>);
    impl OutputListener for Collect {
        type Error = ();
        type Delivery = std::future::Ready<Result<(), ()>>;
        fn deliver(&self, chunk: OutputChunk) -> Self::Delivery {
            self.0.lock().unwrap().push(chunk);
            std::future::ready(Ok(()))
        }
    }

    /// A pipe holding `data`, its write end closed.
    fn filled_pipe(data: &[u8]) -> OwnedFd {
        use std::io::Write;
        let (read_end, write_end) = crate::spawn::pipe().unwrap();
        std::fs::File::from(write_end).write_all(data).unwrap();
        read_end
    }

    fn text_mode(max_buffer: usize) -> CaptureMode {
        CaptureMode {
            max_buffer,
            encoding: Encoding::Utf8,
        }
    }

    #[tokio::test]
    async fn output_waiting_in_the_pipe_is_kept_even_past_the_drain_deadline() {
        // The deadline passed before the reader ever ran (a loaded machine): what the
        // pipe already holds must still be read.
        let past = Instant::now() - std::time::Duration::from_millis(50);
        let (_tx, drain) = watch::channel(Some(past));
        let (failures, _) = mpsc::channel(1);
        let out = capture::<NoListener>(
            filled_pipe(b"job-167\n"),
            text_mode(1024),
            None,
            drain,
            failures,
        )
        .await;
        assert_eq!(out.into_text(), "job-167\n");
    }

    #[tokio::test]
    async fn text_is_decoded_for_the_listener_and_the_result_alike() {
        let bytes = [&b"ab\xff"[..], "é漢😀".as_bytes(), &[0xe2, 0x82]].concat();
        let (_tx, drain) = watch::channel(None);
        let (failures, _) = mpsc::channel(1);
        let seen = Collect::default();
        let out = capture(
            filled_pipe(&bytes),
            text_mode(1024),
            Some(seen.clone()),
            drain,
            failures,
        )
        .await;
        let expected = String::from_utf8_lossy(&bytes);
        let delivered: String = seen.0.lock().unwrap().iter().map(|c| c.to_text()).collect();
        assert_eq!(delivered, expected);
        assert_eq!(out.into_text(), expected);
    }

    #[tokio::test]
    async fn bytes_stay_bytes_for_the_listener_and_the_result() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
        let (_tx, drain) = watch::channel(None);
        let (failures, _) = mpsc::channel(1);
        let seen = Collect::default();
        let mode = CaptureMode {
            max_buffer: 1000,
            encoding: Encoding::Buffer,
        };
        let out = capture(
            filled_pipe(&[]),
            mode,
            Some(seen.clone()),
            drain.clone(),
            failures.clone(),
        )
        .await;
        assert_eq!(out.into_bytes(), Vec::<u8>::new());
        // A pipe holds 64 KiB: feed the rest from a writer thread.
        let (read_end, write_end) = crate::spawn::pipe().unwrap();
        let writer = {
            let bytes = bytes.clone();
            std::thread::spawn(move || {
                use std::io::Write;
                std::fs::File::from(write_end).write_all(&bytes).unwrap();
            })
        };
        let out = capture(read_end, mode, Some(seen.clone()), drain, failures).await;
        writer.join().unwrap();
        assert_eq!(out.dropped, 299_000);
        assert_eq!(out.into_bytes(), &bytes[299_000..]);
        let delivered: Vec<u8> = seen
            .0
            .lock()
            .unwrap()
            .iter()
            .flat_map(|c| match c {
                OutputChunk::Bytes(b) => b.clone(),
                OutputChunk::Text { .. } => panic!("text for a buffer stream"),
            })
            .collect();
        assert_eq!(delivered, bytes);
    }

    /// Fails on its first delivery.
    struct FailFirst;
    impl OutputListener for FailFirst {
        type Error = ();
        type Delivery = std::future::Ready<Result<(), ()>>;
        fn deliver(&self, _: OutputChunk) -> Self::Delivery {
            std::future::ready(Err(()))
        }
    }

    #[tokio::test]
    async fn after_a_listener_fails_a_character_it_held_back_still_reaches_the_result() {
        let (read_end, write_end) = crate::spawn::pipe().unwrap();
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let mut out = std::fs::File::from(write_end);
            out.write_all(b"a\xc3").unwrap();
            std::thread::sleep(std::time::Duration::from_millis(100));
            out.write_all(b"\xa9ok").unwrap();
        });
        let (_tx, drain) = watch::channel(None);
        let (failures, mut failed) = mpsc::channel(1);
        let out = capture(read_end, text_mode(1024), Some(FailFirst), drain, failures).await;
        writer.join().unwrap();
        assert!(failed.try_recv().is_ok(), "the failure was reported");
        assert_eq!(out.into_text(), "aéok");
    }
}
