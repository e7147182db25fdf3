//! One job's supervisor: forked by the fork server for each job, it starts the
//! job's main process, reaps and contains the job's whole tree
//! ([`Supervision`]), and talks to the host over the job's control socket
//! ([`protocol`]).
//!
//! The control socket is also the job's lifeline: only the host holds its other
//! end, so when the host dies — SIGKILL included — the kernel closes it, we read
//! end-of-stream, and terminate the job (SIGTERM, grace period, SIGKILL) by
//! ourselves. The host closes it on purpose for the same effect (a Node worker
//! thread or process that exits).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use local_worker_core::fd_passing;
use local_worker_core::lean_spawn::IgnoredSignals;
use local_worker_core::protocol::{Frames, FromSupervisor, Launch, ToSupervisor};
use local_worker_core::spawn;

use crate::signals;
use crate::supervision::Supervision;

/// What the host hands a supervisor: the control socket, the write ends of the
/// job's stdout and stderr pipes, and the host's working directory; and where to
/// tell the fork server, once the job's main process started, to see to its spares.
pub struct JobFds<'a> {
    pub control: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub cwd: OwnedFd,
    pub started: Option<BorrowedFd<'a>>,
}

/// A supervisor set up for a job that has not come yet (a spare of the fork
/// server): everything that does not depend on the job is done before it comes.
pub struct Ready {
    signal_fd: OwnedFd,
    /// What a job's main process must not inherit ignored (read now, not on the
    /// job's path).
    ignored: IgnoredSignals,
    /// The control socket's bytes, in a buffer kept from job to job (a fresh one
    /// per job cost an mmap and an munmap: musl gives freed memory back at once).
    frames: Frames,
}

impl Ready {
    /// Becomes a subreaper and takes its signals.
    pub fn new() -> io::Result<Ready> {
        // SAFETY: plain prctl on this process.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };
        let signal_fd = signals::take(&signals::SUPERVISOR)?;
        touch_stack();
        Ok(Ready {
            signal_fd,
            ignored: IgnoredSignals::of_this_process(),
            frames: Frames::default(),
        })
    }

    /// Runs one job to its end. Returns whether this process may take another: the
    /// job ended with no process of it left, and nothing of ours failed.
    pub fn run(&mut self, fds: JobFds) -> bool {
        // SAFETY: plain prctl on this process.
        unsafe { libc::prctl(libc::PR_SET_NAME, c"lw-supervisor".as_ptr()) };
        self.frames.clear();
        let again = matches!(
            supervise(fds, &self.signal_fd, &self.ignored, &mut self.frames),
            Ok(true)
        );
        // What the job's children left queued there is no news for the next one.
        signals::read(self.signal_fd.as_fd());
        again
    }

    /// Lets signals that end the process through while it waits for a job (a spare
    /// told to stop has nothing to clean up), or holds them again for the signalfd.
    pub fn idle(&self, idle: bool) {
        signals::hold(&signals::ENDING, !idle);
    }
}

/// Ends this process. Nothing is buffered and no exit handler is ours: a plain
/// `_exit` spares the libc and loader teardown.
pub fn exit(code: i32) -> ! {
    // SAFETY: ends this process.
    unsafe { libc::_exit(code) }
}

/// Writes to the stack a job's start will use, so that the pages this fresh fork
/// has to fault in are faulted in now, not on the job's path.
#[inline(never)]
fn touch_stack() {
    let mut pages = [0u8; 48 * 1024];
    std::hint::black_box(&mut pages);
}

/// Runs the job; `Ok(true)` when it ended with no process of it left and nobody
/// signalled this supervisor to end.
fn supervise(
    fds: JobFds,
    signal_fd: &OwnedFd,
    ignored: &IgnoredSignals,
    frames: &mut Frames,
) -> io::Result<bool> {
    let JobFds {
        control,
        stdout,
        stderr,
        cwd,
        started,
    } = fds;
    // The server forks the next spare once this job is under way, not while it starts
    // (on two CPUs, that fork would take turns with this job's start).
    let tell_server = || {
        if let Some(started) = started {
            // SAFETY: a one-byte write from a static.
            unsafe { libc::write(started.as_raw_fd(), b"1".as_ptr().cast(), 1) };
        }
    };
    // Blocking: the host sets O_NONBLOCK on its own end only (each end of a socket
    // pair is a description of its own).
    let Some(ToSupervisor::Launch(launch)) = receive(control.as_fd(), frames)? else {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "no launch"));
    };
    // The job starts where the host was when it asked (its `cwd` is absolute).
    // SAFETY: plain syscall on a descriptor we own.
    if unsafe { libc::fchdir(cwd.as_raw_fd()) } != 0 {
        let errno = io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        tell_server();
        send(control.as_fd(), &FromSupervisor::SpawnFailed { errno })?;
        return Ok(true);
    }
    drop(cwd);
    let started_main = spawn::start_lean(&launch, stdout.as_fd(), stderr.as_fd(), ignored);
    tell_server();
    let main = match started_main {
        Ok(pid) => pid,
        Err(e) => {
            let errno = e.raw_os_error().unwrap_or(libc::EIO);
            send(control.as_fd(), &FromSupervisor::SpawnFailed { errno })?;
            return Ok(true);
        }
    };
    // The job's processes hold the pipes now; ours would keep them from EOF.
    drop((stdout, stderr));
    // SAFETY: plain syscall.
    let me = unsafe { libc::getpid() };
    let mut outbox = Outbox::new(control.as_fd());
    outbox.hold(FromSupervisor::Spawned {
        pid: main,
        supervisor: me,
    });
    let leftovers = launch.kill_leftovers.then_some(launch.grace);
    let mut supervision = Supervision::new(main, leftovers);
    event_loop(&mut supervision, &launch, &mut outbox, signal_fd, frames)
}

/// How long the host may go without hearing that the main process started: a job
/// that ends sooner says it in the same write as its end (one wake-up of the host,
/// not two, for the short jobs that make up most of a spawn-heavy load). The cost:
/// a supervisor killed by someone else within that time leaves the host without
/// the job's pid.
const SPAWNED_WITHIN: Duration = Duration::from_millis(2);

/// Messages to the host, written together at the end of each turn of the loop.
struct Outbox<'a> {
    control: BorrowedFd<'a>,
    bytes: Vec<u8>,
    /// A message held back until then (unless something else is written first),
    /// and its length: it is the first thing queued.
    held_until: Option<Instant>,
    held_len: usize,
}

impl<'a> Outbox<'a> {
    fn new(control: BorrowedFd<'a>) -> Self {
        Outbox {
            control,
            bytes: Vec::new(),
            held_until: None,
            held_len: 0,
        }
    }

    fn push(&mut self, message: &FromSupervisor) {
        self.bytes.extend_from_slice(&message.encode());
    }

    /// Queues `message`, but writes it only with the next one or at [`SPAWNED_WITHIN`].
    fn hold(&mut self, message: FromSupervisor) {
        debug_assert!(self.bytes.is_empty());
        self.push(&message);
        self.held_len = self.bytes.len();
        self.held_until = Some(Instant::now() + SPAWNED_WITHIN);
    }

    /// When the held message is due, if one is held.
    fn due(&self) -> Option<Instant> {
        self.held_until
    }

    /// Writes what is queued, unless only a held message that is not due yet.
    fn flush(&mut self) {
        let only_held = self.held_until.is_some_and(|until| Instant::now() < until);
        let queued_after_held = self.bytes.len() > self.held_len;
        if self.bytes.is_empty() || (only_held && !queued_after_held) {
            return;
        }
        // A host that is gone no longer listens: nothing to do about it.
        let _ = write_all(self.control, &self.bytes);
        self.bytes.clear();
        self.held_until = None;
    }
}

fn event_loop(
    supervision: &mut Supervision,
    launch: &Launch,
    outbox: &mut Outbox,
    signal_fd: &OwnedFd,
    frames: &mut Frames,
) -> io::Result<bool> {
    let control = outbox.control;
    // What came with the launch (a Terminate sent before we ran) is acted on first.
    // Reading stops at end of stream; writing goes on, in case the host only shut
    // down its side (it lets go of the job, but still listens).
    let mut listening = act_on(frames, supervision, launch);
    // A supervisor sent a terminating signal ends after its job, whatever is left.
    let mut told_to_end = false;
    loop {
        if let Some(complete) = supervision.finished() {
            let usage = supervision.usage();
            outbox.push(&FromSupervisor::Done { usage, complete });
            outbox.held_until = None;
            outbox.flush();
            return Ok(complete && !told_to_end);
        }
        outbox.flush();
        let next = [supervision.deadline(), outbox.due()]
            .into_iter()
            .flatten()
            .min();
        let timeout = next.map(|at| at.saturating_duration_since(Instant::now()));
        let ready = signals::wait_readable(
            &[Some(signal_fd.as_fd()), listening.then_some(control)],
            timeout,
        );
        if ready[0] {
            for signal in signals::read(signal_fd.as_fd()) {
                if signal != libc::SIGCHLD {
                    // Someone asked us to end: end the job, as its host would.
                    told_to_end = true;
                    supervision.terminate(launch.grace);
                }
            }
        }
        if let Some(wait_status) = supervision.reap() {
            outbox.push(&FromSupervisor::Exited { wait_status });
        }
        if ready[1] {
            listening = match frames.read_from(control) {
                Ok(n) if n > 0 => act_on(frames, supervision, launch),
                // The host is gone, or lets go of the job: end it by ourselves.
                _ => {
                    supervision.terminate(launch.grace);
                    false
                }
            };
        }
        supervision.advance(Instant::now());
    }
}

/// Acts on the whole messages received; `false` once nothing more is to be read
/// (a message that may not come after the launch ends the job, as end of stream does).
fn act_on(frames: &mut Frames, supervision: &mut Supervision, launch: &Launch) -> bool {
    loop {
        match frames.next_message::<ToSupervisor>() {
            Ok(Some(ToSupervisor::Terminate { grace })) => supervision.terminate(grace),
            Ok(None) => return true,
            Ok(Some(ToSupervisor::Launch(_))) | Err(_) => {
                supervision.terminate(launch.grace);
                return false;
            }
        }
    }
}

/// Blocks until a whole message has arrived; `None` at end of stream.
fn receive(control: BorrowedFd, frames: &mut Frames) -> io::Result<Option<ToSupervisor>> {
    loop {
        if let Some(message) = frames
            .next_message()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
        {
            return Ok(Some(message));
        }
        if frames.read_from(control)? == 0 {
            return Ok(None);
        }
    }
}

/// Writes one message whole; fails (without SIGPIPE) once the host is gone.
pub fn send(control: BorrowedFd, message: &FromSupervisor) -> io::Result<()> {
    write_all(control, &message.encode())
}

fn write_all(control: BorrowedFd, bytes: &[u8]) -> io::Result<()> {
    let mut written = 0;
    while written < bytes.len() {
        match fd_passing::send_with_fds(control, &bytes[written..], &[], 0) {
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
