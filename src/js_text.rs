//! Handing text to V8 without a second full copy when we can.
//!
//! ASCII is valid Latin-1, so ASCII output (the common case for logs) becomes an
//! external one-byte string: V8 reads our buffer in place and frees it through a
//! finalizer. Other text is copied by `napi_create_string_utf8`, which transcodes.
//! `node_api_create_external_string_latin1` appeared in Node 20.4; it is looked up
//! at run time so that an older Node still loads the addon (and copies).
//!
//! Caveat, measured on Node 20: V8 does not collect a dropped external string
//! promptly — its JS object is tiny, and neither `napi_adjust_external_memory` nor
//! the size of the external data triggers a GC, so with little JS allocation dead
//! results can pile up for a long time. Hence a budget: external strings not yet
//! finalized may hold at most `EXTERNAL_BUDGET` bytes; beyond it, text is copied
//! into the V8 heap (`napi_create_string_latin1`, a plain copy for ASCII), where the
//! garbage collector sees its size.

use std::ffi::{c_char, c_void};
use std::ptr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use napi::bindgen_prelude::*;
use napi::sys;

/// Below this, copying is cheaper than an external string's bookkeeping.
const EXTERNAL_MIN_LEN: usize = 64 * 1024;
/// Most bytes held by external strings that V8 has not finalized yet.
const EXTERNAL_BUDGET: usize = 256 * 1024 * 1024;

/// Bytes held by live (not yet finalized) external strings of this process.
static EXTERNAL_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Gives `len` bytes of the external budget back (V8 finalized the string, or it
/// was never created).
fn release_external(len: usize) {
    EXTERNAL_BYTES.fetch_sub(len, Ordering::AcqRel);
}

/// Reserves `len` bytes of the external budget, if they fit.
fn reserve_external(len: usize) -> bool {
    EXTERNAL_BYTES
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
            held.checked_add(len)
                .filter(|&total| total <= EXTERNAL_BUDGET)
        })
        .is_ok()
}

type CreateExternalLatin1 = unsafe extern "C" fn(
    env: sys::napi_env,
    str: *mut c_char,
    length: usize,
    finalize_callback: sys::napi_finalize,
    finalize_hint: *mut c_void,
    result: *mut sys::napi_value,
    copied: *mut bool,
) -> sys::napi_status;

fn create_external_latin1() -> Option<CreateExternalLatin1> {
    static FOUND: OnceLock<Option<CreateExternalLatin1>> = OnceLock::new();
    *FOUND.get_or_init(|| {
        // SAFETY: dlsym with a NUL-terminated name; the symbol, when present, has
        // the signature declared in Node's js_native_api.h.
        let symbol = unsafe {
            libc::dlsym(
                libc::RTLD_DEFAULT,
                c"node_api_create_external_string_latin1".as_ptr(),
            )
        };
        (!symbol.is_null())
            .then(|| unsafe { std::mem::transmute::<*mut c_void, CreateExternalLatin1>(symbol) })
    })
}

/// A job's captured stdout or stderr (UTF-8; invalid sequences become U+FFFD) on
/// its way to a JS string: handed over without a copy when ASCII and in budget.
pub struct OutputText(pub Vec<u8>);

impl ToNapiValue for OutputText {
    unsafe fn to_napi_value(env: sys::napi_env, text: Self) -> Result<sys::napi_value> {
        let bytes = text.0;
        if bytes.len() >= EXTERNAL_MIN_LEN
            && bytes.is_ascii()
            && let Some(create) = create_external_latin1()
            && reserve_external(bytes.len())
        {
            // SAFETY: the boxed buffer stays put until V8 calls `free_buffer`.
            return unsafe { external_latin1(env, create, bytes) };
        }
        // Borrowed (no copy) when valid; U+FFFD replacements otherwise.
        // SAFETY: a valid env and string.
        unsafe { copy_str(env, &String::from_utf8_lossy(&bytes)) }
    }
}

/// A JS string copied from `text`: a plain copy for ASCII (valid Latin-1), a
/// transcoding copy otherwise.
///
/// # Safety
/// `env` must be the current, valid environment.
pub unsafe fn copy_str(env: sys::napi_env, text: &str) -> Result<sys::napi_value> {
    let mut value = ptr::null_mut();
    let (ptr, len) = (text.as_ptr().cast(), text.len() as isize);
    // SAFETY: pointer and length describe `text`.
    let status = unsafe {
        if text.is_ascii() {
            sys::napi_create_string_latin1(env, ptr, len, &mut value)
        } else {
            sys::napi_create_string_utf8(env, ptr, len, &mut value)
        }
    };
    check_status!(
        status,
        "output of {} bytes cannot be returned as a JS string; lower maxBuffer",
        text.len()
    )?;
    Ok(value)
}

unsafe fn external_latin1(
    env: sys::napi_env,
    create: CreateExternalLatin1,
    bytes: Vec<u8>,
) -> Result<sys::napi_value> {
    let buffer = Box::new(bytes);
    let (data, len) = (buffer.as_ptr() as *mut c_char, buffer.len());
    let hint = Box::into_raw(buffer);
    let mut value = ptr::null_mut();
    let mut copied = false;
    // SAFETY: `data` lives in `hint`'s box until the finalizer frees it; when V8
    // copies instead, Node calls the finalizer before returning.
    let status = unsafe {
        create(
            env,
            data,
            len,
            Some(free_buffer),
            hint.cast(),
            &mut value,
            &mut copied,
        )
    };
    if status != sys::Status::napi_ok {
        // Node-API does not call the finalizer on failure.
        // SAFETY: ownership is still ours.
        drop(unsafe { Box::from_raw(hint) });
        release_external(len);
        return Err(Error::new(
            Status::from(status),
            "cannot create a JS string from the output",
        ));
    }
    Ok(value)
}

/// V8 is done with the string (collected, or copied at creation): free the buffer
/// and return its bytes to the budget, so that the budget bounds what is *live*.
unsafe extern "C" fn free_buffer(_env: sys::napi_env, _data: *mut c_void, hint: *mut c_void) {
    // SAFETY: `hint` is the box made in `external_latin1`, freed exactly once.
    let buffer = unsafe { Box::from_raw(hint.cast::<Vec<u8>>()) };
    release_external(buffer.len());
}
