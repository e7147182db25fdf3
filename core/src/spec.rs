//! What a job is: the program, its arguments and environment, and its limits.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

use crate::capture::{CaptureMode, Encoding};

/// Grace period between SIGTERM and SIGKILL when nothing else is asked.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(5);
/// How long pipes are drained after the job's processes are gone: bytes still held
/// by a process outside the group (a `setsid` daemon) are not waited for longer.
pub const DEFAULT_DRAIN_BOUND: Duration = Duration::from_millis(200);
/// Bytes kept per stream when nothing else is asked (execa's default).
pub const DEFAULT_MAX_BUFFER: usize = 100 * 1024 * 1024;
/// V8's longest string is 2^29 - 24 UTF-16 units. A UTF-8 byte count never
/// undercounts characters, so a buffer of at most this many bytes always fits.
pub const MAX_BUFFER_LIMIT: usize = (1 << 29) - 24;

#[derive(Debug, Clone)]
pub struct JobSpec {
    pub command: String,
    pub args: Vec<String>,
    /// The environment the job starts from. `None`: this process's environment,
    /// read at spawn time — only safe when no other thread can be writing `environ`
    /// (so the Node binding is to pass a snapshot taken on the JS thread).
    /// Entries are checked like `env` (`job.baseEnv[...]` in errors).
    pub base_env: Option<Vec<(OsString, OsString)>>,
    /// Laid over `base_env` in order: `Some` sets a variable, `None` removes it
    /// (JS `env: { SECRET: undefined }` unsets an inherited `SECRET`).
    pub env: Vec<(String, Option<String>)>,
    pub cwd: Option<PathBuf>,
    /// `None`: no limit.
    pub timeout: Option<Duration>,
    pub kill_grace: Duration,
    pub drain_bound: Duration,
    /// Most recent bytes kept per stream; older ones are dropped and counted.
    pub max_buffer: usize,
    /// Terminate what the leader left in its group when it exits (default true).
    pub kill_leftovers: bool,
    /// Output as text (decoded UTF-8, the default) or as bytes.
    pub encoding: Encoding,
}

impl JobSpec {
    pub fn new(command: impl Into<String>) -> Self {
        JobSpec {
            command: command.into(),
            args: Vec::new(),
            base_env: None,
            env: Vec::new(),
            cwd: None,
            timeout: None,
            kill_grace: DEFAULT_KILL_GRACE,
            drain_bound: DEFAULT_DRAIN_BOUND,
            max_buffer: DEFAULT_MAX_BUFFER,
            kill_leftovers: true,
            encoding: Encoding::Utf8,
        }
    }

    /// How each output stream is captured.
    pub fn capture_mode(&self) -> CaptureMode {
        CaptureMode {
            max_buffer: self.max_buffer,
            encoding: self.encoding,
        }
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// Checks what the type system cannot: strings the OS would truncate or
    /// misread, and limits out of range. Field names are the JS ones.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.command.is_empty() {
            return Err(SpecError::value(
                "job.command",
                "must be a non-empty string",
            ));
        }
        no_nul("job.command", &self.command)?;
        if let Some(i) = self.args.iter().position(has_nul) {
            return Err(SpecError::value(&format!("job.args[{i}]"), NUL_PROBLEM));
        }
        for (key, value) in &self.env {
            env_entry("job.env", key.as_ref(), value.as_ref().map(OsStr::new))?;
        }
        for (key, value) in self.base_env.iter().flatten() {
            env_entry("job.baseEnv", key, Some(value))?;
        }
        if let Some(cwd) = &self.cwd {
            if cwd.as_os_str().is_empty() {
                return Err(SpecError::value("job.cwd", "must be a non-empty string"));
            }
            no_nul("job.cwd", cwd)?;
        }
        if self.max_buffer > MAX_BUFFER_LIMIT {
            return Err(SpecError::range(
                "job.maxBuffer",
                &format!("must be at most {MAX_BUFFER_LIMIT} bytes (V8's longest string)"),
            ));
        }
        Ok(())
    }
}

/// A variable the OS can hold: `KEY=VALUE` with a non-empty key and no NUL byte.
/// (Checked for every inherited variable of every job: the field's name is only
/// formatted for an error.)
fn env_entry(map: &str, key: &OsStr, value: Option<&OsStr>) -> Result<(), SpecError> {
    let field = || format!("{map}[{:?}]", key.to_string_lossy());
    if key.is_empty() {
        return Err(SpecError::value(map, "keys must be non-empty"));
    }
    if key.as_bytes().contains(&b'=') {
        return Err(SpecError::value(&field(), "key must not contain '='"));
    }
    if has_nul(key) || value.is_some_and(has_nul) {
        return Err(SpecError::value(&field(), NUL_PROBLEM));
    }
    Ok(())
}

const NUL_PROBLEM: &str = "must not contain a NUL byte";

fn has_nul(value: impl AsRef<OsStr>) -> bool {
    value.as_ref().as_bytes().contains(&0)
}

fn no_nul(field: &str, value: impl AsRef<OsStr>) -> Result<(), SpecError> {
    if has_nul(value) {
        Err(SpecError::value(field, NUL_PROBLEM))
    } else {
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecErrorKind {
    /// Wrong type (JS `TypeError`, Node's `ERR_INVALID_ARG_TYPE`).
    Type,
    /// Right type, unusable value (JS `TypeError`, `ERR_INVALID_ARG_VALUE`).
    Value,
    /// Number out of range (JS `RangeError`, `ERR_OUT_OF_RANGE`).
    Range,
}

/// A malformed job. `field` is the JS path of the culprit, e.g. `job.args[2]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub kind: SpecErrorKind,
    pub field: String,
    pub message: String,
}

impl SpecError {
    pub fn type_(field: &str, problem: &str) -> Self {
        Self::new(SpecErrorKind::Type, field, problem)
    }

    pub fn value(field: &str, problem: &str) -> Self {
        Self::new(SpecErrorKind::Value, field, problem)
    }

    pub fn range(field: &str, problem: &str) -> Self {
        Self::new(SpecErrorKind::Range, field, problem)
    }

    /// `problem` completes a sentence that starts with the field's name.
    pub fn new(kind: SpecErrorKind, field: &str, problem: &str) -> Self {
        SpecError {
            kind,
            field: field.to_owned(),
            message: format!("{field} {problem}"),
        }
    }
}

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SpecError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_job() {
        assert!(
            JobSpec::new("echo")
                .args(["a", "", "b c"])
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn names_the_field_with_a_nul_byte() {
        let err = JobSpec::new("echo")
            .args(["ok", "bad\0"])
            .validate()
            .unwrap_err();
        assert_eq!(err.field, "job.args[1]");
        assert_eq!(err.kind, SpecErrorKind::Value);
        assert!(err.message.contains("NUL"), "{}", err.message);
    }

    #[test]
    fn rejects_empty_command_and_equals_in_env_key() {
        assert_eq!(
            JobSpec::new("").validate().unwrap_err().field,
            "job.command"
        );
        let mut spec = JobSpec::new("env");
        spec.env.push(("A=B".into(), Some("x".into())));
        let err = spec.validate().unwrap_err();
        assert!(err.field.starts_with("job.env"), "{}", err.field);
        assert!(err.message.contains("'='"));
        // A removal is checked too: it names a key all the same.
        let mut spec = JobSpec::new("env");
        spec.env.push(("A=B".into(), None));
        assert!(spec.validate().unwrap_err().message.contains("'='"));
    }

    #[test]
    fn base_env_is_checked_like_env() {
        let mut spec = JobSpec::new("env");
        spec.env.push(("UNSET_ME".into(), None));
        spec.base_env = Some(vec![("OK".into(), "fine".into())]);
        assert!(spec.validate().is_ok());
        spec.base_env = Some(vec![("K".into(), "nul\0".into())]);
        let err = spec.validate().unwrap_err();
        assert_eq!(err.field, "job.baseEnv[\"K\"]");
        assert!(err.message.contains("NUL"), "{}", err.message);
        spec.base_env = Some(vec![("A=B".into(), "x".into())]);
        assert!(spec.validate().unwrap_err().message.contains("'='"));
        spec.base_env = Some(vec![("".into(), "x".into())]);
        assert_eq!(spec.validate().unwrap_err().field, "job.baseEnv");
    }

    #[test]
    fn max_buffer_is_capped_at_v8_string_limit() {
        let mut spec = JobSpec::new("true");
        spec.max_buffer = MAX_BUFFER_LIMIT + 1;
        let err = spec.validate().unwrap_err();
        assert_eq!(
            (err.kind, err.field.as_str()),
            (SpecErrorKind::Range, "job.maxBuffer")
        );
    }
}
