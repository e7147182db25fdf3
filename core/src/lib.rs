//! The process runner behind `@helios-project/local-worker`, free of Node-API.
//!
//! # Semantics
//!
//! A job ([`JobSpec`]) is one program run without a shell, as the leader of a new
//! session (hence of a new process group), with stdin on `/dev/null` and
//! stdout/stderr captured through pipes.
//!
//! * **Containment.** Each job runs under a supervisor of its own ([`supervised`]): a
//!   small process of the `local-worker` executable (the supervisor crate) that
//!   starts the job's main process, is a subreaper (`PR_SET_CHILD_SUBREAPER`), so
//!   that every orphan of the job comes back to it whatever session or group it moved
//!   to, reaps all of them, and ends the whole tree when told to, when the main
//!   process exits (`kill_leftovers`), or when the host dies (its control socket
//!   closes). Supervisors are forked by one fork server per host ([`forkserver`]), so
//!   the host itself never forks and starts no process per job. Where no supervisor
//!   can run (no executable, a `noexec` mount), jobs are contained by their process
//!   group instead ([`grouped`]), and the host learns why
//!   ([`forkserver::take_failure`]).
//! * **Starting** ([`spawn`]) is split in two: [`spawn::prepare`] (on the host: the
//!   `cwd` checked, the environment built, the program resolved against the job's
//!   final `PATH` by us, [`resolve`]) and [`spawn::start`] (in the supervisor, or in
//!   the host without one): libc's `posix_spawn` (a `CLONE_VFORK` clone), never a
//!   plain `fork`. The leader starts in a session of its own
//!   (`POSIX_SPAWN_SETSID`): it has no controlling terminal, so a job that touches
//!   `/dev/tty` under a terminal is not stopped by SIGTTOU, and its pgid is its
//!   pid. Every signal is at its default action and none is blocked
//!   (`POSIX_SPAWN_SETSIGDEF` with every signal, `POSIX_SPAWN_SETSIGMASK` with none),
//!   as libuv does: what Node ignores (SIGPIPE, SIGXFSZ) or a runtime thread blocks
//!   is not inherited. A file the kernel refuses with ENOEXEC and that has no `#!`
//!   line is run with `/bin/sh <program> <args...>`, as `execvp` (and so
//!   `child_process`) does.
//! * **Environment** ([`environment`]): the job gets exactly
//!   [`JobSpec::base_env`] (by default this process's environment, read at spawn
//!   time) with [`JobSpec::env`] laid over it, where `None` removes a variable. We
//!   build `envp` ourselves; the Node binding passes a snapshot taken on the JS
//!   thread, since `environ` is not safe to read while Node may `setenv`.
//! * **Working directory**: the job's `cwd`, else the host's at the time of the
//!   start (a supervisor is handed it as a descriptor). Set through
//!   `posix_spawn_file_actions_addchdir_np`, looked up at run time
//!   ([`posix_spawn`]) since it is glibc 2.29 and the floor is 2.28. Where it is
//!   missing, a job with a `cwd` is started by std's `Command` with a `pre_exec`
//!   doing the same session and signal set-up: that one path forks (the supervisor
//!   shipped is linked with musl, which has it).
//! * **Termination** is SIGTERM to every process of the job, then SIGKILL after a
//!   grace period, and a job reports only once none is left. It happens on timeout,
//!   on abort, when an output listener fails, and — by default — when the leader
//!   exits with processes still running (container-like: nothing is left behind).
//!   Under a supervisor it reaches every descendant ([`descendants`]); without one,
//!   the leader's process group ([`terminate`], polling a `/proc` view shared by
//!   every waiting group, [`proc_scan`]).
//! * **Output** ([`capture`]) is read as it arrives, kept up to a byte limit per stream
//!   (the most recent bytes win; what was dropped is counted: [`tail`]), decoded as UTF-8
//!   across read boundaries as it arrives, into the form V8 stores strings in (Latin-1
//!   or UTF-16: [`decode`], [`text`]), or kept as bytes (`Encoding::Buffer`), and handed
//!   to an optional [`OutputListener`] in order, with at most two deliveries outstanding
//!   per stream (backpressure).
//!   After the job's processes are gone the pipes are drained until EOF or a short
//!   bound, so a process outside the job that inherited a pipe cannot hold the job
//!   open; what the pipes hold at the bound is still taken (up to a few MiB), so a
//!   reader that was slow to be scheduled loses nothing.
//! * **Resource usage**: under a supervisor, every process of the job (it adds up
//!   what `wait4` reports for each process it reaps); without one, the leader and
//!   what it waited for ([`reap`]).
//! * **Registry** ([`registry`]) lists the live jobs so that the host can end them
//!   all when it exits; when the host dies without running any code (SIGKILL), the
//!   supervisors end them.
//!
//! # Caveats
//!
//! * Without a supervisor, a process that leaves the group (`setsid`, `setpgid`)
//!   escapes termination, orphans are re-parented to init (whether they are reaped
//!   is up to init; zombies are treated as gone), and the jobs outlive a host killed
//!   by SIGKILL.
//! * The leader's session has no terminal: a job that needs one (a password
//!   prompt on `/dev/tty`) gets ENXIO opening it instead of hanging.

pub mod capture;
pub mod decode;
pub mod descendants;
pub mod environment;
pub mod errno;
pub mod fd_passing;
pub mod forkserver;
pub mod group;
pub mod grouped;
pub mod job;
pub mod lean_spawn;
pub mod pipe_size;
pub mod posix_spawn;
pub mod proc_scan;
pub mod protocol;
pub mod reap;
pub mod registry;
pub mod resolve;
pub mod spawn;
pub mod spec;
pub mod supervised;
pub mod tail;
pub mod terminate;
pub mod text;

pub use capture::{CaptureMode, Encoding, OutputChunk, OutputListener};
pub use job::{Ending, JobReport, run};
pub use reap::{ExitStatus, ResourceUsage};
pub use spawn::SpawnError;
pub use spec::{JobSpec, SpecError, SpecErrorKind};
pub use tail::{CapturedOutput, Kept};
pub use text::Text;
