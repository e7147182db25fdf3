//! The job life cycle end to end, with real processes.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use local_worker_core::job::Listeners;
use local_worker_core::{
    Ending, JobReport, JobSpec, OutputChunk, OutputListener, SpawnError, group, proc_scan, run,
};

/// Collects deliveries; fails on the `fail_on`-th one if asked.
#[derive(Clone, Default)]
struct Collect {
    seen: Arc<Mutex<Vec<String>>>,
    fail_on: Option<usize>,
}

impl OutputListener for Collect {
    type Error = String;
    type Delivery = std::future::Ready<Result<(), String>>;
    fn deliver(&self, chunk: OutputChunk) -> Self::Delivery {
        let mut seen = self.seen.lock().unwrap();
        seen.push(chunk.to_text());
        std::future::ready(if Some(seen.len()) == self.fail_on {
            Err("listener gave up".into())
        } else {
            Ok(())
        })
    }
}

fn sh(script: &str) -> JobSpec {
    JobSpec::new("sh").args(["-c", script])
}

async fn run_plain(spec: JobSpec) -> JobReport<String> {
    run::<Collect, _>(spec, 1, Listeners::default(), std::future::pending())
        .await
        .unwrap()
}

/// Live (non-zombie) processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'));
            !zombie && String::from_utf8_lossy(&cmdline).contains(marker)
        })
        .collect()
}

/// A marker unique to this test process: concurrent runs (other checkouts) must not
/// see each other's processes.
fn marker(name: &str) -> String {
    format!("lw-core-{name}-marker-{}", std::process::id())
}

/// A grandchild that runs until killed, findable by `marker` in its command line.
fn looping_grandchild(marker: &str) -> String {
    format!("sh -c 'while :; do sleep 1; done' {marker} &")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captures_output_and_exit_code() {
    let report = run_plain(sh("printf out; printf err >&2; exit 7")).await;
    assert!(matches!(report.ending, Ending::Exited));
    assert_eq!(report.status.exit_code(), 7);
    assert_eq!(report.stdout.into_text(), "out");
    assert_eq!(report.stderr.into_text(), "err");
    assert!(report.duration > Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_sees_split_character_joined() {
    let collect = Collect::default();
    let listeners = Listeners {
        stdout: Some(collect.clone()),
        stderr: None,
    };
    let spec = sh(r"printf '\303'; sleep 0.05; printf '\251 ok'");
    let report = run(spec, 1, listeners, std::future::pending())
        .await
        .unwrap();
    let seen = collect.seen.lock().unwrap().clone();
    assert_eq!(seen.concat(), "é ok");
    assert!(seen.iter().all(|s| !s.contains('\u{fffd}')), "{seen:?}");
    assert_eq!(report.stdout.into_text(), "é ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_kills_the_whole_group_even_when_sigterm_is_ignored() {
    let marker = &marker("timeout");
    let mut spec = sh(&format!(
        "trap '' TERM; {} echo started; wait",
        looping_grandchild(marker)
    ));
    spec.timeout = Some(Duration::from_millis(300));
    spec.kill_grace = Duration::from_millis(300);
    let started = Instant::now();
    let report = run_plain(spec).await;
    assert!(matches!(report.ending, Ending::TimedOut));
    assert_eq!(report.signal_name(), Some("SIGKILL"));
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert_eq!(report.stdout.into_text(), "started\n");
    assert!(processes_with(marker).is_empty());
    assert!(!group::has_live_members(report.pid as i32));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_in_the_group_are_terminated_when_the_leader_exits() {
    let marker = &marker("leftover");
    let started = Instant::now();
    let report = run_plain(sh(&format!("{} echo done", looping_grandchild(marker)))).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(report.stdout.into_text(), "done\n");
    assert!(processes_with(marker).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_can_be_left_alone() {
    let marker = &marker("left-alone");
    let mut spec = sh(&format!("{} echo done", looping_grandchild(marker)));
    spec.kill_leftovers = false;
    let started = Instant::now();
    let report = run_plain(spec).await;
    // Settles at the leader's exit plus the drain bound, not when the grandchild ends.
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(report.stdout.into_text(), "done\n");
    let left = processes_with(marker);
    assert_eq!(left.len(), 1, "{left:?}");
    group::signal(report.pid as i32, libc::SIGKILL).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_terminates_and_keeps_partial_output() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let abort = async move {
        let _ = rx.await;
    };
    let job = tokio::spawn(run::<Collect, _>(
        sh("echo partial; sleep 30"),
        1,
        Listeners::default(),
        abort,
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    tx.send(()).unwrap();
    let report = job.await.unwrap().unwrap();
    assert!(matches!(report.ending, Ending::Aborted));
    assert_eq!(report.stdout.into_text(), "partial\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_listener_fails_the_job() {
    let collect = Collect {
        fail_on: Some(1),
        ..Default::default()
    };
    let listeners = Listeners {
        stdout: Some(collect.clone()),
        stderr: None,
    };
    let started = Instant::now();
    let report = run(
        sh("echo one; sleep 30"),
        1,
        listeners,
        std::future::pending(),
    )
    .await
    .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(matches!(report.ending, Ending::ListenerFailed(ref e) if e == "listener gave up"));
    assert_eq!(report.stdout.into_text(), "one\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_buffer_keeps_the_tail_and_counts_the_rest() {
    let mut spec = sh("head -c 1000000 /dev/zero | tr '\\0' a; printf END");
    spec.max_buffer = 10;
    let report = run_plain(spec).await;
    assert_eq!(report.stdout.dropped, 1_000_003 - 10);
    assert_eq!(report.stdout.into_text(), "aaaaaaaEND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_usage_comes_from_the_kernel() {
    let touch_64mib = "b = bytearray(64 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1";
    let report = run_plain(JobSpec::new("python3").args(["-c", touch_64mib])).await;
    assert_eq!(report.status.exit_code(), 0);
    assert!(report.usage.max_rss_kb >= 64 * 1024, "{:?}", report.usage);
    assert!(report.usage.max_rss_kb < 256 * 1024, "{:?}", report.usage);
}

/// Consumes each delivery after a delay, as a busy JS thread would.
#[derive(Clone, Default)]
struct Slow {
    seen: Arc<Mutex<Vec<String>>>,
}

impl OutputListener for Slow {
    type Error = String;
    type Delivery = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>;
    fn deliver(&self, chunk: OutputChunk) -> Self::Delivery {
        let seen = Arc::clone(&self.seen);
        let text = chunk.to_text();
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            seen.lock().unwrap().push(text);
            Ok(())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_listener_gets_everything_in_order_before_the_report() {
    let slow = Slow::default();
    let listeners = Listeners {
        stdout: Some(slow.clone()),
        stderr: None,
    };
    let script = "i=0; while [ $i -lt 3000 ]; do echo line-$i; i=$((i+1)); done";
    let report = run(sh(script), 1, listeners, std::future::pending())
        .await
        .unwrap();
    let seen = slow.seen.lock().unwrap().concat();
    let expected: String = (0..3000).map(|i| format!("line-{i}\n")).collect();
    assert_eq!(seen, expected);
    assert_eq!(report.stdout.into_text(), expected);
}

async fn run_err(spec: JobSpec) -> SpawnError {
    run::<Collect, _>(spec, 1, Listeners::default(), std::future::pending())
        .await
        .unwrap_err()
}

/// A fresh directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("lw-core-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Writes `name` with `text` and the given mode; returns its path.
    ///
    /// Written by a shell, not by this process: tests spawn in parallel, and a child
    /// between its clone and its exec holds copies of our descriptors, so a file we
    /// had open for writing would make its exec fail with ETXTBSY.
    fn file(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = self.0.join(name);
        let written = std::process::Command::new("sh")
            .args([
                "-c",
                "printf '%s' \"$1\" > \"$2\"",
                "sh",
                text,
                path_str(&path),
            ])
            .status()
            .unwrap();
        assert!(written.success());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn base(pairs: &[(&str, &str)]) -> Option<Vec<(OsString, OsString)>> {
    Some(pairs.iter().map(|(k, v)| (k.into(), v.into())).collect())
}

/// The fields of `/proc/<pid>/stat` after the command name: state, ppid, pgrp,
/// session, tty_nr, ...
fn stat_fields(stat: &str) -> Vec<i64> {
    stat[stat.rfind(')').unwrap() + 1..]
        .split_ascii_whitespace()
        .skip(1)
        .take(4)
        .map(|f| f.parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_has_a_session_of_its_own_and_no_terminal() {
    let report = run_plain(sh("cat /proc/$$/stat")).await;
    let stat = report.stdout.into_text();
    let fields = stat_fields(&stat);
    let pid = i64::from(report.pid);
    // [ppid, pgrp, session, tty_nr]
    assert_eq!(fields[1], pid, "pgrp: {stat}");
    assert_eq!(fields[2], pid, "session: {stat}");
    assert_eq!(fields[3], 0, "tty_nr: {stat}");
}

/// SigIgn and SigBlk of the test process's own thread, for the setup's sanity.
fn own_signal_masks() -> (String, String) {
    // /proc/thread-self: the mask is per thread.
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .to_owned()
    };
    (field("SigIgn:"), field("SigBlk:"))
}

// current_thread: the job is spawned on this very thread, whose mask is set below.
#[tokio::test(flavor = "current_thread")]
async fn leader_gets_default_signal_actions_and_an_empty_mask() {
    // As under Node: SIGPIPE and SIGXFSZ ignored process-wide, and the spawning
    // thread blocking a signal (as runtime threads do).
    // SAFETY: plain libc calls on this process's and this thread's signal state.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        let mut blocked: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut blocked);
        libc::sigaddset(&mut blocked, libc::SIGUSR2);
        assert_eq!(
            libc::pthread_sigmask(libc::SIG_BLOCK, &blocked, std::ptr::null_mut()),
            0
        );
    }
    let (ignored, blocked) = own_signal_masks();
    assert_ne!(ignored, "0000000000000000");
    assert_ne!(blocked, "0000000000000000");

    let report = run_plain(JobSpec::new("cat").args(["/proc/self/status"])).await;
    let status = report.stdout.into_text();
    let line = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap()
            .to_owned()
    };
    assert_eq!(line("SigIgn:"), "SigIgn:\t0000000000000000");
    assert_eq!(line("SigBlk:"), "SigBlk:\t0000000000000000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceeding_the_file_size_limit_kills_with_sigxfsz() {
    // Ignored here, as Node does: the job must not inherit that.
    // SAFETY: plain libc call on this process's signal state.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let dir = TempDir::new("xfsz");
    let out = dir.0.join("f");
    let report = run_plain(sh(&format!(
        "ulimit -f 1; exec head -c 100000 /dev/zero > '{}'",
        path_str(&out)
    )))
    .await;
    assert_eq!(report.status.signal, Some(libc::SIGXFSZ), "{report:?}");
    assert_eq!(report.signal_name(), Some("SIGXFSZ"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executable_without_a_shebang_runs_with_the_shell() {
    let dir = TempDir::new("no-shebang");
    let script = dir.file("script", "echo no-shebang $1 \"$0\"\n", 0o755);
    // By path, with its arguments.
    let report = run_plain(JobSpec::new(path_str(&script)).args(["first", "second"])).await;
    assert_eq!(report.status.exit_code(), 0, "{report:?}");
    assert_eq!(
        report.stdout.into_text(),
        format!("no-shebang first {}\n", path_str(&script))
    );
    // Found on PATH, relative to cwd.
    let mut spec = JobSpec::new("script").args(["on-path"]);
    spec.env
        .push(("PATH".into(), Some(path_str(&dir.0).into())));
    let report = run_plain(spec).await;
    assert!(report.stdout.into_text().starts_with("no-shebang on-path "));
    let mut spec = JobSpec::new("./script").args(["in-cwd"]);
    spec.cwd = Some(dir.0.clone());
    let report = run_plain(spec).await;
    assert_eq!(report.stdout.into_text(), "no-shebang in-cwd ./script\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_interpreter_line_is_not_retried_with_the_shell() {
    let dir = TempDir::new("bad-shebang");
    // "#!" with no interpreter: the kernel says ENOEXEC.
    let script = dir.file("script", "#!\necho ran\n", 0o755);
    let err = run_err(JobSpec::new(path_str(&script))).await;
    assert_eq!((err.code, err.errno), ("ENOEXEC", libc::ENOEXEC), "{err:?}");
    assert!(err.message.contains(path_str(&script)), "{}", err.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_env_is_the_whole_environment() {
    let (inherited, _) = std::env::vars_os()
        .find(|(k, _)| k != "PATH")
        .expect("the test process has some variable");
    let mut spec = JobSpec::new("env");
    spec.base_env = base(&[("LW_ONLY_IN_BASE", "yes"), ("PATH", "/usr/bin:/bin")]);
    let report = run_plain(spec).await;
    let seen = report.stdout.into_text();
    assert_eq!(seen, "LW_ONLY_IN_BASE=yes\nPATH=/usr/bin:/bin\n");
    assert!(!seen.contains(&format!("{}=", inherited.to_string_lossy())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_overlay_sets_and_removes_variables() {
    let mut spec = JobSpec::new("env");
    spec.base_env = base(&[
        ("SECRET", "hunter2"),
        ("KEEP", "1"),
        ("PATH", "/usr/bin:/bin"),
    ]);
    spec.env = vec![
        ("SECRET".into(), None),
        ("ADDED".into(), Some("2".into())),
        ("NEVER_THERE".into(), None),
    ];
    let report = run_plain(spec).await;
    assert_eq!(
        report.stdout.into_text(),
        "KEEP=1\nPATH=/usr/bin:/bin\nADDED=2\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_final_environment_path_is_searched() {
    let dir = TempDir::new("path");
    dir.file("lw-only-here", "#!/bin/sh\necho found \"$PATH\"\n", 0o755);
    let dir_path = path_str(&dir.0).to_owned();
    // From the base alone.
    let mut spec = JobSpec::new("lw-only-here");
    spec.base_env = base(&[("PATH", &format!("/nonexistent:{dir_path}"))]);
    let report = run_plain(spec).await;
    assert_eq!(
        report.stdout.into_text(),
        format!("found /nonexistent:{dir_path}\n")
    );
    // The overlay wins over the base.
    let mut spec = JobSpec::new("lw-only-here");
    spec.base_env = base(&[("PATH", "/usr/bin:/bin")]);
    spec.env.push(("PATH".into(), Some(dir_path.clone())));
    assert_eq!(
        run_plain(spec).await.stdout.into_text(),
        format!("found {dir_path}\n")
    );
    // PATH in neither: not found (no fallback to this process's PATH).
    let mut spec = JobSpec::new("lw-only-here");
    spec.base_env = base(&[("PATH", &dir_path)]);
    spec.env.push(("PATH".into(), None));
    let err = run_err(spec).await;
    assert_eq!(err.code, "ENOENT");
    // ...but execvp's default PATH still finds the usual programs.
    let mut spec = JobSpec::new("sh").args(["-c", "echo ok"]);
    spec.base_env = base(&[]);
    assert_eq!(run_plain(spec).await.stdout.into_text(), "ok\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cwd_is_honoured() {
    let dir = TempDir::new("cwd");
    let mut spec = JobSpec::new("pwd");
    spec.cwd = Some(dir.0.clone());
    assert_eq!(
        run_plain(spec).await.stdout.into_text(),
        format!("{}\n", path_str(&dir.0))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relative_cwd_and_relative_path_entries_combine() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("lw-rel-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir = TempDir({
        std::fs::create_dir_all(&dir).unwrap();
        dir
    });
    std::fs::create_dir(dir.0.join("sub")).unwrap();
    dir.file("sub/prog", "#!/bin/sh\necho relative-ok\n", 0o755);
    // The same directory relative to this process's working directory, through
    // their common ancestor (not through `/`, where `..` would lead nowhere).
    let here = std::env::current_dir().unwrap();
    let common = here.ancestors().find(|a| dir.0.starts_with(a)).unwrap();
    let mut relative = PathBuf::new();
    for _ in here.strip_prefix(common).unwrap().components() {
        relative.push("..");
    }
    relative.push(dir.0.strip_prefix(common).unwrap());
    assert!(relative.starts_with(".."), "{relative:?}");
    let mut spec = JobSpec::new("prog");
    spec.cwd = Some(relative);
    spec.env.push(("PATH".into(), Some("sub".into())));
    let report = run_plain(spec).await;
    assert_eq!(report.stdout.into_text(), "relative-ok\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_errors_keep_their_codes_and_messages() {
    let err = run_err(JobSpec::new("lw-surely-not-a-command")).await;
    assert_eq!((err.code, err.errno), ("ENOENT", libc::ENOENT));
    assert_eq!(err.path, "lw-surely-not-a-command");
    assert_eq!(
        err.message,
        "spawn lw-surely-not-a-command ENOENT: command not found: lw-surely-not-a-command"
    );

    let dir = TempDir::new("errors");
    let plain = dir.file("plain", "echo hi\n", 0o644);
    let err = run_err(JobSpec::new(path_str(&plain))).await;
    assert_eq!((err.code, err.errno), ("EACCES", libc::EACCES));
    assert!(err.message.contains("permission denied"), "{}", err.message);

    let mut spec = JobSpec::new("true");
    spec.cwd = Some(plain.clone());
    let err = run_err(spec).await;
    assert_eq!((err.code, err.path.as_str()), ("ENOTDIR", path_str(&plain)));
    assert!(err.message.contains("not a directory"), "{}", err.message);

    let mut spec = JobSpec::new("true");
    spec.cwd = Some(dir.0.join("missing"));
    let err = run_err(spec).await;
    assert_eq!(err.code, "ENOENT");
    assert!(err.message.contains("does not exist"), "{}", err.message);

    // Found and executable, but the exec fails: the OS's own words.
    let script = dir.file("bad-interpreter", "#!/lw/no/such/interpreter\n", 0o755);
    let err = run_err(JobSpec::new(path_str(&script))).await;
    assert_eq!(err.code, "ENOENT");
    assert_eq!(
        err.message,
        format!(
            "spawn {} ENOENT: No such file or directory (os error 2)",
            path_str(&script)
        )
    );
}

/// The capacity of the job's stdout pipe, as the job itself sees it (F_GETPIPE_SZ).
const PIPE_SIZE_OF_STDOUT: &str = "import fcntl, sys; sys.stderr.write(str(fcntl.fcntl(1, 1032)))";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_stream_keeps_the_default_pipe_size() {
    // Growing every job's pipes used up an unprivileged user's pipe budget.
    let code = format!("import time; print('a line'); time.sleep(0.3)\n{PIPE_SIZE_OF_STDOUT}");
    let report = run_plain(JobSpec::new("python3").args(["-c", code.as_str()])).await;
    assert_eq!(report.stderr.into_text(), "65536");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_stream_gets_a_larger_pipe() {
    let code = format!(
        "import sys, time\nfor _ in range(64): sys.stdout.buffer.write(b'x' * (256 << 10)); sys.stdout.flush()\ntime.sleep(0.3)\n{PIPE_SIZE_OF_STDOUT}"
    );
    let report = run_plain(JobSpec::new("python3").args(["-c", code.as_str()])).await;
    assert_eq!(report.stdout.into_text().len(), 16 << 20);
    assert_eq!(report.stderr.into_text(), "1048576");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_groups_terminated_at_once_share_their_proc_scans() {
    // Each group polled /proc on its own: N groups cost N full scans per poll round,
    // done on the runtime's threads.
    let count = 500;
    let scans_before = proc_scan::scans_so_far();
    let started = Instant::now();
    let jobs: Vec<_> = (0..count)
        .map(|_| {
            let mut spec = sh("sleep 9 & sleep 9");
            spec.timeout = Some(Duration::from_millis(300));
            spec.kill_grace = Duration::from_secs(1);
            tokio::spawn(run_plain(spec))
        })
        .collect();
    let mut pgids = Vec::new();
    for job in jobs {
        let report = job.await.unwrap();
        assert!(matches!(report.ending, Ending::TimedOut), "{report:?}");
        assert_eq!(report.signal_name(), Some("SIGTERM"));
        pgids.push(report.pid as i32);
    }
    let elapsed = started.elapsed();
    let scans = proc_scan::scans_so_far() - scans_before;
    let snapshot = proc_scan::scan().unwrap();
    let left: Vec<_> = pgids
        .iter()
        .filter(|&&pgid| snapshot.has_live_member(pgid))
        .collect();
    assert!(left.is_empty(), "groups still live: {left:?}");
    eprintln!("{count} groups terminated in {elapsed:?} with {scans} scans of /proc");
    assert!(elapsed < Duration::from_millis(4500), "{elapsed:?}");
    // About one scan per poll round for all of them (other tests of this binary
    // may scan meanwhile), not one per group.
    assert!(scans < count, "{scans} scans");
}
