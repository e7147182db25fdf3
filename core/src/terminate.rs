//! Ending a job's process group: SIGTERM, a grace period, then SIGKILL.

use std::time::Duration;

use tokio::time::{Instant, sleep, timeout_at};

use crate::group;
use crate::reap::Leader;

/// After SIGKILL, how long to wait for the kernel to finish the processes before
/// giving up (only a process stuck in uninterruptible sleep can take that long).
const KILL_WAIT_BOUND: Duration = Duration::from_secs(2);
const MAX_POLL: Duration = Duration::from_millis(50);

/// Sends SIGTERM to the group, then SIGKILL to whatever still runs after `grace`.
/// Returns once `leader` (if given, unreaped) has exited and no live member is left.
/// Returns whether SIGKILL was needed.
pub async fn terminate_group(pgid: i32, grace: Duration, leader: Option<&Leader>) -> bool {
    if !matches!(group::signal(pgid, libc::SIGTERM), Ok(true)) {
        return false;
    }
    if wait_until_gone(pgid, leader, Instant::now() + grace).await {
        return false;
    }
    let _ = group::signal(pgid, libc::SIGKILL);
    wait_until_gone(pgid, leader, Instant::now() + KILL_WAIT_BOUND).await;
    true
}

async fn wait_until_gone(pgid: i32, leader: Option<&Leader>, until: Instant) -> bool {
    if let Some(leader) = leader
        && timeout_at(until, leader.exited()).await.is_err()
    {
        return false;
    }
    // Members other than the leader give no exit event: poll, quickly at first.
    let mut pause = Duration::from_millis(1);
    loop {
        if !group::has_live_members(pgid) {
            return true;
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
        let forced = terminate_group(pgid, Duration::from_secs(5), Some(&leader)).await;
        assert!(!forced);
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
        let forced = terminate_group(pgid, Duration::from_millis(300), Some(&leader)).await;
        assert!(forced);
        assert!(started.elapsed() >= Duration::from_millis(300));
        let (status, _) = leader.reap().unwrap();
        assert_eq!(status.signal, Some(libc::SIGKILL));
        assert!(!group::has_live_members(pgid));
    }
}
