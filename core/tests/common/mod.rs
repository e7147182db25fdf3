//! Helpers of the end-to-end tests, and the scenarios every kind of containment
//! must pass ([`scenarios`]). Each test crate that includes this module says how
//! its jobs are contained, with a `configure()` at its root.

#![allow(dead_code)]

pub mod scenarios;

use std::ffi::OsString;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use local_worker_core::job::Listeners;
use local_worker_core::registry::Owner;
use local_worker_core::{JobReport, JobSpec, OutputChunk, OutputListener, SpawnError};

/// `local_worker_core::run`, with the test crate's containment configured first.
pub async fn run<L, A>(
    spec: JobSpec,
    owner: Owner,
    listeners: Listeners<L>,
    abort: A,
) -> Result<JobReport<L::Error>, SpawnError>
where
    L: OutputListener,
    A: Future<Output = ()> + Send,
{
    crate::configure();
    local_worker_core::run(spec, owner, listeners, abort).await
}

/// Collects deliveries; fails on the `fail_on`-th one if asked.
#[derive(Clone, Default)]
pub struct Collect {
    pub seen: Arc<Mutex<Vec<String>>>,
    pub fail_on: Option<usize>,
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

pub fn sh(script: &str) -> JobSpec {
    JobSpec::new("sh").args(["-c", script])
}

pub async fn run_plain(spec: JobSpec) -> JobReport<String> {
    run::<Collect, _>(spec, 1, Listeners::default(), std::future::pending())
        .await
        .unwrap()
}

/// Live (non-zombie) processes whose command line contains `marker`.
pub fn processes_with(marker: &str) -> Vec<i32> {
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
pub fn marker(name: &str) -> String {
    format!("lw-core-{name}-marker-{}", std::process::id())
}

/// A grandchild that runs until killed, findable by `marker` in its command line.
pub fn looping_grandchild(marker: &str) -> String {
    format!("sh -c 'while :; do sleep 1; done' {marker} &")
}

pub async fn run_err(spec: JobSpec) -> SpawnError {
    run::<Collect, _>(spec, 1, Listeners::default(), std::future::pending())
        .await
        .unwrap_err()
}

/// A fresh directory under the system's temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
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
    pub fn file(&self, name: &str, text: &str, mode: u32) -> PathBuf {
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

pub fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

pub fn base(pairs: &[(&str, &str)]) -> Option<Vec<(OsString, OsString)>> {
    Some(pairs.iter().map(|(k, v)| (k.into(), v.into())).collect())
}

/// The fields of `/proc/<pid>/stat` after the command name: state, ppid, pgrp,
/// session, tty_nr, ...
pub fn stat_fields(stat: &str) -> Vec<i64> {
    stat[stat.rfind(')').unwrap() + 1..]
        .split_ascii_whitespace()
        .skip(1)
        .take(4)
        .map(|f| f.parse().unwrap())
        .collect()
}

/// SigIgn and SigBlk of the test process's own thread, for the setup's sanity.
pub fn own_signal_masks() -> (String, String) {
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

/// Consumes each delivery after a delay, as a busy JS thread would.
#[derive(Clone, Default)]
pub struct Slow {
    pub seen: Arc<Mutex<Vec<String>>>,
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

/// The capacity of the job's stdout pipe, as the job itself sees it (F_GETPIPE_SZ).
pub const PIPE_SIZE_OF_STDOUT: &str =
    "import fcntl, sys; sys.stderr.write(str(fcntl.fcntl(1, 1032)))";
