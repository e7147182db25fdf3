//! The job's process group: signalling it and telling whether anything of it lives.

use std::io;

/// Sends `signal` to every process of group `pgid`. `Ok(false)`: the group is empty.
pub fn signal(pgid: i32, signal: i32) -> io::Result<bool> {
    // SAFETY: plain syscall; a negative pid addresses the group.
    if unsafe { libc::kill(-pgid, signal) } == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ESRCH) => Ok(false),
        _ => Err(err),
    }
}

/// Whether any process is in the group, zombies included (one cheap syscall).
pub fn exists(pgid: i32) -> bool {
    !matches!(signal(pgid, 0), Ok(false))
}

/// Whether a process of the group is still running: zombies do not count, since an
/// init that does not reap would otherwise keep a group "alive" forever.
pub fn has_live_members(pgid: i32) -> bool {
    if !exists(pgid) {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<i32>().ok()) else {
            return false;
        };
        matches!(stat_of(pid), Some((state, pgrp)) if pgrp == pgid && state != 'Z' && state != 'X')
    })
}

/// State letter and process group of `pid`, from `/proc/<pid>/stat`.
fn stat_of(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    #[test]
    fn sees_live_members_and_not_zombies() {
        let mut child = Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id() as i32;
        assert!(has_live_members(pgid));
        assert!(signal(pgid, libc::SIGKILL).unwrap());
        // Killed but not yet reaped: a zombie, which does not count as live.
        while stat_of(pgid).map(|(s, _)| s) != Some('Z') {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(exists(pgid));
        assert!(!has_live_members(pgid));
        child.wait().unwrap();
        assert!(!exists(pgid));
        assert!(!signal(pgid, libc::SIGTERM).unwrap());
    }
}
