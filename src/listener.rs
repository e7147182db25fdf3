//! A JS `onStdout`/`onStderr` callback as the core's `OutputListener`.
//!
//! Output crosses to the JS thread through a threadsafe function whose target is a
//! small dispatcher of ours, not the user's callback itself. Text arrives decoded
//! (Latin-1 or UTF-16, V8's own forms) and already cut into pieces of at most 64 KiB
//! of UTF-8 (small V8 strings, like Node's own stream chunks, instead of one
//! large-object allocation per pipe read): on the JS thread each piece is a plain copy
//! into a new string, no decoding. Bytes (`encoding: 'buffer'`) arrive as one Buffer
//! per read, external (no copy) when large. The dispatcher calls the user's callback
//! once per piece and catches what it throws: the job then fails with that exact
//! value, and no queued piece reaches the callback afterwards.
//!
//! Deliveries yield to the event loop. Node's threadsafe-function dispatcher runs
//! every queued call in one go, including calls queued while it runs; had a
//! delivery counted as done when the callback returned, the reader would refill the
//! queue at once and a slow callback would hold the JS thread for the whole output
//! (no timers, no I/O, no signals). So a delivery is done only from a
//! `setImmediate` scheduled by the dispatcher: the next read waits for the loop's
//! next turn, timers and I/O run in between, and a slow callback slows the child
//! through the pipe instead of starving Node.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use local_worker_core::{OutputChunk, OutputListener};
use napi::bindgen_prelude::*;
use napi::sys;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{JsGlobal, sys::napi_value};
use tokio::sync::oneshot;

use crate::js_error::{self, Failure, Held};
use crate::js_text::{buffer_value, copy_text};

/// Deliveries that reached the JS thread, waiting for the loop's next turn to be
/// reported done (oldest first: the dispatcher runs them in order).
type Completions = Arc<Mutex<VecDeque<oneshot::Sender<()>>>>;

/// One delivery: the output, arriving in JS as an array of pieces (strings cut at
/// character boundaries, or one Buffer); and who to tell once the loop has turned.
/// Dropped without reaching JS (Node shutting down), it drops `done`, which tells the
/// reader as well.
pub struct Pieces {
    chunk: OutputChunk,
    done: oneshot::Sender<()>,
    completions: Completions,
}

impl ToNapiValue for Pieces {
    unsafe fn to_napi_value(env: sys::napi_env, pieces: Self) -> Result<sys::napi_value> {
        let Pieces {
            chunk,
            done,
            completions,
        } = pieces;
        // On the JS thread, just before the dispatcher runs with these pieces.
        lock(&completions).push_back(done);
        let mut array = std::ptr::null_mut();
        // SAFETY: plain Node-API calls on the current env.
        check_status!(unsafe { sys::napi_create_array(env, &mut array) })?;
        match chunk {
            OutputChunk::Text { text, piece_ends } => {
                let mut start = 0;
                for (index, end) in piece_ends.into_iter().enumerate() {
                    // SAFETY: valid env; the core cut the pieces within the text.
                    let piece = unsafe { copy_text(env, &text, start, end - start) }?;
                    check_status!(unsafe {
                        sys::napi_set_element(env, array, index as u32, piece)
                    })?;
                    start = end;
                }
            }
            OutputChunk::Bytes(bytes) => {
                // SAFETY: valid env.
                let piece = unsafe { buffer_value(env, bytes, 0) }?;
                check_status!(unsafe { sys::napi_set_element(env, array, 0, piece) })?;
            }
        }
        Ok(array)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

type Dispatch = ThreadsafeFunction<Pieces, (), Pieces, Status, false>;

/// What the user's callback threw, kept on the JS heap as it is (`None`: it could
/// not be kept, the environment going away).
#[derive(Default)]
struct Failed {
    failed: AtomicBool,
    thrown: Mutex<Option<Held>>,
}

pub struct JsOutputListener {
    /// `onStdout` or `onStderr`, for error messages.
    name: &'static str,
    dispatch: Dispatch,
    failure: Arc<Failed>,
    completions: Completions,
}

/// A callback threw: which one, and exactly what it threw (never inspected).
pub struct CallbackError {
    pub callback: &'static str,
    pub thrown: Option<Held>,
}

impl JsOutputListener {
    /// `value` must be a function.
    pub fn new(env: &Env, name: &'static str, value: Unknown) -> Result<Self> {
        // SAFETY: the caller checked that the value is a function.
        let user: Function<Unknown, Unknown> =
            unsafe { Function::from_napi_value(env.raw(), value.raw()) }?;
        let user = user.create_ref()?;
        let failure = Arc::new(Failed::default());
        let seen = Arc::clone(&failure);
        let completions = Completions::default();
        let completed = Arc::clone(&completions);
        // Reports the oldest delivery done: called by `setImmediate`, once per delivery.
        let complete =
            env.create_function_from_closure::<(), (), _>("completeDelivery", move |_| {
                if let Some(done) = lock(&completed).pop_front() {
                    let _ = done.send(());
                }
                Ok(())
            })?;
        let complete = complete.create_ref()?;
        let global: JsGlobal = env.get_global()?;
        let set_immediate: Function<Unknown, Unknown> =
            global.get_named_property("setImmediate")?;
        let set_immediate = set_immediate.create_ref()?;
        let completing = Arc::clone(&completions);
        let dispatcher = env.create_function_from_closure::<Object, (), _>(name, move |ctx| {
            // First, whatever the callback does: the delivery is done on the loop's next turn.
            let scheduled = schedule(ctx.env, &set_immediate, &complete);
            if scheduled.is_err()
                && let Some(done) = lock(&completing).pop_front()
            {
                let _ = done.send(());
            }
            let pieces: Object = ctx.get(0)?;
            let user = user.borrow_back(ctx.env)?;
            for i in 0..pieces.get_array_length()? {
                if seen.failed.load(Ordering::Acquire) {
                    break;
                }
                let piece: Unknown = pieces.get_element(i)?;
                if let Err(failure) = call_catching(ctx.env, &user, piece) {
                    let held = match failure {
                        Failure::Thrown(thrown) => Held::new(ctx.env, thrown).ok(),
                        // Failed without an exception (the environment is going away).
                        Failure::Api(_) => None,
                    };
                    // Nothing of it may stay pending (Node would report an uncaught
                    // N-API callback exception and the next call would fail).
                    js_error::clear_pending_exception(ctx.env);
                    seen.failed.store(true, Ordering::Release);
                    *lock(&seen.thrown) = held;
                }
            }
            Ok(())
        })?;
        let dispatch = dispatcher
            .build_threadsafe_function::<Pieces>()
            .callee_handled::<false>()
            .build_callback(|ctx| Ok(ctx.value))?;
        Ok(JsOutputListener {
            name,
            dispatch,
            failure,
            completions,
        })
    }
}

/// `setImmediate(complete)`.
fn schedule(
    env: &Env,
    set_immediate: &FunctionRef<Unknown, Unknown>,
    complete: &FunctionRef<(), ()>,
) -> Result<()> {
    let set_immediate = set_immediate.borrow_back(env)?;
    let complete = complete.borrow_back(env)?;
    // SAFETY: a function value of the current env.
    let complete = unsafe { Unknown::from_napi_value(env.raw(), complete.raw() as napi_value) }?;
    set_immediate.call(complete)?;
    Ok(())
}

/// Calls `function(arg)` with `this` undefined; `Err` holds exactly what it threw
/// (napi-rs's own `call` would convert it, which throws again for a Symbol).
fn call_catching<'env>(
    env: &'env Env,
    function: &Function<Unknown, Unknown>,
    arg: Unknown,
) -> std::result::Result<(), Failure<'env>> {
    let mut this = std::ptr::null_mut();
    // SAFETY: plain Node-API call on the current env.
    unsafe { sys::napi_get_undefined(env.raw(), &mut this) };
    js_error::call(env, this, function.raw(), &[arg.raw()]).map(|_| ())
}

impl OutputListener for JsOutputListener {
    type Error = CallbackError;
    type Delivery = Pin<Box<dyn Future<Output = std::result::Result<(), CallbackError>> + Send>>;

    /// Queues `chunk` for the JS thread at once; resolves when the dispatcher ran
    /// and the event loop turned once more (see the module docs).
    fn deliver(&self, chunk: OutputChunk) -> Self::Delivery {
        let (done, finished) = oneshot::channel();
        let status = self.dispatch.call(
            Pieces {
                chunk,
                done,
                completions: Arc::clone(&self.completions),
            },
            ThreadsafeFunctionCallMode::NonBlocking,
        );
        let failure = Arc::clone(&self.failure);
        let name = self.name;
        Box::pin(async move {
            // A closing environment never runs the call: there is nobody left to tell.
            if status == Status::Ok {
                let _ = finished.await;
            }
            if failure.failed.load(Ordering::Acquire) {
                let thrown = lock(&failure.thrown).take();
                return Err(CallbackError {
                    callback: name,
                    thrown,
                });
            }
            Ok(())
        })
    }
}
