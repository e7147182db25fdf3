//! The process runner behind `@helios-project/local-worker`, free of Node-API.
//!
//! # Semantics
//!
//! A job ([`JobSpec`]) is one program run without a shell, as the leader of a new
//! session (hence of a new process group), with stdin on `/dev/null` and
//! stdout/stderr captured through pipes.
//!
//! * **Spawning** ([`spawn`]) calls libc's `posix_spawn` (a `CLONE_VFORK` clone),
//!   never a plain `fork`, so its cost does not grow with the parent's memory. The
//!   program is resolved against the job's final `PATH` by us ([`resolve`]). The
//!   leader starts in a session of its own (`POSIX_SPAWN_SETSID`): it has no
//!   controlling terminal, so a job that touches `/dev/tty` under a terminal is not
//!   stopped by SIGTTOU, and its pgid is its pid. Every signal is at its default
//!   action and none is blocked (`POSIX_SPAWN_SETSIGDEF` with every signal,
//!   `POSIX_SPAWN_SETSIGMASK` with none), as libuv does: what Node ignores
//!   (SIGPIPE, SIGXFSZ) or a runtime thread blocks is not inherited. A file the
//!   kernel refuses with ENOEXEC and that has no `#!` line is run with
//!   `/bin/sh <program> <args...>`, as `execvp` (and so `child_process`) does.
//! * **Environment** ([`environment`]): the job gets exactly
//!   [`JobSpec::base_env`] (by default this process's environment, read at spawn
//!   time) with [`JobSpec::env`] laid over it, where `None` removes a variable. We
//!   build `envp` ourselves; the Node binding passes a snapshot taken on the JS
//!   thread, since `environ` is not safe to read while Node may `setenv`.
//! * **Working directory**: set through `posix_spawn_file_actions_addchdir_np`,
//!   looked up at run time ([`posix_spawn`]) since it is glibc 2.29 and the floor
//!   is 2.28. Where it is missing, a job with a `cwd` is started by std's
//!   `Command` with a `pre_exec` doing the same session and signal set-up: that
//!   one path forks.
//! * **Reaping** is ours, not tokio's: a pidfd tells when the leader has exited and
//!   `wait4` collects its status together with the kernel's resource usage
//!   ([`reap`]). Between the two the leader is a zombie, which pins the process-group
//!   id, so the group can still be signalled safely.
//! * **Termination** ([`terminate`]) is SIGTERM to the whole group, then SIGKILL after
//!   a grace period, and it returns only once no live member is left. It runs on
//!   timeout, on abort, when an output listener fails, and — by default — when the
//!   leader exits with members still running (container-like: nothing is left behind).
//!   Members other than the leader give no exit event, so it polls `/proc`; every
//!   group being waited for shares the same scans ([`proc_scan`]): terminating
//!   1,000 groups at once costs about one scan per poll round, not 1,000.
//! * **Output** ([`capture`]) is read as it arrives, kept up to a byte limit per stream
//!   (the most recent bytes win; what was dropped is counted: [`tail`]), decoded as UTF-8
//!   across read boundaries as it arrives, into the form V8 stores strings in (Latin-1
//!   or UTF-16: [`decode`], [`text`]), or kept as bytes (`Encoding::Buffer`), and handed
//!   to an optional [`OutputListener`] in order, with at most two deliveries outstanding
//!   per stream (backpressure).
//!   After the group is gone the pipes are drained until EOF or a short bound, so a
//!   process outside the group that inherited a pipe cannot hold the job open; what
//!   the pipes hold at the bound is still taken (up to a few MiB), so a reader that
//!   was slow to be scheduled loses nothing.
//! * **Registry** ([`registry`]) lists the groups of live jobs so that the host can
//!   kill them all when it exits, and keeps a [`watchdog`] process informed, which
//!   kills them when the host dies without running any code (SIGKILL). When no
//!   watchdog can run (no POSIX shell, or it died), the jobs still run; the host
//!   learns why from [`registry::take_watchdog_failure`], and a new one is tried
//!   later (at most every 30 s).
//!
//! # Caveats
//!
//! * A process that leaves the group (`setsid`, `setpgid`) escapes group termination.
//! * The leader's session has no terminal: a job that needs one (a password
//!   prompt on `/dev/tty`) gets ENXIO opening it instead of hanging.
//! * Orphaned group members are re-parented to init; whether they are reaped is up
//!   to init. Members left as zombies are treated as gone.

pub mod capture;
pub mod decode;
pub mod environment;
pub mod errno;
pub mod group;
pub mod job;
pub mod pipe_size;
pub mod posix_spawn;
pub mod proc_scan;
pub mod reap;
pub mod registry;
pub mod resolve;
pub mod spawn;
pub mod spec;
pub mod tail;
pub mod terminate;
pub mod text;
pub mod watchdog;

pub use capture::{CaptureMode, Encoding, OutputChunk, OutputListener};
pub use job::{Ending, JobReport, run};
pub use reap::{ExitStatus, ResourceUsage};
pub use spawn::SpawnError;
pub use spec::{JobSpec, SpecError, SpecErrorKind};
pub use tail::{CapturedOutput, Kept};
pub use text::Text;
