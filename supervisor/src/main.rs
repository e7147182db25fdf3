//! `local-worker`: the executable shipped next to the addon in each platform package.
//!
//! * `local-worker run [options] -- <command> [args...]`: one job, contained and
//!   reported, as the entrypoint of a cloud worker's container ([`run`]).
//! * `local-worker forkserver` (internal): started by the addon, once per Node
//!   process, with its socket on fd 3; it forks one supervisor per job
//!   ([`forkserver`], [`supervise`], [`supervision`]).

mod forkserver;
mod run;
mod run_options;
mod signals;
mod supervise;
mod supervision;

use std::ffi::OsString;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::ExitCode;

const USAGE: &str = "\
usage: local-worker run [options] [--] <command> [args...]   (local-worker run --help)
       local-worker --version";

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match args.first().and_then(|a| a.to_str()) {
        Some("run") => match run_options::parse(&args[1..]) {
            Ok(Some(options)) => ExitCode::from(run::run(options)),
            Ok(None) => {
                println!("{}", run_options::USAGE);
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("local-worker run: {error}\n(local-worker run --help)");
                ExitCode::from(2)
            }
        },
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
        Some("--help" | "-h") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
