//! Adding and removing listeners on JS event sources (an `EventTarget` such as an
//! `AbortSignal`, or an `EventEmitter` such as `process`).

use napi::bindgen_prelude::*;

use crate::js_error::{self, Failure};

/// `target[method](event, listener)`, e.g. `signal.addEventListener('abort', fn)`
/// or `process.off('SIGTERM', fn)`; on failure, exactly what it threw.
pub fn call<'env>(
    env: &'env Env,
    target: Object,
    method: &str,
    event: &str,
    listener: Unknown,
) -> std::result::Result<(), Failure<'env>> {
    let event = env
        .create_string(event)
        .map_err(|e| Failure::after(env, e))?;
    js_error::call_method(env, &target, method, &[event.raw(), listener.raw()]).map(|_| ())
}
