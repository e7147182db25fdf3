//! Growing an output pipe only when it pays, and never at others' expense.
//!
//! A larger pipe means fewer, larger reads for a chatty job. But `F_SETPIPE_SZ` is
//! charged to the user's pipe budget (`/proc/sys/fs/pipe-user-pages-soft`, 16 MiB by
//! default): once an unprivileged user is past it, every new pipe of that user, in
//! any process, gets a single page. So a pipe starts at the kernel's default size
//! and is grown only once its stream has proven busy (a read found it full), and
//! all the pipes grown by this process together stay within a quarter of the soft
//! budget, leaving the rest to everyone else.

use std::os::fd::RawFd;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Linux's default pipe capacity: a read this large means the pipe was full.
pub const DEFAULT_PIPE_SIZE: usize = 64 * 1024;
/// What a busy stream's pipe is grown to (the unprivileged maximum by default).
pub const BUSY_PIPE_SIZE: usize = 1024 * 1024;
/// Budget when the soft limit is 0 (unlimited) or unreadable.
const FALLBACK_BUDGET: usize = 16 * 1024 * 1024;
/// Bytes above the default size that this process's grown pipes hold now.
static GROWN_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Bytes above the default size that this process may hold in grown pipes.
fn budget() -> usize {
    static BUDGET: OnceLock<usize> = OnceLock::new();
    *BUDGET.get_or_init(|| {
        let pages = std::fs::read_to_string("/proc/sys/fs/pipe-user-pages-soft")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .filter(|&p| p > 0);
        match pages {
            Some(pages) => pages * 4096 / 4,
            None => FALLBACK_BUDGET,
        }
    })
}

/// A stream's claim on the budget: taken when its pipe grows, given back on drop.
#[derive(Debug, Default)]
pub struct PipeGrowth {
    held: usize,
}

impl PipeGrowth {
    /// Whether this stream's pipe was grown.
    pub fn is_grown(&self) -> bool {
        self.held > 0
    }

    /// Called after each read: grows the pipe once a read of `read` bytes shows it
    /// was full, if the budget allows. Best effort: a pipe left small only means
    /// more reads.
    pub fn after_read(&mut self, fd: RawFd, read: usize) {
        if self.held > 0 || read < DEFAULT_PIPE_SIZE {
            return;
        }
        let extra = BUSY_PIPE_SIZE - DEFAULT_PIPE_SIZE;
        if !reserve(&GROWN_BYTES, extra, budget()) {
            return;
        }
        // SAFETY: fcntl on a descriptor the caller owns.
        let size = unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, BUSY_PIPE_SIZE as libc::c_int) };
        if size < 0 {
            release(&GROWN_BYTES, extra);
            return;
        }
        // The kernel may round up; count what we asked for above the default.
        self.held = extra;
    }
}

impl Drop for PipeGrowth {
    fn drop(&mut self) {
        release(&GROWN_BYTES, self.held);
    }
}

fn reserve(grown: &AtomicUsize, bytes: usize, budget: usize) -> bool {
    grown
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
            held.checked_add(bytes).filter(|&total| total <= budget)
        })
        .is_ok()
}

fn release(grown: &AtomicUsize, bytes: usize) {
    grown.fetch_sub(bytes, Ordering::AcqRel);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn pipe_size(fd: RawFd) -> i32 {
        // SAFETY: fcntl on an open descriptor.
        unsafe { libc::fcntl(fd, libc::F_GETPIPE_SZ) }
    }

    fn pipe() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
        let (r, w) = std::io::pipe().expect("pipe");
        (r.into(), w.into())
    }

    #[test]
    fn a_quiet_stream_keeps_the_default_size_and_a_busy_one_grows() {
        let (read_end, _w) = pipe();
        let fd = read_end.as_raw_fd();
        let mut growth = PipeGrowth::default();
        growth.after_read(fd, 100);
        growth.after_read(fd, DEFAULT_PIPE_SIZE - 1);
        assert!(!growth.is_grown());
        assert_eq!(pipe_size(fd), DEFAULT_PIPE_SIZE as i32);
        growth.after_read(fd, DEFAULT_PIPE_SIZE);
        assert!(growth.is_grown());
        assert_eq!(pipe_size(fd), BUSY_PIPE_SIZE as i32);
    }

    #[test]
    fn reservations_stop_at_the_budget_and_come_back() {
        // A counter of its own, so that other tests' pipes do not interfere.
        let grown = AtomicUsize::new(0);
        let extra = BUSY_PIPE_SIZE - DEFAULT_PIPE_SIZE;
        let budget = 3 * extra;
        assert!(reserve(&grown, extra, budget));
        assert!(reserve(&grown, extra, budget));
        assert!(reserve(&grown, extra, budget));
        assert!(
            !reserve(&grown, extra, budget),
            "a fourth pipe would pass the budget"
        );
        release(&grown, extra);
        assert!(reserve(&grown, extra, budget));
        assert_eq!(grown.load(Ordering::Acquire), budget);
    }

    #[test]
    fn the_budget_is_a_quarter_of_the_user_soft_limit() {
        let soft: usize = std::fs::read_to_string("/proc/sys/fs/pipe-user-pages-soft")
            .map(|s| s.trim().parse().unwrap())
            .unwrap_or(0);
        let expected = if soft > 0 {
            soft * 4096 / 4
        } else {
            FALLBACK_BUDGET
        };
        assert_eq!(budget(), expected);
    }
}
