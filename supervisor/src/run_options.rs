//! The arguments of `local-worker run`, and the job file it may read: what to run
//! and how, as a core [`JobSpec`], with errors that name the flag or the field.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use local_worker_core::spec::{JobSpec, MAX_BUFFER_LIMIT, SpecError};
use serde_json::{Map, Value};

pub const USAGE: &str = "\
usage: local-worker run [options] [--] <command> [args...]
       local-worker run [options] --job <job.json>

Runs one job to its end, as @helios-project/local-worker's adapter does: its whole
process tree is contained (this process adopts every orphan and reaps it), ended on
timeout or on SIGTERM/SIGINT/SIGHUP (SIGTERM, the grace period, then SIGKILL), and
left behind by nothing. stdout and stderr go straight through.

options:
  --timeout <duration>   end the job after this long (0: no limit; default none)
  --grace <duration>     between SIGTERM and SIGKILL (default 5s)
  --result <file>        write the result (WorkerResult) there as JSON
  --capture              also keep stdout and stderr for the result file
  --max-buffer <bytes>   what --capture keeps of each stream, the most recent bytes
                         (default 100M; suffixes k, M, G)
  --job <file>           the job as a JSON WorkerJob (command, args, env, cwd, timeout,
                         maxBuffer, killGracePeriod, drainTimeout, killLeftovers);
                         flags given as well override its fields
  --keep-leftovers       when the main process exits, leave what it started running
durations: a number with ms, s, m or h (500ms, 30s, 1.5m, 2h).

exit status: the job's own; 128 + n when signal n ended it; 124 when it timed out;
126 or 127 when it could not be started (not executable, not found); 125 when
local-worker failed after starting it; 2 for a bad flag or job file.";

/// What `local-worker run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub spec: JobSpec,
    pub result: Option<PathBuf>,
    pub capture: bool,
}

/// A usage error: the message names the flag or the job file's field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl From<SpecError> for UsageError {
    fn from(error: SpecError) -> Self {
        UsageError(error.message)
    }
}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Overrides from the flags, applied over the job (file) in the end.
#[derive(Default)]
struct Flags {
    timeout: Option<Option<Duration>>,
    grace: Option<Duration>,
    max_buffer: Option<usize>,
    keep_leftovers: bool,
}

/// Parses the arguments after `run`; `None`: `--help` was asked for.
pub fn parse(args: &[OsString]) -> Result<Option<RunOptions>, UsageError> {
    let mut flags = Flags::default();
    let mut result = None;
    let mut capture = false;
    let mut job_file = None;
    let mut command: Option<Vec<String>> = None;
    let mut i = 0;
    while i < args.len() {
        let arg = text(&args[i], "an argument")?;
        if arg == "--" {
            command = Some(strings(&args[i + 1..])?);
            break;
        }
        if arg == "--help" || arg == "-h" {
            return Ok(None);
        }
        if !arg.starts_with("--") || arg == "-" {
            command = Some(strings(&args[i..])?);
            break;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (arg, None),
        };
        let mut value = || -> Result<String, UsageError> {
            if let Some(value) = &inline {
                return Ok(value.clone());
            }
            i += 1;
            match args.get(i) {
                Some(value) => Ok(text(value, name)?.to_owned()),
                None => Err(UsageError(format!("{name} needs a value"))),
            }
        };
        match name {
            "--timeout" => {
                let limit = duration(name, &value()?)?;
                flags.timeout = Some((!limit.is_zero()).then_some(limit));
            }
            "--grace" => flags.grace = Some(duration(name, &value()?)?),
            "--max-buffer" => flags.max_buffer = Some(bytes(name, &value()?)?),
            "--result" => result = Some(PathBuf::from(value()?)),
            "--job" => job_file = Some(PathBuf::from(value()?)),
            "--capture" | "--keep-leftovers" if inline.is_some() => {
                return Err(UsageError(format!("{name} takes no value")));
            }
            "--capture" => capture = true,
            "--keep-leftovers" => flags.keep_leftovers = true,
            _ => return Err(UsageError(format!("unknown option {name}"))),
        }
        i += 1;
    }
    let command = command.filter(|words| !words.is_empty());
    let mut spec = match (job_file, command) {
        (Some(_), Some(_)) => {
            return Err(UsageError(
                "give the job either as --job <file> or as a command, not both".into(),
            ));
        }
        (Some(file), None) => read_job_file(&file)?,
        (None, Some(command)) => {
            let mut words = command.into_iter();
            let program = words.next().expect("not empty");
            JobSpec::new(program).args(words)
        }
        (None, None) => return Err(UsageError("no command given".into())),
    };
    if let Some(timeout) = flags.timeout {
        spec.timeout = timeout;
    }
    if let Some(grace) = flags.grace {
        spec.kill_grace = grace;
    }
    if let Some(max_buffer) = flags.max_buffer {
        spec.max_buffer = max_buffer;
    }
    if flags.keep_leftovers {
        spec.kill_leftovers = false;
    }
    spec.validate()?;
    Ok(Some(RunOptions {
        spec,
        result,
        capture,
    }))
}

fn text<'a>(arg: &'a OsString, what: &str) -> Result<&'a str, UsageError> {
    arg.to_str()
        .ok_or_else(|| UsageError(format!("{what} is not valid UTF-8: {arg:?}")))
}

fn strings(args: &[OsString]) -> Result<Vec<String>, UsageError> {
    args.iter()
        .enumerate()
        .map(|(i, a)| text(a, &format!("argument {i} of the command")).map(str::to_owned))
        .collect()
}

/// `500ms`, `30s`, `1.5m`, `2h`; `0` alone is zero.
pub fn duration(flag: &str, value: &str) -> Result<Duration, UsageError> {
    let bad = || {
        UsageError(format!(
            "{flag} must be a duration such as 500ms, 30s, 10m or 1h (got {value:?})"
        ))
    };
    if value == "0" {
        return Ok(Duration::ZERO);
    }
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(bad()),
    };
    // The adapter's own bound: Node's timers, 2^31 - 1 ms.
    if !seconds.is_finite() || seconds * 1000.0 > MAX_MS {
        return Err(UsageError(format!(
            "{flag} must be at most {} days (got {value:?})",
            (MAX_MS / 86_400_000.0).floor()
        )));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Bytes, with an optional binary suffix: `1048576`, `512k`, `100M`, `1G`.
pub fn bytes(flag: &str, value: &str) -> Result<usize, UsageError> {
    let bad = || {
        UsageError(format!(
            "{flag} must be a whole number of bytes, with k, M or G if you like (got {value:?})"
        ))
    };
    let (number, scale) = match value.char_indices().last() {
        Some((at, 'k' | 'K')) => (&value[..at], 1 << 10),
        Some((at, 'm' | 'M')) => (&value[..at], 1 << 20),
        Some((at, 'g' | 'G')) => (&value[..at], 1 << 30),
        _ => (value, 1),
    };
    let number: u64 = number.parse().map_err(|_| bad())?;
    number
        .checked_mul(scale)
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n <= MAX_BUFFER_LIMIT)
        .ok_or_else(|| {
            UsageError(format!(
                "{flag} must be at most {MAX_BUFFER_LIMIT} bytes, V8's longest string (got {value:?})"
            ))
        })
}

/// Node's timer limit, which the adapter's `timeout` shares.
const MAX_MS: f64 = 2_147_483_647.0;

/// Reads a job file: a JSON WorkerJob. Errors name the field as `execute` does
/// (`job.args[2]`), or say why the file could not be read.
pub fn read_job_file(path: &Path) -> Result<JobSpec, UsageError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("--job {}: cannot read it: {e}", path.display())))?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| UsageError(format!("--job {}: not JSON: {e}", path.display())))?;
    job_from_json(&value)
}

/// A WorkerJob given as JSON, checked field by field.
pub fn job_from_json(value: &Value) -> Result<JobSpec, UsageError> {
    let Value::Object(job) = value else {
        return Err(type_error("job", "an object", value));
    };
    let command = match job.get("command") {
        Some(Value::String(command)) if !command.is_empty() => command.clone(),
        Some(Value::String(_)) | None => {
            return Err(SpecError::type_("job.command", "must be a non-empty string").into());
        }
        Some(other) => return Err(type_error("job.command", "a non-empty string", other)),
    };
    let mut spec = JobSpec::new(command);
    if let Some(args) = present(job, "args") {
        let Value::Array(args) = args else {
            return Err(type_error("job.args", "an array of strings", args));
        };
        spec.args = args
            .iter()
            .enumerate()
            .map(|(i, arg)| match arg {
                Value::String(arg) => Ok(arg.clone()),
                other => Err(type_error(&format!("job.args[{i}]"), "a string", other)),
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(env) = present(job, "env") {
        let Value::Object(env) = env else {
            return Err(type_error("job.env", "an object of strings", env));
        };
        // JSON has no `undefined`: null is how a file removes an inherited variable.
        spec.env = env
            .iter()
            .map(|(key, value)| match value {
                Value::String(value) => Ok((key.clone(), Some(value.clone()))),
                Value::Null => Ok((key.clone(), None)),
                other => Err(type_error(
                    &format!("job.env[{key:?}]"),
                    "a string (or null, to remove it)",
                    other,
                )),
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(cwd) = present(job, "cwd") {
        let Value::String(cwd) = cwd else {
            return Err(type_error("job.cwd", "a string", cwd));
        };
        spec.cwd = Some(absolute(cwd));
    }
    if let Some(ms) = millis(job, "timeout")? {
        spec.timeout =
            (ms > 0.0).then(|| Duration::from_secs_f64(ms / 1000.0).max(Duration::from_nanos(1)));
    }
    if let Some(ms) = millis(job, "killGracePeriod")? {
        spec.kill_grace = Duration::from_secs_f64(ms / 1000.0);
    }
    if let Some(ms) = millis(job, "drainTimeout")? {
        spec.drain_bound = Duration::from_secs_f64(ms / 1000.0);
    }
    if let Some(max_buffer) = present(job, "maxBuffer") {
        spec.max_buffer = match max_buffer.as_f64() {
            Some(n) if n.fract() == 0.0 && (0.0..=MAX_BUFFER_LIMIT as f64).contains(&n) => {
                n as usize
            }
            _ => {
                return Err(SpecError::range(
                    "job.maxBuffer",
                    &format!(
                        "must be a whole number of bytes from 0 to {MAX_BUFFER_LIMIT}, V8's longest string (got {max_buffer})"
                    ),
                )
                .into());
            }
        };
    }
    if let Some(keep) = present(job, "killLeftovers") {
        let Value::Bool(kill) = keep else {
            return Err(type_error("job.killLeftovers", "a boolean", keep));
        };
        spec.kill_leftovers = *kill;
    }
    // `meta` is accepted and ignored, as by the adapter; so is any other field.
    Ok(spec)
}

/// A field that is there and not null (null counts as absent, as `undefined` would).
fn present<'a>(job: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    job.get(name).filter(|v| !v.is_null())
}

fn millis(job: &Map<String, Value>, name: &str) -> Result<Option<f64>, UsageError> {
    let Some(value) = present(job, name) else {
        return Ok(None);
    };
    let field = format!("job.{name}");
    let Some(ms) = value.as_f64() else {
        return Err(type_error(&field, "a number", value));
    };
    if !(0.0..=MAX_MS).contains(&ms) {
        return Err(SpecError::range(
            &field,
            &format!("must be a finite number of milliseconds from 0 to {MAX_MS} (got {ms})"),
        )
        .into());
    }
    Ok(Some(ms))
}

fn type_error(field: &str, what: &str, got: &Value) -> UsageError {
    let got = match got {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    SpecError::type_(field, &format!("must be {what} (got {got})")).into()
}

/// A relative `cwd` is taken from where local-worker runs, as the adapter takes it
/// from Node's.
fn absolute(cwd: &str) -> PathBuf {
    let path = PathBuf::from(cwd);
    if path.is_absolute() {
        return path;
    }
    std::env::current_dir().map_or(path.clone(), |here| here.join(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(duration("--t", "500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("--t", "1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("--t", "10m"), Ok(Duration::from_secs(600)));
        assert_eq!(duration("--t", "2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(duration("--t", "0"), Ok(Duration::ZERO));
        for bad in ["10", "ten", "5 s", "-1s", "1d", "", "s", "1.2.3s"] {
            let err = duration("--timeout", bad).unwrap_err();
            assert!(
                err.0.starts_with("--timeout must be a duration"),
                "{bad}: {err}"
            );
        }
        assert!(
            duration("--timeout", "999h")
                .unwrap_err()
                .0
                .contains("at most 24 days")
        );
    }

    #[test]
    fn byte_counts_take_binary_suffixes() {
        assert_eq!(bytes("--b", "1048576"), Ok(1 << 20));
        assert_eq!(bytes("--b", "512k"), Ok(512 << 10));
        assert_eq!(bytes("--b", "100M"), Ok(100 << 20));
        assert!(
            bytes("--max-buffer", "1G")
                .unwrap_err()
                .0
                .contains("at most")
        );
        assert!(
            bytes("--max-buffer", "1.5M")
                .unwrap_err()
                .0
                .contains("whole number")
        );
    }

    #[test]
    fn flags_and_command() {
        let o = parse(&args(&[
            "--timeout",
            "10m",
            "--grace=2s",
            "--result",
            "r.json",
            "--capture",
            "--",
            "ffmpeg",
            "-i",
            "x",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(o.spec.command, "ffmpeg");
        assert_eq!(o.spec.args, ["-i", "x"]);
        assert_eq!(o.spec.timeout, Some(Duration::from_secs(600)));
        assert_eq!(o.spec.kill_grace, Duration::from_secs(2));
        assert_eq!(o.result.as_deref(), Some(Path::new("r.json")));
        assert!(o.capture);
        // Without `--`, the first word that is no option starts the command.
        let o = parse(&args(&["--keep-leftovers", "sh", "-c", "--timeout"]))
            .unwrap()
            .unwrap();
        assert_eq!(o.spec.args, ["-c", "--timeout"]);
        assert!(!o.spec.kill_leftovers);
    }

    #[test]
    fn bad_flags_are_named() {
        let err = |words: &[&str]| parse(&args(words)).unwrap_err().0;
        assert_eq!(err(&[]), "no command given");
        assert_eq!(err(&["--"]), "no command given");
        assert_eq!(err(&["--timeout"]), "--timeout needs a value");
        assert_eq!(err(&["--bogus", "x"]), "unknown option --bogus");
        assert_eq!(err(&["--capture=yes", "x"]), "--capture takes no value");
        assert!(err(&["--job", "j.json", "--", "x"]).contains("not both"));
        assert!(err(&["--grace", "5", "x"]).starts_with("--grace must be a duration"));
        // --help is ours only before the command.
        assert!(parse(&args(&["--help"])).unwrap().is_none());
        assert_eq!(
            parse(&args(&["ffmpeg", "--help"]))
                .unwrap()
                .unwrap()
                .spec
                .args,
            ["--help"]
        );
    }

    #[test]
    fn job_files_are_checked_field_by_field() {
        let job = |text: &str| job_from_json(&serde_json::from_str(text).unwrap());
        let spec = job(r#"{"command":"env","args":["a"],"env":{"A":"1","B":null},"cwd":"/tmp","timeout":1500,"maxBuffer":10,"killGracePeriod":200,"killLeftovers":false,"meta":{"chunk":3}}"#).unwrap();
        assert_eq!(spec.args, ["a"]);
        assert_eq!(
            spec.env,
            [("A".into(), Some("1".into())), ("B".into(), None)]
        );
        assert_eq!(spec.cwd.as_deref(), Some(Path::new("/tmp")));
        assert_eq!(spec.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(spec.max_buffer, 10);
        assert_eq!(spec.kill_grace, Duration::from_millis(200));
        assert!(!spec.kill_leftovers);
        assert_eq!(job(r#"{"command":"x","timeout":0}"#).unwrap().timeout, None);
        let err = |text: &str| job(text).unwrap_err().0;
        assert_eq!(err("[]"), "job must be an object (got array)");
        assert_eq!(err("{}"), "job.command must be a non-empty string");
        assert_eq!(
            err(r#"{"command":7}"#),
            "job.command must be a non-empty string (got number)"
        );
        assert_eq!(
            err(r#"{"command":"x","args":["a",2]}"#),
            "job.args[1] must be a string (got number)"
        );
        assert_eq!(
            err(r#"{"command":"x","env":{"K":1}}"#),
            "job.env[\"K\"] must be a string (or null, to remove it) (got number)"
        );
        assert!(
            err(r#"{"command":"x","timeout":-1}"#)
                .starts_with("job.timeout must be a finite number of milliseconds")
        );
        assert!(
            err(r#"{"command":"x","maxBuffer":1.5}"#)
                .starts_with("job.maxBuffer must be a whole number")
        );
        assert_eq!(
            err(r#"{"command":"x","killLeftovers":"no"}"#),
            "job.killLeftovers must be a boolean (got string)"
        );
        // What the core checks beyond types, with the same names.
        let spec = job(r#"{"command":"x","env":{"A=B":"1"}}"#).unwrap();
        assert!(
            spec.validate()
                .unwrap_err()
                .message
                .starts_with("job.env[\"A=B\"]")
        );
    }
}
