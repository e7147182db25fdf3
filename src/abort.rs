//! Following a job's `AbortSignal` without touching the user's `signal.onabort`.
//!
//! We add our own 'abort' event listener and remove it when the job settles, so a
//! long-lived signal shared by many jobs does not accumulate listeners or memory.
//! Any object with a boolean `aborted` and `addEventListener`/`removeEventListener`
//! methods is accepted (Node's AbortSignal, or an EventTarget-based polyfill).

use std::future::Future;
use std::sync::{Arc, Mutex};

use local_worker_core::SpecError;
use napi::bindgen_prelude::*;
use tokio::sync::oneshot;

use crate::input::{InputError, thrown};

pub enum Subscription {
    /// The job has no signal.
    None,
    /// The signal was aborted before the job started; its `reason`.
    AlreadyAborted(Error),
    /// `aborted` resolves when the signal fires; `binding` removes our listener.
    Armed {
        aborted: AbortFuture,
        binding: AbortBinding,
    },
}

pub type AbortFuture = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Our listener on a signal, to be detached on the JS thread when the job settles.
pub struct AbortBinding {
    signal: ObjectRef<false>,
    listener: ObjectRef<false>,
}

pub fn subscribe(
    env: &Env,
    signal: Option<Object>,
) -> std::result::Result<Subscription, InputError> {
    let Some(signal) = signal else {
        return Ok(Subscription::None);
    };
    let not_a_signal =
        || InputError::from(SpecError::type_("job.signal", "must be an AbortSignal"));
    let aborted: Unknown = signal
        .get_named_property("aborted")
        .map_err(|e| thrown(env, e))?;
    let add: Unknown = signal
        .get_named_property("addEventListener")
        .map_err(|e| thrown(env, e))?;
    let remove: Unknown = signal
        .get_named_property("removeEventListener")
        .map_err(|e| thrown(env, e))?;
    if aborted.get_type().ok() != Some(ValueType::Boolean)
        || add.get_type().ok() != Some(ValueType::Function)
        || remove.get_type().ok() != Some(ValueType::Function)
    {
        return Err(not_a_signal());
    }
    // SAFETY: checked to be a boolean.
    if unsafe { bool::from_napi_value(env.raw(), aborted.raw()) }.map_err(|e| thrown(env, e))? {
        let reason: Unknown = signal
            .get_named_property("reason")
            .map_err(|e| thrown(env, e))?;
        return Ok(Subscription::AlreadyAborted(
            crate::output::abort_error(env, Some(reason)).map_err(|e| thrown(env, e))?,
        ));
    }

    let (fire, fired) = oneshot::channel::<()>();
    let fire = Arc::new(Mutex::new(Some(fire)));
    let listener = env
        .create_function_from_closure::<(), (), _>("onJobAbort", move |_| {
            if let Some(fire) = fire.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = fire.send(());
            }
            Ok(())
        })
        .map_err(|e| thrown(env, e))?;
    // SAFETY: checked to be a function.
    let add: Function<FnArgs<(&str, Unknown)>, Unknown> =
        unsafe { Function::from_napi_value(env.raw(), add.raw()) }.map_err(|e| thrown(env, e))?;
    add.apply(signal, FnArgs::from(("abort", listener.to_unknown())))
        .map_err(|e| thrown(env, e))?;

    let binding = AbortBinding {
        signal: signal.create_ref().map_err(|e| thrown(env, e))?,
        listener: Object::from_raw(env.raw(), listener.raw())
            .create_ref()
            .map_err(|e| thrown(env, e))?,
    };
    let aborted: AbortFuture = Box::pin(async move {
        // A dropped sender (the environment is going away) is not an abort.
        if fired.await.is_err() {
            std::future::pending::<()>().await;
        }
    });
    Ok(Subscription::Armed { aborted, binding })
}

impl AbortBinding {
    /// Removes our listener; returns the signal's `reason` if it was aborted.
    pub fn detach<'env>(self, env: &'env Env) -> Option<Unknown<'env>> {
        let signal = self.signal.get_value(env).ok();
        let listener = self.listener.get_value(env).ok();
        let mut reason = None;
        if let (Some(signal), Some(listener)) = (signal, listener) {
            if let Ok(remove) = signal
                .get_named_property::<Function<FnArgs<(&str, Unknown)>, Unknown>>(
                    "removeEventListener",
                )
            {
                let _ = remove.apply(signal, FnArgs::from(("abort", listener.to_unknown())));
            }
            if signal
                .get_named_property::<bool>("aborted")
                .unwrap_or(false)
            {
                reason = signal.get_named_property::<Unknown>("reason").ok();
            }
        }
        // A throwing removeEventListener must not leak into the next JS call.
        let _ = crate::js_error::take_pending_exception(env);
        let _ = self.signal.unref(env);
        let _ = self.listener.unref(env);
        reason
    }
}
