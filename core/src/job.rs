//! Running one job from spawn to report: the life cycle that ties the modules together.

use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::capture::{CapturedOutput, OutputListener, capture};
use crate::reap::{ExitStatus, Leader, ResourceUsage};
use crate::registry::{self, Owner};
use crate::spawn::{SpawnError, spawn};
use crate::spec::JobSpec;
use crate::terminate::terminate_group;
use crate::{errno, group};

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
}

/// Everything known about a finished job, however it ended.
#[derive(Debug)]
pub struct JobReport<E> {
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
/// Order of events: spawn; wait for the leader to exit, the timeout, the abort, or
/// a listener failure; terminate the group unless the leader exited by itself;
/// reap the leader; terminate what it left in its group (`kill_leftovers`); drain
/// the pipes until EOF or `drain_bound` (then take what they still hold, bounded);
/// report. `spec` is assumed validated.
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
    let started = Instant::now();
    let spawned = spawn(&spec)?;
    let pgid = spawned.pid;
    let registration = registry::register(pgid, owner);
    let leader = Leader::new(pgid).map_err(|e| {
        // Our unreaped child pins the pgid: kill it and reap it before giving up.
        let _ = group::signal(pgid, libc::SIGKILL);
        // SAFETY: plain syscall on our own child.
        let _ = unsafe { libc::waitpid(pgid, std::ptr::null_mut(), 0) };
        let errno = e.raw_os_error().unwrap_or(libc::EIO);
        SpawnError {
            code: errno::name(errno),
            errno,
            path: spec.command.clone(),
            message: format!("spawn {}: cannot watch the process: {e}", spec.command),
        }
    })?;

    let (drain_tx, drain_rx) = watch::channel(None);
    let (failure_tx, mut failure_rx) = mpsc::channel(2);
    let stdout = tokio::spawn(capture(
        spawned.stdout,
        spec.capture_mode(),
        listeners.stdout,
        drain_rx.clone(),
        failure_tx.clone(),
    ));
    let stderr = tokio::spawn(capture(
        spawned.stderr,
        spec.capture_mode(),
        listeners.stderr,
        drain_rx,
        failure_tx,
    ));

    let timeout = async {
        match spec.timeout {
            Some(limit) => tokio::time::sleep_until(started + limit).await,
            None => std::future::pending().await,
        }
    };
    let mut ending = tokio::select! {
        biased;
        _ = leader.exited() => Ending::Exited,
        Some(err) = failure_rx.recv() => Ending::ListenerFailed(err),
        _ = timeout => Ending::TimedOut,
        _ = abort => Ending::Aborted,
    };
    let mut gone = false;
    if !matches!(ending, Ending::Exited) {
        gone = terminate_group(pgid, spec.kill_grace, Some(&leader))
            .await
            .gone;
    }
    // wait4 on our own exited child cannot fail; if it somehow did, an unknown
    // status is better than losing the job's output.
    let unknown = (
        ExitStatus {
            code: None,
            signal: None,
        },
        ResourceUsage::default(),
    );
    let (status, usage) = leader.reap().unwrap_or(unknown);
    // A group just seen with no live member has nothing left to terminate: what
    // pins its pgid now are zombies (orphans that init has not reaped yet). Otherwise,
    // once reaped, the pgid is held only by remaining members, so `exists` is cheap
    // and exact in the common case of a group that ended with its leader.
    if spec.kill_leftovers && !gone && group::exists(pgid) {
        terminate_group(pgid, spec.kill_grace, None).await;
    }
    drop(registration);

    let _ = drain_tx.send(Some(Instant::now() + spec.drain_bound));
    let stdout = stdout.await.unwrap_or_default();
    let stderr = stderr.await.unwrap_or_default();
    // A listener may fail while the pipes drain, after the leader exited by itself.
    if matches!(ending, Ending::Exited)
        && let Ok(err) = failure_rx.try_recv()
    {
        ending = Ending::ListenerFailed(err);
    }
    Ok(JobReport {
        pid: pgid as u32,
        status,
        usage,
        stdout,
        stderr,
        duration: started.elapsed(),
        ending,
    })
}
