//! The job's process group: signalling it and telling whether anything of it lives.

use std::io;

use crate::proc_scan;

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
/// init that does not reap would otherwise keep a group "alive" forever. Scans `/proc`
/// on the calling thread; code that waits for groups shares scans through
/// [`proc_scan::snapshot_since`] instead.
pub fn has_live_members(pgid: i32) -> bool {
    if !exists(pgid) {
        return false;
    }
    proc_scan::scan().is_none_or(|snapshot| snapshot.has_live_member(pgid))
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
        let stat = format!("/proc/{pgid}/stat");
        while proc_scan::parse_stat(&std::fs::read(&stat).unwrap()).map(|(s, _)| s) != Some(b'Z') {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(exists(pgid));
        assert!(!has_live_members(pgid));
        child.wait().unwrap();
        assert!(!exists(pgid));
        assert!(!signal(pgid, libc::SIGTERM).unwrap());
    }
}
