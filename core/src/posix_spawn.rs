//! Owners of libc's `posix_spawn` objects: initialised when made, destroyed on drop.
//!
//! Only the mechanics live here; what the job's leader gets (session, signals,
//! stdio) is decided in [`crate::spawn`].

use std::ffi::{CStr, CString, NulError, c_char, c_int};
use std::io;
use std::os::fd::RawFd;

fn check(ret: c_int) -> io::Result<()> {
    // The posix_spawn family returns the error number instead of setting errno.
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(ret))
    }
}

/// What the child does to its descriptors (and directory) before it executes.
pub struct FileActions {
    // Boxed: POSIX does not allow an initialised object to be copied, and a move is a copy.
    inner: Box<libc::posix_spawn_file_actions_t>,
}

impl FileActions {
    pub fn new() -> io::Result<FileActions> {
        // SAFETY: plain data, initialised by the call below before any other use.
        let mut inner: Box<libc::posix_spawn_file_actions_t> =
            Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: a valid pointer to storage for the object.
        check(unsafe { libc::posix_spawn_file_actions_init(&mut *inner) })?;
        Ok(FileActions { inner })
    }

    pub fn add_open(
        &mut self,
        fd: RawFd,
        path: &CStr,
        flags: c_int,
        mode: libc::mode_t,
    ) -> io::Result<()> {
        // SAFETY: initialised object; glibc and musl copy `path`.
        check(unsafe {
            libc::posix_spawn_file_actions_addopen(&mut *self.inner, fd, path.as_ptr(), flags, mode)
        })
    }

    pub fn add_dup2(&mut self, fd: RawFd, new_fd: RawFd) -> io::Result<()> {
        // SAFETY: initialised object.
        check(unsafe { libc::posix_spawn_file_actions_adddup2(&mut *self.inner, fd, new_fd) })
    }

    /// Fails with `ENOSYS` where libc lacks `posix_spawn_file_actions_addchdir_np`
    /// (glibc before 2.29): check [`can_chdir`] first.
    pub fn add_chdir(&mut self, dir: &CStr) -> io::Result<()> {
        let addchdir = addchdir_np().ok_or_else(|| io::Error::from_raw_os_error(libc::ENOSYS))?;
        // SAFETY: initialised object; the function has the documented signature and copies `dir`.
        check(unsafe { addchdir(&mut *self.inner, dir.as_ptr()) })
    }
}

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed once.
        unsafe { libc::posix_spawn_file_actions_destroy(&mut *self.inner) };
    }
}

/// Flags, signal mask and default-signal set of the child.
pub struct Attributes {
    // Boxed for the same reason as `FileActions`.
    inner: Box<libc::posix_spawnattr_t>,
}

impl Attributes {
    pub fn new() -> io::Result<Attributes> {
        // SAFETY: plain data, initialised by the call below before any other use.
        let mut inner: Box<libc::posix_spawnattr_t> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: a valid pointer to storage for the object.
        check(unsafe { libc::posix_spawnattr_init(&mut *inner) })?;
        Ok(Attributes { inner })
    }

    /// `POSIX_SPAWN_*` flags; they decide which of the other settings apply.
    pub fn set_flags(&mut self, flags: c_int) -> io::Result<()> {
        let flags = libc::c_short::try_from(flags)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: initialised object.
        check(unsafe { libc::posix_spawnattr_setflags(&mut *self.inner, flags) })
    }

    /// Signals reset to their default action (with `POSIX_SPAWN_SETSIGDEF`).
    pub fn set_sigdefault(&mut self, set: &libc::sigset_t) -> io::Result<()> {
        // SAFETY: initialised object, valid set.
        check(unsafe { libc::posix_spawnattr_setsigdefault(&mut *self.inner, set) })
    }

    /// The child's signal mask (with `POSIX_SPAWN_SETSIGMASK`).
    pub fn set_sigmask(&mut self, set: &libc::sigset_t) -> io::Result<()> {
        // SAFETY: initialised object, valid set.
        check(unsafe { libc::posix_spawnattr_setsigmask(&mut *self.inner, set) })
    }
}

impl Drop for Attributes {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed once.
        unsafe { libc::posix_spawnattr_destroy(&mut *self.inner) };
    }
}

/// Every signal number, libc's internal ones included (glibc 32–33, musl 32–34).
///
/// `sigfillset` leaves those out, and then glibc's and musl's `posix_spawn` set
/// them to SIG_IGN in the child, which survives `exec` (`SigIgn: 180000000` in
/// the program's /proc status). Named in the sigdefault set, they get SIG_DFL
/// like the rest, which is what a fork + exec from a glibc process leaves too.
/// Both libcs test this set bit by bit, so setting the bits directly is enough.
pub fn all_signals() -> libc::sigset_t {
    // SAFETY: plain data; all bits clear is the empty set.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // Signal n is bit n - 1; whole bytes of ones are the same in either byte order.
    let bytes = signal_count()
        .div_ceil(8)
        .min(std::mem::size_of::<libc::sigset_t>());
    // SAFETY: within the set's storage.
    unsafe { std::ptr::write_bytes((&mut set as *mut libc::sigset_t).cast::<u8>(), 0xff, bytes) };
    set
}

/// The highest signal number (64 on Linux but MIPS).
pub fn signal_count() -> usize {
    usize::try_from(libc::SIGRTMAX()).unwrap_or(64)
}

pub fn empty_sigset() -> libc::sigset_t {
    // SAFETY: as above, with sigemptyset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe { libc::sigemptyset(&mut set) };
    set
}

/// A NULL-terminated array of C strings, as `argv` and `envp` are passed.
pub struct CStringArray {
    // The pointers point into these strings' heap buffers, which never move.
    _strings: Vec<CString>,
    pointers: Vec<*mut c_char>,
}

impl CStringArray {
    pub fn new<I, B>(items: I) -> Result<CStringArray, NulError>
    where
        I: IntoIterator<Item = B>,
        B: Into<Vec<u8>>,
    {
        let strings = items
            .into_iter()
            .map(CString::new)
            .collect::<Result<Vec<_>, _>>()?;
        let mut pointers: Vec<*mut c_char> =
            strings.iter().map(|s| s.as_ptr() as *mut c_char).collect();
        pointers.push(std::ptr::null_mut());
        Ok(CStringArray {
            _strings: strings,
            pointers,
        })
    }

    pub fn as_ptr(&self) -> *const *mut c_char {
        self.pointers.as_ptr()
    }
}

/// Starts `program` (a path: no `PATH` search) and returns its pid. Errors of the
/// exec itself (ENOENT, EACCES, ENOEXEC, ...) are reported here, since glibc 2.24
/// and musl wait for the child to exec or fail.
pub fn spawn(
    program: &CStr,
    actions: &FileActions,
    attributes: &Attributes,
    argv: &CStringArray,
    envp: &CStringArray,
) -> io::Result<libc::pid_t> {
    let mut pid: libc::pid_t = 0;
    // SAFETY: all pointers are valid and NUL-terminated (arrays NULL-terminated)
    // for the duration of the call; the objects are initialised.
    check(unsafe {
        libc::posix_spawn(
            &mut pid,
            program.as_ptr(),
            &*actions.inner,
            &*attributes.inner,
            argv.as_ptr(),
            envp.as_ptr(),
        )
    })?;
    Ok(pid)
}

type AddChdir = unsafe extern "C" fn(*mut libc::posix_spawn_file_actions_t, *const c_char) -> c_int;

/// `posix_spawn_file_actions_addchdir_np`, looked up once at run time: it is
/// glibc 2.29 and the binaries must load on glibc 2.28, so it is never linked.
#[cfg(not(target_env = "musl"))]
fn addchdir_np() -> Option<AddChdir> {
    use std::ffi::c_void;
    use std::sync::OnceLock;
    static ADDCHDIR: OnceLock<Option<AddChdir>> = OnceLock::new();
    *ADDCHDIR.get_or_init(|| {
        // SAFETY: dlsym with a NUL-terminated name; RTLD_DEFAULT searches the loaded objects.
        let symbol: *mut c_void = unsafe {
            libc::dlsym(
                libc::RTLD_DEFAULT,
                c"posix_spawn_file_actions_addchdir_np".as_ptr(),
            )
        };
        // SAFETY: a non-null result is that function, whose C signature is `AddChdir`.
        (!symbol.is_null()).then(|| unsafe { std::mem::transmute::<*mut c_void, AddChdir>(symbol) })
    })
}

/// musl has had `posix_spawn_file_actions_addchdir_np` since 1.1.24 (Alpine 3.11),
/// the floor of our musl binaries: linked directly, since `dlsym` finds nothing in
/// a static musl executable (the core's tests).
#[cfg(target_env = "musl")]
fn addchdir_np() -> Option<AddChdir> {
    unsafe extern "C" {
        fn posix_spawn_file_actions_addchdir_np(
            actions: *mut libc::posix_spawn_file_actions_t,
            path: *const c_char,
        ) -> c_int;
    }
    Some(posix_spawn_file_actions_addchdir_np)
}

/// Whether the child's working directory can be set through `posix_spawn`.
pub fn can_chdir() -> bool {
    addchdir_np().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_libc_can_chdir() {
        // The build machine's glibc is newer than 2.29 (the lookup must find it);
        // musl has it linked.
        assert!(can_chdir());
    }

    #[test]
    fn all_signals_includes_the_internal_ones() {
        let set = all_signals();
        for signal in 1..=libc::SIGRTMAX() {
            // SAFETY: a valid set and signal number.
            assert_eq!(unsafe { libc::sigismember(&set, signal) }, 1, "{signal}");
        }
        let bits: [u8; 16] = unsafe { std::mem::transmute_copy(&set) };
        assert_eq!(bits[..8], [0xff; 8]);
        assert_eq!(bits[8..], [0; 8]);
    }

    #[test]
    fn argv_is_null_terminated() {
        let argv = CStringArray::new(["a", "bc"]).unwrap();
        // SAFETY: three entries, the last NULL.
        let entries = unsafe { std::slice::from_raw_parts(argv.as_ptr(), 3) };
        // SAFETY: the first two are valid C strings owned by `argv`.
        assert_eq!(unsafe { CStr::from_ptr(entries[1]) }, c"bc");
        assert!(entries[2].is_null());
        assert!(CStringArray::new(["nul\0"]).is_err());
    }
}
