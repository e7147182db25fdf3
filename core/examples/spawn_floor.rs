//! The floor of serial spawning on this machine: `posix_spawn` + `waitpid` of one
//! program, N times in a row, from a small single-threaded process, with no pipes,
//! no attributes and no runtime. It is what a C loop does; the bench prints every
//! serial spawn scenario's cost per job above it.
//!
//!   cargo run --release -p local-worker-core --example spawn_floor -- 200 /usr/bin/true
//!
//! Prints one JSON line: `{ "ms": <total>, "jobs": N }`, timing the loop only.

use std::ffi::CString;
use std::time::Instant;

unsafe extern "C" {
    static environ: *const *const libc::c_char;
}

fn main() {
    let mut args = std::env::args().skip(1);
    let jobs: u32 = args
        .next()
        .and_then(|n| n.parse().ok())
        .expect("usage: spawn_floor <jobs> <program>");
    let program = CString::new(args.next().expect("usage: spawn_floor <jobs> <program>"))
        .expect("no NUL in the program");
    let argv = [program.as_ptr() as *mut libc::c_char, std::ptr::null_mut()];
    let started = Instant::now();
    for _ in 0..jobs {
        let mut pid = 0;
        // SAFETY: a NUL-terminated program and argv, the process's own environment.
        let err = unsafe {
            libc::posix_spawn(
                &mut pid,
                program.as_ptr(),
                std::ptr::null(),
                std::ptr::null(),
                argv.as_ptr(),
                environ.cast(),
            )
        };
        assert_eq!(err, 0, "posix_spawn: errno {err}");
        let mut status = 0;
        // SAFETY: our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    }
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    println!("{{\"ms\":{ms},\"jobs\":{jobs}}}");
}
