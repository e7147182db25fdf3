//! Supervising one job from inside its process tree: this process is a subreaper
//! (`PR_SET_CHILD_SUBREAPER`), the job's main process is its child, and every
//! orphan of the job — whatever session or group it moved to, double-forked or
//! not — is re-parented to it. So:
//!
//! * it reaps everything that dies in the job (no zombie outlives the job), and
//!   the sum of what `wait4` reports for each covers every process of the job;
//! * having no child left means having no descendant left: the job is over;
//! * terminating the job is signalling every descendant ([`descendants`]): SIGTERM
//!   (with SIGCONT, so that a stopped process gets to act on it), the grace
//!   period, then SIGKILL in rounds until no child is left. A process can fork
//!   between a round's walk and its kill; its child is orphaned by the kill,
//!   comes back to us, and is found by the next round.
//!
//! This module only decides; the event loop around it (the per-job supervisor,
//! the `run` command) waits for SIGCHLD, commands and deadlines, and calls in.

use std::time::{Duration, Instant};

use local_worker_core::descendants;
use local_worker_core::protocol::Usage;

/// After the first SIGKILL, how long to wait for the processes to be gone before
/// giving up (only a process stuck in uninterruptible sleep takes that long).
const KILL_WAIT_BOUND: Duration = Duration::from_secs(2);
const FIRST_KILL_PAUSE: Duration = Duration::from_millis(1);
const MAX_KILL_PAUSE: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// SIGTERM sent; SIGKILL at `kill_at`.
    Terminating {
        kill_at: Instant,
    },
    /// SIGKILL rounds until no child is left, or `give_up_at`.
    Killing {
        next_round: Instant,
        pause: Duration,
        give_up_at: Instant,
    },
    /// Whether every process of the job is gone.
    Finished {
        complete: bool,
    },
}

#[derive(Debug)]
pub struct Supervision {
    me: i32,
    main: i32,
    main_status: Option<i32>,
    /// Grace period for the leftovers of a main process that exited by itself;
    /// `None`: they are left alone.
    leftovers: Option<Duration>,
    phase: Phase,
    /// What the kernel accounted for each child reaped so far (with, through it,
    /// every descendant it waited for): CPU times summed, the peak the largest.
    usage: Usage,
}

impl Supervision {
    /// Supervises the job whose main process, our child, is `main`.
    pub fn new(main: i32, leftovers: Option<Duration>) -> Supervision {
        Supervision {
            // SAFETY: plain syscall.
            me: unsafe { libc::getpid() },
            main,
            main_status: None,
            leftovers,
            phase: Phase::Running,
            usage: Usage::default(),
        }
    }

    /// Reaps every child that has exited. Returns the main process's raw wait
    /// status at the call that reaped it.
    pub fn reap(&mut self) -> Option<i32> {
        let mut main_exited = None;
        let children_left = loop {
            let mut status = 0;
            // SAFETY: rusage is plain data that wait4 fills in.
            let mut reaped: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: plain syscall with valid pointers.
            let pid = unsafe { libc::wait4(-1, &mut status, libc::WNOHANG, &mut reaped) };
            if pid > 0 {
                self.usage.add(Usage::of(&reaped));
            }
            match pid {
                0 => break true,
                pid if pid == self.main => {
                    self.main_status = Some(status);
                    main_exited = Some(status);
                }
                pid if pid > 0 => {}
                _ => match std::io::Error::last_os_error().raw_os_error() {
                    Some(libc::EINTR) => continue,
                    // ECHILD: no child, hence (a subreaper's) no descendant left.
                    _ => break false,
                },
            }
        };
        if self.finished().is_some() {
            return main_exited;
        }
        if !children_left {
            self.phase = Phase::Finished { complete: true };
        } else if main_exited.is_some() && self.phase == Phase::Running {
            match self.leftovers {
                Some(grace) => self.terminate(grace),
                // What the main process left keeps running, on its own.
                None => self.phase = Phase::Finished { complete: false },
            }
        }
        main_exited
    }

    /// Terminates every process of the job: SIGTERM now, SIGKILL after `grace`. A
    /// second request can only bring the SIGKILL closer.
    pub fn terminate(&mut self, grace: Duration) {
        let now = Instant::now();
        match self.phase {
            Phase::Running => {
                self.signal_all(libc::SIGTERM);
                self.signal_all(libc::SIGCONT);
                self.phase = Phase::Terminating {
                    kill_at: now + grace,
                };
            }
            Phase::Terminating { kill_at } => {
                self.phase = Phase::Terminating {
                    kill_at: kill_at.min(now + grace),
                };
            }
            Phase::Killing { .. } | Phase::Finished { .. } => {}
        }
        self.advance(now);
    }

    /// When [`advance`](Self::advance) has something to do next.
    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Terminating { kill_at } => Some(kill_at),
            Phase::Killing {
                next_round,
                give_up_at,
                ..
            } => Some(next_round.min(give_up_at)),
            Phase::Running | Phase::Finished { .. } => None,
        }
    }

    /// Acts on the deadlines that have passed by `now`.
    pub fn advance(&mut self, now: Instant) {
        match self.phase {
            Phase::Terminating { kill_at } if now >= kill_at => {
                self.phase = Phase::Killing {
                    next_round: now,
                    pause: FIRST_KILL_PAUSE,
                    give_up_at: now + KILL_WAIT_BOUND,
                };
                self.advance(now);
            }
            Phase::Killing { give_up_at, .. } if now >= give_up_at => {
                self.phase = Phase::Finished { complete: false };
            }
            Phase::Killing {
                next_round,
                pause,
                give_up_at,
            } if now >= next_round => {
                self.signal_all(libc::SIGKILL);
                self.phase = Phase::Killing {
                    next_round: now + pause,
                    pause: (pause * 2).min(MAX_KILL_PAUSE),
                    give_up_at,
                };
            }
            _ => {}
        }
    }

    /// Sends `signal` to every process of the job. While the main process is
    /// unreaped, its pid (which is its group's id) cannot be reused, so its group
    /// is signalled as a whole first: no fork inside it can race the signal.
    /// The walk then reaches the processes that left the group.
    fn signal_all(&self, signal: i32) {
        let group = self.main_status.is_none().then_some(self.main);
        // SAFETY: plain syscall; a negative pid addresses the group.
        if let Some(pgid) = group
            && unsafe { libc::kill(-pgid, signal) } != 0
        {
            // The group is empty (the main process left it, or is a zombie).
            descendants::signal_all(self.me, signal, None);
            return;
        }
        descendants::signal_all(self.me, signal, group);
    }

    /// Passes `signal` on to the main process, while it runs (our unreaped child:
    /// its pid cannot have been reused).
    pub fn signal_main(&self, signal: i32) {
        if self.main_status.is_none() {
            // SAFETY: plain syscall on our own unreaped child.
            unsafe { libc::kill(self.main, signal) };
        }
    }

    pub fn main_pid(&self) -> i32 {
        self.main
    }

    /// Whether the main process has exited (and was reaped).
    pub fn main_exited(&self) -> bool {
        self.main_status.is_some()
    }

    /// The main process's raw wait status, once reaped.
    pub fn main_status(&self) -> Option<i32> {
        self.main_status
    }

    /// The kernel's accounting for every process of the job reaped so far (once the
    /// supervision is over: the whole job). Per job, not per process: a supervisor
    /// may supervise several jobs in turn.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// `Some(complete)` once the supervision is over.
    pub fn finished(&self) -> Option<bool> {
        match self.phase {
            Phase::Finished { complete } => Some(complete),
            _ => None,
        }
    }
}
