//! Serial `true` jobs through the core, with and without a supervisor, no Node in the
//! way: the supervisor's cost per job on its own.
//!
//!   cargo run --release -p local-worker-supervisor --example serial -- supervised 500 [path]
//!   cargo run --release -p local-worker-supervisor --example serial -- grouped 500
//!
//! `path`: the supervisor executable (default: the one `npm run build` puts beside the addon).

use std::path::PathBuf;
use std::time::Instant;

use local_worker_core::forkserver::{self, Setting};
use local_worker_core::job::Listeners;
use local_worker_core::{JobSpec, OutputListener};

struct None_;
impl OutputListener for None_ {
    type Error = ();
    type Delivery = std::future::Ready<Result<(), ()>>;
    fn deliver(&self, _: local_worker_core::OutputChunk) -> Self::Delivery {
        std::future::ready(Ok(()))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("supervised");
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(500);
    let supervisor = args
        .get(3)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../local-worker"));
    forkserver::configure(if mode == "grouped" {
        Setting::Disabled
    } else {
        Setting::Program(supervisor)
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let job = || {
            let mut spec = JobSpec::new("/usr/bin/true");
            spec.base_env = Some(std::env::vars_os().collect());
            local_worker_core::run::<None_, _>(
                spec,
                1,
                Listeners::default(),
                std::future::pending(),
            )
        };
        job().await.unwrap();
        let t0 = Instant::now();
        for _ in 0..n {
            job().await.unwrap();
        }
        println!(
            "{mode}: {:.3} ms/job",
            t0.elapsed().as_secs_f64() * 1000.0 / n as f64
        );
    });
}
