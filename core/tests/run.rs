//! The job life cycle end to end, with real processes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use local_worker_core::job::Listeners;
use local_worker_core::{Ending, JobReport, JobSpec, OutputListener, group, run};

/// Collects deliveries; fails on the `fail_on`-th one if asked.
#[derive(Clone, Default)]
struct Collect {
    seen: Arc<Mutex<Vec<String>>>,
    fail_on: Option<usize>,
}

impl OutputListener for Collect {
    type Error = String;
    type Delivery = std::future::Ready<Result<(), String>>;
    fn deliver(&self, text: String) -> Self::Delivery {
        let mut seen = self.seen.lock().unwrap();
        seen.push(text);
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
    let marker = "lw-core-timeout-marker";
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
    let marker = "lw-core-leftover-marker";
    let started = Instant::now();
    let report = run_plain(sh(&format!("{} echo done", looping_grandchild(marker)))).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(report.stdout.into_text(), "done\n");
    assert!(processes_with(marker).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_can_be_left_alone() {
    let marker = "lw-core-left-alone-marker";
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
    fn deliver(&self, text: String) -> Self::Delivery {
        let seen = Arc::clone(&self.seen);
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
