//! The process groups of live jobs, so that a host that exits can kill them all
//! (and, through the watchdog, even a host that is SIGKILLed).

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::watchdog::{Keeper, RETRY_EVERY, SHELLS};

/// Who started a job: the host's own id for its environment (a Node worker thread
/// ending must kill its own jobs, not those of the main thread).
pub type Owner = u64;

static LIVE: Mutex<Live> = Mutex::new(Live {
    groups: BTreeMap::new(),
    watchdog: Keeper::new(SHELLS, RETRY_EVERY),
});

struct Live {
    groups: BTreeMap<i32, Owner>,
    watchdog: Keeper,
}

impl Live {
    /// Keeps the watchdog's list in step with ours. A watchdog that cannot be
    /// started or told loses its protection, not the jobs: the keeper records
    /// why (see [`take_watchdog_failure`]) and tries again later.
    fn tell_watchdog(&mut self, pgid: i32, added: bool) {
        if pgid <= 0 {
            return;
        }
        let listed = self.groups.keys().copied().filter(|&g| g > 0);
        self.watchdog.update(pgid, added, listed);
    }
}

/// A live job's group, listed until dropped.
#[derive(Debug)]
pub struct Registration {
    pgid: i32,
}

pub fn register(pgid: i32, owner: Owner) -> Registration {
    let mut live = live();
    live.groups.insert(pgid, owner);
    live.tell_watchdog(pgid, true);
    Registration { pgid }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut live = live();
        live.groups.remove(&self.pgid);
        live.tell_watchdog(self.pgid, false);
    }
}

/// Sends `signal` to the group of every live job of `owner`; returns how many.
pub fn signal_all(owner: Owner, signal: i32) -> usize {
    let groups: Vec<i32> = live()
        .groups
        .iter()
        .filter(|&(_, &o)| o == owner)
        .map(|(&pgid, _)| pgid)
        .collect();
    for &pgid in &groups {
        let _ = crate::group::signal(pgid, signal);
    }
    groups.len()
}

/// Number of live jobs of `owner`.
pub fn live_count(owner: Owner) -> usize {
    live().groups.values().filter(|&&o| o == owner).count()
}

/// Pid of the watchdog process, while one runs.
pub fn watchdog_pid() -> Option<u32> {
    live().watchdog.pid()
}

/// Why the SIGKILL watchdog is not running, once per failure: the host polls
/// this (the Node binding on its JS thread, as jobs start and settle) and
/// reports it. `None` when nothing new failed since the last call.
pub fn take_watchdog_failure() -> Option<String> {
    live().watchdog.take_failure()
}

fn live() -> std::sync::MutexGuard<'static, Live> {
    // A panic while holding the lock cannot leave the map inconsistent.
    LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_come_and_go_per_owner() {
        let owner = 0xdead_beef;
        let a = register(-10, owner);
        let _b = register(-11, owner + 1);
        assert_eq!(live_count(owner), 1);
        drop(a);
        assert_eq!(live_count(owner), 0);
        assert_eq!(live_count(owner + 1), 1);
    }
}
