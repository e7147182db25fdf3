//! The fork server: one small process per host (Node), started once, that keeps a
//! pool of supervisors waiting for jobs.
//!
//! Why a server: a supervisor per job must not cost a program start per job (an
//! `exec` of even a tiny static binary costs about as much as the job `true`
//! itself), and the host must never fork (its cost grows with the host's memory).
//! Forking this small process costs tens of microseconds; and a supervisor whose
//! job ended with nothing of it left waits for the next job instead of ending, so
//! in a steady stream of jobs nothing is forked at all.
//!
//! It holds a `SOCK_SEQPACKET` socket (fd 3) whose other end only the host holds.
//! Each message is one job: the byte `J` and four descriptors (control socket,
//! stdout and stderr write ends, the host's working directory). The supervisors
//! waiting in the pool (`lw-spare`) all wait on that socket; each message goes to
//! one of them. The server only keeps [`SPARES`] of them waiting (more while
//! requests queue up), counting the idle ones in memory it shares with them. End of
//! stream (the host exited, or died) ends the server and the idle supervisors; a
//! busy one has its job's own lifeline, so running jobs do not depend on the server.
//!
//! The server is a subreaper with SIGCHLD ignored: its supervisors, and whatever a
//! supervisor leaves behind on purpose (`killLeftovers: false`), are reaped by the
//! kernel as they exit, so none becomes a zombie of the host — which matters when
//! the host is a container's PID 1.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};

use local_worker_core::fd_passing;
use local_worker_core::protocol::{FromSupervisor, Hello, VERSION};

use crate::supervise::{self, JobFds};

/// The descriptor the host gives the server its socket on.
pub const SOCKET_FD: i32 = 3;

pub fn serve(socket: OwnedFd) -> io::Result<()> {
    close_other_descriptors(socket.as_raw_fd());
    // SAFETY: plain prctl calls on this process.
    let refused = match unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) } {
        0 => 0,
        _ => io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL),
    };
    // Without subreapers a supervisor would lose a job's orphans and take the job
    // for over while they run: refuse, so that the host falls back to process
    // groups and says so. (Emulator test builds carry on, to test the rest.)
    if refused != 0 && !cfg!(feature = "tolerate-no-subreaper") {
        let hello = Hello {
            version: VERSION,
            // SAFETY: plain syscall.
            pid: unsafe { libc::getpid() },
            refused,
        };
        fd_passing::send_with_fds(socket.as_fd(), &hello.encode(), &[], 0)?;
        return Err(io::Error::from_raw_os_error(refused));
    }
    // SAFETY: plain prctl and signal calls on this process.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, c"lw-forkserver".as_ptr());
        libc::signal(libc::SIGCHLD, libc::SIG_IGN);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        // In a session of its own, no terminal signal is meant for it.
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    let hello = Hello {
        version: VERSION,
        // SAFETY: plain syscall.
        pid: unsafe { libc::getpid() },
        refused: 0,
    };
    fd_passing::send_with_fds(socket.as_fd(), &hello.encode(), &[], 0)?;
    // Supervisors tell the server they took a job through this pipe, and keep count
    // of the idle ones in memory they share with it.
    let (taken, took) = local_worker_core::spawn::pipe()?;
    let pool = Pool::new()?;
    // Spares wanted beyond SPARES: one more each time requests are seen queued
    // for a while (a burst of jobs), none once the queue drains.
    let mut extra = 0;
    loop {
        let mut forked_all = true;
        while pool.idle() < SPARES + extra {
            pool.add_idle();
            // SAFETY: this process is single-threaded: the child may do anything.
            match unsafe { libc::fork() } {
                0 => {
                    drop(taken);
                    member(socket, took, pool)
                }
                -1 => {
                    pool.take_idle();
                    answer_queued_jobs_with_errno(socket.as_fd());
                    forked_all = false;
                    break;
                }
                _ => {}
            }
        }
        // A request seen in the queue may be about to be taken by a spare: only one
        // still there after BACKLOG_MS means they are all busy.
        let backlog = readable_now(socket.as_fd());
        if !backlog {
            extra = 0;
        }
        let timeout = if !forked_all {
            FORK_RETRY_MS
        } else if backlog && SPARES + extra < BURST_SPARES {
            BACKLOG_MS
        } else {
            -1
        };
        // The host's end closing is our end; spares take jobs, we take stock.
        let mut polled = [
            libc::pollfd {
                fd: taken.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: socket.as_raw_fd(),
                events: 0,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfds.
        let ready = unsafe { libc::poll(polled.as_mut_ptr(), 2, timeout) };
        if ready < 0 {
            continue;
        }
        if polled[1].revents & (libc::POLLHUP | libc::POLLERR) != 0 {
            return Ok(());
        }
        if polled[0].revents & libc::POLLIN != 0 {
            let mut buf = [0u8; 256];
            // SAFETY: reads into a local buffer (the count is the pool's, not this).
            unsafe { libc::read(taken.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        } else if ready == 0 && backlog && readable_now(socket.as_fd()) {
            extra += 1;
        }
    }
}

/// Supervisors waiting for a job: a job's start does not wait for a fork (nor for a
/// supervisor's set-up). A supervisor whose job ended with nothing of it left
/// waits for the next one, as long as no more than [`MAX_IDLE`] wait: in a steady
/// stream of jobs, no process is forked or ends per job.
const SPARES: usize = 2;
/// Most spares while requests wait in the queue (hundreds of jobs at once).
const BURST_SPARES: usize = 8;
/// Most supervisors waiting for a job (the rest end with their job).
const MAX_IDLE: usize = 4;
/// How long a request may wait in the queue before the server forks one more spare.
const BACKLOG_MS: i32 = 2;
/// After a failed fork (out of processes), when to try again.
const FORK_RETRY_MS: i32 = 10;

/// Whether a request waits in the queue now.
fn readable_now(socket: BorrowedFd) -> bool {
    let mut polled = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no waiting.
    unsafe { libc::poll(&mut polled, 1, 0) == 1 && polled.revents & libc::POLLIN != 0 }
}

/// How many supervisors wait for a job, in memory the server and every supervisor
/// it forked share.
#[derive(Clone, Copy)]
struct Pool {
    idle: &'static AtomicUsize,
}

impl Pool {
    fn new() -> io::Result<Pool> {
        // SAFETY: a new anonymous shared mapping, zero-filled, never unmapped (it
        // lives as long as the server and its supervisors).
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                std::mem::size_of::<AtomicUsize>(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if page == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: zeroed, aligned, and shared memory for an atomic, for good.
        Ok(Pool {
            idle: unsafe { &*page.cast::<AtomicUsize>() },
        })
    }

    fn idle(self) -> usize {
        self.idle.load(Ordering::SeqCst)
    }

    fn add_idle(self) {
        self.idle.fetch_add(1, Ordering::SeqCst);
    }

    fn take_idle(self) {
        let _ = self
            .idle
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    /// Joins the idle ones, unless enough wait already.
    fn try_return(self) -> bool {
        self.idle
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < MAX_IDLE).then_some(n + 1)
            })
            .is_ok()
    }
}

/// A supervisor of the pool: waits for a request from the host, supervises that
/// job (telling the server once it started), and waits for the next if its job
/// left nothing behind and the pool wants it. End of stream (the host is gone),
/// or a signal that ends processes while it waits, ends it.
fn member(socket: OwnedFd, took: OwnedFd, pool: Pool) -> ! {
    let Ok(mut ready) = supervise::Ready::new() else {
        supervise::exit(1)
    };
    let mut buf = [0u8; 16];
    loop {
        // SAFETY: plain prctl on this process.
        unsafe { libc::prctl(libc::PR_SET_NAME, c"lw-spare".as_ptr()) };
        ready.idle(true);
        let received = fd_passing::recv_with_fds(socket.as_fd(), &mut buf, 0);
        ready.idle(false);
        let (len, fds) = match received {
            Ok((0, _)) => supervise::exit(0),
            Ok(message) => message,
            // Too many descriptors: the host's mistake; nothing to start.
            Err(e) if e.kind() == io::ErrorKind::InvalidData => continue,
            Err(_) => supervise::exit(1),
        };
        let Ok([control, stdout, stderr, cwd]) = <[OwnedFd; 4]>::try_from(fds) else {
            continue;
        };
        if buf[..len] != *b"J" {
            continue;
        }
        pool.take_idle();
        let again = ready.run(JobFds {
            control,
            stdout,
            stderr,
            cwd,
            started: Some(took.as_fd()),
        });
        if !(again && pool.try_return()) {
            supervise::exit(0)
        }
    }
}

/// Out of processes: the jobs waiting for a supervisor fail to start, as a fork
/// would have made them (EAGAIN), instead of waiting for the host to give up.
fn answer_queued_jobs_with_errno(socket: BorrowedFd) {
    let errno = io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EAGAIN);
    let mut buf = [0u8; 16];
    while let Ok((len, fds)) = fd_passing::recv_with_fds(socket, &mut buf, libc::MSG_DONTWAIT) {
        if len == 0 {
            return;
        }
        if let Some(control) = fds.first() {
            let _ = supervise::send(control.as_fd(), &FromSupervisor::SpawnFailed { errno });
        }
    }
}

/// Closes every descriptor above stderr but `keep`: whatever Node itself inherited
/// without close-on-exec must not reach every supervisor and job.
fn close_other_descriptors(keep: i32) {
    let open: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for fd in open {
        if fd > 2 && fd != keep {
            // SAFETY: closing descriptors nobody in this process uses (the one of
            // read_dir is already closed; closing it twice is harmless here).
            unsafe { libc::close(fd) };
        }
    }
}
