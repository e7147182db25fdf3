//! Starting the job's leader: `posix_spawn`, a session of its own, piped output.

use std::ffi::{CStr, CString, NulError, OsStr};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::environment::Environment;
use crate::errno;
use crate::lean_spawn::{self, Exec, IgnoredSignals};
use crate::posix_spawn::{self, Attributes, CStringArray, FileActions};
use crate::protocol::Launch;
use crate::resolve::{relative_to, resolve_program};
use crate::spec::JobSpec;

/// What `execvp` runs a file with when the kernel does not recognise its format.
const SHELL: &CStr = c"/bin/sh";

/// The leader just started; its pid is also the id of its process group and session.
#[derive(Debug)]
pub struct Spawned {
    pub pid: i32,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// Why a job could not start. `message` names the command or the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnError {
    /// `ENOENT`, `EACCES`, ... as in Node's `error.code`.
    pub code: &'static str,
    pub errno: i32,
    /// What was not found or not usable: the command, or the working directory.
    pub path: String,
    pub message: String,
}

impl SpawnError {
    /// `command` could not be started, for the reason `errno` gives: an error shaped
    /// like the host's own.
    pub fn of_errno(command: &str, errno: i32) -> Self {
        let what = io::Error::from_raw_os_error(errno).to_string();
        SpawnError::new(errno, command, command, &what)
    }

    fn new(errno: i32, command: &str, path: &str, what: &str) -> Self {
        let code = errno::name(errno);
        SpawnError {
            code,
            errno,
            path: path.to_owned(),
            message: format!("spawn {command} {code}: {what}"),
        }
    }
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SpawnError {}

/// Spawns the job's leader in a session (hence a process group) of its own, with
/// its output on two new pipes: [`prepare`], then [`start`].
pub fn spawn(spec: &JobSpec) -> Result<Spawned, SpawnError> {
    let launch = prepare(spec)?;
    let os_error = |e: io::Error| {
        let errno = e.raw_os_error().unwrap_or(libc::EIO);
        SpawnError::new(errno, &spec.command, &spec.command, &e.to_string())
    };
    let (stdout, stdout_child) = pipe().map_err(os_error)?;
    let (stderr, stderr_child) = pipe().map_err(os_error)?;
    let pid = start(&launch, stdout_child.as_fd(), stderr_child.as_fd()).map_err(os_error)?;
    // The child has its copies; ours must go, or the pipes never reach EOF.
    drop((stdout_child, stderr_child));
    Ok(Spawned {
        pid,
        stdout,
        stderr,
    })
}

/// Everything about starting `spec` that can be decided before a process exists:
/// the working directory is checked, the environment built, and the program
/// resolved against the job's final `PATH` ([`resolve`]), so that the start is a
/// plain `posix_spawn` of a path (a `CLONE_VFORK` clone). Errors name the command
/// or the directory, as Node's spawn errors do.
///
/// [`resolve`]: crate::resolve
pub fn prepare(spec: &JobSpec) -> Result<Launch, SpawnError> {
    let command = spec.command.as_str();
    if let Some(cwd) = &spec.cwd {
        check_cwd(command, cwd)?;
    }
    let env = Environment::new(spec.base_env.as_deref(), &spec.env);
    let program =
        resolve_program(command, env.get("PATH"), spec.cwd.as_deref()).map_err(|errno| {
            let what = match errno {
                libc::ENOENT => format!("command not found: {command}"),
                libc::EACCES => format!("permission denied: {command} is not executable"),
                _ => format!("cannot execute {command}"),
            };
            SpawnError::new(errno, command, command, &what)
        })?;
    Ok(Launch {
        program: program.into_os_string().into_vec(),
        argv: std::iter::once(&spec.command)
            .chain(&spec.args)
            .map(|arg| arg.as_bytes().to_vec())
            .collect(),
        envp: env.into_entries(),
        cwd: spec
            .cwd
            .as_ref()
            .map(|cwd| cwd.as_os_str().as_bytes().to_vec()),
        kill_leftovers: spec.kill_leftovers,
        grace: spec.kill_grace,
    })
}

/// Starts a prepared job's leader: a new session (`POSIX_SPAWN_SETSID`: no
/// controlling terminal, so touching `/dev/tty` cannot stop it with SIGTTOU; pgid =
/// pid), every signal at its default action and an empty signal mask (Node ignores
/// SIGPIPE and SIGXFSZ, runtime threads block signals: none of that is inherited),
/// stdin on `/dev/null`, stdout and stderr on the given descriptors (which must be
/// above 2), and exactly `launch.envp`. Returns its pid.
pub fn start(launch: &Launch, stdout: BorrowedFd, stderr: BorrowedFd) -> io::Result<i32> {
    let program = Path::new(OsStr::from_bytes(&launch.program));
    let cwd = cwd_of(launch);
    match cwd {
        Some(cwd) if !posix_spawn::can_chdir() => {
            start_forked(launch, program, cwd, stdout, stderr)
        }
        _ => start_posix(launch, program, stdout, stderr),
    }
}

fn start_posix(
    launch: &Launch,
    program: &Path,
    stdout: BorrowedFd,
    stderr: BorrowedFd,
) -> io::Result<i32> {
    let invalid = |_| io::Error::from_raw_os_error(libc::EINVAL);
    let c_program = CString::new(launch.program.as_slice()).map_err(invalid)?;
    let argv = CStringArray::new(launch.argv.iter().map(Vec::as_slice)).map_err(invalid)?;
    let envp = CStringArray::new(launch.envp.iter().map(Vec::as_slice)).map_err(invalid)?;

    let mut actions = FileActions::new()?;
    actions.add_open(0, c"/dev/null", libc::O_RDONLY, 0)?;
    actions.add_dup2(stdout.as_raw_fd(), 1)?;
    actions.add_dup2(stderr.as_raw_fd(), 2)?;
    if let Some(cwd) = &launch.cwd {
        actions.add_chdir(&CString::new(cwd.as_slice()).map_err(invalid)?)?;
    }
    let attributes = leader_attributes()?;

    let first = posix_spawn::spawn(&c_program, &actions, &attributes, &argv, &envp);
    let cwd = cwd_of(launch);
    or_as_script(first, program, cwd, || {
        let sh_argv = script_argv(launch).map_err(invalid)?;
        posix_spawn::spawn(SHELL, &actions, &attributes, &sh_argv, &envp)
    })
}

/// [`start`], for a caller that is single-threaded and installs no signal handler (a
/// job's supervisor, the `run` command), which knows what it ignores: the child
/// resets only that ([`lean_spawn`]) instead of every signal, and the call returns
/// as soon as the exec is done.
///
/// [`lean_spawn`]: crate::lean_spawn
pub fn start_lean(
    launch: &Launch,
    stdout: BorrowedFd,
    stderr: BorrowedFd,
    ignored: &IgnoredSignals,
) -> io::Result<i32> {
    let invalid = |_| io::Error::from_raw_os_error(libc::EINVAL);
    let c_program = CString::new(launch.program.as_slice()).map_err(invalid)?;
    let argv = CStringArray::new(launch.argv.iter().map(Vec::as_slice)).map_err(invalid)?;
    let envp = CStringArray::new(launch.envp.iter().map(Vec::as_slice)).map_err(invalid)?;
    let cwd = launch
        .cwd
        .as_deref()
        .map(CString::new)
        .transpose()
        .map_err(invalid)?;
    let exec = Exec {
        program: &c_program,
        argv: &argv,
        envp: &envp,
        cwd: cwd.as_deref(),
        stdout: stdout.as_raw_fd(),
        stderr: stderr.as_raw_fd(),
    };
    let first = lean_spawn::spawn(&exec, ignored);
    let program = Path::new(OsStr::from_bytes(&launch.program));
    or_as_script(first, program, cwd_of(launch), || {
        let sh_argv = script_argv(launch).map_err(invalid)?;
        lean_spawn::spawn(
            &Exec {
                program: SHELL,
                argv: &sh_argv,
                ..exec
            },
            ignored,
        )
    })
}

/// The job's working directory, if it names one.
fn cwd_of(launch: &Launch) -> Option<&Path> {
    launch
        .cwd
        .as_deref()
        .map(|cwd| Path::new(OsStr::from_bytes(cwd)))
}

/// `sh program args...`: how a file without a `#!` line is run (ENOEXEC), as `execvp` does.
fn script_argv(launch: &Launch) -> Result<CStringArray, NulError> {
    CStringArray::new(
        [SHELL.to_bytes(), launch.program.as_slice()]
            .into_iter()
            .chain(launch.argv.iter().skip(1).map(Vec::as_slice)),
    )
}

/// Session of its own, default signal actions, empty signal mask.
pub(crate) fn leader_attributes() -> io::Result<Attributes> {
    let mut attributes = Attributes::new()?;
    attributes.set_sigdefault(&posix_spawn::all_signals())?;
    attributes.set_sigmask(&posix_spawn::empty_sigset())?;
    attributes.set_flags(
        libc::c_int::from(libc::POSIX_SPAWN_SETSID)
            | libc::POSIX_SPAWN_SETSIGDEF
            | libc::POSIX_SPAWN_SETSIGMASK,
    )?;
    Ok(attributes)
}

/// A pipe as (read end, write end), both close-on-exec so that no other child
/// spawned meanwhile inherits them. Both are kept above 2: a write end that were
/// fd 0 would be clobbered by the `/dev/null` open, and one that were already
/// fd 1 or 2 would keep close-on-exec through a no-op `dup2` on glibc < 2.29.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: a valid array of two descriptors for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two new descriptors that we alone own.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((above_stdio(read)?, above_stdio(write)?))
}

/// `fd`, or a close-on-exec copy of it above 2 if it is 0, 1 or 2.
pub fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: plain fcntl on a descriptor we own; the result is a new one we own.
    let moved = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if moved < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: see above; `fd` is closed when dropped here.
    Ok(unsafe { OwnedFd::from_raw_fd(moved) })
}

/// Whether the file starts with `#!`: then the kernel's ENOEXEC is about its
/// interpreter line, and running it with `/bin/sh` would ignore that line.
fn has_shebang(path: &Path) -> bool {
    let mut start = [0u8; 2];
    std::fs::File::open(path)
        .and_then(|mut file| file.read_exact(&mut start))
        .is_ok_and(|()| &start == b"#!")
}

/// The glibc-2.28-only fallback, for a job with a `cwd` where libc lacks
/// `posix_spawn_file_actions_addchdir_np`: std's `Command` with a `pre_exec`
/// (which makes it fork) doing what the spawn attributes do elsewhere, and the
/// same ENOEXEC rule ([`or_as_script`]: not every libc's `execvp` retries with
/// `/bin/sh`; musl's does not).
fn start_forked(
    launch: &Launch,
    program: &Path,
    cwd: &Path,
    stdout: BorrowedFd,
    stderr: BorrowedFd,
) -> io::Result<i32> {
    let args = launch.argv.iter().skip(1).map(|a| OsStr::from_bytes(a));
    let arg0 = OsStr::from_bytes(launch.argv.first().map_or(&[][..], Vec::as_slice));
    let first = fork_exec(program, arg0, args, launch, cwd, stdout, stderr);
    or_as_script(first, program, Some(cwd), || {
        let shell = Path::new(SHELL.to_str().expect("an ASCII path"));
        let args = std::iter::once(program.as_os_str())
            .chain(launch.argv.iter().skip(1).map(|a| OsStr::from_bytes(a)));
        fork_exec(shell, shell.as_os_str(), args, launch, cwd, stdout, stderr)
    })
}

/// As execvp (and so child_process) does: a program the kernel refuses with
/// ENOEXEC and that names no interpreter is a shell script, so `through_shell`
/// runs it as `/bin/sh <program> <args>`. With no shell to fall back on, the
/// program's own error is the story.
fn or_as_script<T>(
    first: io::Result<T>,
    program: &Path,
    cwd: Option<&Path>,
    through_shell: impl FnOnce() -> io::Result<T>,
) -> io::Result<T> {
    match first {
        Err(e)
            if e.raw_os_error() == Some(libc::ENOEXEC)
                && !has_shebang(&relative_to(program, cwd)) =>
        {
            match through_shell() {
                Err(sh) if sh.raw_os_error() == Some(libc::ENOENT) => Err(e),
                other => other,
            }
        }
        other => other,
    }
}

fn fork_exec<'a>(
    program: &Path,
    arg0: &OsStr,
    args: impl Iterator<Item = &'a OsStr>,
    launch: &Launch,
    cwd: &Path,
    stdout: BorrowedFd,
    stderr: BorrowedFd,
) -> io::Result<i32> {
    let signals = posix_spawn::signal_count();
    let mut cmd = Command::new(program);
    cmd.arg0(arg0)
        .args(args)
        .env_clear()
        .envs(launch.envp.iter().map(|entry| {
            let at = entry.iter().position(|&b| b == b'=').unwrap_or(entry.len());
            let value = entry.get(at + 1..).unwrap_or_default();
            (OsStr::from_bytes(&entry[..at]), OsStr::from_bytes(value))
        }))
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(stdout.try_clone_to_owned()?)
        .stderr(stderr.try_clone_to_owned()?);
    // SAFETY: the closure only makes async-signal-safe system calls and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            // The raw system call, because libc's sigaction refuses its internal
            // signals. An all-zero kernel sigaction is SIG_DFL, no flags, empty
            // mask, whatever the architecture's field order; 64 bytes cover it.
            let default = [0u64; 8];
            for signal in 1..=signals {
                // SIGKILL and SIGSTOP refuse: that is fine.
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    signal,
                    default.as_ptr(),
                    std::ptr::null_mut::<u8>(),
                    signals.div_ceil(8),
                );
            }
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            Ok(())
        })
    };
    let child = cmd.spawn()?;
    // Dropping a std Child neither kills nor waits: reaping is the caller's job.
    Ok(child.id() as i32)
}

fn check_cwd(command: &str, cwd: &Path) -> Result<(), SpawnError> {
    let shown = cwd.display().to_string();
    match std::fs::metadata(cwd) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(SpawnError::new(
            libc::ENOTDIR,
            command,
            &shown,
            &format!("working directory is not a directory: {shown}"),
        )),
        Err(e) => {
            let errno = e.raw_os_error().unwrap_or(libc::ENOENT);
            let what = if errno == libc::ENOENT {
                format!("working directory does not exist: {shown}")
            } else {
                format!("working directory is not usable: {shown} ({e})")
            };
            Err(SpawnError::new(errno, command, &shown, &what))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_cwd_names_the_directory() {
        let mut spec = JobSpec::new("true");
        spec.cwd = Some("/no/such/dir".into());
        let err = spawn(&spec).unwrap_err();
        assert_eq!(err.code, "ENOENT");
        assert_eq!(err.path, "/no/such/dir");
        assert!(err.message.contains("/no/such/dir"), "{}", err.message);
    }

    /// Starts `spec` as `program` in `dir` through the forked fallback.
    fn forked(spec: &JobSpec, program: &str, dir: &Path) -> io::Result<Spawned> {
        let mut spec = spec.clone();
        spec.base_env.get_or_insert_with(Vec::new);
        let env = Environment::new(spec.base_env.as_deref(), &spec.env);
        let launch = Launch {
            program: program.as_bytes().to_vec(),
            envp: env.into_entries(),
            cwd: Some(dir.as_os_str().as_bytes().to_vec()),
            ..prepare(&JobSpec::new("true")).unwrap()
        };
        let launch = Launch {
            argv: std::iter::once(&spec.command)
                .chain(&spec.args)
                .map(|a| a.as_bytes().to_vec())
                .collect(),
            ..launch
        };
        let (stdout, stdout_child) = pipe()?;
        let (stderr, stderr_child) = pipe()?;
        let pid = start_forked(
            &launch,
            Path::new(program),
            dir,
            stdout_child.as_fd(),
            stderr_child.as_fd(),
        )?;
        Ok(Spawned {
            pid,
            stdout,
            stderr,
        })
    }

    /// Runs `spawned` to its end; returns its stdout and wait status.
    fn finish(spawned: Spawned) -> (String, i32) {
        let mut out = String::new();
        std::fs::File::from(spawned.stdout)
            .read_to_string(&mut out)
            .unwrap();
        let mut status = 0;
        // SAFETY: our own child.
        assert_eq!(
            unsafe { libc::waitpid(spawned.pid, &mut status, 0) },
            spawned.pid
        );
        (out, status)
    }

    #[test]
    fn forked_fallback_gives_the_same_hygiene() {
        // SAFETY: plain libc calls on this process's and this thread's signal state.
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let mut blocked: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut blocked);
            libc::sigaddset(&mut blocked, libc::SIGUSR2);
            libc::pthread_sigmask(libc::SIG_BLOCK, &blocked, std::ptr::null_mut());
        }
        let dir = std::env::temp_dir().join(format!("lw-spawn-forked-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // The signal state is read by `exec grep` (the same process, after the shell):
        // reading the shell's own status from a child races with dash, which blocks
        // every signal around each fork.
        let script = "pwd; cut -d' ' -f6 /proc/$$/stat; echo $$; \
                      echo \"$LW_FORKED\" \"${HOME-unset}\"; exec grep '^Sig[IB]' /proc/self/status";
        let mut spec = JobSpec::new("sh").args(["-c", script]);
        spec.base_env = Some(vec![("LW_FORKED".into(), "yes".into())]);
        let spawned = forked(&spec, "/bin/sh", &dir).unwrap();
        let pid = spawned.pid;
        let (out, status) = finish(spawned);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "{out}"
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], dir.to_str().unwrap());
        assert_eq!(lines[1], pid.to_string(), "session id");
        assert_eq!(lines[2], pid.to_string());
        assert_eq!(lines[3], "yes unset");
        assert_eq!(lines[4], "SigBlk:\t0000000000000000");
        assert_eq!(lines[5], "SigIgn:\t0000000000000000");
    }

    #[test]
    fn forked_fallback_runs_a_script_without_a_shebang() {
        let dir = std::env::temp_dir().join(format!("lw-spawn-noshebang-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("script");
        std::fs::write(&script, "echo no-shebang $1\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let spec = JobSpec::new("./script").args(["arg"]);

        // Another test's fork may briefly hold a copy of the descriptor that wrote the
        // script (inherited between its fork and exec): exec then fails with ETXTBSY.
        let mut attempts = 0;
        let spawned = loop {
            match forked(&spec, "./script", &dir) {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempts < 100 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => break other.unwrap(),
            }
        };
        let (out, _) = finish(spawned);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(out, "no-shebang arg\n");
    }

    #[test]
    fn missing_command_names_the_command() {
        let err = spawn(&JobSpec::new("surely-not-a-command")).unwrap_err();
        assert_eq!(err.code, "ENOENT");
        assert!(err.message.contains("surely-not-a-command"));
    }
}
