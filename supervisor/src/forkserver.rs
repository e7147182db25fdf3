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
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

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
    let mut buf = [0u8; 16];
    loop {
        let (len, fds) = match fd_passing::recv_with_fds(socket.as_fd(), &mut buf) {
            Ok((0, _)) => return Ok(()),
            Ok(message) => message,
            // Too many descriptors: the host's mistake; nothing to start.
            Err(e) if e.kind() == io::ErrorKind::InvalidData => continue,
            Err(e) => return Err(e),
        };
        let Ok([control, stdout, stderr, cwd]) = <[OwnedFd; 4]>::try_from(fds) else {
            continue;
        };
        if buf[..len] != *b"J" {
            continue;
        }
        // SAFETY: this process is single-threaded: the child may do anything.
        match unsafe { libc::fork() } {
            0 => {
                drop(socket);
                supervise::run(JobFds {
                    control,
                    stdout,
                    stderr,
                    cwd,
                })
            }
            -1 => {
                // Out of processes: the job fails to start, as a fork would.
                let errno = io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EAGAIN);
                let _ = supervise::send(control.as_fd(), &FromSupervisor::SpawnFailed { errno });
            }
            _ => {}
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
