//! The process groups of live jobs, so that a host that exits can kill them all.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Who started a job: the host's own id for its environment (a Node worker thread
/// ending must kill its own jobs, not those of the main thread).
pub type Owner = u64;

static LIVE: Mutex<BTreeMap<i32, Owner>> = Mutex::new(BTreeMap::new());

/// A live job's group, listed until dropped.
#[derive(Debug)]
pub struct Registration {
    pgid: i32,
}

pub fn register(pgid: i32, owner: Owner) -> Registration {
    live().insert(pgid, owner);
    Registration { pgid }
}

impl Drop for Registration {
    fn drop(&mut self) {
        live().remove(&self.pgid);
    }
}

/// Sends `signal` to the group of every live job of `owner`; returns how many.
pub fn signal_all(owner: Owner, signal: i32) -> usize {
    let groups: Vec<i32> = live()
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
    live().values().filter(|&&o| o == owner).count()
}

fn live() -> std::sync::MutexGuard<'static, BTreeMap<i32, Owner>> {
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
