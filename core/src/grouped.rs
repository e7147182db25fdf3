//! A job contained by its process group only: what runs when no supervisor can
//! (no executable, a `noexec` mount, a host that chose so).
//!
//! The leader is our own child, spawned by [`spawn`] in a session of its own; a
//! pidfd tells when it exits and `wait4` reaps it ([`reap`]). Termination is
//! SIGTERM, the grace period and SIGKILL to the group ([`terminate`]). What this
//! cannot do: reach a process that left the group (`setsid`, a double-forked
//! daemon), reap orphans (they go to init), end the jobs when the host is
//! SIGKILLed, or count in `resourceUsage` what the leader did not wait for.
//!
//! [`spawn`]: crate::spawn
//! [`reap`]: crate::reap
//! [`terminate`]: crate::terminate

use std::future::Future;

use tokio::time::Instant;

use crate::capture::OutputListener;
use crate::job::{Ending, JobReport, Listeners, Streams, UNKNOWN, deadline};
use crate::reap::Leader;
use crate::registry::{self, Handle, Owner};
use crate::spawn::{SpawnError, spawn};
use crate::spec::JobSpec;
use crate::terminate::terminate_group;
use crate::{errno, group};

pub async fn run<L, A>(
    spec: JobSpec,
    owner: Owner,
    listeners: Listeners<L>,
    abort: A,
    started: Instant,
) -> Result<JobReport<L::Error>, SpawnError>
where
    L: OutputListener,
    A: Future<Output = ()> + Send,
{
    let spawned = spawn(&spec)?;
    let pgid = spawned.pid;
    let registration = registry::register(owner, Handle::Group(pgid));
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
    let mut streams = Streams::start(
        spawned.stdout,
        spawned.stderr,
        spec.capture_mode(),
        listeners,
    );

    let mut ending = tokio::select! {
        biased;
        _ = leader.exited() => Ending::Exited,
        Some(err) = streams.failures.recv() => Ending::ListenerFailed(err),
        _ = deadline(started, spec.timeout) => Ending::TimedOut,
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
    let (status, usage) = leader.reap().unwrap_or(UNKNOWN);
    // A group just seen with no live member has nothing left to terminate: what
    // pins its pgid now are zombies (orphans that init has not reaped yet). Otherwise,
    // once reaped, the pgid is held only by remaining members, so `exists` is cheap
    // and exact in the common case of a group that ended with its leader.
    if spec.kill_leftovers && !gone && group::exists(pgid) {
        terminate_group(pgid, spec.kill_grace, None).await;
    }
    drop(registration);

    let (stdout, stderr) = streams.finish(spec.drain_bound, &mut ending).await;
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
