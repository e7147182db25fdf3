//! Which supervisor executable the core runs: `local-worker` beside this addon's
//! `.node` file (where each platform package ships it), unless the environment
//! variable `LOCAL_WORKER_SUPERVISOR` says otherwise:
//! * a path: that executable (e.g. a copy outside a `noexec` mount);
//! * `off`: no supervisor, process-group containment only, and no warning.
//!
//! Read once per process, on the JS thread (Node may be writing `environ` there,
//! never while we read on the same thread).

use std::ffi::{CStr, OsStr, c_void};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Once;

use local_worker_core::forkserver::{self, Setting};

const VARIABLE: &str = "LOCAL_WORKER_SUPERVISOR";
/// The executable's name in the platform package, beside the `.node`.
const EXECUTABLE: &str = "local-worker";

/// Tells the core which supervisor to use, once per process.
pub fn configure() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| forkserver::configure(setting()));
}

fn setting() -> Setting {
    match std::env::var_os(VARIABLE) {
        Some(value) if value == "off" => Setting::Disabled,
        Some(value) if !value.is_empty() => Setting::Program(PathBuf::from(value)),
        _ => match addon_file() {
            Some(addon) => Setting::Program(addon.with_file_name(EXECUTABLE)),
            // Cannot happen for a loaded shared object; the warning will say why.
            None => Setting::Program(PathBuf::from(EXECUTABLE)),
        },
    }
}

/// The path this addon was loaded from.
fn addon_file() -> Option<PathBuf> {
    // SAFETY: dladdr on an address inside this shared object; it fills `info`
    // with pointers into the loader's own data, valid while the object is loaded.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        let here = addon_file as *const c_void;
        if libc::dladdr(here, &mut info) == 0 || info.dli_fname.is_null() {
            return None;
        }
        let name = CStr::from_ptr(info.dli_fname).to_bytes();
        Some(PathBuf::from(OsStr::from_bytes(name)))
    }
}
