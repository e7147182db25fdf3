'use strict'
// The JavaScript implementation of @helios-project/local-worker: the same contract as the
// native addon (README.md), on child_process. It is the fallback where no binary is installed
// (macOS, Windows, other Linux targets) or when LOCAL_WORKER_IMPLEMENTATION=js.
//
// What it cannot give (README.md lists the rest of the contract it keeps):
// - no `resourceUsage` in results (child_process does not expose a child's rusage);
// - spawning is child_process's (fork on Linux), not posix_spawn;
// - no supervisor per job: jobs are contained by their process group only (a setsid daemon
//   escapes, orphans go to init), and if Node is SIGKILLed its running jobs are not ended.
//
//   js/index.js       the LocalWorkerAdapter class
//   js/validate.js    reading and validating the job and the options, naming the field
//   js/abort.js       AbortSignal: one shared listener per signal, fanned out to its jobs
//   js/pace.js        spreading spawns over event-loop turns
//   js/spawn.js       child_process.spawn in a new process group; spawn errors
//   js/job.js         the life cycle of one job, and its result or error
//   js/output.js      bounded tail capture, UTF-8 decoding, callback pieces
//   js/terminate.js   SIGTERM -> grace -> SIGKILL of a process group, until nothing is left
//   js/lifecycle.js   killing the jobs when Node exits or gets SIGTERM/SIGINT/SIGHUP
//   js/errors.js      the errors, shaped like the native ones
//   js/format.js      numbers and strings in messages, written as the native ones are

const { subscribe } = require('./abort.js')
const { runJob } = require('./job.js')
const lifecycle = require('./lifecycle.js')
const { readJob, readOptions } = require('./validate.js')

/** Runs Helios jobs as local processes. See README.md for the full semantics. */
class LocalWorkerAdapter {
  #defaults

  /** `options` sets defaults for every job of this adapter; a job may override them. Throws when malformed. */
  constructor(options) {
    this.#defaults = readOptions(options)
    lifecycle.watch()
  }

  /**
   * Runs `job`. Never throws (bad input, spawn failures, timeouts and aborts all reject the
   * returned Promise), unless called detached from an adapter.
   */
  execute(job) {
    if (!(typeof this === 'object' && this !== null && #defaults in this)) {
      throw new TypeError('Illegal invocation: execute must be called on a LocalWorkerAdapter')
    }
    let spec
    let subscription
    try {
      spec = readJob(job, this.#defaults)
      subscription = subscribe(spec.signal)
    } catch (error) {
      return Promise.reject(error)
    }
    if (subscription.error !== undefined) return Promise.reject(subscription.error)
    lifecycle.jobStarted()
    return runJob(spec, subscription.binding)
  }
}

module.exports = { LocalWorkerAdapter }
