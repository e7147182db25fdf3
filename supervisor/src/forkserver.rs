//! The fork server: one small process per host (Node), started once, that forks a
//! supervisor for every job.
//!
//! Why a server: a supervisor per job must not cost a program start per job (an
//! `exec` of even a tiny static binary costs about as much as the job `true`
//! itself), and the host must never fork (its cost grows with the host's memory).
//! Forking this small process costs tens of microseconds, and the job's own start
//! from a small process is cheaper than from Node. Measured side by side, a job
//! started this way costs the same as a plain `posix_spawn` + `waitpid`.
//!
//! It holds a `SOCK_SEQPACKET` socket (fd 3) whose other end only the host holds.
//! Each message is one job: the byte `J` and four descriptors (control socket,
//! stdout and stderr write ends, the host's working directory). It forks; the
//! child becomes that job's supervisor; the server closes its copies and waits for
//! the next. End of stream (the host exited, or died) ends the server; each
//! supervisor has its own lifeline, so running jobs do not depend on the server.
//!
//! The server is a subreaper with SIGCHLD ignored: its supervisors, and whatever
//! a supervisor leaves behind on purpose (`killLeftovers: false`), are reaped by
//! the kernel as they exit, so none becomes a zombie of the host — which matters
//! when the host is a container's PID 1.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

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
    // Spares tell the server they took a job through this pipe.
    let (taken, took) = local_worker_core::spawn::pipe()?;
    let mut waiting = 0;
    // Spares wanted beyond SPARES: one more each time requests are seen queued
    // for a while (a burst of jobs), none once the queue drains.
    let mut extra = 0;
    loop {
        let mut forked_all = true;
        while waiting < SPARES + extra {
            // SAFETY: this process is single-threaded: the child may do anything.
            match unsafe { libc::fork() } {
                0 => {
                    drop(taken);
                    spare(socket, took)
                }
                -1 => {
                    answer_queued_jobs_with_errno(socket.as_fd());
                    forked_all = false;
                    break;
                }
                _ => waiting += 1,
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
            let mut buf = [0u8; 64];
            // SAFETY: reads into a local buffer.
            let n = unsafe { libc::read(taken.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            waiting = waiting.saturating_sub(usize::try_from(n).unwrap_or(0));
        } else if ready == 0 && backlog && readable_now(socket.as_fd()) {
            extra += 1;
        }
    }
}

/// Supervisors forked ahead of their job, each waiting for one: a job's start does not
/// wait for a fork (nor for a supervisor's set-up), and the server forks the next
/// spare while the job runs.
const SPARES: usize = 2;
/// Most spares while requests wait in the queue (hundreds of jobs at once).
const BURST_SPARES: usize = 8;
/// How long a request may wait in the queue before the server forks one more spare.
const BACKLOG_MS: i32 = 2;

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
/// After a failed fork (out of processes), when to try again.
const FORK_RETRY_MS: i32 = 10;

/// A supervisor waiting for its job: it takes the next request from the host and
/// supervises it, telling the server once the job started. End of stream (the host
/// is gone) ends it.
fn spare(socket: OwnedFd, took: OwnedFd) -> ! {
    // SAFETY: plain prctl on this process.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"lw-spare".as_ptr()) };
    let Ok(ready) = supervise::Ready::new() else {
        exit(1)
    };
    let mut buf = [0u8; 16];
    loop {
        let (len, fds) = match fd_passing::recv_with_fds(socket.as_fd(), &mut buf, 0) {
            Ok((0, _)) => exit(0),
            Ok(message) => message,
            // Too many descriptors: the host's mistake; nothing to start.
            Err(e) if e.kind() == io::ErrorKind::InvalidData => continue,
            Err(_) => exit(1),
        };
        let Ok([control, stdout, stderr, cwd]) = <[OwnedFd; 4]>::try_from(fds) else {
            continue;
        };
        if buf[..len] != *b"J" {
            continue;
        }
        drop(socket);
        ready.run(JobFds {
            control,
            stdout,
            stderr,
            cwd,
            started: Some(took),
        })
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

fn exit(code: i32) -> ! {
    // SAFETY: ends this process; nothing of ours is buffered.
    unsafe { libc::_exit(code) }
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
