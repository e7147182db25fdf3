//! A JS `onStdout`/`onStderr` callback as the core's `OutputListener`.

use local_worker_core::OutputListener;
use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};

use crate::js_text::Text;

/// Whatever the callback returns; it is ignored. (`Unknown` would do, but it is not
/// `Send`, which would make the threadsafe function unusable from tokio.)
pub struct Ignored;

impl FromNapiValue for Ignored {
    unsafe fn from_napi_value(_: napi::sys::napi_env, _: napi::sys::napi_value) -> Result<Self> {
        Ok(Ignored)
    }
}

type Callback = ThreadsafeFunction<Text, Ignored, Text, Status, false>;

pub struct JsOutputListener {
    /// `onStdout` or `onStderr`, for error messages.
    name: &'static str,
    callback: Callback,
}

/// A callback threw: which one, and what it threw (the original JS value).
pub struct CallbackError {
    pub callback: &'static str,
    pub error: Error,
}

impl JsOutputListener {
    /// `value` must be a function.
    pub fn new(env: &Env, name: &'static str, value: Unknown) -> Result<Self> {
        // SAFETY: the caller checked that the value is a function.
        let function: Function<Text, Ignored> =
            unsafe { Function::from_napi_value(env.raw(), value.raw()) }?;
        let callback = function
            .build_threadsafe_function()
            .callee_handled::<false>()
            .build()?;
        Ok(JsOutputListener { name, callback })
    }
}

impl OutputListener for JsOutputListener {
    type Error = CallbackError;

    /// Resolves once the callback has run on the JS thread, so deliveries stay in
    /// order, all of them happen before the job settles, and a slow callback
    /// slows the reader rather than queueing text without bound.
    async fn deliver(&self, text: String) -> std::result::Result<(), CallbackError> {
        let (done, finished) = tokio::sync::oneshot::channel();
        let status = self.callback.call_with_return_value(
            Text::chunk(text.into_bytes()),
            ThreadsafeFunctionCallMode::NonBlocking,
            move |returned: Result<Ignored>, _env| {
                let _ = done.send(returned.map(|_| ()));
                Ok(())
            },
        );
        if status != Status::Ok {
            // The environment is shutting down: there is nobody left to tell.
            return Ok(());
        }
        let returned = finished.await.unwrap_or(Ok(()));
        returned.map_err(|error| CallbackError {
            callback: self.name,
            error,
        })
    }
}
