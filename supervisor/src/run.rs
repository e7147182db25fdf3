//! `local-worker run`: one job, contained and reported, as the entrypoint of a
//! cloud worker's container — often as its PID 1.
//!
//! This process is the job's supervisor itself ([`Supervision`]): a subreaper (or
//! PID 1, which adopts every orphan anyway), so every process of the job comes back
//! to it to be reaped — no zombie piles up — and is ended with the job. It is tini
//! and the adapter's semantics in one:
//! * SIGTERM, SIGINT, SIGHUP or SIGQUIT (the container stopping): every process of
//!   the job gets SIGTERM, then SIGKILL after the grace period; a second one
//!   SIGKILLs at once. SIGUSR1 and SIGUSR2 are passed on to the main process;
//! * `--timeout`: the same termination, and exit status 124, as coreutils `timeout`;
//! * when the main process exits, what it left is terminated (unless
//!   `--keep-leftovers`), then local-worker exits with its status (128 + n for a
//!   signal);
//! * stdout and stderr are the job's own: they flow straight through, uncopied.
//!   With `--capture`, they go through pipes instead, written on as they arrive
//!   and their last `--max-buffer` bytes kept for the result file;
//! * `--result FILE`: the WorkerResult as JSON, as the adapter would resolve it.

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use local_worker_core::errno;
use local_worker_core::lean_spawn::IgnoredSignals;
use local_worker_core::reap::ExitStatus;
use local_worker_core::spawn::{self, pipe};
use local_worker_core::spec::JobSpec;
use serde_json::{Value, json};

use crate::run_options::RunOptions;
use crate::signals;
use crate::supervision::Supervision;

/// The signals this command acts on: a child to reap, the job to end, and two
/// that are the main process's to handle.
const SIGNALS: [libc::c_int; 7] = [
    libc::SIGCHLD,
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Exit statuses of local-worker's own (the job's are its own).
pub const TIMED_OUT: u8 = 124;
pub const FAILED: u8 = 125;
pub const NOT_EXECUTABLE: u8 = 126;
pub const NOT_FOUND: u8 = 127;

/// Runs the job; returns local-worker's exit status.
pub fn run(options: RunOptions) -> u8 {
    let RunOptions {
        spec,
        result,
        capture,
    } = options;
    let started = Instant::now();
    let outcome = match Job::start(&spec, capture) {
        Ok(job) => job.follow(&spec, started),
        Err(Failure::Spawn(error)) => {
            eprintln!("local-worker: {}", error.message);
            Outcome::spawn_failed(error, started)
        }
        Err(Failure::Own(error)) => {
            eprintln!("local-worker: {error}");
            return FAILED;
        }
    };
    let status = outcome.exit_status();
    if let Some(path) = result {
        let written = std::fs::File::create(&path).and_then(|mut file| {
            let mut text = serde_json::to_vec_pretty(&outcome.to_json(capture))?;
            text.push(b'\n');
            file.write_all(&text)
        });
        if let Err(e) = written {
            eprintln!(
                "local-worker: the result could not be written to {}: {e}",
                path.display()
            );
            return FAILED;
        }
    }
    status
}

enum Failure {
    /// The job itself could not start (not found, not executable, bad `cwd`).
    Spawn(spawn::SpawnError),
    /// Something of ours failed (no pipe, no signalfd).
    Own(io::Error),
}

/// A stream of the job captured through a pipe: written on as it arrives, and its
/// last bytes kept.
struct Captured {
    pipe: Option<OwnedFd>,
    /// Where it is written on: our own stdout or stderr.
    to: i32,
    tail: Tail,
}

struct Job {
    supervision: Supervision,
    signals: OwnedFd,
    streams: Option<[Captured; 2]>,
}

impl Job {
    fn start(spec: &JobSpec, capture: bool) -> Result<Job, Failure> {
        let own = Failure::Own;
        // SAFETY: plain prctl on this process. As PID 1 it changes nothing (init
        // adopts every orphan anyway); where it fails (qemu-user, a kernel before
        // 3.4), the job still runs, its main process group still contained.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) } != 0
            && unsafe { libc::getpid() } != 1
        {
            eprintln!(
                "local-worker: warning: PR_SET_CHILD_SUBREAPER failed ({}): processes that leave \
                 the job's process group are not contained",
                io::Error::last_os_error()
            );
        }
        // SAFETY: plain signal call; a write to a closed stdout must fail, not kill us.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        let signals = signals::take(&SIGNALS).map_err(own)?;
        let launch = spawn::prepare(spec).map_err(Failure::Spawn)?;
        let (stdout, stderr, streams) = if capture {
            let (out_read, out_write) = pipe().map_err(own)?;
            let (err_read, err_write) = pipe().map_err(own)?;
            let streams = [
                Captured {
                    pipe: Some(out_read),
                    to: 1,
                    tail: Tail::new(spec.max_buffer),
                },
                Captured {
                    pipe: Some(err_read),
                    to: 2,
                    tail: Tail::new(spec.max_buffer),
                },
            ];
            (out_write, err_write, Some(streams))
        } else {
            (inherited(1).map_err(own)?, inherited(2).map_err(own)?, None)
        };
        let ignored = IgnoredSignals::of_this_process();
        let main =
            spawn::start_lean(&launch, stdout.as_fd(), stderr.as_fd(), &ignored).map_err(|e| {
                let errno = e.raw_os_error().unwrap_or(libc::EIO);
                Failure::Spawn(spawn::SpawnError::of_errno(&spec.command, errno))
            })?;
        drop((stdout, stderr));
        let leftovers = spec.kill_leftovers.then_some(spec.kill_grace);
        Ok(Job {
            supervision: Supervision::new(main, leftovers),
            signals,
            streams,
        })
    }

    /// Runs the job to its end (see the module docs).
    fn follow(mut self, spec: &JobSpec, started: Instant) -> Outcome {
        let deadline = spec.timeout.map(|limit| started + limit);
        let mut timed_out = false;
        let mut aborted = false;
        let mut terminations = 0;
        let mut drain_until = None;
        loop {
            let now = Instant::now();
            if self.supervision.finished().is_some() {
                let until = *drain_until.get_or_insert(now + spec.drain_bound);
                if !self.reading() || now >= until {
                    break;
                }
            }
            let ended = self.supervision.main_exited() || timed_out || aborted;
            let next = [
                self.supervision.deadline(),
                deadline.filter(|_| !ended),
                drain_until,
            ]
            .into_iter()
            .flatten()
            .min();
            let mut fds = vec![Some(self.signals.as_fd())];
            if let Some(streams) = &self.streams {
                fds.extend(streams.iter().map(|s| s.pipe.as_ref().map(AsFd::as_fd)));
            }
            let ready =
                signals::wait_readable(&fds, next.map(|at| at.saturating_duration_since(now)));
            if ready[0] {
                for signal in signals::read(self.signals.as_fd()) {
                    match signal {
                        libc::SIGCHLD => {}
                        libc::SIGUSR1 | libc::SIGUSR2 => self.supervision.signal_main(signal),
                        _ => {
                            // The container is being stopped: end the job, and faster
                            // when asked again.
                            terminations += 1;
                            aborted |= !self.supervision.main_exited() && !timed_out;
                            let grace = if terminations == 1 {
                                spec.kill_grace
                            } else {
                                Duration::ZERO
                            };
                            self.supervision.terminate(grace);
                        }
                    }
                }
            }
            self.supervision.reap();
            if let Some(streams) = &mut self.streams {
                for (i, stream) in streams.iter_mut().enumerate() {
                    if ready.get(i + 1).copied().unwrap_or(false) {
                        stream.read_some();
                    }
                }
            }
            let now = Instant::now();
            if !self.supervision.main_exited()
                && !timed_out
                && !aborted
                && deadline.is_some_and(|at| now >= at)
            {
                timed_out = true;
                self.supervision.terminate(spec.kill_grace);
            }
            self.supervision.advance(now);
        }
        let [stdout, stderr] = self.streams.map_or_else(
            || [Kept::default(), Kept::default()],
            |[out, err]| [out.tail.finish(), err.tail.finish()],
        );
        Outcome {
            status: self
                .supervision
                .main_status()
                .map_or(ExitStatus::UNKNOWN, ExitStatus::from_wait_status),
            pid: Some(self.supervision.main_pid()),
            duration: started.elapsed(),
            timed_out,
            aborted,
            usage: Some(self.supervision.usage()),
            stdout,
            stderr,
            spawn_error: None,
        }
    }

    /// Whether a captured stream is still open.
    fn reading(&self) -> bool {
        self.streams
            .as_ref()
            .is_some_and(|streams| streams.iter().any(|s| s.pipe.is_some()))
    }
}

/// Our own descriptor `fd`, duplicated above 2 and close-on-exec (the job gets it
/// as its own 1 or 2); `/dev/null` if we were started without one.
fn inherited(fd: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain fcntl; the new descriptor is ours.
    let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if copy >= 0 {
        // SAFETY: a new descriptor that we alone own.
        return Ok(unsafe { OwnedFd::from_raw_fd(copy) });
    }
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    spawn::above_stdio(OwnedFd::from(null))
}

impl Captured {
    /// One read: written on to our stream, kept in the tail; the pipe is closed at
    /// its end.
    fn read_some(&mut self) {
        let Some(pipe) = &self.pipe else { return };
        let mut buf = [0u8; 64 * 1024];
        // SAFETY: reads into a local buffer of that length.
        let n = unsafe { libc::read(pipe.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                return;
            }
            self.pipe = None;
            return;
        }
        if n == 0 {
            self.pipe = None;
            return;
        }
        let bytes = &buf[..n as usize];
        // SAFETY: our own stdout or stderr, borrowed for the write.
        let to = unsafe { BorrowedFd::borrow_raw(self.to) };
        // A closed stdout loses what we would have shown, not what we keep.
        let _ = write_all(to, bytes);
        self.tail.push(bytes);
    }
}

fn write_all(fd: BorrowedFd, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        // SAFETY: writes from a valid slice.
        let n = unsafe { libc::write(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        bytes = &bytes[n as usize..];
    }
    Ok(())
}

/// The last `max` bytes of a stream, and how many came before them.
struct Tail {
    bytes: Vec<u8>,
    max: usize,
    dropped: u64,
}

#[derive(Default)]
struct Kept {
    text: String,
    dropped: u64,
}

impl Tail {
    fn new(max: usize) -> Tail {
        Tail {
            bytes: Vec::new(),
            max,
            dropped: 0,
        }
    }

    fn push(&mut self, more: &[u8]) {
        self.bytes.extend_from_slice(more);
        // Cut in batches, so that each byte moves a bounded number of times.
        if self.bytes.len() > self.max + (self.max / 2).max(64 * 1024) {
            self.cut(self.bytes.len() - self.max);
        }
    }

    fn cut(&mut self, n: usize) {
        self.bytes.drain(..n);
        self.dropped += n as u64;
    }

    /// The kept bytes as text (U+FFFD for invalid UTF-8, as the adapter decodes),
    /// starting on a character boundary.
    fn finish(mut self) -> Kept {
        if self.bytes.len() > self.max {
            self.cut(self.bytes.len() - self.max);
            let partial = self
                .bytes
                .iter()
                .take(3)
                .take_while(|&&b| b & 0xC0 == 0x80)
                .count();
            self.cut(partial);
        }
        Kept {
            text: String::from_utf8_lossy(&self.bytes).into_owned(),
            dropped: self.dropped,
        }
    }
}

/// What the result file says, and what decides the exit status.
struct Outcome {
    status: ExitStatus,
    pid: Option<i32>,
    duration: Duration,
    timed_out: bool,
    aborted: bool,
    usage: Option<local_worker_core::ResourceUsage>,
    stdout: Kept,
    stderr: Kept,
    spawn_error: Option<spawn::SpawnError>,
}

impl Outcome {
    fn spawn_failed(error: spawn::SpawnError, started: Instant) -> Outcome {
        Outcome {
            status: ExitStatus {
                code: Some(i32::from(if error.errno == libc::ENOENT {
                    NOT_FOUND
                } else {
                    NOT_EXECUTABLE
                })),
                signal: None,
            },
            pid: None,
            duration: started.elapsed(),
            timed_out: false,
            aborted: false,
            usage: None,
            stdout: Kept::default(),
            stderr: Kept::default(),
            spawn_error: Some(error),
        }
    }

    /// The job's status, as a shell reports it; 124 for a timeout.
    fn exit_status(&self) -> u8 {
        if self.timed_out {
            return TIMED_OUT;
        }
        match self.status.exit_code() {
            code @ 0..=255 => code as u8,
            _ => FAILED,
        }
    }

    /// The WorkerResult the adapter would resolve with (stdout and stderr only
    /// when captured), plus `error` when the job could not start.
    fn to_json(&self, captured: bool) -> Value {
        let mut result = json!({
            "exitCode": self.status.exit_code(),
            "signal": self.status.signal.and_then(errno::signal_name),
            "durationMs": self.duration.as_secs_f64() * 1000.0,
            "timedOut": self.timed_out,
            "aborted": self.aborted,
            "stdoutDroppedBytes": self.stdout.dropped,
            "stderrDroppedBytes": self.stderr.dropped,
        });
        let fields = result.as_object_mut().expect("an object");
        if captured || self.spawn_error.is_some() {
            fields.insert("stdout".into(), self.stdout.text.clone().into());
            fields.insert("stderr".into(), self.stderr.text.clone().into());
        }
        if let Some(pid) = self.pid {
            fields.insert("pid".into(), pid.into());
        }
        if let Some(usage) = &self.usage {
            fields.insert(
                "resourceUsage".into(),
                json!({
                    "maxRssKb": usage.max_rss_kb,
                    "userCpuMs": usage.user_cpu.as_secs_f64() * 1000.0,
                    "systemCpuMs": usage.system_cpu.as_secs_f64() * 1000.0,
                }),
            );
        }
        if let Some(error) = &self.spawn_error {
            fields.insert(
                "error".into(),
                json!({
                    "code": error.code,
                    "errno": -error.errno,
                    "syscall": "spawn",
                    "path": error.path,
                    "message": error.message,
                }),
            );
        }
        result
    }
}
