//! The Promise `execute` returns, settled by us with any JS value.
//!
//! napi-rs settles the promises of its futures with a `napi::Error`, whose
//! conversion from a JS value coerces it to a string and reads its `cause` (both
//! throw for a Symbol or a revoked Proxy, leaving an exception pending that makes
//! the settlement itself fail: the promise stayed pending forever) and cannot hold a
//! primitive. So `execute` makes its own promise and settles it here with raw
//! Node-API calls: resolved with the result object, or rejected with exactly the
//! value to reject with. Nothing is left pending: an exception still pending at
//! settlement is cleared first, and a failure to build the outcome rejects with a
//! plain `Error` that says so.

use std::ptr;

use napi::bindgen_prelude::*;
use napi::sys;

use crate::js_error::{self, api_error, unbuilt};

/// How a job's promise settles.
pub enum Outcome<'env> {
    Resolve(Object<'env>),
    Reject(Unknown<'env>),
}

/// The resolving functions of a promise of ours; settling consumes it.
pub struct Deferred(sys::napi_deferred);

impl Deferred {
    /// A new promise and its `Deferred`.
    pub fn new(env: &Env) -> Result<(Deferred, Object<'_>)> {
        let mut deferred = ptr::null_mut();
        let mut promise = ptr::null_mut();
        // SAFETY: plain Node-API call on the current env.
        check_status!(unsafe { sys::napi_create_promise(env.raw(), &mut deferred, &mut promise) })?;
        Ok((Deferred(deferred), Object::from_raw(env.raw(), promise)))
    }

    pub fn reject(self, env: &Env, value: Unknown) {
        self.settle(env, Ok(Outcome::Reject(value)));
    }

    /// Settles the promise with `outcome`, or, if building it failed, rejects with a
    /// plain `Error` saying what failed. Leaves no exception pending.
    pub fn settle(self, env: &Env, outcome: Result<Outcome>) {
        // An exception left by a failed step is not ours to leave behind (Node would
        // report it as an uncaught N-API callback exception), and while it is pending
        // Node-API refuses to settle a promise.
        let pending = js_error::take_thrown_value(env);
        let (resolve, value) = match outcome {
            Ok(Outcome::Resolve(result)) => (true, result.raw()),
            Ok(Outcome::Reject(value)) => (false, value.raw()),
            Err(err) => (false, unbuilt(env, &err, pending).raw()),
        };
        let status = self.conclude(env, resolve, value);
        // Refused before anything happened (the deferred is still ours): a last try.
        if status == sys::Status::napi_pending_exception || status == sys::Status::napi_invalid_arg
        {
            js_error::clear_pending_exception(env);
            let error = api_error(
                env,
                &Error::new(
                    Status::from(status),
                    "local-worker: the job's promise could not be settled with its outcome",
                ),
                None,
            );
            self.conclude(env, false, error.raw());
        }
        js_error::clear_pending_exception(env);
    }

    fn conclude(&self, env: &Env, resolve: bool, value: sys::napi_value) -> sys::napi_status {
        // SAFETY: a deferred of this env, not settled yet (Node-API frees it only
        // once it got as far as settling).
        unsafe {
            if resolve {
                sys::napi_resolve_deferred(env.raw(), self.0, value)
            } else {
                sys::napi_reject_deferred(env.raw(), self.0, value)
            }
        }
    }
}
