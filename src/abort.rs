//! Following a job's `AbortSignal` without touching the user's `signal.onabort`.
//!
//! Each signal gets at most one 'abort' listener of ours, however many jobs share
//! it: the listener fans the abort out to the jobs registered with it. (One
//! listener per job would trip Node's MaxListenersExceededWarning as soon as more
//! than 10 jobs share a signal, which a whole render's signal does.) A job leaves
//! the fan-out when it settles, and the last one out removes the listener, so a
//! long-lived signal accumulates neither listeners nor memory.
//!
//! Any object with a boolean `aborted` and `addEventListener`/`removeEventListener`
//! methods is accepted (Node's AbortSignal, or an EventTarget-based polyfill).

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;

use local_worker_core::SpecError;
use napi::JsGlobal;
use napi::bindgen_prelude::*;
use tokio::sync::oneshot;

use crate::events;
use crate::input::{InputError, thrown};
use crate::js_error::{self, Failure};

pub enum Subscription<'env> {
    /// The job has no signal.
    None,
    /// The signal was aborted before the job started, for this `reason` (whatever
    /// it is: it becomes the AbortError's `cause` untouched).
    AlreadyAborted(Unknown<'env>),
    /// `aborted` resolves when the signal fires; `binding` leaves the fan-out.
    Armed {
        aborted: AbortFuture,
        binding: AbortBinding,
    },
}

pub type AbortFuture = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

type FanoutId = u64;
type JobId = u64;

/// The JS thread's state: one Node environment per thread.
#[derive(Default)]
struct Fanouts {
    next_id: u64,
    /// Per signal listener: the jobs waiting for its abort.
    waiting: HashMap<FanoutId, HashMap<JobId, oneshot::Sender<()>>>,
    /// `WeakMap<signal, { listener, id }>`, so the entry dies with the signal.
    by_signal: Option<ObjectRef<false>>,
}

thread_local! {
    static FANOUTS: RefCell<Fanouts> = RefCell::new(Fanouts::default());
}

fn next_id() -> u64 {
    FANOUTS.with(|f| {
        let mut f = f.borrow_mut();
        f.next_id += 1;
        f.next_id
    })
}

/// A job's place in a signal's fan-out, left on the JS thread when the job settles.
pub struct AbortBinding {
    signal: ObjectRef<false>,
    fanout: FanoutId,
    job: JobId,
}

pub fn subscribe<'env>(
    env: &'env Env,
    signal: Option<Object<'env>>,
) -> std::result::Result<Subscription<'env>, InputError<'env>> {
    let Some(signal) = signal else {
        return Ok(Subscription::None);
    };
    let get = |name: &str| -> std::result::Result<Unknown<'env>, InputError<'env>> {
        signal.get_named_property(name).map_err(|e| thrown(env, e))
    };
    let (aborted, add, remove) = (
        get("aborted")?,
        get("addEventListener")?,
        get("removeEventListener")?,
    );
    if aborted.get_type().ok() != Some(ValueType::Boolean)
        || add.get_type().ok() != Some(ValueType::Function)
        || remove.get_type().ok() != Some(ValueType::Function)
    {
        return Err(SpecError::type_("job.signal", "must be an AbortSignal").into());
    }
    // SAFETY: checked to be a boolean.
    if unsafe { bool::from_napi_value(env.raw(), aborted.raw()) }.map_err(|e| thrown(env, e))? {
        return Ok(Subscription::AlreadyAborted(get("reason")?));
    }

    let fanout = fanout_of(env, signal)?;
    let (fire, fired) = oneshot::channel::<()>();
    let job = next_id();
    FANOUTS.with(|f| {
        f.borrow_mut()
            .waiting
            .entry(fanout)
            .or_default()
            .insert(job, fire)
    });
    let binding = AbortBinding {
        signal: signal.create_ref().map_err(|e| thrown(env, e))?,
        fanout,
        job,
    };
    let aborted: AbortFuture = Box::pin(async move {
        // A dropped sender (the environment is going away) is not an abort.
        if fired.await.is_err() {
            std::future::pending::<()>().await;
        }
    });
    Ok(Subscription::Armed { aborted, binding })
}

/// The fan-out of `signal`, adding our listener to it if it has none yet. A failure
/// is exactly what JS threw (`addEventListener` is the user's code).
fn fanout_of<'env>(env: &'env Env, signal: Object) -> std::result::Result<FanoutId, Failure<'env>> {
    let api = |e| Failure::after(env, e);
    let by_signal = weak_map(env).map_err(api)?;
    if let Some(entry) = entry_of(env, by_signal, signal)? {
        return Ok(entry.get_named_property::<f64>("id").map_err(api)? as FanoutId);
    }
    let id = next_id();
    let listener = env
        .create_function_from_closure::<(), (), _>("onJobsAbort", move |_| {
            let waiting = FANOUTS.with(|f| f.borrow_mut().waiting.get_mut(&id).map(std::mem::take));
            for (_, fire) in waiting.unwrap_or_default() {
                let _ = fire.send(());
            }
            Ok(())
        })
        .map_err(api)?;
    events::call(
        env,
        signal,
        "addEventListener",
        "abort",
        listener.to_unknown(),
    )?;
    let mut entry = Object::new(env).map_err(api)?;
    entry
        .set_named_property("listener", listener)
        .map_err(api)?;
    entry.set_named_property("id", id as f64).map_err(api)?;
    js_error::call_method(env, &by_signal, "set", &[signal.raw(), entry.raw()])?;
    FANOUTS.with(|f| f.borrow_mut().waiting.insert(id, HashMap::new()));
    Ok(id)
}

/// `by_signal.get(signal)`: our `{ listener, id }` entry, if the signal has one.
fn entry_of<'env>(
    env: &'env Env,
    by_signal: Object,
    signal: Object,
) -> std::result::Result<Option<Object<'env>>, Failure<'env>> {
    let entry = js_error::call_method(env, &by_signal, "get", &[signal.raw()])?;
    let kind = entry.get_type().map_err(|e| Failure::after(env, e))?;
    Ok((kind == ValueType::Object).then(|| Object::from_raw(env.raw(), entry.raw())))
}

/// This environment's `WeakMap` from signals to our listener entries.
fn weak_map(env: &Env) -> Result<Object<'_>> {
    if let Some(map) = FANOUTS.with(|f| f.borrow().by_signal.as_ref().map(|r| r.get_value(env))) {
        return map;
    }
    let global: JsGlobal = env.get_global()?;
    let constructor: Function<(), Object> = global.get_named_property("WeakMap")?;
    let map = Object::from_raw(env.raw(), constructor.new_instance(())?.raw());
    let reference = map.create_ref()?;
    FANOUTS.with(|f| f.borrow_mut().by_signal = Some(reference));
    Ok(map)
}

impl AbortBinding {
    /// Leaves the fan-out (removing the listener if this was the last job);
    /// returns the signal's `reason` if it was aborted.
    pub fn detach<'env>(self, env: &'env Env) -> Option<Unknown<'env>> {
        let last = FANOUTS.with(|f| {
            let mut f = f.borrow_mut();
            let waiting = f.waiting.get_mut(&self.fanout);
            waiting.map(|w| {
                w.remove(&self.job);
                w.is_empty()
            })
        });
        let signal = self.signal.get_value(env).ok();
        let mut reason = None;
        if let Some(signal) = signal {
            if last != Some(false) {
                let _ = remove_listener(env, signal);
                FANOUTS.with(|f| f.borrow_mut().waiting.remove(&self.fanout));
            }
            if signal
                .get_named_property::<bool>("aborted")
                .unwrap_or(false)
            {
                reason = signal.get_named_property::<Unknown>("reason").ok();
            }
        }
        // A throwing removeEventListener or getter must not leak into the next JS call
        // (nor be looked at: it may be a Symbol or a revoked Proxy).
        js_error::clear_pending_exception(env);
        let _ = self.signal.unref(env);
        reason
    }
}

fn remove_listener<'env>(env: &'env Env, signal: Object) -> std::result::Result<(), Failure<'env>> {
    let api = |e| Failure::after(env, e);
    let by_signal = weak_map(env).map_err(api)?;
    let Some(entry) = entry_of(env, by_signal, signal)? else {
        return Ok(());
    };
    let listener: Unknown = entry.get_named_property("listener").map_err(api)?;
    events::call(env, signal, "removeEventListener", "abort", listener)?;
    js_error::call_method(env, &by_signal, "delete", &[signal.raw()])?;
    Ok(())
}
