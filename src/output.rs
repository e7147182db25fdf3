//! How a job settles in JS: the `WorkerResult`, or an Error carrying what is known.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use local_worker_core::job::{Launching, Listeners, run_launched};
use local_worker_core::registry::Owner;
use local_worker_core::{CapturedOutput, Ending, JobReport, JobSpec, SpawnError};
use napi::bindgen_prelude::*;

use crate::abort::AbortFuture;
use crate::js_error::{self, ErrorClass};
use crate::js_text::OutputValue;
use crate::listener::{CallbackError, JsOutputListener};
use crate::promise::Outcome;

pub type SettleFuture = Pin<Box<dyn Future<Output = Settled> + Send>>;

/// A job's end, still free of JS values so that it can cross threads (what a
/// callback threw is held on the JS heap, untouched).
pub enum Settled {
    SpawnFailed {
        error: SpawnError,
        args: Vec<String>,
    },
    Finished {
        report: JobReport<CallbackError>,
        command: String,
        timeout: Option<Duration>,
    },
}

impl Settled {
    /// The job's life, its start perhaps begun already on the JS thread
    /// ([`local_worker_core::job::launch_now`]).
    pub fn run(
        launching: std::result::Result<Launching, SpawnError>,
        spec: JobSpec,
        owner: Owner,
        listeners: Listeners<JsOutputListener>,
        aborted: AbortFuture,
    ) -> SettleFuture {
        Box::pin(async move {
            let command = spec.command.clone();
            let timeout = spec.timeout;
            let args = spec.args.clone();
            let report = match launching {
                Ok(launching) => run_launched(launching, spec, owner, listeners, aborted).await,
                Err(error) => Err(error),
            };
            match report {
                Ok(report) => Settled::Finished {
                    report,
                    command,
                    timeout,
                },
                Err(error) => Settled::SpawnFailed { error, args },
            }
        })
    }

    /// The result object to resolve with, or the error to reject with; `Err` if
    /// either could not be built.
    pub fn into_js<'env>(
        self,
        env: &'env Env,
        abort_reason: Option<Unknown>,
    ) -> Result<Outcome<'env>> {
        match self {
            Settled::SpawnFailed { error, args } => Ok(Outcome::Reject(
                spawn_error(env, &error, &args)?.to_unknown(),
            )),
            Settled::Finished {
                report,
                command,
                timeout,
            } => {
                let signal = report.signal_name();
                let JobReport {
                    pid,
                    status,
                    usage,
                    stdout,
                    stderr,
                    duration,
                    ending,
                } = report;
                let fields = OutcomeFields {
                    exit_code: status.exit_code(),
                    signal,
                    pid,
                    duration,
                    usage,
                    timed_out: matches!(ending, Ending::TimedOut),
                    aborted: matches!(ending, Ending::Aborted),
                };
                // Only an exit by itself resolves; every other ending rejects.
                let resolves = matches!(ending, Ending::Exited);
                let mut target = match ending {
                    Ending::Exited => Object::new(env)?,
                    Ending::TimedOut => {
                        let ms = timeout.unwrap_or_default().as_secs_f64() * 1000.0;
                        let message = format!("Command \"{command}\" timed out after {ms}ms");
                        js_error::create(env, ErrorClass::Error, "ETIMEDOUT", &message)?
                    }
                    Ending::Aborted => abort_error_object(env, abort_reason)?,
                    Ending::SupervisorLost { supervisor } => {
                        let message = format!(
                            "the supervisor of \"{command}\" (pid {supervisor}) died before the \
                             job ended: its main process group was killed, other processes of \
                             the job may still run"
                        );
                        js_error::create(
                            env,
                            ErrorClass::Error,
                            "ERR_LOCAL_WORKER_SUPERVISOR_LOST",
                            &message,
                        )?
                    }
                    Ending::ListenerFailed(CallbackError { callback, thrown }) => {
                        let thrown = thrown.map(|held| held.take(env)).transpose()?;
                        let message = match thrown {
                            Some(thrown) => {
                                format!(
                                    "{callback} callback threw: {}",
                                    describe_thrown(env, thrown)
                                )
                            }
                            None => format!(
                                "{callback} callback threw (what it threw could not be kept)"
                            ),
                        };
                        let mut object = js_error::create(
                            env,
                            ErrorClass::Error,
                            "ERR_CALLBACK_FAILED",
                            &message,
                        )?;
                        if let Some(thrown) = thrown {
                            object.set_named_property("cause", thrown)?;
                        }
                        object
                    }
                };
                fields.write(env, &mut target, stdout, stderr)?;
                Ok(if resolves {
                    Outcome::Resolve(target)
                } else {
                    Outcome::Reject(target.to_unknown())
                })
            }
        }
    }
}

struct OutcomeFields {
    exit_code: i32,
    signal: Option<&'static str>,
    pid: u32,
    duration: Duration,
    usage: local_worker_core::ResourceUsage,
    timed_out: bool,
    aborted: bool,
}

impl OutcomeFields {
    fn write(
        &self,
        env: &Env,
        target: &mut Object,
        stdout: CapturedOutput,
        stderr: CapturedOutput,
    ) -> Result<()> {
        target.set_named_property("exitCode", self.exit_code)?;
        target.set_named_property("signal", self.signal)?;
        target.set_named_property("stdoutDroppedBytes", stdout.dropped as f64)?;
        target.set_named_property("stderrDroppedBytes", stderr.dropped as f64)?;
        target.set_named_property("stdout", OutputValue(stdout))?;
        target.set_named_property("stderr", OutputValue(stderr))?;
        target.set_named_property("durationMs", self.duration.as_secs_f64() * 1000.0)?;
        target.set_named_property("pid", self.pid)?;
        target.set_named_property("timedOut", self.timed_out)?;
        target.set_named_property("aborted", self.aborted)?;
        let mut usage = Object::new(env)?;
        usage.set_named_property("maxRssKb", self.usage.max_rss_kb as f64)?;
        usage.set_named_property("userCpuMs", self.usage.user_cpu.as_secs_f64() * 1000.0)?;
        usage.set_named_property("systemCpuMs", self.usage.system_cpu.as_secs_f64() * 1000.0)?;
        target.set_named_property("resourceUsage", usage)?;
        Ok(())
    }
}

/// `Error: spawn <command> ENOENT: ...` shaped like Node's own spawn errors.
fn spawn_error<'env>(env: &'env Env, error: &SpawnError, args: &[String]) -> Result<Object<'env>> {
    let mut object = js_error::create(env, ErrorClass::Error, error.code, &error.message)?;
    object.set_named_property("errno", -error.errno)?;
    object.set_named_property("syscall", "spawn")?;
    object.set_named_property("path", error.path.as_str())?;
    object.set_named_property("spawnargs", args.to_vec())?;
    Ok(object)
}

/// `AbortError: Job was aborted` with `code: 'ABORT_ERR'` and the signal's reason,
/// untouched whatever it is, as `cause` (none for an `undefined` reason).
pub fn abort_error_object<'env>(env: &'env Env, reason: Option<Unknown>) -> Result<Object<'env>> {
    let mut object = js_error::create(env, ErrorClass::Error, "ABORT_ERR", "Job was aborted")?;
    object.set_named_property("name", "AbortError")?;
    // `typeof` only: it never runs JS, for a revoked Proxy neither.
    if let Some(reason) = reason.filter(|r| r.get_type().ok() != Some(ValueType::Undefined)) {
        object.set_named_property("cause", reason)?;
    }
    Ok(object)
}

/// The AbortError of a signal aborted before the job started (a plain Error saying
/// so if it cannot be built).
pub fn abort_error<'env>(env: &'env Env, reason: Unknown) -> Unknown<'env> {
    match abort_error_object(env, Some(reason)) {
        Ok(error) => error.to_unknown(),
        Err(err) => {
            let thrown = js_error::take_thrown_value(env);
            js_error::unbuilt(env, &err, thrown)
        }
    }
}

/// For the wrapping error's message: a thrown string itself, an object's `message`
/// if it is a string, else "a non-Error value" — as the JS implementation says it.
/// The thrown value is never converted (`String(symbol)` throws); a `message` getter
/// or proxy trap that throws counts as no message, its exception cleared.
fn describe_thrown(env: &Env, thrown: Unknown) -> String {
    let message = match thrown.get_type() {
        Ok(ValueType::String) => Some(thrown),
        // A failure is dropped, whatever was thrown: it is not looked at.
        Ok(ValueType::Object) => js_error::get(env, thrown.raw(), "message").ok(),
        _ => None,
    };
    js_error::clear_pending_exception(env);
    message
        .filter(|m| m.get_type().ok() == Some(ValueType::String))
        // SAFETY: checked to be a string of the current env.
        .and_then(|m| unsafe { String::from_napi_value(env.raw(), m.raw()) }.ok())
        .unwrap_or_else(|| "a non-Error value".to_owned())
}
