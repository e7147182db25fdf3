//! Killing jobs even when the host process is SIGKILLed.
//!
//! Nothing runs inside a process killed by SIGKILL, so the last word goes to a
//! second process: a tiny POSIX shell loop, spawned with posix_spawn like every
//! job. It reads `+ <pgid>` / `- <pgid>` lines from a pipe whose write end only
//! the host holds; when the host dies, for whatever reason, the kernel closes that
//! end, the loop sees EOF and SIGKILLs every group still listed. It starts in a
//! session (hence a process group) of its own and ignores SIGINT and SIGHUP, so
//! the terminal signals that end the host do not end it first.
//!
//! The shell is looked up when the watchdog starts ([`SHELLS`]: `/bin/sh`,
//! `/usr/bin/sh`, `/bin/busybox sh`); a distroless image may have none. The
//! watchdog gets an explicit environment (`PATH=/usr/bin:/bin`, nothing else) and
//! is spawned by path, so starting it never reads `environ`, which Node may be
//! rewriting on the JS thread at that moment.
//!
//! [`Keeper`] decides when to start one: when a group is listed and none runs.
//! If it cannot be started, or it turns out to be gone (a write to its pipe
//! fails), the failure is kept for the host to report ([`Keeper::take_failure`])
//! and a new one is tried at the next change of the list, at most once per
//! [`RETRY_EVERY`]; a new watchdog is handed every group still listed.

use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use crate::posix_spawn::{self, CStringArray, FileActions};
use crate::spawn::{leader_attributes, pipe};

const SCRIPT: &str = r#"trap '' INT HUP
groups=' '
while read -r op pgid; do
  case $op in
    +) groups="$groups$pgid " ;;
    -) case $groups in *" $pgid "*) groups="${groups%% $pgid *} ${groups#* $pgid }" ;; esac ;;
  esac
done
for g in $groups; do kill -s KILL -- "-$g" 2>/dev/null; done
"#;

/// `$0` of the script: how the watchdog shows in `ps`.
const NAME: &str = "local-worker-watchdog";

/// Its whole environment. The script uses builtins only; this is for a shell
/// that would look for `kill` on PATH.
const ENVIRONMENT: [&str; 1] = ["PATH=/usr/bin:/bin"];

/// How often, at most, a watchdog is (re)started after a failure.
pub const RETRY_EVERY: Duration = Duration::from_secs(30);

/// A POSIX shell to run the script with: `program`, called with `args` before
/// `-c <script>` (`args[0]` is its `argv[0]`).
#[derive(Debug, Clone, Copy)]
pub struct Shell {
    pub program: &'static CStr,
    pub args: &'static [&'static str],
}

/// Where a POSIX shell is looked for, in order.
pub const SHELLS: &[Shell] = &[
    Shell {
        program: c"/bin/sh",
        args: &["sh"],
    },
    Shell {
        program: c"/usr/bin/sh",
        args: &["sh"],
    },
    // Busybox images (and some minimal ones) have the multi-call binary and
    // sometimes no `sh` link.
    Shell {
        program: c"/bin/busybox",
        args: &["busybox", "sh"],
    },
];

#[derive(Debug)]
pub struct Watchdog {
    pid: libc::pid_t,
    /// `None` once closed.
    commands: Option<File>,
    reaped: bool,
}

impl Watchdog {
    /// Starts a watchdog with the first shell of [`SHELLS`] that can be spawned.
    pub fn spawn() -> io::Result<Watchdog> {
        Watchdog::spawn_with(SHELLS)
    }

    /// Starts a watchdog with the first of `shells` that can be spawned. The error
    /// says why each was not usable.
    pub fn spawn_with(shells: &[Shell]) -> io::Result<Watchdog> {
        let invalid = |_| io::Error::from_raw_os_error(libc::EINVAL);
        let envp = CStringArray::new(ENVIRONMENT).map_err(invalid)?;
        let (shell_stdin, commands) = pipe()?;
        let mut actions = FileActions::new()?;
        actions.add_dup2(shell_stdin.as_raw_fd(), 0)?;
        actions.add_open(1, c"/dev/null", libc::O_WRONLY, 0)?;
        actions.add_open(2, c"/dev/null", libc::O_WRONLY, 0)?;
        // A session of its own, default signal actions, no signal blocked: the
        // script then ignores INT and HUP itself.
        let attributes = leader_attributes()?;
        let mut tried = Vec::new();
        for shell in shells {
            let argv = CStringArray::new(shell.args.iter().copied().chain(["-c", SCRIPT, NAME]))
                .map_err(invalid)?;
            match posix_spawn::spawn(shell.program, &actions, &attributes, &argv, &envp) {
                Ok(pid) => {
                    return Ok(Watchdog {
                        pid,
                        commands: Some(File::from(commands)),
                        reaped: false,
                    });
                }
                Err(e) => tried.push(format!("{}: {e}", shell.program.to_string_lossy())),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no POSIX shell could be started ({})", tried.join("; ")),
        ))
    }

    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// Tells the watchdog about a group coming (`added`) or going. Fails (EPIPE)
    /// once the watchdog is gone: the caller then drops it.
    pub fn send(&mut self, pgid: i32, added: bool) -> io::Result<()> {
        let op = if added { '+' } else { '-' };
        match &mut self.commands {
            Some(commands) => commands.write_all(format!("{op} {pgid}\n").as_bytes()),
            None => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }

    /// Closes the pipe, as the host's death would, and waits for the watchdog to act.
    pub fn close(mut self) -> io::Result<ExitStatus> {
        self.commands = None;
        self.wait()
    }

    fn wait(&mut self) -> io::Result<ExitStatus> {
        let mut status = 0;
        loop {
            // SAFETY: our own unreaped child.
            if unsafe { libc::waitpid(self.pid, &mut status, 0) } == self.pid {
                self.reaped = true;
                return Ok(ExitStatus::from_raw(status));
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                // ECHILD: someone else reaped it; there is nothing left to wait for.
                self.reaped = true;
                return Err(e);
            }
        }
    }
}

impl Drop for Watchdog {
    /// Dismisses a watchdog the host stops using (it is gone, or being replaced):
    /// killed first, so that it cannot act on the pipe's EOF, then reaped, so that
    /// it never lingers as a zombie. Its pid is safe to signal: we have not reaped it.
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: plain syscalls on our own unreaped child.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            let _ = self.wait();
        }
    }
}

/// Keeps a watchdog informed of a list of groups, (re)starting it as needed, and
/// remembers why it could not.
#[derive(Debug)]
pub struct Keeper {
    shells: &'static [Shell],
    retry_every: Duration,
    running: Option<Watchdog>,
    /// When a watchdog was last started (or tried).
    last_start: Option<Instant>,
    /// The latest failure the host has not taken yet.
    unreported: Option<String>,
}

impl Keeper {
    pub const fn new(shells: &'static [Shell], retry_every: Duration) -> Keeper {
        Keeper {
            shells,
            retry_every,
            running: None,
            last_start: None,
            unreported: None,
        }
    }

    /// The group `pgid` was just added to (or removed from) the list, which is now
    /// `listed`. Tells the running watchdog; without one, starts one (rate-limited)
    /// while groups are listed, and hands it all of them.
    pub fn update(&mut self, pgid: i32, added: bool, listed: impl IntoIterator<Item = i32>) {
        if let Some(watchdog) = &mut self.running {
            match watchdog.send(pgid, added) {
                Ok(()) => return,
                Err(e) => {
                    let pid = watchdog.pid();
                    self.running = None;
                    self.fail(format!(
                        "the watchdog process (pid {pid}) is gone: writing to it failed ({e})"
                    ));
                }
            }
        }
        let mut listed = listed.into_iter().peekable();
        if listed.peek().is_none() {
            return;
        }
        let now = Instant::now();
        if self
            .last_start
            .is_some_and(|last| now.duration_since(last) < self.retry_every)
        {
            return;
        }
        self.last_start = Some(now);
        match Watchdog::spawn_with(self.shells) {
            Ok(mut watchdog) => {
                for group in listed {
                    if let Err(e) = watchdog.send(group, true) {
                        let pid = watchdog.pid();
                        self.fail(format!(
                            "the watchdog process (pid {pid}) exited as soon as it started ({e})"
                        ));
                        return;
                    }
                }
                self.running = Some(watchdog);
            }
            Err(e) => self.fail(format!("it could not be started: {e}")),
        }
    }

    fn fail(&mut self, reason: String) {
        let retry = self.retry_every.as_secs_f64();
        self.unreported = Some(format!(
            "the SIGKILL watchdog is not running, so if this Node process is killed by SIGKILL \
             (or dies without running its exit handlers), its running jobs will not be killed \
             and may outlive it; {reason}. It is tried again as jobs start and end, at most \
             every {retry} s."
        ));
    }

    /// The latest failure not taken yet, as a sentence for the host to report.
    pub fn take_failure(&mut self) -> Option<String> {
        self.unreported.take()
    }

    /// Pid of the running watchdog, if any.
    pub fn pid(&self) -> Option<u32> {
        self.running.as_ref().map(Watchdog::pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::{Child, Command};

    const NO_SHELL: &[Shell] = &[Shell {
        program: c"/nonexistent/lw-test/sh",
        args: &["sh"],
    }];

    fn group() -> Child {
        Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap()
    }

    fn pgid(child: &Child) -> i32 {
        child.id() as i32
    }

    /// Waits for `child` to die; returns the signal that killed it.
    fn killed_by(child: &mut Child) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.signal();
            }
            assert!(Instant::now() < deadline, "the listed group was not killed");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn still_runs(mut child: Child) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "an unlisted group was killed"
        );
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn kills_listed_groups_when_its_pipe_closes() {
        let mut kept = group();
        let released = group();
        let mut watchdog = Watchdog::spawn().unwrap();
        watchdog.send(pgid(&kept), true).unwrap();
        watchdog.send(pgid(&released), true).unwrap();
        watchdog.send(pgid(&released), false).unwrap();
        watchdog.close().unwrap();
        assert_eq!(killed_by(&mut kept), Some(libc::SIGKILL));
        still_runs(released);
    }

    #[test]
    fn runs_in_a_session_of_its_own_with_a_minimal_environment() {
        let watchdog = Watchdog::spawn().unwrap();
        let pid = watchdog.pid();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        assert_eq!(fields[2], pid.to_string(), "process group");
        assert_eq!(fields[3], pid.to_string(), "session");
        // posix_spawn returns once the exec has replaced the memory, which can be
        // before the kernel has laid out the new environment: read until it has.
        let deadline = Instant::now() + Duration::from_secs(5);
        let environ = loop {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
            if !environ.is_empty() || Instant::now() > deadline {
                break environ;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        assert_eq!(environ, b"PATH=/usr/bin:/bin\0");
        watchdog.close().unwrap();
    }

    #[test]
    fn looks_for_the_shell_among_the_candidates() {
        let err = Watchdog::spawn_with(NO_SHELL).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/lw-test/sh"), "{err}");
        let fallback = [NO_SHELL[0], SHELLS[0], SHELLS[1]];
        let watchdog = Watchdog::spawn_with(&fallback).unwrap();
        watchdog.close().unwrap();
    }

    #[test]
    fn a_failed_start_is_reported_then_retried_and_the_new_watchdog_gets_every_group() {
        let mut kept = group();
        let released = group();
        let mut keeper = Keeper::new(NO_SHELL, Duration::from_secs(3600));

        keeper.update(pgid(&kept), true, [pgid(&kept)]);
        assert_eq!(keeper.pid(), None);
        let report = keeper.take_failure().expect("the failure is reported");
        assert!(report.contains("/nonexistent/lw-test/sh"), "{report}");
        assert!(report.contains("SIGKILL"), "{report}");
        assert_eq!(keeper.take_failure(), None, "reported once");

        // Within the retry interval: not tried again, nothing new to report.
        keeper.shells = SHELLS;
        keeper.update(pgid(&released), true, [pgid(&kept), pgid(&released)]);
        assert_eq!(keeper.pid(), None);
        assert_eq!(keeper.take_failure(), None);

        // Later, with a shell: started, and handed the groups listed meanwhile.
        keeper.retry_every = Duration::ZERO;
        keeper.update(pgid(&released), false, [pgid(&kept)]);
        assert!(keeper.pid().is_some());
        assert_eq!(keeper.take_failure(), None);
        keeper.running.take().unwrap().close().unwrap();
        assert_eq!(killed_by(&mut kept), Some(libc::SIGKILL));
        still_runs(released);
    }

    #[test]
    fn a_watchdog_that_died_is_reported_and_replaced() {
        let mut kept = group();
        let mut keeper = Keeper::new(SHELLS, Duration::ZERO);
        keeper.update(pgid(&kept), true, [pgid(&kept)]);
        let first = keeper.pid().expect("started");
        // SAFETY: plain syscall on the keeper's unreaped child.
        unsafe { libc::kill(first as i32, libc::SIGKILL) };
        // Unreaped, it stays a zombie: wait until its pipe is closed.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !std::fs::read_to_string(format!("/proc/{first}/stat"))
            .unwrap()
            .contains(") Z ")
        {
            assert!(Instant::now() < deadline, "the watchdog did not die");
            std::thread::sleep(Duration::from_millis(5));
        }

        let other = group();
        keeper.update(pgid(&other), true, [pgid(&kept), pgid(&other)]);
        let report = keeper.take_failure().expect("the death is reported");
        assert!(report.contains(&format!("pid {first}")), "{report}");
        assert!(
            !std::path::Path::new(&format!("/proc/{first}")).exists(),
            "the dead watchdog was reaped"
        );
        let second = keeper.pid().expect("replaced at once");
        assert_ne!(second, first);

        keeper.update(pgid(&other), false, [pgid(&kept)]);
        keeper.running.take().unwrap().close().unwrap();
        assert_eq!(killed_by(&mut kept), Some(libc::SIGKILL));
        still_runs(other);
    }
}
