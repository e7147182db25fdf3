//! Node-API surface of `@helios-project/local-worker`: JS values in, a Promise out.
//!
//! Everything about processes lives in the `local-worker-core` crate; this layer
//! validates the job, bridges callbacks and AbortSignal, and shapes results and
//! errors the way the TypeScript `LocalWorkerAdapter` of Helios reports them.

use napi::bindgen_prelude::*;
use napi_derive::napi;

mod abort;
mod events;
mod input;
mod js_error;
mod js_text;
mod lifecycle;
mod listener;
mod output;
mod promise;
mod supervisor;

use std::cell::RefCell;
use std::rc::Rc;

use abort::{AbortBinding, AbortFuture, Subscription};
use input::{AdapterDefaults, ParsedJob};
use output::{SettleFuture, Settled};
use promise::Deferred;

/// Runs Helios jobs as local processes. See README.md for the full semantics.
#[napi]
pub struct LocalWorkerAdapter {
    defaults: AdapterDefaults,
}

#[napi]
impl LocalWorkerAdapter {
    /// `options` sets defaults for every job of this adapter; a job may override them.
    /// Throws the TypeError/RangeError naming a malformed option, or exactly what a
    /// getter of `options` threw.
    #[napi(constructor, ts_args_type = "options?: LocalWorkerOptions")]
    pub fn new(env: Env, options: Unknown) -> Result<Self> {
        let defaults = match AdapterDefaults::parse(&env, options) {
            Ok(defaults) => defaults,
            Err(err) => {
                let value = err.into_value(&env);
                return Err(js_error::throw(&env, value));
            }
        };
        lifecycle::watch_env(&env)?;
        supervisor::configure();
        Ok(LocalWorkerAdapter { defaults })
    }

    /// Runs `job`. Never throws: bad input, spawn failures, timeouts and aborts
    /// all reject the returned Promise, with any value JS threw at us exactly as
    /// thrown.
    #[napi(
        ts_args_type = "job: WorkerJob",
        ts_return_type = "Promise<WorkerResult>"
    )]
    pub fn execute<'env>(&self, env: &'env Env, job: Unknown<'env>) -> Result<Object<'env>> {
        let (deferred, promise) = Deferred::new(env)?;
        match self.start(env, job) {
            Err(rejection) => deferred.reject(env, rejection),
            Ok((future, binding)) => {
                // Settled by whichever comes: the job's end, or a failure to await it.
                let waiting = Rc::new(RefCell::new(Some((deferred, binding))));
                let settle = Rc::clone(&waiting);
                // The future never fails (an `Err` would settle napi-rs's promise, not ours).
                let future = async move { Ok::<Settled, Error>(future.await) };
                let spawned = env.spawn_future_with_callback(future, move |env, settled| {
                    if let Some((deferred, binding)) = settle.borrow_mut().take() {
                        finish(env, deferred, binding, Ok(settled));
                    }
                    Ok(())
                });
                if let Err(err) = spawned
                    && let Some((deferred, binding)) = waiting.borrow_mut().take()
                {
                    let err = Error::new(
                        err.status,
                        format!("local-worker: the job could not be started: {}", err.reason),
                    );
                    finish(env, deferred, binding, Err(err));
                }
            }
        }
        // Nothing may escape as a synchronous throw.
        js_error::clear_pending_exception(env);
        Ok(promise)
    }
}

/// On the JS thread, once the job is over: leaves the signal's fan-out, counts the
/// job done, and settles its promise.
fn finish(env: &Env, deferred: Deferred, binding: Option<AbortBinding>, settled: Result<Settled>) {
    let abort_reason = binding.and_then(|b| b.detach(env));
    lifecycle::job_finished(env);
    deferred.settle(env, settled.and_then(|s| s.into_js(env, abort_reason)));
}

impl LocalWorkerAdapter {
    /// Validates the job and, unless it is rejected at once (with the returned
    /// value), starts it.
    fn start<'env>(
        &self,
        env: &'env Env,
        job: Unknown<'env>,
    ) -> std::result::Result<(SettleFuture, Option<AbortBinding>), Unknown<'env>> {
        let ParsedJob {
            spec,
            listeners,
            signal,
        } = input::parse_job(env, job, &self.defaults).map_err(|e| e.into_value(env))?;
        let (aborted, binding): (AbortFuture, _) =
            match abort::subscribe(env, signal).map_err(|e| e.into_value(env))? {
                Subscription::None => (Box::pin(std::future::pending()), None),
                Subscription::AlreadyAborted(reason) => {
                    return Err(output::abort_error(env, reason));
                }
                Subscription::Armed { aborted, binding } => (aborted, Some(binding)),
            };
        lifecycle::job_started(env);
        // The job is handed to its supervisor now, from this thread, when a fork server
        // runs: its start does not wait for a runtime thread (sockets only, no waiting).
        let launching = local_worker_core::job::launch_now(&spec);
        Ok((
            Settled::run(
                launching,
                spec,
                lifecycle::owner_of(env),
                listeners,
                aborted,
            ),
            binding,
        ))
    }
}
