//! Jobs run by the core through this crate's supervisor, end to end: the scenarios
//! every containment passes, then what only a supervisor (a subreaper per job)
//! can do.

#[path = "../../core/tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use local_worker_core::forkserver::{self, Setting};
use local_worker_core::job::Listeners;
use local_worker_core::{Ending, JobSpec, registry};

use common::{Collect, marker, processes_with, run, run_plain, sh};

/// This crate's executable, or the one `LOCAL_WORKER_TEST_SUPERVISOR` names (the
/// aarch64 run under qemu-user tests the static build that is shipped).
fn supervisor() -> PathBuf {
    std::env::var_os("LOCAL_WORKER_TEST_SUPERVISOR").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_local-worker")),
        PathBuf::from,
    )
}

fn configure() {
    forkserver::configure(Setting::Program(supervisor()));
}

/// `mark` as the job's script writes it: split by an empty quote, so that the
/// daemon's command line carries the mark and the job's own shell's does not.
fn split(mark: &str) -> String {
    format!("{}\"\"{}", &mark[..4], &mark[4..])
}

/// A daemon that escapes the job's session and group, carrying `mark`.
fn setsid_daemon(mark: &str) -> String {
    format!("setsid sh -c 'while :; do sleep 1; done' {} &", split(mark))
}

/// A daemon whose parent exits at once (double fork), in a session of its own.
fn double_forked_daemon(mark: &str) -> String {
    format!(
        "( setsid sh -c 'while :; do sleep 1; done' {} & ) ;",
        split(mark)
    )
}

/// Waits (briefly) until nothing carrying `mark` runs; returns what still does.
fn gone_soon(mark: &str) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let left = processes_with(mark);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_under_their_own_supervisor() {
    let report = run_plain(sh("cat /proc/$PPID/comm; cat /proc/$PPID/status")).await;
    let out = report.stdout.into_text();
    assert!(out.starts_with("lw-supervisor\n"), "{out}");
    // The supervisor is a subreaper... of its own, not the fork server.
    assert!(forkserver::pid().is_some());
    assert!(
        !out.contains(&format!("PPid:\t{}\n", std::process::id())),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escaped_daemons_die_with_the_job_that_started_them() {
    let setsid = &marker("setsid-daemon");
    let double = &marker("double-forked");
    let nested = &marker("nested-setsid");
    // Three sessions deep, each level a daemon of its own carrying the mark.
    let nested_levels = format!(
        r#"setsid sh -c "setsid sh -c 'setsid sh -c \"while :; do sleep 1; done\" \$0 & while :; do sleep 1; done' \$0 & while :; do sleep 1; done" {} &"#,
        split(nested)
    );
    let script = format!(
        "{} {} {nested_levels} echo started",
        setsid_daemon(setsid),
        double_forked_daemon(double),
    );
    // The job runs until the test has counted its daemons (a file says so).
    let counted = std::env::temp_dir().join(marker("counted"));
    let script = format!(
        "{script}; while [ ! -e '{}' ]; do sleep 0.02; done",
        counted.display()
    );
    let started = Instant::now();
    let job = tokio::spawn(run_plain(sh(&script)));
    let expected = [(setsid, 1), (double, 1), (nested, 3)];
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut live = Vec::new();
    while Instant::now() < deadline {
        live = expected
            .iter()
            .map(|(mark, _)| processes_with(mark).len())
            .collect();
        if live.iter().zip(&expected).all(|(n, (_, want))| n == want) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::write(&counted, "").unwrap();
    let report = job.await.unwrap();
    std::fs::remove_file(&counted).unwrap();
    assert_eq!(report.stdout.into_text(), "started\n");
    assert!(started.elapsed() < Duration::from_secs(15));
    for (i, (mark, count)) in expected.into_iter().enumerate() {
        assert_eq!(live[i], count, "{mark}");
        assert_eq!(gone_soon(mark), Vec::<i32>::new(), "{mark}");
        assert_eq!(processes_with(mark), Vec::<i32>::new(), "{mark}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_ignoring_sigterm_is_killed_after_the_grace_period() {
    let mark = &marker("ignores-term");
    let mut spec = sh(&format!(
        "setsid sh -c \"trap '' TERM; while :; do sleep 0.1; done\" {} & sleep 0.2; echo up",
        split(mark)
    ));
    spec.kill_grace = Duration::from_millis(400);
    let started = Instant::now();
    let report = run_plain(spec).await;
    let elapsed = started.elapsed();
    assert_eq!(report.stdout.into_text(), "up\n");
    assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(processes_with(mark), Vec::<i32>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_aborts_end_escaped_daemons_too() {
    let mark = &marker("timeout-daemons");
    let mut spec = sh(&format!(
        "{} {} echo up; sleep 30",
        setsid_daemon(mark),
        double_forked_daemon(mark)
    ));
    spec.timeout = Some(Duration::from_millis(300));
    let report = run_plain(spec).await;
    assert!(matches!(report.ending, Ending::TimedOut));
    assert_eq!(report.signal_name(), Some("SIGTERM"));
    assert_eq!(processes_with(mark), Vec::<i32>::new());

    let mark = &marker("abort-daemons");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let job = tokio::spawn(run::<Collect, _>(
        sh(&format!("{} echo up; sleep 30", double_forked_daemon(mark))),
        1,
        Listeners::default(),
        async move {
            let _ = rx.await;
        },
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(processes_with(mark).len(), 1);
    tx.send(()).unwrap();
    let report = job.await.unwrap().unwrap();
    assert!(matches!(report.ending, Ending::Aborted));
    assert_eq!(processes_with(mark), Vec::<i32>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_one_job_leaves_another_jobs_daemons_alone() {
    let kept = &marker("other-job-daemon");
    let ended = &marker("ended-job-daemon");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let long = tokio::spawn(run::<Collect, _>(
        sh(&format!("{} echo up; sleep 30", setsid_daemon(kept))),
        1,
        Listeners::default(),
        async move {
            let _ = rx.await;
        },
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let report = run_plain(sh(&format!("{} sleep 0.2", setsid_daemon(ended)))).await;
    assert_eq!(report.status.exit_code(), 0);
    assert_eq!(processes_with(ended), Vec::<i32>::new());
    assert_eq!(
        processes_with(kept).len(),
        1,
        "the other job's daemon still runs"
    );
    tx.send(()).unwrap();
    long.await.unwrap().unwrap();
    assert_eq!(processes_with(kept), Vec::<i32>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cpu_time_of_an_orphan_counts() {
    // The daemon burns ~300 ms of CPU and exits; the main process never waits for it.
    let burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass";
    let script = format!("( setsid python3 -c '{burn}' & ) ; sleep 0.8");
    let report = run_plain(sh(&script)).await;
    let cpu = report.usage.user_cpu + report.usage.system_cpu;
    assert!(cpu >= Duration::from_millis(280), "{:?}", report.usage);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_rss_is_the_jobs_own_not_the_hosts() {
    // A host much larger than the job: its size must not show in the job's peak.
    let mut ballast = vec![0u8; 256 << 20];
    for page in ballast.chunks_mut(4096) {
        page[0] = 1;
    }
    let report = run_plain(JobSpec::new("true")).await;
    assert!(report.usage.max_rss_kb < 32 * 1024, "{:?}", report.usage);
    std::hint::black_box(&ballast);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_going_away_ends_its_jobs_gracefully() {
    let mark = &marker("owner-gone");
    let owner = 0x0b5e55ed;
    let job = tokio::spawn(run::<Collect, _>(
        sh(&format!(
            "trap 'echo got-term; exit 5' TERM; {} echo up; while :; do sleep 0.05; done",
            setsid_daemon(mark)
        )),
        owner,
        Listeners::default(),
        std::future::pending(),
    ));
    let deadline = Instant::now() + Duration::from_secs(5);
    while processes_with(mark).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(registry::end_all(owner), 1);
    let report = job.await.unwrap().unwrap();
    // The supervisor terminated the tree: SIGTERM first, which the job handled.
    assert_eq!(report.status.exit_code(), 5, "{report:?}");
    assert_eq!(report.stdout.into_text(), "up\ngot-term\n");
    assert_eq!(processes_with(mark), Vec::<i32>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_killed_behind_our_back_is_reported() {
    let mark = &marker("supervisor-killed");
    let job = tokio::spawn(run_plain(sh(&format!(
        // After the 2 ms within which a supervisor tells the host the job's pid.
        "sleep 0.05; exec sh -c 'while :; do sleep 1; done; : {mark}'"
    ))));
    let deadline = Instant::now() + Duration::from_secs(5);
    while processes_with(mark).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let supervisor = std::fs::read_to_string(format!("/proc/{}/stat", processes_with(mark)[0]))
        .unwrap()
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<i32>()
        .unwrap();
    // SAFETY: plain syscall on the supervisor of our own job.
    unsafe { libc::kill(supervisor, libc::SIGKILL) };
    let report = job.await.unwrap();
    assert!(
        matches!(report.ending, Ending::SupervisorLost { supervisor: s } if s == supervisor as u32),
        "{report:?}"
    );
    assert_eq!(
        gone_soon(mark),
        Vec::<i32>::new(),
        "its main process group was killed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_jobs_with_daemons_timed_out_together_settle_promptly() {
    let count = 300;
    let mark = &marker("many-timeouts");
    let started = Instant::now();
    let jobs: Vec<_> = (0..count)
        .map(|_| {
            let mut spec = sh(&format!("{} sleep 9 & sleep 9", setsid_daemon(mark)));
            spec.timeout = Some(Duration::from_millis(500));
            spec.kill_grace = Duration::from_secs(1);
            tokio::spawn(run_plain(spec))
        })
        .collect();
    for job in jobs {
        let report = job.await.unwrap();
        assert!(matches!(report.ending, Ending::TimedOut), "{report:?}");
    }
    let elapsed = started.elapsed();
    eprintln!("{count} jobs with daemons timed out and settled in {elapsed:?}");
    assert!(elapsed < Duration::from_secs(8), "{elapsed:?}");
    assert_eq!(processes_with(mark), Vec::<i32>::new());
}
