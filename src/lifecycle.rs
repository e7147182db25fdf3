//! Killing the jobs of an environment that goes away.
//!
//! Node-API environment cleanup hooks run when the environment is torn down: on a
//! normal exit, `process.exit()`, and the end of a worker thread. Each environment
//! is an owner in the core's registry, so a worker thread ending kills its own jobs
//! only.

use std::collections::HashSet;
use std::sync::Mutex;

use local_worker_core::registry::{self, Owner};
use napi::bindgen_prelude::*;

static WATCHED: Mutex<Option<HashSet<Owner>>> = Mutex::new(None);

pub fn owner_of(env: &Env) -> Owner {
    env.raw() as usize as Owner
}

/// Registers, once per environment, the hook that kills its live jobs at teardown.
pub fn watch_env(env: &Env) -> Result<()> {
    let owner = owner_of(env);
    let mut watched = WATCHED.lock().unwrap_or_else(|p| p.into_inner());
    if watched.get_or_insert_with(HashSet::new).insert(owner) {
        env.add_env_cleanup_hook(owner, |owner| {
            registry::signal_all(owner, libc::SIGKILL);
            if let Some(set) = WATCHED.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
                set.remove(&owner);
            }
        })?;
    }
    Ok(())
}

pub fn job_started(_env: &Env) {}

pub fn job_finished(_env: &Env) {}
