//! The live jobs of each owner, so that a host that exits can end them all.
//!
//! A supervised job is ended through its control socket: shutting down our
//! writing side is, for its supervisor, exactly what the host's death is (end of
//! stream), and it terminates the job's whole tree by itself: SIGTERM, the
//! job's grace period, SIGKILL. Nothing here waits for that. A job under
//! process-group containment (no supervisor could run) gets SIGKILL to its group
//! at once: nobody would be left to send it later.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Who started a job: the host's own id for its environment (a Node worker thread
/// ending must end its own jobs, not those of the main thread).
pub type Owner = u64;

/// How a live job is ended when its owner goes away.
#[derive(Debug)]
pub enum Handle {
    /// The host's end of the job supervisor's control socket.
    Supervisor(Arc<OwnedFd>),
    /// The job's process group (its leader is our unreaped child, so the id cannot
    /// be reused while listed).
    Group(i32),
}

impl Handle {
    fn end(&self) {
        match self {
            // SAFETY: plain syscall on a socket the handle keeps open.
            Handle::Supervisor(control) => unsafe {
                libc::shutdown(control.as_raw_fd(), libc::SHUT_WR);
            },
            Handle::Group(pgid) => {
                let _ = crate::group::signal(*pgid, libc::SIGKILL);
            }
        }
    }
}

struct Entry {
    owner: Owner,
    handle: Handle,
}

static LIVE: Mutex<BTreeMap<u64, Entry>> = Mutex::new(BTreeMap::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A live job, listed until dropped.
#[derive(Debug)]
pub struct Registration {
    id: u64,
}

pub fn register(owner: Owner, handle: Handle) -> Registration {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    live().insert(id, Entry { owner, handle });
    Registration { id }
}

impl Drop for Registration {
    fn drop(&mut self) {
        live().remove(&self.id);
    }
}

/// Ends every live job of `owner` (see the module docs); returns how many.
pub fn end_all(owner: Owner) -> usize {
    let live = live();
    let mine: Vec<&Entry> = live.values().filter(|e| e.owner == owner).collect();
    for entry in &mine {
        entry.handle.end();
    }
    mine.len()
}

/// Number of live jobs of `owner`.
pub fn live_count(owner: Owner) -> usize {
    live().values().filter(|e| e.owner == owner).count()
}

fn live() -> std::sync::MutexGuard<'static, BTreeMap<u64, Entry>> {
    // A panic while holding the lock cannot leave the map inconsistent.
    LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_come_and_go_per_owner() {
        let owner = 0xdead_beef;
        let a = register(owner, Handle::Group(-10));
        let _b = register(owner + 1, Handle::Group(-11));
        assert_eq!(live_count(owner), 1);
        drop(a);
        assert_eq!(live_count(owner), 0);
        assert_eq!(live_count(owner + 1), 1);
    }

    #[test]
    fn ending_a_supervised_job_closes_our_side_of_its_socket() {
        let (ours, theirs) = crate::fd_passing::socket_pair(libc::SOCK_STREAM).unwrap();
        let owner = 0xfeed;
        let _job = register(owner, Handle::Supervisor(Arc::new(ours)));
        assert_eq!(end_all(owner), 1);
        let mut byte = [0u8; 1];
        // SAFETY: reads into a local byte.
        let n = unsafe { libc::read(theirs.as_raw_fd(), byte.as_mut_ptr().cast(), 1) };
        assert_eq!(n, 0, "the supervisor reads end of stream");
    }
}
