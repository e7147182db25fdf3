//! A job run under its own supervisor: the host's side.
//!
//! [`launch`] prepares the job ([`spawn::prepare`]: program resolved, environment
//! built, `cwd` checked, all on the calling thread), makes its pipes and control
//! socket, writes the [`Launch`](crate::protocol::Launch) message and asks the fork server for a
//! supervisor. The host itself starts no process. [`Launched::finish`] then reads
//! the output and the supervisor's messages, sends it `Terminate` on timeout,
//! abort or a listener's failure, and reports once the supervisor says the job's
//! processes are all gone. The supervisor reaps everything; the host reaps nothing.
//!
//! The control socket doubles as the job's lifeline (see the supervisor crate):
//! the registry ends a job by shutting down our side of it.

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::pin::pin;
use std::sync::Arc;

use tokio::io::unix::AsyncFd;
use tokio::io::{Interest, Ready};
use tokio::time::Instant;

use crate::capture::OutputListener;
use crate::fd_passing::{self, socket_pair};
use crate::forkserver::ForkServer;
use crate::group;
use crate::job::{Ending, JobReport, Listeners, Streams, UNKNOWN, deadline};
use crate::protocol::{Frames, FromSupervisor, ToSupervisor};
use crate::reap::ExitStatus;
use crate::registry::{self, Handle, Owner};
use crate::spawn::{self, SpawnError, pipe};
use crate::spec::JobSpec;

/// Why a job was not handed to a supervisor.
#[derive(Debug)]
pub enum LaunchError {
    /// The job itself cannot start (not found, bad `cwd`, ...): it fails.
    Spawn(SpawnError),
    /// The fork server did not take it: nothing started; run it another way.
    Server(io::Error),
}

/// A job handed to its supervisor (its main process may not have started yet), or
/// about to be: the request waits for room in the fork server's queue.
pub struct Launched {
    /// Our end of the control socket (non-blocking), and what of the Launch
    /// message it has not taken yet.
    control: OwnedFd,
    outgoing: Vec<u8>,
    stdout: OwnedFd,
    stderr: OwnedFd,
    /// The request not sent yet: the server, and the supervisor's four descriptors.
    unsent: Option<(Arc<ForkServer>, [OwnedFd; 4])>,
}

/// Hands `spec` to a new supervisor through `server`. Needs no runtime and never
/// waits: the host may call it on any thread, so that the job starts without waiting
/// for one. If the server's queue is full, the request is kept for
/// [`Launched::send`].
pub fn launch(server: &Arc<ForkServer>, spec: &JobSpec) -> Result<Launched, LaunchError> {
    let launch = spawn::prepare(spec).map_err(LaunchError::Spawn)?;
    let server_error = LaunchError::Server;
    let (stdout, stdout_child) = pipe().map_err(server_error)?;
    let (stderr, stderr_child) = pipe().map_err(server_error)?;
    let (ours, theirs) = socket_pair(libc::SOCK_STREAM).map_err(server_error)?;
    // Where the host is now: a job without `cwd` starts there, as it would if the
    // host spawned it (the server's own directory is the host's at its start).
    let here = open_cwd().map_err(server_error)?;
    fd_passing::set_nonblocking(ours.as_fd(), true).map_err(server_error)?;
    let mut outgoing = ToSupervisor::Launch(launch).encode();
    write_now(ours.as_fd(), &mut outgoing).map_err(server_error)?;
    let theirs = [theirs, stdout_child, stderr_child, here];
    let launched = Launched {
        control: ours,
        outgoing,
        stdout,
        stderr,
        unsent: Some((Arc::clone(server), theirs)),
    };
    launched.try_send()
}

fn borrowed(fds: &[OwnedFd; 4]) -> [BorrowedFd<'_>; 4] {
    [
        fds[0].as_fd(),
        fds[1].as_fd(),
        fds[2].as_fd(),
        fds[3].as_fd(),
    ]
}

impl Launched {
    /// Sends the request if the server takes it without waiting.
    fn try_send(mut self) -> Result<Launched, LaunchError> {
        if let Some((server, fds)) = &self.unsent {
            match server.try_launch(borrowed(fds)) {
                Ok(true) => self.unsent = None,
                Ok(false) => {}
                Err(e) => return Err(LaunchError::Server(e)),
            }
        }
        Ok(self)
    }

    /// The request sent, if it waited for room in the server's queue (a burst of
    /// jobs): tried again every half millisecond, without blocking a runtime thread,
    /// for as long as [`ForkServer::launch`] would wait. On failure nothing was
    /// started.
    pub async fn send(mut self) -> Result<Launched, LaunchError> {
        let Some((server, fds)) = self.unsent.take() else {
            return Ok(self);
        };
        let deadline = tokio::time::Instant::now() + crate::forkserver::LAUNCH_TIMEOUT;
        loop {
            match server.try_launch(borrowed(&fds)) {
                Ok(true) => return Ok(self),
                Ok(false) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_micros(500)).await;
                }
                Ok(false) => return Err(LaunchError::Server(crate::forkserver::took_no_request())),
                Err(e) => return Err(LaunchError::Server(e)),
            }
        }
    }

    /// The fork server the request waits for, if it has not been sent.
    pub fn waiting_for(&self) -> Option<&Arc<ForkServer>> {
        self.unsent.as_ref().map(|(server, _)| server)
    }
}

fn open_cwd() -> io::Result<OwnedFd> {
    // SAFETY: a NUL-terminated path; the new descriptor is ours.
    let fd = unsafe {
        libc::open(
            c".".as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that we alone own.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

impl Launched {
    /// Follows the job to its end (see the module docs).
    pub async fn finish<L, A>(
        self,
        spec: &JobSpec,
        owner: Owner,
        listeners: Listeners<L>,
        abort: A,
        started: Instant,
    ) -> Result<JobReport<L::Error>, SpawnError>
    where
        L: OutputListener,
        A: Future<Output = ()> + Send,
    {
        debug_assert!(self.unsent.is_none(), "Launched::send first");
        let Launched {
            control,
            outgoing,
            stdout,
            stderr,
            unsent: _,
        } = self;
        let mut control = Control::new(control, outgoing).map_err(|e| {
            SpawnError::of_errno(&spec.command, e.raw_os_error().unwrap_or(libc::EIO))
        })?;
        let registration = registry::register(owner, Handle::Supervisor(control.shared()));
        let mut streams = Streams::start(stdout, stderr, spec.capture_mode(), listeners);
        let mut timeout = pin!(deadline(started, spec.timeout));
        let mut abort = pin!(abort);

        let mut pid = None;
        let mut supervisor = None;
        let mut status = None;
        let mut ending = None;
        let mut usage = None;
        let terminate = ToSupervisor::Terminate {
            grace: spec.kill_grace,
        };
        loop {
            tokio::select! {
                biased;
                message = control.receive() => match message {
                    Ok(Some(FromSupervisor::Spawned { pid: main, supervisor: s })) => {
                        pid = Some(main);
                        supervisor = Some(s);
                    }
                    Ok(Some(FromSupervisor::SpawnFailed { errno })) => {
                        return Err(SpawnError::of_errno(&spec.command, errno));
                    }
                    Ok(Some(FromSupervisor::Exited { wait_status })) => {
                        status = Some(ExitStatus::from_wait_status(wait_status));
                        ending.get_or_insert(Ending::Exited);
                    }
                    Ok(Some(FromSupervisor::Done { usage: reaped, .. })) => {
                        usage = Some(reaped);
                        break;
                    }
                    // End of stream, or garbage: the supervisor is gone.
                    Ok(None) | Err(_) => break,
                },
                Some(err) = streams.failures.recv(), if ending.is_none() => {
                    ending = Some(Ending::ListenerFailed(err));
                    control.queue(&terminate);
                }
                _ = &mut timeout, if ending.is_none() => {
                    ending = Some(Ending::TimedOut);
                    control.queue(&terminate);
                }
                _ = &mut abort, if ending.is_none() => {
                    ending = Some(Ending::Aborted);
                    control.queue(&terminate);
                }
            }
        }
        let (status, usage) = match (status, usage) {
            (status, Some(usage)) => (status.unwrap_or(ExitStatus::UNKNOWN), usage),
            (status, None) => {
                // The supervisor died behind our back: what it no longer contains,
                // we reach as well as we can (the main process's group).
                if status.is_none()
                    && let Some(pid) = pid
                {
                    let _ = group::signal(pid, libc::SIGKILL);
                }
                ending = Some(Ending::SupervisorLost {
                    supervisor: supervisor.unwrap_or(0) as u32,
                });
                (status.unwrap_or(ExitStatus::UNKNOWN), UNKNOWN.1)
            }
        };
        drop(registration);
        let mut ending = ending.unwrap_or(Ending::Exited);
        let (stdout, stderr) = streams.finish(spec.drain_bound, &mut ending).await;
        Ok(JobReport {
            pid: pid.unwrap_or(0) as u32,
            status,
            usage,
            stdout,
            stderr,
            duration: started.elapsed(),
            ending,
        })
    }
}

/// Our end of a job's control socket: messages out (queued, written as the
/// socket takes them) and in (cut into frames).
struct Control {
    fd: AsyncFd<SharedFd>,
    frames: Frames,
    outgoing: Vec<u8>,
}

/// The socket, shared with the registry (which may shut it down).
struct SharedFd(Arc<OwnedFd>);

impl AsRawFd for SharedFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl Control {
    fn new(fd: OwnedFd, outgoing: Vec<u8>) -> io::Result<Control> {
        let shared = SharedFd(Arc::new(fd));
        // SAFETY: the Arc keeps the descriptor open, unchanged, for as long as the
        // AsyncFd holds it.
        let fd = unsafe {
            AsyncFd::register_with_interest(shared, Interest::READABLE | Interest::WRITABLE)
        }
        .map_err(io::Error::from)?;
        Ok(Control {
            fd,
            frames: Frames::default(),
            outgoing,
        })
    }

    fn shared(&self) -> Arc<OwnedFd> {
        Arc::clone(&self.fd.get_ref().0)
    }

    /// Queues `message` and writes what the socket takes now; [`receive`] writes
    /// the rest as the socket takes it.
    ///
    /// [`receive`]: Control::receive
    fn queue(&mut self, message: &ToSupervisor) {
        self.outgoing.extend_from_slice(&message.encode());
        let _ = write_now(self.fd.get_ref().as_fd(), &mut self.outgoing);
    }

    /// The next message; `None` at end of stream. Meanwhile, writes what is queued.
    /// Cancel-safe: bytes read stay in `frames`, bytes not written in `outgoing`.
    async fn receive(&mut self) -> io::Result<Option<FromSupervisor>> {
        loop {
            if let Some(message) = self
                .frames
                .next_message()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
            {
                return Ok(Some(message));
            }
            let _ = write_now(self.fd.get_ref().as_fd(), &mut self.outgoing);
            let interest = if self.outgoing.is_empty() {
                Interest::READABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            let mut guard = self.fd.ready(interest).await?;
            let ready = guard.ready();
            if ready.is_readable() {
                match self.frames.read_from(guard.get_inner().as_fd()) {
                    Ok(0) => return Ok(None),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        guard.clear_ready_matching(Ready::READABLE)
                    }
                    Err(e) => return Err(e),
                }
            }
            if ready.is_writable() {
                let _ = write_now(self.fd.get_ref().as_fd(), &mut self.outgoing);
                if !self.outgoing.is_empty() {
                    // Still full: wait for the next writable edge.
                    guard.clear_ready_matching(Ready::WRITABLE);
                }
            }
        }
    }
}

/// Writes what the socket takes of `outgoing` without waiting; `Err(WouldBlock)`
/// when it is full. A supervisor that is gone drops what is queued: reading says so.
fn write_now(fd: BorrowedFd, outgoing: &mut Vec<u8>) -> io::Result<()> {
    while !outgoing.is_empty() {
        match fd_passing::send_with_fds(fd, outgoing, &[], 0) {
            Ok(n) => {
                outgoing.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => {
                outgoing.clear();
                return Err(e);
            }
        }
    }
    Ok(())
}

impl AsFd for SharedFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spawn_failure_reads_like_the_hosts_own() {
        let spec = JobSpec::new("./script");
        let error = SpawnError::of_errno(&spec.command, libc::ENOEXEC);
        assert_eq!(error.code, "ENOEXEC");
        assert!(
            error.message.starts_with("spawn ./script ENOEXEC: "),
            "{}",
            error.message
        );
    }
}
