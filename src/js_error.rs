//! JS errors and thrown values: building error objects (`Error`, `TypeError`,
//! `RangeError`) with a `code`, and carrying what JS threw exactly as thrown.
//!
//! JS may throw anything: a Symbol, `undefined`, a number, a revoked Proxy, an
//! object whose getters throw. Such a value is never converted or inspected here:
//! napi-rs's `Error::from(Unknown)` does both (it coerces the value to a string,
//! which throws for a Symbol or a revoked Proxy and leaves a new exception pending,
//! and it cannot reference a primitive at all), so thrown values travel as JS
//! values: [`Failure::Thrown`] on the JS thread, [`Held`] across threads, until the
//! promise is settled with them ([`crate::promise`]).

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

/// A JS operation that failed.
pub enum Failure<'env> {
    /// JS code (a getter, a proxy trap, a method) threw this value, exactly as thrown.
    Thrown(Unknown<'env>),
    /// Node-API failed without a JS exception (e.g. the environment is going away).
    Api(Error),
}

impl<'env> Failure<'env> {
    /// After a Node-API call failed: the exception it left pending (now cleared), if
    /// any, else the call's own error.
    ///
    /// Only for calls that leave the exception pending (napi-rs's property and
    /// element access, raw `sys` calls); napi-rs's `Function::call`/`apply` clear it
    /// and convert it themselves, so [`call`] is used instead of them.
    pub fn after(env: &'env Env, err: Error) -> Self {
        match take_thrown_value(env) {
            Some(thrown) => Failure::Thrown(thrown),
            None => Failure::Api(err),
        }
    }

    /// For callers that propagate a `napi::Error`: what was thrown is made the pending
    /// exception again (napi-rs then throws it as it is; a caller that ignores the
    /// error must clear it).
    pub fn into_pending(self, env: &Env) -> Error {
        match self {
            Failure::Thrown(thrown) => throw(env, thrown),
            Failure::Api(err) => err,
        }
    }

    /// The value to reject (or throw) with: what was thrown, or an `Error` describing
    /// the Node-API failure.
    pub fn into_value(self, env: &'env Env) -> Unknown<'env> {
        match self {
            Failure::Thrown(thrown) => thrown,
            Failure::Api(err) => api_error(env, &err, None),
        }
    }
}

/// Makes `value` the pending exception, exactly as it is. Returned from a `#[napi]`
/// function, the `PendingException` error makes napi-rs throw that exception
/// untouched instead of building an Error of its own.
pub fn throw(env: &Env, value: Unknown) -> Error {
    clear_pending_exception(env);
    // SAFETY: a value of the current env; nothing is pending any more.
    unsafe { sys::napi_throw(env.raw(), value.raw()) };
    Error::new(Status::PendingException, "a JS value was thrown")
}

/// Takes (and clears) the pending exception exactly as thrown, primitives included.
pub fn take_thrown_value(env: &Env) -> Option<Unknown<'_>> {
    let mut pending = false;
    let mut exception = ptr::null_mut();
    // SAFETY: plain Node-API calls on the current env.
    unsafe {
        if sys::napi_is_exception_pending(env.raw(), &mut pending) != sys::Status::napi_ok
            || !pending
            || sys::napi_get_and_clear_last_exception(env.raw(), &mut exception)
                != sys::Status::napi_ok
        {
            return None;
        }
        Some(Unknown::from_raw_unchecked(env.raw(), exception))
    }
}

/// Drops whatever exception is pending, if any, without looking at it.
pub fn clear_pending_exception(env: &Env) {
    let _ = take_thrown_value(env);
}

/// `function.call(this, ...args)`; on failure, exactly what it threw.
pub fn call<'env>(
    env: &'env Env,
    this: sys::napi_value,
    function: sys::napi_value,
    args: &[sys::napi_value],
) -> std::result::Result<Unknown<'env>, Failure<'env>> {
    let mut returned = ptr::null_mut();
    // SAFETY: valid handles of the current env; `args` outlives the call.
    let status = unsafe {
        sys::napi_call_function(
            env.raw(),
            this,
            function,
            args.len(),
            args.as_ptr(),
            &mut returned,
        )
    };
    if status == sys::Status::napi_ok {
        // SAFETY: napi_call_function returned a valid value.
        return Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), returned) });
    }
    Err(Failure::after(
        env,
        Error::new(Status::from(status), "calling a JS function failed"),
    ))
}

/// `target[method](...args)`; on failure, exactly what was thrown.
pub fn call_method<'env>(
    env: &'env Env,
    target: &Object,
    method: &str,
    args: &[sys::napi_value],
) -> std::result::Result<Unknown<'env>, Failure<'env>> {
    let function = get(env, target.raw(), method)?;
    call(env, target.raw(), function.raw(), args)
}

/// `object[name]`; on failure (a throwing getter, a revoked Proxy), exactly what was thrown.
pub fn get<'env>(
    env: &'env Env,
    object: sys::napi_value,
    name: &str,
) -> std::result::Result<Unknown<'env>, Failure<'env>> {
    let key = env
        .create_string(name)
        .map_err(|e| Failure::after(env, e))?;
    let mut value = ptr::null_mut();
    // SAFETY: valid env, object and key handles.
    let status = unsafe { sys::napi_get_property(env.raw(), object, key.raw(), &mut value) };
    if status == sys::Status::napi_ok {
        // SAFETY: napi_get_property returned a valid value.
        return Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), value) });
    }
    Err(Failure::after(
        env,
        Error::new(Status::from(status), format!("reading `{name}` failed")),
    ))
}

/// A plain `Error` for a Node-API failure that has no JS exception of its own:
/// its message is the failure's, its `code` the Node-API status; `cause`, when
/// given, is what JS threw meanwhile. Never fails: as a last resort, `undefined`.
pub fn api_error<'env>(env: &'env Env, err: &Error, cause: Option<Unknown>) -> Unknown<'env> {
    let message = if err.reason.is_empty() {
        format!("local-worker: a Node-API call failed ({})", err.status)
    } else {
        err.reason.clone()
    };
    let built = create(env, ErrorClass::Error, err.status.as_ref(), &message).and_then(|error| {
        if let Some(cause) = cause {
            define(env, &error, "cause", cause)?;
        }
        Ok(error.to_unknown())
    });
    built.unwrap_or_else(|_| {
        clear_pending_exception(env);
        undefined(env)
    })
}

/// The code of the error a job rejects with when building its outcome (result or
/// error) failed.
pub const OUTCOME_FAILED: &str = "ERR_LOCAL_WORKER_OUTCOME";

/// What to reject with when building the value to settle with failed: if JS threw
/// meanwhile (a setter on `Error.prototype`, say), an `Error` saying so whose
/// `cause` is exactly what it threw; else an `Error` with the failure's message.
/// Never fails: as a last resort, `undefined`.
pub fn unbuilt<'env>(env: &'env Env, err: &Error, thrown: Option<Unknown>) -> Unknown<'env> {
    match thrown {
        Some(thrown) => {
            let built = create(
                env,
                ErrorClass::Error,
                OUTCOME_FAILED,
                "local-worker: the job's outcome could not be built: JS threw while it was built (the cause is what it threw)",
            )
            .and_then(|error| {
                define(env, &error, "cause", thrown)?;
                Ok(error.to_unknown())
            });
            built.unwrap_or_else(|_| {
                clear_pending_exception(env);
                undefined(env)
            })
        }
        None if err.reason.is_empty() => {
            let status = err.status;
            let err = Error::new(
                status,
                format!("local-worker: the job's outcome could not be built ({status})"),
            );
            api_error(env, &err, None)
        }
        None => api_error(env, err, None),
    }
}

fn undefined(env: &Env) -> Unknown<'_> {
    let mut value = ptr::null_mut();
    // SAFETY: plain Node-API call; `undefined` cannot fail to exist.
    unsafe {
        sys::napi_get_undefined(env.raw(), &mut value);
        Unknown::from_raw_unchecked(env.raw(), value)
    }
}

/// Defines `object[name] = value` as an own data property (writable, enumerable,
/// configurable, as an assignment creates it), without running any setter.
pub fn define(env: &Env, object: &Object, name: &str, value: Unknown) -> Result<()> {
    let name = std::ffi::CString::new(name)?;
    let property = sys::napi_property_descriptor {
        utf8name: name.as_ptr(),
        name: ptr::null_mut(),
        method: None,
        getter: None,
        setter: None,
        value: value.raw(),
        attributes: sys::PropertyAttributes::writable
            | sys::PropertyAttributes::enumerable
            | sys::PropertyAttributes::configurable,
        data: ptr::null_mut(),
    };
    // SAFETY: valid env and object; the descriptor's name outlives the call.
    check_status!(unsafe { sys::napi_define_properties(env.raw(), object.raw(), 1, &property) })
}

/// A JS value kept alive while it crosses threads, untouched: a reference to a
/// holder object whose own `value` property is the value (Node-API before version
/// 10 cannot reference a primitive directly).
pub struct Held(ObjectRef<false>);

impl Held {
    pub fn new(env: &Env, value: Unknown) -> Result<Held> {
        let holder = Object::new(env)?;
        define(env, &holder, "value", value)?;
        Ok(Held(holder.create_ref()?))
    }

    /// The value, back on the JS thread; the reference is released.
    pub fn take(self, env: &Env) -> Result<Unknown<'_>> {
        let holder = self.0.get_value(env);
        let _ = self.0.unref(env);
        // Our own holder's own data property: no JS code runs.
        holder?.get_named_property("value")
    }
}
