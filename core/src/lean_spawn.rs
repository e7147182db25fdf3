//! Starting a program from a small single-threaded process that installs no signal
//! handler (a job's supervisor, the `run` command): `clone(CLONE_VM | CLONE_VFORK)`
//! into a child that does only what is needed, then `execve`.
//!
//! `posix_spawn` must assume the worst of its caller — any signal may have a handler,
//! other threads may run — so glibc's and musl's children walk all 64 signals, and
//! musl's parent also waits for a pipe to close after the vfork returned. Such a
//! caller knows better: the only signals its child must reset are the ones it
//! ignores ([`IgnoredSignals`], read once, before a job comes), and no handler can
//! run in the child. So the child resets those, empties its signal mask, makes its
//! own session, sets up its standard descriptors and working directory, and execs;
//! a failure is written into memory it shares with the parent, which reads it once
//! the vfork lets it go on. Every call in the child is a raw system call: no
//! allocation, no lock, nothing of libc's state.

use std::ffi::{CStr, c_int, c_void};
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::posix_spawn::{CStringArray, signal_count};

/// The signals this process ignores, which a child must not inherit ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredSignals(Vec<c_int>);

impl IgnoredSignals {
    /// Reads every signal's disposition now (one system call each): call it once
    /// the process's own signal set-up is done, and again if it changes.
    pub fn of_this_process() -> IgnoredSignals {
        let signals = signal_count();
        let mut ignored = Vec::new();
        for signal in 1..=signals {
            let mut current = [0u64; 8];
            // SAFETY: a query (no new action) into a buffer larger than the kernel's
            // sigaction; the handler is its first word on every architecture we build.
            let ret = unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    signal as c_int,
                    std::ptr::null::<u8>(),
                    current.as_mut_ptr(),
                    signals.div_ceil(8),
                )
            };
            if ret == 0 && current[0] as usize == libc::SIG_IGN {
                ignored.push(signal as c_int);
            }
        }
        IgnoredSignals(ignored)
    }

    pub fn as_slice(&self) -> &[c_int] {
        &self.0
    }
}

/// What the child needs, prepared by the parent (the child allocates nothing).
pub struct Exec<'a> {
    pub program: &'a CStr,
    pub argv: &'a CStringArray,
    pub envp: &'a CStringArray,
    pub cwd: Option<&'a CStr>,
    /// Above 2 (so that no `dup3` is asked to copy a descriptor onto itself).
    pub stdout: RawFd,
    pub stderr: RawFd,
}

struct Shared<'a> {
    exec: &'a Exec<'a>,
    ignored: &'a [c_int],
    errno: AtomicI32,
}

/// Size of the child's stack: it makes a handful of system calls, nothing else.
const CHILD_STACK: usize = 32 * 1024;

/// Starts `exec` as the leader of a new session, every signal at its default action
/// and none blocked, stdin on `/dev/null`. Returns the child's pid once it has
/// exec'd; an exec error comes back as this call's error (the child is reaped).
pub fn spawn(exec: &Exec, ignored: &IgnoredSignals) -> io::Result<libc::pid_t> {
    assert!(exec.stdout > 2 && exec.stderr > 2);
    let shared = Shared {
        exec,
        ignored: ignored.as_slice(),
        errno: AtomicI32::new(0),
    };
    // The child's stack is a region of this frame, never written by us: no
    // allocation per job (a fresh 64 KiB one cost an mmap, page faults, and an
    // munmap whose TLB flush reached the other CPUs), and the child touches only
    // the pages it uses.
    let mut stack = std::mem::MaybeUninit::<[u8; CHILD_STACK]>::uninit();
    // The stack grows down on every architecture we build: hand over its top,
    // 16-byte aligned.
    let top = (stack.as_mut_ptr() as usize + CHILD_STACK) & !15;
    // SAFETY: the child runs `child` on its own stack with `shared`, which outlives
    // it: CLONE_VFORK suspends this thread until the child has exec'd or exited.
    let pid = unsafe {
        libc::clone(
            child,
            top as *mut c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&shared as *const Shared).cast_mut().cast(),
        )
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    match shared.errno.load(Ordering::SeqCst) {
        0 => Ok(pid),
        errno => {
            // It exited without exec'ing: reap it, so that it is nobody's zombie.
            // SAFETY: our own child.
            while unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) } < 0
                && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
            {}
            Err(io::Error::from_raw_os_error(errno))
        }
    }
}

/// The child: raw system calls only (it shares the parent's memory, libc state
/// included), then exec. Any failure is reported through `errno` and ends it.
extern "C" fn child(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the parent's `Shared`, alive while the parent is suspended.
    let shared = unsafe { &*(arg as *const Shared) };
    let exec = shared.exec;
    let fail = |errno: c_int| -> c_int {
        shared.errno.store(errno.max(1), Ordering::SeqCst);
        // SAFETY: ends the child; nothing of the parent's is touched.
        unsafe { libc::syscall(libc::SYS_exit_group, 127) };
        127
    };
    // SAFETY (whole block): plain system calls with pointers to live, NUL-terminated
    // or fixed-size data of the parent's.
    unsafe {
        let sigset_size = signal_count().div_ceil(8);
        // An all-zero kernel sigaction is SIG_DFL, no flags, an empty mask.
        let default = [0u64; 8];
        for &signal in shared.ignored {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                default.as_ptr(),
                std::ptr::null_mut::<u8>(),
                sigset_size,
            );
        }
        let empty = [0u64; 2];
        if libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            empty.as_ptr(),
            std::ptr::null_mut::<u8>(),
            sigset_size,
        ) != 0
        {
            return fail(errno());
        }
        if libc::syscall(libc::SYS_setsid) < 0 {
            return fail(errno());
        }
        let null = libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            c"/dev/null".as_ptr(),
            libc::O_RDONLY,
        ) as c_int;
        if null < 0 {
            return fail(errno());
        }
        for (from, to) in [(null, 0), (exec.stdout, 1), (exec.stderr, 2)] {
            if from != to && libc::syscall(libc::SYS_dup3, from, to, 0) < 0 {
                return fail(errno());
            }
        }
        if null > 2 {
            libc::syscall(libc::SYS_close, null);
        }
        if let Some(cwd) = exec.cwd
            && libc::syscall(libc::SYS_chdir, cwd.as_ptr()) != 0
        {
            return fail(errno());
        }
        libc::syscall(
            libc::SYS_execve,
            exec.program.as_ptr(),
            exec.argv.as_ptr(),
            exec.envp.as_ptr(),
        );
        fail(errno())
    }
}

fn errno() -> c_int {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;

    fn run(program: &CStr, args: &[&str], cwd: Option<&CStr>) -> io::Result<(String, i32)> {
        let argv = CStringArray::new(
            std::iter::once(program.to_bytes()).chain(args.iter().map(|a| a.as_bytes())),
        )
        .unwrap();
        let envp = CStringArray::new(["LW_LEAN=yes"]).unwrap();
        let (read, write) = crate::spawn::pipe().unwrap();
        let exec = Exec {
            program,
            argv: &argv,
            envp: &envp,
            cwd,
            stdout: write.as_raw_fd(),
            stderr: write.as_raw_fd(),
        };
        // SAFETY: a plain signal call on this test process.
        unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
        let pid = spawn(&exec, &IgnoredSignals::of_this_process())?;
        drop(write);
        let mut out = String::new();
        std::fs::File::from(read).read_to_string(&mut out).unwrap();
        let mut status = 0;
        // SAFETY: our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        Ok((out, status))
    }

    #[test]
    fn the_child_gets_a_clean_start() {
        let script = "cut -d' ' -f6 /proc/$$/stat; echo $$ $LW_LEAN; pwd; exec grep '^Sig[IB]' /proc/self/status";
        let (out, status) = run(c"/bin/sh", &["-c", script], Some(c"/tmp")).unwrap();
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "{out}"
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            lines[1].split(' ').next().unwrap(),
            "a session of its own: {out}"
        );
        assert!(lines[1].ends_with(" yes"), "{out}");
        assert_eq!(lines[2], "/tmp");
        assert_eq!(lines[3], "SigBlk:\t0000000000000000");
        assert_eq!(
            lines[4], "SigIgn:\t0000000000000000",
            "SIGXFSZ was ignored here"
        );
    }

    #[test]
    fn exec_errors_come_back() {
        let err = run(c"/nonexistent/lw-lean", &[], None).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        let err = run(c"/bin/sh", &[], Some(c"/nonexistent/dir")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    }
}
