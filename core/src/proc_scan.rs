//! One view of `/proc` shared by every group being waited for: which process groups
//! still have a live (non-zombie) member.
//!
//! A group's members other than its leader give no exit event, so termination polls.
//! Reading `/proc` costs one open and read per process of the machine; done once per
//! group per poll, terminating 1,000 groups at once cost 1,000 full scans per round
//! (and, done inline, starved the runtime's threads for seconds). Here a single thread
//! does the scans, one at a time and at most one per [`interval`] — a few
//! milliseconds, longer when a scan itself is slow — and every waiter that asks within
//! that window shares the result. Waiters never block: they await the next snapshot.
//!
//! Zombies do not count as live: an init that never reaps orphans would otherwise
//! keep a group alive forever.

use std::collections::HashSet;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// Shortest time between the starts of two scans.
const MIN_INTERVAL: Duration = Duration::from_millis(5);
/// Scanning may take at most 1/BUSY_SHARE of the time of one core.
const BUSY_SHARE: u32 = 2;

/// The process groups that had a live member when a scan of `/proc` was made.
#[derive(Debug)]
pub struct Snapshot {
    started: Instant,
    live_groups: HashSet<i32>,
}

impl Snapshot {
    /// When the scan began: a process that was gone by then is not in it.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Whether a process of group `pgid` was running (not a zombie) during the scan.
    pub fn has_live_member(&self, pgid: i32) -> bool {
        self.live_groups.contains(&pgid)
    }

    pub fn live_groups(&self) -> usize {
        self.live_groups.len()
    }
}

/// Scans `/proc` now, on the calling thread. When `/proc` cannot be read, every
/// group is reported live (`None`): waiting longer is safe, stopping early is not.
pub fn scan() -> Option<Snapshot> {
    let started = Instant::now();
    SCANS.fetch_add(1, Ordering::Relaxed);
    let proc = std::fs::File::open("/proc").ok()?;
    let entries = std::fs::read_dir("/proc").ok()?;
    let mut live_groups = HashSet::new();
    let mut path = [0u8; 32];
    let mut buf = [0u8; 1024];
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name.as_bytes();
        if pid.is_empty() || pid.len() > 20 || !pid.iter().all(u8::is_ascii_digit) {
            continue;
        }
        // "<pid>/stat\0", opened relative to /proc.
        path[..pid.len()].copy_from_slice(pid);
        path[pid.len()..pid.len() + 6].copy_from_slice(b"/stat\0");
        // A process that ended while we looked is simply not there.
        let Some(len) = read_at(&proc, &path, &mut buf) else {
            continue;
        };
        if let Some((state, pgrp)) = parse_stat(&buf[..len])
            && state != b'Z'
            && state != b'X'
        {
            live_groups.insert(pgrp);
        }
    }
    Some(Snapshot {
        started,
        live_groups,
    })
}

/// Reads up to `buf.len()` bytes of the file at the NUL-terminated `path` under `dir`.
fn read_at(dir: &std::fs::File, path: &[u8], buf: &mut [u8]) -> Option<usize> {
    // SAFETY: `path` is NUL-terminated (checked by the caller's construction), `dir` a
    // valid descriptor; the new descriptor is ours and closed below.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            path.as_ptr().cast(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` is open and ours; `buf` is writable for its length.
    let len = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    // SAFETY: closing our own descriptor once.
    unsafe { libc::close(fd) };
    usize::try_from(len).ok()
}

/// State letter and process group from the text of `/proc/<pid>/stat`.
pub fn parse_stat(stat: &[u8]) -> Option<(u8, i32)> {
    parse_stat_fields(stat).map(|fields| (fields.state, fields.pgrp))
}

/// The first fields of `/proc/<pid>/stat` after the command name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFields {
    pub state: u8,
    pub ppid: i32,
    pub pgrp: i32,
}

/// Parses `/proc/<pid>/stat`. The command name may contain spaces and parentheses:
/// the fields start after the last `)`.
pub fn parse_stat_fields(stat: &[u8]) -> Option<StatFields> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(StatFields { state, ppid, pgrp })
}

/// Reads and parses `/proc/<pid>/stat`; `None` once the process is gone.
pub fn stat_of(pid: i32) -> Option<StatFields> {
    let mut buf = [0u8; 1024];
    let path = format!("/proc/{pid}/stat\0");
    let len = read_path(path.as_bytes(), &mut buf)?;
    parse_stat_fields(&buf[..len])
}

/// Reads up to `buf.len()` bytes of the file at the NUL-terminated absolute `path`.
pub(crate) fn read_path(path: &[u8], buf: &mut [u8]) -> Option<usize> {
    debug_assert_eq!(path.last(), Some(&0));
    // SAFETY: `path` is NUL-terminated; the new descriptor is ours and closed below.
    let fd = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let len = read_all(fd, buf);
    // SAFETY: closing our own descriptor once.
    unsafe { libc::close(fd) };
    len
}

/// Reads until `buf` is full or end of file (a `/proc` file may come in pieces).
fn read_all(fd: i32, buf: &mut [u8]) -> Option<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: `fd` is open; the rest of `buf` is writable.
        let n = unsafe { libc::read(fd, buf[filled..].as_mut_ptr().cast(), buf.len() - filled) };
        match n {
            0 => break,
            n if n > 0 => filled += n as usize,
            _ if io_interrupted() => continue,
            _ => return None,
        }
    }
    Some(filled)
}

fn io_interrupted() -> bool {
    std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
}

/// A snapshot from a scan that began at or after `since`, shared with every caller
/// that asks meanwhile. `None` when `/proc` could not be read.
pub async fn snapshot_since(since: Instant) -> Option<Arc<Snapshot>> {
    let scanner = &*SCANNER;
    let mut latest = scanner.latest.subscribe();
    loop {
        {
            let current = latest.borrow_and_update();
            match &*current {
                Published::Scanned(snapshot) if snapshot.started >= since => {
                    return Some(Arc::clone(snapshot));
                }
                Published::Failed(at) if *at >= since => return None,
                _ => {}
            }
        }
        scanner.request();
        // The sender lives in a static: `changed` cannot fail.
        if latest.changed().await.is_err() {
            return scan().map(Arc::new);
        }
    }
}

/// How many scans of `/proc` this process has made (shared or not).
pub fn scans_so_far() -> u64 {
    SCANS.load(Ordering::Relaxed)
}

static SCANS: AtomicU64 = AtomicU64::new(0);

static SCANNER: LazyLock<Scanner> = LazyLock::new(|| Scanner {
    requested: Mutex::new(false),
    wake: Condvar::new(),
    latest: watch::Sender::new(Published::Nothing),
    thread: OnceLock::new(),
    inline: Mutex::new(Pace::default()),
});

enum Published {
    Nothing,
    Scanned(Arc<Snapshot>),
    /// `/proc` could not be read by the scan that began then.
    Failed(Instant),
}

struct Scanner {
    /// A waiter wants a scan newer than the latest.
    requested: Mutex<bool>,
    wake: Condvar,
    latest: watch::Sender<Published>,
    /// Whether the scanning thread runs.
    thread: OnceLock<bool>,
    /// Used only if the thread could not be started: waiters scan in turn.
    inline: Mutex<Pace>,
}

/// When the last scan began and how long it took.
#[derive(Default)]
struct Pace {
    last: Option<(Instant, Duration)>,
}

impl Pace {
    /// The earliest time the next scan may begin.
    fn next_allowed(&self) -> Option<Instant> {
        let (started, took) = self.last?;
        Some(started + interval(took))
    }
}

/// Time between the starts of two scans, given how long the last one took.
pub fn interval(last_scan: Duration) -> Duration {
    MIN_INTERVAL.max(last_scan * BUSY_SHARE)
}

impl Scanner {
    fn request(&'static self) {
        let running = *self.thread.get_or_init(|| {
            std::thread::Builder::new()
                .name("lw-proc-scan".into())
                .stack_size(256 << 10)
                .spawn(move || self.run())
                .is_ok()
        });
        if running {
            *self.requested.lock().unwrap_or_else(|e| e.into_inner()) = true;
            self.wake.notify_one();
        } else {
            // Rare (no thread could be created): scan inline, one caller at a time.
            let mut pace = self.inline.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(at) = pace.next_allowed() {
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
            }
            self.scan_and_publish(&mut pace);
        }
    }

    fn run(&self) {
        let mut pace = Pace::default();
        loop {
            {
                let mut requested = self.requested.lock().unwrap_or_else(|e| e.into_inner());
                while !*requested {
                    requested = self.wake.wait(requested).unwrap_or_else(|e| e.into_inner());
                }
            }
            if let Some(at) = pace.next_allowed() {
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
            }
            // Cleared before the scan begins: whoever asked until now is served by it,
            // whoever asks later gets the next one.
            *self.requested.lock().unwrap_or_else(|e| e.into_inner()) = false;
            self.scan_and_publish(&mut pace);
        }
    }

    fn scan_and_publish(&self, pace: &mut Pace) {
        let began = Instant::now();
        let published = match scan() {
            Some(snapshot) => Published::Scanned(Arc::new(snapshot)),
            None => Published::Failed(began),
        };
        pace.last = Some((began, began.elapsed()));
        self.latest.send_replace(published);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    #[test]
    fn parses_state_and_group_after_the_last_parenthesis() {
        let stat = b"4242 (a) b (c)) S 1 4240 4240 0 -1 4194560 100 0 0 0\n";
        assert_eq!(parse_stat(stat), Some((b'S', 4240)));
        assert_eq!(parse_stat(b"7 (zombie) Z 1 7 7 0"), Some((b'Z', 7)));
        assert_eq!(parse_stat(b"7 (sp ace) R 1 -3 7"), Some((b'R', -3)));
        assert_eq!(parse_stat(b"7 (truncated) S 1"), None);
        assert_eq!(parse_stat(b"no parenthesis S 1 2"), None);
        assert_eq!(parse_stat(b""), None);
    }

    #[test]
    fn the_interval_grows_with_slow_scans() {
        assert_eq!(interval(Duration::from_micros(100)), MIN_INTERVAL);
        assert_eq!(
            interval(Duration::from_millis(10)),
            Duration::from_millis(20)
        );
    }

    #[test]
    fn a_scan_sees_live_groups_and_not_zombies() {
        let mut child = Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id() as i32;
        // SAFETY: plain syscall.
        let own_pgid = unsafe { libc::getpgrp() };
        let snapshot = scan().unwrap();
        assert!(snapshot.has_live_member(pgid));
        assert!(snapshot.has_live_member(own_pgid));
        assert!(snapshot.live_groups() >= 2);
        // SAFETY: plain syscall on our own child's group.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        // Killed, not yet reaped: a zombie, which does not count.
        let path = format!("/proc/{pgid}/stat");
        while parse_stat(&std::fs::read(&path).unwrap()).map(|(s, _)| s) != Some(b'Z') {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(!scan().unwrap().has_live_member(pgid));
        child.wait().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_waiters_share_scans_that_began_after_they_asked() {
        let since = Instant::now();
        let before = scans_so_far();
        let waiters: Vec<_> = (0..200)
            .map(|_| tokio::spawn(snapshot_since(since)))
            .collect();
        let mut snapshots = Vec::new();
        for waiter in waiters {
            snapshots.push(waiter.await.unwrap().unwrap());
        }
        assert!(snapshots.iter().all(|s| s.started() >= since));
        // Other tests of this binary may scan meanwhile; 200 waiters alone would
        // have made 200 scans.
        let scans = scans_so_far() - before;
        assert!(scans <= 10, "{scans} scans for 200 waiters");
        let distinct: HashSet<_> = snapshots.iter().map(Arc::as_ptr).collect();
        assert!(distinct.len() <= 2, "{} distinct snapshots", distinct.len());

        // A later request is not served by an older snapshot.
        let later = Instant::now();
        let newer = snapshot_since(later).await.unwrap();
        assert!(newer.started() >= later);
        assert!(newer.started() >= snapshots[0].started() + MIN_INTERVAL);
    }
}
