//! Handing decoded text and bytes to V8 in O(1) when we can.
//!
//! Text arrives already in one of V8's own string forms (Latin-1 or UTF-16, decoded on the
//! reading threads: see the core's `decode`), so a result becomes an external string over
//! our buffer: V8 reads it in place and frees it through a finalizer. Bytes become an
//! external Buffer. `node_api_create_external_string_latin1`/`_utf16` appeared in Node
//! 20.4; they are looked up at run time so that an older Node still loads the addon (and
//! copies). Small values are copied: below `EXTERNAL_MIN_BYTES` the bookkeeping of an
//! external value costs more than a copy.
//!
//! Caveat, measured on Node 20: V8 does not count an external string's data as memory (its
//! JS object is tiny), so with little JS allocation dead results could pile up for a long
//! time. So each external string's size is reported with `napi_adjust_external_memory`
//! (and taken back when it is finalized), which lets V8 collect under that pressure; and
//! a budget bounds the rest: external values not yet finalized may hold at most
//! `EXTERNAL_BUDGET` bytes (whatever the width of their characters); beyond it, a value
//! is copied into the V8 heap. One value is always allowed when nothing else is held, so
//! that a single result larger than the budget (up to V8's longest string, 1 GiB of
//! UTF-16) is still handed over in O(1). External Buffers need no report: V8 counts
//! their backing stores itself.

use std::ffi::{c_char, c_void};
use std::ptr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use local_worker_core::{CapturedOutput, Kept, Text};
use napi::bindgen_prelude::*;
use napi::sys;

/// Below this, copying is cheaper than an external value's bookkeeping.
const EXTERNAL_MIN_BYTES: usize = 64 * 1024;
/// Most bytes held by external values that V8 has not finalized yet.
const EXTERNAL_BUDGET: usize = 256 * 1024 * 1024;

/// Bytes held by live (not yet finalized) external values of this process.
static EXTERNAL_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Gives `len` bytes of the external budget back (V8 finalized the value, or it was never
/// created).
fn release_external(len: usize) {
    EXTERNAL_BYTES.fetch_sub(len, Ordering::AcqRel);
}

/// Reserves `len` bytes of the external budget, if they fit (always, when nothing is held).
fn reserve_external(len: usize) -> bool {
    EXTERNAL_BYTES
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
            held.checked_add(len)
                .filter(|&total| held == 0 || total <= EXTERNAL_BUDGET)
        })
        .is_ok()
}

type CreateExternalString<C> = unsafe extern "C" fn(
    env: sys::napi_env,
    str: *mut C,
    length: usize,
    finalize_callback: sys::napi_finalize,
    finalize_hint: *mut c_void,
    result: *mut sys::napi_value,
    copied: *mut bool,
) -> sys::napi_status;

/// A Node-API function that may be missing from this Node, looked up once.
fn lookup<F: Copy>(found: &'static OnceLock<Option<F>>, name: &std::ffi::CStr) -> Option<F> {
    *found.get_or_init(|| {
        // SAFETY: dlsym with a NUL-terminated name; when present, the symbol has the
        // signature declared in Node's js_native_api.h, which `F` spells out.
        let symbol = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        (!symbol.is_null()).then(|| unsafe { std::mem::transmute_copy::<*mut c_void, F>(&symbol) })
    })
}

fn create_external_latin1() -> Option<CreateExternalString<c_char>> {
    static FOUND: OnceLock<Option<CreateExternalString<c_char>>> = OnceLock::new();
    lookup(&FOUND, c"node_api_create_external_string_latin1")
}

fn create_external_utf16() -> Option<CreateExternalString<u16>> {
    static FOUND: OnceLock<Option<CreateExternalString<u16>>> = OnceLock::new();
    lookup(&FOUND, c"node_api_create_external_string_utf16")
}

/// A job's captured stdout or stderr on its way to JS: a string (decoded text) or a
/// Buffer (bytes), handed over without a copy when large and within budget.
pub struct OutputValue(pub CapturedOutput);

impl ToNapiValue for OutputValue {
    unsafe fn to_napi_value(env: sys::napi_env, value: Self) -> Result<sys::napi_value> {
        // SAFETY (all arms): a valid env; buffers and offsets from the core are in bounds.
        match value.0.kept {
            Kept::Text { text, start } => unsafe { text_value(env, text, start) },
            Kept::Bytes { bytes, start } => unsafe { buffer_value(env, bytes, start) },
        }
    }
}

/// A JS string of `text[start..]`: external when large and within budget, else a copy.
///
/// # Safety
/// `env` must be the current, valid environment; `start <= text.len()`.
pub unsafe fn text_value(env: sys::napi_env, text: Text, start: usize) -> Result<sys::napi_value> {
    let len = text.len() - start;
    let width = match text {
        Text::Latin1(_) => 1,
        Text::Utf16(_) => 2,
    };
    let bytes = len * width;
    if bytes >= EXTERNAL_MIN_BYTES {
        // SAFETY: as for this function.
        match &text {
            Text::Latin1(_) => {
                if let Some(create) = create_external_latin1()
                    && reserve_external(bytes)
                {
                    return unsafe { external_string(env, create, text, start, len, bytes) };
                }
            }
            Text::Utf16(_) => {
                if let Some(create) = create_external_utf16()
                    && reserve_external(bytes)
                {
                    return unsafe { external_string(env, create, text, start, len, bytes) };
                }
            }
        }
    }
    // SAFETY: as for this function.
    unsafe { copy_text(env, &text, start, len) }
}

/// A JS string copied from `text[start..start + len]` (a plain copy: the text already is in
/// one of V8's forms).
///
/// # Safety
/// `env` must be the current, valid environment; the range must be in bounds.
pub unsafe fn copy_text(
    env: sys::napi_env,
    text: &Text,
    start: usize,
    len: usize,
) -> Result<sys::napi_value> {
    let mut value = ptr::null_mut();
    // SAFETY: pointer and length describe a range of `text`.
    let status = unsafe {
        match text {
            Text::Latin1(units) => sys::napi_create_string_latin1(
                env,
                units[start..].as_ptr().cast(),
                len as isize,
                &mut value,
            ),
            Text::Utf16(units) => sys::napi_create_string_utf16(
                env,
                units[start..].as_ptr(),
                len as isize,
                &mut value,
            ),
        }
    };
    check_status!(
        status,
        "output of {len} characters cannot be returned as a JS string; lower maxBuffer"
    )?;
    Ok(value)
}

/// Owner of an external value's memory until V8 is done with it.
struct Held {
    // Never read: only owned, until V8 is done with the string.
    #[allow(dead_code)]
    text: Option<Text>,
    bytes: Option<Vec<u8>>,
    /// Budget bytes to give back.
    budget: usize,
}

unsafe fn external_string<C>(
    env: sys::napi_env,
    create: CreateExternalString<C>,
    text: Text,
    start: usize,
    len: usize,
    budget: usize,
) -> Result<sys::napi_value> {
    let data = match &text {
        Text::Latin1(units) => units[start..].as_ptr() as *mut C,
        Text::Utf16(units) => units[start..].as_ptr() as *mut C,
    };
    let hint = Box::into_raw(Box::new(Held {
        text: Some(text),
        bytes: None,
        budget,
    }));
    let mut value = ptr::null_mut();
    let mut copied = false;
    // SAFETY: `data` lives in `hint`'s box (moving the Vec into the box did not move its
    // heap buffer) until the finalizer frees it; when V8 copies instead, Node calls the
    // finalizer before returning.
    let status = unsafe {
        create(
            env,
            data,
            len,
            Some(free_held),
            hint.cast(),
            &mut value,
            &mut copied,
        )
    };
    if status != sys::Status::napi_ok {
        // Node-API does not call the finalizer on failure.
        // SAFETY: ownership is still ours.
        drop(unsafe { Box::from_raw(hint) });
        release_external(budget);
        return Err(Error::new(
            Status::from(status),
            format!("output of {len} characters cannot be returned as a JS string"),
        ));
    }
    // V8 does not count an external string's data as memory; told, it collects dead
    // results when they pile up (measured: 40 dropped 64 MiB results peak at 300 MB RSS
    // instead of 942 MB).
    let mut total = 0;
    // SAFETY: a plain Node-API call on the current env.
    unsafe { sys::napi_adjust_external_memory(env, budget as i64, &mut total) };
    Ok(value)
}

/// A Node Buffer of `bytes[start..]`: external when large and within budget, else a copy.
///
/// # Safety
/// `env` must be the current, valid environment; `start <= bytes.len()`.
pub unsafe fn buffer_value(
    env: sys::napi_env,
    bytes: Vec<u8>,
    start: usize,
) -> Result<sys::napi_value> {
    let len = bytes.len() - start;
    let mut value = ptr::null_mut();
    if len >= EXTERNAL_MIN_BYTES && reserve_external(len) {
        let data = bytes[start..].as_ptr() as *mut c_void;
        let hint = Box::into_raw(Box::new(Held {
            text: None,
            bytes: Some(bytes),
            budget: len,
        }));
        // SAFETY: as for strings; the buffer stays in `hint` until the finalizer.
        let status = unsafe {
            sys::napi_create_external_buffer(
                env,
                len,
                data,
                Some(free_held),
                hint.cast(),
                &mut value,
            )
        };
        if status == sys::Status::napi_ok {
            return Ok(value);
        }
        // Some runtimes refuse external buffers (sandboxed pointers): copy instead.
        // SAFETY: the finalizer was not called, ownership is ours again.
        let held = unsafe { Box::from_raw(hint) };
        release_external(len);
        let bytes = held.bytes.expect("bytes were held");
        return unsafe { copy_buffer(env, &bytes[start..]) };
    }
    // SAFETY: as for this function.
    unsafe { copy_buffer(env, &bytes[start..]) }
}

/// A Node Buffer copied from `bytes`.
///
/// # Safety
/// `env` must be the current, valid environment.
pub unsafe fn copy_buffer(env: sys::napi_env, bytes: &[u8]) -> Result<sys::napi_value> {
    let mut value = ptr::null_mut();
    let mut data = ptr::null_mut();
    // SAFETY: pointer and length describe `bytes`.
    check_status!(
        unsafe {
            sys::napi_create_buffer_copy(
                env,
                bytes.len(),
                bytes.as_ptr().cast(),
                &mut data,
                &mut value,
            )
        },
        "output of {} bytes cannot be returned as a Buffer",
        bytes.len()
    )?;
    Ok(value)
}

/// V8 is done with the value (collected, or copied at creation): free the memory and
/// return its bytes to the budget, so that the budget bounds what is *live*.
unsafe extern "C" fn free_held(env: sys::napi_env, _data: *mut c_void, hint: *mut c_void) {
    // SAFETY: `hint` is the box made when the value was created, freed exactly once.
    let held = unsafe { Box::from_raw(hint.cast::<Held>()) };
    if held.text.is_some() {
        let mut total = 0;
        // SAFETY: a plain Node-API call; what was added at creation is taken back.
        unsafe { sys::napi_adjust_external_memory(env, -(held.budget as i64), &mut total) };
    }
    release_external(held.budget);
}
