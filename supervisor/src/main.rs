//! `local-worker`: the executable shipped next to the addon in each platform package.
//!
//! `local-worker forkserver` (internal): started by the addon, once per Node
//! process, with its socket on fd 3; it forks one supervisor per job
//! ([`forkserver`], [`supervise`], [`supervision`]).

mod forkserver;
mod signals;
mod supervise;
mod supervision;

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::ExitCode;

const USAGE: &str = "usage: local-worker forkserver   (started by @helios-project/local-worker)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("forkserver") if args.len() == 1 => {
            // SAFETY: fd 3 is the socket the addon passed; nothing else owns it.
            let socket = unsafe { OwnedFd::from_raw_fd(forkserver::SOCKET_FD) };
            match forkserver::serve(socket) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("local-worker forkserver: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some("--version") => {
            println!("local-worker {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
