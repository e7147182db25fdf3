//! Waiting for the leader and collecting its exit status and resource usage.
//!
//! A pidfd (Linux 5.3+) becomes readable when the leader exits, without reaping
//! it; `wait4` then reaps it and returns the kernel's `rusage`. Nobody else waits
//! on this pid: tokio's reaper only knows the children it spawned, libuv waits
//! only on its own pids, and std's `Child` is dropped unwaited.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use tokio::io::unix::AsyncFd;

/// How the leader ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// Exit code, when it exited by itself.
    pub code: Option<i32>,
    /// Signal number, when a signal killed it.
    pub signal: Option<i32>,
}

impl ExitStatus {
    /// Decodes a raw status from `wait`.
    pub fn from_wait_status(status: i32) -> ExitStatus {
        if libc::WIFEXITED(status) {
            ExitStatus {
                code: Some(libc::WEXITSTATUS(status)),
                signal: None,
            }
        } else if libc::WIFSIGNALED(status) {
            ExitStatus {
                code: None,
                signal: Some(libc::WTERMSIG(status)),
            }
        } else {
            ExitStatus::UNKNOWN
        }
    }

    /// Neither an exit code nor a signal is known.
    pub const UNKNOWN: ExitStatus = ExitStatus {
        code: None,
        signal: None,
    };

    /// The shell's convention: the exit code, or 128 + the signal number.
    pub fn exit_code(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(code), _) => code,
            (None, Some(signal)) => 128 + signal,
            (None, None) => -1,
        }
    }
}

/// The kernel's accounting for a job. Under a supervisor: every process of the
/// job (the supervisor reaps them all and adds up what `wait4` reports for each). Under
/// process-group containment: the leader and every descendant it waited for
/// (`wait4`); grandchildren that were orphaned or killed by group termination are
/// not in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResourceUsage {
    /// Peak resident set of the largest single process among them (kilobytes).
    pub max_rss_kb: u64,
    pub user_cpu: Duration,
    pub system_cpu: Duration,
}

/// The job's leader, until reaped. Dropping it unreaped kills its group and reaps it,
/// so a cancelled job never leaves a zombie.
#[derive(Debug)]
pub struct Leader {
    pid: i32,
    pidfd: AsyncFd<OwnedFd>,
    reaped: bool,
}

impl Leader {
    /// Must be called from within a tokio runtime.
    pub fn new(pid: i32) -> io::Result<Leader> {
        // SAFETY: plain syscall; pid is our unreaped child, so it cannot be reused.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pidfd_open returned a new descriptor that we alone own.
        let owned = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // SAFETY: `owned` is a valid descriptor that the AsyncFd takes over.
        let pidfd = unsafe { AsyncFd::register(owned) }?;
        Ok(Leader {
            pid,
            pidfd,
            reaped: false,
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Resolves once the leader has exited (it stays a zombie until `reap`).
    pub async fn exited(&self) {
        // A pidfd only ever turns readable once, on exit; errors cannot happen for a
        // registered pidfd, and treating one as "exited" lets `reap` report it.
        let _ = self
            .pidfd
            .readable()
            .await
            .map(|mut guard| guard.retain_ready());
    }

    /// Whether the leader has exited, without waiting.
    pub fn has_exited(&self) -> bool {
        let mut poll_fd = libc::pollfd {
            fd: self.pidfd.get_ref().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        unsafe { libc::poll(&mut poll_fd, 1, 0) == 1 }
    }

    /// Reaps the leader. Call after `exited()`: it blocks otherwise.
    pub fn reap(mut self) -> io::Result<(ExitStatus, ResourceUsage)> {
        let result = wait4(self.pid);
        self.reaped = true;
        result
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if !self.reaped {
            // The pid (= pgid) is pinned by our unreaped child.
            let _ = crate::group::signal(self.pid, libc::SIGKILL);
            let _ = wait4(self.pid);
        }
    }
}

fn wait4(pid: i32) -> io::Result<(ExitStatus, ResourceUsage)> {
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to locals.
        let ret = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if ret == pid {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    Ok((
        ExitStatus::from_wait_status(status),
        ResourceUsage::of(&usage),
    ))
}

impl ResourceUsage {
    /// What `wait4` (or `getrusage`) reports.
    pub fn of(usage: &libc::rusage) -> ResourceUsage {
        ResourceUsage {
            max_rss_kb: usage.ru_maxrss.max(0) as u64,
            user_cpu: timeval(usage.ru_utime),
            system_cpu: timeval(usage.ru_stime),
        }
    }

    /// This and `other` as one: CPU times add up, the peak RSS is the larger one.
    pub fn add(&mut self, other: ResourceUsage) {
        self.max_rss_kb = self.max_rss_kb.max(other.max_rss_kb);
        self.user_cpu += other.user_cpu;
        self.system_cpu += other.system_cpu;
    }
}

fn timeval(tv: libc::timeval) -> Duration {
    Duration::from_secs(tv.tv_sec.max(0) as u64) + Duration::from_micros(tv.tv_usec.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn leader_of(cmd: &mut Command) -> Leader {
        // The Leader reaps it (wait4), which clippy cannot see.
        #[allow(clippy::zombie_processes)]
        let child = cmd.spawn().unwrap();
        Leader::new(child.id() as i32).unwrap()
    }

    #[tokio::test]
    async fn reports_exit_code_and_signal() {
        let leader = leader_of(Command::new("sh").args(["-c", "exit 3"]));
        leader.exited().await;
        assert!(leader.has_exited());
        let (status, _) = leader.reap().unwrap();
        assert_eq!((status.code, status.exit_code()), (Some(3), 3));

        let leader = leader_of(Command::new("sh").args(["-c", "kill -9 $$"]));
        leader.exited().await;
        let (status, _) = leader.reap().unwrap();
        assert_eq!(status.signal, Some(libc::SIGKILL));
        assert_eq!(status.exit_code(), 128 + 9);
    }

    #[tokio::test]
    async fn dropping_an_unreaped_leader_kills_and_reaps_it() {
        let leader = leader_of(Command::new("sleep").arg("30").process_group_0());
        let pid = leader.pid();
        assert!(!leader.has_exited());
        drop(leader);
        // Reaped: the pid no longer names a child of ours.
        // SAFETY: plain syscall.
        let ret = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        assert_eq!(ret, -1);
    }

    trait ProcessGroup0 {
        fn process_group_0(&mut self) -> &mut Self;
    }
    impl ProcessGroup0 for Command {
        fn process_group_0(&mut self) -> &mut Self {
            std::os::unix::process::CommandExt::process_group(self, 0)
        }
    }
}
