//! Adding and removing listeners on JS event sources (an `EventTarget` such as an
//! `AbortSignal`, or an `EventEmitter` such as `process`).

use napi::bindgen_prelude::*;

/// `target[method](event, listener)`, e.g. `signal.addEventListener('abort', fn)`
/// or `process.off('SIGTERM', fn)`.
pub fn call(target: Object, method: &str, event: &str, listener: Unknown) -> Result<()> {
    let function: Function<FnArgs<(&str, Unknown)>, Unknown> = target.get_named_property(method)?;
    function.apply(target, FnArgs::from((event, listener)))?;
    Ok(())
}
