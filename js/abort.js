'use strict'
// Following a job's AbortSignal without touching the user's `signal.onabort`.
//
// Each signal gets at most one 'abort' listener of ours, however many jobs share it: the
// listener fans the abort out to the jobs registered with it (one listener per job would trip
// Node's MaxListenersExceededWarning as soon as more than 10 jobs share a signal). A job leaves
// the fan-out when it settles, and the last one out removes the listener, so a long-lived
// signal accumulates neither listeners nor memory.
//
// Any object with a boolean `aborted` and `addEventListener`/`removeEventListener` methods is
// accepted (Node's AbortSignal, or an EventTarget-based polyfill).

const { abortErrorOrOutcome, inputError } = require('./errors.js')

/** signal -> { listener, jobs: Set<binding> }; the entry dies with the signal. */
const fanouts = new WeakMap()

/** A job's place in a signal's fan-out. `onAbort` is set by the job once it exists. */
class AbortBinding {
  constructor(signal, entry) {
    this.signal = signal
    this.entry = entry
    this.onAbort = null
  }

  fire() {
    this.onAbort?.()
  }

  /**
   * Leaves the fan-out (removing our listener if this was the last job); returns the signal's
   * `reason` if it was aborted. Never throws: a throwing getter or removeEventListener is ignored.
   */
  detach() {
    const { signal, entry } = this
    entry.jobs.delete(this)
    if (entry.jobs.size === 0 && fanouts.get(signal) === entry) {
      fanouts.delete(signal)
      try {
        signal.removeEventListener('abort', entry.listener)
      } catch {
        // Nothing more we can do about a signal whose removeEventListener throws.
      }
    }
    try {
      if (signal.aborted === true) return signal.reason
    } catch {
      // A throwing getter: no reason to report.
    }
    return undefined
  }
}

/**
 * `{ binding }` for a job that follows `signal` (undefined when it has none), or `{ error }`
 * when the signal is already aborted: the job must not start. Throws when `signal` is not an
 * AbortSignal (or what a getter of it threw).
 */
function subscribe(signal) {
  if (signal === undefined) return { binding: null }
  const aborted = signal.aborted
  const add = signal.addEventListener
  const remove = signal.removeEventListener
  if (typeof aborted !== 'boolean' || typeof add !== 'function' || typeof remove !== 'function') {
    throw inputError('type', 'job.signal', 'must be an AbortSignal')
  }
  if (aborted) return { error: abortErrorOrOutcome(signal.reason) }
  let entry = fanouts.get(signal)
  if (entry === undefined) {
    const jobs = new Set()
    const listener = () => {
      const waiting = [...jobs]
      jobs.clear()
      for (const binding of waiting) binding.fire()
    }
    signal.addEventListener('abort', listener)
    entry = { listener, jobs }
    fanouts.set(signal, entry)
  }
  const binding = new AbortBinding(signal, entry)
  entry.jobs.add(binding)
  return { binding }
}

module.exports = { subscribe }
