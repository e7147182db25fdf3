//! The signals a supervisor acts on, read from a signalfd instead of handlers:
//! its event loop then waits for children, commands and signals with one `poll`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// What a job's supervisor acts on: SIGCHLD (a child to reap) and the signals that
/// ask it to end the job.
pub const SUPERVISOR: [libc::c_int; 4] = [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// The signals that ask a supervisor (or a spare) to end.
pub const ENDING: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// `signals` as a signal set.
fn set_of(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: plain libc calls on a local set, emptied before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &signal in signals {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

/// Blocks `signals` (for the signalfd), or lets them through to their (default)
/// action.
pub fn hold(signals: &[libc::c_int], held: bool) {
    let set = set_of(signals);
    // SAFETY: plain libc call on a local set.
    unsafe {
        let how = if held {
            libc::SIG_BLOCK
        } else {
            libc::SIG_UNBLOCK
        };
        libc::sigprocmask(how, &set, std::ptr::null_mut());
    }
}

/// Blocks `signals` and returns a signalfd that reports them. Each is first
/// blocked, then given its default action: a signal inherited as ignored would
/// be discarded, not queued.
pub fn take(signals: &[libc::c_int]) -> io::Result<OwnedFd> {
    let set = set_of(signals);
    // SAFETY: plain libc calls on a local set.
    unsafe {
        if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
        for &signal in signals {
            libc::signal(signal, libc::SIG_DFL);
        }
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// The signals queued on `fd` (SIGCHLD may stand for several children).
pub fn read(fd: BorrowedFd) -> Vec<libc::c_int> {
    let mut signals = Vec::new();
    loop {
        // SAFETY: plain data the kernel fills in.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: reads at most `size` bytes into `info`.
        let n = unsafe { libc::read(fd.as_raw_fd(), (&raw mut info).cast(), size) };
        if n as usize != size {
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return signals;
        }
        signals.push(info.ssi_signo as libc::c_int);
    }
}

/// Waits until one of `fds` is readable or `timeout` passes (`None`: no limit);
/// returns which are readable (hung up counts as readable).
pub fn wait_readable(
    fds: &[Option<BorrowedFd>],
    timeout: Option<std::time::Duration>,
) -> Vec<bool> {
    let mut polled: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.map_or(-1, |fd| fd.as_raw_fd()),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // Rounded up: waking before a deadline would only spin.
    let millis = timeout.map_or(-1, |t| {
        i32::try_from(t.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
    });
    // SAFETY: a valid array of pollfds; negative descriptors are ignored by poll.
    let ready = unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, millis) };
    if ready <= 0 {
        return vec![false; fds.len()];
    }
    polled
        .iter()
        .map(|p| p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0)
        .collect()
}
