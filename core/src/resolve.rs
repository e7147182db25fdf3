//! Finding the program to run, the way `execvp` would, but before spawning.
//!
//! Resolving here rather than in the child keeps spawning on `posix_spawn`: Rust's
//! std falls back to `fork` when a bare program name must be looked up in a `PATH`
//! that the job's environment changes. It also lets us tell "not found" (ENOENT)
//! from "found but not executable" (EACCES) precisely.

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Used when neither the job nor the parent has a `PATH` (glibc's `execvp` default).
const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// The file to execute for `command`, or the errno explaining why there is none.
///
/// A command containing `/` is taken as a path (relative ones from `cwd`); a bare
/// name is searched in `path_var` (relative entries from `cwd`). Either way the
/// path returned is the one the child, already in `cwd`, must execute.
pub fn resolve_program(
    command: &str,
    path_var: Option<&OsStr>,
    cwd: Option<&Path>,
) -> Result<PathBuf, i32> {
    if command.contains('/') {
        let candidate = relative_to(Path::new(command), cwd);
        return match executable(&candidate) {
            Ok(()) => Ok(PathBuf::from(command)),
            Err(errno) => Err(errno),
        };
    }
    let path_var = path_var.unwrap_or(OsStr::new(DEFAULT_PATH));
    let mut denied = false;
    for dir in path_var.as_bytes().split(|&b| b == b':') {
        // An empty entry means the current directory, as for execvp.
        let dir = if dir.is_empty() {
            Path::new(".")
        } else {
            Path::new(OsStr::from_bytes(dir))
        };
        let candidate = dir.join(command);
        match executable(&relative_to(&candidate, cwd)) {
            Ok(()) => return Ok(candidate),
            Err(libc::EACCES) => denied = true,
            Err(_) => {}
        }
    }
    Err(if denied { libc::EACCES } else { libc::ENOENT })
}

/// `path` as this process sees it, when the child will see it from `cwd`.
pub fn relative_to(path: &Path, cwd: Option<&Path>) -> PathBuf {
    match cwd {
        Some(cwd) if path.is_relative() => cwd.join(path),
        _ => path.to_path_buf(),
    }
}

/// `Ok` for a regular file we may execute; otherwise the errno `execve` would give.
fn executable(path: &Path) -> Result<(), i32> {
    let meta = std::fs::metadata(path).map_err(|e| e.raw_os_error().unwrap_or(libc::ENOENT))?;
    if meta.is_dir() {
        return Err(libc::EACCES);
    }
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| libc::EINVAL)?;
    // SAFETY: c_path is a valid NUL-terminated string for the duration of the call.
    if unsafe { libc::access(c_path.as_ptr(), libc::X_OK) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EACCES))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn finds_programs_on_the_given_path() {
        let found = resolve_program("sh", Some(OsStr::new("/nonexistent:/bin")), None).unwrap();
        assert_eq!(found, PathBuf::from("/bin/sh"));
    }

    #[test]
    fn missing_program_is_enoent() {
        assert_eq!(
            resolve_program("no-such-program-xyz", None, None),
            Err(libc::ENOENT)
        );
        assert_eq!(
            resolve_program("/no/such/file", None, None),
            Err(libc::ENOENT)
        );
    }

    #[test]
    fn non_executable_file_is_eacces() {
        let dir = std::env::temp_dir().join(format!("lw-resolve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("plain.txt");
        std::fs::write(&file, "echo hi\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let as_path = resolve_program(file.to_str().unwrap(), None, None);
        let on_path = resolve_program("plain.txt", Some(dir.as_os_str()), None);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(as_path, Err(libc::EACCES));
        assert_eq!(on_path, Err(libc::EACCES));
    }

    #[test]
    fn relative_path_entries_are_taken_from_cwd() {
        // Returned as the child sees it: it runs in cwd already.
        assert_eq!(
            resolve_program("sh", Some(OsStr::new("bin")), Some(Path::new("/"))),
            Ok(PathBuf::from("bin/sh"))
        );
    }

    #[test]
    fn relative_command_is_taken_from_cwd() {
        assert_eq!(
            resolve_program("./sh", None, Some(Path::new("/bin"))),
            Ok(PathBuf::from("./sh"))
        );
    }
}
