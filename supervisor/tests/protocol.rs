//! The fork server and a supervisor spoken to directly, message by message, as the
//! host does: the orders and timings a host cannot easily produce on purpose.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use local_worker_core::fd_passing::socket_pair;
use local_worker_core::forkserver::ForkServer;
use local_worker_core::protocol::{Frames, FromSupervisor, Launch, ToSupervisor};
use local_worker_core::spawn::pipe;

/// This crate's executable, or the one `LOCAL_WORKER_TEST_SUPERVISOR` names (the
/// aarch64 run under qemu-user tests the static builds).
fn supervisor() -> PathBuf {
    std::env::var_os("LOCAL_WORKER_TEST_SUPERVISOR").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_local-worker")),
        PathBuf::from,
    )
}

fn server() -> ForkServer {
    ForkServer::start(&supervisor()).unwrap()
}

fn launch(script: &str, grace: Duration) -> Launch {
    Launch {
        program: b"/bin/sh".to_vec(),
        argv: vec![b"sh".to_vec(), b"-c".to_vec(), script.as_bytes().to_vec()],
        envp: vec![b"PATH=/usr/bin:/bin".to_vec()],
        cwd: None,
        kill_leftovers: true,
        grace,
    }
}

/// A job handed to a supervisor: the host's end of its control socket and the
/// read end of its stdout.
struct Job {
    control: UnixStream,
    stdout: OwnedFd,
    _stderr: OwnedFd,
    frames: Frames,
}

/// Writes `first` into the control socket *before* the supervisor exists, then
/// asks the server for one.
fn start(server: &ForkServer, first: &[ToSupervisor]) -> Job {
    let (ours, theirs) = socket_pair(libc::SOCK_STREAM).unwrap();
    let (stdout, stdout_child) = pipe().unwrap();
    let (stderr, stderr_child) = pipe().unwrap();
    let mut control = UnixStream::from(ours);
    let bytes: Vec<u8> = first.iter().flat_map(ToSupervisor::encode).collect();
    control.write_all(&bytes).unwrap();
    let here = std::fs::File::open(".").unwrap();
    server
        .launch([
            theirs.as_fd(),
            stdout_child.as_fd(),
            stderr_child.as_fd(),
            here.as_fd(),
        ])
        .unwrap();
    control
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    Job {
        control,
        stdout,
        _stderr: stderr,
        frames: Frames::default(),
    }
}

impl Job {
    fn next(&mut self) -> Option<FromSupervisor> {
        loop {
            if let Some(message) = self.frames.next_message().unwrap() {
                return Some(message);
            }
            let mut buf = [0u8; 1024];
            let n = self.control.read(&mut buf).expect("a message within 10 s");
            if n == 0 {
                return None;
            }
            self.frames.push(&buf[..n]);
        }
    }

    /// Every message until the supervisor's end.
    fn rest(&mut self) -> Vec<FromSupervisor> {
        std::iter::from_fn(|| self.next()).collect()
    }

    fn stdout(self) -> String {
        drop(self.control);
        let mut text = String::new();
        std::fs::File::from(self.stdout)
            .read_to_string(&mut text)
            .unwrap();
        text
    }
}

fn exit_of(messages: &[FromSupervisor]) -> Option<i32> {
    messages.iter().find_map(|m| match m {
        FromSupervisor::Exited { wait_status } => Some(*wait_status),
        _ => None,
    })
}

#[test]
fn a_terminate_that_arrived_with_the_launch_is_acted_on() {
    let server = server();
    let started = Instant::now();
    let mut job = start(
        &server,
        &[
            ToSupervisor::Launch(launch("sleep 30", Duration::from_secs(5))),
            ToSupervisor::Terminate {
                grace: Duration::from_secs(5),
            },
        ],
    );
    let messages = job.rest();
    assert!(started.elapsed() < Duration::from_secs(5), "{messages:?}");
    assert!(matches!(messages[0], FromSupervisor::Spawned { .. }));
    let status = exit_of(&messages).expect("the main process exited");
    assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGTERM);
    assert!(matches!(
        messages.last(),
        Some(FromSupervisor::Done { complete: true, .. })
    ));
}

#[test]
fn the_host_letting_go_ends_the_job_with_its_grace_period() {
    let server = server();
    let mut job = start(
        &server,
        &[ToSupervisor::Launch(launch(
            "trap 'echo term; exit 4' TERM; echo up; while :; do sleep 0.05; done",
            Duration::from_secs(5),
        ))],
    );
    assert!(matches!(job.next(), Some(FromSupervisor::Spawned { .. })));
    let mut line = [0u8; 3];
    std::fs::File::from(job.stdout.try_clone().unwrap())
        .read_exact(&mut line)
        .unwrap();
    assert_eq!(&line, b"up\n");
    // As the host's death would: end of stream for the supervisor.
    // SAFETY: plain syscall on our socket.
    unsafe { libc::shutdown(job.control.as_raw_fd(), libc::SHUT_WR) };
    let messages = job.rest();
    let status = exit_of(&messages).expect("the main process exited");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 4,
        "{messages:?}"
    );
    assert_eq!(job.stdout(), "term\n");
}

#[test]
fn a_message_that_may_not_follow_the_launch_ends_the_job() {
    let server = server();
    let mut job = start(
        &server,
        &[
            ToSupervisor::Launch(launch("sleep 30", Duration::from_secs(5))),
            ToSupervisor::Launch(launch("echo second", Duration::from_secs(5))),
        ],
    );
    let messages = job.rest();
    let status = exit_of(&messages).expect("the main process exited");
    assert!(libc::WIFSIGNALED(status), "{messages:?}");
    assert_eq!(job.stdout(), "");
}

#[test]
fn sigterm_to_a_supervisor_terminates_its_job() {
    let server = server();
    let mut job = start(
        &server,
        &[ToSupervisor::Launch(launch(
            "sleep 30",
            Duration::from_secs(5),
        ))],
    );
    let Some(FromSupervisor::Spawned { supervisor, .. }) = job.next() else {
        panic!("no Spawned");
    };
    // SAFETY: plain syscall on our job's supervisor.
    unsafe { libc::kill(supervisor, libc::SIGTERM) };
    let messages = job.rest();
    let status = exit_of(&messages).expect("the main process exited");
    assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGTERM);
    // Told to end, it does not go back to the pool, though its job left nothing.
    assert!(
        ends_soon(supervisor),
        "supervisor {supervisor} still serves"
    );
}

/// Whether `pid` is gone (or a zombie) within 5 s. The server ignores SIGCHLD, so
/// its children are reaped as they exit.
fn ends_soon(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat)
                if stat
                    .rsplit(')')
                    .next()
                    .unwrap()
                    .trim_start()
                    .starts_with('Z') =>
            {
                return true;
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    false
}

fn supervisor_of(job: &mut Job) -> i32 {
    match job.next() {
        Some(FromSupervisor::Spawned { supervisor, .. }) => supervisor,
        other => panic!("not Spawned: {other:?}"),
    }
}

#[test]
fn supervisors_whose_jobs_left_nothing_serve_the_next_jobs() {
    let server = server();
    let mut supervisors = std::collections::BTreeSet::new();
    for i in 0..30 {
        let mut job = start(
            &server,
            &[ToSupervisor::Launch(launch(
                &format!("echo {i}"),
                Duration::from_secs(1),
            ))],
        );
        supervisors.insert(supervisor_of(&mut job));
        let messages = job.rest();
        assert!(matches!(
            messages.last(),
            Some(FromSupervisor::Done { complete: true, .. })
        ));
        assert_eq!(job.stdout(), format!("{i}\n"));
    }
    // One at a time: the two idle supervisors (and perhaps a replacement forked while
    // one was busy) take turns, instead of thirty of them.
    assert!(supervisors.len() <= 6, "{supervisors:?}");
}

#[test]
fn a_supervisor_whose_job_left_a_process_running_does_not_serve_again() {
    let server = server();
    let mut spec = launch("sleep 30 >/dev/null & echo $!", Duration::from_secs(1));
    spec.kill_leftovers = false;
    let mut job = start(&server, &[ToSupervisor::Launch(spec)]);
    let supervisor = supervisor_of(&mut job);
    let messages = job.rest();
    assert!(matches!(
        messages.last(),
        Some(FromSupervisor::Done {
            complete: false,
            ..
        })
    ));
    assert!(
        ends_soon(supervisor),
        "supervisor {supervisor} still serves"
    );
    let leftover: i32 = job.stdout().trim().parse().unwrap();
    // SAFETY: plain syscall; the leftover is ours to end now.
    assert_eq!(unsafe { libc::kill(leftover, libc::SIGKILL) }, 0);
}

#[test]
fn a_job_abandoned_before_its_launch_starts_nothing_and_the_server_serves_on() {
    let server = server();
    // The host let go before writing the launch: the supervisor reads end of stream.
    let (ours, theirs) = socket_pair(libc::SOCK_STREAM).unwrap();
    let (_r, w) = pipe().unwrap();
    let here = std::fs::File::open(".").unwrap();
    drop(ours);
    server
        .launch([theirs.as_fd(), w.as_fd(), w.as_fd(), here.as_fd()])
        .unwrap();
    let mut job = start(
        &server,
        &[ToSupervisor::Launch(launch(
            "echo fine",
            Duration::from_secs(1),
        ))],
    );
    let messages = job.rest();
    assert!(matches!(
        messages.last(),
        Some(FromSupervisor::Done { complete: true, .. })
    ));
    assert_eq!(job.stdout(), "fine\n");
}

/// Run by `npm run test:arm64` only (`--ignored`), with the shipped aarch64 build under
/// qemu-user, which has no PR_SET_CHILD_SUBREAPER: every machine this suite otherwise runs on
/// has it.
#[test]
#[ignore = "needs a kernel (or emulator) without PR_SET_CHILD_SUBREAPER"]
fn the_fork_server_refuses_where_orphans_cannot_be_adopted() {
    let error = ForkServer::start(&supervisor()).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::Unsupported, "{error}");
    assert!(
        error.to_string().contains("PR_SET_CHILD_SUBREAPER failed"),
        "{error}"
    );
}
