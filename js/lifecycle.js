'use strict'
// Killing the jobs of a Node thread that goes away (the same rules as src/lifecycle.rs).
//
// * `process.exit()`, an uncaught exception, an unhandled rejection, the event loop ending, a
//   worker thread stopping: a `process.on('exit')` listener SIGKILLs the groups of this
//   thread's live jobs (each thread loads its own copy of this module, so a worker thread's
//   exit kills that thread's jobs only).
// * SIGTERM, SIGINT or SIGHUP with no handler of the application's: while jobs are live we
//   listen for them; if ours is the only listener we kill the jobs, remove our listeners and
//   re-raise the signal, so Node dies of it as it would have. If the application has its own
//   handler, what happens is its call.
// * SIGKILL: nothing runs in a SIGKILLed process; only the native implementation has a
//   watchdog for that.

const { constants: { signals: SIGNAL_NUMBERS } } = require('node:os')

const { killGroupNow } = require('./terminate.js')

const FORWARDED_SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP']

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

function jobFinished() {
  live = Math.max(0, live - 1)
  if (live === 0 && signalListener !== null) removeSignalListener()
}

function installSignalListener() {
  const listener = (signal) => onTerminationSignal(signal)
  for (const signal of FORWARDED_SIGNALS) process.on(signal, listener)
  signalListener = listener
}

function removeSignalListener() {
  const listener = signalListener
  signalListener = null
  for (const signal of FORWARDED_SIGNALS) process.off(signal, listener)
}

function onTerminationSignal(signal) {
  if (process.listenerCount(signal) > 1) return
  killAll()
  removeSignalListener()
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
