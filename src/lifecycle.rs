//! Ending the jobs of a Node environment that goes away.
//!
//! Three ways out, three hooks, each ending the live jobs of this environment only
//! (a worker thread ending leaves the main thread's jobs alone), through
//! `registry::end_all`: a supervised job's supervisor is told to terminate the
//! job's whole tree (SIGTERM, the job's grace period, SIGKILL: it needs nobody to
//! wait for it); a job without a supervisor gets SIGKILL to its process group.
//! * the event loop ends, or a worker thread stops: an environment cleanup hook;
//! * `process.exit()` or an uncaught exception: a `process.on('exit')` listener
//!   (Node runs no cleanup hook then);
//! * SIGTERM, SIGINT or SIGHUP with no handler of the application's: while jobs
//!   are live we listen for them; if no listener is the application's we end the
//!   jobs, remove our listeners and re-raise the signal, so Node dies of it as it
//!   would have. If the application has its own handler, what happens is its call.
//!
//! "The application's" is every listener except the cooperative ones: ours (any
//! copy of this addon: each marks its listener with a registry symbol) and
//! signal-exit's (execa's `cleanup`, many CLIs), whose instances signal-exit counts
//! in a global (`globalThis[Symbol.for('signal-exit emitter')].count`, and
//! `process.__signal_exit_emitter__.count` for v3). Both step back while another
//! listener exists and re-raise when they are the last; counting only "other
//! listeners" made each side wait for the other and Node ignored the signal.
//! Subtracting them composes: whichever runs first acts, removes itself, and the
//! others see the count they expect.
//!
//! Node as PID 1 (a container without an init): a signal with the default action
//! does nothing to a namespace's init, so re-raising would leave Node running with
//! its jobs ended. There we end Node ourselves with 128 + the signal's number, the
//! status a shell reports for death by that signal.
//!
//! And one thing no hook can do: when Node is SIGKILLed, only the supervisors end
//! the jobs (their control sockets close). When no supervisor can run, the core
//! says why; we poll that on the JS thread as jobs start and settle and emit one
//! process warning, `LOCAL_WORKER_NO_SUPERVISOR`, per Node process.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};

use local_worker_core::forkserver;
use local_worker_core::registry::{self, Owner};
use napi::JsGlobal;
use napi::bindgen_prelude::*;

use crate::events;

const FORWARDED_SIGNALS: [(&str, i32); 3] = [
    ("SIGTERM", libc::SIGTERM),
    ("SIGINT", libc::SIGINT),
    ("SIGHUP", libc::SIGHUP),
];
/// Marks the signal listeners of every copy of this addon as cooperative.
const COOPERATIVE_MARK: &str = "@helios-project/local-worker: cooperative signal listener";
/// Where signal-exit v4 keeps its emitter, whose `count` is its live instances.
const SIGNAL_EXIT_EMITTER: &str = "signal-exit emitter";

/// The `code` of the warning that jobs run without a supervisor.
const NO_SUPERVISOR: &str = "LOCAL_WORKER_NO_SUPERVISOR";

/// Whether that warning was emitted: once per process, whichever environment
/// (main or worker thread) sees the failure first.
static WARNED_NO_SUPERVISOR: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// One Node environment per JS thread: its hooks and live-job count.
    static LOCAL: RefCell<Local> = RefCell::new(Local::default());
}

#[derive(Default)]
struct Local {
    watched: bool,
    live: usize,
    signal_listener: Option<ObjectRef<false>>,
    /// A check of whether to remove the listener is queued (`setImmediate`).
    removal_queued: bool,
}

pub fn owner_of(env: &Env) -> Owner {
    env.raw() as usize as Owner
}

/// Registers, once per environment, the exit hooks.
pub fn watch_env(env: &Env) -> Result<()> {
    if LOCAL.with(|l| std::mem::replace(&mut l.borrow_mut().watched, true)) {
        return Ok(());
    }
    let owner = owner_of(env);
    env.add_env_cleanup_hook(owner, |owner| {
        registry::end_all(owner);
    })?;
    let on_exit =
        env.create_function_from_closure::<(), (), _>("killLocalWorkerJobs", move |_| {
            registry::end_all(owner);
            Ok(())
        })?;
    call_process_method(env, "on", "exit", on_exit.to_unknown())?;
    Ok(())
}

/// A job started on this environment: listen for termination signals while any runs.
pub fn job_started(env: &Env) {
    report_supervisor_failure(env);
    let install = LOCAL.with(|l| {
        let mut l = l.borrow_mut();
        l.live += 1;
        l.signal_listener.is_none()
    });
    if install && install_signal_listener(env).is_err() {
        // Without the listener, only the signal forwarding is lost; the job still runs.
        crate::js_error::clear_pending_exception(env);
    }
}

/// A job settled. The signal listeners go once no job runs, but on the loop's next
/// turn: a caller that awaits one job and starts the next (the common serial loop)
/// then keeps them, instead of paying for three `process.off` and three
/// `process.on` per job.
pub fn job_finished(env: &Env) {
    report_supervisor_failure(env);
    let queue = LOCAL.with(|l| {
        let mut l = l.borrow_mut();
        l.live = l.live.saturating_sub(1);
        let queue = l.live == 0 && l.signal_listener.is_some() && !l.removal_queued;
        l.removal_queued |= queue;
        queue
    });
    if queue && queue_removal(env).is_err() {
        LOCAL.with(|l| l.borrow_mut().removal_queued = false);
        crate::js_error::clear_pending_exception(env);
        remove_if_idle(env);
    }
}

/// `setImmediate(() => remove_if_idle())`.
fn queue_removal(env: &Env) -> Result<()> {
    let check = env.create_function_from_closure::<(), (), _>("removeSignalListeners", |ctx| {
        LOCAL.with(|l| l.borrow_mut().removal_queued = false);
        remove_if_idle(ctx.env);
        Ok(())
    })?;
    let global: JsGlobal = env.get_global()?;
    let set_immediate: Function<Unknown, Unknown> = global.get_named_property("setImmediate")?;
    set_immediate.call(check.to_unknown())?;
    Ok(())
}

fn remove_if_idle(env: &Env) {
    let remove = LOCAL.with(|l| {
        let mut l = l.borrow_mut();
        if l.live == 0 {
            l.signal_listener.take()
        } else {
            None
        }
    });
    if let Some(listener) = remove {
        remove_signal_listener(env, listener);
    }
}

/// Emits the core's latest supervisor failure as a process warning, the first
/// time only; later failures are taken and dropped (the application was told).
fn report_supervisor_failure(env: &Env) {
    let Some(failure) = forkserver::take_failure() else {
        return;
    };
    if WARNED_NO_SUPERVISOR.swap(true, Ordering::Relaxed) {
        return;
    }
    // The jobs run either way; a warning that cannot be emitted loses only itself.
    let _ = emit_warning(env, &failure, NO_SUPERVISOR);
}

/// `process.emitWarning(message, { code })`.
fn emit_warning(env: &Env, message: &str, code: &str) -> Result<()> {
    let process = process(env)?;
    let emit: Function<FnArgs<(&str, Object)>, Unknown> =
        process.get_named_property("emitWarning")?;
    let mut options = Object::new(env)?;
    options.set_named_property("code", code)?;
    emit.apply(process, FnArgs::from((message, options)))?;
    Ok(())
}

fn install_signal_listener(env: &Env) -> Result<()> {
    let owner = owner_of(env);
    let listener =
        env.create_function_from_closure::<(), (), _>("onTerminationSignal", move |ctx| {
            let signal: String = ctx.get(0)?;
            on_termination_signal(ctx.env, owner, &signal)
        })?;
    let marked = Object::from_raw(env.raw(), listener.raw());
    mark_cooperative(env, &marked)?;
    for (signal, _) in FORWARDED_SIGNALS {
        call_process_method(env, "on", signal, listener.to_unknown())?;
    }
    let listener = marked.create_ref()?;
    LOCAL.with(|l| l.borrow_mut().signal_listener = Some(listener));
    Ok(())
}

fn remove_signal_listener(env: &Env, listener: ObjectRef<false>) {
    if let Ok(function) = listener.get_value(env) {
        for (signal, _) in FORWARDED_SIGNALS {
            let _ = call_process_method(env, "off", signal, function.to_unknown());
        }
    }
    // What a throwing `process.off` left is nobody's to see.
    crate::js_error::clear_pending_exception(env);
    let _ = listener.unref(env);
}

fn on_termination_signal(env: &Env, owner: Owner, signal: &str) -> Result<()> {
    let process = process(env)?;
    if application_listeners(env, &process, signal)? > 0 {
        return Ok(());
    }
    registry::end_all(owner);
    if let Some(listener) = LOCAL.with(|l| l.borrow_mut().signal_listener.take()) {
        remove_signal_listener(env, listener);
    }
    let pid: u32 = process.get_named_property("pid")?;
    if pid == 1 {
        // An init ignores a default-action signal: end as a shell would report it.
        let number = FORWARDED_SIGNALS
            .iter()
            .find(|(name, _)| *name == signal)
            .map_or(libc::SIGTERM, |&(_, n)| n);
        let exit: Function<i32, Unknown> = process.get_named_property("exit")?;
        exit.apply(process, 128 + number)?;
        return Ok(());
    }
    // With no listener left, Node restores the default action: the re-raised
    // signal ends the process exactly as it would have without us.
    let kill: Function<FnArgs<(u32, &str)>, Unknown> = process.get_named_property("kill")?;
    kill.apply(process, FnArgs::from((pid, signal)))?;
    Ok(())
}

/// Listeners of `signal` that are neither ours (any copy) nor signal-exit's.
fn application_listeners(env: &Env, process: &Object, signal: &str) -> Result<i64> {
    let listeners: Function<&str, Object> = process.get_named_property("listeners")?;
    let listeners = listeners.apply(*process, signal)?;
    let mark = symbol_for(env, COOPERATIVE_MARK)?;
    let mut count = 0i64;
    for i in 0..listeners.get_array_length()? {
        let listener: Unknown = listeners.get_element(i)?;
        let ours = listener.get_type()? == ValueType::Function && {
            let listener = Object::from_raw(env.raw(), listener.raw());
            listener.get_property::<_, Unknown>(mark)?.get_type()? == ValueType::Boolean
        };
        if !ours {
            count += 1;
        }
    }
    let global: JsGlobal = env.get_global()?;
    let v4 = global.get_property::<_, Unknown>(symbol_for(env, SIGNAL_EXIT_EMITTER)?)?;
    let v3 = process.get_named_property::<Unknown>("__signal_exit_emitter__")?;
    Ok(count - instance_count(env, v4)? - instance_count(env, v3)?)
}

/// `emitter.count` of a signal-exit emitter, or 0 when there is none.
fn instance_count(env: &Env, emitter: Unknown) -> Result<i64> {
    if emitter.get_type()? != ValueType::Object {
        return Ok(0);
    }
    let emitter = Object::from_raw(env.raw(), emitter.raw());
    let count: Unknown = emitter.get_named_property("count")?;
    if count.get_type()? != ValueType::Number {
        return Ok(0);
    }
    // SAFETY: a number value of the current env.
    let count = unsafe { f64::from_napi_value(env.raw(), count.raw()) }?;
    Ok(count as i64)
}

/// `listener[Symbol.for(COOPERATIVE_MARK)] = true`.
fn mark_cooperative(env: &Env, listener: &Object) -> Result<()> {
    let mark = symbol_for(env, COOPERATIVE_MARK)?;
    let mut yes = std::ptr::null_mut();
    // SAFETY: plain Node-API calls with valid handles of the current env.
    unsafe {
        check_status!(napi::sys::napi_get_boolean(env.raw(), true, &mut yes))?;
        check_status!(napi::sys::napi_set_property(
            env.raw(),
            listener.raw(),
            mark.raw(),
            yes
        ))
    }
}

/// `Symbol.for(key)`: the same symbol in every copy of the addon and every realm.
fn symbol_for<'env>(env: &'env Env, key: &str) -> Result<Unknown<'env>> {
    let global: JsGlobal = env.get_global()?;
    // `Symbol` is a function: read it untyped, then use it as the object it also is.
    let symbol: Unknown = global.get_named_property("Symbol")?;
    let symbol = Object::from_raw(env.raw(), symbol.raw());
    let symbol_for: Function<&str, Unknown> = symbol.get_named_property("for")?;
    symbol_for.apply(symbol, key)
}

fn process(env: &Env) -> Result<Object<'_>> {
    let global: JsGlobal = env.get_global()?;
    global.get_named_property("process")
}

/// `process[method](event, listener)`; what it threw stays pending, for the caller
/// to throw or clear.
fn call_process_method(env: &Env, method: &str, event: &str, listener: Unknown) -> Result<()> {
    events::call(env, process(env)?, method, event, listener).map_err(|f| f.into_pending(env))
}
