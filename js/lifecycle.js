'use strict'
// Killing the jobs of a Node thread that goes away (the same rules as src/lifecycle.rs).
//
// * `process.exit()`, an uncaught exception, an unhandled rejection, the event loop ending, a
//   worker thread stopping: a `process.on('exit')` listener SIGKILLs the groups of this
//   thread's live jobs (each thread loads its own copy of this module, so a worker thread's
//   exit kills that thread's jobs only).
// * SIGTERM, SIGINT or SIGHUP with no handler of the application's: while jobs are live we
//   listen for them; if no listener is the application's we kill the jobs, remove our
//   listeners and re-raise the signal, so Node dies of it as it would have. If the application
//   has its own handler, what happens is its call. Cooperative listeners are not the
//   application's: ours (any copy, native or JS: marked with a registry symbol) and
//   signal-exit's (counted in its global emitter), which step back while others listen.
//   As PID 1 a re-raised signal does nothing, so Node exits with 128 + the signal's number.
// * SIGKILL: nothing runs in a SIGKILLed process; only the native implementation's supervisors
//   end the jobs then.

const { constants: { signals: SIGNAL_NUMBERS } } = require('node:os')

const { killGroupNow } = require('./terminate.js')

const FORWARDED_SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP']
/** The mark on every copy's signal listener (the same key as the native implementation's). */
const COOPERATIVE_MARK = Symbol.for('@helios-project/local-worker: cooperative signal listener')
const SIGNAL_EXIT_EMITTER = Symbol.for('signal-exit emitter')

/** Process groups of this thread's jobs, from spawn until their leftovers are handled. */
const groups = new Set()
let watched = false
let live = 0
let signalListener = null

function killAll() {
  for (const pgid of groups) killGroupNow(pgid)
}

/** Registers, once per thread, the exit hook. */
function watch() {
  if (watched) return
  watched = true
  process.on('exit', killAll)
}

function register(pgid) {
  groups.add(pgid)
}

function unregister(pgid) {
  groups.delete(pgid)
}

/** A job started: listen for termination signals while any runs. */
function jobStarted() {
  live++
  if (signalListener === null) installSignalListener()
}

let removalQueued = false

/**
 * A job settled. The signal listeners go once no job runs, but on the loop's next turn: a
 * serial loop of jobs keeps them instead of removing and adding them for every job.
 */
function jobFinished() {
  live = Math.max(0, live - 1)
  if (live !== 0 || signalListener === null || removalQueued) return
  removalQueued = true
  setImmediate(() => {
    removalQueued = false
    if (live === 0 && signalListener !== null) removeSignalListener()
  })
}

function installSignalListener() {
  const listener = (signal) => onTerminationSignal(signal)
  listener[COOPERATIVE_MARK] = true
  for (const signal of FORWARDED_SIGNALS) process.on(signal, listener)
  signalListener = listener
}

function removeSignalListener() {
  const listener = signalListener
  signalListener = null
  for (const signal of FORWARDED_SIGNALS) process.off(signal, listener)
}

/** Live instances of signal-exit (v4 in a global, v3 on process); each listens to the signal. */
function signalExitInstances() {
  const count = (emitter) => (typeof emitter?.count === 'number' ? emitter.count : 0)
  return count(globalThis[SIGNAL_EXIT_EMITTER]) + count(process.__signal_exit_emitter__)
}

function applicationListeners(signal) {
  const ours = process.listeners(signal).filter((listener) => listener[COOPERATIVE_MARK] === true).length
  return process.listenerCount(signal) - ours - signalExitInstances()
}

function onTerminationSignal(signal) {
  if (applicationListeners(signal) > 0) return
  killAll()
  removeSignalListener()
  if (process.pid === 1) {
    // A namespace's init ignores a default-action signal: end as a shell would report it.
    process.exit(128 + (SIGNAL_NUMBERS[signal] ?? 1))
  }
  // With no listener left, Node restores the default action: the re-raised signal ends the
  // process exactly as it would have without us.
  try {
    process.kill(process.pid, signal)
  } catch {
    // A signal this platform cannot send (SIGHUP on Windows): end with the status it implies.
    process.exit(128 + (SIGNAL_NUMBERS[signal] ?? 1))
  }
}

module.exports = { watch, register, unregister, jobStarted, jobFinished }
