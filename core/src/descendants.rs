//! The processes descended from one process (a job's supervisor), found through
//! `/proc`, and signalled without ever hitting a stranger.
//!
//! A supervisor is a subreaper (`PR_SET_CHILD_SUBREAPER`): every orphan of its
//! tree is re-parented to it, whatever session or group it moved to, so following
//! parent links down from the supervisor finds the whole job.
//!
//! Finding them: `/proc/<pid>/task/<tid>/children` lists the children each thread
//! made, so the walk costs in proportion to the job's tree, not to the machine's
//! process count (1,000 supervisors terminating at once must not each scan every
//! process). Kernels built without `CONFIG_PROC_CHILDREN` lack those files; then one
//! scan of every `/proc/<pid>/stat` gives the parent links.
//!
//! Signalling: a pid read from `/proc` may be reaped by its parent and reused by an
//! unrelated process before we signal it (`pid_max` is 32,768 on many machines). So
//! each process is first pinned with a pidfd, then its parent is read again: if the
//! process now behind that pid is not a child of the tree, it is left alone; if it
//! is, the pidfd names it (or a process already gone, which the signal cannot reach).

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::OnceLock;

use crate::proc_scan;

/// Every descendant of `root` (live or zombie), parents before their children.
pub fn of(root: i32) -> Vec<i32> {
    if !children_files_exist() {
        return from_full_scan(root);
    }
    let mut found = Vec::new();
    let mut queue = VecDeque::from([root]);
    let mut seen = HashSet::from([root]);
    while let Some(parent) = queue.pop_front() {
        for child in children_of(parent) {
            // A pid seen twice (re-parented while we walked) is listed once.
            if seen.insert(child) {
                found.push(child);
                queue.push_back(child);
            }
        }
    }
    found
}

/// Sends `signal` to every descendant of `root` but the members of process group
/// `signalled_group` (the caller signalled that group as a whole); returns how
/// many were signalled.
///
/// A process can fork between the walk and its signal; its child is not
/// signalled. Signalling a process group has no such race (the kernel makes a
/// racing fork start over), which is why callers signal the main process's group
/// first, while they can do so safely, and walk for the rest.
pub fn signal_all(root: i32, signal: i32, signalled_group: Option<i32>) -> usize {
    let tree = of(root);
    let members: HashSet<i32> = tree.iter().copied().chain([root]).collect();
    tree.into_iter()
        .filter(|&pid| signal_member(pid, &members, signal, signalled_group))
        .count()
}

/// Signals `pid` if it is (still) a child of a process of `members`, and not in
/// process group `skip`.
fn signal_member(pid: i32, members: &HashSet<i32>, signal: i32, skip: Option<i32>) -> bool {
    // SAFETY: plain syscall; the descriptor is ours.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let pidfd = (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd as i32) });
    if pidfd.is_none() && io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS) {
        return false; // gone
    }
    let is_member = proc_scan::stat_of(pid)
        .is_some_and(|stat| members.contains(&stat.ppid) && Some(stat.pgrp) != skip);
    if !is_member {
        return false;
    }
    let sent = match &pidfd {
        // SAFETY: plain syscall on our own pidfd.
        Some(fd) => unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                std::os::fd::AsRawFd::as_raw_fd(fd),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        },
        // No pidfds (a kernel before 5.3): the check above narrows the race, as
        // well as it can be without them.
        // SAFETY: plain syscall.
        None => unsafe { libc::kill(pid, signal) }.into(),
    };
    sent == 0
}

/// Children of `pid`, from the children file of each of its threads (a child is
/// listed under the thread that created it). Empty once the process is gone.
fn children_of(pid: i32) -> Vec<i32> {
    let mut children = Vec::new();
    let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return children;
    };
    let mut buf = vec![0u8; 4096];
    for thread in threads.flatten() {
        let mut path = thread.path().into_os_string().into_encoded_bytes();
        path.extend_from_slice(b"/children\0");
        while let Some(len) = proc_scan::read_path(&path, &mut buf) {
            if len == buf.len() {
                // Maybe cut short: read again with room to spare.
                buf.resize(buf.len() * 2, 0);
                continue;
            }
            children.extend(
                buf[..len]
                    .split(u8::is_ascii_whitespace)
                    .filter_map(|pid| std::str::from_utf8(pid).ok()?.parse::<i32>().ok()),
            );
            break;
        }
    }
    children
}

/// Whether this kernel has `/proc/<pid>/task/<tid>/children` (`CONFIG_PROC_CHILDREN`).
fn children_files_exist() -> bool {
    static EXIST: OnceLock<bool> = OnceLock::new();
    *EXIST.get_or_init(|| {
        // SAFETY: plain syscalls.
        let (pid, tid) = unsafe { (libc::getpid(), libc::syscall(libc::SYS_gettid)) };
        std::path::Path::new(&format!("/proc/{pid}/task/{tid}/children")).exists()
    })
}

/// The walk without children files: every process's parent, from one scan.
fn from_full_scan(root: i32) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            if let Some(stat) = proc_scan::stat_of(pid) {
                children.entry(stat.ppid).or_default().push(pid);
            }
        }
    }
    let mut found = Vec::new();
    let mut queue = VecDeque::from([root]);
    while let Some(parent) = queue.pop_front() {
        for &child in children.get(&parent).map(Vec::as_slice).unwrap_or_default() {
            found.push(child);
            queue.push_back(child);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    /// A shell whose child runs a grandchild: three generations below this process.
    fn three_generations(marker: &str) -> std::process::Child {
        Command::new("sh")
            .args([
                "-c",
                &format!("sh -c 'sleep 30; : {marker}' & echo started; wait"),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn wait_for_line(child: &mut std::process::Child) {
        use std::io::Read;
        let mut byte = [0u8; 8];
        let _ = child.stdout.as_mut().unwrap().read(&mut byte).unwrap();
    }

    #[test]
    fn finds_every_generation_in_order_both_ways() {
        // SAFETY: plain syscall.
        let me = unsafe { libc::getpid() };
        let mut child = three_generations("lw-desc-walk");
        wait_for_line(&mut child);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mine = loop {
            let mine: Vec<i32> = of(me)
                .into_iter()
                .filter(|&p| is_under(p, child.id() as i32))
                .collect();
            if mine.len() >= 3 || Instant::now() > deadline {
                break mine;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(mine[0], child.id() as i32, "parents first: {mine:?}");
        assert!(mine.len() >= 3, "{mine:?}");
        let scanned: HashSet<i32> = from_full_scan(me).into_iter().collect();
        assert!(mine.iter().all(|p| scanned.contains(p)), "{mine:?}");
        child.kill().unwrap();
        child.wait().unwrap();
        for pid in mine.iter().skip(1) {
            // SAFETY: plain syscall; cleaning up our test's own processes.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
    }

    /// Whether `pid` is `ancestor` or below it.
    fn is_under(mut pid: i32, ancestor: i32) -> bool {
        for _ in 0..64 {
            if pid == ancestor {
                return true;
            }
            match proc_scan::stat_of(pid) {
                Some(stat) if stat.ppid > 1 => pid = stat.ppid,
                _ => return false,
            }
        }
        false
    }

    #[test]
    fn a_process_outside_the_tree_is_not_signalled() {
        let mut stranger = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = stranger.id() as i32;
        // Its parent is this process, which is not among the members.
        let members = HashSet::from([1]);
        assert!(!signal_member(pid, &members, libc::SIGKILL, None));
        assert!(stranger.try_wait().unwrap().is_none(), "left alone");
        // SAFETY: plain syscall.
        let me = unsafe { libc::getpid() };
        // SAFETY: plain syscall.
        let own_group = unsafe { libc::getpgrp() };
        let mine = HashSet::from([me]);
        assert!(!signal_member(pid, &mine, libc::SIGKILL, Some(own_group)));
        assert!(signal_member(pid, &mine, libc::SIGKILL, None));
        assert!(stranger.wait().unwrap().code().is_none());
    }
}
