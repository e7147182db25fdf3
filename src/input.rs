//! Reading a `WorkerJob` (and the adapter's options) from JS, naming the field at fault.
//!
//! The job is taken loosely (as `unknown`) and checked here, so that every problem
//! becomes a rejected Promise with a `TypeError`/`RangeError` naming the field,
//! never a synchronous throw from argument conversion.

use std::time::Duration;

use local_worker_core::job::Listeners;
use local_worker_core::spec::MAX_BUFFER_LIMIT;
use local_worker_core::{Encoding, JobSpec, SpecError, SpecErrorKind};
use napi::bindgen_prelude::*;

use crate::js_error::{self, ErrorClass, Failure};
use crate::listener::JsOutputListener;

/// Longest accepted duration, as for Node's timers (about 24.8 days).
const MAX_MS: f64 = 2_147_483_647.0;

/// A job (or options) that cannot be used: malformed, or JS threw while we read it
/// (a getter, a proxy trap, a method of the signal): then exactly what it threw.
pub enum InputError<'env> {
    Spec(SpecError),
    Js(Failure<'env>),
}

impl From<SpecError> for InputError<'_> {
    fn from(err: SpecError) -> Self {
        InputError::Spec(err)
    }
}

impl<'env> From<Failure<'env>> for InputError<'env> {
    fn from(failure: Failure<'env>) -> Self {
        InputError::Js(failure)
    }
}

impl<'env> InputError<'env> {
    /// The value to reject (or throw) with: the `TypeError`/`RangeError` naming the
    /// field, or exactly what JS threw.
    pub fn into_value(self, env: &'env Env) -> Unknown<'env> {
        match self {
            InputError::Js(failure) => failure.into_value(env),
            InputError::Spec(spec) => match spec_error_object(env, &spec) {
                Ok(object) => object.to_unknown(),
                Err(err) => {
                    let thrown = js_error::take_thrown_value(env);
                    js_error::unbuilt(env, &err, thrown)
                }
            },
        }
    }
}

fn spec_error_object<'env>(env: &'env Env, spec: &SpecError) -> Result<Object<'env>> {
    let (class, code) = match spec.kind {
        SpecErrorKind::Type => (ErrorClass::TypeError, "ERR_INVALID_ARG_TYPE"),
        SpecErrorKind::Value => (ErrorClass::TypeError, "ERR_INVALID_ARG_VALUE"),
        SpecErrorKind::Range => (ErrorClass::RangeError, "ERR_OUT_OF_RANGE"),
    };
    let mut error = js_error::create(env, class, code, &spec.message)?;
    error.set_named_property("field", spec.field.as_str())?;
    Ok(error)
}

/// Per-adapter defaults of the options a job may also set itself.
#[derive(Clone, Copy)]
pub struct AdapterDefaults {
    kill_grace: Duration,
    drain_bound: Duration,
    max_buffer: usize,
    kill_leftovers: bool,
    encoding: Encoding,
}

impl AdapterDefaults {
    pub fn parse<'env>(
        env: &'env Env,
        options: Unknown<'env>,
    ) -> std::result::Result<Self, InputError<'env>> {
        // The core's defaults, as a fresh spec carries them.
        let spec = JobSpec::new(String::new());
        let builtin = AdapterDefaults {
            kill_grace: spec.kill_grace,
            drain_bound: spec.drain_bound,
            max_buffer: spec.max_buffer,
            kill_leftovers: spec.kill_leftovers,
            encoding: spec.encoding,
        };
        match Fields::of(env, options, "options", true)? {
            None => Ok(builtin),
            Some(fields) => fields.tuning(builtin),
        }
    }
}

pub struct ParsedJob<'env> {
    pub spec: JobSpec,
    pub listeners: Listeners<JsOutputListener>,
    pub signal: Option<Object<'env>>,
}

pub fn parse_job<'env>(
    env: &'env Env,
    job: Unknown<'env>,
    defaults: &AdapterDefaults,
) -> std::result::Result<ParsedJob<'env>, InputError<'env>> {
    let fields = Fields::of(env, job, "job", false)?.expect("required");
    let command = fields
        .string("command")?
        .ok_or_else(|| SpecError::type_("job.command", "must be a non-empty string"))?;
    let mut spec = JobSpec::new(command);
    spec.args = fields.string_array("args")?;
    spec.env = fields.string_map("env")?;
    // The state at call time, read here on the JS thread: Node's `process.env.X = ...`
    // reallocates `environ`, so no other thread may read it, and a later
    // `process.env`/`process.chdir()` change must not reach this job.
    spec.base_env = Some(inherited_environment());
    spec.cwd = fields.string("cwd")?.map(absolute_at_call_time);
    // `timeout: 0` means no limit, as for the TypeScript adapter; any positive
    // timeout, however tiny, is a limit (at least a nanosecond).
    spec.timeout = fields
        .checked_millis("timeout")?
        .filter(|&ms| ms > 0.0)
        .map(|ms| Duration::from_secs_f64(ms / 1000.0).max(Duration::from_nanos(1)));
    let tuning = fields.tuning(*defaults)?;
    spec.kill_grace = tuning.kill_grace;
    spec.drain_bound = tuning.drain_bound;
    spec.max_buffer = tuning.max_buffer;
    spec.kill_leftovers = tuning.kill_leftovers;
    spec.encoding = tuning.encoding;
    // `meta` is accepted and ignored by the local adapter.
    let listeners = Listeners {
        stdout: fields.listener("onStdout")?,
        stderr: fields.listener("onStderr")?,
    };
    let signal = fields.object("signal", "must be an AbortSignal")?;
    spec.validate()?;
    Ok(ParsedJob {
        spec,
        listeners,
        signal,
    })
}

/// The properties of one JS object, read with field-naming errors.
struct Fields<'env> {
    env: &'env Env,
    object: Object<'env>,
    prefix: &'static str,
}

impl<'env> Fields<'env> {
    /// `None` when optional and absent (`undefined`/`null`).
    fn of(
        env: &'env Env,
        value: Unknown<'env>,
        prefix: &'static str,
        optional: bool,
    ) -> std::result::Result<Option<Self>, InputError<'env>> {
        match value.get_type().map_err(|e| thrown(env, e))? {
            ValueType::Object => {
                let object = Object::from_raw(env.raw(), value.raw());
                if object.is_array().map_err(|e| thrown(env, e))? {
                    return Err(SpecError::type_(prefix, "must be an object, not an array").into());
                }
                Ok(Some(Fields {
                    env,
                    object,
                    prefix,
                }))
            }
            ValueType::Undefined | ValueType::Null if optional => Ok(None),
            other => Err(SpecError::type_(
                prefix,
                &format!("must be an object (got {})", describe(other)),
            )
            .into()),
        }
    }

    fn path(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }

    /// The property, or `None` when `undefined` or `null`.
    fn get(
        &self,
        name: &str,
    ) -> std::result::Result<Option<(Unknown<'env>, ValueType)>, InputError<'env>> {
        let value: Unknown = self
            .object
            .get_named_property(name)
            .map_err(|e| thrown(self.env, e))?;
        match value.get_type().map_err(|e| thrown(self.env, e))? {
            ValueType::Undefined | ValueType::Null => Ok(None),
            kind => Ok(Some((value, kind))),
        }
    }

    fn string(&self, name: &str) -> std::result::Result<Option<String>, InputError<'env>> {
        self.typed(name, ValueType::String, "a string")
    }

    fn string_array(&self, name: &str) -> std::result::Result<Vec<String>, InputError<'env>> {
        let path = self.path(name);
        let Some((value, kind)) = self.get(name)? else {
            return Ok(Vec::new());
        };
        let array = Object::from_raw(self.env.raw(), value.raw());
        if kind != ValueType::Object || !array.is_array().map_err(|e| thrown(self.env, e))? {
            return Err(expected(&path, "an array of strings", kind));
        }
        let len = array.get_array_length().map_err(|e| thrown(self.env, e))?;
        let mut items = Vec::with_capacity(len as usize);
        for i in 0..len {
            let item: Unknown = array.get_element(i).map_err(|e| thrown(self.env, e))?;
            match item.get_type().map_err(|e| thrown(self.env, e))? {
                ValueType::String => items.push(to_string(self.env, item)?),
                other => return Err(expected(&format!("{path}[{i}]"), "a string", other)),
            }
        }
        Ok(items)
    }

    /// Own enumerable string keys; `undefined` values are skipped (as Node does).
    /// An object of strings; an `undefined` value removes the variable (`None`).
    fn string_map(
        &self,
        name: &str,
    ) -> std::result::Result<Vec<(String, Option<String>)>, InputError<'env>> {
        let path = self.path(name);
        let Some((value, kind)) = self.get(name)? else {
            return Ok(Vec::new());
        };
        let object = Object::from_raw(self.env.raw(), value.raw());
        if kind != ValueType::Object || object.is_array().map_err(|e| thrown(self.env, e))? {
            return Err(expected(&path, "an object of strings", kind));
        }
        let keys = own_enumerable_keys(self.env, &object).map_err(|e| thrown(self.env, e))?;
        let len = keys.get_array_length().map_err(|e| thrown(self.env, e))?;
        let mut pairs = Vec::with_capacity(len as usize);
        for i in 0..len {
            let key: Unknown = keys.get_element(i).map_err(|e| thrown(self.env, e))?;
            let value = property(self.env, &object, key).map_err(|e| thrown(self.env, e))?;
            let key = to_string(self.env, key)?;
            match value.get_type().map_err(|e| thrown(self.env, e))? {
                ValueType::Undefined => pairs.push((key, None)),
                ValueType::String => pairs.push((key, Some(to_string(self.env, value)?))),
                other => return Err(expected(&format!("{path}[{key:?}]"), "a string", other)),
            }
        }
        Ok(pairs)
    }

    /// A finite, non-negative number of milliseconds.
    fn millis(&self, name: &str) -> std::result::Result<Option<Duration>, InputError<'env>> {
        Ok(self
            .checked_millis(name)?
            .map(|ms| Duration::from_secs_f64(ms / 1000.0)))
    }

    /// A finite number of milliseconds from 0 to the timer limit, as given.
    fn checked_millis(&self, name: &str) -> std::result::Result<Option<f64>, InputError<'env>> {
        let path = self.path(name);
        let Some(ms) = self.number(name)? else {
            return Ok(None);
        };
        if !ms.is_finite() || !(0.0..=MAX_MS).contains(&ms) {
            return Err(SpecError::range(
                &path,
                &format!("must be a finite number of milliseconds from 0 to {MAX_MS} (got {ms})"),
            )
            .into());
        }
        Ok(Some(ms))
    }

    fn number(&self, name: &str) -> std::result::Result<Option<f64>, InputError<'env>> {
        self.typed(name, ValueType::Number, "a number")
    }

    fn boolean(&self, name: &str) -> std::result::Result<Option<bool>, InputError<'env>> {
        self.typed(name, ValueType::Boolean, "a boolean")
    }

    /// The property as a `T` when its JS type is `kind`; `None` when absent.
    fn typed<T: FromNapiValue>(
        &self,
        name: &str,
        kind: ValueType,
        what: &str,
    ) -> std::result::Result<Option<T>, InputError<'env>> {
        match self.get(name)? {
            None => Ok(None),
            Some((value, found)) if found == kind => {
                // SAFETY: the value was checked to be of the JS type `T` converts from.
                unsafe { T::from_napi_value(self.env.raw(), value.raw()) }
                    .map(Some)
                    .map_err(|e| thrown(self.env, e))
            }
            Some((_, other)) => Err(expected(&self.path(name), what, other)),
        }
    }

    fn listener(
        &self,
        name: &'static str,
    ) -> std::result::Result<Option<JsOutputListener>, InputError<'env>> {
        match self.get(name)? {
            None => Ok(None),
            Some((value, ValueType::Function)) => JsOutputListener::new(self.env, name, value)
                .map(Some)
                .map_err(|e| thrown(self.env, e)),
            Some((_, other)) => Err(expected(&self.path(name), "a function", other)),
        }
    }

    fn object(
        &self,
        name: &str,
        problem: &str,
    ) -> std::result::Result<Option<Object<'env>>, InputError<'env>> {
        match self.get(name)? {
            None => Ok(None),
            Some((value, ValueType::Object)) => {
                Ok(Some(Object::from_raw(self.env.raw(), value.raw())))
            }
            Some((_, other)) => Err(SpecError::type_(
                &self.path(name),
                &format!("{problem} (got {})", describe(other)),
            )
            .into()),
        }
    }

    /// Options shared by the adapter's constructor and each job.
    fn tuning(
        &self,
        defaults: AdapterDefaults,
    ) -> std::result::Result<AdapterDefaults, InputError<'env>> {
        let max_buffer = match self.number("maxBuffer")? {
            None => defaults.max_buffer,
            Some(n) if n.fract() == 0.0 && (0.0..=MAX_BUFFER_LIMIT as f64).contains(&n) => {
                n as usize
            }
            Some(n) => {
                return Err(SpecError::range(
                    &self.path("maxBuffer"),
                    &format!("must be a whole number of bytes from 0 to {MAX_BUFFER_LIMIT}, V8's longest string (got {n})"),
                )
                .into());
            }
        };
        let encoding = match self
            .typed::<String>("encoding", ValueType::String, "'utf8' or 'buffer'")?
            .as_deref()
        {
            None => defaults.encoding,
            Some("utf8") => Encoding::Utf8,
            Some("buffer") => Encoding::Buffer,
            Some(other) => {
                return Err(SpecError::value(
                    &self.path("encoding"),
                    &format!("must be 'utf8' or 'buffer' (got {other:?})"),
                )
                .into());
            }
        };
        Ok(AdapterDefaults {
            encoding,
            kill_grace: self
                .millis("killGracePeriod")?
                .unwrap_or(defaults.kill_grace),
            drain_bound: self.millis("drainTimeout")?.unwrap_or(defaults.drain_bound),
            max_buffer,
            kill_leftovers: self
                .boolean("killLeftovers")?
                .unwrap_or(defaults.kill_leftovers),
        })
    }
}

/// `Object.keys(object)`: own, enumerable, string keys.
/// This process's environment, as `child_process` passes it on. An entry whose name
/// itself starts with `=` (possible in `environ`, never set through `process.env`)
/// is left out rather than failing the job over a variable it did not set.
fn inherited_environment() -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    use std::os::unix::ffi::OsStrExt;
    std::env::vars_os()
        .filter(|(key, _)| !key.as_bytes().contains(&b'='))
        .collect()
}

/// A relative `cwd` is taken against the working directory at the time of the
/// call, as `child_process` does (a later `process.chdir()` does not move it).
fn absolute_at_call_time(cwd: String) -> std::path::PathBuf {
    let path = std::path::PathBuf::from(cwd);
    if path.is_absolute() {
        return path;
    }
    match std::env::current_dir() {
        Ok(dir) => dir.join(path),
        // No usable working directory: leave it to the spawn to report.
        Err(_) => path,
    }
}

fn own_enumerable_keys<'env>(env: &'env Env, object: &Object) -> Result<Object<'env>> {
    use napi::sys;
    let mut keys = std::ptr::null_mut();
    // SAFETY: valid env and object; `keys` receives a new array.
    check_status!(unsafe {
        sys::napi_get_all_property_names(
            env.raw(),
            object.raw(),
            sys::KeyCollectionMode::own_only,
            sys::KeyFilter::enumerable | sys::KeyFilter::skip_symbols,
            sys::KeyConversion::numbers_to_strings,
            &mut keys,
        )
    })?;
    Ok(Object::from_raw(env.raw(), keys))
}

/// `object[key]` for a key given as a JS value (it may contain a NUL, which a Rust
/// `&str` property name could not carry).
fn property<'env>(env: &'env Env, object: &Object, key: Unknown) -> Result<Unknown<'env>> {
    let mut value = std::ptr::null_mut();
    // SAFETY: valid env, object and key handles.
    check_status!(unsafe {
        napi::sys::napi_get_property(env.raw(), object.raw(), key.raw(), &mut value)
    })?;
    // SAFETY: napi_get_property returned a valid value.
    Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), value) })
}

fn to_string<'env>(
    env: &'env Env,
    value: Unknown,
) -> std::result::Result<String, InputError<'env>> {
    // SAFETY: callers checked the value is a string.
    unsafe { String::from_napi_value(env.raw(), value.raw()) }.map_err(|e| thrown(env, e))
}

fn expected<'env>(path: &str, what: &str, got: ValueType) -> InputError<'env> {
    SpecError::type_(path, &format!("must be {what} (got {})", describe(got))).into()
}

fn describe(kind: ValueType) -> &'static str {
    match kind {
        ValueType::Undefined => "undefined",
        ValueType::Null => "null",
        ValueType::Boolean => "a boolean",
        ValueType::Number => "a number",
        ValueType::String => "a string",
        ValueType::Symbol => "a symbol",
        ValueType::Object => "an object",
        ValueType::Function => "a function",
        ValueType::External => "an external",
        ValueType::BigInt => "a bigint",
        _ => "an unknown value",
    }
}

/// A Node-API failure while reading: a getter or proxy threw (reject with exactly
/// what it threw), or the engine refused (reject with that).
pub fn thrown(env: &Env, err: Error) -> InputError<'_> {
    InputError::Js(Failure::after(env, err))
}
