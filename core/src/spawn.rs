//! Starting the job's leader: `posix_spawn`, a new process group, piped output.

use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::errno;
use crate::resolve::resolve_program;
use crate::spec::JobSpec;

/// The leader just started; its pid is also the id of its process group.
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

/// Spawns the job's leader in a process group of its own.
///
/// Uses only what std maps onto `posix_spawn` (`process_group` becomes
/// `POSIX_SPAWN_SETPGROUP`, `current_dir` `posix_spawn_file_actions_addchdir_np`):
/// no `pre_exec`, no uid/gid, and an already-resolved program path.
pub fn spawn(spec: &JobSpec) -> Result<Spawned, SpawnError> {
    let command = spec.command.as_str();
    if let Some(cwd) = &spec.cwd {
        check_cwd(command, cwd)?;
    }
    let path_var = spec
        .env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| std::ffi::OsString::from(v))
        .or_else(|| std::env::var_os("PATH"));
    let program =
        resolve_program(command, path_var.as_deref(), spec.cwd.as_deref()).map_err(|errno| {
            let what = match errno {
                libc::ENOENT => format!("command not found: {command}"),
                libc::EACCES => format!("permission denied: {command} is not executable"),
                _ => format!("cannot execute {command}"),
            };
            SpawnError::new(errno, command, command, &what)
        })?;

    let mut cmd = Command::new(&program);
    cmd.arg0(command)
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    let mut child = cmd.spawn().map_err(|e| {
        let errno = e.raw_os_error().unwrap_or(libc::EIO);
        SpawnError::new(errno, command, command, &e.to_string())
    })?;
    let pid = child.id() as i32;
    // Dropping a std Child neither kills nor waits: reaping is `reap::Leader`'s job.
    let stdout = child.stdout.take().expect("stdout was piped").into();
    let stderr = child.stderr.take().expect("stderr was piped").into();
    Ok(Spawned {
        pid,
        stdout,
        stderr,
    })
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

    #[test]
    fn missing_command_names_the_command() {
        let err = spawn(&JobSpec::new("surely-not-a-command")).unwrap_err();
        assert_eq!(err.code, "ENOENT");
        assert!(err.message.contains("surely-not-a-command"));
    }
}
