//! Ending a job's process group: SIGTERM, a grace period, then SIGKILL.

use std::time::Duration;

use tokio::time::{Instant, sleep, timeout_at};

use crate::reap::Leader;
use crate::{group, proc_scan};

/// After SIGKILL, how long to wait for the kernel to finish the processes before
/// giving up (only a process stuck in uninterruptible sleep can take that long).
const KILL_WAIT_BOUND: Duration = Duration::from_secs(2);
const MAX_POLL: Duration = Duration::from_millis(50);

/// How a termination ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terminated {
    /// SIGKILL was needed.
    pub forced: bool,
    /// No live member was left when it returned. Then none can appear any more
    /// (only a live member could fork one), so nobody needs to look again.
    pub gone: bool,
}

/// Sends SIGTERM to the group, then SIGKILL to whatever still runs after `grace`.
/// Returns once `leader` (if given, unreaped) has exited and no live member is left,
/// or after a bound that follows SIGKILL.
pub async fn terminate_group(pgid: i32, grace: Duration, leader: Option<&Leader>) -> Terminated {
    match group::signal(pgid, libc::SIGTERM) {
        Ok(true) => {}
        Ok(false) => {
            return Terminated {
                forced: false,
                gone: true,
            };
        }
        Err(_) => {
            return Terminated {
                forced: false,
                gone: false,
            };
        }
    }
    if wait_until_gone(pgid, leader, Instant::now() + grace).await {
        return Terminated {
            forced: false,
            gone: true,
        };
    }
    let _ = group::signal(pgid, libc::SIGKILL);
    let gone = wait_until_gone(pgid, leader, Instant::now() + KILL_WAIT_BOUND).await;
    Terminated { forced: true, gone }
}

async fn wait_until_gone(pgid: i32, leader: Option<&Leader>, until: Instant) -> bool {
    if let Some(leader) = leader
        && timeout_at(until, leader.exited()).await.is_err()
    {
        return false;
    }
    // Members other than the leader give no exit event: poll, quickly at first. Each
    // round needs a view of /proc newer than the last one seen (the first: newer than
    // now), shared with every other group being waited for.
    let mut since = std::time::Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        // The cheap check first: no process at all in the group, not even a zombie.
        if !group::exists(pgid) {
            return true;
        }
        match timeout_at(until, proc_scan::snapshot_since(since)).await {
            Err(_) => return false,
            Ok(Some(snapshot)) if !snapshot.has_live_member(pgid) => return true,
            Ok(Some(snapshot)) => since = snapshot.started() + Duration::from_nanos(1),
            // /proc unreadable: the group exists, so count it as live.
            Ok(None) => since = std::time::Instant::now(),
        }
        let now = Instant::now();
        if now >= until {
            return false;
        }
        sleep(pause.min(until - now)).await;
        pause = (pause * 2).min(MAX_POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    fn spawn_group(script: &str) -> Leader {
        // The Leader reaps it (wait4), which clippy cannot see.
        #[allow(clippy::zombie_processes)]
        let child = Command::new("sh")
            .args(["-c", script])
            .process_group(0)
            .spawn()
            .unwrap();
        Leader::new(child.id() as i32).unwrap()
    }

    #[tokio::test]
    async fn sigterm_suffices_for_a_polite_group() {
        let leader = spawn_group("sleep 30 & sleep 30");
        let pgid = leader.pid();
        let ended = terminate_group(pgid, Duration::from_secs(5), Some(&leader)).await;
        assert_eq!(
            ended,
            Terminated {
                forced: false,
                gone: true
            }
        );
        let (status, _) = leader.reap().unwrap();
        assert_eq!(status.signal, Some(libc::SIGTERM));
        assert!(!group::has_live_members(pgid));
    }

    #[tokio::test]
    async fn sigkill_after_grace_for_a_group_ignoring_sigterm() {
        let leader = spawn_group("trap '' TERM; sleep 30 & trap '' TERM; sleep 30");
        let pgid = leader.pid();
        // Let the shell install its trap before it is signalled.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = std::time::Instant::now();
        let ended = terminate_group(pgid, Duration::from_millis(300), Some(&leader)).await;
        assert_eq!(
            ended,
            Terminated {
                forced: true,
                gone: true
            }
        );
        assert!(started.elapsed() >= Duration::from_millis(300));
        let (status, _) = leader.reap().unwrap();
        assert_eq!(status.signal, Some(libc::SIGKILL));
        assert!(!group::has_live_members(pgid));
    }
}
