//! Running one job from spawn to report: the life cycle that ties the modules
//! together, under a supervisor ([`supervised`]) when one can run, else under
//! process-group containment ([`grouped`]).
//!
//! [`supervised`]: crate::supervised
//! [`grouped`]: crate::grouped

use std::future::Future;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::capture::{CaptureMode, CapturedOutput, OutputListener, capture};
use crate::reap::{ExitStatus, ResourceUsage};
use crate::registry::Owner;
use crate::spawn::SpawnError;
use crate::spec::JobSpec;
use crate::{errno, forkserver, grouped, supervised};

/// Why the job ended.
#[derive(Debug)]
pub enum Ending<E> {
    /// The leader exited by itself (whatever its status).
    Exited,
    /// `timeout` passed; the group was terminated.
    TimedOut,
    /// The abort future resolved; the group was terminated.
    Aborted,
    /// A listener failed; the group was terminated.
    ListenerFailed(E),
    /// The job's supervisor died before the job ended (killed by someone else):
    /// the main process's group was killed, the rest of the tree could not be
    /// reached.
    SupervisorLost { supervisor: u32 },
}

/// Everything known about a finished job, however it ended.
#[derive(Debug)]
pub struct JobReport<E> {
    /// The main process's pid.
    pub pid: u32,
    pub status: ExitStatus,
    pub usage: ResourceUsage,
    pub stdout: CapturedOutput,
    pub stderr: CapturedOutput,
    /// From spawn to report, on a monotonic clock.
    pub duration: Duration,
    pub ending: Ending<E>,
}

impl<E> JobReport<E> {
    /// Signal name when a signal killed the leader.
    pub fn signal_name(&self) -> Option<&'static str> {
        self.status.signal.and_then(errno::signal_name)
    }
}

/// Listeners for the two streams; either may be absent.
pub struct Listeners<L> {
    pub stdout: Option<L>,
    pub stderr: Option<L>,
}

impl<L> Default for Listeners<L> {
    fn default() -> Self {
        Listeners {
            stdout: None,
            stderr: None,
        }
    }
}

/// Runs `spec` to its end. Must be called within a tokio runtime.
///
/// Order of events: start the main process; wait for it to exit, the timeout, the
/// abort, or a listener failure; terminate the job's processes unless the main
/// process exited by itself; terminate what it left behind (`kill_leftovers`);
/// drain the pipes until EOF or `drain_bound` (then take what they still hold,
/// bounded); report. `spec` is assumed validated.
pub async fn run<L, A>(
    spec: JobSpec,
    owner: Owner,
    listeners: Listeners<L>,
    abort: A,
) -> Result<JobReport<L::Error>, SpawnError>
where
    L: OutputListener,
    A: Future<Output = ()> + Send,
{
    run_launched(Launching::later(), spec, owner, listeners, abort).await
}

/// A job's start, begun before its future runs.
pub struct Launching {
    started: Instant,
    launched: Option<supervised::Launched>,
}

impl Launching {
    /// Nothing begun yet: the future does it all.
    pub fn later() -> Launching {
        Launching {
            started: Instant::now(),
            launched: None,
        }
    }
}

/// Hands `spec` to a supervisor at once, on the calling thread, if a fork server
/// runs (none is started here) — so that the job starts without waiting for a
/// runtime thread to pick its future up. Needs no runtime; never blocks. The job's
/// own errors (not found, not executable, bad `cwd`) come back here.
pub fn launch_now(spec: &JobSpec) -> Result<Launching, SpawnError> {
    let started = Instant::now();
    let Some(server) = forkserver::running() else {
        return Ok(Launching {
            started,
            launched: None,
        });
    };
    let launched = hand_over(&server, spec)?;
    Ok(Launching { started, launched })
}

/// `spec` handed to `server`: `None` if the server failed (it is marked lost, and
/// the job runs without a supervisor); the job's own spawn error as `Err`.
fn hand_over(
    server: &Arc<forkserver::ForkServer>,
    spec: &JobSpec,
) -> Result<Option<supervised::Launched>, SpawnError> {
    match supervised::launch(server, spec) {
        Ok(launched) => Ok(Some(launched)),
        Err(supervised::LaunchError::Spawn(error)) => Err(error),
        Err(supervised::LaunchError::Server(error)) => {
            forkserver::lost(server, &error);
            Ok(None)
        }
    }
}

/// Runs a job whose start may have begun ([`launch_now`]). Must be called within a
/// tokio runtime.
pub async fn run_launched<L, A>(
    launching: Launching,
    spec: JobSpec,
    owner: Owner,
    listeners: Listeners<L>,
    abort: A,
) -> Result<JobReport<L::Error>, SpawnError>
where
    L: OutputListener,
    A: Future<Output = ()> + Send,
{
    let Launching { started, launched } = launching;
    // Not begun yet: hand it over now (starting a server if none runs and one may be
    // tried), without waiting for room in the server's queue on this thread.
    let launched = match launched {
        Some(launched) => Some(launched),
        None => match forkserver::current() {
            Some(server) => hand_over(&server, &spec)?,
            None => None,
        },
    };
    if let Some(launched) = launched {
        let server = launched.waiting_for().cloned();
        match launched.send().await {
            Ok(job) => return job.finish(&spec, owner, listeners, abort, started).await,
            Err(supervised::LaunchError::Spawn(error)) => return Err(error),
            // Nothing was started: the job runs without a supervisor.
            Err(supervised::LaunchError::Server(error)) => {
                if let Some(server) = server {
                    forkserver::lost(&server, &error);
                }
            }
        }
    }
    grouped::run(spec, owner, listeners, abort, started).await
}

/// The job's two output streams being read, until [`Streams::finish`].
pub(crate) struct Streams<E> {
    stdout: JoinHandle<CapturedOutput>,
    stderr: JoinHandle<CapturedOutput>,
    drain: watch::Sender<Option<Instant>>,
    /// A listener's failure, once.
    pub failures: mpsc::Receiver<E>,
}

impl<E: Send + 'static> Streams<E> {
    /// Starts reading the read ends of the job's stdout and stderr pipes.
    pub fn start<L: OutputListener<Error = E>>(
        stdout: OwnedFd,
        stderr: OwnedFd,
        mode: CaptureMode,
        listeners: Listeners<L>,
    ) -> Streams<E> {
        let (drain, drain_rx) = watch::channel(None);
        let (failure_tx, failures) = mpsc::channel(2);
        let stdout = tokio::spawn(capture(
            stdout,
            mode,
            listeners.stdout,
            drain_rx.clone(),
            failure_tx.clone(),
        ));
        let stderr = tokio::spawn(capture(
            stderr,
            mode,
            listeners.stderr,
            drain_rx,
            failure_tx,
        ));
        Streams {
            stdout,
            stderr,
            drain,
            failures,
        }
    }

    /// Once the job's processes are gone: reads what is left, at most until
    /// `drain_bound` from now (a process outside the job may hold a pipe), and
    /// takes a listener failure that came while draining, after an exit by itself.
    pub async fn finish(
        mut self,
        drain_bound: Duration,
        ending: &mut Ending<E>,
    ) -> (CapturedOutput, CapturedOutput) {
        let _ = self.drain.send(Some(Instant::now() + drain_bound));
        let stdout = self.stdout.await.unwrap_or_default();
        let stderr = self.stderr.await.unwrap_or_default();
        if matches!(ending, Ending::Exited)
            && let Ok(err) = self.failures.try_recv()
        {
            *ending = Ending::ListenerFailed(err);
        }
        (stdout, stderr)
    }
}

/// A future that never resolves when there is no timeout.
pub(crate) async fn deadline(started: Instant, timeout: Option<Duration>) {
    match timeout {
        Some(limit) => tokio::time::sleep_until(started + limit).await,
        None => std::future::pending().await,
    }
}

/// Status and usage for a job whose status could not be learned: better than
/// losing its output.
pub(crate) const UNKNOWN: (ExitStatus, ResourceUsage) = (
    ExitStatus::UNKNOWN,
    ResourceUsage {
        max_rss_kb: 0,
        user_cpu: Duration::ZERO,
        system_cpu: Duration::ZERO,
    },
);
