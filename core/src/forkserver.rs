//! The host's side of the fork server: starting it, handing it jobs, and keeping
//! one running.
//!
//! The server is the `local-worker forkserver` executable (see the supervisor
//! crate): started once with `posix_spawn` (so even this one start does not copy
//! the host's memory), in a session of its own, with `/dev/null` on 0–2, its
//! socket on fd 3 and an empty environment. It says hello with its protocol
//! version before it is used, so a binary from another build is refused rather
//! than misread. Every job is then one message to it ([`ForkServer::launch`]).
//!
//! [`current`] hands out the running server, starting one when none runs. When it
//! cannot be started (no executable, a `noexec` mount, another build), or dies,
//! jobs run under process-group containment instead; the reason is kept for the
//! host to report once ([`take_failure`]), and a new start is tried as jobs come,
//! at most every [`RETRY_EVERY`].

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::fd_passing::{self, socket_pair};
use crate::posix_spawn::{self, CStringArray, FileActions};
use crate::protocol::{Hello, VERSION};
use crate::spawn::leader_attributes;

/// How long a new server may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a job request may wait for room in the server's queue.
pub const LAUNCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How often, at most, a server is (re)started after a failure.
pub const RETRY_EVERY: Duration = Duration::from_secs(30);

/// A running fork server, our child.
#[derive(Debug)]
pub struct ForkServer {
    pid: libc::pid_t,
    /// Tells, without reaping it, whether the server has exited (its idle
    /// supervisors would otherwise keep taking requests unnoticed, and none would
    /// replace them).
    pidfd: Option<OwnedFd>,
    socket: OwnedFd,
}

impl ForkServer {
    /// Starts `program` as a fork server and waits for its hello.
    pub fn start(program: &Path) -> io::Result<ForkServer> {
        let invalid = |_| io::Error::from_raw_os_error(libc::EINVAL);
        let c_program = CString::new(program.as_os_str().as_bytes()).map_err(invalid)?;
        let argv = CStringArray::new(["local-worker", "forkserver"]).map_err(invalid)?;
        let envp = CStringArray::new(Vec::<Vec<u8>>::new()).map_err(invalid)?;
        let (socket, theirs) = socket_pair(libc::SOCK_SEQPACKET)?;
        let mut actions = FileActions::new()?;
        actions.add_open(0, c"/dev/null", libc::O_RDONLY, 0)?;
        // Not the host's stdout or stderr: a process that holds them would keep a
        // reader waiting for their end after the host exited.
        actions.add_open(1, c"/dev/null", libc::O_WRONLY, 0)?;
        actions.add_open(2, c"/dev/null", libc::O_WRONLY, 0)?;
        actions.add_dup2(theirs.as_raw_fd(), 3)?;
        let pid = posix_spawn::spawn(&c_program, &actions, &leader_attributes()?, &argv, &envp)?;
        drop(theirs);
        // SAFETY: plain syscall on our own unreaped child; the descriptor is ours.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let pidfd = (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd as i32) });
        let server = ForkServer { pid, pidfd, socket };
        server.await_hello()?;
        Ok(server)
    }

    fn await_hello(&self) -> io::Result<()> {
        let refused = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
        if !wait_for(self.socket.as_fd(), libc::POLLIN, HELLO_TIMEOUT) {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("it did not answer within {} s", HELLO_TIMEOUT.as_secs()),
            ));
        }
        let mut buf = [0u8; 64];
        let (len, _) = fd_passing::recv_with_fds(self.socket.as_fd(), &mut buf, 0)?;
        if len == 0 {
            return Err(refused("it exited as soon as it started".into()));
        }
        match Hello::decode(&buf[..len]) {
            Some(hello) if hello.version == VERSION && hello.refused != 0 => {
                let why = io::Error::from_raw_os_error(hello.refused);
                Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "it cannot contain jobs here: PR_SET_CHILD_SUBREAPER failed ({why}): \
                         the kernel is older than 3.4, or an emulator (such as qemu-user) \
                         does not implement it"
                    ),
                ))
            }
            Some(hello) if hello.version == VERSION => Ok(()),
            Some(hello) => Err(refused(format!(
                "it speaks protocol version {}, this addon {VERSION} (a binary from another build)",
                hello.version
            ))),
            None => Err(refused("it is not a local-worker fork server".into())),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// Whether the server process has exited (it stays our unreaped child).
    fn exited(&self) -> bool {
        self.pidfd
            .as_ref()
            .is_some_and(|pidfd| wait_for(pidfd.as_fd(), libc::POLLIN, Duration::ZERO))
    }

    /// Like [`launch`](Self::launch), without waiting: `Ok(false)` when the
    /// server's queue is full.
    pub fn try_launch(&self, fds: [BorrowedFd; 4]) -> io::Result<bool> {
        if self.exited() {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "it exited (its idle supervisors are let go)",
            ));
        }
        match fd_passing::send_with_fds(self.socket.as_fd(), b"J", &fds, libc::MSG_DONTWAIT) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Asks for a supervisor for one job: its control socket, the write ends of
    /// its stdout and stderr pipes, and the working directory to start from. Fails
    /// once the server is gone (or has not taken requests for [`LAUNCH_TIMEOUT`]).
    pub fn launch(&self, fds: [BorrowedFd; 4]) -> io::Result<()> {
        let deadline = Instant::now() + LAUNCH_TIMEOUT;
        while !self.try_launch(fds)? {
            // Its queue is full: it forks as fast as it can; wait for room.
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !wait_for(self.socket.as_fd(), libc::POLLOUT, left) {
                return Err(took_no_request());
            }
        }
        Ok(())
    }
}

/// The error of a server whose queue stayed full for [`LAUNCH_TIMEOUT`].
pub fn took_no_request() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("it took no job request for {} s", LAUNCH_TIMEOUT.as_secs()),
    )
}

impl Drop for ForkServer {
    /// A server we stop using is gone or replaced: killed (its supervisors have
    /// lifelines of their own) and reaped, so that it never lingers as a zombie.
    fn drop(&mut self) {
        // SAFETY: plain syscalls on our own unreaped child.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            while libc::waitpid(self.pid, std::ptr::null_mut(), 0) < 0
                && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
            {}
        }
    }
}

/// Waits until `fd` has `events`, at most `timeout`.
fn wait_for(fd: BorrowedFd, events: libc::c_short, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let mut poll_fd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events,
            revents: 0,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let millis = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd.
        match unsafe { libc::poll(&mut poll_fd, 1, millis) } {
            1 => return true,
            0 => return false,
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => continue,
            _ => return false,
        }
    }
}

/// Which executable to run as the fork server, and whether to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    /// Not configured yet: no server (the core's own tests, a host that never said).
    Unset,
    /// Jobs run under process-group containment, by choice: nothing is reported.
    Disabled,
    Program(PathBuf),
}

struct Keeper {
    setting: Setting,
    running: Option<Arc<ForkServer>>,
    /// When a server was last started or tried.
    last_try: Option<Instant>,
    /// The latest failure the host has not taken yet.
    unreported: Option<String>,
}

static KEEPER: Mutex<Keeper> = Mutex::new(Keeper {
    setting: Setting::Unset,
    running: None,
    last_try: None,
    unreported: None,
});

fn keeper() -> std::sync::MutexGuard<'static, Keeper> {
    KEEPER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Sets which executable serves jobs from now on. A running server of another
/// setting is let go (its jobs keep their supervisors).
pub fn configure(setting: Setting) {
    let mut keeper = keeper();
    if keeper.setting != setting {
        keeper.setting = setting;
        keeper.running = None;
        keeper.last_try = None;
    }
}

/// The running server, if one runs (never starts one: for callers that must not wait).
pub fn running() -> Option<Arc<ForkServer>> {
    keeper().running.clone()
}

/// The running server, started now if none runs and a start may be tried.
/// `None`: jobs run under process-group containment for now.
pub fn current() -> Option<Arc<ForkServer>> {
    let mut keeper = keeper();
    if let Some(server) = &keeper.running {
        return Some(Arc::clone(server));
    }
    let Setting::Program(program) = keeper.setting.clone() else {
        return None;
    };
    let now = Instant::now();
    if keeper
        .last_try
        .is_some_and(|last| now.duration_since(last) < RETRY_EVERY)
    {
        return None;
    }
    keeper.last_try = Some(now);
    match ForkServer::start(&program) {
        Ok(server) => {
            let server = Arc::new(server);
            keeper.running = Some(Arc::clone(&server));
            Some(server)
        }
        Err(e) => {
            keeper.fail(format!(
                "the supervisor executable {} could not be started: {e}",
                program.display()
            ));
            None
        }
    }
}

/// `server` failed to take a job (`error`): it is let go, and the failure kept
/// for the host. The next start is tried at the earliest [`RETRY_EVERY`] after
/// the last one.
pub fn lost(server: &Arc<ForkServer>, error: &io::Error) {
    let mut keeper = keeper();
    if keeper
        .running
        .as_ref()
        .is_some_and(|running| Arc::ptr_eq(running, server))
    {
        keeper.running = None;
        keeper.fail(format!(
            "the supervisor's fork server (pid {}) is gone: {error}",
            server.pid()
        ));
    }
}

impl Keeper {
    fn fail(&mut self, reason: String) {
        let retry = RETRY_EVERY.as_secs();
        self.unreported = Some(format!(
            "{reason}. Jobs run without a supervisor, contained by their process group only: \
             a process that leaves the group (setsid, a double-forked daemon) is not \
             terminated with its job, orphans are not reaped, running jobs are not ended \
             if this Node process is killed by SIGKILL, and resourceUsage counts only what \
             the main process waited for. It is tried again as jobs start, at most every \
             {retry} s."
        ));
    }
}

/// Why jobs run without a supervisor, once per failure: the host polls this (the
/// Node binding on its JS thread, as jobs start and settle) and reports it.
pub fn take_failure() -> Option<String> {
    keeper().unreported.take()
}

/// Pid of the running fork server, if any.
pub fn pid() -> Option<u32> {
    keeper().running.as_ref().map(|s| s.pid())
}
