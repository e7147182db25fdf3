'use strict'
// Running one job from spawn to settlement: the life cycle that ties the modules together
// (the same order of events as core/src/job.rs).
//
// Spawn; wait for the leader to exit, the timeout, the abort, or a callback failure; terminate
// the group unless the leader exited by itself; wait for the leader's exit; terminate what it
// left in its group (`killLeftovers`); drain the pipes until EOF or `drainTimeout`; settle.

const { constants: { signals: SIGNAL_NUMBERS } } = require('node:os')

const { abortError, abortErrorOrOutcome, callbackError, outcomeError, timeoutError } = require('./errors.js')
const { formatNumber } = require('./format.js')
const lifecycle = require('./lifecycle.js')
const { OutputCapture } = require('./output.js')
const pace = require('./pace.js')
const { failure, spawnLeader } = require('./spawn.js')
const { groupExists, terminateGroup } = require('./terminate.js')

/** Runs `spec` (validated; `binding` follows its signal, or null). Resolves or rejects as README says. */
function runJob(spec, binding) {
  return new Promise((resolve, reject) => {
    const job = new Job(spec, binding, resolve, reject)
    if (binding !== null) binding.onAbort = () => job.abort()
    pace.schedule(() => {
      try {
        job.start()
      } catch (error) {
        job.settle(error) // a failure of ours: reject rather than throw from a later turn
      }
    })
  })
}

class Job {
  constructor(spec, binding, resolve, reject) {
    this.spec = spec
    this.binding = binding
    this.resolve = resolve
    this.reject = reject
    /** 'queued' (waiting for its turn to spawn), 'running', or 'settled'. */
    this.state = 'queued'
    /** Why it ended: 'exited' (by itself), 'timedOut', 'aborted' or 'failed' (a callback threw). */
    this.ending = null
    this.endingReached = null
    this.ended = new Promise((resolve) => { this.endingReached = resolve })
    /** The first callback failure: `{ callback, thrown }`. */
    this.failure = null
    this.child = null
    this.pid = 0
    this.started = 0
    this.timer = null
    /** `{ code, signal }` once the leader has exited (and libuv has reaped it). */
    this.exitStatus = null
    this.exitWaiters = new Set()
    this.out = null
    this.err = null
    this.leader = { exited: (ms) => this.exited(ms) }
  }

  start() {
    if (this.state !== 'queued') return // aborted while it waited for its turn
    this.state = 'running'
    this.started = performance.now()
    const { child, error } = spawnLeader(this.spec)
    if (error !== undefined) return this.settle(error)
    this.child = child
    child.on('error', (e) => this.onChildError(e))
    // No pid: the spawn failed, and the 'error' event (next tick) says why.
    if (child.pid === undefined) return undefined
    this.pid = child.pid
    lifecycle.register(this.pid)
    this.out = this.capture(child.stdout, 'onStdout', this.spec.onStdout)
    this.err = this.capture(child.stderr, 'onStderr', this.spec.onStderr)
    child.on('exit', (code, signal) => this.onExit(code, signal))
    if (this.spec.timeout !== undefined) this.armTimeout()
    // An unexpected failure of ours still settles the job (and never goes unhandled).
    this.supervise().catch((error) => this.settle(error))
    return undefined
  }

  capture(stream, name, listener) {
    const capture = new OutputCapture(this.spec.maxBuffer, this.spec.encoding, name, listener, (f) => this.onCallbackFailure(f))
    let finished
    capture.stream = stream
    capture.done = new Promise((resolve) => { finished = resolve })
    const finish = () => {
      capture.end()
      finished()
    }
    stream.on('data', (chunk) => capture.write(chunk))
    stream.once('end', finish)
    stream.once('close', finish)
    stream.on('error', () => {}) // followed by 'close'
    return capture
  }

  /** Records why the job ends; only the first reason counts. */
  end(ending) {
    if (this.ending !== null) return
    this.ending = ending
    clearTimeout(this.timer)
    this.endingReached()
  }

  armTimeout() {
    const { timeout } = this.spec
    const check = () => {
      // Timers run on the loop's clock, which may lag the monotonic one: never fire early.
      const left = timeout - (performance.now() - this.started)
      if (left > 0) this.timer = setTimeout(check, left)
      else this.end('timedOut')
    }
    this.timer = setTimeout(check, timeout)
  }

  abort() {
    if (this.state === 'queued') {
      // Never spawned: reject as an already aborted signal does.
      this.state = 'settled'
      const reason = this.binding.detach()
      lifecycle.jobFinished()
      this.reject(abortErrorOrOutcome(reason))
      return
    }
    this.end('aborted')
  }

  onCallbackFailure(failed) {
    this.failure ??= failed
    this.end('failed')
  }

  onExit(code, signal) {
    this.exitStatus = { code, signal }
    for (const wake of this.exitWaiters) wake(true)
    this.exitWaiters.clear()
    this.end('exited')
  }

  onChildError(error) {
    // After a successful spawn, child_process reports only failures of methods we do not use.
    if (this.pid !== 0 || this.state !== 'running') return
    this.child.stdout?.destroy()
    this.child.stderr?.destroy()
    this.settle(failure(this.spec, error))
  }

  /** Resolves to true once the leader has exited, or to false after `ms`. */
  exited(ms) {
    if (this.exitStatus !== null) return Promise.resolve(true)
    return new Promise((resolve) => {
      let timer = null
      const wake = (exited) => {
        clearTimeout(timer)
        this.exitWaiters.delete(wake)
        resolve(exited)
      }
      this.exitWaiters.add(wake)
      if (Number.isFinite(ms)) timer = setTimeout(() => wake(false), Math.max(0, ms))
    })
  }

  async supervise() {
    await this.ended
    const { spec, pid } = this
    try {
      if (this.ending !== 'exited') await terminateGroup(pid, spec.killGracePeriod, this.leader)
      await this.exited(Infinity)
      if (spec.killLeftovers && groupExists(pid)) await terminateGroup(pid, spec.killGracePeriod, null)
    } finally {
      lifecycle.unregister(pid)
    }
    await this.drain()
    // A callback may fail while the pipes drain, after the leader exited by itself.
    if (this.ending === 'exited' && this.failure !== null) this.ending = 'failed'
    this.settle(null)
  }

  /** Reads the pipes until EOF, or for `drainTimeout` ms more (a pipe held by an escaped process). */
  drain() {
    const captures = [this.out, this.err]
    if (captures.every((c) => c.ended)) return undefined
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        // One more poll phase of the loop first: bytes already in the pipes are still taken.
        setImmediate(() => {
          for (const capture of captures) {
            capture.end()
            capture.stream.destroy()
          }
          resolve()
        })
      }, this.spec.drainTimeout)
      Promise.all(captures.map((c) => c.done)).then(() => {
        clearTimeout(timer)
        resolve()
      })
    })
  }

  /** Settles the promise: with `error` (a spawn failure) or with the job's outcome. */
  settle(error) {
    if (this.state === 'settled') return
    this.state = 'settled'
    clearTimeout(this.timer)
    const reason = this.binding === null ? undefined : this.binding.detach()
    lifecycle.jobFinished()
    if (error !== null) {
      this.reject(error)
      return
    }
    try {
      const { target, resolves } = this.outcome(reason)
      if (resolves) this.resolve(target)
      else this.reject(target)
    } catch (failed) {
      this.reject(outcomeError(failed))
    }
  }

  /** The result, or the error carrying the result fields; `resolves` only for an exit by itself. */
  outcome(reason) {
    const { spec, ending } = this
    let target
    switch (ending) {
      case 'exited': target = {}; break
      case 'timedOut': target = timeoutError(spec.command, formatNumber(asRustMillis(spec.timeout))); break
      case 'aborted': target = abortError(reason); break
      default: target = callbackError(this.failure.callback, this.failure.thrown)
    }
    const out = this.out.result()
    const err = this.err.result()
    const { code, signal } = this.exitStatus
    target.exitCode = exitCodeOf(code, signal)
    target.signal = signal ?? null
    target.stdoutDroppedBytes = out.dropped
    target.stderrDroppedBytes = err.dropped
    target.stdout = out.text
    target.stderr = err.text
    target.durationMs = performance.now() - this.started
    target.pid = this.pid
    target.timedOut = ending === 'timedOut'
    target.aborted = ending === 'aborted'
    return { target, resolves: ending === 'exited' }
  }
}

/** The shell's convention: the exit code, or 128 + the number of the signal that killed it. */
function exitCodeOf(code, signal) {
  if (code !== null && code !== undefined) return code
  const number = signal ? SIGNAL_NUMBERS[signal] : undefined
  return number === undefined ? -1 : 128 + number
}

/** `ms` as the native message shows it: through a nanosecond Duration and back. */
function asRustMillis(ms) {
  const nanos = Math.round((ms / 1000) * 1e9)
  return (Math.floor(nanos / 1e9) + (nanos % 1e9) / 1e9) * 1000
}

module.exports = { runJob }
