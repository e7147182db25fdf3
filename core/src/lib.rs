//! The process runner behind `@helios-project/local-worker`, free of Node-API.
//!
//! # Semantics
//!
//! A job ([`JobSpec`]) is one program run without a shell, as the leader of a new
//! process group, with stdin on `/dev/null` and stdout/stderr captured through pipes.
//!
//! * **Spawning** goes through glibc `posix_spawn` (a `CLONE_VFORK` clone), never a
//!   plain `fork`, so its cost does not grow with the parent's memory. Nothing here
//!   uses `pre_exec`: the program is resolved against `PATH` by us ([`resolve`]) and
//!   the group is made with `POSIX_SPAWN_SETPGROUP` ([`spawn`]).
//! * **Reaping** is ours, not tokio's: a pidfd tells when the leader has exited and
//!   `wait4` collects its status together with the kernel's resource usage
//!   ([`reap`]). Between the two the leader is a zombie, which pins the process-group
//!   id, so the group can still be signalled safely.
//! * **Termination** ([`terminate`]) is SIGTERM to the whole group, then SIGKILL after
//!   a grace period, and it returns only once no live member is left. It runs on
//!   timeout, on abort, when an output listener fails, and — by default — when the
//!   leader exits with members still running (container-like: nothing is left behind).
//! * **Output** ([`capture`]) is read as it arrives, kept up to a byte limit per stream
//!   (the most recent bytes win; what was dropped is counted), decoded as UTF-8 across
//!   read boundaries ([`decode`]) and handed to an optional [`OutputListener`] in
//!   order, with at most two deliveries outstanding per stream (backpressure).
//!   After the group is gone the pipes are drained until EOF or a short bound, so a
//!   process outside the group that inherited a pipe cannot hold the job open; what
//!   the pipes hold at the bound is still taken (up to a few MiB), so a reader that
//!   was slow to be scheduled loses nothing.
//! * **Registry** ([`registry`]) lists the groups of live jobs so that the host can
//!   kill them all when it exits, and keeps a [`watchdog`] process informed, which
//!   kills them when the host dies without running any code (SIGKILL).
//!
//! # Caveats
//!
//! * A process that leaves the group (`setsid`, `setpgid`) escapes group termination.
//! * Orphaned group members are re-parented to init; whether they are reaped is up
//!   to init. Members left as zombies are treated as gone.

pub mod capture;
pub mod decode;
pub mod environment;
pub mod errno;
pub mod group;
pub mod job;
pub mod posix_spawn;
pub mod reap;
pub mod registry;
pub mod resolve;
pub mod spawn;
pub mod spec;
pub mod terminate;
pub mod watchdog;

pub use capture::{CapturedOutput, OutputListener};
pub use job::{Ending, JobReport, run};
pub use reap::{ExitStatus, ResourceUsage};
pub use spawn::SpawnError;
pub use spec::{JobSpec, SpecError, SpecErrorKind};
