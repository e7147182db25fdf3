//! The job life cycle end to end, with real processes, contained by process
//! groups only (no supervisor): what runs when the supervisor cannot start.

mod common;

use std::time::{Duration, Instant};

use local_worker_core::forkserver::{self, Setting};
use local_worker_core::{Ending, proc_scan};

use common::{run_plain, sh};

fn configure() {
    forkserver::configure(Setting::Disabled);
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
