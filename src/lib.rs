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

use abort::{AbortBinding, AbortFuture, Subscription};
use input::{AdapterDefaults, ParsedJob};
use output::{SettleFuture, Settled};

/// Runs Helios jobs as local processes. See README.md for the full semantics.
#[napi]
pub struct LocalWorkerAdapter {
    defaults: AdapterDefaults,
}

#[napi]
impl LocalWorkerAdapter {
    /// `options` sets defaults for every job of this adapter; a job may override them.
    #[napi(constructor, ts_args_type = "options?: LocalWorkerOptions")]
    pub fn new(env: Env, options: Unknown) -> Result<Self> {
        let defaults = AdapterDefaults::parse(&env, options).map_err(|e| e.into_napi(&env))?;
        lifecycle::watch_env(&env)?;
        Ok(LocalWorkerAdapter { defaults })
    }

    /// Runs `job`. Never throws: bad input, spawn failures, timeouts and aborts
    /// all reject the returned Promise.
    #[napi(
        ts_args_type = "job: WorkerJob",
        ts_return_type = "Promise<WorkerResult>"
    )]
    pub fn execute<'env>(
        &self,
        env: &'env Env,
        job: Unknown<'env>,
    ) -> Result<PromiseRaw<'env, Object<'env>>> {
        let mut binding = None;
        let future = self
            .start(env, job, &mut binding)
            .unwrap_or_else(Settled::rejected);
        env.spawn_future_with_callback(future, move |env, settled| {
            let abort_reason = binding.and_then(|b: AbortBinding| b.detach(env));
            if settled.ran() {
                lifecycle::job_finished(env);
            }
            settled.into_js(env, abort_reason)
        })
    }
}

impl LocalWorkerAdapter {
    /// Validates the job and, unless it is rejected at once, starts it.
    fn start(
        &self,
        env: &Env,
        job: Unknown,
        binding: &mut Option<AbortBinding>,
    ) -> std::result::Result<SettleFuture, Error> {
        let ParsedJob {
            spec,
            listeners,
            signal,
        } = input::parse_job(env, job, &self.defaults).map_err(|e| e.into_napi(env))?;
        let aborted: AbortFuture =
            match abort::subscribe(env, signal).map_err(|e| e.into_napi(env))? {
                Subscription::None => Box::pin(std::future::pending()),
                Subscription::AlreadyAborted(error) => return Err(error),
                Subscription::Armed {
                    aborted,
                    binding: armed,
                } => {
                    *binding = Some(armed);
                    aborted
                }
            };
        lifecycle::job_started(env);
        Ok(Settled::run(
            spec,
            lifecycle::owner_of(env),
            listeners,
            aborted,
        ))
    }
}
