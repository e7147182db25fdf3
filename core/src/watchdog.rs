//! Killing jobs even when the host process is SIGKILLed.
//!
//! Nothing runs inside a process killed by SIGKILL, so the last word goes to a
//! second process: a tiny `/bin/sh` loop spawned (with posix_spawn, like every
//! job) on the first registration. It reads `+ <pgid>` / `- <pgid>` lines from a
//! pipe whose write end only the host holds; when the host dies, for whatever
//! reason, the kernel closes that end, the loop sees EOF and SIGKILLs every group
//! still listed. It lives in a process group of its own and ignores SIGINT and
//! SIGHUP, so the terminal signals that end the host do not end it first.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};

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

#[derive(Debug)]
pub struct Watchdog {
    child: Child,
    /// `None` once closed.
    commands: Option<ChildStdin>,
}

impl Watchdog {
    pub fn spawn() -> std::io::Result<Watchdog> {
        let mut child = Command::new("/bin/sh")
            .args(["-c", SCRIPT, "local-worker-watchdog"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        let commands = child.stdin.take().expect("stdin was piped");
        Ok(Watchdog {
            child,
            commands: Some(commands),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Tells the watchdog about a group coming (`added`) or going. Fails once the
    /// watchdog is gone (someone killed it): the caller then drops it.
    pub fn send(&mut self, pgid: i32, added: bool) -> std::io::Result<()> {
        let op = if added { '+' } else { '-' };
        match &mut self.commands {
            Some(commands) => commands.write_all(format!("{op} {pgid}\n").as_bytes()),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        }
    }

    /// Closes the pipe, as the host's death would, and waits for the watchdog to act.
    pub fn close(mut self) -> std::io::Result<std::process::ExitStatus> {
        self.commands = None;
        self.child.wait()
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Reap it if it is gone, so that it never lingers as a zombie; if it still
        // runs, closing its pipe (dropping `commands`) makes it exit by itself.
        let _ = self.child.try_wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn kills_listed_groups_when_its_pipe_closes() {
        let mut kept = Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let mut released = Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let mut watchdog = Watchdog::spawn().unwrap();
        watchdog.send(kept.id() as i32, true).unwrap();
        watchdog.send(released.id() as i32, true).unwrap();
        watchdog.send(released.id() as i32, false).unwrap();
        watchdog.close().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(status) = kept.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the listed group was not killed");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
        assert!(
            released.try_wait().unwrap().is_none(),
            "an unlisted group was killed"
        );
        released.kill().unwrap();
        released.wait().unwrap();
    }
}
