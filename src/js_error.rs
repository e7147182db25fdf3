//! Building JS error objects (`Error`, `TypeError`, `RangeError`) with a `code`.

use std::ptr;

use napi::bindgen_prelude::*;
use napi::sys;

#[derive(Clone, Copy)]
pub enum ErrorClass {
    Error,
    TypeError,
    RangeError,
}

/// `new <class>(message)` with `error.code = code`.
pub fn create<'env>(
    env: &'env Env,
    class: ErrorClass,
    code: &str,
    message: &str,
) -> Result<Object<'env>> {
    let code = env.create_string(code)?;
    let message = env.create_string(message)?;
    let create = match class {
        ErrorClass::Error => sys::napi_create_error,
        ErrorClass::TypeError => sys::napi_create_type_error,
        ErrorClass::RangeError => sys::napi_create_range_error,
    };
    let mut error = ptr::null_mut();
    // SAFETY: valid env and string handles; `error` receives the new object.
    check_status!(unsafe { create(env.raw(), code.raw(), message.raw(), &mut error) })?;
    Ok(Object::from_raw(env.raw(), error))
}

/// A napi `Error` that rejects (or throws) with exactly this JS object.
pub fn into_rejection(error: Object) -> Error {
    Error::from(error.to_unknown())
}

/// Takes the exception a failed Node-API call left pending, so that it can reject
/// a Promise instead of being thrown synchronously.
pub fn take_pending_exception(env: &Env) -> Option<Error> {
    take_thrown_value(env).map(Error::from)
}

/// Takes (and clears) the pending exception exactly as thrown, primitives included.
pub fn take_thrown_value(env: &Env) -> Option<Unknown<'_>> {
    let mut pending = false;
    let mut exception = ptr::null_mut();
    // SAFETY: plain Node-API calls on the current env.
    unsafe {
        sys::napi_is_exception_pending(env.raw(), &mut pending);
        if !pending {
            return None;
        }
        sys::napi_get_and_clear_last_exception(env.raw(), &mut exception);
        Some(Unknown::from_raw_unchecked(env.raw(), exception))
    }
}
