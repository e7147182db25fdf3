'use strict'
// The errors a job rejects with, shaped as the native implementation shapes them
// (README "Errors at a glance").

const { getSystemErrorMap } = require('node:util')

/** `new Class(message)` with `error.code = code` (what napi_create_error makes). */
function codeError(Class, code, message) {
  const error = new Class(message)
  error.code = code
  return error
}

const INPUT_KINDS = {
  type: [TypeError, 'ERR_INVALID_ARG_TYPE'],
  value: [TypeError, 'ERR_INVALID_ARG_VALUE'],
  range: [RangeError, 'ERR_OUT_OF_RANGE'],
}

/** A malformed job or option: `<field> <problem>`, with `field` set to the field's path. */
function inputError(kind, field, problem) {
  const [Class, code] = INPUT_KINDS[kind]
  const error = codeError(Class, code, `${field} ${problem}`)
  error.field = field
  return error
}

/** `Error: spawn <command> <CODE>: <what>`, shaped like Node's own spawn errors. */
function spawnError(code, errno, command, path, what, args) {
  const error = codeError(Error, code, `spawn ${command} ${code}: ${what}`)
  error.errno = errno
  error.syscall = 'spawn'
  error.path = path
  error.spawnargs = [...args]
  return error
}

let systemErrors
/** libuv's [code, description] for a (negative) errno, e.g. -2 -> ['ENOENT', 'no such file or directory']. */
function systemError(errno) {
  systemErrors ??= getSystemErrorMap()
  return systemErrors.get(errno)
}

/** The (negative) errno Node uses for `code` on this platform, e.g. 'ENOTDIR' -> -20 on Linux. */
function errnoOf(code) {
  systemErrors ??= getSystemErrorMap()
  for (const [errno, [name]] of systemErrors) if (name === code) return errno
  return undefined
}

/** `AbortError: Job was aborted` with `code: 'ABORT_ERR'` and the signal's reason as `cause`. */
function abortError(reason) {
  const error = codeError(Error, 'ABORT_ERR', 'Job was aborted')
  error.name = 'AbortError'
  if (reason !== undefined) error.cause = reason
  return error
}

function timeoutError(command, message) {
  return codeError(Error, 'ETIMEDOUT', `Command "${command}" timed out after ${message}ms`)
}

/** A thrown value's message (or its string form), for the wrapping error's message. */
function describeThrown(thrown) {
  if (typeof thrown === 'string') return thrown
  if (typeof thrown === 'object' && thrown !== null) {
    try {
      const { message } = thrown
      if (typeof message === 'string') return message
    } catch {
      // A throwing `message` getter: describe it like any other non-Error value.
    }
  }
  return 'a non-Error value'
}

/** `onStdout callback threw: ...` with `cause` exactly what the callback threw. */
function callbackError(callback, thrown) {
  const error = codeError(Error, 'ERR_CALLBACK_FAILED', `${callback} callback threw: ${describeThrown(thrown)}`)
  error.cause = thrown
  return error
}

/**
 * Building the value a job settles with threw (a setter on `Error.prototype`, say): said so,
 * with `cause` exactly what was thrown (defined, not assigned: no setter runs).
 */
function outcomeError(thrown) {
  const error = codeError(Error, 'ERR_LOCAL_WORKER_OUTCOME',
    "local-worker: the job's outcome could not be built: JS threw while it was built (the cause is what it threw)")
  Object.defineProperty(error, 'cause', { value: thrown, writable: true, enumerable: true, configurable: true })
  return error
}

/** `abortError(reason)`, or `outcomeError` if building it threw. Never throws. */
function abortErrorOrOutcome(reason) {
  try {
    return abortError(reason)
  } catch (thrown) {
    return outcomeError(thrown)
  }
}

/** The text of a stream could not become a JS string (only possible if V8's limit shrinks). */
function stringError(bytes, cause) {
  const error = codeError(Error, 'ERR_STRING_TOO_LONG', `output of ${bytes} bytes cannot be returned as a JS string; lower maxBuffer`)
  error.cause = cause
  return error
}

module.exports = {
  codeError,
  inputError,
  spawnError,
  systemError,
  errnoOf,
  abortError,
  timeoutError,
  callbackError,
  outcomeError,
  abortErrorOrOutcome,
  stringError,
}
